"""REARM: mmgraph against the authors' own code (github.com/MrShouxingMa/REARM).

    git clone https://github.com/MrShouxingMa/REARM /path/to/REARM
    python benchmarks/parity/rearm.py --upstream /path/to/REARM \
        --data /path/to/tiktok --modalities image,audio --steps 200

The data are written once in the authors' layout (``data/<name>/train.npy,
valid.npy, test.npy`` as ``[2, E]``, ``image_feat.npy``, ``text_feat.npy``)
in a temporary folder, with users and items that have no interaction in any
split removed (the authors count users and items from the splits); mmgraph
reads the same files back, so both sides see identical data. The authors'
``Load_dataset`` runs in that folder (it caches its graph files there), then
``REARM(config, dataset)`` is built from a minimal config object.
mmgraph's freshly initialised weights are copied into the authors' model by
an explicit name map, then:

1. **graphs**: the authors' co-occurrence, item kNN and user interest graphs
   against ours, row by row (differences classified: ties in top-k, the
   authors' random padding of short co-occurrence rows, their popular-node
   fallback for rows without co-occurrence); then both sides use the
   authors' two homography graphs;
2. **one step**: every loss term (BPR, InfoNCE, orthogonality) and the
   gradient of every parameter, on one batch;
3. **``--steps`` steps** of AdamW (the authors' lr 5e-5 and weight decay
   5e-4) on the same batches and negatives: the total loss at every step
   and validation Recall@20 every ``--eval-every`` steps (MMRec protocol,
   mmgraph's evaluator for both sides).

``--modalities V,T`` names the data's modalities that play the authors'
image and text roles. Our model runs with ``homography_norm='joint'`` (the
authors' one normalisation of the whole homography row; the library default
normalises each part). The attention dropouts (``s_drop``, ``m_drop``) draw
random masks, so they are switched off on both sides; everything else runs
as released. Without ``--upstream`` (or with a wrong path) the script says
so and exits 0.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
import sys
import tempfile
import time
import types
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _upstream import (UpstreamMissing, compare, fixed_batches,  # noqa: E402
                       import_upstream, train_side_by_side)

from mmgraph.data import load_dataset, modality_names  # noqa: E402
from mmgraph.data.hetero import (modality_features, num_items, num_users,  # noqa: E402
                                 split_edge_index)
from mmgraph.data.io import read_npy_splits  # noqa: E402
from mmgraph.graph import (SparseAdj, bipartite_adjacency, cooccurrence_graph,  # noqa: E402
                           modality_knn_graph, user_interest_graph)
from mmgraph.models.rearm import REARM, REARMConfig  # noqa: E402

#: gradients below this norm are rounding noise around an exact zero
ZERO_GRAD = 1e-6
SPLITS = ("train", "valid", "test")


# ----------------------------------------------------------------------------- data
def write_authors_layout(data, vision: str, text: str, folder: Path) -> dict:
    """``folder/{train,valid,test}.npy`` (``[2, E]``) + ``image_feat.npy`` (``vision``)
    + ``text_feat.npy`` (``text``), ids compacted to the users and items that
    occur in some split. Returns how many were removed."""
    edges = {s: split_edge_index(data, s) for s in SPLITS}
    allu = torch.cat([e[0] for e in edges.values()]).unique()
    alli = torch.cat([e[1] for e in edges.values()]).unique()
    folder.mkdir(parents=True, exist_ok=True)
    for s, e in edges.items():
        np.save(folder / f"{s}.npy", torch.stack([torch.searchsorted(allu, e[0]),
                                                  torch.searchsorted(alli, e[1])]).numpy())
    feats = modality_features(data)
    np.save(folder / "image_feat.npy", feats[vision][alli].float().numpy())
    np.save(folder / "text_feat.npy", feats[text][alli].float().numpy())
    return {"users_removed": num_users(data) - allu.numel(),
            "items_removed": num_items(data) - alli.numel()}


def authors_config(cfg: REARMConfig, name: str) -> types.SimpleNamespace:
    """The attributes the authors' ``Load_dataset`` and ``REARM`` read (their
    ``utils/configurator.py`` names), from our config; dropout off."""
    return types.SimpleNamespace(
        dataset=name, device=torch.device("cpu"), embedding_dim=cfg.embedding_dim,
        reg_weight=5e-4, n_layers=cfg.num_layers, rank=cfg.rank, s_drop=0.0, m_drop=0.0,
        cl_tmp=cfg.temperature, cl_loss_weight=cfg.cl_weight,
        diff_loss_weight=cfg.diff_loss_weight, item_knn_k=cfg.item_knn_k,
        user_knn_k=cfg.user_knn_k, num_user_co=cfg.user_knn_k, num_item_co=cfg.item_knn_k,
        n_ii_layers=cfg.num_ii_layers, n_uu_layers=cfg.num_uu_layers,
        uu_co_weight=cfg.uu_co_weight, ii_co_weight=cfg.ii_co_weight,
        user_aggr_mode=cfg.co_weighting, i_mm_image_weight=cfg.i_mm_image_weight,
        u_mm_image_weight=cfg.u_mm_image_weight)


@contextmanager
def cwd(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


# ----------------------------------------------------------------------------- weights
def name_map() -> dict:
    """``{our_name: upstream_name}`` (modalities ``image``, ``text`` on our side)."""
    m = {"user_emb.weight": "user_id_embedding.weight",
         "item_emb.weight": "item_id_embedding.weight",
         "item_feat.image": "image_embedding.weight", "item_feat.text": "text_embedding.weight",
         "user_pref.image": "user_v_prefer", "user_pref.text": "user_t_prefer",
         "norm.weight": "ly_norm.weight", "norm.bias": "ly_norm.bias", "act.weight": "prl.weight"}
    for p in ("weight", "bias"):
        m[f"item_proj.image.{p}"] = f"image_i_trs.{p}"
        m[f"item_proj.text.{p}"] = f"text_i_trs.{p}"
        m[f"user_proj.image.{p}"] = f"image_u_trs.{p}"
        m[f"user_proj.text.{p}"] = f"text_u_trs.{p}"
    # self-attention per modality; cross-attention: the authors' mutual_i_attn1 takes
    # the text query over the image keys/values and gives the image output
    for ours, theirs in (("self_attn.image", "self_i_attn1"), ("self_attn.text", "self_i_attn2"),
                         ("cross_attn.image", "mutual_i_attn1"),
                         ("cross_attn.text", "mutual_i_attn2")):
        m.update({f"{ours}.in_weight": f"{theirs}.in_proj_weight",
                  f"{ours}.in_bias": f"{theirs}.in_proj_bias",
                  f"{ours}.out_weight": f"{theirs}.out_proj.weight",
                  f"{ours}.out_bias": f"{theirs}.out_proj.bias"})
    for side, s in (("user", "u"), ("item", "i")):
        for p in ("weight", "bias"):
            m[f"meta_{side}.compress.{p}"] = f"meta_net{s}.{p}"
        for gen, k in (("gen_in", 1), ("gen_out", 2)):
            for ours, theirs in (("lin1", "linear_pre"), ("lin2", "linear_out")):
                for p in ("weight", "bias"):
                    m[f"meta_{side}.{gen}.{ours}.{p}"] = f"mlp_{s}{k}.{theirs}.{p}"
            m[f"meta_{side}.{gen}.act.weight"] = f"mlp_{s}{k}.prl.weight"
    return m


def copy_ours_to_theirs(ours: REARM, theirs: torch.nn.Module, mapping: dict) -> None:
    sd_o, sd_t = ours.state_dict(), theirs.state_dict()
    missing = sorted(set(sd_t) - set(mapping.values()))
    if missing:
        raise RuntimeError(f"upstream parameters without a counterpart: {missing}")
    unknown = sorted(set(mapping) - set(sd_o))
    if unknown:
        raise RuntimeError(f"name map refers to parameters we do not have: {unknown}")
    theirs.load_state_dict({v: sd_o[k].reshape(sd_t[v].shape).clone() for k, v in mapping.items()})


def theirs_in_our_names(ours: REARM, theirs: torch.nn.Module, mapping: dict) -> dict:
    """Upstream parameter gradients under our names and shapes."""
    po, pt = dict(ours.named_parameters()), dict(theirs.named_parameters())
    return {k: pt[v].grad.reshape(po[k].shape) for k, v in mapping.items()
            if pt[v].grad is not None}


# ----------------------------------------------------------------------------- graphs
def _rows(adj) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(row, col, value) of a coalesced torch sparse tensor or a SparseAdj, row-major."""
    if isinstance(adj, SparseAdj):
        return adj.row, adj.col, adj.value.detach(), adj.size[0]
    t = adj.coalesce()
    r, c = t.indices().long()
    return r, c, t.values().detach().float(), t.shape[0]


