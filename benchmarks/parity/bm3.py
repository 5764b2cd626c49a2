"""BM3: mmgraph against the MMRec toolbox's own ``bm3.py`` (github.com/enoche/MMRec).

    git clone https://github.com/enoche/MMRec /path/to/MMRec
    python benchmarks/parity/bm3.py --upstream /path/to/MMRec \
        --data /path/to/tiktok --modalities image,audio --steps 200

Both models are built on the same data; mmgraph's freshly initialised weights
are copied into MMRec's model by an explicit name map, then:

1. **one step**: every loss term and the gradient of every parameter, on one
   batch of positive pairs (BM3 uses no negatives);
2. **``--steps`` steps** of Adam on the same batches: the total loss at
   every step (MMRec's ``1 - cos`` constants removed) and validation
   Recall@20 every ``--eval-every`` steps, through mmgraph's evaluator for
   both sides.

MMRec reads two modalities, ``v_feat`` and ``t_feat``; ``--modalities V[,T]``
says which of the data's modalities play those roles (one name: image only).
The target-view dropout draws random masks, so both runs use ``--dropout``
(default 0: exact parity; with ``p > 0`` the two sides draw different masks
and only the statistics agree). Without ``--upstream`` the script says so and
exits 0.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _upstream import (MMRecStub, UpstreamMissing, compare, fixed_batches,  # noqa: E402
                       import_upstream, mmrec_roles, print_run_summary, train_side_by_side,
                       write_features)

from mmgraph.data import load_dataset  # noqa: E402
from mmgraph.models.bm3 import BM3, BM3Config  # noqa: E402


def name_map(vision: str | None, text: str | None) -> dict:
    m = {"user_emb.weight": "user_embedding.weight", "item_emb.weight": "item_id_embedding.weight",
         "predictor.weight": "predictor.weight", "predictor.bias": "predictor.bias"}
    for ours, theirs in ((vision, "image"), (text, "text")):
        if ours is None:
            continue
        m[f"features.{ours}"] = f"{theirs}_embedding.weight"
        m[f"projectors.{ours}.proj.weight"] = f"{theirs}_trs.weight"
        m[f"projectors.{ours}.proj.bias"] = f"{theirs}_trs.bias"
    return m


def build(a, data, vision, text, folder):
    upstream = import_upstream(a.upstream, "src", "models.bm3",
                               required=("models/bm3.py", "common/abstract_recommender.py"))
    mods = tuple(m for m in (vision, text) if m)
    cfg = BM3Config(modalities=mods, dropout=a.dropout, num_layers=a.num_layers,
                    reg_weight=a.reg_weight)
    torch.manual_seed(a.seed)
    ours = BM3(data, cfg)
    write_features(data, folder, mods)
    stub = MMRecStub(data, folder, {"embedding_size": cfg.embedding_dim, "n_layers": cfg.num_layers,
                                    "reg_weight": cfg.reg_weight, "cl_weight": cfg.cl_weight,
                                    "dropout": cfg.dropout}, vision, text, a.batch_size)
    theirs = upstream.BM3(stub.config, stub.loader)
    mapping = name_map(vision, text)
    sd_o = ours.state_dict()
    new = {t: sd_o[o].clone() for o, t in mapping.items()}
    missing = sorted(set(theirs.state_dict()) - set(new))
    if missing:
        raise RuntimeError(f"upstream parameters without a counterpart: {missing}")
    theirs.load_state_dict(new)
    return ours, theirs, mapping


def their_terms(model, users, items) -> dict:
    """MMRec's ``calculate_loss``, term by term (same calls; its ``1 - cos`` constants removed)."""
    import torch.nn.functional as F
    from torch.nn.functional import cosine_similarity as cos
    u_ori, i_ori = model.forward()
    t_on = model.text_trs(model.text_embedding.weight) if model.t_feat is not None else None
    v_on = model.image_trs(model.image_embedding.weight) if model.v_feat is not None else None
    with torch.no_grad():
        u_t, i_t = F.dropout(u_ori.clone(), model.dropout), F.dropout(i_ori.clone(), model.dropout)
        t_t = F.dropout(t_on.clone(), model.dropout) if t_on is not None else None
        v_t = F.dropout(v_on.clone(), model.dropout) if v_on is not None else None
    u_on, i_on = model.predictor(u_ori)[users], model.predictor(i_ori)[items]
    u_t, i_t = u_t[users], i_t[items]
    align = mask = u_on.new_zeros(())
    for on, tgt in ((t_on, t_t), (v_on, v_t)):
        if on is None:
            continue
        p = model.predictor(on)[items]
        align = align - cos(p, i_t, dim=-1).mean()
        mask = mask - cos(p, tgt[items], dim=-1).mean()
    rec = -cos(u_on, i_t, dim=-1).mean() - cos(i_on, u_t, dim=-1).mean()
    return {"rec": rec, "align": model.cl_weight * align, "mask": model.cl_weight * mask,
            "reg": model.reg_weight * model.reg_loss(u_ori, i_ori).squeeze()}


