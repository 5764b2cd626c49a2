"""mmgraph against the real MMRec toolbox and RecBole: same data, split, settings, threads.

    git clone https://github.com/enoche/MMRec /path/to/MMRec
    python -m venv /path/to/rb && /path/to/rb/bin/pip install recbole     # optional
    python benchmarks/peers.py --mmrec /path/to/MMRec [--recbole [PYTHON]]
        [--data synthetic:baby] [--models lightgcn,bprmf,...] [--epochs 4]
        [--threads 1] [--reps 1] [--device cpu|cuda] [--tolerance 0.5] [--json F]

Peers (each optional; one that is absent or broken is reported and skipped,
and with none at all the script says so and exits 0):

* ``--mmrec PATH``: a local checkout of the MMRec toolbox. It runs from a
  throw-away copy of its ``src/`` through its own ``quick_start``, with its
  hyper-parameter grid replaced by the one value mmgraph uses (``MODELS``).
  Environment fixes, in the copy's runner only: a dataset config for the
  folder below; the shims of ``benchmarks/parity/_upstream.py``; in a CPU run
  its hard-coded ``.cuda()`` calls kept on the CPU; torchvision, lmdb and
  scikit-learn stubbed when absent (only its raw-image helpers and an unused
  import of SLMRec need them). Nothing of it is in this repository.
* ``--recbole [PYTHON]``: RecBole (``pip install recbole``), imported by the
  interpreter ``PYTHON`` (default: this one), so it can live in a venv of its
  own. It reads the same interactions written as atomic files with the same
  split (``<name>.train.inter`` / ``.valid.inter`` / ``.test.inter``,
  ``benchmark_filename``), full-ranking evaluation; a throw-away runner
  applies the numpy 2 / scipy shims of ``_upstream.install_shims``. RecBole
  has no multimodal model, so it runs ``RECBOLE_MODELS`` only.

mmgraph runs ``mmgraph train`` with its defaults (plus ``OURS_OPTIONS``, which
pin options of ours to what MMRec computes; ``--ours-defaults`` leaves them
out) on the dataset folder written once in MMRec's layout
(``<name>.inter`` + ``image_feat.npy`` / ``text_feat.npy``). Every side trains
``--epochs`` epochs in its own process, interleaved (MMRec, RecBole, mmgraph,
then the reverse order on the next repetition), with the same batch size,
learning rate and schedule, weight decay, evaluation batch (users), seed value,
``--threads`` threads and allocator, and evaluates validation after every epoch
(MMRec and mmgraph also test). Early stopping is off everywhere.

Measured per side: seconds per training epoch (the ``epoch N training [time:
...]`` log line of MMRec and RecBole, our ``train_seconds``), seconds per
validation evaluation (``epoch N evaluating [time: ...]``, our
``valid_seconds``), each the median over the epochs after the first
(warm-up), and the process's peak RSS (``wait4`` of the child). Validation
Recall@20 after the last epoch is printed for every side; the sides train the
same model, so it should be in the same range (not equal: sampling and
initialisation draws differ). The check line flags a side whose value is off
by more than a factor ``1 + --tolerance`` from the other side's (two sides) or
from the median of all (three).
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
SIDES = ("ours", "mmrec", "recbole")
LABELS = {"ours": "mmgraph", "mmrec": "MMRec", "recbole": "RecBole"}

#: mmgraph model -> (MMRec model, MMRec options fixed to mmgraph's model defaults).
#: The training settings (learning rate and its schedule, batch sizes, weight
#: decay) come from mmgraph's TrainConfig plus the model's ``train_defaults``
#: (:func:`train_settings`). Every list in MMRec's yaml grid is replaced by the
#: one value equal to ours.
MODELS = {
    # Cannot match exactly: MMRec's LightGCN and BPR regularise with its EmbLoss,
    # sum_t ||t||_F / B (unsquared norms), ours with sum_t ||t||_F^2 / (2B); the same
    # reg_weight is then a different pull (for BPR-MF's 0.1, a stronger one in ours).
    "lightgcn": ("LightGCN", {"n_layers": 4, "reg_weight": 1e-4}),
    "bprmf": ("BPR", {"reg_weight": 0.1}),
    "vbpr": ("VBPR", {"reg_weight": 1e-4}),
    # MMRec's n_layers (2 in the yaml) is not read by its GCN, which has three
    # layers; ours: num_layers 3, the same model. latent 256 and the projection
    # of the image modality only are hard-coded in MMRec, as our defaults.
    "mmgcn": ("MMGCN", {"reg_weight": 1e-5}),
    "grcn": ("GRCN", {"reg_weight": 1e-5, "n_layers": 3, "latent_embedding": 64}),
    # MMRec's SLMRec does not read `reg` (a grid of 4 values; our reg_weight is
    # 0); it regularises through Adam's weight decay 1e-4 (ours: train_defaults).
    "slmrec": ("SLMRec", {"recdim": 64, "layer_num": 3, "ssl_task": "FAC", "ssl_alpha": 0.1,
                          "ssl_temp": 0.2, "temp": 0.2, "dropout_rate": 0.3,
                          "mm_fusion_mode": "concat", "reg": 0.0}),
    "lattice": ("LATTICE", {"reg_weight": 1e-5, "knn_k": 10, "lambda_coeff": 0.9, "n_layers": 1,
                            "weight_size": [64, 64], "feat_embed_dim": 64,
                            "cf_model": "lightgcn"}),
    "mgcn": ("MGCN", {"cl_loss": 0.01, "reg_weight": 1e-4, "n_ui_layers": 2, "n_layers": 1,
                      "knn_k": 10}),
    "lgmrec": ("LGMRec", {"n_ui_layers": 2, "n_mm_layers": 2, "n_hyper_layer": 1,
                          "hyper_num": 4, "keep_rate": 0.5, "alpha": 0.3, "cl_weight": 1e-4,
                          "reg_weight": 1e-6, "feat_embed_dim": 64, "cf_model": "lightgcn"}),
    "bm3": ("BM3", {"n_layers": 1, "reg_weight": 0.1, "cl_weight": 2.0, "dropout": 0.5}),
    "freedom": ("FREEDOM", {"reg_weight": 1e-4, "dropout": 0.8, "n_mm_layers": 1,
                            "n_ui_layers": 2, "knn_k": 10, "mm_image_weight": 0.1}),
}

#: mmgraph model -> options of ``mmgraph train`` that make our model the one MMRec's code
#: computes, pinned where an option of ours switches between the two (the model page's
#: "Differences from the authors' code"); ``--ours-defaults`` runs without them.
OURS_OPTIONS = {
    # MMRec's routing passes messages to the items only and leaves the user preferences
    # as learned (docs/models/grcn.md): our default too, pinned here, 'paper' is the option
    "grcn": {"routing": "mmrec"},
}

#: mmgraph model -> (RecBole model, options fixed to mmgraph's defaults). RecBole
#: 1.2 has no multimodal recommender (no VBPR, MMGCN, ...; its CKE is a
#: knowledge-graph model), so only the two ID models have a counterpart.
RECBOLE_MODELS = {
    # RecBole's EmbLoss with require_pow is our l2_reg: the squared Frobenius norms
    # of the batch's layer-0 vectors over twice the batch size. (MMRec's EmbLoss is
    # the unsquared form, sum of norms over the batch size, with no option for ours.)
    "lightgcn": ("LightGCN", {"n_layers": 4, "reg_weight": 1e-4, "require_pow": True}),
    # Cannot match: RecBole's BPR has no embedding regulariser (ours and MMRec's:
    # reg_weight 0.1 x EmbLoss of the batch's vectors); it trains plain BPR.
    "bprmf": ("BPR", {}),
}
TUNED_MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "2147483647"}

_MMREC_RUNNER = """import json, sys
sys.path.insert(0, {parity!r})
import _upstream
_upstream.install_shims()
_upstream.stub_missing_modules(["torchvision", "torchvision.transforms",
                                "torchvision.transforms.functional", "lmdb",
                                "sklearn", "sklearn.cluster"])
