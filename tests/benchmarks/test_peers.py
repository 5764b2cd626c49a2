"""benchmarks/peers.py: argument handling and clean skips, the data every side reads (RecBole's
atomic files with mmgraph's split), the settings handed to each peer, log parsing on captured
MMRec / RecBole output, the table and the range check. End-to-end runs need an MMRec checkout
(MMGRAPH_MMREC_UPSTREAM, default /tmp/ref/MMRec, plus pandas and pyyaml) or an interpreter that
imports RecBole (MMGRAPH_RECBOLE_PYTHON, default /tmp/recbole-venv/bin/python) and skip without."""
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "peers.py"
UPSTREAM = Path(os.environ.get("MMGRAPH_MMREC_UPSTREAM", "/tmp/ref/MMRec"))
RECBOLE_PYTHON = os.environ.get("MMGRAPH_RECBOLE_PYTHON", "/tmp/recbole-venv/bin/python")

# Lines captured from real runs (synthetic:tiny, LightGCN, 2 epochs): MMRec at e775373 and
# RecBole 1.2.1, the latter once more with the colour codes its logger adds on a terminal.
MMREC_LOG = """\
Trainable parameters: 32000
29 Nov 22:27    INFO epoch 0 training [time: 0.13s, train loss: 1.3787]
29 Nov 22:27    INFO epoch 0 evaluating [time: 0.16s, valid_score: 0.365300]
29 Nov 22:27    INFO valid result: 
recall@5: 0.1372    recall@10: 0.2528    recall@20: 0.3653    recall@50: 0.6081    ndcg@5: 0.0989
29 Nov 22:27    INFO test result: 
recall@5: 0.1564    recall@10: 0.2325    recall@20: 0.3711    recall@50: 0.5885    ndcg@5: 0.1058
29 Nov 22:27    INFO ██ LightGCN--Best validation results updated!!!
29 Nov 22:27    INFO epoch 1 training [time: 0.11s, train loss: 1.3767]
29 Nov 22:27    INFO epoch 1 evaluating [time: 0.15s, valid_score: 0.470900]
29 Nov 22:27    INFO valid result: 
recall@5: 0.1813    recall@10: 0.3153    recall@20: 0.4709    recall@50: 0.6875    ndcg@5: 0.1279
29 Nov 22:27    INFO best valid result: recall@5: 0.1813    recall@10: 0.3153    recall@20: 0.4709
@@maxrss_kib=397572
"""
RECBOLE_LOG = """\
peerdata
The number of users: 301
Average actions of users: 10.0
The number of items: 201
Average actions of items: 15.0
The number of inters: 3000
  scaler = amp.GradScaler(enabled=self.enable_scaler)
29 Nov 22:28    INFO  epoch 0 training [time: 0.44s, train loss: 1.3786]
29 Nov 22:28    INFO  epoch 0 evaluating [time: 0.03s, valid_score: 0.391800]
29 Nov 22:28    INFO  valid result: 
recall@20 : 0.3918    ndcg@20 : 0.1576
29 Nov 22:28    INFO  epoch 1 training [time: 0.04s, train loss: 1.3768]
29 Nov 22:28    INFO  epoch 1 evaluating [time: 0.01s, valid_score: 0.459000]
29 Nov 22:28    INFO  valid result: 
recall@20 : 0.459    ndcg@20 : 0.1971
@@maxrss_kib=453344
"""
RECBOLE_COLOURED = ("\x1b[1;32mepoch 3 training\x1b[0m [\x1b[1;34mtime\x1b[0m: 2.50s, "
                    "\x1b[1;34mtrain loss\x1b[0m: 120.5]\n"
                    "\x1b[1;32mepoch 3 evaluating\x1b[0m [\x1b[1;34mtime\x1b[0m: 0.75s, "
                    "\x1b[1;34mvalid_score\x1b[0m: 0.041200]\n")


def _load():
    return load_script(SCRIPT, "peers_script")


def _has_mmrec() -> bool:
    return (UPSTREAM / "src" / "utils" / "quick_start.py").is_file()


