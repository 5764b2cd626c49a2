"""``mmgraph train | evaluate | recommend | stats | models | convert | sweep | compare``.

Every option is a field of a typed dataclass: the trainer's
:class:`~mmgraph.train.TrainConfig` and the chosen model's config (e.g.
:class:`~mmgraph.models.LightGCNConfig`). ``mmgraph train --model NAME --help``
lists every option with its one-line description (from the dataclass
docstrings), its allowed values and the default the run will use: the
model's config defaults and its ``train_defaults`` merged over
``TrainConfig``'s (``mmgraph models`` prints the same values).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import torch

from . import models as _models  # noqa: F401  (registers every model)
from .data import dataset_stats, format_stats, load_dataset
from .models.base import MODELS, build_model, get_model_class
from .train import (RunFolder, Trainer, TrainConfig, TrainingDiverged, format_result, load_run,
                     to_json, train_config_for)
from .train.config import (_one_line, add_dataclass_arguments, dataclass_overrides,
                           field_descriptions, format_value, json_value, replace_checked)

DEFAULT_DATA = "synthetic:baby"

#: Exceptions that mean a user mistake (a bad option, a missing or malformed file): the CLI
#: prints ``error: <message>`` on one line and exits with 2. Anything else is a bug and keeps
#: its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
               FileExistsError, PermissionError, TrainingDiverged)


def _model_list() -> str:
    return ", ".join(sorted(MODELS))


def default_out_dir(model_name: str | None) -> str:
    """``--out-dir`` when not given: ``runs/<model>``."""
    return str(Path("runs") / (model_name or "<model>"))


def effective_train_defaults(cls) -> dict:
    """The training settings a run of model ``cls`` uses when no option is given:
    ``TrainConfig`` defaults, the model's ``train_defaults`` over them, and
    ``out_dir`` ``runs/<model>`` (what ``--help`` and ``mmgraph models`` show)."""
    cfg = train_config_for(cls, out_dir=default_out_dir(getattr(cls, "name", None)))
    return dataclasses.asdict(cfg)


def _train_parser(model_name: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmgraph train", description="Train a model with early stopping (MMRec protocol).",
        epilog=f"models: {_model_list()}. Model options are listed with --model NAME --help.")
    p.add_argument("--model", required=True, help=f"one of: {_model_list()}")
    p.add_argument("--data", default=DEFAULT_DATA,
                   help="dataset folder (MMRec layout or train/valid/test.npy) or "
                        "'synthetic:baby|sports|clothing|elec|tiny' (default: %(default)s)")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="data-parallel processes on this machine (torch.distributed: gloo on "
                        "CPU, NCCL with --device cuda, one GPU per process); the global batch "
                        "stays --batch-size; each process uses --threads CPU threads (default "
                        "1 under --nproc > 1 unless OMP_NUM_THREADS is set). Several machines: "
                        "see `torchrun ... -m mmgraph.cli train` in mmgraph.train.distributed. "
                        "Values: an integer >= 1. Default: 1")
    if model_name is None:
        add_dataclass_arguments(p, TrainConfig, "training options (TrainConfig; some models "
                                "change defaults: see --model NAME --help)",
                                defaults={"out_dir": default_out_dir(None)})
    else:
        cls = get_model_class(model_name)
        add_dataclass_arguments(p, TrainConfig, f"training options (TrainConfig, with "
                                f"{cls.name}'s defaults)", defaults=effective_train_defaults(cls))
        add_dataclass_arguments(p, cls.config_class,
                                f"{cls.name} options ({cls.config_class.__name__})")
    return p


def cmd_train(argv: list[str]) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model")
    known, _ = pre.parse_known_args(argv)
    if known.model is not None:
        get_model_class(known.model)  # clear error for an unknown model
    args = _train_parser(known.model).parse_args(argv)
    cls = get_model_class(args.model)
    train_over = dataclass_overrides(args, TrainConfig)
    model_over = dataclass_overrides(args, cls.config_class)
    train_over.setdefault("out_dir", default_out_dir(cls.name))
    cfg = train_config_for(cls, **train_over)
    replace_checked(cls.config_class(), **model_over)  # model option errors before any launch

    # every option is checked before the data loads or a process starts
    from .train.config import check_device
    from .train.distributed import is_distributed_env
    from .train.trainer import amp_dtype
    if args.nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {args.nproc}")
    amp_dtype(cfg.amp, check_device(cfg.device))
    if cfg.threads is not None:      # before the data loads: graph building uses them too
        torch.set_num_threads(cfg.threads)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    if cfg.out_dir and main_rank:
        RunFolder(cfg.out_dir).check(cfg.resume, cfg.overwrite)   # taken / in use / a file
    if args.nproc > 1 and not is_distributed_env():
        return _launch_train(argv, args.nproc)

    data = load_dataset(args.data)
    if main_rank:
        print(format_stats(dataset_stats(data)))
    model = build_model(cls.name, data, seed=cfg.seed, **model_over)
    trainer = Trainer(model, data, cfg, data_spec=args.data)
    try:
        result = trainer.fit()
    finally:
        if trainer.dist is not None and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if trainer.is_main:
        print(format_result(result, f"{cls.name} on {args.data}"
                            + (f" ({trainer.dist.world_size} processes)" if trainer.dist else "")))
    if cfg.out_dir and trainer.is_main:
        print(f"results, metrics.jsonl and checkpoints in {cfg.out_dir}/")
    return 130 if result.interrupted else 0


def _launch_train(argv: list[str], nproc: int) -> int:
    """``mmgraph train ... --nproc N``: rerun this command in N torchrun workers."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from .train.distributed import launch
    worker_argv, skip = [], False
    for a in argv:  # drop --nproc N / --nproc=N
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            worker_argv.append(a)
    try:
        launch(["train", *worker_argv], nproc)
    except ChildFailedError as e:
        print(f"error: distributed training failed: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_evaluate(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mmgraph evaluate",
                                description="Full-ranking metrics of a trained run.")
    p.add_argument("run_dir", help="output folder of `mmgraph train` (holds run.json, best_model.pt)")
    p.add_argument("--data", default=None, help="dataset (default: the one it was trained on)")
    p.add_argument("--split", default="test", choices=["valid", "test"])
    p.add_argument("--ks", default="10,20", help="cut-offs, e.g. 5,10,20,50")
    p.add_argument("--cold-start", action="store_true", help="only held-out items with no training interaction")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    model, data, meta = load_run(a.run_dir, a.data, a.device)
    from .evaluation import Evaluator
    try:
        ks = tuple(int(k) for k in a.ks.split(","))
    except ValueError:
        raise ValueError(f"--ks must be comma-separated integers, got {a.ks!r}") from None
    evaluator = Evaluator(data, ks=ks)
    if evaluator.num_eval_users(a.split, cold_start=a.cold_start) == 0:
        raise ValueError(
            f"no user was evaluated: no {a.split} interaction is with a cold item (an item "
            f"without training interactions); this dataset has "
            f"{int(evaluator.cold_items.sum())} cold item(s)" if a.cold_start else
            f"no user was evaluated: the {a.split} split is empty")
    with torch.no_grad():
        out = model()
        res = evaluator.evaluate(lambda u: model.score(u, out), split=a.split,
                                 cold_start=a.cold_start)
    print(to_json(res, indent=2))
    return 0


