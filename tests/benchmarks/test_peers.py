"""benchmarks/peers.py: skips cleanly without an MMRec checkout; with one (MMGRAPH_MMREC_UPSTREAM,
default /tmp/ref/MMRec, plus pandas and pyyaml) it trains both sides and prints the table."""
import importlib.util
import os
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "peers.py"
UPSTREAM = Path(os.environ.get("MMGRAPH_MMREC_UPSTREAM", "/tmp/ref/MMRec"))


def _load():
    spec = importlib.util.spec_from_file_location("peers_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["peers_script"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_without_a_checkout_it_says_so_and_exits_0(tmp_path, capsys):
    peers = _load()
    assert peers.main([]) == 0
    assert "no MMRec checkout" in capsys.readouterr().out
    assert peers.main(["--mmrec", str(tmp_path)]) == 0
    assert "skipped" in capsys.readouterr().out


def test_unknown_model_is_refused(capsys):
    if not (UPSTREAM / "src" / "utils" / "quick_start.py").is_file():
        pytest.skip(f"no MMRec checkout at {UPSTREAM}")
    assert _load().main(["--mmrec", str(UPSTREAM), "--models", "rearm"]) == 2
    assert "no MMRec counterpart" in capsys.readouterr().err


def test_side_by_side_on_tiny_data(tmp_path, capsys):
    if not (UPSTREAM / "src" / "utils" / "quick_start.py").is_file():
        pytest.skip(f"no MMRec checkout at {UPSTREAM}")
    pytest.importorskip("pandas")
    pytest.importorskip("yaml")
    out = tmp_path / "peers.json"
    assert _load().main(["--mmrec", str(UPSTREAM), "--data", "synthetic:tiny", "--models",
                         "lightgcn", "--epochs", "2", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    row = next(r for r in text.splitlines() if r.startswith("| lightgcn |"))
    assert row.count("|") == 10
    import json
    res = json.loads(out.read_text())["models"]["lightgcn"]
    ours, theirs = res["valid_recall@20"]
    assert 0.1 < ours < 1 and 0.1 < theirs < 1          # both learn the same model
    assert all(x > 0 for x in res["peak_rss_mib"])