def _per_row(row, col, val, n):
    order = torch.argsort(row * n + col)
    row, col, val = row[order], col[order], val[order]
    ptr = torch.zeros(n + 1, dtype=torch.long)
    ptr[1:] = torch.bincount(row, minlength=n).cumsum(0)
    return ptr, col, val


def compare_topk_graph(ours, theirs, tol: float = 1e-6) -> dict:
    """Rows whose neighbour sets differ, and whether each differs only by ties
    (the same multiset of kept values, i.e. of similarities or counts).
    ``max_abs`` is over the rows with identical neighbours."""
    ro, co, vo, n = _rows(ours)
    rt, ct, vt, _ = _rows(theirs)
    po, co, vo = _per_row(ro, co, vo, n)
    pt, ct, vt = _per_row(rt, ct, vt, n)
    differ, not_ties, max_abs = 0, [], 0.0
    for r in range(n):
        a, b = co[po[r]:po[r + 1]], ct[pt[r]:pt[r + 1]]
        va, vb = vo[po[r]:po[r + 1]], vt[pt[r]:pt[r + 1]]
        if a.shape == b.shape and torch.equal(a, b):
            if va.numel():
                max_abs = max(max_abs, (va - vb).abs().max().item())
            continue
        differ += 1
        if va.shape != vb.shape or (va.sort().values - vb.sort().values).abs().max() > tol:
            not_ties.append(r)
    return {"rows": n, "rows_differ": differ, "rows_differ_beyond_ties": len(not_ties),
            "first_beyond_ties": not_ties[:5], "max_abs_same_rows": max_abs}