def one_step(ours, theirs, mapping, batch) -> dict:
    ours.train(), theirs.train()
    ours.zero_grad(), theirs.zero_grad()
    t_o = ours.loss(batch, ours())
    sum(t_o.values()).backward()
    t_t = their_terms(theirs, batch.users, batch.pos_items)
    sum(t_t.values()).backward()
    n_mod = int(theirs.v_feat is not None) + int(theirs.t_feat is not None)
    total = theirs.calculate_loss((batch.users, batch.pos_items)).item()
    constants = 2.0 + 2.0 * n_mod * theirs.cl_weight                 # MMRec's "1 - cos" terms
    params_t = dict(theirs.named_parameters())
    grads_t = {o: params_t[t].grad for o, t in mapping.items() if params_t[t].grad is not None}
    grads_o = {k: p.grad for k, p in ours.named_parameters() if p.grad is not None}
    return {"terms": compare({k: v.detach() for k, v in t_o.items()},
                             {k: v.detach() for k, v in t_t.items()}),
            "values": {k: float(v) for k, v in t_o.items()},
            "upstream_total_minus_constants": total - constants,
            "grads": compare(grads_o, grads_t)}


def train_both(ours, theirs, data, batches, a) -> list[dict]:
    opt_o = torch.optim.Adam([p for p in ours.parameters() if p.requires_grad], lr=a.lr, fused=True)
    opt_t = torch.optim.Adam(theirs.parameters(), lr=a.lr)
    n_mod = int(theirs.v_feat is not None) + int(theirs.t_feat is not None)
    constants = 2.0 + 2.0 * n_mod * theirs.cl_weight      # MMRec's 1 - cos offsets

    def scorer():
        pu, pi = theirs.forward()
        pu, pi = theirs.predictor(pu), theirs.predictor(pi)
        return lambda u: pu[u] @ pi.t()
    return train_side_by_side(
        data, ours, theirs, opt_o, opt_t, batches, a.eval_every,
        lambda b: theirs.calculate_loss((b.users, b.pos_items)).squeeze() - constants, scorer)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", default=None, help="local checkout of github.com/enoche/MMRec")
    p.add_argument("--data", default="synthetic:baby_small")
    p.add_argument("--modalities", default=None,
                   help="V[,T]: the data's modalities in MMRec's image and text roles "
                        "(default: image,text, or the data's modalities)")
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--dropout", type=float, default=0.0,
                   help="target-view dropout on both sides (0: exact parity)")
    p.add_argument("--num-layers", type=int, default=1)
    p.add_argument("--reg-weight", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=999)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        import scipy  # noqa: F401  (MMRec's graph code needs it)
    except ImportError:
        print("skip: MMRec's code needs scipy (pip install scipy)")
        return 0
    data = load_dataset(a.data)
    mods, vision, text = mmrec_roles(data, a.modalities)
    folder = Path(tempfile.mkdtemp(prefix="mmgraph-parity-data-")) / "d"
    try:
        ours, theirs, mapping = build(a, data, vision, text, folder)
    except UpstreamMissing as e:
        print(f"skip: {e}. Clone github.com/enoche/MMRec and pass --upstream PATH.")
        return 0
    batches = fixed_batches(data, a.batch_size, a.steps, seed=a.seed, negatives=False)
    print(f"data {a.data}: {vision} (MMRec's image) and {text} (MMRec's text); batch "
          f"{a.batch_size}, dropout {a.dropout}, {a.steps} steps")
    step = one_step(copy.deepcopy(ours), copy.deepcopy(theirs), mapping, batches[0][1])
    print("one step, loss terms (ours vs MMRec, MMRec's '1 - cos' constants removed):")
    for r in step["terms"]:
        print(f"  {r['name']:5s} {step['values'][r['name']]:+.6g}  max abs diff {r['max_abs']:.2e}")
    print(f"  total {sum(step['values'].values()):+.6g}; MMRec calculate_loss minus constants "
          f"{step['upstream_total_minus_constants']:+.6g}")
    worst = max(step["grads"], key=lambda r: r["rel_norm"])
    print(f"one step, gradients of {len(step['grads'])} tensors: worst ||ours - MMRec|| / ||MMRec|| "
          f"{worst['rel_norm']:.2e} ({worst['name']})")
    rows = train_both(ours, theirs, data, batches, a)
    print_run_summary(rows)
    if a.json:
        Path(a.json).write_text(json.dumps({"data": a.data, "modalities": mods, "one_step": step,
                                            "steps": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
