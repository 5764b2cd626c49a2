"""dataset_stats / format_stats on a hand-computed example."""
import numpy as np
import pytest

from mmgraph.data import build_hetero, dataset_stats, format_stats


def test_stats_hand_computed():
    data = build_hetero(3, 4, np.array([[0, 0, 1, 2, 2], [0, 1, 1, 0, 1]]),
                        np.array([[0, 1], [2, 0]]), np.array([[2], [3]]),
                        {"image": np.zeros((4, 7)), "text": np.ones((4, 2))}, name="hand")
    st = dataset_stats(data)
    assert st["name"] == "hand"
    assert (st["users"], st["items"], st["interactions"]) == (3, 4, 8)
    assert st["density"] == pytest.approx(8 / 12)
    assert (st["train"], st["valid"], st["test"]) == (5, 2, 1)
    assert st["split_ratio"] == pytest.approx((5 / 8, 2 / 8, 1 / 8))
    assert (st["min_user_degree"], st["max_user_degree"]) == (2, 3)
    assert (st["min_item_degree"], st["max_item_degree"]) == (1, 3)    # item 3: test only
    assert st["cold_items"] == 2                                        # items 2, 3
    assert st["top20_item_share"] == pytest.approx(3 / 8)               # top 1 of 4 items
    assert st["modalities"] == {"image": [4, 7], "text": [4, 2]}
    text = format_stats(st)
    lines = dict(line.split(None, 1) for line in text.splitlines() if not line.startswith(
        ("user degree", "item degree", "top-20%", "cold items")))
    assert lines["dataset"].strip() == "hand"
    assert lines["interactions"].strip() == "8"
    assert lines["density"].strip() == "66.6667%"
    assert lines["train"].strip() == "5 (62.5%)"
    assert lines["x_image"].strip() == "4 x 7"
    assert "cold items" in text


def test_format_large_numbers():
    st = {"name": "big", "users": 19445, "items": 7050, "interactions": 160792,
          "density": 160792 / (19445 * 7050), "train": 118551, "valid": 20559, "test": 21682,
          "split_ratio": (0.737, 0.128, 0.135), "modalities": {}}
    text = format_stats(st)
    assert "19,445" in text and "160,792" in text and "0.1173%" in text
    assert "118,551 (73.7%)" in text
    assert text.splitlines()[-1].split() == ["modalities", "none"]


def test_feature_stats_hand_computed():
    from mmgraph.data import feature_stats
    x = np.array([[3, 4], [0, 0], [3, 4], [0, 1], [np.nan, 1]], np.float32)
    data = build_hetero(2, 5, np.array([[0, 1], [0, 1]]), np.array([[0], [2]]),
                        np.array([[1], [3]]), {"image": x})
    f = feature_stats(data)["image"]
    assert f == {"dim": 2, "norm_mean": pytest.approx((5 + 0 + 5 + 1) / 4), "norm_min": 0.0,
                 "norm_max": 5.0, "nan_rows": 1, "zero_rows": 1, "duplicate_rows": 1}
    st = dataset_stats(data, features=True)
    assert st["feature_stats"]["image"]["duplicate_rows"] == 1
    assert "feature_stats" not in dataset_stats(data)
    st["layout"] = "npy"
    lines = format_stats(st).splitlines()
    assert "layout" in lines[0] and lines[0].split()[-1] == "npy"
    i = next(k for k, ln in enumerate(lines) if ln.startswith("x_image"))
    assert lines[i + 1].split(None, 1)[1] == "mean 2.75, min 0, max 5"
    assert lines[i + 2].split(None, 1)[1] == "1 NaN/inf, 1 zero, 1 duplicate"


def test_cli_stats_reports_layout_and_features(tmp_path, capsys):
    from mmgraph.cli import main
    from mmgraph.data import write_diffmm
    pytest.importorskip("scipy")
    feats = np.zeros((4, 3), np.float32)
    feats[0] = [1, 2, 2]
    data = build_hetero(2, 4, np.array([[0, 0, 1, 1], [0, 1, 2, 3]]), np.array([[0], [2]]),
                        np.array([[1], [0]]), {"audio": feats}, name="t")
    write_diffmm(data, tmp_path)
    assert main(["stats", str(tmp_path)]) == 0
    out = dict(ln.split(None, 1) for ln in capsys.readouterr().out.splitlines())
    assert out["layout"].strip() == "diffmm"
    assert out["x_audio"].strip() == "4 x 3"
    assert out["rows"].strip() == "0 NaN/inf, 3 zero, 2 duplicate"
    assert out["norms"].strip() == "mean 0.75, min 0, max 3"
