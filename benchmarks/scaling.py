"""How training and evaluation scale with dataset size: seconds and peak memory.

    python benchmarks/scaling.py [--quick] [--device cpu|cuda] [--sizes 20k,baby,sports,elec]
                                 [--models lightgcn,bm3,freedom,mambarec] [--batches N]
                                 [--threads N] [--image-dim D] [--text-dim D] [--no-write]

For every (size, model) pair, in a **fresh subprocess** (so that peak memory
is that pair's alone), this

1. loads the synthetic dataset of that size (generated once with
   :func:`mmgraph.data.generate_synthetic` and cached as ``.npy`` under
   ``.mmgraph_cache/scaling/``; the generator's interactions do not depend on
   the feature widths);
2. builds the model (``build s``: graphs, including the multimodal kNN
   graphs of FREEDOM / MambaRec, which cost ``O(I^2 d)``);
3. trains **one epoch** with the library's trainer loop (global batch 2048,
   the model's paper defaults) -- or, with ``--batches N``, times the loader
   set-up (permutation + negative sampling of the whole epoch) plus ``N``
   steps after one warm-up step and **extrapolates** to the epoch's number of
   batches (the table says which);
4. runs **one full evaluation** of the test split (all items ranked for every
   test user, streamed over batches of 4096 users: never a dense
   users x items matrix).

Memory: ``train peak`` / ``eval peak`` are the resident-set high-water mark
above the level before the phase (kernel ``VmHWM``, reset per phase; on
CUDA ``torch.cuda.max_memory_allocated`` above the level before);
``process peak`` is the largest resident set of the whole subprocess
(dataset, model, optimiser state, graphs included).

Sizes (users x items, interactions; MISSION.md presets):

==========  =========================  ==================================
``20k``     2,000 x 1,000, 20,000      small custom
``baby``    19,445 x 7,050, 160,792    Amazon Baby
``sports``  35,598 x 18,357, 296,337   Amazon Sports
``elec``    192,403 x 63,001, 1,689,188  Amazon Elec (BM3's largest)
``5m``      400,000 x 100,000, 5,000,000  custom; generation alone takes
                                          ~30 min on 2 cores, opt-in
==========  =========================  ==================================

Features: the multimodal models (BM3, FREEDOM, MambaRec) get the real widths
(4096-d image, 384-d text) by default; LightGCN needs none, so its runs load
the interactions only. ``--quick`` (about 2 minutes: sizes ``20k`` and
``baby``, 256-d image / 64-d text features, 5 batches extrapolated) is a
smoke test of the pipeline, not a measurement of the real feature cost.

Writes ``benchmarks/scaling_epoch.png`` (epoch seconds and peak memory vs
training interactions; ``_quick`` / ``_cuda`` in the name for those runs),
``benchmarks/scaling_eval.png`` (evaluation
seconds vs users x items) and a section of ``benchmarks/RESULTS.md``.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from _common import (PeakMemory, append_results, command_line, machine_info,  # noqa: E402
                     peak_rss_mb, rss_mb)

SIZES = {
    "20k": dict(num_users=2_000, num_items=1_000, num_interactions=20_000),
    "baby": dict(num_users=19_445, num_items=7_050, num_interactions=160_792),
    "sports": dict(num_users=35_598, num_items=18_357, num_interactions=296_337),
    "elec": dict(num_users=192_403, num_items=63_001, num_interactions=1_689_188),
    "5m": dict(num_users=400_000, num_items=100_000, num_interactions=5_000_000),
}
MODELS = ("lightgcn", "bm3", "freedom", "mambarec")
DEFAULT_SIZES = ("20k", "baby", "sports", "elec")
QUICK_SIZES = ("20k", "baby")
CACHE = ROOT / ".mmgraph_cache" / "scaling"
MEM_LIMIT_GIB = 24.0


# ------------------------------------------------------------------ data
def dataset_dir(size: str, image_dim: int, text_dim: int, seed: int = 0) -> Path:
    return CACHE / f"{size}-img{image_dim}-txt{text_dim}-seed{seed}"


def prepare(size: str, image_dim: int, text_dim: int, seed: int = 0, log=print) -> Path:
    """Generate (once) and cache the synthetic dataset of ``size``."""
    from mmgraph.data import generate_synthetic
    from mmgraph.data.io import write_npy_splits
    path = dataset_dir(size, image_dim, text_dim, seed)
    if (path / "test.npy").is_file():
        return path
    t0 = time.perf_counter()
    data = generate_synthetic(**SIZES[size], image_dim=image_dim, text_dim=text_dim, seed=seed,
                              name=f"scaling-{size}")
    tmp = path.with_name(path.name + ".tmp")
    write_npy_splits(data, tmp, features=True)
    tmp.rename(path)
    log(f"[data] generated {size} ({image_dim}-d image, {text_dim}-d text) in "
        f"{time.perf_counter() - t0:.0f} s -> {path}")
    return path


# ---------------------------------------------------------------- worker
class _FirstN:
    def __init__(self, it, n):
        self.it, self.n = it, n

    def __iter__(self):
        for i, b in enumerate(self.it):
            if i >= self.n:
                return
            yield b


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(size: str, model_name: str, device: str, batches: int, image_dim: int,
            text_dim: int, threads: int | None) -> dict:
    """One (size, model) measurement; runs inside the worker subprocess."""
    if threads:
        torch.set_num_threads(threads)
    from mmgraph import models as _models  # noqa: F401  (registers the models)
    from mmgraph.data import load_dataset, num_items, num_users, split_edge_index
    from mmgraph.models.base import get_model_class
    from mmgraph.sampling import InteractionLoader
    from mmgraph.train import Trainer, train_config_for

    dev = torch.device(device)
    path = dataset_dir(size, image_dim, text_dim)
    t0 = time.perf_counter()
    multimodal = model_name != "lightgcn"
    data = load_dataset(path, modalities=None if multimodal else ())
    load_s = time.perf_counter() - t0
    U, I = num_users(data), num_items(data)
    n_train = int(split_edge_index(data, "train").size(1))
    n_test_users = int(torch.unique(split_edge_index(data, "test")[0]).numel())

    try:  # a model file not yet listed in mmgraph.models.__init__ registers itself on import
        importlib.import_module(f"mmgraph.models.{model_name}")
    except ImportError:
        pass
    cls = get_model_class(model_name)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = cls(data, cls.config_class()).to(dev)
    _sync(dev)
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)

    cfg = train_config_for(cls, epochs=1, progress=False, device=device, out_dir=None)
    trainer = Trainer(model, data, cfg)
    opt = trainer._make_optimizer()
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = InteractionLoader(data, batch_size=cfg.batch_size, shuffle=True,
                               num_neg=cfg.num_neg if model.uses_negatives else 0,
                               generator=gen, device=dev)
    nb = len(loader)
    hwm_setup = peak_rss_mb()
    gc.collect()
    base_train = rss_mb()
    with PeakMemory(trace_python=False) as mem_train:
        if batches and batches < nb:
            # loader set-up (permutation + all negatives) + one warm-up step, then N steps
            model.train()
            t0 = time.perf_counter()
            model.on_epoch_start(0)
            it = iter(loader)
            first = next(it)
            _sync(dev)
            setup_s = time.perf_counter() - t0

            def step(batch):
                with trainer._autocast():
                    out = model()
                    terms = model.loss(batch, out)
                    total = sum(terms.values())
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()
                return total.detach()

            step(first)                                   # warm-up (caches, allocator)
            _sync(dev)
            t0 = time.perf_counter()
            losses = [step(b) for b in _FirstN(it, batches)]
            _sync(dev)
            step_s = (time.perf_counter() - t0) / len(losses)
            epoch_s = setup_s + step_s * nb
            row = {"loss": float(torch.stack(losses).mean())}
            mode = f"{batches} batches extrapolated to {nb}"
        else:
            row = trainer._train_epoch(0, loader, opt)
            epoch_s = row["train_seconds"]
            step_s = epoch_s / nb
            mode = f"full epoch ({nb} batches)"
    loss = row["loss"]
    gc.collect()
    base_eval = rss_mb()
    with PeakMemory(trace_python=False) as mem_eval:
        t0 = time.perf_counter()
        res = trainer.evaluate("test")
        _sync(dev)
        eval_s = time.perf_counter() - t0
    process_peak = max(hwm_setup, base_train + mem_train.rss_mb, base_eval + mem_eval.rss_mb)
    return dict(size=size, model=model_name, device=device, users=U, items=I, train=n_train,
                test_users=n_test_users, image_dim=image_dim if multimodal else 0,
                text_dim=text_dim if multimodal else 0, params=n_params, load_s=load_s,
                build_s=build_s, epoch_s=epoch_s, step_s=step_s, batches=nb, mode=mode,
                loss=loss, train_peak_mb=mem_train.rss_mb, train_cuda_mb=mem_train.cuda_mb,
                eval_s=eval_s, eval_peak_mb=mem_eval.rss_mb, eval_cuda_mb=mem_eval.cuda_mb,
                process_peak_mb=process_peak, recall20=res.get("recall@20", float("nan")),
                threads=torch.get_num_threads())


def run_worker(size: str, model: str, a, log=print) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", size, model,
           "--device", a.device, "--batches", str(a.batches), "--image-dim", str(a.image_dim),
           "--text-dim", str(a.text_dim)]
    if a.threads:
        cmd += ["--threads", str(a.threads)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
    except subprocess.TimeoutExpired:
        log(f"[{size} {model}] timed out after {a.timeout} s")
        return dict(size=size, model=model, error=f"timed out after {a.timeout} s")
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            r = json.loads(line[len("RESULT "):])
            r["wall_s"] = time.perf_counter() - t0
            return r
    err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    if proc.returncode < 0 or proc.returncode == 137:
        err = f"killed (signal {-proc.returncode}; out of memory?) {err}"
    log(f"[{size} {model}] failed (rc {proc.returncode}): {proc.stderr[-2000:]}")
    return dict(size=size, model=model, error=err)


# ----------------------------------------------------------------- report
def _fmt_mb(mb: float) -> str:
    return f"{mb / 1024:.2f} GiB" if mb >= 1024 else f"{mb:.0f} MiB"


def table(rows: list[dict], device: str) -> str:
    cuda = device.startswith("cuda")
    head = ("| size | users x items | train inter. | model | features | threads | build (s) | "
            "epoch (s) | epoch measured as | train peak | eval (s) | eval peak | process peak |")
    lines = [head, "|---|---|---:|---|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['size']} | | | {r['model']} | | | | | **failed: {r['error']}** "
                         f"| | | | |")
            continue
        tp = _fmt_mb(r["train_cuda_mb"] if cuda else r["train_peak_mb"])
        ep = _fmt_mb(r["eval_cuda_mb"] if cuda else r["eval_peak_mb"])
        feats = (f"{r['image_dim']}+{r['text_dim']}" if r["image_dim"] or r["text_dim"]
                 else "none")
        over = " (**> 24 GiB**)" if r["process_peak_mb"] / 1024 > MEM_LIMIT_GIB else ""
        lines.append(
            f"| {r['size']} | {r['users']:,} x {r['items']:,} | {r['train']:,} | {r['model']} | "
            f"{feats} | {r['threads']} | {r['build_s']:.1f} | {r['epoch_s']:.1f} | {r['mode']} | {tp} | "
            f"{r['eval_s']:.1f} | {ep} | {_fmt_mb(r['process_peak_mb'])}{over} |")
    return "\n".join(lines)


def plots(rows: list[dict], device: str, tag: str = "") -> list[Path]:
    """``scaling_epoch{tag}.png`` and ``scaling_eval{tag}.png`` beside this script."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return []
    ok = [r for r in rows if "error" not in r]
    cuda = device.startswith("cuda")
    out = []
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for m in MODELS:
        rs = sorted((r for r in ok if r["model"] == m), key=lambda r: r["train"])
        if not rs:
            continue
        x = [r["train"] for r in rs]
        ax1.plot(x, [r["epoch_s"] for r in rs], "o-", label=m)
        ax2.plot(x, [(r["train_cuda_mb"] if cuda else r["process_peak_mb"]) / 1024 for r in rs],
                 "o-", label=m)
    for ax, yl in ((ax1, "seconds per training epoch"),
                   (ax2, "peak GPU memory (GiB)" if cuda else "process peak RSS (GiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training interactions")
        ax.set_ylabel(yl)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"mmgraph scaling ({device})")
    fig.tight_layout()
    p = HERE / f"scaling_epoch{tag}.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    out.append(p)

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for m in MODELS:
        rs = sorted((r for r in ok if r["model"] == m), key=lambda r: r["users"] * r["items"])
        if rs:
            ax.plot([r["test_users"] * r["items"] for r in rs], [r["eval_s"] for r in rs], "o-",
                    label=m)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("evaluated users x items (test split)")
    ax.set_ylabel("seconds per full evaluation")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(f"full-ranking evaluation ({device})")
    fig.tight_layout()
    p = HERE / f"scaling_eval{tag}.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    out.append(p)
    return out


