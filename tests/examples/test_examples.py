"""The examples run end to end (short budgets) and do what they claim."""
import json
from pathlib import Path

import pytest
from scripts import load_script

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    return load_script(EXAMPLES / f"{name}.py", name)


def test_custom_gnn_example_learns():
    res = _load("custom_gnn").main(["--data", "synthetic:tiny", "--epochs", "3"])
    assert res.test["recall@20"] > 0.3   # random ranking of 200 items gives about 0.1


def test_rearm_example_on_an_mmrec_folder(tmp_path, tiny, capsys):
    """--data-dir with an MMRec folder: trains, prints the table, writes JSON + PNG."""
    from mmgraph.data import write_mmrec
    folder = tmp_path / "data"
    write_mmrec(tiny, folder, name="tiny")
    out = tmp_path / "out"
    rc = _load("rearm_baby").main(["--data-dir", str(folder), "--epochs", "2", "--no-progress",
                                   "--out", str(out), "--device", "cpu"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "recall@20" in printed
    for f in ("results.json", "summary.json", "metrics.jsonl", "learning_curve.png"):
        assert (out / f).is_file(), f
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"] == str(folder) and 0 <= summary["test"]["recall@20"] <= 1


def test_mambarec_example_compares_models_on_one_dataset(tmp_path, tiny, capsys):
    """--data-dir: MambaRec, LightGCN and FREEDOM on the same data, one table with the
    gain over LightGCN, one plot of the validation curves, one run folder per model."""
    from mmgraph.data import write_mmrec
    from mmgraph.train import load_run
    folder = tmp_path / "data"
    write_mmrec(tiny, folder, name="tiny")
    out = tmp_path / "out"
    argv = ["--data-dir", str(folder), "--epochs", "3", "--no-progress", "--out", str(out),
            "--device", "cpu"]
    assert _load("mambarec_baby").main(argv) == 0
    printed = capsys.readouterr().out
    rows = [ln for ln in printed.splitlines() if ln.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["mambarec", "lightgcn", "freedom"]
    assert "vs lightgcn" in rows[0] and "%" in rows[1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"] == str(folder) and set(summary["models"]) == {"mambarec", "lightgcn",
                                                                         "freedom"}
    for name, r in summary["models"].items():
        assert 0 < r["test"]["recall@20"] <= 1 and r["epochs_run"] == 3, name
        assert (out / name / "results.json").is_file()
    assert (out / "validation_curves.png").stat().st_size > 1000
    model, _, meta = load_run(out / "mambarec")              # mmgraph evaluate opens each run
    assert meta["model"] == "mambarec"
    # a second run replaces the example's own runs (no refusal)
    assert _load("mambarec_baby").main(argv + ["--models", "lightgcn"]) == 0


def test_mambarec_example_schedules(tmp_path, tiny, capsys, monkeypatch):
    """Every model early-stops with its own published patience (no fixed epoch count,
    no special patience for synthetic data); --patience overrides all of them; a
    folder without features is reported and replaced by the synthetic preset."""
    mod = _load("mambarec_baby")
    seen = {}

    def fake_fit(self):  # record the schedule, skip training (tested above)
        seen[self.model.name] = (self.config.epochs, self.config.patience,
                                 self.data["item"].num_nodes)
        raise SystemExit(0)
    monkeypatch.setattr(mod.Trainer, "fit", fake_fit)
    with pytest.raises(SystemExit):
        mod.main(["--data-dir", str(tmp_path), "--fast", "--no-progress", "--out", str(tmp_path / "o")])
    printed = capsys.readouterr().out
    assert "no *_feat.npy" in printed and "synthetic:baby_small" in printed
    assert seen["mambarec"] == (1000, 10, 1500)
    for name in ("lightgcn", "freedom"):
        with pytest.raises(SystemExit):
            mod.main(["--fast", "--models", name, "--no-progress", "--out", str(tmp_path / "o")])
        assert seen[name] == (1000, 20, 1500)
    with pytest.raises(SystemExit):
        mod.main(["--fast", "--patience", "5", "--no-progress", "--out", str(tmp_path / "o")])
    assert seen["mambarec"] == (1000, 5, 1500)
    with pytest.raises(ValueError, match="unknown model"):
        mod.main(["--fast", "--models", "mambarec,nope", "--out", str(tmp_path / "o")])


def test_mambarec_example_default_models(tmp_path, monkeypatch, capsys):
    """--fast trains MambaRec and LightGCN (FREEDOM on request), the full run all three;
    runs write a checkpoint every 10 epochs (the example replaces its runs anyway)."""
    from mmgraph.data import synthetic_dataset
    mod = _load("mambarec_baby")
    orig_train = mod.train_one
    calls = []

    def fake_train(name, data, spec, a, out):
        calls.append(name)
        m = {c: 0.1 for c in mod.COLUMNS}
        return {"best_epoch": 1, "epochs_run": 3, "valid": m, "test": m, "seconds_per_epoch": 1.0,
                "converged": True, "history": [{"epoch": 0, "loss": 1.0, "valid": m}]}
    monkeypatch.setattr(mod, "train_one", fake_train)
    monkeypatch.setattr(mod, "dataset_or_synthetic", lambda d, f: (synthetic_dataset("tiny"), f))
    assert mod.main(["--fast", "--no-progress", "--out", str(tmp_path / "a")]) == 0
    assert calls == ["mambarec", "lightgcn"]
    calls.clear()
    assert mod.main(["--no-progress", "--out", str(tmp_path / "b")]) == 0
    assert calls == ["mambarec", "lightgcn", "freedom"]
    seen = {}
    monkeypatch.setattr(mod.Trainer, "fit", lambda self: seen.update(
        every=self.config.checkpoint_every) or (_ for _ in ()).throw(SystemExit(0)))
    monkeypatch.setattr(mod, "train_one", orig_train)
    with pytest.raises(SystemExit):
        mod.main(["--fast", "--models", "lightgcn", "--no-progress", "--out", str(tmp_path / "c")])
    assert seen["every"] == 10
