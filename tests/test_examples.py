"""The examples run end to end (short budgets) and do what they claim."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod   # dataclasses in the example resolve their module here
    spec.loader.exec_module(mod)
    return mod


def test_custom_gnn_example_learns():
    res = _load("custom_gnn").main(["--data", "synthetic:tiny", "--epochs", "3"])
    assert res.test["recall@20"] > 0.3   # random ranking of 200 items gives about 0.1


@pytest.mark.parametrize("name", ["mambarec_baby", "rearm_baby"])
def test_baby_examples_on_an_mmrec_folder(name, tmp_path, tiny, capsys):
    """--data-dir with an MMRec folder: trains, prints the table, writes JSON + PNG."""
    from mmgraph.data import write_mmrec
    folder = tmp_path / "data"
    write_mmrec(tiny, folder, name="tiny")
    out = tmp_path / "out"
    rc = _load(name).main(["--data-dir", str(folder), "--epochs", "2", "--no-progress",
                           "--out", str(out), "--device", "cpu"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "recall@20" in printed
    for f in ("results.json", "summary.json", "metrics.jsonl", "learning_curve.png"):
        assert (out / f).is_file(), f
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"] == str(folder) and 0 <= summary["test"]["recall@20"] <= 1


def test_examples_fall_back_to_synthetic(tmp_path, capsys, monkeypatch):
    """A folder without features is reported and replaced by the synthetic preset."""
    mod = _load("mambarec_baby")
    seen = {}

    def fake_fit(self):  # stop after the data decision: training is tested above
        seen["items"] = self.data["item"].num_nodes
        seen["schedule"] = (self.config.epochs, self.config.patience)
        raise SystemExit(0)
    monkeypatch.setattr(mod.Trainer, "fit", fake_fit)
    with pytest.raises(SystemExit):
        mod.main(["--data-dir", str(tmp_path), "--fast", "--no-progress", "--out", str(tmp_path / "o")])
    printed = capsys.readouterr().out
    assert "no *_feat.npy" in printed and "synthetic:baby_small" in printed
    assert seen["items"] == 1500
    assert seen["schedule"] == (40, 40)                  # --fast: fixed 40 epochs
    with pytest.raises(SystemExit):
        mod.main(["--fast", "--patience", "5", "--no-progress", "--out", str(tmp_path / "o")])
    assert seen["schedule"] == (40, 5)


def test_mambarec_example_patience_on_real_and_synthetic_data(tmp_path, tiny, capsys, monkeypatch):
    from mmgraph.data import write_mmrec
    mod = _load("mambarec_baby")
    seen = {}

    def fake_fit(self):
        seen["schedule"] = (self.config.epochs, self.config.patience)
        raise SystemExit(0)
    monkeypatch.setattr(mod.Trainer, "fit", fake_fit)
    write_mmrec(tiny, tmp_path / "data", name="tiny")
    with pytest.raises(SystemExit):                      # real-layout data: the paper's patience
        mod.main(["--data-dir", str(tmp_path / "data"), "--no-progress", "--out", str(tmp_path / "o")])
    assert seen["schedule"] == (1000, 10)
    monkeypatch.setattr(mod, "dataset_or_synthetic", lambda d, spec: (tiny, "synthetic:tiny"))
    with pytest.raises(SystemExit):                      # synthetic fallback: waits out the dip
        mod.main(["--no-progress", "--out", str(tmp_path / "o")])
    assert seen["schedule"] == (1000, 30)
    assert "early-stopping patience 30" in capsys.readouterr().out
