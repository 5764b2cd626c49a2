"""Cosine kNN graph build: time, peak extra memory, fraction of the machine's GEMM rate;
approximate (faiss) against exact: time, speed-up, recall@k.

    python benchmarks/knn_graph.py [--quick] [--threads N] [--sizes 7050x4096,63001x4096,200000x384]
                                   [--method exact,faiss] [--nprobe P] [--clustered]

For each size ``n x dim`` of random float32 features this measures, in one run,

* **mmgraph** :func:`mmgraph.graph.knn_graph` (k=10, chunked ``x[chunk] @ x.T`` +
  ``topk``): wall time, peak *extra* memory (resident-set high-water mark above
  the level before the call; the features themselves are not counted), and the
  sustained rate ``2 n^2 dim / time`` (exact kNN FLOPs);
* the **machine's plain GEMM rate**, measured in the same run on the same
  shape the kNN uses (``[chunk, dim] @ [dim, n]``, mean of a measurement just
  before and one just after the kNN build) and on a square ``2048^3`` product;
  the kNN rate is reported as a fraction of the larger;
* the **dense n x n approach** (MMRec: full similarity matrix, then ``topk``)
  where it fits in memory (n <= 20,000 by default, i.e. the 7,050 size), with
  the same checks, and its result compared with ours (identical neighbours).

Large sizes are checked on a sample of 64 rows against a brute-force top-k.
Targets: exact, peak extra memory < 2 GB per size, >= 70% of the GEMM rate.
``--quick`` runs smaller sizes (3000x4096, 12000x1024, 30000x384).

``--method`` (default ``exact,faiss`` when faiss, the ``ann`` extra, is
installed, else ``exact``): with ``faiss``, the same ``knn_graph`` call with
``method='faiss'`` (IVF-Flat, ``nlist ~ 4 sqrt(n)``, ``--nprobe``, default
``min(nlist, 32)``; an exact flat index for ``n <= 4096``) is timed (with its
peak extra memory) and its neighbours are compared with the exact ones:
recall@k = share of the exact top-k found, over every row when ``exact`` ran
in the same run, else over a sample of 1,000 rows against a brute-force top-k;
speed-up = exact time / faiss time. IVF recall depends on how clustered the
features are: i.i.d. Gaussian features (the default) are its worst case;
``--clustered`` plants ``n / 100`` Gaussian clusters instead (noise 1.0 per
coordinate around unit-variance centres).
"""
from __future__ import annotations

import argparse
import gc
import importlib
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import PeakMemory, append_results, command_line, machine_info, timeit  # noqa: E402

from mmgraph.graph import default_chunk_size, faiss_nlist, knn_graph, knn_topk  # noqa: E402
from mmgraph.graph.knn import FAISS_DEFAULT_NPROBE, FAISS_FLAT_MAX_N  # noqa: E402

FULL = [(7050, 4096), (63001, 4096), (200000, 384)]
QUICK = [(3000, 4096), (12000, 1024), (30000, 384)]
K = 10


def gemm_rate(a: torch.Tensor, b_t: torch.Tensor, repeat: int) -> float:
    """FLOP/s of ``a @ b_t`` (median)."""
    t = timeit(lambda: a @ b_t, repeat, 1)
    return 2.0 * a.size(0) * a.size(1) * b_t.size(1) / t


def dense_knn(x: torch.Tensor, k: int):
    xn = torch.nn.functional.normalize(x, dim=1)
    sim = xn @ xn.t()
    return sim.topk(k, dim=1)


def check_sample(x: torch.Tensor, idx: torch.Tensor, k: int, rows: int = 64) -> bool:
    """Brute-force top-k of a sample of rows (float64) has the same neighbour sets."""
    g = torch.Generator().manual_seed(0)
    sample = torch.randperm(x.size(0), generator=g)[:rows]
    xn = torch.nn.functional.normalize(x.double(), dim=1)
    sim = xn[sample] @ xn.t()
    ref = sim.topk(k, dim=1).indices
    # allow float32-vs-float64 near-ties at the k-th position: compare sets, then values
    ok = True
    for r in range(sample.numel()):
        a, b = set(idx[sample[r]].tolist()), set(ref[r].tolist())
        if a != b:
            diff = a ^ b
            vals = sim[r, list(diff)]
            ok &= bool((vals.max() - vals.min()).abs() < 1e-5)
    return ok


def faiss_available() -> bool:
    try:
        importlib.import_module("faiss")
    except ImportError:
        return False
    return True


