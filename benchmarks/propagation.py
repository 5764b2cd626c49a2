"""LightGCN propagation throughput: mmgraph vs PyG LGConv(edge_index) vs MMRec-style COO spmm;
with ``--types``, mmgraph's sparse type against PyG's own (``EdgeIndex``, torch CSR).

    python benchmarks/propagation.py [--data real|synthetic] [--threads N] [--repeat R] [--quick]
    python benchmarks/propagation.py --types [--threads 1] [--repeat R] [--epoch-rounds E]
                                     [--epoch-batches B] [--quick]

Forward + backward time (64-d, float32) of

* **one layer** and
* **a 4-layer encoder** with the LightGCN readout (mean of layers 0..4),

side by side in one run for

* **mmgraph**: :class:`mmgraph.nn.LightGCNConv` / :class:`mmgraph.nn.LightGCNEncoder`
  on the cached CSR :func:`mmgraph.graph.bipartite_adjacency` (symmetric: the
  backward pass reuses the forward CSR);
* **PyG LGConv**: :class:`torch_geometric.nn.LGConv` on the homogeneous
  ``edge_index``; as LGConv does, ``gcn_norm`` runs inside every call and
  messages go through gather/scatter;
* **COO spmm (MMRec)**: the normalised adjacency as a COO sparse tensor
  (MMRec builds it with the legacy ``torch.sparse.FloatTensor(i, v, shape)``,
  which is ``torch.sparse_coo_tensor``), ``torch.sparse.mm`` per layer,
  ``torch.stack(...).mean(1)`` readout.

The script first checks that all three give the same outputs and input
gradients. Data: ``../shared/data/baby/train.npy`` (real Amazon Baby) when
present, else a random bipartite graph at Baby scale (19,445 users, 7,050
items, 118,551 distinct edges). Targets (CPU, 4-layer fwd+bwd): >= 2x faster
than COO spmm, >= 5x faster than LGConv(edge_index).

Sparse types (``--types``)
--------------------------
Should mmgraph keep its own CSR type or build on PyG's? The same normalised
adjacency (:func:`mmgraph.graph.bipartite_adjacency`, symmetric) as

* **SparseAdj**: :class:`mmgraph.nn.LightGCNEncoder` on the ``SparseAdj``
  (custom autograd Function; the backward reuses the forward CSR);
* **EdgeIndex.matmul**: :class:`torch_geometric.EdgeIndex` sorted by row
  (``is_undirected``, CSR pointer cached), ``ei.matmul(h, input_value=w)``
  per layer (PyG's own autograd: the backward permutes the values to the
  transposed order and multiplies with a CSR ``@``);
* **LightGCNEncoder on EdgeIndex**: our encoder on ``adj.to_edge_index()``
  (PyG message flow, sorted by target), i.e. ``MessagePassing.propagate``'s
  fused ``EdgeIndex`` path (``matmul(..., transpose=True)``): what the library
  would run if it were built on ``EdgeIndex``;
* **torch CSR + utils.spmm**: ``torch_geometric.utils.spmm(csr, h)`` on a
  ``torch.sparse_csr_tensor`` (torch's autograd of ``torch.sparse.mm``);
* **torch CSR @**: plain ``csr @ h``;

the references with the same mean-of-layers readout. First the 4-layer
forward+backward (64-d) is checked (outputs and input gradients, max abs
difference against SparseAdj printed) and timed in interleaved rounds; then
whole LightGCN training epochs (BPR, batch 2048, Adam; the trainer's own
epoch loop) run with the propagation swapped (the model's ``encoder``
replaced inside this script; same initial weights, same batches), also
interleaved, and the parameters after the timed epochs are compared.
Data: real Amazon Baby through :func:`mmgraph.data.load_dataset` when
``../shared/data/baby`` is present, else ``synthetic:baby``. Writes the
``Sparse types: ...`` section of RESULTS.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import append_results, command_line, machine_info, timeit  # noqa: E402

from mmgraph.graph import bipartite_adjacency_from_edges  # noqa: E402
from mmgraph.nn import LightGCNConv, LightGCNEncoder  # noqa: E402

BABY = Path(__file__).resolve().parents[2] / "shared" / "data" / "baby" / "train.npy"
N_USERS, N_ITEMS, N_EDGES = 19_445, 7_050, 118_551


def load_edges(kind: str, seed: int = 0) -> tuple[torch.Tensor, int, int, str]:
    if kind == "real" and BABY.is_file():
        tr = torch.from_numpy(np.load(BABY)).long()
        return tr, int(tr[0].max()) + 1, int(tr[1].max()) + 1, f"real Amazon Baby ({BABY})"
    g = torch.Generator().manual_seed(seed)
    keys = torch.empty(0, dtype=torch.long)
    while keys.numel() < N_EDGES:  # distinct random edges
        extra = torch.randint(0, N_USERS * N_ITEMS, (N_EDGES,), generator=g)
        keys = torch.unique(torch.cat([keys, extra]))
    keys = keys[torch.randperm(keys.numel(), generator=g)[:N_EDGES]]
    tr = torch.stack([keys // N_ITEMS, keys % N_ITEMS])
    why = "" if kind == "synthetic" else " (real data not found)"
    return tr, N_USERS, N_ITEMS, f"random Baby-scale bipartite graph{why}"


class COOReference(torch.nn.Module):
    """MMRec-style LightGCN propagation: COO normalised adjacency + torch.sparse.mm."""

    def __init__(self, tr: torch.Tensor, n_users: int, n_items: int):
        super().__init__()
        self.n_users = n_users
        u, i = tr[0], tr[1] + n_users
        row, col = torch.cat([u, i]), torch.cat([i, u])
        n = n_users + n_items
        deg = torch.zeros(n).index_add_(0, row, torch.ones(row.numel()))
        dinv = deg.pow(-0.5)
        dinv[torch.isinf(dinv)] = 0.0
        self.adj = torch.sparse_coo_tensor(torch.stack([row, col]), dinv[row] * dinv[col],
                                           (n, n)).coalesce()

    def layer(self, x):
        return torch.sparse.mm(self.adj, x)

    def forward(self, xu, xi, layers):
        ego = torch.cat([xu, xi], 0)
        embs = [ego]
        for _ in range(layers):
            ego = torch.sparse.mm(self.adj, ego)
            embs.append(ego)
        out = torch.stack(embs, dim=1).mean(dim=1)
        return out[:self.n_users], out[self.n_users:]


class LGConvReference(torch.nn.Module):
    """PyG's LGConv stacked on the homogeneous edge_index (gcn_norm inside every call)."""

    def __init__(self, tr: torch.Tensor, n_users: int):
        super().__init__()
        from torch_geometric.nn import LGConv
        self.n_users = n_users
        u, i = tr[0], tr[1] + n_users
        self.edge_index = torch.stack([torch.cat([u, i]), torch.cat([i, u])])
        self.conv = LGConv()

    def layer(self, x):
        return self.conv(x, self.edge_index)

    def forward(self, xu, xi, layers):
        x = torch.cat([xu, xi], 0)
        xs = [x]
        for _ in range(layers):
            x = self.conv(x, self.edge_index)
            xs.append(x)
        out = torch.stack(xs, dim=0).mean(dim=0)
        return out[:self.n_users], out[self.n_users:]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="real", choices=["real", "synthetic"])
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--repeat", type=int, default=10, help="timed runs per measurement (median)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--quick", action="store_true", help="3 repeats (smoke run)")
    p.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    p.add_argument("--types", action="store_true",
                   help="compare sparse types (SparseAdj, EdgeIndex, torch CSR), propagation "
                        "and training epochs, instead of the peers")
    p.add_argument("--epoch-rounds", type=int, default=3,
                   help="--types: interleaved training-epoch rounds (median)")
    p.add_argument("--epoch-batches", type=int, default=0,
                   help="--types: time the first B batches of each epoch (0: whole epochs)")
    p.add_argument("--chunk", type=int, default=4,
                   help="--types: the epoch variants take turns every CHUNK batches")
    p.add_argument("--value-repeat", type=int, default=5,
                   help="--types: rounds of the learned-values measurement (torch CSR takes "
                        "seconds per call)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    repeat = 3 if a.quick else a.repeat
    torch.manual_seed(0)
    if a.types:
        return sparse_types(a, repeat)

    tr, n_users, n_items, label = load_edges(a.data)
    n = n_users + n_items
    print(machine_info())
    print(f"data: {label}: {n_users} users, {n_items} items, {tr.size(1)} edges; "
          f"dim {a.dim}, {a.layers} layers, median of {repeat} interleaved rounds")

    build = timeit(lambda: bipartite_adjacency_from_edges(tr, n_users, n_items), 3, 1)
    adj = bipartite_adjacency_from_edges(tr, n_users, n_items)
    ours_conv, ours_enc = LightGCNConv(), LightGCNEncoder(a.layers)
    coo, pyg = COOReference(tr, n_users, n_items), LGConvReference(tr, n_users)

    xu = torch.randn(n_users, a.dim, requires_grad=True)
    xi = torch.randn(n_items, a.dim, requires_grad=True)
    x = torch.randn(n, a.dim, requires_grad=True)
    g_u, g_i, g_x = torch.randn(n_users, a.dim), torch.randn(n_items, a.dim), torch.randn(n, a.dim)

    methods = {
        "mmgraph (CSR, symmetric backward)": (lambda: ours_conv(x, adj),
                                              lambda: ours_enc(xu, xi, adj)),
        "PyG LGConv(edge_index)": (lambda: pyg.layer(x), lambda: pyg(xu, xi, a.layers)),
        "COO torch.sparse.mm (MMRec)": (lambda: coo.layer(x), lambda: coo(xu, xi, a.layers)),
    }

    # ---- numerical agreement (outputs and input gradients) ----------------
    ref = None
    for name, (one, enc) in methods.items():
        xu.grad = xi.grad = x.grad = None
        u, i = enc()
        torch.autograd.backward([u, i], [g_u, g_i])
        h = one()
        h.backward(g_x)
        got = [u.detach(), i.detach(), xu.grad.clone(), xi.grad.clone(), h.detach(), x.grad.clone()]
        if ref is None:
            ref = got
        else:
            for gv, rv in zip(got, ref):
                if not torch.allclose(gv, rv, atol=1e-4, rtol=1e-4):
                    print(f"MISMATCH: {name} differs from mmgraph by "
                          f"{(gv - rv).abs().max().item():.3g}")
                    return 1
    print("check: all three give the same outputs and gradients (atol 1e-4)")

    # ---- timing --------------------------------------------------------------
    def fwd_bwd_one(one):
        def f():
            x.grad = None
            one().backward(g_x)
        return f

    def fwd_bwd_enc(enc):
        def f():
            xu.grad = xi.grad = None
            u, i = enc()
            torch.autograd.backward([u, i], [g_u, g_i])
        return f

    def fwd_enc(enc):
        def f():
            with torch.no_grad():
                enc()
        return f

    # Interleaved rounds (every method once per round, medians over rounds) so that
    # all methods see the same load on a shared machine.
    fns = {name: (fwd_bwd_one(one), fwd_bwd_enc(enc), fwd_enc(enc))
           for name, (one, enc) in methods.items()}
    for fs in fns.values():  # warm-up
        for f in fs:
            f()
    samples = {name: ([], [], []) for name in fns}
    for _ in range(repeat):
        for name, fs in fns.items():
            for f, store in zip(fs, samples[name]):
                store.append(timeit(f, 1, 0))
    rows = {name: tuple(statistics.median(v) for v in samples[name]) for name in fns}
    for name, (t1, t4, tf) in rows.items():
        print(f"{name:36s} 1 layer fwd+bwd {t1 * 1e3:8.2f} ms | {a.layers}-layer fwd+bwd "
              f"{t4 * 1e3:8.2f} ms | {a.layers}-layer fwd {tf * 1e3:8.2f} ms")
    ours = rows["mmgraph (CSR, symmetric backward)"]
    r_coo = rows["COO torch.sparse.mm (MMRec)"][1] / ours[1]
    r_pyg = rows["PyG LGConv(edge_index)"][1] / ours[1]
    print(f"{a.layers}-layer fwd+bwd speed-up: {r_coo:.2f}x vs COO spmm (target >= 2), "
          f"{r_pyg:.2f}x vs LGConv(edge_index) (target >= 5)")

    lines = [
        f"Command: `{command_line()}`",
        "",
        f"Machine: {machine_info()}",
        "",
        f"Data: {label}: {n_users} users, {n_items} items, {tr.size(1)} edges; dim {a.dim}; "
        f"median of {repeat} interleaved rounds; adjacency build (once, cached) {build * 1e3:.1f} ms. "
        "All three methods checked equal (outputs and gradients, atol 1e-4).",
        "",
        f"| method | 1 layer fwd+bwd (ms) | {a.layers}-layer encoder fwd+bwd (ms) | "
        f"{a.layers}-layer fwd only (ms) | {a.layers}-layer fwd+bwd vs mmgraph |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, (t1, t4, tf) in rows.items():
        lines.append(f"| {name} | {t1 * 1e3:.2f} | {t4 * 1e3:.2f} | {tf * 1e3:.2f} | "
                     f"{t4 / ours[1]:.2f}x |")
    lines += ["", f"Targets (CPU, {a.layers}-layer fwd+bwd): >= 2x vs COO spmm -> "
              f"**{r_coo:.2f}x**; >= 5x vs LGConv(edge_index) -> **{r_pyg:.2f}x**."]
    if not a.no_write:
        path = append_results("Propagation: LightGCN layer and encoder (fwd+bwd)", "\n".join(lines))
        print(f"wrote {path}")
    return 0


# ------------------------------------------------------------- sparse types
class _Batches:
    """The next ``n`` batches of a running batch iterator, as a loader for the trainer's
    epoch loop (so that variants can take turns, ``n`` batches each, within one epoch)."""

    def __init__(self, it, n: int):
        self.it, self.n = it, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for _ in range(self.n):
            yield next(self.it)


class _SwappedEncoder(torch.nn.Module):
    """Stands in for ``LightGCN.encoder``: same call, propagation of our choosing
    (the model's own ``SparseAdj`` argument is ignored)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x_user, x_item, adj=None):
        return self.fn(x_user, x_item)


def _mean_readout(step, n_users: int, layers: int):
    """LightGCN's mean-of-layers readout around a one-layer ``step`` (users first)."""
    def enc(xu, xi):
        h = torch.cat([xu, xi])
        acc = h
        for _ in range(layers):
            h = step(h)
            acc = acc + h
        out = acc / (layers + 1)
        return out[:n_users], out[n_users:]
    return enc


def type_variants(adj, n_users: int, layers: int) -> dict:
    """``{name: enc(x_user, x_item) -> (user, item)}`` for the same normalised adjacency."""
    from torch_geometric.utils import spmm
    ei_row, w_row = adj.to_edge_index("target_to_source")   # sorted by row, CSR pointer cached
    ei_msg, w_msg = adj.to_edge_index()                      # PyG message flow, sorted by target
    csr = adj.to_torch_sparse()
    ours = LightGCNEncoder(layers)
    ours_ei = LightGCNEncoder(layers, normalize=False)
    return {
        "SparseAdj (LightGCNEncoder)": lambda xu, xi: ours(xu, xi, adj),
        "EdgeIndex.matmul (row-sorted)": _mean_readout(
            lambda h: ei_row.matmul(h, input_value=w_row), n_users, layers),
        "LightGCNEncoder on EdgeIndex (to_edge_index)": lambda xu, xi: ours_ei(
            xu, xi, ei_msg, edge_weight=w_msg),
        "torch CSR + PyG utils.spmm": _mean_readout(
            lambda h: spmm(csr, h, reduce="sum"), n_users, layers),
        "torch CSR @": _mean_readout(lambda h: csr @ h, n_users, layers),
    }


def value_variants(adj) -> dict:
    """``{name: f(x, v) -> A_v @ x}``: one layer whose edge values ``v`` take gradients too
    (learned edge weights, GRCN's case), same structure as ``adj``."""
    from torch_geometric.utils import spmm
    ei_row, _ = adj.to_edge_index("target_to_source")
    ei_msg, _ = adj.to_edge_index()
    conv = LightGCNConv(normalize=False)
    return {
        "SparseAdj (LightGCNEncoder)": lambda x, v: adj.with_value(v, symmetric=False).matmul(x),
        "EdgeIndex.matmul (row-sorted)": lambda x, v: ei_row.matmul(x, input_value=v),
        "LightGCNEncoder on EdgeIndex (to_edge_index)": lambda x, v: conv(x, ei_msg, v),
        "torch CSR + PyG utils.spmm": lambda x, v: spmm(
            torch.sparse_csr_tensor(adj.rowptr, adj.col, v, adj.size), x, reduce="sum"),
    }


def _load_data(kind: str):
    from mmgraph.data import load_dataset
    real = BABY.parent
    if kind == "real" and BABY.is_file():
        return load_dataset(real), f"real Amazon Baby ({real}, load_dataset)"
    why = "" if kind == "synthetic" else " (real data not found)"
    return load_dataset("synthetic:baby"), f"synthetic:baby{why}"


def _interleaved(fns: dict, rounds: int) -> dict:
    """``{name: [seconds per round]}``: every function once per round, in turn."""
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, f in fns.items():
            samples[name].append(timeit(f, 1, 0))
    return samples


def _paired(samples: dict, base: str) -> dict:
    """``{name: (median seconds, median, min, max of the per-round ratio to base)}``."""
    out = {}
    for name, v in samples.items():
        ratios = [t / b for t, b in zip(v, samples[base])]
        out[name] = (statistics.median(v), statistics.median(ratios), min(ratios), max(ratios))
    return out


def _max_diff(got, ref) -> float:
    return max(float((g - r).abs().max()) for g, r in zip(got, ref))


def sparse_types(a, repeat: int) -> int:
    import warnings

    from mmgraph.data import num_items, num_users, split_edge_index
    from mmgraph.graph import bipartite_adjacency
    from mmgraph.models import LightGCN, LightGCNConfig
    from mmgraph.sampling import InteractionLoader
    from mmgraph.train import TrainConfig, Trainer

    warnings.filterwarnings("ignore", message="Sparse invariant checks")   # torch, once
    warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta")
    data, label = _load_data(a.data)
    n_users, n_items = num_users(data), num_items(data)
    n_edges = split_edge_index(data, "train").size(1)
    adj = bipartite_adjacency(data)
    n = n_users + n_items
    rounds = 1 if a.quick else a.epoch_rounds
    print(machine_info())
    print(f"data: {label}: {n_users} users, {n_items} items, {n_edges} train edges; dim {a.dim}, "
          f"{a.layers} layers; propagation: {repeat} interleaved rounds; epochs: {rounds} "
          f"rounds, variants taking turns every {a.chunk} batches")
    variants = type_variants(adj, n_users, a.layers)
    base = next(iter(variants))

    # ---- fixed edge weights: agreement, then 4-layer fwd+bwd and fwd-only timings -----
    xu = torch.randn(n_users, a.dim, requires_grad=True)
    xi = torch.randn(n_items, a.dim, requires_grad=True)
    g_u, g_i = torch.randn(n_users, a.dim), torch.randn(n_items, a.dim)
    ref, diffs = None, {}
    for name, enc in variants.items():
        xu.grad = xi.grad = None
        u, i = enc(xu, xi)
        torch.autograd.backward([u, i], [g_u, g_i])
        got = [u.detach(), i.detach(), xu.grad.clone(), xi.grad.clone()]
        ref = got if ref is None else ref
        diffs[name] = (_max_diff(got[:2], ref[:2]), _max_diff(got[2:], ref[2:]))
        print(f"check {name:46s} max |diff| vs {base}: output {diffs[name][0]:.2e}, "
              f"input gradient {diffs[name][1]:.2e}")

    def fwd_bwd(enc):
        def f():
            xu.grad = xi.grad = None
            u, i = enc(xu, xi)
            torch.autograd.backward([u, i], [g_u, g_i])
        return f

    def fwd(enc):
        def f():
            with torch.no_grad():
                enc(xu, xi)
        return f

    fns = {}
    for name, enc in variants.items():
        fns[(name, "fb")], fns[(name, "f")] = fwd_bwd(enc), fwd(enc)
    for f in fns.values():                                # warm-up
        f()
    samples = _interleaved(fns, repeat)
    prop = _paired({name: samples[(name, "fb")] for name in variants}, base)
    prop_f = {name: statistics.median(samples[(name, "f")]) for name in variants}
    for name, (t, r, lo, hi) in prop.items():
        print(f"{name:46s} {a.layers}-layer fwd+bwd {t * 1e3:8.1f} ms, {r:.2f}x "
              f"(rounds {lo:.2f}-{hi:.2f}) | fwd {prop_f[name] * 1e3:8.1f} ms")

    # ---- learned edge values: one layer, gradients to x and to the values -------------
    x = torch.randn(n, a.dim, requires_grad=True)
    g_x = torch.randn(n, a.dim)
    v = adj.value.detach().clone().requires_grad_()
    vvars = value_variants(adj)
    vref, vdiffs = None, {}
    for name, f in vvars.items():
        x.grad = v.grad = None
        out = f(x, v)
        out.backward(g_x)
        got = [out.detach(), x.grad.clone(), v.grad.clone()]
        vref = got if vref is None else vref
        vdiffs[name] = tuple(_max_diff([g], [r]) for g, r in zip(got, vref))
        print(f"check {name:46s} learned values, max |diff|: output {vdiffs[name][0]:.2e}, "
              f"x gradient {vdiffs[name][1]:.2e}, value gradient {vdiffs[name][2]:.2e}")

    def vstep(f):
        def run():
            x.grad = v.grad = None
            f(x, v).backward(g_x)
        return run

    vrounds = max(1, a.value_repeat if not a.quick else 1)
    vals = _paired(_interleaved({name: vstep(f) for name, f in vvars.items()}, vrounds), base)
    for name, (t, r, lo, hi) in vals.items():
        print(f"{name:46s} learned values, 1 layer fwd+bwd {t * 1e3:8.1f} ms, {r:.2f}x")

    # ---- training epochs with the propagation swapped ---------------------------------
    # Variants take turns every `chunk` batches inside each epoch, so that a change of the
    # machine's load hits all of them alike; an epoch's time is the sum of its chunks.
    cfg = LightGCNConfig(num_layers=a.layers, embedding_dim=a.dim, reg_weight=1e-4)
    runs = {}
    for name in variants:
        torch.manual_seed(0)                             # same initial weights everywhere
        model = LightGCN(data, cfg)
        if name != base:
            model.encoder = _SwappedEncoder(type_variants(adj, n_users, a.layers)[name])
        trainer = Trainer(model, data, TrainConfig(epochs=1, progress=False, seed=0))
        loader = InteractionLoader(data, batch_size=2048,
                                   generator=torch.Generator().manual_seed(0))
        runs[name] = (model, trainer, trainer._make_optimizer(), loader)
    n_batches = len(runs[base][3])
    if a.epoch_batches > 0:
        n_batches = min(n_batches, a.epoch_batches)
    elif a.quick:
        n_batches = min(n_batches, 2 * a.chunk)
    warm = next(iter(InteractionLoader(data, batch_size=2048,
                                       generator=torch.Generator().manual_seed(1))))
    for model, *_ in runs.values():                      # warm-up: gradients, no step
        sum(model.loss(warm, model()).values()).backward()
        model.zero_grad(set_to_none=True)
    epoch_s = {name: [] for name in runs}
    losses = {name: [] for name in runs}
    for e in range(rounds):
        its = {name: iter(loader) for name, (_m, _t, _o, loader) in runs.items()}
        spent = dict.fromkeys(runs, 0.0)
        loss_sum = dict.fromkeys(runs, 0.0)
        for start in range(0, n_batches, a.chunk):
            k = min(a.chunk, n_batches - start)
            for name, (model, trainer, opt, _loader) in runs.items():
                row = trainer._train_epoch(e, _Batches(its[name], k), opt)
                spent[name] += row["train_seconds"]
                loss_sum[name] += row["loss"] * k
        for name in runs:
            epoch_s[name].append(spent[name])
            losses[name].append(loss_sum[name] / n_batches)
    epoch = _paired(epoch_s, base)
    params0 = dict(runs[base][0].named_parameters())
    pdiffs = {}
    for name, (model, *_rest) in runs.items():
        with torch.no_grad():
            pdiffs[name] = max(float((p - params0[k]).abs().max())
                               for k, p in model.named_parameters())
        ldiff = max(abs(x - y) for x, y in zip(losses[name], losses[base]))
        t, r, lo, hi = epoch[name]
        print(f"epoch {name:46s} {t:7.2f} s, {r:.2f}x (rounds {lo:.2f}-{hi:.2f}); after "
              f"{rounds} epoch(s): max |param diff| {pdiffs[name]:.2e}, "
              f"|mean loss diff| {ldiff:.2e}")
    if max(max(d) for d in diffs.values()) > 1e-4 or max(pdiffs.values()) > 1e-4 \
            or max(d[0] + d[1] for d in vdiffs.values()) > 1e-4:
        print("MISMATCH: a sparse type differs from SparseAdj by more than 1e-4")
        return 1

    # ---- conclusion ------------------------------------------------------------------------
    ei_names = [name for name in variants if "EdgeIndex" in name]
    best_ei = min(ei_names, key=lambda name: epoch[name][1])
    _t, gain, gain_lo, _hi = epoch[best_ei]
    clear = gain >= CLEAR_WIN and gain_lo > 1.0
    best_v = min((name for name in vals if "EdgeIndex" in name), key=lambda name: vals[name][1])
    verdict = (
        (f"SparseAdj wins clearly at the epoch level: the fastest EdgeIndex path ({best_ei}) "
         f"takes {gain:.2f}x its epoch time (every round > 1)" if clear else
         f"no clear win for SparseAdj at the epoch level: the fastest EdgeIndex path "
         f"({best_ei}) takes {gain:.2f}x its epoch time (rounds {gain_lo:.2f}-{_hi:.2f}; clear "
         f"would be >= {CLEAR_WIN:.2f}x with every round > 1)")
        + f"; with learned edge values the fastest EdgeIndex path ({best_v}) takes "
          f"{vals[best_v][1]:.2f}x SparseAdj's time")
    print(verdict)
    lines = [
        f"Command: `{command_line()}`", "",
        f"Machine: {machine_info()}", "",
        f"Data: {label}: {n_users} users, {n_items} items, {n_edges} train edges; the same "
        f"normalised adjacency (`bipartite_adjacency`, {adj.nnz} non-zeros) in every form; "
        f"LightGCN {a.layers} layers, {a.dim}-d, mean readout. Propagation: {repeat} interleaved "
        f"rounds, median time and median (min-max) of the per-round ratio to SparseAdj. Epochs: "
        f"BPR, batch 2048, Adam, the trainer's epoch loop with the model's encoder swapped, "
        f"{n_batches} batches per epoch, the variants taking turns every {a.chunk} batches, "
        f"{rounds} epochs each; same initial weights and batches. Learned values: one layer "
        f"whose edge values take gradients too, {vrounds} interleaved rounds.", "",
        f"| form | {a.layers}-layer fwd+bwd (ms) | vs SparseAdj | fwd only (ms) | epoch (s) | "
        f"epoch vs SparseAdj | learned values, 1 layer fwd+bwd (ms) | max abs diff: output / "
        f"input grad / params after the epochs |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in variants:
        t, r, lo, hi = prop[name]
        et, er, elo, ehi = epoch[name]
        vt = f"{vals[name][0] * 1e3:.0f} ({vals[name][1]:.2f}x)" if name in vals else "-"
        lines.append(f"| {name} | {t * 1e3:.1f} | {r:.2f}x ({lo:.2f}-{hi:.2f}) | "
                     f"{prop_f[name] * 1e3:.1f} | {et:.2f} | {er:.2f}x ({elo:.2f}-{ehi:.2f}) | "
                     f"{vt} | {diffs[name][0]:.1e} / {diffs[name][1]:.1e} / {pdiffs[name]:.1e} |")
    lines += ["", f"Result: {verdict}."]
    if not a.no_write:
        path = append_results(TYPES_SECTION, "\n".join(lines))
        print(f"wrote {path}")
    return 0


#: RESULTS.md section written by ``--types``
TYPES_SECTION = "Sparse types: SparseAdj vs PyG EdgeIndex vs torch CSR (LightGCN, Baby)"
#: SparseAdj "wins clearly" when the fastest EdgeIndex path needs at least this multiple
#: of its epoch time (median of the per-round ratios) and more than it in every round
CLEAR_WIN = 1.10


if __name__ == "__main__":
    sys.exit(main())
