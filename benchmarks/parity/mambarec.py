"""MambaRec: mmgraph against the authors' own code (github.com/rkl71/MambaRec).

    git clone https://github.com/rkl71/MambaRec /path/to/MambaRec
    python benchmarks/parity/mambarec.py --upstream /path/to/MambaRec \
        --data /path/to/tiktok --modalities image,audio --steps 200

Both models are built on the same data; mmgraph's freshly initialised
weights are copied into the authors' model (every parameter and batch-norm
buffer, by an explicit name map), then:

1. **one step**: every loss term (BPR, L2, InfoNCE, MMD) and the gradient of
   every parameter, on one batch;
2. **``--steps`` steps** of Adam on the same batches and negatives: the
   total loss at every step and validation Recall@20 every ``--eval-every``
   steps (the MMRec protocol, through mmgraph's evaluator for both sides).

The authors' code reads two modalities, ``v_feat`` and ``t_feat``;
``--modalities V,T`` says which of the data's modalities play those roles
(the image one gets the authors' two-layer reduction). Dropout is switched
off on both sides (its masks are random); everything else runs as released.
Without ``--upstream`` (or with a wrong path) the script says so and exits 0.

Differences that are expected and explained (see ``docs/models/mambarec.md``):
the authors' loss runs DREAM a second time to get the MMD inputs, so their
batch-norm running statistics move twice per step (ours once): eval-mode
outputs differ slightly, train-mode outputs and gradients do not.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _upstream import (MMRecStub, UpstreamMissing, compare, fixed_batches,  # noqa: E402
                       import_upstream, train_side_by_side, write_features)

from mmgraph.data import load_dataset, modality_names  # noqa: E402
from mmgraph.models.mambarec import MambaRec, MambaRecConfig  # noqa: E402


#: gradients below this norm are rounding noise around an exact zero
ZERO_GRAD = 1e-6


# ----------------------------------------------------------------------------- weights
def _dream_map(ours_prefix: str, theirs_prefix: str) -> dict:
    """Upstream DREAM state -> ours: ``{our_name: tensor}``; the five branch
    batch norms of the authors are one ``branch_norm`` of 5C channels here."""
    t = theirs_prefix
    pairs = {
        "conv1x1.weight": f"{t}branch1.0.weight", "conv1x1.bias": f"{t}branch1.0.bias",
        "dilated.0.weight": f"{t}branch2.0.weight", "dilated.0.bias": f"{t}branch2.0.bias",
        "dilated.1.weight": f"{t}branch3.0.weight", "dilated.1.bias": f"{t}branch3.0.bias",
        "dilated.2.weight": f"{t}branch4.0.weight", "dilated.2.bias": f"{t}branch4.0.bias",
        "pool_conv.weight": f"{t}branch5_conv.weight", "pool_conv.bias": f"{t}branch5_conv.bias",
        "out_conv.weight": f"{t}conv_cat.0.weight", "out_conv.bias": f"{t}conv_cat.0.bias",
        "channel_att.weight": f"{t}fusion.channel.fc.weight",
        "spatial_att.weight": f"{t}fusion.spatial.Conv1x1.weight",
    }
    for buf in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        pairs[f"out_norm.{buf}"] = f"{t}conv_cat.1.{buf}"
    out = {ours_prefix + k: v for k, v in pairs.items()}
    bns = [f"{t}branch{k}.1." for k in (1, 2, 3, 4)] + [f"{t}branch5_bn."]
    for buf in ("weight", "bias", "running_mean", "running_var"):
        out[ours_prefix + f"branch_norm.{buf}"] = [b + buf for b in bns]   # concatenated
    out[ours_prefix + "branch_norm.num_batches_tracked"] = [b + "num_batches_tracked" for b in bns]
    return out


def name_map(ours: MambaRec, vision: str, text: str) -> dict:
    """``{our_name: upstream_name | [upstream names, concatenated]}``."""
    m = {"user_emb.weight": "user_embedding.weight",
         "item_emb.weight": "item_id_embedding.weight",
         f"features.{vision}": "image_embedding.weight",
         f"features.{text}": "text_embedding.weight",
         f"projectors.{vision}.reduce.weight": "image_reduce.weight",
         f"projectors.{vision}.reduce.bias": "image_reduce.bias",
         f"projectors.{vision}.proj.weight": "image_trs.weight",
         f"projectors.{vision}.proj.bias": "image_trs.bias",
         f"projectors.{text}.proj.weight": "text_trs.weight",
         f"projectors.{text}.proj.bias": "text_trs.bias",
         f"projectors.{vision}.norm.weight": "norm.weight",
         f"projectors.{vision}.norm.bias": "norm.bias",
         f"projectors.{text}.norm.weight": "norm.weight",    # one LayerNorm, two names
         f"projectors.{text}.norm.bias": "norm.bias",
         f"gates.{vision}.lin.weight": "gate_v.0.weight", f"gates.{vision}.lin.bias": "gate_v.0.bias",
         f"gates.{text}.lin.weight": "gate_t.0.weight", f"gates.{text}.lin.bias": "gate_t.0.bias",
         "fusion.query.0.weight": "query_common.0.weight",
         "fusion.query.0.bias": "query_common.0.bias",
         "fusion.query.2.weight": "query_common.2.weight"}
    iv, it = ours.modalities.index(vision), ours.modalities.index(text)
    for p in ("weight", "bias"):
        m[f"fusion.prefer.{iv}.{p}"] = f"gate_image_prefer.0.{p}"
        m[f"fusion.prefer.{it}.{p}"] = f"gate_text_prefer.0.{p}"
    m.update(_dream_map(f"projectors.{vision}.refine.", "dream_image."))
    m.update(_dream_map(f"projectors.{text}.refine.", "dream_text."))
    return m


def _split_bn(value: torch.Tensor, names: list[str]) -> dict:
    if value.dim() == 0:                      # num_batches_tracked: the same count in each
        return {n: value for n in names}
    return dict(zip(names, value.chunk(len(names))))


def copy_ours_to_theirs(ours: MambaRec, theirs: torch.nn.Module, mapping: dict) -> None:
    sd_o, sd_t = ours.state_dict(), theirs.state_dict()
    new = {}
    for k, v in mapping.items():
        if isinstance(v, list):
            new.update(_split_bn(sd_o[k], v))
        else:
            new[v] = sd_o[k]
    missing = sorted(set(sd_t) - set(new))
    if missing:
        raise RuntimeError(f"upstream parameters without a counterpart: {missing}")
    theirs.load_state_dict({k: new[k].clone() for k in sd_t})


def theirs_in_our_names(theirs: torch.nn.Module, mapping: dict, what: str = "grad") -> dict:
    """Upstream parameter gradients (or values) under our names."""
    params = dict(theirs.named_parameters())
    out = {}
    for k, v in mapping.items():
        names = v if isinstance(v, list) else [v]
        if not all(n in params for n in names):
            continue
        ts = [params[n].grad if what == "grad" else params[n].detach() for n in names]
        if any(t is None for t in ts):
            continue
        out[k] = torch.cat(ts) if isinstance(v, list) else ts[0]
    return out


# ----------------------------------------------------------------------------- the two sides
def build(args, data, vision, text, folder):
    upstream = import_upstream(args.upstream, "src", "models.mambarec",
                               required=("models/mambarec.py", "common/abstract_recommender.py"))
    cfg = MambaRecConfig(modalities=(vision, text), dropout=0.0,
                         mmd_weight=args.mmd_weight, mmd_sigmas=(args.mmd_sigma,),
                         reduction={vision: 8, text: None})
    torch.manual_seed(args.seed)
    ours = MambaRec(data, cfg)
    write_features(data, folder, (vision, text))
    stub = MMRecStub(data, folder, {
        "cl_loss": cfg.cl_weight, "n_ui_layers": cfg.num_ui_layers, "embedding_size": cfg.embedding_dim,
        "knn_k": cfg.knn_k, "n_layers": cfg.num_ii_layers, "reg_weight": cfg.reg_weight,
        "mmd_weight": args.mmd_weight, "mmd_kernel_bandwidth": args.mmd_sigma,
        "reduction_factor": 8}, vision, text, args.batch_size)
    theirs = upstream.MambaRec(stub.config, stub.loader)
    theirs.dropout.p = 0.0
    mapping = name_map(ours, vision, text)
    copy_ours_to_theirs(ours, theirs, mapping)
    ties = adopt_knn_graphs(ours, data, {vision: theirs.image_original_adj,
                                         text: theirs.text_original_adj})
    return ours, theirs, mapping, ties


def adopt_knn_graphs(ours: MambaRec, data, upstream: dict) -> dict:
    """Check that our kNN graphs differ from the authors' only where top-k
    breaks ties between equal similarities, then use theirs (so the rest of
    the comparison sees the same graphs). Returns ``{modality: rows that differ}``."""
    import torch.nn.functional as F
    from mmgraph.data.hetero import modality_features
    from mmgraph.graph import SparseAdj
    feats = modality_features(data)
    out = {}
    for m, adj in upstream.items():
        t = adj.coalesce()
        dense_t = t.to_dense()
        dense_o = ours.graph(f"knn_{m}").to_dense()
        rows = ((dense_o != 0) != (dense_t != 0)).any(1).nonzero().view(-1)
        x = F.normalize(feats[m], dim=1)
        for r in rows.tolist():
            sim = x[r] @ x.t()
            a, b = sim[dense_o[r] != 0].sort().values, sim[dense_t[r] != 0].sort().values
            if a.shape != b.shape or (a - b).abs().max() > 1e-6:
                raise AssertionError(f"kNN graph of {m!r}, row {r}: the neighbours differ beyond ties")
        out[m] = rows.numel()
        ours.register_graph(f"knn_{m}", SparseAdj.from_edge_index(
            t.indices(), t.values(), tuple(t.shape)))
    return out


def their_terms(model, users, pos, neg):
    """The authors' ``calculate_loss``, term by term (same calls, same order)."""
    ua, ia, side, content = model.forward(model.norm_adj, train=True)
    mf, emb, _ = model.bpr_loss(ua[users], ia[pos], ia[neg])
    su, si = torch.split(side, [model.n_users, model.n_items])
    cu, ci = torch.split(content, [model.n_users, model.n_items])
    cl = model.InfoNCE(si[pos], ci[pos], 0.2) + model.InfoNCE(su[users], cu[users], 0.2)
    img = model.dream_image(model.image_trs(model.image_reduce(model.image_embedding.weight)))[pos]
    txt = model.dream_text(model.text_trs(model.text_embedding.weight))[pos]
    mmd = model.mmd_weight * model.mmd_loss(img, txt)
    return {"bpr": mf, "reg": emb, "cl": model.cl_loss * cl, "mmd": mmd}


