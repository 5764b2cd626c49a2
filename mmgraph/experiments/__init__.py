"""Experiments as researchers run them: sweeps over models x grid x seeds, a leaderboard.

Example::

    from mmgraph.experiments import SweepConfig, run_sweep
    res = run_sweep(SweepConfig(models=("lightgcn", "freedom"), data="synthetic:tiny",
                                grid={"reg_weight": [1e-4, 1e-3]}, seeds=(0, 1, 2),
                                jobs=2, epochs=50, out_dir="sweeps/s1", baseline="lightgcn"))
    print(res.leaderboard["models"][0]["test"]["recall@20"])

``mmgraph sweep`` and ``mmgraph compare`` are this API's command lines. See
:mod:`.sweep` (the folder layout, resumption), :mod:`.leaderboard` (the
selection protocol and the tests), :mod:`.spec` (options, grids, presets),
:mod:`.backends` (local processes, Ray Tune) and :mod:`.stats`.
"""
from .backends import SweepInterrupted, run_local, run_ray
from .leaderboard import (RunRecord, build_leaderboard, find_runs, format_leaderboard,
                          group_configs, per_user_metrics, read_run, select_config,
                          write_leaderboard)
from .spec import PRESETS, SweepConfig, Trial, expand_grid, model_grid, trial_folder
from .stats import mean_std, paired_tests, paired_ttest_normal, wilcoxon_normal
from .sweep import SweepResult, plan_trials, run_sweep
from .trial import TrialJob, TrialOutcome, execute_trial, trial_state

__all__ = ["SweepConfig", "run_sweep", "SweepResult", "SweepInterrupted", "plan_trials",
           "Trial", "PRESETS", "expand_grid", "model_grid", "trial_folder",
           "TrialJob", "TrialOutcome", "execute_trial", "trial_state", "run_local", "run_ray",
           "RunRecord", "read_run", "find_runs", "group_configs", "select_config",
           "build_leaderboard", "format_leaderboard", "write_leaderboard", "per_user_metrics",
           "mean_std", "paired_tests", "paired_ttest_normal", "wilcoxon_normal"]