def cmd_recommend(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mmgraph recommend",
                                description="Top-k unseen items for some users of a trained run.")
    p.add_argument("run_dir")
    p.add_argument("--users", required=True, help="comma-separated user ids")
    p.add_argument("-k", "--k", type=int, default=10)
    p.add_argument("--data", default=None)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    model, data, _ = load_run(a.run_dir, a.data, a.device)
    from .evaluation import recommend
    try:
        users = torch.tensor([int(u) for u in a.users.split(",") if u.strip()], dtype=torch.long)
    except ValueError:
        raise ValueError(f"--users must be comma-separated integers, got {a.users!r}") from None
    bad = [u for u in users.tolist() if not 0 <= u < model.num_users]
    if bad or users.numel() == 0:
        raise ValueError(f"--users must be user ids in 0..{model.num_users - 1}, got "
                         f"{', '.join(map(str, bad[:5])) if bad else 'none'}")
    if not 1 <= a.k <= model.num_items:
        raise ValueError(f"-k must be in 1..{model.num_items} (the number of items), got {a.k}")
    items, scores = recommend(model, data, users, k=a.k)
    for u, it, sc in zip(users.tolist(), items.tolist(), scores.tolist()):
        # a user with fewer than k unseen items: the masked (-inf) training items are not
        # recommendations; strict JSON (to_json) in any case
        keep = [j for j, s in enumerate(sc) if s != float("-inf")]
        print(to_json({"user": u, "items": [it[j] for j in keep],
                       "scores": [round(sc[j], 5) for j in keep]}))
    return 0