# ------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="sizes 20k,baby; 256/64-d features; 5 batches extrapolated (~2 min)")
    p.add_argument("--sizes", default=None, help=f"comma list of {','.join(SIZES)}")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--batches", type=int, default=None,
                   help="time N batches and extrapolate (default: full epoch; --quick: 5)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--image-dim", type=int, default=None, help="default 4096 (--quick: 256)")
    p.add_argument("--text-dim", type=int, default=None, help="default 384 (--quick: 64)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per (size, model)")
    p.add_argument("--no-write", action="store_true", help="do not update RESULTS.md / PNGs")
    p.add_argument("--json", default=None,
                   help="rows file, merged across runs (default: .mmgraph_cache/scaling/"
                        "rows-<device>[-quick].json): a run replaces its own (size, model) "
                        "rows and the report shows all of them")
    p.add_argument("--fresh", action="store_true", help="ignore rows of earlier runs")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: rebuild the table, plots and RESULTS.md section from the "
                        "rows file")
    p.add_argument("--worker", nargs=2, metavar=("SIZE", "MODEL"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.batches = a.batches if a.batches is not None else (5 if a.quick else 0)
    a.image_dim = a.image_dim if a.image_dim is not None else (256 if a.quick else 4096)
    a.text_dim = a.text_dim if a.text_dim is not None else (64 if a.quick else 384)

    if a.worker:
        r = measure(a.worker[0], a.worker[1], a.device, a.batches, a.image_dim, a.text_dim,
                    a.threads)
        print("RESULT " + json.dumps(r), flush=True)
        return 0

    sizes = a.sizes.split(",") if a.sizes else list(QUICK_SIZES if a.quick else DEFAULT_SIZES)
    models = a.models.split(",")
    bad = [s for s in sizes if s not in SIZES] + [m for m in models if m not in MODELS]
    if bad:
        p.error(f"unknown size/model {bad}; sizes {list(SIZES)}, models {list(MODELS)}")
    if a.timeout is None and a.quick:
        a.timeout = 600
    info = machine_info()
    print(info, flush=True)
    load, cores = os.getloadavg()[0], len(os.sched_getaffinity(0))
    if load >= cores and (a.threads or torch.get_num_threads()) > 1:
        print(f"warning: load average {load:.1f} on {cores} cores: several torch threads per "
              "process spin against the other jobs (seen here: 60x slower steps); consider "
              "--threads 1", flush=True)
    rows_path = Path(a.json) if a.json else CACHE / (
        f"rows-{a.device.replace(':', '')}{'-quick' if a.quick else ''}.json")
    earlier = (json.loads(rows_path.read_text()) if rows_path.is_file() and not a.fresh
               else [])
    order = {k: i for i, k in enumerate(SIZES)}

    def merged(new_rows: list[dict]) -> list[dict]:
        """Earlier rows, replaced by this run's (size, model) rows; saved after every row."""
        done = {(r["size"], r["model"]) for r in new_rows}
        out = [r for r in earlier if (r["size"], r["model"]) not in done] + new_rows
        out.sort(key=lambda r: (order.get(r["size"], 99),
                                MODELS.index(r["model"]) if r["model"] in MODELS else 99))
        rows_path.parent.mkdir(parents=True, exist_ok=True)
        rows_path.write_text(json.dumps(out, indent=2))
        return out

    t_start = time.perf_counter()
    new_rows: list[dict] = []
    for s in ([] if a.report_only else sizes):
        prepare(s, a.image_dim, a.text_dim)
        for m in models:
            r = run_worker(s, m, a)
            r["command"] = command_line()
            r["load_avg"] = round(os.getloadavg()[0], 1)
            new_rows.append(r)
            merged(new_rows)
            if "error" not in r:
                print(f"[{s:6s} {m:9s}] build {r['build_s']:7.1f} s | epoch {r['epoch_s']:8.1f} s "
                      f"({r['mode']}) | train peak {_fmt_mb(r['train_peak_mb'])} | eval "
                      f"{r['eval_s']:6.1f} s | process peak {_fmt_mb(r['process_peak_mb'])}",
                      flush=True)
    total = time.perf_counter() - t_start
    rows = merged(new_rows)
    text = table(rows, a.device)
    print(text)
    if not a.no_write:
        shown_rows = rows_path.relative_to(ROOT) if rows_path.is_relative_to(ROOT) else rows_path
        pngs = plots(rows, a.device, ("_quick" if a.quick else "")
                     + ("_cuda" if a.device.startswith("cuda") else ""))
        feats = (f"multimodal models with {a.image_dim}-d image + {a.text_dim}-d text features"
                 f"{' (reduced for --quick)' if a.quick else ' (the real widths)'}; LightGCN "
                 "without features")
        commands = sorted({r.get("command", "?") for r in rows})
        body = [("Commands: " if len(commands) > 1 else "Command: ")
                + ", ".join(f"`{c}`" for c in commands), "", f"Machine: {info}; load average at the end "
                f"{os.getloadavg()[0]:.1f} (per row: `load_avg` in the rows file)", "",
                f"Synthetic data (`mmgraph.data.generate_synthetic`, cached); {feats}. "
                "Global batch 2048, each model's paper training defaults; one subprocess per "
                "row. `epoch measured as` says whether a full epoch ran or N batches were "
                "timed and extrapolated (loader set-up + N x per-step time). Evaluation = one "
                "full ranking of the test split (streamed over 4096-user batches). Peaks are "
                "RSS high-water marks above the level before the phase"
                + (" (GPU: torch.cuda.max_memory_allocated)" if a.device.startswith("cuda")
                   else "") + "; process peak = the worker's largest RSS. "
                + ("Report rebuilt from the rows file " if a.report_only else
                   f"Wall time of this run {total / 60:.1f} min ")
                + f"(rows of earlier runs are kept: `{shown_rows}`).", "", text, ""]
        if pngs:
            body.append("Plots: " + ", ".join(f"`benchmarks/{q.name}`" for q in pngs))
        title = "Scaling: epoch and evaluation time, peak memory vs dataset size"
        if a.quick:
            title += " (quick)"
        if a.device.startswith("cuda"):
            title += " [CUDA]"
        append_results(title, "\n".join(body))
        print(f"wrote {HERE / 'RESULTS.md'}" + "".join(f", {q}" for q in pngs))
    return 1 if any("error" in r for r in new_rows) else 0


if __name__ == "__main__":
    sys.exit(main())
