import json

import pytest

from mmgraph.cli import main


def test_help_lists_models_and_options(capsys):
    assert main(["--help"]) == 0
    assert "lightgcn" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--model", "lightgcn", "--help"])
    out = capsys.readouterr().out
    assert "--num-layers" in out and "--batch-size" in out and "--patience" in out


def test_unknown_model_and_option(capsys):
    assert main(["train", "--model", "nosuchmodel"]) == 2
    assert "unknown model 'nosuchmodel'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--model", "lightgcn", "--no-such-option", "1"])
    assert main(["train", "--model", "lightgcn", "--data", "synthetic:tiny", "--epochs", "x"]) == 2
    assert "--epochs: cannot read 'x' as int" in capsys.readouterr().err


def test_train_evaluate_recommend_roundtrip(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--model", "lightgcn", "--data", "synthetic:tiny", "--epochs", "3",
               "--batch-size", "512", "--num-layers", "1", "--progress", "false",
               "--out-dir", str(out)])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", str(out), "--ks", "20"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["recall@20"] == pytest.approx(results["test"]["recall@20"], abs=1e-6)
    assert main(["recommend", str(out), "--users", "0,1", "-k", "5"]) == 0
    rows = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert [r["user"] for r in rows] == [0, 1] and all(len(r["items"]) == 5 for r in rows)
    assert main(["evaluate", str(out), "--ks", "100000"]) == 2
    assert main(["evaluate", str(tmp_path / "missing")]) == 2


def test_stats(capsys):
    assert main(["stats", "synthetic:tiny"]) == 0
    assert "users" in capsys.readouterr().out.lower()