def cmd_stats(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mmgraph stats",
                                description="Dataset statistics: sizes, splits, degrees, the "
                                            "detected layout and per-modality feature statistics.")
    p.add_argument("data", nargs="?", default=DEFAULT_DATA)
    a = p.parse_args(argv)
    print(format_stats(_stats_report(a.data)))
    return 0


def _stats_report(spec: str) -> dict:
    """:func:`dataset_stats` with feature statistics and the detected layout."""
    from .data.layouts import detect_layout
    stats = dataset_stats(load_dataset(spec), features=True)
    stats["layout"] = "synthetic" if spec.startswith("synthetic:") else detect_layout(spec)
    return stats


def cmd_convert(argv: list[str]) -> int:
    """``mmgraph convert SRC DST --to LAYOUT``: rewrite a dataset in another layout."""
    from .data.layouts import LAYOUTS, convert_dataset, detect_layout
    p = argparse.ArgumentParser(
        prog="mmgraph convert",
        description="Rewrite a dataset folder in another layout (lossless: users without "
                    "training interactions are kept).")
    p.add_argument("src", help="dataset folder or .inter file, any layout (detected)")
    p.add_argument("dst", help="output folder")
    p.add_argument("--to", required=True, choices=LAYOUTS, help="target layout")
    p.add_argument("--layout", default=None, choices=LAYOUTS, help="source layout (default: detected)")
    p.add_argument("--name", default=None, help="dataset name (NAME.inter); also the output name")
    a = p.parse_args(argv)
    src_layout = a.layout or detect_layout(a.src, a.name)
    out = convert_dataset(a.src, a.dst, a.to, layout=src_layout, name=a.name)
    print(f"converted {a.src} ({src_layout}) -> {out} ({a.to})")
    return 0


def models_markdown() -> str:
    """The reference of every registered model as Markdown (``mmgraph models
    --markdown``; ``docs/models/README.md`` is this text): per model, a link to its
    page (``docs/models/<name>.md``, for the models of this package), each option
    with its default and the one-line description of its config docstring, and the
    training settings that differ from :class:`~mmgraph.train.TrainConfig`'s."""
    base = dataclasses.asdict(TrainConfig())
    tdesc = field_descriptions(TrainConfig)
    skip = ("out_dir", "resume", "overwrite")
    out = ["# Model reference", "",
           "Generated by `mmgraph models --markdown` from the config dataclasses and their "
           "docstrings (a test keeps this file in step). Every option is a `mmgraph train "
           "--<option>` flag (underscores as dashes) and a field of the model's config class. "
           "Each model of the package has its own page beside this one (`<name>.md`): the "
           "paper, the model in equations, every option with the authors' name for it, the "
           "differences from the authors' code and links to the measurements.",
           "", "## Training defaults (`TrainConfig`)", "",
           "| option | default | description |", "|---|---|---|"]
    def cell(text: str) -> str:
        return text.replace("|", "\\|")
    out += [f"| `{k}` | `{format_value(v)}` | {cell(tdesc.get(k, ''))} |"
            for k, v in base.items() if k not in skip]
    for name in sorted(MODELS):
        cls = MODELS[name]
        cfg = cls.config_class()
        desc = field_descriptions(cls.config_class)
        summary = _one_line((cls.__doc__ or "").strip().split("\n\n")[0])
        out += ["", f"## {cls.__name__} (`--model {name}`)", "", summary + ".", ""]
        if cls.__module__.startswith(f"{__package__}.models."):
            out += [f"Paper, equations, the authors' option names and the differences from "
                    f"their code: [{name}.md]({name}.md).", ""]
        out += [f"Config: `{cls.config_class.__module__}.{cls.config_class.__name__}`; "
                f"{'BPR with sampled negatives' if cls.uses_negatives else 'no negatives'}.",
                "", "| option | default | description |", "|---|---|---|"]
        out += [f"| `{f.name}` | `{format_value(getattr(cfg, f.name))}` | "
                f"{cell(desc.get(f.name, ''))} |"
                for f in dataclasses.fields(cls.config_class)]
        train = effective_train_defaults(cls)
        differs = [f"`{k}={format_value(v)}`" for k, v in train.items()
                   if k != "out_dir" and v != base[k]]
        out += ["", "Training: " + (", ".join(differs) if differs else "the defaults") + "."]
    return "\n".join(out) + "\n"


