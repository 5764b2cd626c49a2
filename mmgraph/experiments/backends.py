"""Where trials run: a local process pool (default) or a Ray cluster through Ray Tune.

Both call :func:`~mmgraph.experiments.trial.execute_trial` once per trial and
return its :class:`~mmgraph.experiments.trial.TrialOutcome` s in the order of
the jobs. Trials write their run folders themselves: on a Ray cluster the
sweep folder (and a dataset given as a folder) must be on a filesystem every
node sees.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Callable, Sequence

from .trial import TrialJob, TrialOutcome, execute_trial

__all__ = ["run_local", "run_ray", "SweepInterrupted"]


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C / SIGTERM stopped the sweep; every trial keeps its checkpoint (rerun
    the same command to continue)."""


def _worker_init() -> None:
    # the parent forwards SIGTERM as SIGTERM; Ctrl-C reaches every process of the
    # terminal's group: both stop a trial like an interrupted `mmgraph train`
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt


def run_local(jobs: Sequence[TrialJob], workers: int,
              log: Callable[[TrialOutcome], None] | None = None) -> list[TrialOutcome]:
    """Run ``jobs`` in ``workers`` processes of this machine.

    ``workers == 1`` runs them one after another in this process (no start-up
    cost). Otherwise a pool of ``workers`` fresh (spawned) processes, each
    loading a dataset once for all its trials; the threads of each trial are
    its ``train_config.threads``.

    Args:
        jobs: the trials.
        workers: processes at once.
        log: called with each outcome as it arrives.

    Raises:
        SweepInterrupted: Ctrl-C or SIGTERM; running trials are stopped like an
            interrupted ``mmgraph train`` (checkpoint kept), the rest not started.
    """
    outcomes: list[TrialOutcome | None] = [None] * len(jobs)
    if not jobs:
        return []
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt) if _main_thread() else None
    try:
        if workers == 1:
            for i, job in enumerate(jobs):
                try:
                    out = execute_trial(job)
                except KeyboardInterrupt:       # outside the trainer (loading, building)
                    raise SweepInterrupted from None
                outcomes[i] = out
                if log:
                    log(out)
                if out.interrupted:
                    raise SweepInterrupted
            return outcomes
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx,
                                   initializer=_worker_init)
        try:
            pending = {pool.submit(execute_trial, job): i for i, job in enumerate(jobs)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = pending.pop(fut)
                    outcomes[i] = fut.result()
                    if log:
                        log(outcomes[i])
                    if outcomes[i].interrupted:
                        raise SweepInterrupted
        except KeyboardInterrupt:
            for fut in pending:
                fut.cancel()
            for proc in list(getattr(pool, "_processes", {}).values()):
                if proc.is_alive():
                    proc.terminate()             # SIGTERM: the trainer keeps its checkpoint
            pool.shutdown(wait=True, cancel_futures=True)
            raise SweepInterrupted from None
        pool.shutdown(wait=True)
        return outcomes
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def run_ray(jobs: Sequence[TrialJob], out_dir: str | Path, address: str | None,
            max_concurrent: int | None, gpus_per_trial: float = 0.0,
            log: Callable[[TrialOutcome], None] | None = None) -> list[TrialOutcome]:
    """Run ``jobs`` as Ray Tune trials (``pip install mmgraph[tune]``).

    Each trial asks Ray for ``train_config.threads`` CPUs and
    ``gpus_per_trial`` GPUs (Ray sets ``CUDA_VISIBLE_DEVICES``, so
    ``device='cuda'`` is the trial's GPU) and runs
    :func:`~mmgraph.experiments.trial.execute_trial`. Tune's own records go to
    ``out_dir/ray``.

    Args:
        jobs: the trials.
        out_dir: the sweep folder (absolute paths are used).
        address: ``'auto'`` (the running cluster), ``'ray://host:10001'``, or
            ``None`` (connect to the instance already initialised in this
            process, else start a local one).
        max_concurrent: trials at once (``None``: as many as the resources fit).
        gpus_per_trial: GPUs per trial.
        log: called with each outcome at the end.
    """
    try:
        import ray
        from ray import tune
    except ImportError:
        raise ValueError("the Ray backend needs Ray Tune: pip install 'mmgraph[tune]'") from None
    if not jobs:
        return []
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")     # no progress tables on stdout
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
                 include_dashboard=False)
    job_list = list(jobs)

    def trainable(config):
        out = execute_trial(job_list[config["index"]])
        tune.report({"index": config["index"], "outcome": out.__dict__})

    cpus = max(1, max(j.train_config.threads or 1 for j in job_list))
    resources = {"cpu": cpus, "gpu": gpus_per_trial}
    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space={"index": tune.grid_search(list(range(len(job_list))))},
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent or 0, num_samples=1),
        run_config=tune.RunConfig(storage_path=str((Path(out_dir) / "ray").resolve()),
                                  name="trials", verbose=0))
    grid = tuner.fit()
    outcomes: list[TrialOutcome | None] = [None] * len(job_list)
    for res in grid:
        if res.error is not None or not res.metrics or "outcome" not in res.metrics:
            continue
        outcomes[res.metrics["index"]] = TrialOutcome(**res.metrics["outcome"])
    for i, job in enumerate(job_list):
        if outcomes[i] is None:
            err = next((str(r.error) for r in grid if r.config.get("index") == i and r.error),
                       "no result")
            outcomes[i] = TrialOutcome(job.train_config.out_dir, "new", False,
                                       error=f"Ray trial failed: {err.splitlines()[0] if err else ''}",
                                       label=job.label)
        if log:
            log(outcomes[i])
    return outcomes
