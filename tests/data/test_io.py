"""Loaders and writers: round trips, layouts agreeing, load_dataset, real Baby."""

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

from mmgraph.data import (INTERACTS, REV_INTERACTS, SPLITS, build_hetero, dataset_stats, detect_layout,
                          load_dataset, modality_features, read_mmrec, read_npy_splits,
                          split_edge_attr, split_edge_index, split_sizes, write_mmrec,
                          write_npy_splits)

BABY = SHARED_DATA / "baby"


def toy(features=True):
    """4 users, 5 items, every user with a train edge, ids contiguous."""
    train = [[0, 0, 1, 2, 3, 3], [0, 1, 2, 3, 4, 0]]
    valid = [[0, 1], [2, 3]]
    test = [[2, 3], [4, 1]]
    feats = None
    if features:
        g = torch.Generator().manual_seed(0)
        feats = {"image": torch.rand(5, 6, generator=g), "text": torch.randn(5, 3, generator=g)}
    return build_hetero(4, 5, np.array(train), np.array(valid), np.array(test), feats, name="toy")


def assert_same(a, b, check_name=False):
    assert a["user"].num_nodes == b["user"].num_nodes
    assert a["item"].num_nodes == b["item"].num_nodes
    for s in SPLITS:
        ea, eb = split_edge_index(a, s), split_edge_index(b, s)
        assert ea.dtype == eb.dtype == torch.long
        assert torch.equal(ea, eb), s
    assert torch.equal(a[REV_INTERACTS].edge_index, b[REV_INTERACTS].edge_index)
    fa, fb = modality_features(a), modality_features(b)
    assert fa.keys() == fb.keys()
    for m in fa:
        assert fa[m].dtype == fb[m].dtype == torch.float32
        assert torch.equal(fa[m], fb[m]), m
    if check_name:
        assert a.name == b.name


def test_mmrec_round_trip(tmp_path):
    data = toy()
    path = write_mmrec(data, tmp_path, "toy")
    assert path == tmp_path / "toy.inter"
    lines = path.read_text().splitlines()
    assert lines[0] == "userID\titemID\trating\ttimestamp\tx_label"
    assert lines[1] == "0\t0\t0\t0\t0"                      # no stored rating/timestamp -> 0
    assert len(lines) == 1 + 6 + 2 + 2
    assert [ln.split("\t")[-1] for ln in lines[1:]] == ["0"] * 6 + ["1"] * 2 + ["2"] * 2
    assert sorted(p.name for p in tmp_path.glob("*_feat.npy")) == ["image_feat.npy",
                                                                  "text_feat.npy"]
    back = read_mmrec(tmp_path)
    assert_same(data, back, check_name=True)
    assert "rating" not in back[INTERACTS]            # all-zero extras are not stored


def test_npy_round_trip(tmp_path):
    data = toy()
    write_npy_splits(data, tmp_path)
    for s in SPLITS:
        arr = np.load(tmp_path / f"{s}.npy")
        assert arr.dtype == np.int64 and arr.shape[0] == 2
    back = read_npy_splits(tmp_path, name="toy")
    assert_same(data, back, check_name=True)


def test_layouts_agree(tmp_path):
    data = load_dataset("synthetic:tiny?image_dim=32&text_dim=8")
    write_mmrec(data, tmp_path / "mm", "tiny")
    write_npy_splits(data, tmp_path / "np")
    assert detect_layout(tmp_path / "mm") == "mmrec"
    assert detect_layout(tmp_path / "np") == "npy"
    a = load_dataset(tmp_path / "mm")
    b = load_dataset(tmp_path / "np")
    assert_same(a, b)
    assert_same(a, data)
    assert a.name == "tiny" and b.name == "np"
    # a .inter file path works too, and explicit sizes give the same data
    assert_same(load_dataset(tmp_path / "mm" / "tiny.inter"), a)
    assert_same(load_dataset(str(tmp_path / "np"), num_users=300, num_items=200), a)


def test_ratings_and_timestamps_round_trip(tmp_path):
    (tmp_path / "r.inter").write_text(
        "userID\titemID\trating\ttimestamp\tx_label\n"
        "0\t0\t5\t1400000000\t0\n"
        "1\t1\t3.5\t1400000001\t0\n"
        "0\t1\t1\t1400000002\t1\n"
        "1\t0\t4\t1400000003\t2\n")
    data = read_mmrec(tmp_path)
    assert torch.equal(split_edge_attr(data, "train", "rating"), torch.tensor([5.0, 3.5]))
    assert split_edge_attr(data, "valid", "rating").tolist() == [1.0]
    ts = split_edge_attr(data, "test", "timestamp")
    assert ts.dtype == torch.int64 and ts.tolist() == [1400000003]
    write_mmrec(data, tmp_path / "out")
    back = read_mmrec(tmp_path / "out")
    assert_same(data, back)
    for s in SPLITS:
        for col in ("rating", "timestamp"):
            assert torch.equal(split_edge_attr(back, s, col), split_edge_attr(data, s, col))
    assert (tmp_path / "out" / "r.inter").read_text() == (tmp_path / "r.inter").read_text()
    # extras=False drops them
    assert "rating" not in read_mmrec(tmp_path, extras=False)[INTERACTS]


