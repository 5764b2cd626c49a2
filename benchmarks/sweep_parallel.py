"""Parallel trials on one machine: a 4-trial sweep with ``--jobs 2`` against the same
trials one after another.

    python benchmarks/sweep_parallel.py [--model freedom] [--data synthetic:baby] [--epochs 2]

Runs the same sweep (``--grid reg_weight=<2 values> --seeds 0,1``: 4 trials) into fresh
folders three times: ``jobs=1`` with ``threads = cores`` (the sequential default),
``jobs=1, threads=1`` and ``jobs=2`` with ``threads = cores // 2``, and reports the wall
times (including worker start-up, data loading, graph building and the leaderboard),
the ratios and the disk graph cache's hits. Appends a section to ``benchmarks/RESULTS.md``
unless ``--no-write``.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_results, command_line, machine_info  # noqa: E402

from mmgraph.experiments import SweepConfig, run_sweep  # noqa: E402
from mmgraph.experiments import trial  # noqa: E402


def _run(out: Path, args, jobs: int, threads: int | None) -> tuple[float, dict]:
    trial._DATASETS.clear()      # each variant loads the data (and builds its graphs) afresh
    cfg = SweepConfig(models=(args.model,), data=args.data, grid={"reg_weight": args.reg},
                      seeds=(0, 1), epochs=args.epochs, patience=100, jobs=jobs, threads=threads,
                      out_dir=str(out), progress=False)
    t0 = time.perf_counter()
    res = run_sweep(cfg)
    wall = time.perf_counter() - t0
    hits = sum(o.cache.get("hits", 0) for o in res.outcomes)
    built = sum(o.cache.get("misses", 0) for o in res.outcomes)
    trial_s = [o.seconds for o in res.outcomes]
    return wall, {"hits": hits, "built": built, "trial_s": trial_s,
                  "test": res.leaderboard["models"][0]["test"]["recall@20"]["mean"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="freedom")
    p.add_argument("--data", default="synthetic:baby")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--reg", default="1e-4,1e-3", help="the two reg_weight values")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    args.reg = [float(v) for v in args.reg.split(",")]
    from mmgraph.data import load_dataset
    load_dataset(args.data)              # the processed cache is warm for every variant
    rows = []
    root = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    try:
        for name, jobs, threads in (("one after another, threads = cores", 1, None),
                                    ("one after another, 1 thread", 1, 1),
                                    ("--jobs 2, threads = cores // 2", 2, None)):
            wall, info = _run(root / name.replace(" ", "_").replace(",", ""), args, jobs, threads)
            rows.append((name, jobs, threads, wall, info))
            print(f"{name}: {wall:.1f} s (graphs read {info['hits']}, built {info['built']}; "
                  f"trials {', '.join(f'{s:.1f}' for s in info['trial_s'])} s)", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = rows[0][3]
    lines = [f"Command: `{command_line()}`", "",
             f"Machine: {machine_info()}", "",
             f"4 trials ({args.model} on `{args.data}`, reg_weight {args.reg[0]:g} / "
             f"{args.reg[1]:g} x seeds 0, 1, {args.epochs} epochs each), fresh sweep folders; wall "
             f"time of `run_sweep` including worker start-up, data loading (processed cache "
             f"warm), graph building and the leaderboard. One measurement each, on a machine "
             f"shared with other jobs: the ratios, measured in the same run, are what to read.", "",
             "| schedule | wall (s) | speed-up vs first row | graphs read from the disk cache / built |",
             "|---|---:|---:|---|"]
    for name, jobs, threads, wall, info in rows:
        lines.append(f"| {name} | {wall:.1f} | {base / wall:.2f}x | {info['hits']} / {info['built']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        append_results("Sweeps: parallel trials on one machine", text)


if __name__ == "__main__":
    main()