def _has_recbole() -> bool:
    try:
        r = subprocess.run([RECBOLE_PYTHON, "-c", "import recbole"], capture_output=True,
                           timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


# ------------------------------------------------------------------- arguments and skipping
def test_without_peers_it_says_so_and_exits_0(tmp_path, capsys):
    peers = _load()
    assert peers.main([]) == 0
    out = capsys.readouterr().out
    assert "no MMRec checkout" in out and "RecBole not requested" in out and "skipped" in out
    assert peers.main(["--mmrec", str(tmp_path)]) == 0
    assert "MMRec skipped" in capsys.readouterr().out
    # a wrong interpreter for RecBole, and one that has no RecBole (this one, as a rule)
    assert peers.main(["--mmrec", str(tmp_path), "--recbole", str(tmp_path / "python")]) == 0
    out = capsys.readouterr().out
    assert "RecBole cannot be imported" in out and "no peer to compare with" in out
    if importlib.util.find_spec("recbole") is None:
        assert peers.main(["--recbole"]) == 0
        assert "RecBole skipped" in capsys.readouterr().out


def test_bad_arguments_are_refused_before_looking_for_peers(capsys):
    peers = _load()
    assert peers.main(["--models", "rearm"]) == 2
    assert "no MMRec or RecBole counterpart" in capsys.readouterr().err
    assert peers.main(["--epochs", "0"]) == 2
    assert peers.main(["--tolerance", "0"]) == 2


def test_ours_options_are_model_options_handed_to_mmgraph_train():
    """OURS_OPTIONS (our model made the one MMRec computes) name config fields of our
    models; they become `mmgraph train` flags unless --ours-defaults."""
    import dataclasses

    from mmgraph.models import MODELS as ZOO
    peers = _load()
    for model, options in peers.OURS_OPTIONS.items():
        fields = {f.name for f in dataclasses.fields(ZOO[model].config_class)}
        assert model in peers.MODELS and set(options) <= fields, (model, options)
    assert peers.ours_options("grcn") == ["--routing", "mmrec"]
    assert peers.ours_options("lightgcn") == []
    assert peers.parse_args([]).ours_defaults is False
    assert peers.parse_args(["--ours-defaults"]).ours_defaults is True


def test_recbole_interpreter_defaults_to_this_one():
    peers = _load()
    assert peers.parse_args([]).recbole is None
    assert peers.parse_args(["--recbole"]).recbole == sys.executable
    assert peers.parse_args(["--recbole", "--epochs", "2"]).recbole == sys.executable
    assert peers.parse_args(["--recbole", "/venv/bin/python"]).recbole == "/venv/bin/python"


def test_model_selection_follows_the_peers():
    peers = _load()
    assert peers.select_models(None, ["recbole"]) == (["lightgcn", "bprmf"], [])
    every = {"lightgcn", "bprmf", "vbpr", "mmgcn", "grcn", "slmrec", "lattice", "mgcn",
             "lgmrec", "bm3", "freedom"}
    run, skipped = peers.select_models(None, ["mmrec", "recbole"])
    assert set(run) == every and skipped == []
    assert peers.select_models(["vbpr", "lightgcn"], ["recbole"]) == (["lightgcn"], ["vbpr"])
    assert peers.select_models(["vbpr"], ["mmrec"]) == (["vbpr"], [])
    assert set(peers.RECBOLE_MODELS) <= set(peers.MODELS)


# ------------------------------------------------------------------------ data and settings
def test_recbole_files_hold_mmgraphs_split(tmp_path):
    peers = _load()
    from mmgraph.data import load_dataset
    from mmgraph.data.hetero import num_items, num_users, split_edge_index
    folder = peers.write_data(load_dataset("synthetic:tiny"), tmp_path, "peerdata")
    ours = load_dataset(folder, cache=False)          # what `mmgraph train --data folder` reads
    out = peers.write_recbole_files(ours, tmp_path / "recbole" / "data" / "peerdata", "peerdata")
    users, items = set(), set()
    for split in ("train", "valid", "test"):
        lines = (out / f"peerdata.{split}.inter").read_text().splitlines()
        assert lines[0].split("\t")[:2] == ["user_id:token", "item_id:token"]
        pairs = [tuple(int(x) for x in ln.split("\t")[:2]) for ln in lines[1:]]
        e = split_edge_index(ours, split)
        assert len(pairs) == e.size(1) > 0
        assert pairs == list(zip(e[0].tolist(), e[1].tolist()))
        users |= {u for u, _ in pairs}
        items |= {i for _, i in pairs}
    assert len(users) == num_users(ours) and max(items) < num_items(ours)
    assert not list(out.glob("*.item"))               # ID models only: no feature file


def test_each_peer_gets_mmgraphs_settings(tmp_path):
    peers = _load()
    from mmgraph.models import MODELS as ZOO
    from mmgraph.train.trainer import train_config_for
    for model in peers.MODELS:
        c = peers.mmrec_config(model, 3, "cpu", tmp_path)
        t = train_config_for(ZOO[model])
        assert c["learning_rate"] == t.lr and c["train_batch_size"] == t.batch_size
        assert c["eval_batch_size"] == t.eval_batch_size and c["weight_decay"] == t.weight_decay
        assert c["learning_rate_scheduler"] == [t.lr_decay, t.lr_decay_every]
        assert c["epochs"] == 3 and c["hyper_parameters"] == [] and c["use_gpu"] is False
        assert c["data_path"].endswith(os.sep)
        assert getattr(ZOO[model].config_class(), "embedding_dim", 64) == c["embedding_size"]
    # the model options follow our config dataclasses
    assert peers.mmrec_config("lattice", 1, "cpu", tmp_path)["learning_rate"] == 5e-4
    assert peers.mmrec_config("mgcn", 1, "cpu", tmp_path)["learning_rate_scheduler"] == [0.96, 50]
    assert peers.mmrec_config("slmrec", 1, "cpu", tmp_path)["weight_decay"] == 1e-4
    from mmgraph.models import LGMRecConfig, LightGCNConfig, MGCNConfig, VBPRConfig
    assert peers.MODELS["lgmrec"][1]["reg_weight"] == LGMRecConfig().reg_weight
    assert peers.MODELS["lgmrec"][1]["hyper_num"] == LGMRecConfig().num_hyperedges
    assert peers.MODELS["mgcn"][1]["cl_loss"] == MGCNConfig().cl_weight
    assert peers.MODELS["vbpr"][1]["reg_weight"] == VBPRConfig().reg_weight
    assert peers.mmrec_config("lightgcn", 1, "cuda:1", tmp_path)["gpu_id"] == 1

    rb = peers.recbole_config("lightgcn", 2, "cpu", tmp_path, 200, tmp_path)
    assert rb["benchmark_filename"] == ["train", "valid", "test"]
    assert rb["eval_args"]["mode"] == "full" and rb["valid_metric"] == "Recall@20"
    assert rb["eval_batch_size"] == 4096 * 201        # users x (items + padding)
    assert rb["n_layers"] == LightGCNConfig().num_layers
    assert rb["reg_weight"] == LightGCNConfig().reg_weight and rb["require_pow"] is True
    assert rb["train_batch_size"] == 2048 and rb["learning_rate"] == 1e-3
    assert rb["stopping_step"] > 2 and rb["eval_step"] == 1 and rb["use_gpu"] is False


def test_mmrec_grids_are_fixed_to_one_value(tmp_path):
    """Every list of MMRec's yaml grid is replaced (its `hyper_parameters`)."""
    if not _has_mmrec():
        pytest.skip(f"no MMRec checkout at {UPSTREAM}")
    yaml = pytest.importorskip("yaml")
    peers = _load()
    for model, (name, _) in peers.MODELS.items():
        spec = yaml.safe_load((UPSTREAM / "src" / "configs" / "model" / f"{name}.yaml").read_text())
        config = peers.mmrec_config(model, 1, "cpu", tmp_path)
        for key in spec.get("hyper_parameters", []):
            assert key in config, (model, key)
            assert not isinstance(config[key], list), (model, key)


# ---------------------------------------------------------------------- parsing and the table
def test_log_parsing_on_captured_output():
    peers = _load()
    mm = peers.parse_log(MMREC_LOG)
    assert mm == {"train": [0.13, 0.11], "valid": [0.16, 0.15], "valid_recall@20": 0.4709}
    rb = peers.parse_log(RECBOLE_LOG)
    assert rb == {"train": [0.44, 0.04], "valid": [0.03, 0.01], "valid_recall@20": 0.459}
    assert peers.parse_log(RECBOLE_COLOURED) == {"train": [2.5], "valid": [0.75],
                                                 "valid_recall@20": 0.0412}
    assert peers.parse_recbole_counts(RECBOLE_LOG) == {"users": 301, "items": 201, "inters": 3000}
    assert peers.parse_recbole_counts(MMREC_LOG) == {}
    empty = peers.parse_log("Traceback ...")
    assert empty["train"] == [] and math.isnan(empty["valid_recall@20"])


def test_range_check():
    peers = _load()
    assert peers.out_of_range({"ours": 0.04, "mmrec": 0.041, "recbole": 0.039}, 0.5) == []
    assert peers.out_of_range({"ours": 0.04, "mmrec": 0.041, "recbole": 0.01}, 0.5) == ["recbole"]
    assert peers.out_of_range({"ours": 0.0107, "mmrec": 0.0161}, 0.5) == ["ours", "mmrec"]
    assert peers.out_of_range({"ours": 0.0107, "mmrec": 0.0161}, 1.0) == []
    assert peers.out_of_range({"ours": float("nan"), "mmrec": 0.02}, 0.5) == ["ours"]
    # three sides: the reference is the median of all, so one outlier flags itself only
    assert peers.out_of_range({"ours": 0.04, "mmrec": 0.041, "recbole": 0.002}, 0.5) == ["recbole"]
    assert peers.out_of_range({"ours": 0.01, "mmrec": 0.04, "recbole": 0.09}, 0.5) == [
        "ours", "recbole"]


def test_table_and_check_lines():
    peers = _load()
    run = {"train": [3.0, 2.0, 2.2], "valid": [1.0, 0.5, 0.7], "rss_mib": 700.0,
           "valid_recall@20": 0.04}
    results = {"lightgcn": {"ours": [run], "mmrec": [{**run, "train": [9, 6, 6.6], "rss_mib": 800,
                                                      "valid_recall@20": 0.041}],
                            "recbole": [{**run, "valid": [2, 1.5, 2.1], "valid_recall@20": 0.002}]},
               "vbpr": {"ours": [run], "mmrec": [{"error": "MMRec VBPR failed (1)"}]}}
    summary = peers.summarise(results)
    assert summary["lightgcn"]["ours"]["train_s"] == 2.1            # median after epoch 1
    assert summary["vbpr"]["mmrec"] == {"error": "MMRec VBPR failed (1)"}
    lines = peers.table(summary, ["mmrec", "recbole"])
    assert lines[0].count("|") == len(lines[1].split("---")) == 14
    row = lines[2].split(" | ")
    assert row[0] == "| lightgcn" and row[4] == "3.0x" and row[5] == "1.0x"
    assert row[9] == "1.0x" and row[10] == "3.0x"
    assert lines[2].endswith("0.0400 / 0.0410 / 0.0020 |")
    assert "| vbpr | 2.10 | – | – | – | – |" in lines[3]
    assert peers.table(summary, ["mmrec"])[0].count("|") == 10          # the MMRec-only layout
    checks, flags = peers.check_lines(summary, 0.5)
    assert flags == {"lightgcn": ["recbole"], "vbpr": []}
    assert "OUT OF RANGE (RecBole" in checks[0] and "fewer than two sides" in checks[1]


# ------------------------------------------------------------------------------- end to end
def test_unknown_model_is_refused_with_a_checkout(capsys):
    if not _has_mmrec():
        pytest.skip(f"no MMRec checkout at {UPSTREAM}")
    assert _load().main(["--mmrec", str(UPSTREAM), "--models", "rearm"]) == 2
    assert "no MMRec or RecBole counterpart" in capsys.readouterr().err


def test_side_by_side_on_tiny_data(tmp_path, capsys):
    if not _has_mmrec():
        pytest.skip(f"no MMRec checkout at {UPSTREAM}")
    pytest.importorskip("pandas")
    pytest.importorskip("yaml")
    out = tmp_path / "peers.json"
    assert _load().main(["--mmrec", str(UPSTREAM), "--data", "synthetic:tiny", "--models",
                         "lightgcn", "--epochs", "2", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    row = next(r for r in text.splitlines() if r.startswith("| lightgcn |"))
    assert row.count("|") == 10
    res = json.loads(out.read_text())["models"]["lightgcn"]
    ours, theirs = res["valid_recall@20"]
    assert 0.1 < ours < 1 and 0.1 < theirs < 1          # both learn the same model
    assert all(x > 0 for x in res["peak_rss_mib"])


def test_recbole_side_on_tiny_data(tmp_path, capsys):
    if not _has_recbole():
        pytest.skip(f"no RecBole importable by {RECBOLE_PYTHON}")
    out = tmp_path / "peers.json"
    assert _load().main(["--recbole", RECBOLE_PYTHON, "--data", "synthetic:tiny", "--models",
                         "lightgcn", "--epochs", "2", "--json", str(out), "--strict"]) == 0
    text = capsys.readouterr().out
    assert "check lightgcn: ok" in text and "RecBole read" not in text     # same sizes
    res = json.loads(out.read_text())
    assert res["peers"] == ["recbole"] and res["recbole_version"].startswith("1.")
    m = res["models"]["lightgcn"]
    ours, theirs = m["valid_recall@20"]
    assert 0.1 < ours < 1 and 0.1 < theirs < 1
    assert all(x > 0 for x in m["peak_rss_mib"] + m["train_s"] + m["valid_eval_s"])
