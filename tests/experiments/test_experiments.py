"""Sweeps, the leaderboard and its statistics (mmgraph.experiments, mmgraph sweep / compare)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mmgraph.cli import _parse_grid, main
from mmgraph.experiments import (RunRecord, SweepConfig, TrialJob, build_leaderboard,
                                 execute_trial, expand_grid, group_configs, mean_std,
                                 paired_tests, paired_ttest_normal, run_sweep, select_config,
                                 trial_folder, wilcoxon_normal)
from mmgraph.experiments import trial as trial_mod
from mmgraph.experiments.stats import normal_sf

TINY = "synthetic:tiny"


def _sweep(tmp_path, **kw):
    base = dict(models=("lightgcn",), data=TINY, grid={"reg_weight": [1e-4, 1e-3]},
                seeds=(0, 1), epochs=3, jobs=1, threads=1, out_dir=str(tmp_path / "sweep"),
                progress=False)
    base.update(kw)
    return SweepConfig(**base)


def _results(folder):
    res = json.loads((Path(folder) / "results.json").read_text())
    return {k: res[k] for k in ("best_epoch", "best_valid", "test", "epochs_run")}, \
        [(h["epoch"], h["loss"], h.get("valid")) for h in res["history"]]


# ------------------------------------------------------------------ grid
def test_grid_expansion_types_owners_and_folders(tmp_path):
    cfg = SweepConfig(models=("lightgcn",), data=TINY, seeds=(0, 1), out_dir=str(tmp_path),
                      grid={"reg_weight": ["1e-4", "1e-3"], "num-layers": ["1", "2"],
                            "lr": ["0.01"]}, progress=False)
    trials = expand_grid(cfg, "lightgcn")
    assert len(trials) == 2 * 2 * 1 * 2
    t = trials[0]
    assert t.params == (("reg_weight", 1e-4), ("num_layers", 1), ("lr", 0.01))
    assert type(t.params[0][1]) is float and type(t.params[1][1]) is int
    assert t.model_overrides == {"reg_weight": 1e-4, "num_layers": 1}
    assert t.train_overrides == {"lr": 0.01}
    # the last option varies fastest, then the seeds of each configuration
    assert [(x.params[1][1], x.seed) for x in trials[:4]] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert trial_folder(tmp_path, t) == (tmp_path / "trials" / "lightgcn"
                                         / "reg_weight=0.0001,num_layers=1,lr=0.01" / "seed-0")
    tc = cfg.train_config("lightgcn", t.train_overrides, 1, "x")
    assert (tc.lr, tc.seed, tc.out_dir, tc.lr_decay) == (0.01, 1, "x", 1.0)  # model default kept
    # a tuple-typed option through the CLI's JSON form, and a model-only key
    grid = _parse_grid(["mambarec.mmd_sigmas=[[1.0],[1.5, 2]]", "reg_weight=1e-4"])
    cfg2 = SweepConfig(models=("mambarec", "lightgcn"), data=TINY, grid=grid, out_dir=str(tmp_path))
    m = expand_grid(cfg2, "mambarec")
    assert [dict(x.params)["mmd_sigmas"] for x in m] == [(1.0,), (1.5, 2.0)]
    assert [x.params for x in expand_grid(cfg2, "lightgcn")] == [(("reg_weight", 1e-4),)]
    # no grid: one configuration, 'default'
    plain = expand_grid(SweepConfig(models=("bprmf",), data=TINY, out_dir=str(tmp_path)), "bprmf")
    assert [x.config_name for x in plain] == ["default"]


@pytest.mark.parametrize("grid, match", [
    ({"bogus": [1]}, "no option 'bogus'"),
    ({"reg_weight": ["abc"]}, "cannot read 'abc'"),
    ({"seed": [1, 2]}, "set by the sweep"),
    ({"optimizer": ["sgd"]}, "expected one of adam, adamw"),
    ({"patience": [5, 0]}, r"grid patience=0 for lightgcn: patience must be >= 1"),
    ({"dropout": [0.5]}, "lightgcn has no option 'dropout'"),     # bare key unknown to one model
    ({"vbpr.reg_weight": [0.1]}, "not one of the sweep's models"),
])
def test_grid_errors(grid, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        SweepConfig(models=("lightgcn", "freedom"), data=TINY, grid=grid, out_dir=str(tmp_path))


def test_preset_mmrec_grid_sizes(tmp_path):
    cfg = SweepConfig(models=("lightgcn", "freedom", "bm3"), data=TINY, preset="mmrec-grid",
                      grid={"lightgcn.num_layers": [2]}, out_dir=str(tmp_path))
    sizes = {m: len(expand_grid(cfg, m)) for m in cfg.models}
    assert sizes == {"lightgcn": 5, "freedom": 8, "bm3": 8}   # --grid overrides the preset


# ------------------------------------------------------------- selection
def _rec(model, cfg, seed, valid, test):
    return RunRecord(path=Path(f"/x/{model}/{cfg}/{seed}"), model=model,
                     model_config={"reg_weight": cfg}, train_config={"seed": seed},
                     data=TINY, seed=seed, best_epoch=1, valid={"recall@20": valid},
                     test={"recall@20": test}, seconds_per_epoch=1.0, epochs_run=2)


def test_selection_on_hand_made_results():
    recs = [_rec("m", 0.1, 0, 0.30, 0.9), _rec("m", 0.1, 1, 0.20, 0.9),    # mean .25, first .30
            _rec("m", 0.2, 1, 0.26, 0.5), _rec("m", 0.2, 0, 0.26, 0.5),    # mean .26, first .26
            _rec("m", 0.3, 0, 0.22, 0.1), _rec("m", 0.3, 1, 0.22, 0.1)]
    configs = group_configs(recs)["m"]
    assert [[r.seed for r in v] for v in configs.values()] == [[0, 1]] * 3  # sorted by seed
    best, scores = select_config(configs, "recall@20", "mean")
    assert configs[best][0].model_config == {"reg_weight": 0.2}
    assert [round(s, 6) for s in scores.values()] == [0.25, 0.26, 0.22]
    best, _ = select_config(configs, "recall@20", "first")
    assert configs[best][0].model_config == {"reg_weight": 0.1}
    # a tie goes to the first configuration
    tie = group_configs([_rec("m", 0.5, 0, 0.4, 0), _rec("m", 0.6, 0, 0.4, 0)])["m"]
    assert tie[select_config(tie, "recall@20")[0]][0].model_config == {"reg_weight": 0.5}


# ----------------------------------------------------------------- stats
A = [0.1, 0.3, 0.2, 0.5, 0.4, 0.9, 0.7]
B = [0.2, 0.1, 0.2, 0.3, 0.1, 0.5, 0.6]


def test_mean_std_and_paired_tests_on_known_numbers():
    assert mean_std([1, 2, 3, 4]) == pytest.approx((2.5, math.sqrt(5 / 3)))
    m, s = mean_std([0.3])
    assert m == 0.3 and math.isnan(s)
    # d = [-.1, .2, 0, .2, .3, .4, .1]: mean 0.15714, sd 0.17182, t = 2.41968
    t, p = paired_ttest_normal(A, B)
    assert t == pytest.approx(2.4196773978, rel=1e-9)
    assert p == pytest.approx(2 * normal_sf(2.4196773978), rel=1e-9)
    assert p == pytest.approx(0.0155343, abs=1e-6)
    approx = paired_tests(A, B, use_scipy=False)
    assert approx["method"] == "normal approximation" and approx["n"] == 7
    assert approx["mean_diff"] == pytest.approx(0.1571428571)


def test_wilcoxon_normal_by_hand():
    # d = [1, -2, 3, 3, 0, 5]: zero dropped, |d| ranks 1, 2, 3.5, 3.5, 5; W+ = 13, W- = 2
    a = [1, -2, 3, 3, 0, 5]
    w, p = wilcoxon_normal(a, [0] * 6)
    n = 5
    var = n * (n + 1) * (2 * n + 1) / 24 - (2 ** 3 - 2) / 48
    z = (13 - n * (n + 1) / 4) / math.sqrt(var)
    assert w == 2.0
    assert p == pytest.approx(2 * normal_sf(z), rel=1e-12)
    assert z == pytest.approx(5.5 / math.sqrt(13.625))               # = 1.49003
    assert p == pytest.approx(0.136217, abs=1e-6)


def test_normal_approximation_agrees_with_scipy():
    pytest.importorskip("scipy")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 2000) / 4          # per-user-like values with many ties and zeros
    b = np.clip(a + rng.choice([-0.25, 0, 0, 0.25], 2000) + 0.02 * (rng.random(2000) < 0.3), 0, 1)
    sc, ap = paired_tests(a, b, use_scipy=True), paired_tests(a, b, use_scipy=False)
    assert sc["method"] == "scipy"
    assert ap["t"] == pytest.approx(sc["t"], rel=1e-9)
    assert ap["p_ttest"] == pytest.approx(sc["p_ttest"], abs=1e-3)
    assert ap["wilcoxon"] == sc["wilcoxon"]
    assert ap["p_wilcoxon"] == pytest.approx(sc["p_wilcoxon"], rel=1e-6)
    # the small sample: scipy's t distribution (6 df) and exact-method Wilcoxon
    small = paired_tests(A, B, use_scipy=True)
    assert small["p_ttest"] == pytest.approx(0.0518859, abs=1e-6)


def test_paired_tests_without_scipy_use_the_normal_approximation(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "scipy", None)          # import scipy -> ImportError
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    res = paired_tests(A, B)
    assert res["method"] == "normal approximation"
    assert res["p_ttest"] == pytest.approx(0.0155343, abs=1e-6)


def test_per_user_metrics_average_to_evaluate(tiny):
    from mmgraph.evaluation import Evaluator
    from mmgraph.models import build_model
    model = build_model("lightgcn", tiny, seed=0).eval()
    ev = Evaluator(tiny, ks=(10, 20))
    with torch.no_grad():
        out = model()
        users, per = ev.evaluate_per_user(lambda u: model.score(u, out), split="test")
        means = ev.evaluate(lambda u: model.score(u, out), split="test")
    assert users.numel() == ev.num_eval_users("test") and per["recall@20"].dtype == torch.float64
    for k, v in means.items():
        assert per[k].mean().item() == pytest.approx(v, rel=1e-12)
    assert ((per["recall@20"] >= per["recall@10"]) & (per["recall@20"] <= 1)).all()


# ------------------------------------------------------------ the cache
def test_disk_graph_cache_is_hit_by_the_second_trial(tmp_path, monkeypatch):
    """Two FREEDOM trials as two workers would run them (each loads the data): the
    second reads the first one's graphs from the sweep's cache and builds none."""
    cfg = _sweep(tmp_path, models=("freedom",), grid={"dropout": [0.8, 0.9]}, seeds=(0,),
                 epochs=1)
    jobs = []
    for t in expand_grid(cfg, "freedom"):
        folder = trial_folder(cfg.out_dir, t)
        jobs.append(TrialJob("freedom", TINY, t.model_overrides,
                             cfg.train_config("freedom", t.train_overrides, t.seed, folder),
                             graph_cache=str(tmp_path / "graphs")))
    monkeypatch.setattr(trial_mod, "_DATASETS", {})
    first = execute_trial(jobs[0])
    monkeypatch.setattr(trial_mod, "_DATASETS", {})      # a fresh worker: data loaded again
    second = execute_trial(jobs[1])
    assert first.finished and second.finished
    # bipartite adjacency + image and text kNN graphs
    assert first.cache == {"hits": 0, "misses": 3}
    assert second.cache == {"hits": 3, "misses": 0}
    assert len(list((tmp_path / "graphs").glob("*.pt"))) == 3


def test_disk_cache_keys_follow_content(tmp_path):
    from mmgraph.data import load_dataset
    from mmgraph.graph import disk_cache, disk_cache_stats, modality_knn_graph
    with disk_cache(tmp_path):
        disk_cache_stats(reset=True)
        a = modality_knn_graph(load_dataset(TINY), "image", k=5)
        b = modality_knn_graph(load_dataset(TINY), "image", k=5)      # read from disk
        assert disk_cache_stats() == {"hits": 1, "misses": 1}
        assert torch.equal(a.to_dense(), b.to_dense())
        modality_knn_graph(load_dataset(TINY), "image", k=6)           # other option
        other = load_dataset(TINY)
        other["item"].x_image = other["item"].x_image + 1.0            # other content
        modality_knn_graph(other, "image", k=5)
        assert disk_cache_stats(reset=True) == {"hits": 1, "misses": 3}
        for f in tmp_path.glob("*.pt"):                                # damaged: rebuilt
            f.write_bytes(b"garbage")
        c = modality_knn_graph(load_dataset(TINY), "image", k=5)
        assert disk_cache_stats() == {"hits": 0, "misses": 1}
        assert torch.equal(a.to_dense(), c.to_dense())


# ---------------------------------------------------------------- sweeps
def test_resumed_sweep_equals_uninterrupted_and_rerun_does_no_work(tmp_path):
    whole = run_sweep(_sweep(tmp_path / "a"))
    assert whole.trained == 4 and not whole.failed

    cfg = _sweep(tmp_path / "b")
    trials = expand_grid(cfg, "lightgcn")
    # trial 0 killed after its first epoch (checkpoint, no results.json), trial 1 killed
    # before its first checkpoint (run.json only), trial 2 stopped by Ctrl-C (interrupted
    # results.json), trial 3 not started
    for t, cut in ((trials[0], "kill"), (trials[1], "early"), (trials[2], "ctrl-c")):
        folder = trial_folder(cfg.out_dir, t)
        job = TrialJob("lightgcn", TINY, t.model_overrides,
                       cfg.train_config("lightgcn", t.train_overrides, t.seed, folder))
        job.train_config.epochs = 1
        assert execute_trial(job).finished
        if cut == "kill":
            (folder / "results.json").unlink()
        elif cut == "early":
            for f in ("checkpoint.pt", "checkpoint.prev.pt", "best_model.pt", "results.json"):
                (folder / f).unlink(missing_ok=True)
        else:
            res = json.loads((folder / "results.json").read_text())
            res["interrupted"] = True
            (folder / "results.json").write_text(json.dumps(res))
    resumed = run_sweep(cfg)
    states = sorted(o.state for o in resumed.outcomes)
    assert states == ["new", "restart", "resume", "resume"]
    for t in trials:
        assert _results(trial_folder(cfg.out_dir, t)) == \
            _results(trial_folder(tmp_path / "a" / "sweep", t))
    strip = lambda b: [{k: v for k, v in e.items() if k not in ("runs", "seconds_per_epoch")}
                       for e in b["models"]]
    assert strip(resumed.leaderboard) == strip(whole.leaderboard)

    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "b").rglob("checkpoint.pt")}
    again = run_sweep(cfg)
    assert again.trained == 0 and {o.state for o in again.outcomes} == {"done"}
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_select_first_runs_the_grid_on_one_seed(tmp_path):
    res = run_sweep(_sweep(tmp_path, select="first", grid={"reg_weight": [1e-4, 1e-3, 1e-2]},
                           seeds=(3, 1)))
    entry = res.leaderboard["models"][0]
    assert res.trained == 3 + 1                 # the grid on seed 1, then seed 3 of the best
    assert entry["seeds"] == [1, 3] and len(entry["candidates"]) == 3
    firsts = {c["config"]["reg_weight"]: c["score"] for c in entry["candidates"]}
    assert entry["config"]["reg_weight"] == max(firsts, key=firsts.get)


def test_trial_folder_of_another_sweep_setting_is_refused(tmp_path):
    run_sweep(_sweep(tmp_path, grid={"reg_weight": [1e-4]}, seeds=(0,)))
    with pytest.raises(ValueError, match=r"other settings \(patience"):
        run_sweep(_sweep(tmp_path, grid={"reg_weight": [1e-4]}, seeds=(0,), patience=2))


def test_cli_sweep_four_trials_leaderboard_and_rerun(tmp_path, capsys):
    out = tmp_path / "DIR"
    argv = ["sweep", "--model", "lightgcn", "--data", "synthetic:tiny", "--grid",
            "reg_weight=1e-4,1e-3", "--seeds", "0,1", "--jobs", "2", "--epochs", "3",
            "--out-dir", str(out)]
    assert main(argv) == 0
    cap = capsys.readouterr()
    assert "4 trial(s) to run (0 already done), 2 at a time, 1 thread(s) each" in cap.err
    folders = sorted(p.parent.relative_to(out).as_posix()
                     for p in out.glob("trials/*/*/*/results.json"))
    assert folders == [f"trials/lightgcn/reg_weight={r}/seed-{s}"
                       for r in ("0.0001", "0.001") for s in (0, 1)]
    board = json.loads((out / "leaderboard.json").read_text())
    (entry,) = board["models"]
    assert entry["trials"] == 4 and entry["seeds"] == [0, 1] and entry["configurations"] == 2
    runs = [json.loads((Path(r) / "results.json").read_text())["test"]["recall@20"]
            for r in entry["runs"]]
    assert entry["test"]["recall@20"]["mean"] == pytest.approx(np.mean(runs))
    assert entry["test"]["recall@20"]["std"] == pytest.approx(np.std(runs, ddof=1))
    assert "| lightgcn |" in (out / "leaderboard.md").read_text()
    assert "| lightgcn |" in cap.out
    # re-running trains nothing
    assert main(argv) == 0
    assert "to run" not in capsys.readouterr().err
    # a trial folder opens with evaluate; compare rebuilds the same table
    assert main(["evaluate", entry["runs"][0]]) == 0
    capsys.readouterr()
    assert main(["compare", str(out / "trials"), "--out-dir", str(tmp_path / "cmp")]) == 0
    again = json.loads((tmp_path / "cmp" / "leaderboard.json").read_text())
    assert again["models"][0]["test"] == entry["test"]


def test_cli_sweep_errors_are_one_line(capsys, tmp_path):
    base = ["sweep", "--model", "lightgcn", "--data", TINY, "--out-dir", str(tmp_path)]
    for extra, msg in ((["--grid", "bogus=1"], "no option 'bogus'"),
                       (["--grid", "reg_weight"], "expected OPTION=V1,V2"),
                       (["--seeds", "a"], "--seeds must be"),
                       (["--baseline", "vbpr"], "baseline 'vbpr' is not one of"),
                       (["--search", "tpe"], "needs trials >= 1"),
                       (["--models", "freedom"], "one of the two")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and msg in err[0], err
    assert not (tmp_path / "trials").exists()


def test_baseline_paired_tests_in_leaderboard(tmp_path):
    res = run_sweep(_sweep(tmp_path, models=("lightgcn", "bprmf"), grid={}, seeds=(0, 1),
                           baseline="lightgcn"))
    by = {e["model"]: e for e in res.leaderboard["models"]}
    vs = by["bprmf"]["vs_baseline"]["recall@20"]
    # the test against the per-user values, recomputed here from the run folders
    from mmgraph.experiments import per_user_metrics
    per = {m: np.mean([per_user_metrics(r, keys=["recall@20"])[1]["recall@20"]
                       for r in by[m]["runs"]], axis=0) for m in by}
    expect = paired_tests(per["bprmf"], per["lightgcn"])
    assert vs == pytest.approx(expect)
    assert vs["n"] == len(per["lightgcn"]) > 0
    assert "vs_baseline" not in by["lightgcn"]
    assert "| baseline |" in (tmp_path / "sweep" / "leaderboard.md").read_text()


def test_compare_groups_seeds_of_train_runs(tmp_path, capsys):
    for seed in (1, 2):
        assert main(["train", "--model", "bprmf", "--data", TINY, "--epochs", "2", "--seed",
                     str(seed), "--out-dir", str(tmp_path / f"r{seed}"), "--progress",
                     "false"]) == 0
    capsys.readouterr()
    board = build_leaderboard([tmp_path / "r1", tmp_path / "r2"])
    (entry,) = board["models"]
    assert entry["seeds"] == [1, 2] and entry["trials"] == 2
    assert main(["compare", str(tmp_path)]) == 0
    assert "| bprmf |" in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "nothing-here")]) == 2
    # how a run ran does not split a configuration: a resumed run with another
    # checkpoint_every, and a record older than a TrainConfig field (the field missing)
    assert main(["train", "--model", "bprmf", "--data", TINY, "--epochs", "2", "--seed", "2",
                 "--out-dir", str(tmp_path / "r2"), "--resume", "--checkpoint-every", "5",
                 "--progress", "false"]) == 0
    res = json.loads((tmp_path / "r1" / "results.json").read_text())
    del res["train_config"]["checkpoint_every"]
    (tmp_path / "r1" / "results.json").write_text(json.dumps(res))
    capsys.readouterr()
    (entry,) = build_leaderboard([tmp_path / "r1", tmp_path / "r2"])["models"]
    assert entry["seeds"] == [1, 2] and entry["trials"] == 2


# --------------------------------------------------------- Ray / Optuna
def test_ray_backend_on_a_local_instance(tmp_path):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.tune")
    local = run_sweep(_sweep(tmp_path / "local", seeds=(0,), epochs=2))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        res = run_sweep(_sweep(tmp_path / "ray", seeds=(0,), epochs=2, backend="ray", jobs=2))
    finally:
        ray.shutdown()
    assert res.trained == 2 and not res.failed
    for t in expand_grid(_sweep(tmp_path, seeds=(0,)), "lightgcn"):
        assert _results(trial_folder(tmp_path / "ray" / "sweep", t)) == \
            _results(trial_folder(tmp_path / "local" / "sweep", t))
    assert ({k: v["values"] for k, v in res.leaderboard["models"][0]["test"].items()}
            == {k: v["values"] for k, v in local.leaderboard["models"][0]["test"].items()})


def test_optuna_random_search_same_layout(tmp_path):
    pytest.importorskip("optuna")
    cfg = _sweep(tmp_path, search="random", trials=3, seeds=(0,), epochs=2,
                 grid={"reg_weight": [1e-4, 1e-3, 1e-2, 1e-1]})
    res = run_sweep(cfg)
    folders = sorted(p.parent.name for p in (tmp_path / "sweep" / "trials" / "lightgcn").glob(
        "*/seed-0"))
    assert 1 <= len(folders) <= 3 and all(f.startswith("reg_weight=") for f in folders)
    assert res.leaderboard["models"][0]["configurations"] == len(folders)
    again = run_sweep(cfg)                       # the same sampler seed: the same asks, done
    assert again.trained == 0


# ------------------------------------------------------ real signals
_KILL_ARGS = ["--model", "lightgcn", "--data", TINY, "--grid", "reg_weight=1e-4,1e-3",
              "--seeds", "0,1", "--epochs", "6", "--patience", "100", "--threads", "1"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the same sweep run without interruption (two workers)."""
    out = tmp_path_factory.mktemp("whole") / "sweep"
    assert main(["sweep", *_KILL_ARGS, "--jobs", "2", "--out-dir", str(out), "--quiet"]) == 0
    return out