def test_columns_found_by_name_and_any_modality(tmp_path):
    # columns in another order, extra column, space-separated, custom modality
    (tmp_path / "x.inter").write_text(
        "x_label itemID extra userID\n"
        "0 1 9 0\n0 0 9 1\n1 0 9 0\n2 1 9 1\n")
    np.save(tmp_path / "audio_feat.npy", np.arange(4, dtype=np.float16).reshape(2, 2))
    data = load_dataset(tmp_path)
    assert split_edge_index(data, "train").tolist() == [[0, 1], [1, 0]]
    assert split_edge_index(data, "valid").tolist() == [[0], [0]]
    x = data["item"].x_audio
    assert x.dtype == torch.float32 and x.tolist() == [[0.0, 1.0], [2.0, 3.0]]
    # choose modalities
    np.save(tmp_path / "image_feat.npy", np.ones((2, 3), np.float32))
    assert sorted(modality_features(load_dataset(tmp_path)).keys()) == ["audio", "image"]
    assert list(modality_features(load_dataset(tmp_path, modalities=["image"]))) == ["image"]


def test_write_without_features_and_default_name(tmp_path):
    data = toy(features=False)
    path = write_mmrec(data, tmp_path)
    assert path.name == "toy.inter"
    assert not list(tmp_path.glob("*_feat.npy"))
    assert modality_features(load_dataset(tmp_path)) == {}


def test_load_dataset_synthetic_spec():
    a = load_dataset("synthetic:tiny?seed=3&image_dim=16")
    assert a["item"].x_image.shape == (200, 16)
    assert a.name == "synthetic-tiny"
    b = load_dataset("synthetic:tiny", seed=3, text_dim=8)
    assert b["item"].x_text.shape == (200, 8)
    for s in SPLITS:   # feature widths never change the interactions
        assert torch.equal(split_edge_index(a, s), split_edge_index(b, s))
    c = load_dataset("synthetic:tiny?seed=3", seed=4)   # keyword beats query string
    assert not torch.equal(split_edge_index(a, "train"), split_edge_index(c, "train"))
    with pytest.raises(ValueError, match="unknown synthetic preset"):
        load_dataset("synthetic:nope")
    with pytest.raises(ValueError, match="bad option"):
        load_dataset("synthetic:tiny?colour=red")


def test_real_baby():
    if not (BABY / "train.npy").is_file():
        pytest.skip("../shared/data/baby is not present")
    data = load_dataset(BABY)
    st = dataset_stats(data)
    assert (st["users"], st["items"]) == (19_445, 7_050)
    assert (st["train"], st["valid"], st["test"]) == (118_551, 20_559, 21_682)
    assert st["interactions"] == 160_792
    # our MMRec-style rounding reproduces the published per-user split sizes
    counts = np.stack([np.bincount(split_edge_index(data, s)[0].numpy(), minlength=19_445)
                       for s in SPLITS], axis=1)
    assert np.array_equal(split_sizes(counts.sum(1)), counts)


def test_dataset_or_synthetic_fallback(tmp_path):
    from mmgraph.data import dataset_or_synthetic, load_dataset, write_mmrec
    said = []
    data, spec = dataset_or_synthetic(tmp_path / "missing", "synthetic:tiny", log=said.append)
    assert spec == "synthetic:tiny" and "does not exist" in said[0]
    tiny = load_dataset("synthetic:tiny")
    no_feats = tmp_path / "nofeat"
    write_mmrec(tiny, no_feats, name="tiny", features=False)
    said.clear()
    _, spec = dataset_or_synthetic(no_feats, "synthetic:tiny", log=said.append)
    assert spec == "synthetic:tiny" and "no *_feat.npy" in said[0]
    _, spec = dataset_or_synthetic(no_feats, "synthetic:tiny", require_features=False, log=said.append)
    assert spec == str(no_feats)
    full = tmp_path / "full"
    write_mmrec(tiny, full, name="tiny")
    data, spec = dataset_or_synthetic(full, "synthetic:tiny", log=said.append)
    assert spec == str(full) and torch.equal(data["item"].x_image, tiny["item"].x_image)
