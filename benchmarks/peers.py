"""mmgraph against the real MMRec toolbox: the same data, split, settings and threads.

    git clone https://github.com/enoche/MMRec /path/to/MMRec
    python benchmarks/peers.py --mmrec /path/to/MMRec [--data synthetic:baby]
        [--models lightgcn,bprmf,bm3,freedom] [--epochs 4] [--threads 1] [--reps 1]
        [--device cpu|cuda]

For every model both sides train ``--epochs`` epochs in their own process
(interleaved: MMRec, ours, MMRec, ... with the order alternating per
repetition) on one dataset folder written once in MMRec's layout
(``<name>.inter`` + ``image_feat.npy`` / ``text_feat.npy``), which mmgraph
reads back, so both see identical interactions, split and features:

* MMRec runs from a throw-away copy of the checkout (its ``src/`` with a
  dataset config for the folder; the minimum environment shims of
  ``benchmarks/parity/_upstream.py``; nothing of it is in this repository)
  through its own ``quick_start``, with its hyper-parameter grid replaced by
  the one value mmgraph uses (``MODELS`` below), on ``--device`` (its
  ``use_gpu``), early stopping off;
* mmgraph runs ``mmgraph train`` with its defaults.

Measured per side: seconds per training epoch (MMRec's ``training [time``
log line, our ``train_seconds``), seconds per validation evaluation
(``evaluating [time``, our ``valid_seconds``), the median over epochs after
the first (warm-up), and the process's peak RSS (``wait4``). Both sides
evaluate validation and test after every epoch. The allocator is glibc's
default on both sides, or ``--malloc tuned`` for both (the environment
variables of ``mmgraph.train.tuned_malloc``'s setting). Validation
Recall@20 after the last epoch is printed for both: the two compute the
same model, so it should be in the same range (not equal: sampling and
initialisation draws differ).

Without ``--mmrec`` (or with a wrong path) it says so and exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARITY = ROOT / "benchmarks" / "parity"

#: mmgraph model -> (MMRec model, MMRec options fixed to mmgraph's defaults)
MODELS = {
    "lightgcn": ("LightGCN", {"n_layers": 4, "reg_weight": 1e-4}),
    "bprmf": ("BPR", {"reg_weight": 0.1}),
    "bm3": ("BM3", {"n_layers": 1, "reg_weight": 0.1, "cl_weight": 2.0, "dropout": 0.5}),
    "freedom": ("FREEDOM", {"reg_weight": 1e-4, "dropout": 0.8, "n_mm_layers": 1,
                            "n_ui_layers": 2, "knn_k": 10, "mm_image_weight": 0.1}),
}
TUNED_MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "2147483647"}

_RUNNER = """import json, sys
sys.path.insert(0, {parity!r})
import _upstream
_upstream.install_shims()
_upstream.stub_missing_modules(["torchvision", "torchvision.transforms",
                                "torchvision.transforms.functional", "lmdb"])
from utils.quick_start import quick_start
quick_start(model={model!r}, dataset={dataset!r}, config_dict=json.loads({config!r}),
            save_model=False)
"""


def prepare_mmrec(checkout: Path, work: Path, data, name: str) -> Path:
    """A throw-away copy of MMRec's ``src`` with the dataset folder beside it."""
    from mmgraph.data import write_mmrec
    src = work / "mmrec" / "src"
    shutil.copytree(checkout / "src", src, ignore=shutil.ignore_patterns(".git", "*.pt"))
    folder = work / "mmrec" / "data" / name
    write_mmrec(data, folder, name)
    base = (checkout / "src" / "configs" / "dataset" / "baby.yaml").read_text()
    (src / "configs" / "dataset" / f"{name}.yaml").write_text(
        re.sub(r"inter_file_name: .*", f"inter_file_name: '{name}.inter'", base))
    return folder


def _wait(proc: subprocess.Popen, timeout: float) -> tuple[int, str, float]:
    """Exit code, output and peak RSS (MiB, as :func:`_rss_wrapper` reports it) of a child."""
    out, _ = proc.communicate(timeout=timeout)
    m = re.findall(r"@@maxrss_kib=(\d+)", out)
    return proc.returncode, out, int(m[-1]) / 1024 if m else float("nan")


def _rss_wrapper(cmd: list[str]) -> list[str]:
    """Run ``cmd`` as a child of a tiny Python parent that prints the child's peak RSS."""
    code = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:]); "
            "_, st, ru = os.wait4(p.pid, 0); "
            "print(f'@@maxrss_kib={ru.ru_maxrss}', flush=True); "
            "sys.exit(os.waitstatus_to_exitcode(st))")
    return [sys.executable, "-c", code, *cmd]