def compare_cooccurrence(ours: SparseAdj, theirs, k: int) -> dict:
    """Our top-``k`` co-occurrence graph against the authors' ``topk_sample``.

    Rows with ``k`` co-occurring nodes: the same softmax weights, neighbours
    equal up to ties in the counts. Rows with ``0 < n < k``: the same
    neighbours, weights differ (the authors pad the row to ``k`` entries by
    repeating randomly chosen kept neighbours; ``co_fill='repeat'`` does too,
    with other random draws). Rows with none: empty with ``co_fill='none'``,
    the ``k`` most popular nodes for the authors (and ``'repeat'``: then
    counted as full rows)."""
    ro, co, vo, n = _rows(ours)
    rt, ct, vt, _ = _rows(theirs)
    po, co, vo = _per_row(ro, co, vo, n)
    pt, ct, vt = _per_row(rt, ct, vt, n)
    out = {"rows": n, "full": 0, "full_differ": 0, "full_differ_beyond_ties": 0,
           "full_max_abs": 0.0, "short": 0, "short_same_neighbours": 0, "short_max_abs": 0.0,
           "short_mass_moved": 0.0, "empty": 0}
    for r in range(n):
        a, b = co[po[r]:po[r + 1]], ct[pt[r]:pt[r + 1]]
        va, vb = vo[po[r]:po[r + 1]], vt[pt[r]:pt[r + 1]]
        if a.numel() == 0:
            out["empty"] += 1
        elif a.numel() >= k:
            out["full"] += 1
            if a.shape == b.shape and torch.equal(a, b):
                out["full_max_abs"] = max(out["full_max_abs"], (va - vb).abs().max().item())
            else:
                out["full_differ"] += 1
                if va.shape != vb.shape or (va.sort().values - vb.sort().values).abs().max() > 1e-6:
                    out["full_differ_beyond_ties"] += 1
        else:
            out["short"] += 1
            if a.shape == b.shape and torch.equal(a, b):
                out["short_same_neighbours"] += 1
                d = (va - vb).abs()
                out["short_max_abs"] = max(out["short_max_abs"], d.max().item())
                out["short_mass_moved"] += 0.5 * d.sum().item()
    if out["short"]:
        out["short_mass_moved"] /= out["short"]        # mean per short row (a row sums to 1)
    return out