if {cpu}:
    _upstream.keep_cuda_calls_on_cpu()
import torch
torch.set_num_threads({threads})
from utils.quick_start import quick_start
quick_start(model={model!r}, dataset={dataset!r}, config_dict=json.loads({config!r}),
            save_model=False)
"""

_RECBOLE_RUNNER = """import json, sys
sys.path.insert(0, {parity!r})
import _upstream
_upstream.install_shims()
import torch
torch.set_num_threads({threads})
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_logger, init_seed
config = Config(model={model!r}, dataset={dataset!r}, config_dict=json.loads({config!r}))
init_seed(config["seed"], config["reproducibility"])
init_logger(config)
dataset = create_dataset(config)
print(dataset, flush=True)
train, valid, _ = data_preparation(config, dataset)
model = get_model(config["model"])(config, train._dataset).to(config["device"])
trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
trainer.fit(train, valid, saved=False, show_progress=False)
"""

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_log(out: str) -> dict:
    """Per-epoch training and validation seconds and the last validation score
    from MMRec's or RecBole's log (``epoch N training [time: Xs, ...]``,
    ``epoch N evaluating [time: Xs, valid_score: Y]``; colour codes ignored).
    Both are configured with ``valid_metric`` Recall@20, so the score is R@20."""
    out = _ANSI.sub("", out)
    train = [float(t) for t in re.findall(r"epoch \d+ training \[time: ([\d.]+)s", out)]
    evals = re.findall(r"epoch \d+ evaluating \[time: ([\d.]+)s, valid_score: ([-\d.eE+naif]+)\]",
                       out)
    return {"train": train, "valid": [float(t) for t, _ in evals],
            "valid_recall@20": float(evals[-1][1]) if evals else float("nan")}


def parse_recbole_counts(out: str) -> dict:
    """The dataset sizes RecBole logs when it loads (``The number of users: N``, items,
    inters; users and items count its padding id 0), or ``{}``."""
    counts = {}
    for key in ("users", "items", "inters"):
        m = re.search(rf"The number of {key}: (\d+)", _ANSI.sub("", out))
        if m:
            counts[key] = int(m.group(1))
    return counts


def train_settings(model: str) -> dict:
    """mmgraph's training settings for ``model`` (TrainConfig + its ``train_defaults``)."""
    from mmgraph.models import MODELS as ZOO
    from mmgraph.train.trainer import train_config_for
    c = train_config_for(ZOO[model])
    return {"lr": c.lr, "batch_size": c.batch_size, "eval_batch_size": c.eval_batch_size,
            "weight_decay": c.weight_decay, "lr_decay": c.lr_decay,
            "lr_decay_every": c.lr_decay_every, "seed": c.seed, "optimizer": c.optimizer,
            "num_neg": c.num_neg}


