"""GRCN: mmgraph against the MMRec toolbox's own ``grcn.py`` (github.com/enoche/MMRec).

    git clone https://github.com/enoche/MMRec /path/to/MMRec
    python benchmarks/parity/grcn.py --upstream /path/to/MMRec \
        --data synthetic:baby_small --steps 240 --eval-every 12 --num-routing 0

Both models are built on the same data; mmgraph's freshly initialised weights
are copied into MMRec's model by an explicit name map (ID embeddings, the
per-modality preferences and projections, the modality confidences), then:

1. **one step**: the forward representation of every node, the loss terms
   (BPR, regulariser) and the gradient of every parameter, on one batch with
   one negative per positive;
2. **``--steps`` steps** of Adam on the same batches and negatives: the total
   loss at every step and validation Recall@20 every ``--eval-every`` steps
   (the MMRec protocol through mmgraph's evaluator, with a fresh forward pass
   on both sides).

MMRec reads two modalities, ``v_feat`` and ``t_feat``; ``--modalities V,T``
says which of the data's modalities play those roles. ``--num-routing`` and
``--routing`` set mmgraph's (MMRec's yaml ``n_layers`` 3 is passed to MMRec;
its routing leaves the preferences unchanged, see ``docs/models/grcn.md``, so
``--routing mmrec`` or ``--num-routing 0`` is the exact counterpart). The
regulariser differs by one term MMRec adds (``reg_weight`` x the mean squared
visual preferences of all users); it is printed apart. MMRec's loss hard-codes
``.cuda()``: it is made a no-op for the CPU run, and restored afterwards.
Without ``--upstream`` (or with a wrong path) the script says so and exits 0.
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
from _upstream import (MMRecStub, UpstreamMissing, compare, cuda_calls_on_cpu,  # noqa: E402
                       fixed_batches, import_upstream, mmrec_roles, print_run_summary,
                       train_side_by_side, write_features)

from mmgraph.data import load_dataset, modality_names  # noqa: E402
from mmgraph.models.grcn import GRCN, GRCNConfig  # noqa: E402


def name_map(vision: str, text: str | None) -> dict:
    """Our parameter name -> MMRec's (the confidences are handled column-wise)."""
    m = {"id_emb": "id_gcn.id_embedding"}
    for ours, theirs in ((vision, "v_gcn"), (text, "t_gcn")):
        if ours is None:
            continue
        m[f"preference.{ours}"] = f"{theirs}.preference"
        m[f"mlp.{ours}.weight"] = f"{theirs}.MLP.weight"
        m[f"mlp.{ours}.bias"] = f"{theirs}.MLP.bias"
    return m


def build(a, data, vision, text, folder):
    upstream = import_upstream(a.upstream, "src", "models.grcn",
                               required=("models/grcn.py", "common/abstract_recommender.py"))
    mods = tuple(m for m in (vision, text) if m)
    sub = data.clone()
    for m in modality_names(data):                  # ours sees exactly MMRec's modalities
        if m not in mods:
            del sub["item"][f"x_{m}"]
    cfg = GRCNConfig(reg_weight=a.reg_weight, num_routing=a.num_routing, routing=a.routing)
    torch.manual_seed(a.seed)
    ours = GRCN(sub, cfg)
    write_features(data, folder, mods)
    stub = MMRecStub(data, folder, {"embedding_size": cfg.embedding_dim,
                                    "latent_embedding": cfg.latent_dim, "n_layers": 3,
                                    "reg_weight": cfg.reg_weight}, vision, text, a.batch_size)
    theirs = upstream.GRCN(stub.config, stub.loader)
    mapping = name_map(vision, text)
    sd_o = ours.state_dict()
    new = {t: sd_o[o].clone() for o, t in mapping.items()}
    cols = [ours.modalities.index(m) for m in mods]                # MMRec's order: v, t
    new["model_specific_conf"] = sd_o["confidence"][:, cols].clone()
    missing = sorted(set(theirs.state_dict()) - set(new))
    if missing:
        raise RuntimeError(f"upstream parameters without a counterpart: {missing}")
    theirs.load_state_dict(new)
    return ours, theirs, mapping, cols


def their_terms(model, users, pos, neg) -> dict:
    """MMRec's ``calculate_loss``, term by term (the same expressions, separated)."""
    n = model.n_users
    out = model.forward()
    u, p, q = out[users], out[pos + n], out[neg + n]
    diff = (u * p).sum(-1) - (u * q).sum(-1)
    emb = model.id_gcn.id_embedding
    ut, it = users.repeat_interleave(2), torch.stack((pos + n, neg + n)).t().reshape(-1)
    reg = (emb[ut] ** 2 + emb[it] ** 2).mean()
    for gcn in (model.v_gcn, getattr(model, "t_gcn", None)):
        if gcn is not None:
            reg = reg + (gcn.preference[ut] ** 2).mean()
    return {"bpr": -torch.log(torch.sigmoid(diff)).mean(), "reg": model.reg_weight * reg,
            "reg_all_users_visual": model.reg_weight * (model.v_gcn.preference ** 2).mean(),
            "representation": out}