def check_graphs(ours: REARM, data, theirs, dataset, helper, cfg: REARMConfig) -> dict:
    """Every graph the two sides build, compared (see module docstring)."""
    res = {}
    ki, ku = cfg.item_knn_k, cfg.user_knn_k
    for m, feat, prof in (("image", dataset.i_v_feat, dataset.u_v_interest),
                          ("text", dataset.i_t_feat, dataset.u_t_interest)):
        mine = modality_knn_graph(data, m, ki, normalization=None, store=False, weighted=True)
        res[f"item_knn_{m}"] = compare_topk_graph(mine * (1.0 / ki),
                                                  helper.get_knn_adj_mat(feat, ki, "cpu"))
        mine = user_interest_graph(data, m, ku, normalization=None, store=False, weighted=True)
        res[f"user_interest_{m}"] = compare_topk_graph(mine * (1.0 / ku),
                                                       helper.get_knn_adj_mat(prof, ku, "cpu"))
    res["item_cooccurrence"] = compare_cooccurrence(
        cooccurrence_graph(data, "item", ki, cfg.co_weighting, store=False, fill=cfg.co_fill),
        theirs.item_co_graph, ki)
    res["user_cooccurrence"] = compare_cooccurrence(
        cooccurrence_graph(data, "user", ku, cfg.co_weighting, store=False, fill=cfg.co_fill),
        theirs.user_co_graph, ku)
    res["user_item"] = compare_topk_graph(bipartite_adjacency(data), theirs.norm_adj, tol=1e-6)
    # from here on both sides propagate over the authors' homography graphs
    for name, g in (("ii", theirs.stre_ii_graph), ("uu", theirs.stre_uu_graph)):
        r, c, v, n = _rows(g)
        ours.register_graph(name, SparseAdj.from_edge_index(torch.stack([r, c]), v, (n, n)))
    return res


# ----------------------------------------------------------------------------- the two sides
def build(args, data_in, vision, text, root: Path):
    upstream = import_upstream(args.upstream, ".", "model",
                               required=("model.py", "utils/helper.py", "utils/data_loader.py"))
    loader = importlib.import_module("utils.data_loader")
    helper = importlib.import_module("utils.helper")
    name = "parity"
    removed = write_authors_layout(data_in, vision, text, root / "data" / name)
    data = read_npy_splits(root / "data" / name, name=name)
    cfg = REARMConfig(modalities=("image", "text"), s_drop=0.0, m_drop=0.0, co_fill=args.co_fill,
                      homography_norm="joint")
    torch.manual_seed(args.seed)
    ours = REARM(data, cfg)
    acfg = authors_config(cfg, name)
    np.random.seed(args.seed)           # the authors' co-occurrence padding draws from numpy
    t0 = time.perf_counter()
    with cwd(root):
        dataset = loader.Load_dataset(acfg)
        theirs = upstream.REARM(acfg, dataset)
    build_s = time.perf_counter() - t0
    mapping = name_map()
    copy_ours_to_theirs(ours, theirs, mapping)
    graphs = check_graphs(ours, data, theirs, dataset, helper, cfg)
    return data, ours, theirs, mapping, {"removed": removed, "graphs": graphs,
                                         "upstream_build_s": build_s}