def write_data(data, work: Path, name: str) -> Path:
    """The dataset folder in MMRec's layout (read by MMRec and by mmgraph)."""
    from mmgraph.data import write_mmrec
    folder = work / "data" / name
    write_mmrec(data, folder, name)
    return folder


def write_recbole_files(data, folder: Path, name: str) -> Path:
    """RecBole atomic files ``<name>.{train,valid,test}.inter`` with ``data``'s split."""
    from mmgraph.data import write_recbole
    return write_recbole(data, folder, name, features=False)


def prepare_mmrec(checkout: Path, work: Path, name: str) -> Path:
    """A throw-away copy of MMRec's ``src`` with a dataset config for ``name``."""
    src = work / "mmrec" / "src"
    shutil.copytree(checkout / "src", src, ignore=shutil.ignore_patterns(".git", "*.pt"))
    base = (checkout / "src" / "configs" / "dataset" / "baby.yaml").read_text()
    (src / "configs" / "dataset" / f"{name}.yaml").write_text(
        re.sub(r"inter_file_name: .*", f"inter_file_name: '{name}.inter'", base))
    return src


def recbole_version(python: str, env: dict | None = None) -> str | None:
    """RecBole's version as ``python`` imports it, or ``None`` when it cannot."""
    try:
        r = subprocess.run([python, "-c", "import torch, recbole; print(recbole.__version__)"],
                           capture_output=True, text=True, timeout=300, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else None


def mmrec_version(checkout: Path) -> str:
    """The checkout's commit (short), or ``'unknown commit'``."""
    try:
        r = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown commit"
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else "unknown commit"


def _wait(proc: subprocess.Popen, timeout: float) -> tuple[int, str, float]:
    """Exit code, output and peak RSS (MiB, as :func:`_rss_wrapper` reports it) of a child."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return -9, out + f"\n(killed after {timeout:.0f} s)", float("nan")
    m = re.findall(r"@@maxrss_kib=(\d+)", out)
    return proc.returncode, out, int(m[-1]) / 1024 if m else float("nan")


def _rss_wrapper(cmd: list[str]) -> list[str]:
    """Run ``cmd`` as a child of a tiny Python parent that prints the child's peak RSS."""
    code = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:]); "
            "_, st, ru = os.wait4(p.pid, 0); "
            "print(f'@@maxrss_kib={ru.ru_maxrss}', flush=True); "
            "sys.exit(os.waitstatus_to_exitcode(st))")
    return [sys.executable, "-c", code, *cmd]