def cmd_models(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mmgraph models",
                                description="Registered models, their options and the training "
                                            "settings each trains with by default.")
    p.add_argument("--markdown", action="store_true",
                   help="the full reference (options, defaults, descriptions) as Markdown, "
                        "as in docs/models/README.md")
    if p.parse_args(argv).markdown:
        print(models_markdown(), end="")
        return 0
    base = dataclasses.asdict(TrainConfig())
    print("training defaults (TrainConfig; a model lists where it differs): "
          + ", ".join(f"{k}={format_value(v)}" for k, v in base.items()
                      if k not in ("out_dir", "resume", "overwrite")))
    print("out_dir: runs/<model>\n")
    for name in sorted(MODELS):
        cls = MODELS[name]
        fields = ", ".join(f"{f.name}={format_value(getattr(cls.config_class(), f.name))}"
                           for f in dataclasses.fields(cls.config_class))
        train = effective_train_defaults(cls)
        differs = ", ".join(f"{k}={format_value(v)}" for k, v in train.items()
                            if k != "out_dir" and v != base[k])
        print(f"{name:10s} {cls.__name__}: {fields}")
        print(f"{'':10s} training: {differs or 'the defaults'}")
    return 0


def _parse_grid(items: list[str]) -> dict[str, list]:
    """``['reg_weight=1e-4,1e-3', 'mmd_sigmas=[[1],[2]]']`` -> ``{option: [values]}`` (text
    values are typed by the sweep, per model, as ``train`` reads them)."""
    grid: dict[str, list] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise ValueError(f"--grid: expected OPTION=V1,V2,... (or OPTION=<JSON list>), "
                             f"got {item!r}")
        text = text.strip()
        if text.startswith("["):
            values = json_value(text, list, f"--grid {key}")
        else:
            values = [v.strip() for v in text.split(",") if v.strip()]
        if key.strip() in grid:
            raise ValueError(f"--grid: {key.strip()} is given twice")
        grid[key.strip()] = values
    return grid