def their_grads(theirs, mapping, cols) -> dict:
    params = dict(theirs.named_parameters())
    grads = {o: params[t].grad for o, t in mapping.items() if params[t].grad is not None}
    conf = params["model_specific_conf"].grad
    if conf is not None:
        full = conf.new_zeros(conf.size(0), max(cols) + 1)
        full[:, cols] = conf
        grads["confidence"] = full
    return grads


def one_step(ours, theirs, mapping, cols, batch) -> dict:
    ours.train(), theirs.train()
    ours.zero_grad(), theirs.zero_grad()
    out = ours()
    t_o = ours.loss(batch, out)
    sum(t_o.values()).backward()
    users, pos, neg = batch.users, batch.pos_items, batch.neg_items
    with torch.no_grad():
        t_t = their_terms(theirs, users, pos, neg)
    rep_t = t_t.pop("representation")
    total = theirs.calculate_loss((users, pos, neg)).squeeze()
    total.backward()
    rep_o = torch.cat([out.user, out.item]).detach()
    grads_o = {k: p.grad for k, p in ours.named_parameters() if p.grad is not None}
    return {"representation": compare({"representation": rep_o}, {"representation": rep_t}),
            "terms": compare({k: v.detach() for k, v in t_o.items()}, t_t),
            "values": {k: float(v.detach()) for k, v in t_o.items()},
            "upstream_values": {k: float(v) for k, v in t_t.items()},
            "upstream_total": float(total),
            "grads": compare(grads_o, their_grads(theirs, mapping, cols))}


def train_both(ours, theirs, data, batches, a) -> list[dict]:
    opt_o = torch.optim.Adam([p for p in ours.parameters() if p.requires_grad], lr=a.lr)
    opt_t = torch.optim.Adam(theirs.parameters(), lr=a.lr)
    n = theirs.n_users

    def scorer():
        rep = theirs.forward()
        return lambda u: rep[u] @ rep[n:].t()
    return train_side_by_side(
        data, ours, theirs, opt_o, opt_t, batches, a.eval_every,
        lambda b: theirs.calculate_loss((b.users, b.pos_items, b.neg_items)).squeeze(), scorer)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", default=None, help="local checkout of github.com/enoche/MMRec")
    p.add_argument("--data", default="synthetic:baby_small")
    p.add_argument("--modalities", default=None,
                   help="V[,T]: the data's modalities in MMRec's image and text roles "
                        "(default: image,text, or the data's modalities)")
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--eval-every", type=int, default=12)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--reg-weight", type=float, default=1e-5)
    p.add_argument("--num-routing", type=int, default=3, help="mmgraph's routing iterations")
    p.add_argument("--routing", default="paper", choices=("paper", "mmrec"),
                   help="mmgraph's routing direction (GRCNConfig.routing)")
    p.add_argument("--seed", type=int, default=999)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    data = load_dataset(a.data)
    mods, vision, text = mmrec_roles(data, a.modalities)
    folder = Path(tempfile.mkdtemp(prefix="mmgraph-parity-data-")) / "d"
    try:
        ours, theirs, mapping, cols = build(a, data, vision, text, folder)
    except UpstreamMissing as e:
        print(f"skip: {e}. Clone github.com/enoche/MMRec and pass --upstream PATH.")
        return 0
    batches = fixed_batches(data, a.batch_size, a.steps, seed=a.seed)
    print(f"data {a.data}: {vision} (MMRec's image) and {text} (MMRec's text); batch "
          f"{a.batch_size}, mmgraph routing {a.routing} x {a.num_routing}, {a.steps} steps")
    with cuda_calls_on_cpu():
        step = one_step(copy.deepcopy(ours), copy.deepcopy(theirs), mapping, cols, batches[0][1])
        r = step["representation"][0]
        print(f"one step, forward representation [U+I, D]: max abs diff {r['max_abs']:.2e} "
              f"(scale {r['scale']:.3g}), ||ours - MMRec|| / ||MMRec|| {r['rel_norm']:.2e}")
        print("one step, loss terms (ours vs MMRec):")
        for r in step["terms"]:
            print(f"  {r['name']:4s} {step['values'][r['name']]:+.8g} vs "
                  f"{step['upstream_values'][r['name']]:+.8g}  max abs diff {r['max_abs']:.2e}")
        extra = step["upstream_values"]["reg_all_users_visual"]
        print(f"  MMRec's extra term (reg_weight x mean squared visual preferences of all users) "
              f"{extra:+.3g}; calculate_loss {step['upstream_total']:+.8g}")
        print(f"one step, gradients of {len(step['grads'])} tensors "
              f"(||ours - MMRec|| / ||MMRec||):")
        for r in step["grads"]:
            print(f"  {r['name']:18s} {r['rel_norm']:.2e}")
        rows = train_both(ours, theirs, data, batches, a)
    print_run_summary(rows)
    if a.json:
        Path(a.json).write_text(json.dumps({"data": a.data, "modalities": mods, "args": vars(a),
                                            "one_step": step, "steps": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