def run_mmrec(work: Path, model: str, dataset: str, epochs: int, env: dict,
              timeout: float, device: str = "cpu") -> dict:
    mm_name, options = MODELS[model]
    gpu = device.startswith("cuda")
    config = {"gpu_id": int(device.partition(":")[2] or 0) if gpu else 0, "use_gpu": gpu,
              "epochs": epochs, "stopping_step": 10 ** 6,
              "seed": [999], "hyper_parameters": [], "save_recommended_topk": False,
              "learning_rate_scheduler": [1.0, 50], **options}
    src = work / "mmrec" / "src"
    runner = src / "_mmgraph_peer_runner.py"
    runner.write_text(_RUNNER.format(parity=str(PARITY), model=mm_name, dataset=dataset,
                                     config=json.dumps(config)))
    proc = subprocess.Popen(_rss_wrapper([sys.executable, runner.name]), cwd=src, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rc, out, rss = _wait(proc, timeout)
    if rc != 0:
        raise RuntimeError(f"MMRec {mm_name} failed ({rc}):\n{out[-3000:]}")
    train = [float(t) for t in re.findall(r"epoch \d+ training \[time: ([\d.]+)s", out)]
    valid = [float(t) for t in re.findall(r"epoch \d+ evaluating \[time: ([\d.]+)s", out)]
    scores = re.findall(r"epoch \d+ evaluating \[time: [\d.]+s, valid_score: ([\d.]+)\]", out)
    return {"train": train, "valid": valid, "rss_mib": rss,
            "valid_recall@20": float(scores[-1]) if scores else float("nan")}


def run_ours(work: Path, model: str, folder: Path, epochs: int, threads: int, env: dict,
             timeout: float, device: str = "cpu") -> dict:
    out_dir = work / "ours" / model
    cmd = [sys.executable, "-m", "mmgraph.cli", "train", "--model", model, "--data", str(folder),
           "--epochs", str(epochs), "--patience", str(10 ** 6), "--threads", str(threads),
           "--out-dir", str(out_dir), "--overwrite", "--progress", "false", "--device", device]
    proc = subprocess.Popen(_rss_wrapper(cmd), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    rc, out, rss = _wait(proc, timeout)
    if rc != 0:
        raise RuntimeError(f"mmgraph {model} failed ({rc}):\n{out[-3000:]}")
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return {"train": [r["train_seconds"] for r in rows],
            "valid": [r["valid_seconds"] for r in rows if "valid_seconds" in r],
            "rss_mib": rss, "valid_recall@20": rows[-1]["valid"]["recall@20"]}


def _steady(xs: list[float]) -> float:
    """Median over the epochs after the first (warm-up), or the one value."""
    return statistics.median(xs[1:] if len(xs) > 1 else xs) if xs else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mmrec", default=None, help="local checkout of github.com/enoche/MMRec")
    p.add_argument("--data", default="synthetic:baby",
                   help="any dataset spec mmgraph loads (default: synthetic Baby with 4096-d "
                        "image and 384-d text features)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--malloc", choices=("default", "tuned"), default="default",
                   help="glibc allocator setting, the same on both sides")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N], the same on both sides "
                   "(peak RSS is then host memory only)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    checkout = Path(a.mmrec).expanduser() if a.mmrec else None
    if checkout is None or not (checkout / "src" / "utils" / "quick_start.py").is_file():
        print(f"peers: no MMRec checkout at {a.mmrec!r} (git clone "
              "https://github.com/enoche/MMRec and pass --mmrec PATH): skipped")
        return 0
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        print(f"peers: no MMRec counterpart configured for {unknown}; known: {list(MODELS)}",
              file=sys.stderr)
        return 2
    if a.epochs < 1:
        print("peers: --epochs must be >= 1", file=sys.stderr)
        return 2

    sys.path.insert(0, str(ROOT))
    from mmgraph.data import load_dataset
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads),
           "PYTHONUNBUFFERED": "1", **(TUNED_MALLOC_ENV if a.malloc == "tuned" else {})}
    work = Path(tempfile.mkdtemp(prefix="mmgraph-peers-"))
    name = "peerdata"
    try:
        data = load_dataset(a.data)
        folder = prepare_mmrec(checkout, work, data, name)
        del data
        results: dict[str, dict[str, list]] = {m: {"mmrec": [], "ours": []} for m in models}
        for rep in range(a.reps):
            for m in models:
                sides = ["mmrec", "ours"] if rep % 2 == 0 else ["ours", "mmrec"]
                for side in sides:
                    r = (run_mmrec(work, m, name, a.epochs, env, a.timeout, a.device)
                         if side == "mmrec" else
                         run_ours(work, m, folder, a.epochs, a.threads, env, a.timeout, a.device))
                    results[m][side].append(r)
                    print(f"rep {rep} {m:9s} {side:6s} train s/epoch {_steady(r['train']):.2f}  "
                          f"valid eval s {_steady(r['valid']):.2f}  peak RSS "
                          f"{r['rss_mib']:.0f} MiB  valid R@20 {r['valid_recall@20']:.4f}",
                          flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n## mmgraph vs the MMRec toolbox ({a.data}, {a.device}, {a.epochs} epochs, "
          f"{a.threads} thread(s), "
          f"allocator {a.malloc}, {a.reps} rep(s); medians)\n")
    head = ("| model | train s/epoch ours | MMRec | speed-up | valid eval s ours | MMRec | "
            "speed-up | peak RSS ours / MMRec (MiB) | valid R@20 ours / MMRec |")
    print(head)
    print("|" + "---|" * 9)
    summary = {}
    for m in models:
        o, t = results[m]["ours"], results[m]["mmrec"]
        to, tt = (statistics.median(_steady(r["train"]) for r in x) for x in (o, t))
        vo, vt = (statistics.median(_steady(r["valid"]) for r in x) for x in (o, t))
        ro, rt = (max(r["rss_mib"] for r in x) for x in (o, t))
        ao, at = (statistics.median(r["valid_recall@20"] for r in x) for x in (o, t))
        summary[m] = {"train_s": [to, tt], "valid_eval_s": [vo, vt], "peak_rss_mib": [ro, rt],
                      "valid_recall@20": [ao, at], "runs": results[m]}
        print(f"| {m} | {to:.2f} | {tt:.2f} | {tt / to:.1f}x | {vo:.2f} | {vt:.2f} | "
              f"{vt / vo:.1f}x | {ro:.0f} / {rt:.0f} | {ao:.4f} / {at:.4f} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "models": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
