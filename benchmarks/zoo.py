"""Train every registered model on synthetic Baby-scale data with one budget.

    python benchmarks/zoo.py [--epochs 20] [--models lightgcn,bm3,...] [--threads 1]
    python benchmarks/zoo.py --quick          # 3 epochs, a smoke run of the whole zoo
    python benchmarks/zoo.py --timing-batches 5 --threads 1   # CPU cost per epoch only
    python benchmarks/zoo.py --device cuda --jobs 4 --epochs 30   # accuracy table on a GPU

Each model runs in its own subprocess (so the peak-RSS column is that model's
own), with the same data (``synthetic:baby``, a planted multimodal signal),
the same seed, the same epoch budget and early stopping off. Reports test
R@10/R@20/N@10/N@20 at the best valid epoch, seconds per training epoch,
seconds per full evaluation and peak resident memory, and writes the table to
benchmarks/RESULTS.md. The MMRec toolbox's own seconds per epoch at Baby scale
with 1 CPU thread (measured by the project: LightGCN 3.5 s, BM3 39 s,
FREEDOM 44 s, LGMRec 121 s) are printed beside ours with the ratio.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import append_results, machine_info  # noqa: E402

MMREC_SECONDS = {"lightgcn": 3.5, "bm3": 39.0, "freedom": 44.0, "lgmrec": 121.0}


def time_one(args) -> dict:
    """Seconds per epoch from ``--timing-batches`` batches (after one warm-up batch)."""
    import torch

    from mmgraph.data import load_dataset
    from mmgraph.models import get_model_class
    from mmgraph.sampling import InteractionLoader
    from mmgraph.train import Trainer, train_config_for, tuned_malloc

    torch.set_num_threads(args.threads)
    data = load_dataset(args.data)
    cls = get_model_class(args.one)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    model = cls(data, cls.config_class(**json.loads(args.model_options or "{}"))).to(args.device)
    build = time.perf_counter() - t0
    cfg = train_config_for(cls, epochs=1, progress=False, device=args.device)
    trainer = Trainer(model, data, cfg)
    opt = trainer._make_optimizer()
    loader = InteractionLoader(data, batch_size=cfg.batch_size, num_neg=cfg.num_neg if cls.uses_negatives else 0,
                               generator=torch.Generator().manual_seed(0), device=args.device)
    model.train()
    model.on_epoch_start(0)
    def batches():  # cycle through epochs if the data has fewer batches than asked for
        while True:
            yield from loader
    it = batches()
    wall, cpu = [], []
    # as Trainer.fit with --tune-malloc (the CPU tables in README/RESULTS were measured so)
    with tuned_malloc(args.device == "cpu"):
        for b in range(args.timing_batches + 1):
            batch = next(it)
            w0, c0 = time.perf_counter(), time.process_time()
            loss = sum(model.loss(batch, model()).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            del loss
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            if b:  # the first batch is a warm-up (lazy graph builds, allocator)
                wall.append(time.perf_counter() - w0)
                cpu.append(time.process_time() - c0)
    t0 = time.perf_counter()
    trainer.evaluate("test")
    ev = time.perf_counter() - t0
    n = len(loader)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"model": cls.name, "s_per_epoch": sorted(wall)[len(wall) // 2] * n,
            "cpu_s_per_epoch": sorted(cpu)[len(cpu) // 2] * n, "s_per_eval": ev, "build_s": build,
            "peak_rss_mb": peak, "batches_per_epoch": n,
            "params": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def run_one(args) -> dict:
    import torch

    from mmgraph.data import load_dataset
    from mmgraph.models import get_model_class
    from mmgraph.train import Trainer, train_config_for

    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.data)
    cls = get_model_class(args.one)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    model = cls(data, cls.config_class(**json.loads(args.model_options or "{}")))
    build = time.perf_counter() - t0
    cfg = train_config_for(cls, epochs=args.epochs, seed=args.seed, patience=10**6,
                           progress=False, device=args.device)
    res = Trainer(model, data, cfg).fit()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"model": cls.name, "test": res.test, "best_epoch": res.best_epoch,
            "s_per_epoch": res.seconds_per_epoch, "s_per_eval": res.seconds_per_eval,
            "build_s": build, "peak_rss_mb": peak,
            "params": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def run_all(names, args) -> list[dict]:
    """Run ``--one NAME`` subprocesses, ``args.jobs`` at a time; rows in ``names`` order."""
    from concurrent.futures import ThreadPoolExecutor

    def one(name):
        cmd = [sys.executable, __file__, "--one", name, "--data", args.data, "--epochs",
               str(args.epochs), "--threads", str(args.threads), "--seed", str(args.seed),
               "--device", args.device, "--timing-batches", str(args.timing_batches)]
        print(f"[zoo] {name} ...", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            print(proc.stdout[-2000:], proc.stderr[-4000:])
            return {"model": name, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
        return json.loads(line[0][7:])

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        return list(pool.map(one, names))


def timing_table(args, argv) -> int:
    import mmgraph
    names = args.models.split(",") if args.models else sorted(mmgraph.MODELS)
    rows = run_all(names, args)
    cmd = "python benchmarks/zoo.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"Machine: {machine_info()}; torch threads {args.threads}", f"Command: `{cmd.strip()}`",
             f"Data: {args.data}; one warm-up batch, then the median of {args.timing_batches} batches "
             "(batch 2048) times the batches per epoch. CPU seconds are the process's CPU time "
             "(steadier than wall time on a shared machine).", "",
             "| model | s/epoch (wall) | CPU s/epoch | MMRec s/epoch (ratio to our CPU s) | s/eval | "
             "graph build s | peak RSS MiB | trainable params |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | failed: {r['error'][:80]} |" + " |" * 7)
            continue
        mm = MMREC_SECONDS.get(r["model"])
        mms = f"{mm:.1f} ({mm / r['cpu_s_per_epoch']:.1f}x)" if mm else "-"
        lines.append(f"| {r['model']} | {r['s_per_epoch']:.2f} | {r['cpu_s_per_epoch']:.2f} | {mms} | "
                     f"{r['s_per_eval']:.2f} | {r['build_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['params']:,} |")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        append_results(f"Model zoo cost per epoch on {args.data} ({args.device}, {args.threads} thread)", text)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="synthetic:baby")
    p.add_argument("--models", default=None, help="comma-separated (default: every registered model)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="3 epochs per model")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=999)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--jobs", type=int, default=1, help="models trained at once (GPU accuracy runs)")
    p.add_argument("--timing-batches", type=int, default=0,
                   help="only time this many batches per model and extrapolate to an epoch")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--model-options", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = 3
    if args.one:
        print("RESULT " + json.dumps(time_one(args) if args.timing_batches else run_one(args)))
        return 0
    if args.timing_batches:
        return timing_table(args, argv)

    import mmgraph
    names = args.models.split(",") if args.models else sorted(mmgraph.MODELS)
    rows = run_all(names, args)
    for row in rows:
        if "error" not in row:
            print(f"[zoo] {row['model']}: R@20 {row['test'].get('recall@20', float('nan')):.4f}, "
                  f"{row['s_per_epoch']:.2f} s/epoch, peak {row['peak_rss_mb']:.0f} MiB", flush=True)

    lgn = next((r for r in rows if r.get("model") == "lightgcn" and "test" in r), None)
    cmd = "python benchmarks/zoo.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"Machine: {machine_info()}; torch threads {args.threads}",
             f"Command: `{cmd.strip()}`",
             f"Data: {args.data}; {args.epochs} epochs per model, no early stopping, seed {args.seed}; "
             "test metrics at the best valid Recall@20 epoch.", "",
             "| model | R@10 | R@20 | N@10 | N@20 | vs LightGCN R@20 | s/epoch | MMRec s/epoch (ratio) "
             "| s/eval | peak RSS MiB | trainable params |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | failed: {r['error'][:80]} |" + " |" * 10)
            continue
        t = r["test"]
        rel = f"{t['recall@20'] / lgn['test']['recall@20']:.2f}x" if lgn else "-"
        mm = MMREC_SECONDS.get(r["model"])
        mms = f"{mm:.1f} ({mm / r['s_per_epoch']:.1f}x)" if mm else "-"
        lines.append(f"| {r['model']} | {t['recall@10']:.4f} | {t['recall@20']:.4f} | {t['ndcg@10']:.4f} | "
                     f"{t['ndcg@20']:.4f} | {rel} | {r['s_per_epoch']:.2f} | {mms} | "
                     f"{r['s_per_eval']:.2f} | {r['peak_rss_mb']:.0f} | {r['params']:,} |")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        append_results(f"Model zoo accuracy on {args.data} ({args.device})", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
