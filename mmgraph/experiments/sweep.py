r"""``run_sweep``: models x grid x seeds as ordinary run folders, then the leaderboard.

The sweep folder::

    DIR/
      sweep.json                       the SweepConfig of the last invocation
      trials/<model>/<key=value,...>/seed-<s>/   one run folder per trial
                                       (run.json, metrics.jsonl, checkpoints,
                                       results.json: `mmgraph evaluate` opens it)
      cache/graphs/                    graphs built from data + options, shared
                                       by the trials (see mmgraph.graph.disk_cache)
      leaderboard.json, leaderboard.md, leaderboard.png

Re-running the same command skips finished trials (nothing is trained) and
resumes interrupted ones from their checkpoints (the trainer's ``resume``:
on CPU the result equals an uninterrupted run). Trials run in ``jobs``
local worker processes (each loads the dataset once, through the processed
cache, and uses ``cores // jobs`` threads), or on Ray. ``search='random'`` /
``'tpe'`` asks Optuna for ``trials`` configurations per model from the same
grid values; the folders are the same.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Callable

from ..graph import disk_cache
from ..train.checkpoint import atomic_write
from ..train.runfolder import to_json
from .backends import SweepInterrupted, run_local, run_ray
from .leaderboard import build_leaderboard, write_leaderboard
from .spec import SweepConfig, Trial, expand_grid, make_trial, model_grid, trial_folder
from .trial import TrialJob, TrialOutcome, trial_state, worker_dataset

__all__ = ["run_sweep", "SweepResult", "plan_trials"]


@dataclasses.dataclass
class SweepResult:
    """What :func:`run_sweep` returns.

    Attributes:
        leaderboard: the ``leaderboard.json`` content.
        outcomes: one :class:`~mmgraph.experiments.trial.TrialOutcome` per trial
            that was run or found (finished trials: ``state='done'``).
        trained: trials that trained (new, resumed or restarted) in this call.
        failed: trials that ended in an error (divergence, a folder in use).
        files: the leaderboard files written.
    """
    leaderboard: dict[str, Any]
    outcomes: list[TrialOutcome]
    trained: int
    failed: list[TrialOutcome]
    files: list[Path]


def _job(config: SweepConfig, trial: Trial) -> TrialJob:
    folder = trial_folder(config.out_dir, trial)
    cfg = config.train_config(trial.model, trial.train_overrides, trial.seed, folder)
    return TrialJob(model=trial.model, data=config.data, model_overrides=trial.model_overrides,
                    train_config=cfg, graph_cache=str(Path(config.out_dir) / "cache" / "graphs"),
                    label=f"{trial.model} {trial.config_name} seed {trial.seed}")


def plan_trials(config: SweepConfig) -> list[Trial]:
    """The trials of a grid sweep (for ``select='first'``: the grid on the first seed)."""
    seeds = (min(config.seeds),) if config.select == "first" else config.seeds
    return [t for m in config.models for t in expand_grid(config, m, seeds)]


class _Runner:
    """Runs batches of trials on the configured backend; skips finished ones."""

    def __init__(self, config: SweepConfig, log: Callable[[str], None]):
        self.config = config
        self.log = log
        self.outcomes: list[TrialOutcome] = []
        self.trained = 0

    def __call__(self, trials: list[Trial]) -> list[TrialOutcome]:
        jobs = [_job(self.config, t) for t in trials]
        todo, outs = [], {}
        for i, job in enumerate(jobs):
            state = trial_state(job.train_config.out_dir, job.train_config)
            if state == "done":
                outs[i] = TrialOutcome(job.train_config.out_dir, "done", True, label=job.label)
            else:
                todo.append(i)
        if todo:
            self.log(f"{len(todo)} trial(s) to run ({len(jobs) - len(todo)} already done), "
                     f"{self._where()}")
        ran = self._run([jobs[i] for i in todo])
        for i, out in zip(todo, ran):
            outs[i] = out
        self.trained += sum(o.error is None for o in ran)
        result = [outs[i] for i in range(len(jobs))]
        self.outcomes.extend(result)
        return result

    def _where(self) -> str:
        c = self.config
        if c.backend == "ray":
            return f"on Ray ({c.address or 'local instance'}), {c.threads_per_trial} thread(s) each"
        return f"{c.jobs} at a time, {c.threads_per_trial} thread(s) each"

    def _report(self, out: TrialOutcome) -> None:
        what = ("failed: " + out.error if out.error else "interrupted" if out.interrupted
                else {"new": "trained", "resume": "resumed", "restart": "restarted"}.get(
                    out.state, out.state))
        cache = (f", graphs from cache {out.cache.get('hits', 0)}, built "
                 f"{out.cache.get('misses', 0)}" if out.cache else "")
        self.log(f"  {out.label}: {what} in {out.seconds:.1f} s{cache}")

    def _run(self, jobs: list[TrialJob]) -> list[TrialOutcome]:
        c = self.config
        if c.backend == "ray":
            gpus = 1.0 if c.device.startswith("cuda") else 0.0
            return run_ray(jobs, c.out_dir, c.address, c.jobs, gpus, log=self._report)
        return run_local(jobs, c.jobs, log=self._report)


def _optuna_search(config: SweepConfig, model: str, runner: _Runner) -> None:
    """``trials`` configurations of ``model`` asked from Optuna (random or TPE over the
    grid values), each run with every seed; its objective is the mean validation metric."""
    try:
        import optuna
    except ImportError:
        raise ValueError("search 'random' / 'tpe' needs Optuna: pip install 'mmgraph[optuna]'"
                         ) from None
    from .leaderboard import read_run
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    grid = model_grid(config, model)
    if not grid:
        raise ValueError(f"search {config.search!r}: {model} has no grid to search (give --grid "
                         f"or --preset)")
    sampler = (optuna.samplers.RandomSampler(seed=0) if config.search == "random"
               else optuna.samplers.TPESampler(seed=0))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    batch_size = max(1, (config.jobs or 1) // len(config.seeds)) if config.jobs else 1
    asked = 0
    while asked < config.trials:
        batch = [study.ask() for _ in range(min(batch_size, config.trials - asked))]
        asked += len(batch)
        configs = []
        for t in batch:
            # categorical over the values' positions: any value type (tuples, mappings)
            params = [(o, *grid[o][t.suggest_categorical(o, list(range(len(grid[o]))))])
                      for o in grid]
            configs.append([make_trial(model, [(o, w, v) for o, w, v in params], s)
                            for s in config.seeds])
        outs = runner([tr for trials in configs for tr in trials])
        n = len(config.seeds)
        for t, trials, o in zip(batch, configs, [outs[i:i + n] for i in range(0, len(outs), n)]):
            metric_vals = []
            for out in o:
                rec = read_run(out.folder) if out.finished else None
                if rec is not None:
                    metric_vals.append(rec.valid.get(rec.train_config.get("valid_metric",
                                                                            "recall@20")))
            if metric_vals:
                study.tell(t, sum(metric_vals) / len(metric_vals))
            else:
                study.tell(t, state=optuna.trial.TrialState.FAIL)


def run_sweep(config: SweepConfig, log: Callable[[str], None] | None = None) -> SweepResult:
    """Run a sweep (see the module doc) and write its leaderboard.

    Args:
        config: the sweep.
        log: called with progress lines (default: print to stderr when
            ``config.progress``).

    Returns:
        a :class:`SweepResult`.

    Raises:
        SweepInterrupted: Ctrl-C / SIGTERM (rerun the same call to continue).
        ValueError: a trial folder of the sweep holds a run with other settings,
            or no trial finished.
    """
    if log is None:
        log = ((lambda s: print(s, file=sys.stderr, flush=True)) if config.progress
               else (lambda s: None))
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = to_json(dataclasses.asdict(config), indent=2) + "\n"
    atomic_write(out / "sweep.json", lambda f: f.write(spec), binary=False)
    runner = _Runner(config, log)
    if config.search == "grid":
        runner(plan_trials(config))
        if config.select == "first" and len(config.seeds) > 1:
            from .leaderboard import read_run, select_config, group_configs
            for model in config.models:
                first = min(config.seeds)
                trials = expand_grid(config, model, (first,))
                recs = [r for r in (read_run(trial_folder(out, t)) for t in trials) if r]
                if not recs:
                    continue
                configs = group_configs(recs)[model]
                best, _ = select_config(configs, recs[0].train_config["valid_metric"], "first")
                chosen = next(t for t in trials if trial_folder(out, t) == configs[best][0].path)
                runner([dataclasses.replace(chosen, seed=s) for s in config.seeds if s != first])
    else:
        for model in config.models:
            _optuna_search(config, model, runner)
    failed = [o for o in runner.outcomes if o.error]
    folders = list(dict.fromkeys(o.folder for o in runner.outcomes))
    expected: dict[str, int] = {}
    for o in runner.outcomes:
        model = Path(o.folder).parts[-3]
        expected[model] = expected.get(model, 0) + 1
    data = worker_dataset(config.data) if config.baseline else None
    with disk_cache(out / "cache" / "graphs"):         # per-user metrics rebuild the models
        board = build_leaderboard(folders, baseline=config.baseline, select=config.select,
                                  data=data, title=config.data, expected=expected)
    board["sweep"] = {"failed": [{"trial": o.label, "error": o.error} for o in failed],
                      "trained_now": runner.trained}
    files = write_leaderboard(board, out)
    log(f"leaderboard: {', '.join(str(f) for f in files)}")
    return SweepResult(board, runner.outcomes, runner.trained, failed, files)
