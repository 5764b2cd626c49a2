"""Running one trial: an ordinary run folder trained by the :class:`~mmgraph.train.Trainer`.

A trial's folder is in one of four states (:func:`trial_state`): ``'new'``
(nothing yet), ``'done'`` (``results.json`` of a finished run with the same
settings), ``'resume'`` (a checkpoint: the run was stopped, by a signal or a
kill, and continues with the trainer's ``resume``, which reproduces the
uninterrupted run on CPU), ``'restart'`` (a run that stopped before its first
checkpoint: started again with ``overwrite``). :func:`execute_trial` runs what
the state asks; a worker process loads each dataset once
(:func:`worker_dataset`) and builds graphs through the sweep's disk cache.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data import load_dataset
from ..graph import disk_cache, disk_cache_stats
from ..models.base import build_model
from ..train import RunFolder, Trainer, TrainingDiverged
from ..train.config import RESUMABLE_CHANGES, TrainConfig
from ..train.runfolder import RunFolderError

__all__ = ["TrialJob", "TrialOutcome", "trial_state", "execute_trial", "worker_dataset"]

_DATASETS: dict[str, Any] = {}


def worker_dataset(spec: str):
    """The dataset ``spec``, loaded once per process (through the processed cache)."""
    if spec not in _DATASETS:
        _DATASETS[spec] = load_dataset(spec)
    return _DATASETS[spec]


@dataclass
class TrialJob:
    """Everything a worker needs to run one trial (picklable).

    Attributes:
        model: registry name.
        data: dataset spec.
        model_overrides: model options of the trial.
        train_config: the trial's full training settings (``out_dir`` is its folder).
        graph_cache: folder of the disk graph cache (``None``: none).
        label: a short name for messages.
    """
    model: str
    data: str
    model_overrides: dict[str, Any]
    train_config: TrainConfig
    graph_cache: str | None = None
    label: str = ""


@dataclass
class TrialOutcome:
    """What running (or skipping) a trial did.

    Attributes:
        folder: the run folder.
        state: :func:`trial_state` before the trial ran.
        finished: the run is complete (not interrupted, no error).
        interrupted: stopped by Ctrl-C / SIGTERM (resumable).
        error: a user-level failure (divergence, a folder in use), else ``None``.
        seconds: wall time of this call.
        cache: disk graph cache ``{'hits', 'misses'}`` during this trial.
        label: the job's label.
    """
    folder: str
    state: str
    finished: bool
    interrupted: bool = False
    error: str | None = None
    seconds: float = 0.0
    cache: dict[str, int] = field(default_factory=dict)
    label: str = ""


def _differs(saved: dict[str, Any], now: TrainConfig) -> list[str]:
    """Training settings (besides those a resume may change) that differ from the run's."""
    cur = dataclasses.asdict(now)
    defaults = dataclasses.asdict(TrainConfig())
    return [f"{k} ({saved.get(k, defaults.get(k))!r} -> {v!r})" for k, v in cur.items()
            if k not in RESUMABLE_CHANGES and saved.get(k, defaults.get(k)) != v
            and not (isinstance(v, tuple) and list(v) == saved.get(k))]


def trial_state(folder: str | Path, config: TrainConfig) -> str:
    """``'new'``, ``'done'``, ``'resume'`` or ``'restart'`` (see the module doc).

    Raises:
        ValueError: the folder holds a run with other training settings (then
            it belongs to another sweep: choose another out_dir).
    """
    run = RunFolder(folder)
    if not run.existing_files():
        return "new"
    results = Path(folder) / "results.json"
    if results.is_file():
        try:
            res = json.loads(results.read_text(encoding="utf-8"))
        except ValueError:
            res = None
        if isinstance(res, dict):
            changed = _differs(res.get("train_config", {}), config)
            if changed:
                raise ValueError(f"{folder} holds a trial trained with other settings "
                                 f"({', '.join(changed)}); use another --out-dir")
            if not res.get("interrupted") and res.get("train_config", {}).get("epochs") == config.epochs:
                return "done"
    if run.checkpoint.is_file() or run.previous_checkpoint.is_file():
        return "resume"
    return "restart"


def execute_trial(job: TrialJob) -> TrialOutcome:
    """Run one trial to its end (or skip it when done); called in worker processes.

    Sets torch's threads to the job's ``threads`` (graph building uses them
    too), loads the data once per process, builds the model with the trial's
    seed (as ``mmgraph train`` does) under the disk graph cache, and trains
    with the :class:`~mmgraph.train.Trainer` into the trial's run folder:
    new, resumed from its checkpoint, or restarted (see :func:`trial_state`).

    Args:
        job: the trial.

    Returns:
        a :class:`TrialOutcome`; divergence and a folder in use are reported in
        ``error`` (the sweep goes on), other exceptions propagate.
    """
    t0 = time.perf_counter()
    cfg = job.train_config
    folder = cfg.out_dir
    state = trial_state(folder, cfg)
    if state == "done":
        return TrialOutcome(folder, state, True, label=job.label)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    before = disk_cache_stats()
    try:
        with disk_cache(job.graph_cache):
            data = worker_dataset(job.data)
            model = build_model(job.model, data, seed=cfg.seed, **job.model_overrides)
            run_cfg = dataclasses.replace(cfg, resume=state == "resume",
                                          overwrite=state == "restart")
            result = Trainer(model, data, run_cfg, data_spec=job.data).fit()
    except (TrainingDiverged, RunFolderError) as err:
        return TrialOutcome(folder, state, False, error=f"{type(err).__name__}: {err}",
                            seconds=time.perf_counter() - t0, label=job.label)
    after = disk_cache_stats()
    return TrialOutcome(folder, state, not result.interrupted, interrupted=result.interrupted,
                        seconds=time.perf_counter() - t0, label=job.label,
                        cache={k: after[k] - before[k] for k in after})