def _their_batch(theirs, b):
    u = b.users.view(-1, 1)
    return (torch.cat([u, u], 1),
            torch.stack([b.pos_items, b.neg_items.view(-1)], 1) + theirs.n_users)


def their_terms(theirs, b) -> dict:
    _, bpr, _, cl, diff = theirs.loss(*_their_batch(theirs, b))
    return {"bpr": bpr, "cl": cl, "diff": diff}


def one_step(ours, theirs, mapping, batch) -> dict:
    ours.train(), theirs.train()
    ours.zero_grad(), theirs.zero_grad()
    t_ours = ours.loss(batch, ours())
    sum(t_ours.values()).backward()
    t_theirs = their_terms(theirs, batch)
    sum(t_theirs.values()).backward()
    grads_o = {k: p.grad for k, p in ours.named_parameters() if p.grad is not None}
    grads_t = theirs_in_our_names(ours, theirs, mapping)
    return {"terms": compare({k: v.detach() for k, v in t_ours.items()},
                             {k: v.detach() for k, v in t_theirs.items()}),
            "values": {k: float(v) for k, v in t_ours.items()},
            "grads": compare(grads_o, grads_t),
            "ungraded": sorted(set(mapping) - set(grads_o) | set(mapping) - set(grads_t))}


def train_both(ours, theirs, data, batches, args) -> list[dict]:
    # ours as mmgraph's Trainer builds it (fused AdamW over the trainable
    # tensors), theirs as their main.py does
    opt_o = torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=args.lr,
                              weight_decay=args.weight_decay, fused=True)
    opt_t = torch.optim.AdamW(theirs.parameters(), args.lr, weight_decay=args.weight_decay)

    def scorer():
        rep = theirs.forward()
        ue, ie = rep[:theirs.n_users], rep[theirs.n_users:]
        return lambda u: ue[u] @ ie.t()
    return train_side_by_side(
        data, ours, theirs, opt_o, opt_t, batches, args.eval_every,
        lambda b: theirs.loss(*_their_batch(theirs, b))[0], scorer, digits=6)