def make_features(n: int, dim: int, clustered: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(n)
    if not clustered:
        return torch.randn(n, dim, generator=g)
    centres = torch.randn(max(1, n // 100), dim, generator=g)
    labels = torch.randint(0, centres.size(0), (n,), generator=g)
    return centres[labels] + torch.randn(n, dim, generator=g)


def recall_at_k(found: torch.Tensor, ref: torch.Tensor) -> float:
    """Share of the reference neighbours (rows of ``ref``) present in ``found``'s rows."""
    hits = (found.unsqueeze(2) == ref.unsqueeze(1)).any(1).sum()
    return float(hits) / ref.numel()


def sample_recall(x: torch.Tensor, idx: torch.Tensor, k: int, rows: int = 1000) -> float:
    """recall@k of ``idx`` on a sample of rows against a brute-force float32 top-k."""
    g = torch.Generator().manual_seed(1)
    sample = torch.randperm(x.size(0), generator=g)[:rows]
    xn = torch.nn.functional.normalize(x, dim=1)
    ref = (xn[sample] @ xn.t()).topk(k, dim=1).indices
    return recall_at_k(idx[sample], ref)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sizes")
    p.add_argument("--sizes", default=None, help="comma list of NxDIM, e.g. 7050x4096")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeat", type=int, default=3, help="GEMM-rate repeats (median)")
    p.add_argument("--dense-max", type=int, default=20000,
                   help="run the dense n x n baseline up to this n")
    p.add_argument("--method", default=None,
                   help="comma list of kNN methods: exact, faiss (default: exact,faiss when "
                        "faiss is installed, else exact)")
    p.add_argument("--nprobe", type=int, default=None,
                   help=f"faiss: lists probed per row (default min(nlist, {FAISS_DEFAULT_NPROBE}))")
    p.add_argument("--clustered", action="store_true",
                   help="features with n/100 planted clusters instead of i.i.d. Gaussian")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    methods = (a.method.split(",") if a.method else
               ["exact", "faiss"] if faiss_available() else ["exact"])
    methods = [m.strip() for m in methods if m.strip()]
    bad = [m for m in methods if m not in ("exact", "faiss")]
    if bad or not methods:
        p.error(f"--method: unknown {bad}; choose from exact, faiss")
    if "faiss" in methods and not faiss_available():
        p.error("--method faiss needs faiss: pip install 'mmgraph[ann]' (or faiss-cpu)")
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.sizes:
        sizes = [tuple(int(v) for v in s.lower().split("x")) for s in a.sizes.split(",")]
    else:
        sizes = QUICK if a.quick else FULL
    print(machine_info())

    # square GEMM reference rate
    sq = torch.randn(2048, 2048)
    square_rate = gemm_rate(sq, sq, a.repeat)
    del sq
    print(f"square 2048^3 GEMM: {square_rate / 1e9:.1f} GFLOP/s")

    rows = []
    ann_rows = []
    all_ok = True
    features = "clustered (n/100 planted clusters)" if a.clustered else "random (i.i.d. Gaussian)"
    for n, dim in sizes:
        x = make_features(n, dim, a.clustered)
        t_ours = idx = None
        if "exact" in methods:
            chunk = default_chunk_size(n)
            before = gemm_rate(x[:chunk], x.t(), a.repeat)
            flops = 2.0 * n * n * dim
            gc.collect()
            with PeakMemory(trace_python=False) as mem:
                t0 = time.perf_counter()
                ei, w = knn_graph(x, K)
                t_ours = time.perf_counter() - t0
            idx = ei[1].view(n, K)
            # GEMM rate measured just before and just after (load on a shared machine drifts)
            shape_rate = 0.5 * (before + gemm_rate(x[:chunk], x.t(), a.repeat))
            rate = flops / t_ours
            frac = rate / max(shape_rate, square_rate)
            line = dict(n=n, dim=dim, chunk=chunk, t=t_ours, mem=mem.rss_mb, rate=rate,
                        shape_rate=shape_rate, frac=frac, dense_t=None, dense_mem=None, exact="")
            if n <= a.dense_max:
                gc.collect()
                with PeakMemory(trace_python=False) as dmem:
                    t0 = time.perf_counter()
                    dv, di = dense_knn(x, K)
                    t_dense = time.perf_counter() - t0
                line.update(dense_t=t_dense, dense_mem=dmem.rss_mb)
                ov, oi = knn_topk(x, K)
                same = torch.equal(oi, di) or bool(((ov - dv).abs() < 1e-5).all())
                line["exact"] = "identical to dense" if same else "DIFFERS from dense"
                all_ok &= same
                del dv, di
            else:
                ok = check_sample(x, idx, K)
                line["exact"] = "sample of 64 rows = brute force" if ok else "sample DIFFERS"
                all_ok &= ok
            rows.append(line)
            print(f"{n} x {dim}: {t_ours:.2f} s, peak extra {mem.rss_mb:.0f} MiB, "
                  f"{rate / 1e9:.1f} GFLOP/s = {100 * frac:.0f}% of GEMM "
                  f"(same-shape GEMM {shape_rate / 1e9:.1f}, "
                  f"square {square_rate / 1e9:.1f} GFLOP/s); "
                  + (f"dense n x n: {line['dense_t']:.2f} s, {line['dense_mem']:.0f} MiB; "
                     if line["dense_t"] is not None else "") + line["exact"])
            del ei, w
        if "faiss" in methods:
            nlist = faiss_nlist(n)
            ivf = n > FAISS_FLAT_MAX_N and nlist >= 2
            nprobe = min(nlist, a.nprobe or FAISS_DEFAULT_NPROBE) if ivf else None
            gc.collect()
            with PeakMemory(trace_python=False) as fmem:
                t0 = time.perf_counter()
                fei, _ = knn_graph(x, K, method="faiss", nprobe=a.nprobe)
                t_faiss = time.perf_counter() - t0
            fidx = fei[1].view(n, K)
            if idx is not None:
                rec, against = recall_at_k(fidx, idx), "all rows vs exact"
            else:
                rec, against = sample_recall(x, fidx, K), "1,000 rows vs brute force"
            ann_rows.append(dict(n=n, dim=dim, index=f"IVF-Flat, nlist {nlist}" if ivf else "flat",
                                 nprobe=nprobe, t=t_faiss, mem=fmem.rss_mb, exact_t=t_ours,
                                 recall=rec, against=against))
            how = f"IVF-Flat nlist {nlist} nprobe {nprobe}" if ivf else "flat index"
            print(f"{n} x {dim} faiss ({how}): {t_faiss:.2f} s, peak extra {fmem.rss_mb:.0f} MiB, "
                  f"recall@{K} {rec:.3f} ({against})"
                  + (f", {t_ours / t_faiss:.1f}x faster than exact" if t_ours is not None else ""))
            del fei, fidx
        del x, idx
        gc.collect()

    lines = [f"Command: `{command_line()}`", "", f"Machine: {machine_info()}", ""]
    if rows:
        lines += [
             f"k = {K}, {features} float32 features, default block budget 256 MiB "
             f"(`chunk` rows per block). GEMM rate = max(same-shape `[chunk, dim] @ [dim, n]`, "
             f"square 2048^3 = {square_rate / 1e9:.1f} GFLOP/s), measured in the same run. "
             "Peak extra memory = RSS high-water mark above the level before the call "
             "(input features excluded).", "",
             "| n x dim | chunk | mmgraph time (s) | peak extra (MiB) | GFLOP/s | % of GEMM | "
             "dense n x n time (s) | dense peak extra (MiB) | exactness |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        dt = f"{r['dense_t']:.2f}" if r["dense_t"] is not None else "n/a (does not fit)"
        dm = f"{r['dense_mem']:.0f}" if r["dense_mem"] is not None else "-"
        lines.append(f"| {r['n']:,} x {r['dim']} | {r['chunk']} | {r['t']:.2f} | {r['mem']:.0f} | "
                     f"{r['rate'] / 1e9:.1f} | {100 * r['frac']:.0f}% | {dt} | {dm} | {r['exact']} |")
    if rows:
        lines += ["", "Targets: exact; peak extra memory < 2 GB per size; >= 70% of the GEMM rate."]
    if ann_rows:
        lines += ([""] if rows else []) + [
                  f"Approximate kNN, `knn_graph(x, {K}, method='faiss')` (the `ann` extra), "
                  f"{features} float32 features: IVF-Flat inner-product index on the "
                  "L2-normalised rows (`nlist ~ 4 sqrt(n)`, spherical k-means, fixed seed; "
                  f"exact flat index for n <= {FAISS_FLAT_MAX_N}). recall@k = share of the exact "
                  "top-k found; speed-up = exact time / faiss time, same run. I.i.d. Gaussian "
                  "features are the worst case for IVF (no cluster structure).", "",
                  f"| n x dim | index | nprobe | faiss time (s) | peak extra (MiB) | "
                  f"exact time (s) | speed-up | recall@{K} |",
                  "|---|---|---:|---:|---:|---:|---:|---|"]
        for r in ann_rows:
            et = f"{r['exact_t']:.2f}" if r["exact_t"] is not None else "-"
            sp = f"{r['exact_t'] / r['t']:.1f}x" if r["exact_t"] is not None else "-"
            npb = r["nprobe"] if r["nprobe"] is not None else "-"
            lines.append(f"| {r['n']:,} x {r['dim']} | {r['index']} | {npb} | {r['t']:.2f} | "
                         f"{r['mem']:.0f} | {et} | {sp} | {r['recall']:.3f} ({r['against']}) |")
    elif "faiss" not in methods:
        lines += ["", "Approximate kNN (faiss, `ann` extra): not run ("
                  + ("`--method exact`" if a.method else "faiss not installed") + ")."]
    if not a.no_write:
        title = "kNN graph build" + (" (quick sizes)" if a.quick and not a.sizes else "")
        path = append_results(title, "\n".join(lines))
        print(f"wrote {path}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