def one_step(ours, theirs, mapping, batch) -> dict:
    ours.train(), theirs.train()
    ours.zero_grad(), theirs.zero_grad()
    t_ours = ours.loss(batch, ours())
    sum(t_ours.values()).backward()
    t_theirs = their_terms(theirs, batch.users, batch.pos_items, batch.neg_items)
    sum(t_theirs.values()).backward()
    # the authors' calculate_loss itself gives the same total
    total = theirs.calculate_loss((batch.users, batch.pos_items, batch.neg_items)).item()
    grads_o = {k: p.grad for k, p in ours.named_parameters() if p.grad is not None}
    grads_t = theirs_in_our_names(theirs, mapping)
    return {"terms": compare({k: v.detach() for k, v in t_ours.items()},
                             {k: v.detach() for k, v in t_theirs.items()}),
            "values": {k: float(v) for k, v in t_ours.items()},
            "upstream_total": total,
            "grads": compare(grads_o, grads_t),
            "ungraded": sorted(set(mapping) - set(grads_t) - {k for k in mapping if "running" in k
                                                              or "num_batches" in k})}


def train_both(ours, theirs, data, batches, args) -> list[dict]:
    opt_o = torch.optim.Adam([p for p in ours.parameters() if p.requires_grad], lr=args.lr, fused=True)
    opt_t = torch.optim.Adam(theirs.parameters(), lr=args.lr)
    sch = [torch.optim.lr_scheduler.LambdaLR(o, lambda e: 0.96 ** (e / 50)) for o in (opt_o, opt_t)]

    def scorer():
        ue, ie = theirs.forward(theirs.norm_adj)
        return lambda u: ue[u] @ ie.t()
    return train_side_by_side(
        data, ours, theirs, opt_o, opt_t, batches, args.eval_every,
        lambda b: theirs.calculate_loss((b.users, b.pos_items, b.neg_items)), scorer,
        schedulers=sch)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", default=None, help="local checkout of github.com/rkl71/MambaRec")
    p.add_argument("--data", default="synthetic:baby_small",
                   help="dataset folder or synthetic spec (default: %(default)s)")
    p.add_argument("--modalities", default=None,
                   help="V,T: the data's modalities in the authors' image and text roles "
                        "(default: image,text, or the data's two modalities)")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--mmd-weight", type=float, default=0.1)
    p.add_argument("--mmd-sigma", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=999)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="write the results here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        import scipy  # noqa: F401  (the authors' graph code needs it)
    except ImportError:
        print("skip: the authors' code needs scipy (pip install scipy)")
        return 0
    data = load_dataset(a.data)
    mods = a.modalities.split(",") if a.modalities else (
        ["image", "text"] if {"image", "text"} <= set(modality_names(data)) else modality_names(data))
    if len(mods) != 2:
        print(f"error: the authors' code takes exactly two modalities, got {mods}", file=sys.stderr)
        return 2
    import tempfile
    folder = Path(tempfile.mkdtemp(prefix="mmgraph-parity-data-")) / "d"
    try:
        ours, theirs, mapping, ties = build(a, data, mods[0], mods[1], folder)
    except UpstreamMissing as e:
        print(f"skip: {e}. Clone github.com/rkl71/MambaRec and pass --upstream PATH.")
        return 0
    batches = fixed_batches(data, a.batch_size, a.steps, seed=a.seed)
    print(f"data {a.data}: modalities {mods[0]} (authors' image) and {mods[1]} (authors' text); "
          f"batch {a.batch_size}, {a.steps} steps")
    print("kNN graphs: rows whose neighbours differ only by the order of tied similarities "
          + ", ".join(f"{m} {n}" for m, n in ties.items()) + " (the authors' graphs are used on both sides)")
    # 1. one step on copies (the multi-step run starts from the same weights)
    step = one_step(copy.deepcopy(ours), copy.deepcopy(theirs), mapping, batches[0][1])
    print("one step, loss terms (ours vs upstream):")
    for r in step["terms"]:
        print(f"  {r['name']:5s} {step['values'][r['name']]:.6g}  max abs diff {r['max_abs']:.2e}")
    print(f"  total {sum(step['values'].values()):.6g}, upstream calculate_loss {step['upstream_total']:.6g}")
    print(f"one step, gradients of {len(step['grads'])} tensors:")
    big = [r for r in step["grads"] if r["norm"] >= ZERO_GRAD]
    worst = max(big, key=lambda r: r["rel_norm"])
    print(f"  {len(big)} with ||grad|| >= {ZERO_GRAD:g}: worst ||ours - upstream|| / ||upstream|| "
          f"{worst['rel_norm']:.2e} ({worst['name']})")
    small = [r for r in step["grads"] if r["norm"] < ZERO_GRAD]
    if small:
        print(f"  {len(small)} with ||grad|| < {ZERO_GRAD:g} (biases feeding a training-mode batch "
              f"norm, whose exact gradient is 0): largest element on either side "
              f"{max(max(r['scale'], r['max_abs']) for r in small):.1e}")
    if step["ungraded"]:
        print(f"  no gradient on either side: {step['ungraded']}")
    # 2. the same batches on both sides
    rows = train_both(ours, theirs, data, batches, a)
    last = rows[-1]
    print(f"seconds per step: ours {last['seconds_per_step']['ours']:.3f}, "
          f"upstream {last['seconds_per_step']['upstream']:.3f}")
    dl = max(abs(r["loss_ours"] - r["loss_upstream"]) for r in rows)
    print(f"max |loss difference| over {len(rows)} steps: {dl:.2e}")
    if a.json:
        Path(a.json).write_text(json.dumps({"data": a.data, "modalities": mods, "one_step": step,
                                            "steps": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