def _start_and_signal(out, jobs, kill):
    """Start `mmgraph sweep` in its own process group and signal it once a trial has
    a checkpoint; returns the exit code and how many trials had finished then."""
    import os
    import signal
    import subprocess
    import sys
    import time
    proc = subprocess.Popen([sys.executable, "-m", "mmgraph.cli", "sweep", *_KILL_ARGS,
                             "--jobs", str(jobs), "--out-dir", str(out), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(out.glob("trials/*/*/*/checkpoint.pt")):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    finished = len(list(out.glob("trials/*/*/*/results.json")))
    if kill == "SIGKILL":
        os.killpg(proc.pid, signal.SIGKILL)          # the sweep and its workers, at once
    else:
        os.kill(proc.pid, getattr(signal, kill))      # the sweep's process only
    rc = proc.wait(timeout=300)
    return rc, finished


@pytest.mark.slow
@pytest.mark.parametrize("jobs, kill", [(2, "SIGKILL"), (2, "SIGTERM"), (1, "SIGINT")])
def test_sweep_killed_midway_then_rerun_equals_uninterrupted(tmp_path, uninterrupted, jobs,
                                                             kill, capsys):
    out = tmp_path / "sweep"
    rc, finished = _start_and_signal(out, jobs, kill)
    assert finished < 4
    assert rc == (-9 if kill == "SIGKILL" else 130)
    if kill != "SIGKILL":      # stopped like an interrupted `mmgraph train`: checkpoints kept
        for res in out.glob("trials/*/*/*/results.json"):
            r = json.loads(res.read_text())
            # a trial the signal met inside its first epoch has nothing to resume
            # (its results say so); the re-run starts it again
            assert (res.parent / "checkpoint.pt").is_file() == (r["epochs_run"] > 0), r
            assert r["epochs_run"] > 0 or r["interrupted"]
    assert main(["sweep", *_KILL_ARGS, "--jobs", str(jobs), "--out-dir", str(out)]) == 0
    err = capsys.readouterr().err
    assert "already done" in err and "resumed" in err
    trials = sorted(p.relative_to(uninterrupted).as_posix()
                    for p in uninterrupted.glob("trials/*/*/*"))
    assert sorted(p.relative_to(out).as_posix() for p in out.glob("trials/*/*/*")) == trials
    for t in trials:
        assert _results(out / t) == _results(uninterrupted / t)
