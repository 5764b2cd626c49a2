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


def test_recommend_users_out_of_range_and_cold_start_without_cold_items(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "bprmf", "--data", "synthetic:tiny", "--epochs", "1",
                 "--progress", "false", "--out-dir", str(out)]) == 0
    capsys.readouterr()
    for users, bad in (("0,300", "300"), ("-1", "-1"), ("5,1000,-2", "1000, -2")):
        assert main(["recommend", str(out), "--users", users]) == 2
        err = capsys.readouterr().err
        assert err == f"error: --users must be user ids in 0..299, got {bad}\n"
    assert main(["recommend", str(out), "--users", "0", "-k", "0"]) == 2
    assert "-k must be in 1..200" in capsys.readouterr().err
    # synthetic:tiny has no cold item: say that nobody was evaluated instead of printing zeros
    assert main(["evaluate", str(out), "--cold-start"]) == 2
    err = capsys.readouterr().err
    assert "no user was evaluated: no test interaction is with a cold item" in err
    assert "0 cold item(s)" in err and err.count("\n") == 1


def test_models_markdown_is_the_docs_reference(capsys):
    """docs/models/README.md is `mmgraph models --markdown`: every model, every option
    with its default and a description, and the training settings each trains with."""
    import dataclasses
    from pathlib import Path

    from mmgraph.models.base import MODELS
    from mmgraph.train import train_config_for
    assert main(["models", "--markdown"]) == 0
    text = capsys.readouterr().out
    doc = Path(__file__).resolve().parents[1] / "docs" / "models" / "README.md"
    assert doc.read_text() == text, "regenerate: mmgraph models --markdown > docs/models/README.md"
    for name, cls in MODELS.items():
        section = text.split(f"(`--model {name}`)", 1)[1].split("\n## ", 1)[0]
        for f in dataclasses.fields(cls.config_class):
            row = next(r for r in section.splitlines() if r.startswith(f"| `{f.name}` |"))
            assert row.split(" | ")[2].strip(" |"), (name, f.name, "no description")
        if train_config_for(cls).lr_decay != 1.0:
            assert "`lr_decay=" in section, name


@pytest.mark.parametrize("args, msg", [
    (["--model", "slmrec", "--ssl-task", "XX"], "--ssl-task: expected one of FAC, FD, FM, FD+FM"),
    (["--model", "grcn", "--fusion-mode", "mean", "--latent-dim", "8"],
     "fusion_mode='mean' needs latent_dim == embedding_dim"),
    (["--model", "lgmrec", "--keep-rate", "0"], "keep_rate must be in (0, 1]"),
    (["--model", "mmgcn", "--num-layers", "0"], "num_layers must be >= 1 for MMGCN"),
    (["--model", "mgcn", "--knn-method", "annoy"], "knn_method"),
])
def test_model_options_are_checked_before_the_data_loads(args, msg, capsys):
    """Choices (Literal types) and cross-field rules live in the configs, so a bad value
    is reported before any data is read (the data path here does not exist)."""
    assert main(["train", *args, "--data", "/nonexistent/folder", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert msg in err and "nonexistent" not in err, err