def _print_graphs(g: dict) -> None:
    print("graphs (ours vs the authors'):")
    for k, r in g.items():
        if "cooccurrence" in k:
            print(f"  {k}: {r['rows']} rows; {r['full']} with k neighbours: {r['full_differ']} "
                  f"differ, {r['full_differ_beyond_ties']} beyond ties in the counts, max |w| diff "
                  f"elsewhere {r['full_max_abs']:.1e}; {r['short']} with fewer: "
                  f"{r['short_same_neighbours']} same neighbours, weights differ by up to "
                  f"{r['short_max_abs']:.3f} (mean mass moved per row {r['short_mass_moved']:.3f},"
                  f" the authors' random padding); {r['empty']} without co-occurrence "
                  f"(the authors: the k most popular nodes)")
        else:
            print(f"  {k}: {r['rows']} rows, {r['rows_differ']} with other neighbours "
                  f"({r['rows_differ_beyond_ties']} beyond ties), max |value| diff on the others "
                  f"{r['max_abs_same_rows']:.1e}")
    print("  both sides propagate over the authors' item and user homography graphs from here on")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", default=None,
                   help="local checkout of github.com/MrShouxingMa/REARM")
    p.add_argument("--data", default="synthetic:baby_small",
                   help="dataset folder or synthetic spec (default: %(default)s)")
    p.add_argument("--modalities", default=None,
                   help="V,T: the data's modalities in the authors' image and text roles "
                        "(default: image,text, or the data's two modalities)")
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--lr", type=float, default=5e-5, help="the authors' default")
    p.add_argument("--weight-decay", type=float, default=5e-4,
                   help="AdamW's, the authors' --reg_weight default")
    p.add_argument("--co-fill", default="none", choices=("none", "repeat"),
                   help="our REARMConfig.co_fill for the graph comparison (default: %(default)s)")
    p.add_argument("--seed", type=int, default=999)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="write the results here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    os.environ.setdefault("TQDM_DISABLE", "1")       # the authors' graph builders print bars
    if not a.upstream or not Path(a.upstream).expanduser().is_dir():
        print(f"skip: no upstream checkout at {a.upstream!r}. Clone "
              f"github.com/MrShouxingMa/REARM and pass --upstream PATH.")
        return 0
    try:
        import scipy  # noqa: F401  (the authors' graph code needs it)
    except ImportError:
        print("skip: the authors' code needs scipy (pip install scipy)")
        return 0
    data_in = load_dataset(a.data)
    mods = a.modalities.split(",") if a.modalities else (
        ["image", "text"] if {"image", "text"} <= set(modality_names(data_in))
        else modality_names(data_in))
    if len(mods) != 2:
        print(f"error: the authors' code takes exactly two modalities, got {mods}", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="mmgraph-parity-rearm-"))
    try:
        data, ours, theirs, mapping, info = build(a, data_in, mods[0], mods[1], root)
    except UpstreamMissing as e:
        print(f"skip: {e}. Clone github.com/MrShouxingMa/REARM and pass --upstream PATH.")
        return 0
    print(f"data {a.data}: {mods[0]} in the authors' image role, {mods[1]} in their text role; "
          f"{num_users(data)} users x {num_items(data)} items (removed without any interaction: "
          f"{info['removed']['users_removed']} users, {info['removed']['items_removed']} items); "
          f"batch {a.batch_size}, {a.steps} steps; attention dropout off on both sides")
    print(f"the authors' Load_dataset + REARM build: {info['upstream_build_s']:.1f} s")
    _print_graphs(info["graphs"])
    batches = fixed_batches(data, a.batch_size, a.steps, seed=a.seed)
    # 1. one step on copies (the multi-step run starts from the same weights)
    step = one_step(copy.deepcopy(ours), copy.deepcopy(theirs), mapping, batches[0][1])
    print("one step, loss terms (ours, |ours - upstream|, relative):")
    for r in step["terms"]:
        print(f"  {r['name']:5s} {step['values'][r['name']]:.8g}  {r['max_abs']:.2e}  "
              f"{r['max_rel']:.2e}")
    big = [r for r in step["grads"] if r["norm"] >= ZERO_GRAD]
    worst = max(big, key=lambda r: r["rel_norm"])
    print(f"one step, gradients of {len(step['grads'])} tensors, {len(big)} with ||grad|| >= "
          f"{ZERO_GRAD:g}: worst ||ours - upstream|| / ||upstream|| {worst['rel_norm']:.2e} "
          f"({worst['name']}, ||grad|| {worst['norm']:.1e}), median "
          f"{sorted(r['rel_norm'] for r in big)[len(big) // 2]:.1e}")
    small = [r for r in step["grads"] if r["norm"] < ZERO_GRAD]
    if small:
        print(f"  {len(small)} with ||grad|| < {ZERO_GRAD:g}: largest element on either side "
              f"{max(max(r['scale'], r['max_abs']) for r in small):.1e}")
    if step["ungraded"]:
        print(f"  no gradient on one side or both: {step['ungraded']}")
    # 2. the same batches on both sides
    rows = train_both(ours, theirs, data, batches, a)
    last = rows[-1]
    dl = max(abs(r["loss_ours"] - r["loss_upstream"]) for r in rows)
    dr = max(abs(r["loss_ours"] - r["loss_upstream"]) / abs(r["loss_upstream"]) for r in rows)
    print(f"seconds per step: ours {last['seconds_per_step']['ours']:.3f}, "
          f"upstream {last['seconds_per_step']['upstream']:.3f}")
    print(f"max |loss difference| over {len(rows)} steps: {dl:.2e} (relative {dr:.2e})")
    if a.json:
        Path(a.json).write_text(json.dumps({"data": a.data, "modalities": mods, **info,
                                            "one_step": step, "steps": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
