"""Train every registered model on synthetic Baby-scale data with one budget.

    python benchmarks/zoo.py [--epochs 20] [--models lightgcn,bm3,...] [--threads 1]
    python benchmarks/zoo.py --quick          # 3 epochs, a smoke run of the whole zoo

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
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--model-options", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = 3
    if args.one:
        print("RESULT " + json.dumps(run_one(args)))
        return 0

    import mmgraph
    names = args.models.split(",") if args.models else sorted(mmgraph.MODELS)
    rows = []
    for name in names:
        cmd = [sys.executable, __file__, "--one", name, "--data", args.data, "--epochs",
               str(args.epochs), "--threads", str(args.threads), "--seed", str(args.seed),
               "--device", args.device]
        print(f"[zoo] {name} ...", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            print(proc.stdout[-2000:], proc.stderr[-4000:])
            rows.append({"model": name, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]})
            continue
        row = json.loads(line[0][7:])
        rows.append(row)
        print(f"[zoo] {name}: R@20 {row['test'].get('recall@20', float('nan')):.4f}, "
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
        append_results(f"Model zoo on {args.data}", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