def _int_list(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{option} must be comma-separated integers, got {text!r}") from None


def cmd_sweep(argv: list[str]) -> int:
    """``mmgraph sweep``: models x grid x seeds as run folders, then a leaderboard."""
    from .experiments import PRESETS, SweepConfig, SweepInterrupted, run_sweep
    p = argparse.ArgumentParser(
        prog="mmgraph sweep",
        description="Train every configuration of a grid with several seeds (each trial an "
                    "ordinary run folder under OUT_DIR/trials/<model>/<key=value,...>/seed-<s>), "
                    "choose each model's configuration on validation and write "
                    "OUT_DIR/leaderboard.{json,md,png}. Re-running skips finished trials and "
                    "resumes interrupted ones.",
        epilog=f"models: {_model_list()}. A model's options: mmgraph train --model NAME --help.")
    p.add_argument("--model", help="the model to sweep")
    p.add_argument("--models", help="several models, comma-separated (e.g. lightgcn,freedom)")
    p.add_argument("--data", default=DEFAULT_DATA, help="dataset folder or synthetic: spec, as "
                   "for train (default: %(default)s)")
    p.add_argument("--grid", nargs="+", action="extend", default=[], metavar="OPTION=V1,V2",
                   help="values of a model or training option, typed as train reads them (e.g. "
                        "reg_weight=1e-4,1e-3 lr=0.001); MODEL.OPTION=... for one model only; a "
                        "JSON list for values holding commas (mmd_sigmas=[[1],[1.5]])")
    p.add_argument("--preset", choices=sorted(PRESETS), help="published grids per model "
                   "(mmrec-grid: the MMRec toolbox's); --grid entries override")
    p.add_argument("--seeds", default="0", help="training seeds, comma-separated (default: 0)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="trials at once (local worker processes; on Ray: at most N at once). "
                        "Default: 1")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads per trial (default: cores // jobs)")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="maximum epochs per trial (default: each model's)")
    p.add_argument("--patience", type=int, default=None, metavar="N",
                   help="early-stopping patience (default: each model's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--out-dir", default=None, help="the sweep folder (default: sweeps/<models>)")
    p.add_argument("--baseline", help="model to test the others against (paired tests over "
                   "test users)")
    p.add_argument("--select", choices=("mean", "first"), default="mean",
                   help="mean: best mean validation metric over the seeds (every configuration "
                        "runs every seed); first: MMRec's single-seed choice on the lowest seed, "
                        "then the chosen configuration's other seeds (default: mean)")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local process pool, or Ray Tune (pip install 'mmgraph[tune]')")
    p.add_argument("--address", default=None,
                   help="Ray cluster: auto (the running one) or ray://HOST:PORT (default: a "
                        "local Ray instance)")
    p.add_argument("--search", choices=("grid", "random", "tpe"), default="grid",
                   help="every combination, or TRIALS configurations per model sampled by "
                        "Optuna (pip install 'mmgraph[optuna]') from the grid values")
    p.add_argument("--trials", type=int, default=None, metavar="N",
                   help="configurations per model for --search random|tpe")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    a = p.parse_args(argv)
    if (a.model is None) == (a.models is None):
        raise ValueError("give --model NAME or --models a,b (one of the two)")
    models = (a.model,) if a.model else tuple(m.strip() for m in a.models.split(",") if m.strip())
    cfg = SweepConfig(
        models=models, data=a.data, grid=_parse_grid(a.grid), seeds=_int_list(a.seeds, "--seeds"),
        out_dir=a.out_dir or str(Path("sweeps") / "+".join(models)),
        jobs=a.jobs, threads=a.threads, epochs=a.epochs, patience=a.patience, device=a.device,
        baseline=a.baseline, select=a.select, backend=a.backend, address=a.address,
        search=a.search, trials=a.trials, preset=a.preset, progress=not a.quiet)
    from .train.config import check_device
    check_device(cfg.device)
    for m in cfg.models:      # every trial's training settings checked before anything runs
        cfg.train_config(m, {}, cfg.seeds[0], cfg.out_dir)
    try:
        res = run_sweep(cfg)
    except SweepInterrupted:
        print(f"interrupted: finished trials are kept and running ones checkpointed in "
              f"{cfg.out_dir}; run the same command again to continue", file=sys.stderr)
        return 130
    from .experiments import format_leaderboard
    print(format_leaderboard(res.leaderboard))
    if res.failed:
        print(f"{len(res.failed)} trial(s) failed: "
              + "; ".join(f"{o.label}: {o.error}" for o in res.failed), file=sys.stderr)
    return 1 if res.failed else 0


def cmd_compare(argv: list[str]) -> int:
    """``mmgraph compare DIR ...``: the leaderboard of existing run folders."""
    from .experiments import (build_leaderboard, find_runs, format_leaderboard,
                              write_leaderboard)
    p = argparse.ArgumentParser(
        prog="mmgraph compare",
        description="The leaderboard of existing run folders (of mmgraph train or sweep): runs "
                    "are grouped by model and configuration (seeds together); per model the "
                    "configuration with the best validation metric, test mean +- std over seeds, "
                    "paired tests against --baseline.")
    p.add_argument("dirs", nargs="+", help="run folders, or folders to search for them")
    p.add_argument("--baseline", help="model to test the others against")
    p.add_argument("--select", choices=("mean", "first"), default="mean",
                   help="mean over seeds, or the lowest seed only (default: mean)")
    p.add_argument("--out-dir", default=None,
                   help="also write leaderboard.json/.md/.png there")
    p.add_argument("--data", default=None, help="dataset (default: the one each run recorded)")
    a = p.parse_args(argv)
    runs = find_runs(a.dirs)
    if not runs:
        raise ValueError(f"no run folder (with run.json) in {', '.join(a.dirs)}")
    data = load_dataset(a.data) if a.data else None
    board = build_leaderboard(runs, baseline=a.baseline, select=a.select, data=data)
    print(format_leaderboard(board))
    if a.out_dir:
        for f in write_leaderboard(board, a.out_dir):
            print(f"wrote {f}", file=sys.stderr)
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "recommend": cmd_recommend,
            "stats": cmd_stats, "models": cmd_models, "convert": cmd_convert,
            "sweep": cmd_sweep, "compare": cmd_compare}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: mmgraph {train,evaluate,recommend,stats,models,convert,sweep,compare} "
              "[options]\n\n"
              "  train      train a model (mmgraph train --model NAME --help)\n"
              "  sweep      models x grid x seeds as run folders, then a leaderboard\n"
              "  compare    the leaderboard of existing run folders\n"
              "  evaluate   metrics of a trained run\n"
              "  recommend  top-k items for users of a trained run\n"
              "  stats      dataset statistics (layout, sizes, feature norms/zero/duplicate rows)\n"
              "  models     list models and their default options\n"
              "  convert    rewrite a dataset in another layout (mmrec, npy, diffmm, json, recbole)\n\n"
              f"models: {_model_list()}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    try:
        return COMMANDS[argv[0]](argv[1:])
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
