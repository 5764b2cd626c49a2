"""Safe runs (issue 13): a run folder belongs to one run and one writer, its files survive
kills and damage, and what it records can be opened again."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import mmgraph.cli as cli
from mmgraph.cli import main
from mmgraph.models import LightGCN, LightGCNConfig
from mmgraph.train import (CheckpointError, RunFolderError, Trainer, TrainConfig,
                           load_checkpoint, load_run)

REPO = Path(__file__).resolve().parents[2]
# a short LightGCN run on synthetic:tiny: 6 epochs of ~0.4 s at batch 16
RUN = ["train", "--model", "lightgcn", "--data", "synthetic:tiny", "--num-layers", "1",
       "--batch-size", "16", "--epochs", "6", "--patience", "50", "--lr", "5e-3",
       "--progress", "false"]


def _strict(text):
    """json.loads that rejects NaN / Infinity, as strict parsers do."""
    def bad(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=bad)


def _cfg(out, **kw):
    base = dict(epochs=3, batch_size=256, progress=False, patience=50, lr=5e-3, out_dir=str(out))
    base.update(kw)
    return TrainConfig(**base)


def _fit(data, out, layers=1, **kw):
    torch.manual_seed(0)
    return Trainer(LightGCN(data, LightGCNConfig(num_layers=layers)), data, _cfg(out, **kw),
                   data_spec="synthetic:tiny").fit()


def start_cli(args, **popen):
    """``python -m mmgraph.cli *args`` in a child process (1 thread)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "mmgraph.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def wait_for(cond, proc, timeout=120.0):
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"child exited with {proc.returncode} early:\n{out}\n{err}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError("timed out waiting for the child")
        time.sleep(0.02)


def epochs_logged(folder):
    path = Path(folder) / "metrics.jsonl"
    try:
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    except FileNotFoundError:
        return 0


