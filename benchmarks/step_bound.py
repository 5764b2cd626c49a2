"""Where is the floor: one training step of a model against its FLOP and memory-traffic bound.

    python benchmarks/step_bound.py [--data synthetic:baby] [--models lightgcn,freedom]
                                    [--threads 1] [--steps 8] [--no-write]

For each model (library defaults, the trainer's optimiser, batch size from its
training defaults) the script times ``--steps`` training steps (forward, loss,
backward, optimiser step; median after two warm-up steps) and divides by the
step's bound, ``max(FLOPs / peak FLOP/s, bytes / bandwidth)``, with both
ceilings measured here (:func:`_common.machine_peaks`). The cost of one step:

* **dense FLOPs**: :class:`torch.utils.flop_counter.FlopCounterMode` over the
  forward, the loss and the backward (every matmul);
* **sparse FLOPs and bytes**: every sparse product the step runs, forward and
  backward (counted where :class:`mmgraph.graph.SparseAdj` multiplies,
  ``mmgraph.graph.sparse._spmm_kernel``): ``2 nnz d`` FLOPs; the CSR arrays
  (8-byte column index and 4-byte value per non-zero, the row pointer), the
  dense input read once and the output written once;
* **bytes of tensors autograd saves**: each read once by the backward (their
  writes are not counted: most are outputs already counted above);
* **bytes of the optimiser**: every trainable value is read in the forward,
  its gradient written, and Adam reads parameter, gradient and both moments and
  writes three of them: 9 touches of 4 bytes.

Every counted access is one the step cannot avoid, so the bound is a lower
bound: ``measured / bound`` says how far from the floor the step is and
whether it is FLOP- or traffic-bound. The gaps are reported per model; the
larger gaps are the ones to take first.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (append_results, command_line, machine_info, machine_peaks,  # noqa: E402
                     model_with_batches)

import mmgraph.graph.sparse as sparse_mod  # noqa: E402
from mmgraph.data import load_dataset  # noqa: E402


class SparseCounter:
    """Counts FLOPs and bytes of every sparse product while active (wraps
    ``mmgraph.graph.sparse._spmm_kernel``, which forward and backward both call)."""

    def __init__(self):
        self.flops = self.bytes = self.calls = 0

    def __enter__(self):
        self._orig = sparse_mod._spmm_kernel

        def counted(st, backend, value, x):
            out = self._orig(st, backend, value, x)
            nnz, d = st.nnz, x.shape[-1] if x.dim() > 1 else 1
            self.flops += 2 * nnz * d
            self.bytes += (nnz * (8 + value.element_size()) + 8 * (st.size[0] + 1)
                           + x.numel() * x.element_size() + out.numel() * out.element_size())
            self.calls += 1
            return out

        sparse_mod._spmm_kernel = counted
        return self

    def __exit__(self, *exc):
        sparse_mod._spmm_kernel = self._orig


def step_cost(model, batch) -> dict:
    """Dense and sparse FLOPs and the bytes lower bound of one training step."""
    from torch.utils.flop_counter import FlopCounterMode
    seen, saved = set(), [0]

    def pack(t):
        key = (t.data_ptr(), t.numel(), t.dtype)
        if key not in seen:
            seen.add(key)
            saved[0] += t.numel() * t.element_size()
        return t

    model.train()
    with FlopCounterMode(display=False) as fc, SparseCounter() as sc, \
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = sum(model.loss(batch, model()).values())
        loss.backward()
    model.zero_grad(set_to_none=True)
    params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return {"dense_flops": fc.get_total_flops(), "sparse_flops": sc.flops,
            "sparse_bytes": sc.bytes, "sparse_calls": sc.calls, "saved_bytes": saved[0],
            "param_bytes": params, "bytes": sc.bytes + saved[0] + 9 * params}


def measure(name: str, data, steps: int, seed: int) -> dict:
    model, opt, cfg, batches = model_with_batches(name, data, steps + 2, seed)
    model.on_epoch_start(0)
    cost = step_cost(model, batches[0])
    times = []
    for i, b in enumerate(batches):
        t0 = time.perf_counter()
        loss = sum(model.loss(b, model()).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return {"model": name, "batch_size": cfg.batch_size, "step_s": statistics.median(times),
            **cost}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="synthetic:baby")
    p.add_argument("--models", default="lightgcn,freedom")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=8, help="timed steps per model (median)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    if a.steps < 1 or a.threads < 1:
        p.error("--steps and --threads must be >= 1")
    torch.set_num_threads(a.threads)
    info = machine_info()
    print(info)
    data = load_dataset(a.data)
    peak = machine_peaks()
    print(f"ceilings here: {peak['flops'] / 1e9:.0f} GFLOP/s (best GEMM), "
          f"{peak['bandwidth'] / 1e9:.1f} GB/s (copy, read + write)")
    rows = []
    for name in [m.strip() for m in a.models.split(",") if m.strip()]:
        r = measure(name, data, a.steps, a.seed)
        t_flops = (r["dense_flops"] + r["sparse_flops"]) / peak["flops"]
        t_bytes = r["bytes"] / peak["bandwidth"]
        r.update(t_flops=t_flops, t_bytes=t_bytes, bound_s=max(t_flops, t_bytes),
                 ratio=r["step_s"] / max(t_flops, t_bytes))
        rows.append(r)
        print(f"{name}: {r['step_s'] * 1e3:.0f} ms/step; {r['dense_flops'] / 1e9:.2f} GFLOP dense "
              f"+ {r['sparse_flops'] / 1e9:.2f} sparse = {t_flops * 1e3:.1f} ms; "
              f"{r['bytes'] / 2 ** 20:.0f} MiB moved = {t_bytes * 1e3:.1f} ms; "
              f"{r['ratio']:.1f}x the bound", flush=True)
    head = ("| model | batch | ms / step | GFLOP dense + sparse | MiB moved (sparse + saved + "
            "optimiser) | FLOP time ms | traffic time ms | bound | measured / bound |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['batch_size']} | {r['step_s'] * 1e3:.0f} | "
            f"{r['dense_flops'] / 1e9:.2f} + {r['sparse_flops'] / 1e9:.2f} | "
            f"{r['bytes'] / 2 ** 20:.0f} ({r['sparse_bytes'] / 2 ** 20:.0f} + "
            f"{r['saved_bytes'] / 2 ** 20:.0f} + {9 * r['param_bytes'] / 2 ** 20:.0f}) | "
            f"{r['t_flops'] * 1e3:.1f} | {r['t_bytes'] * 1e3:.1f} | "
            f"{'traffic' if r['t_bytes'] > r['t_flops'] else 'FLOPs'} | {r['ratio']:.1f}x |")
    table = "\n".join(lines)
    print("\n" + table)
    if not a.no_write:
        text = (f"Command: `{command_line()}`\n\nMachine: {info}\n\nData: {a.data}. Ceilings "
                f"measured in the same run: {peak['flops'] / 1e9:.0f} GFLOP/s (best of the "
                f"GEMM shapes), {peak['bandwidth'] / 1e9:.1f} GB/s (256 MiB copy, read + write). "
                f"Median of {a.steps} steps after 2 warm-up steps.\n\n{table}\n")
        append_results("Training step against its FLOP and memory-traffic bound", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