def _run(cmd: list[str], cwd: Path, env: dict, timeout: float, what: str) -> tuple[str, float]:
    proc = subprocess.Popen(_rss_wrapper(cmd), cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    rc, out, rss = _wait(proc, timeout)
    if rc != 0:
        raise RuntimeError(f"{what} failed ({rc}):\n{out[-3000:]}")
    return out, rss


def mmrec_config(model: str, epochs: int, device: str, data_path: Path) -> dict:
    """MMRec's ``config_dict``: the model's options and mmgraph's training settings."""
    _, options = MODELS[model]
    t = train_settings(model)
    gpu = device.startswith("cuda")
    return {"gpu_id": int(device.partition(":")[2] or 0) if gpu else 0, "use_gpu": gpu,
            "data_path": str(data_path) + os.sep,
            "epochs": epochs, "stopping_step": 10 ** 6, "eval_step": 1,
            "seed": [t["seed"]], "hyper_parameters": [], "save_recommended_topk": False,
            "learning_rate": t["lr"],
            "learning_rate_scheduler": [t["lr_decay"], t["lr_decay_every"]],
            "train_batch_size": t["batch_size"], "eval_batch_size": t["eval_batch_size"],
            "weight_decay": t["weight_decay"], "embedding_size": 64, **options}


def recbole_config(model: str, epochs: int, device: str, data_path: Path, num_items: int,
                   work: Path) -> dict:
    """RecBole's ``config_dict``: the same split files, protocol and settings."""
    _, options = RECBOLE_MODELS[model]
    t = train_settings(model)
    if t["lr_decay"] != 1.0 or t["optimizer"] != "adam":       # RecBole has neither
        raise ValueError(f"{model}: RecBole cannot follow lr_decay {t['lr_decay']} / "
                         f"optimizer {t['optimizer']}")
    gpu = device.startswith("cuda")
    return {"data_path": str(data_path), "benchmark_filename": ["train", "valid", "test"],
            "load_col": {"inter": ["user_id", "item_id"]},
            "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id",
            "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
            "metrics": ["Recall", "NDCG"], "topk": [20], "valid_metric": "Recall@20",
            "epochs": epochs, "stopping_step": 10 ** 6, "eval_step": 1,
            "train_batch_size": t["batch_size"], "learner": "adam", "learning_rate": t["lr"],
            "weight_decay": t["weight_decay"],
            "train_neg_sample_args": {"distribution": "uniform", "sample_num": t["num_neg"],
                                      "alpha": 1.0, "dynamic": False, "candidate_num": 0},
            # RecBole's full-ranking batch counts scores (users x items, padding item included)
            "eval_batch_size": t["eval_batch_size"] * (num_items + 1),
            "embedding_size": 64, "seed": t["seed"], "reproducibility": True,
            "use_gpu": gpu, "gpu_id": device.partition(":")[2] or "0",
            "show_progress": False, "log_wandb": False, "worker": 0, "state": "INFO",
            "checkpoint_dir": str(work / "recbole" / "saved"), **options}


def run_mmrec(src: Path, model: str, dataset: str, epochs: int, threads: int, env: dict,
              timeout: float, device: str = "cpu", data_path: Path | None = None) -> dict:
    mm_name, _ = MODELS[model]
    config = mmrec_config(model, epochs, device, data_path or src.parent.parent / "data")
    runner = src / "_mmgraph_peer_runner.py"
    runner.write_text(_MMREC_RUNNER.format(parity=str(PARITY), model=mm_name, dataset=dataset,
                                           config=json.dumps(config), threads=threads,
                                           cpu=not config["use_gpu"]))
    out, rss = _run([sys.executable, runner.name], src, env, timeout, f"MMRec {mm_name}")
    return {**parse_log(out), "rss_mib": rss}


def run_recbole(work: Path, python: str, model: str, dataset: str, epochs: int, threads: int,
                env: dict, timeout: float, device: str, num_items: int) -> dict:
    rb_name, _ = RECBOLE_MODELS[model]
    folder = work / "recbole"
    config = recbole_config(model, epochs, device, folder / "data", num_items, work)
    runner = folder / "_mmgraph_peer_recbole.py"
    runner.write_text(_RECBOLE_RUNNER.format(parity=str(PARITY), model=rb_name, dataset=dataset,
                                             config=json.dumps(config), threads=threads))
    out, rss = _run([python, runner.name], folder, env, timeout, f"RecBole {rb_name}")
    return {**parse_log(out), "rss_mib": rss, "dataset": parse_recbole_counts(out)}


def ours_options(model: str) -> list[str]:
    """``OURS_OPTIONS[model]`` as ``mmgraph train`` arguments."""
    return [x for k, v in OURS_OPTIONS.get(model, {}).items()
            for x in (f"--{k.replace('_', '-')}", str(v))]


def run_ours(work: Path, model: str, folder: Path, epochs: int, threads: int, env: dict,
             timeout: float, device: str = "cpu", options: list[str] = ()) -> dict:
    out_dir = work / "ours" / model
    cmd = [sys.executable, "-m", "mmgraph.cli", "train", "--model", model, "--data", str(folder),
           "--epochs", str(epochs), "--patience", str(10 ** 6), "--threads", str(threads),
           "--out-dir", str(out_dir), "--overwrite", "--progress", "false", "--device", device,
           *options]
    _, rss = _run(cmd, ROOT, env, timeout, f"mmgraph {model}")
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return {"train": [r["train_seconds"] for r in rows],
            "valid": [r["valid_seconds"] for r in rows if "valid_seconds" in r],
            "rss_mib": rss, "valid_recall@20": rows[-1]["valid"]["recall@20"]}


def _steady(xs: list[float]) -> float:
    """Median over the epochs after the first (warm-up), or the one value."""
    return statistics.median(xs[1:] if len(xs) > 1 else xs) if xs else float("nan")


def out_of_range(values: dict[str, float], tolerance: float) -> list[str]:
    """The sides whose value is off by more than a factor ``1 + tolerance`` (either
    way) from the other side's (two sides) or from the median of all (three or
    more, so one outlier does not move the reference); NaN or non-positive: off."""
    valid = {s: v for s, v in values.items() if v == v and v > 0}
    bad = [s for s in values if s not in valid]
    for side, v in valid.items():
        others = [x for s, x in valid.items() if s != side]
        if not others:
            continue
        ref = others[0] if len(others) == 1 else statistics.median(valid.values())
        if not ref / (1 + tolerance) <= v <= ref * (1 + tolerance):
            bad.append(side)
    return sorted(bad, key=list(values).index)


def _fmt(x: float, spec: str) -> str:
    return "–" if x is None or x != x else format(x, spec)


def _ratio(peer: float | None, ours: float | None) -> str:
    if peer is None or ours is None or peer != peer or ours != ours or ours <= 0:
        return "–"
    return f"{peer / ours:.1f}x"


def summarise(results: dict[str, dict[str, list]]) -> dict[str, dict[str, dict]]:
    """Per model and side: median over repetitions of the steady train / valid seconds,
    the largest peak RSS, the median validation R@20; a failed side keeps its error."""
    summary = {}
    for m, by_side in results.items():
        summary[m] = {}
        for side, runs in by_side.items():
            ok = [r for r in runs if "error" not in r]
            if not ok:
                summary[m][side] = {"error": runs[0]["error"] if runs else "not run"}
                continue
            summary[m][side] = {
                "train_s": statistics.median(_steady(r["train"]) for r in ok),
                "valid_eval_s": statistics.median(_steady(r["valid"]) for r in ok),
                "peak_rss_mib": max(r["rss_mib"] for r in ok),
                "valid_recall@20": statistics.median(r["valid_recall@20"] for r in ok)}
    return summary


def table(summary: dict, peers: list[str]) -> list[str]:
    """The markdown table: one row per model, mmgraph and each peer in ``peers``."""
    sides = ["ours", *peers]
    names = [LABELS[s] for s in sides]

    def get(m, side, key):
        return summary[m].get(side, {}).get(key)

    head = (["model", f"train s/epoch {names[0]}", *names[1:]]
            + [f"speed-up vs {LABELS[p]}" for p in peers]
            + [f"valid eval s {names[0]}", *names[1:]]
            + [f"speed-up vs {LABELS[p]}" for p in peers]
            + [f"peak RSS {' / '.join(names)} (MiB)", f"valid R@20 {' / '.join(names)}"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in summary:
        cells = [m]
        for key in ("train_s", "valid_eval_s"):
            cells += [_fmt(get(m, s, key), ".2f") for s in sides]
            cells += [_ratio(get(m, p, key), get(m, "ours", key)) for p in peers]
        cells.append(" / ".join(_fmt(get(m, s, "peak_rss_mib"), ",.0f") for s in sides))
        cells.append(" / ".join(_fmt(get(m, s, "valid_recall@20"), ".4f") for s in sides))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def check_lines(summary: dict, tolerance: float) -> tuple[list[str], dict]:
    """One line per model: ok, or the sides whose valid R@20 is out of range of the others."""
    lines, flags = [], {}
    for m, by_side in summary.items():
        vals = {s: r["valid_recall@20"] for s, r in by_side.items() if "error" not in r}
        failed = [LABELS[s] for s, r in by_side.items() if "error" in r]
        if len(vals) < 2:
            flags[m] = []
            lines.append(f"check {m}: fewer than two sides ran ({', '.join(failed)} failed)")
            continue
        bad = out_of_range(vals, tolerance)
        flags[m] = bad
        shown = ", ".join(f"{LABELS[s]} {v:.4f}" for s, v in vals.items())
        if bad:
            lines.append(f"check {m}: OUT OF RANGE ({' and '.join(LABELS[s] for s in bad)} off "
                         f"by more than {1 + tolerance:.2g}x): {shown}")
        else:
            lines.append(f"check {m}: ok, valid R@20 within {1 + tolerance:.2g}x: {shown}")
        if failed:
            lines[-1] += f" ({', '.join(failed)} failed)"
    return lines, flags


def select_models(requested: list[str] | None, peers: list[str]) -> tuple[list[str], list[str]]:
    """The models to run (``requested``, or every model a peer in ``peers`` has) and
    those of ``requested`` that no peer in ``peers`` has (skipped)."""
    has = {"mmrec": MODELS, "recbole": RECBOLE_MODELS}
    known = {**MODELS, **RECBOLE_MODELS}
    models = requested if requested is not None else list(known)
    run = [m for m in models if any(m in has[q] for q in peers)]
    return run, [m for m in models if m not in run] if requested is not None else []


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mmrec", default=None, metavar="PATH",
                   help="local checkout of github.com/enoche/MMRec")
    p.add_argument("--recbole", nargs="?", const=sys.executable, default=None, metavar="PYTHON",
                   help="run RecBole too, imported by this interpreter (default: the current "
                        "one; e.g. a venv's bin/python where `pip install recbole` was run)")
    p.add_argument("--data", default="synthetic:baby",
                   help="any dataset spec mmgraph loads (default: synthetic Baby with 4096-d "
                        "image and 384-d text features)")
    p.add_argument("--models", default=None,
                   help="comma-separated mmgraph models (default: every model a selected peer "
                        f"has; MMRec: {','.join(MODELS)}; RecBole: {','.join(RECBOLE_MODELS)})")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--malloc", choices=("default", "tuned"), default="default",
                   help="glibc allocator setting, the same on every side")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N], the same on every side "
                   "(peak RSS is then host memory only)")
    p.add_argument("--tolerance", type=float, default=0.5,
                   help="the check flags a side whose valid R@20 is off by more than a factor "
                        "1 + TOLERANCE from the other side's, or from the median of three")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when a side failed or the check flags one")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    p.add_argument("--ours-defaults", action="store_true",
                   help="run mmgraph with its own defaults, without OURS_OPTIONS")
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)

    known = {**MODELS, **RECBOLE_MODELS}
    requested = ([m.strip() for m in a.models.split(",") if m.strip()]
                 if a.models is not None else None)
    unknown = [m for m in requested or [] if m not in known]
    if unknown:
        print(f"peers: no MMRec or RecBole counterpart configured for {unknown}; known: "
              f"MMRec {list(MODELS)}, RecBole {list(RECBOLE_MODELS)}", file=sys.stderr)
        return 2
    if a.epochs < 1 or a.reps < 1 or a.threads < 1 or a.tolerance <= 0:
        print("peers: --epochs, --reps and --threads must be >= 1, --tolerance > 0",
              file=sys.stderr)
        return 2

    peers = []
    checkout = Path(a.mmrec).expanduser() if a.mmrec else None
    if checkout is not None and (checkout / "src" / "utils" / "quick_start.py").is_file():
        peers.append("mmrec")
    else:
        print(f"peers: no MMRec checkout at {a.mmrec!r} (git clone "
              "https://github.com/enoche/MMRec and pass --mmrec PATH): MMRec skipped")
    rb_version = None
    if a.recbole is not None:
        rb_version = recbole_version(a.recbole)
        if rb_version:
            peers.append("recbole")
        else:
            print(f"peers: RecBole cannot be imported by {a.recbole!r} (pip install recbole "
                  "there, or pass --recbole PYTHON of a venv that has it): RecBole skipped")
    else:
        print("peers: RecBole not requested (--recbole [PYTHON]): skipped")
    if not peers:
        print("peers: no peer to compare with: skipped")
        return 0
    has = {"mmrec": MODELS, "recbole": RECBOLE_MODELS}
    models, without = select_models(requested, peers)
    if without:
        print(f"peers: {without} have no counterpart in {[LABELS[q] for q in peers]}: skipped")
    if not models:
        print("peers: no model to compare: skipped")
        return 0

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import machine_info
    import torch
    torch.set_num_threads(a.threads)            # as in every child (machine_info shows it)
    from mmgraph.data import load_dataset
    from mmgraph.data.hetero import num_items, num_users, split_edge_index
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads),
           "PYTHONUNBUFFERED": "1", **(TUNED_MALLOC_ENV if a.malloc == "tuned" else {})}
    work = Path(tempfile.mkdtemp(prefix="mmgraph-peers-"))
    name = "peerdata"
    results: dict[str, dict[str, list]] = {}
    try:
        data = load_dataset(a.data, cache=False)
        folder = write_data(data, work, name)
        n_items = num_items(data)
        if "recbole" in peers:
            # from what mmgraph reads back, so RecBole sees exactly mmgraph's split
            ours = load_dataset(folder, cache=False)
            write_recbole_files(ours, work / "recbole" / "data" / name, name)
            expected = {"users": num_users(ours) + 1, "items": n_items + 1,   # + padding id
                        "inters": sum(split_edge_index(ours, s).size(1)
                                      for s in ("train", "valid", "test"))}
            del ours
        del data
        src = prepare_mmrec(checkout, work, name) if "mmrec" in peers else None
        for rep in range(a.reps):
            for m in models:
                sides = [s for s in ("mmrec", "recbole") if s in peers and m in has[s]]
                sides = [*sides, "ours"] if rep % 2 == 0 else ["ours", *reversed(sides)]
                results.setdefault(m, {s: [] for s in ("ours", *[
                    q for q in ("mmrec", "recbole") if q in sides])})
                for side in sides:
                    try:
                        if side == "mmrec":
                            r = run_mmrec(src, m, name, a.epochs, a.threads, env, a.timeout,
                                          a.device, work / "data")
                        elif side == "recbole":
                            r = run_recbole(work, a.recbole, m, name, a.epochs, a.threads, env,
                                            a.timeout, a.device, n_items)
                        else:
                            r = run_ours(work, m, folder, a.epochs, a.threads, env, a.timeout,
                                         a.device, [] if a.ours_defaults else ours_options(m))
                    except (RuntimeError, OSError, ValueError) as e:
                        r = {"error": str(e)}
                        print(f"rep {rep} {m:9s} {LABELS[side]:8s} FAILED: {e}", flush=True)
                    else:
                        if side == "recbole" and r["dataset"] != expected:
                            print(f"peers: RecBole read {r['dataset']}, expected {expected} "
                                  "(users and items with its padding id)", flush=True)
                        print(f"rep {rep} {m:9s} {LABELS[side]:8s} train s/epoch "
                              f"{_steady(r['train']):.2f}  valid eval s {_steady(r['valid']):.2f}"
                              f"  peak RSS {r['rss_mib']:.0f} MiB  valid R@20 "
                              f"{r['valid_recall@20']:.4f}", flush=True)
                    results[m][side].append(r)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    summary = summarise(results)
    shown = [q for q in ("mmrec", "recbole") if q in peers]
    versions = ", ".join(f"RecBole {rb_version}" if q == "recbole" else
                         f"MMRec ({mmrec_version(checkout)})" for q in shown)
    print(f"\n## mmgraph vs {versions} ({a.data}, {a.device}, {a.epochs} epochs, "
          f"{a.threads} thread(s), allocator {a.malloc}, {a.reps} rep(s); medians over the "
          "epochs after the first)\n")
    print(f"Machine: {machine_info()}\n")
    for line in table(summary, shown):
        print(line)
    print()
    checks, flags = check_lines(summary, a.tolerance)
    for line in checks:
        print(line)
    failed = {m: {s: r["error"] for s, r in by.items() if "error" in r}
              for m, by in summary.items()}
    failed = {m: f for m, f in failed.items() if f}
    for m, by in failed.items():
        for side, err in by.items():
            tail = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("@@")]
            print(f"failed {m} {LABELS[side]}: {tail[-1] if tail else err}")
    if a.json:
        Path(a.json).write_text(json.dumps(
            {"args": vars(a), "peers": shown, "recbole_version": rb_version,
             "models": {m: {**{k: [summary[m].get(s, {}).get(k) for s in ("ours", *shown)]
                               for k in ("train_s", "valid_eval_s", "peak_rss_mib",
                                         "valid_recall@20")},
                            "sides": ["ours", *shown], "out_of_range": flags.get(m, []),
                            "runs": results[m]} for m in summary}}, indent=1))
    if a.strict and (failed or any(flags.values())):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