@pytest.fixture
def no_data(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the data was loaded before the run folder was checked")
    monkeypatch.setattr(cli, "load_dataset", refuse)


# ----------------------------------------------------------------- one run per folder
def test_second_run_into_a_run_folder_is_refused(tiny, tmp_path, capsys, monkeypatch):
    first = _fit(tiny, tmp_path, epochs=2)
    before = {f: (tmp_path / f).read_bytes() for f in ("checkpoint.pt", "metrics.jsonl",
                                                        "best_model.pt", "run.json")}
    with pytest.raises(RunFolderError, match=r"already holds a run \(run\.json, metrics\.jsonl, "
                                             r"checkpoint\.pt.*pass --resume .* --overwrite"):
        _fit(tiny, tmp_path, epochs=2)
    # the CLI refuses before the data loads, in one line
    def refuse(*a, **k):
        raise AssertionError("data loaded")
    monkeypatch.setattr(cli, "load_dataset", refuse)
    assert main(RUN + ["--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "already holds a run" in err and err.count("\n") == 1
    assert {f: (tmp_path / f).read_bytes() for f in before} == before    # nothing touched
    assert first.epochs_run == 2


def test_overwrite_replaces_the_whole_run(tiny, tmp_path, capsys):
    _fit(tiny, tmp_path, epochs=3)
    (tmp_path / "notes.txt").write_text("mine")
    res = _fit(tiny, tmp_path, epochs=1, overwrite=True)
    assert "--overwrite: removed the previous run's files" in capsys.readouterr().err
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [0] and res.epochs_run == 1
    assert json.loads((tmp_path / "run.json").read_text())["train_config"]["epochs"] == 1
    assert load_checkpoint(tmp_path / "checkpoint.pt")["trainer_state"]["epoch"] == 0
    assert not (tmp_path / "checkpoint.prev.pt").exists()      # no generation of the old run
    assert (tmp_path / "notes.txt").read_text() == "mine"      # only the run's own files go
    with pytest.raises(ValueError, match="exclude each other"):
        TrainConfig(resume=True, overwrite=True)


def test_out_dir_that_is_a_file(tmp_path, no_data, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(RUN + ["--out-dir", str(f)]) == 2
    err = capsys.readouterr().err
    assert f"out_dir {f} exists and is a file, not a folder" in err and err.count("\n") == 1
    assert main(RUN + ["--out-dir", str(f / "sub")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_resume_is_a_plain_flag(tiny, tmp_path):
    out = tmp_path / "r"
    assert main(RUN + ["--epochs", "1", "--batch-size", "512", "--out-dir", str(out)]) == 0
    assert main(RUN + ["--epochs", "2", "--batch-size", "512", "--out-dir", str(out),
                       "--resume"]) == 0
    assert json.loads((out / "results.json").read_text())["epochs_run"] == 2
    assert main(RUN + ["--epochs", "1", "--batch-size", "512", "--out-dir", str(out),
                       "--overwrite", "--progress", "false"]) == 0
    assert json.loads((out / "results.json").read_text())["epochs_run"] == 1


# ----------------------------------------------------------------- one writer
def test_second_process_fails_at_once_and_a_killed_writer_leaves_no_lock(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    child = start_cli(RUN + ["--epochs", "200", "--out-dir", str(out)])
    try:
        wait_for(lambda: epochs_logged(out) >= 1, child)
        t0 = time.monotonic()
        assert main(RUN + ["--epochs", "200", "--out-dir", str(out), "--resume"]) == 2
        err = capsys.readouterr().err
        assert time.monotonic() - t0 < 5
        assert f"is in use by another process (pid {child.pid})" in err and err.count("\n") == 1
        with pytest.raises(RunFolderError, match="in use by another process"):
            _fit(tiny, out, overwrite=True)
        n = epochs_logged(out)
        time.sleep(0.5)
        assert epochs_logged(out) >= n            # the first writer was not disturbed
    finally:
        child.send_signal(signal.SIGKILL)         # kill -9: no cleanup at all
        child.communicate()
    assert (out / ".lock").is_file()              # a stale lock file of a dead process ...
    orphan = out / "checkpoint.pt.x1y2z3.tmp"     # ... and a write cut short by the kill
    orphan.write_bytes(b"partial")
    # (the kill may also have cut the child's own checkpoint write: then there are two)
    orphans = sorted(p.name for p in out.glob("*.tmp"))
    assert main(RUN + ["--epochs", str(epochs_logged(out) + 1), "--out-dir", str(out),
                       "--resume"]) == 0          # ... are harmless
    assert not list(out.glob("*.tmp"))
    assert (f"removed {len(orphans)} unfinished write(s) of an earlier process "
            f"({', '.join(orphans)})") in capsys.readouterr().err


# ----------------------------------------------------------------- damaged files
def test_damaged_checkpoints_are_named(tmp_path, tiny):
    _fit(tiny, tmp_path, epochs=1)
    path = tmp_path / "checkpoint.pt"
    raw = path.read_bytes()
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} is empty \(0 bytes\)"):
        load_checkpoint(path)
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} is truncated or corrupt "
                                              rf"\({len(raw) // 2} bytes; "):
        load_checkpoint(path)
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} is truncated or corrupt"):
        load_checkpoint(path)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="is not an mmgraph checkpoint"):
        load_checkpoint(path)


def test_two_generations_resume_falls_back_and_says_so(tiny, tmp_path, capsys):
    full = _fit(tiny, tmp_path / "full", epochs=5)
    part = tmp_path / "part"
    _fit(tiny, part, epochs=3)
    prev = load_checkpoint(part / "checkpoint.prev.pt")
    assert prev["trainer_state"]["epoch"] == 1
    assert load_checkpoint(part / "checkpoint.pt")["trainer_state"]["epoch"] == 2
    raw = (part / "checkpoint.pt").read_bytes()
    (part / "checkpoint.pt").write_bytes(raw[:1000])           # the newest is damaged
    resumed = _fit(tiny, part, epochs=5, resume=True)
    err = capsys.readouterr().err
    assert f"checkpoint {part / 'checkpoint.pt'} is truncated or corrupt" in err
    assert "resuming from the previous generation checkpoint.prev.pt (epoch 1)" in err
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert resumed.test == full.test
    # both damaged: the error names both files and their problems
    (part / "checkpoint.pt").write_bytes(b"")
    (part / "checkpoint.prev.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=r"cannot resume: checkpoint .*checkpoint\.pt is "
                                              r"empty.*checkpoint\.prev\.pt is truncated"):
        _fit(tiny, part, epochs=6, resume=True)
    # the newest missing (a kill between the two renames): the previous one is used
    _fit(tiny, tmp_path / "gone", epochs=3)
    (tmp_path / "gone" / "checkpoint.pt").unlink()
    assert _fit(tiny, tmp_path / "gone", epochs=5, resume=True).test == full.test


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 3-epoch CLI run with every file a run writes."""
    out = tmp_path_factory.mktemp("finished") / "run"
    args = RUN + ["--epochs", "3", "--batch-size", "512", "--out-dir", str(out)]
    assert main(args) == 0
    files = sorted(p.name for p in out.iterdir() if p.name != ".lock")
    assert files == sorted(["run.json", "metrics.jsonl", "checkpoint.pt", "checkpoint.prev.pt",
                            "best_model.pt", "results.json", "results.md", "learning_curve.png"])
    return out, args


@pytest.mark.parametrize("damage", ["zero", "truncate", "garbage"])
def test_fault_injection_every_file(finished_run, tmp_path, capsys, damage):
    """Damage each file a run writes: `evaluate` and `train --resume` either work or stop with
    one line naming the damaged file (never a traceback)."""
    src, args = finished_run
    for path in sorted(p for p in src.iterdir() if p.name != ".lock"):
        out = tmp_path / f"{path.name}-{damage}"
        shutil.copytree(src, out)
        victim = out / path.name
        raw = victim.read_bytes()
        victim.write_bytes({"zero": b"", "truncate": raw[: len(raw) // 2],
                            "garbage": b"\x80\x03junk" + bytes(range(256)) * 4}[damage])
        capsys.readouterr()
        for argv in (["evaluate", str(out), "--ks", "20"],
                     args[:-1] + [str(out), "--epochs", "4", "--resume"]):
            rc = main(argv)
            err = capsys.readouterr().err
            if rc != 0:
                assert rc == 2 and err.startswith("error: ") and path.name in err, (argv, err)
                assert err.count("\n") == 1, err
            if path.name in ("run.json", "best_model.pt") and argv[0] == "evaluate":
                assert rc == 2, (path.name, damage)      # evaluate needs both
        if path.name in ("checkpoint.pt", "checkpoint.prev.pt", "metrics.jsonl", "results.json",
                         "results.md", "learning_curve.png", "run.json", "best_model.pt"):
            # resume rewrote the run's files: a complete, consistent, 4-epoch run
            res = _strict((out / "results.json").read_text())
            assert res["epochs_run"] == 4
            lines = (out / "metrics.jsonl").read_text().splitlines()
            assert [_strict(l)["epoch"] for l in lines] == [0, 1, 2, 3]
            _strict((out / "run.json").read_text())
            load_checkpoint(out / "best_model.pt")


# ----------------------------------------------------------------- what a run records
def test_run_trained_from_python_opens_with_evaluate(tiny, tmp_path, capsys):
    res = _fit(tiny, tmp_path / "py", epochs=2)
    meta = json.loads((tmp_path / "py" / "run.json").read_text())
    assert meta["model"] == "lightgcn" and meta["data"] == "synthetic:tiny"
    assert meta["data_signature"]["features"]["image"]["shape"] == [200, 4096]
    assert meta["train_config"]["epochs"] == 2 and meta["world_size"] == 1
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "py"), "--ks", "20"]) == 0
    assert _strict(capsys.readouterr().out)["recall@20"] == pytest.approx(res.test["recall@20"])
    # without a data spec, evaluate asks for --data
    torch.manual_seed(0)
    Trainer(LightGCN(tiny, LightGCNConfig(num_layers=1)), tiny, _cfg(tmp_path / "nospec")).fit()
    assert main(["evaluate", str(tmp_path / "nospec")]) == 2
    assert "records no dataset" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nospec"), "--data", "synthetic:tiny"]) == 0
    model, data, meta = load_run(tmp_path / "nospec", tiny)
    assert meta["data"] is None and not model.training


def test_run_json_stores_an_absolute_data_path(tiny, tmp_path, monkeypatch, capsys):
    from mmgraph.data import write_mmrec
    write_mmrec(tiny, tmp_path / "data" / "tiny", name="tiny")
    monkeypatch.chdir(tmp_path / "data")
    assert main(RUN[:4] + ["tiny"] + RUN[5:] + ["--epochs", "1", "--batch-size", "512",
                                                "--out-dir", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["data"] == \
        str(tmp_path / "data" / "tiny")
    monkeypatch.chdir(tmp_path)                   # evaluate from another directory
    capsys.readouterr()
    assert main(["evaluate", "run", "--ks", "20"]) == 0
    assert 0 <= _strict(capsys.readouterr().out)["recall@20"] <= 1


def test_recommend_output_is_strict_json(finished_run, capsys):
    out, _ = finished_run
    capsys.readouterr()
    # k = every item: each user's training items are masked (-inf) and must not be printed
    assert main(["recommend", str(out), "--users", "0,5", "-k", "200"]) == 0
    rows = [_strict(l) for l in capsys.readouterr().out.splitlines()]
    assert [r["user"] for r in rows] == [0, 5]
    from mmgraph.data import load_dataset, split_edge_index
    train = split_edge_index(load_dataset("synthetic:tiny"), "train")
    for r in rows:
        seen = set(train[1][train[0] == r["user"]].tolist())
        assert len(r["items"]) == len(r["scores"]) == 200 - len(seen)
        assert not seen & set(r["items"])


# ----------------------------------------------------------------- NaN stops the run
class NaNFrom(LightGCN):
    """LightGCN whose BPR term becomes NaN from epoch ``self.bad_epoch`` on."""
    bad_epoch = 2

    def on_epoch_start(self, epoch):
        self.epoch = epoch

    def loss(self, batch, out):
        terms = super().loss(batch, out)
        if self.epoch >= self.bad_epoch:
            terms["bpr"] = terms["bpr"] * float("nan")
        return terms


def test_nan_loss_stops_and_keeps_the_last_good_files(tiny, tmp_path):
    from mmgraph.train import TrainingDiverged
    torch.manual_seed(0)
    model = NaNFrom(tiny, LightGCNConfig(num_layers=1))
    with pytest.raises(TrainingDiverged,
                       match=r"training diverged in epoch 2: the loss term 'bpr' is nan after "
                             r"\d+ batch\(es\)( \(also 'reg'\))?; nothing of that epoch was "
                             r"saved: .* keeps the "
                             r"checkpoint of epoch 1 and the best model \(epoch [01]\)"):
        Trainer(model, tiny, _cfg(tmp_path, epochs=6)).fit()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["trainer_state"]["epoch"] == 1
    best = load_checkpoint(tmp_path / "best_model.pt")["model_state"]
    assert all(torch.isfinite(v).all() for v in best.values())
    assert all(torch.isfinite(p).all() for p in model.parameters())    # restored to the best
    assert [json.loads(l)["epoch"] for l in
            (tmp_path / "metrics.jsonl").read_text().splitlines()] == [0, 1]


def test_nan_gradient_with_finite_loss_stops(tiny):
    from mmgraph.train import TrainingDiverged

    class NaNGrad(LightGCN):
        def __init__(self, *a):
            super().__init__(*a)
            self.gate = torch.nn.Parameter(torch.ones(3))

        def loss(self, batch, out):
            terms = super().loss(batch, out)
            # always 0 (NaN is masked to 0) but its gradient is NaN: the weights go NaN
            terms["probe"] = (self.gate * 0).sqrt().nan_to_num().sum()
            return terms

    torch.manual_seed(0)
    with pytest.raises(TrainingDiverged, match=r"epoch 0: the loss stayed finite but a non-finite "
                                               r"gradient made these weights NaN/inf: gate$"):
        Trainer(NaNGrad(tiny, LightGCNConfig(num_layers=1)), tiny, _cfg(None, out_dir=None)).fit()


def test_nan_check_is_not_a_sync_per_step(tiny, monkeypatch):
    calls = []
    real = Trainer._check_finite_loss
    monkeypatch.setattr(Trainer, "_check_finite_loss",
                        lambda self, *a: (calls.append(a[2]), real(self, *a))[1])
    torch.manual_seed(0)
    res = Trainer(LightGCN(tiny, LightGCNConfig(num_layers=1)), tiny,
                  _cfg(None, out_dir=None, epochs=2, batch_size=4)).fit()   # 577 steps / epoch
    assert res.epochs_run == 2
    assert calls == [256, 512, 577] * 2          # every NONFINITE_CHECK_STEPS steps + epoch end


def test_cli_on_nan_exits_with_one_line_and_no_nan_model(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(RUN + ["--epochs", "4", "--batch-size", "512", "--lr", "1e20",
                       "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: training diverged in epoch 0: the loss term 'bpr' is nan")
    assert err.count("\n") == 1
    assert not (out / "best_model.pt").exists() and not (out / "checkpoint.pt").exists()
    assert main(["recommend", str(out), "--users", "0"]) == 2     # no NaN scores served
    assert "best_model.pt does not exist" in capsys.readouterr().err


# ----------------------------------------------------------------- real signals
def test_sigint_writes_results_and_resume_equals_uninterrupted(tmp_path, capsys):
    full, part = tmp_path / "full", tmp_path / "part"
    child = start_cli(RUN + ["--out-dir", str(part)])
    wait_for(lambda: epochs_logged(part) >= 1, child)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    n = epochs_logged(part)
    assert 1 <= n < 6, "the child finished before the signal"
    assert (f"interrupted: the checkpoint of epoch {n - 1} is in {part / 'checkpoint.pt'}; "
            f"results of the best epoch so far") in err
    assert "continue with --resume" in err
    res = _strict((part / "results.json").read_text())
    assert res["interrupted"] is True and res["epochs_run"] == n
    assert 0 <= res["best_epoch"] < n and res["test"] == res["history"][res["best_epoch"]]["test"]
    assert (part / "best_model.pt").is_file()
    assert main(["evaluate", str(part), "--ks", "20"]) == 0       # an interrupted run opens
    # the hint is true: --resume continues, and the result equals an uninterrupted run
    capsys.readouterr()
    assert main(RUN + ["--out-dir", str(part), "--resume"]) == 0, capsys.readouterr().err
    assert main(RUN + ["--out-dir", str(full)]) == 0
    a = _strict((part / "results.json").read_text())
    b = _strict((full / "results.json").read_text())
    assert a["interrupted"] is False and a["epochs_run"] == 6
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    assert a["test"] == b["test"] and a["best_epoch"] == b["best_epoch"]


def test_sigterm_is_an_interrupt_too(tmp_path):
    out = tmp_path / "r"
    child = start_cli(RUN + ["--epochs", "200", "--out-dir", str(out)])
    wait_for(lambda: epochs_logged(out) >= 2, child)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    res = _strict((out / "results.json").read_text())
    assert res["interrupted"] is True and res["epochs_run"] == epochs_logged(out) >= 2
    assert load_checkpoint(out / "checkpoint.pt")["trainer_state"]["epoch"] == res["epochs_run"] - 1


def test_ctrl_c_in_the_first_epoch_says_so(tmp_path):
    out = tmp_path / "r"
    # batch 1: the first epoch takes seconds; the signal comes right after run.json appears
    child = start_cli(RUN + ["--batch-size", "1", "--out-dir", str(out)])
    wait_for(lambda: (out / "run.json").is_file(), child)
    time.sleep(0.3)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert epochs_logged(out) == 0, "the first epoch finished before the signal"
    assert "epoch -1" not in err
    assert (f"interrupted before the first checkpoint was written: nothing to resume in {out}; start "
            f"again with --overwrite") in err
    res = _strict((out / "results.json").read_text())            # strict: NaN timings are null
    assert res["interrupted"] is True and res["epochs_run"] == 0
    assert res["seconds_per_epoch"] is None and res["best_epoch"] == -1
    assert not (out / "checkpoint.pt").exists()


def test_checkpoint_every_writes_fewer_and_resumes_to_the_same_result(tiny, tmp_path,
                                                                     monkeypatch, capsys):
    full = _fit(tiny, tmp_path / "full", epochs=7)
    orig = Trainer._train_epoch

    def stop_at_5(self, epoch, loader, opt):
        if epoch == 5:
            raise KeyboardInterrupt
        return orig(self, epoch, loader, opt)

    part = tmp_path / "part"
    monkeypatch.setattr(Trainer, "_train_epoch", stop_at_5)
    res = _fit(tiny, part, epochs=7, checkpoint_every=3)
    assert res.interrupted and res.epochs_run == 5
    # epochs 0-4 ran; checkpoints after epochs 2 (every 3rd) only
    assert load_checkpoint(part / "checkpoint.pt")["trainer_state"]["epoch"] == 2
    assert not (part / "checkpoint.prev.pt").exists()
    assert f"interrupted: the checkpoint of epoch 2 is in {part / 'checkpoint.pt'}" \
        in capsys.readouterr().err
    monkeypatch.setattr(Trainer, "_train_epoch", orig)
    # resume repeats epochs 3-4 and equals the run that wrote a checkpoint every epoch
    res = _fit(tiny, part, epochs=7, checkpoint_every=3, resume=True)
    assert [h["loss"] for h in res.history] == [h["loss"] for h in full.history]
    assert res.test == full.test and res.best_epoch == full.best_epoch
    assert len((part / "metrics.jsonl").read_text().splitlines()) == 7
    # the last epoch is always checkpointed (6 is not a multiple of 3)
    assert load_checkpoint(part / "checkpoint.pt")["trainer_state"]["epoch"] == 6
    best = torch.load(part / "best_model.pt", weights_only=True)["model_state"]
    ref = torch.load(tmp_path / "full" / "best_model.pt", weights_only=True)["model_state"]
    assert all(torch.equal(best[k], ref[k]) for k in ref)
    with pytest.raises(ValueError, match="checkpoint_every must be >= 1"):
        TrainConfig(checkpoint_every=0)


# ----------------------------------------------------------------- what metrics.jsonl records
def test_metrics_record_test_of_every_evaluated_epoch(tiny, tmp_path):
    from mmgraph.train.runfolder import METRICS_FIELDS
    torch.manual_seed(0)
    # lr 0: validation never improves after epoch 0, test is still recorded every epoch
    res = Trainer(LightGCN(tiny, LightGCNConfig(num_layers=1)), tiny,
                  _cfg(tmp_path, epochs=6, eval_every=2, lr=0.0, patience=1)).fit()
    rows = [_strict(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert ["test" in r for r in rows] == [False, True, False, True]
    assert [r.get("improved") for r in rows] == [None, True, None, False]
    assert rows[3]["test"]["recall@20"] == pytest.approx(rows[1]["test"]["recall@20"])
    assert res.test == rows[1]["test"] and res.best_epoch == 1
    assert set().union(*rows) <= set(METRICS_FIELDS)               # every field is documented


def test_progress_bars(tiny, capsys, monkeypatch):
    import mmgraph.evaluation as ev
    import mmgraph.train.trainer as tr
    monkeypatch.setattr(tr, "_STEP_BAR_DELAY", 0.0)          # show the inner bars at once
    monkeypatch.setattr(ev, "_PROGRESS_DELAY", 0.0)
    torch.manual_seed(0)
    res = Trainer(LightGCN(tiny, LightGCNConfig(num_layers=1)), tiny,
                  _cfg(None, out_dir=None, epochs=1000, lr=0.0, patience=3, progress=True)).fit()
    err = capsys.readouterr().err
    assert res.epochs_run == 4
    assert "0/4 [" in err and "4/4 [" in err and "/1000" not in err   # early stopping decides
    assert "epoch 0:" in err and "/10 [" in err and "batch" in err    # 2305 / 256 -> 10 steps
    assert "evaluating valid:" in err and "evaluating test:" in err and "user" in err
