"""The synthetic generator: exact sizes, degrees, split, long tail, planted signal."""
import time

import numpy as np
import pytest
import torch

from mmgraph.data import (PRESETS, SPLITS, dataset_stats, generate_synthetic, load_dataset,
                          parse_synthetic_spec, split_edge_index, split_sizes, validate_hetero)

MID = dict(num_users=1500, num_items=600, num_interactions=14_000, image_dim=512, text_dim=64)


@pytest.fixture(scope="module")
def mid():
    return generate_synthetic(**MID, seed=5, return_factors=True)


def all_edges(data):
    return torch.cat([split_edge_index(data, s) for s in SPLITS], 1).numpy()


def knn(x, k):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    return np.argpartition(-sim, k, axis=1)[:, :k]


def overlap(a, b):
    return np.mean([len(set(x) & set(y)) / a.shape[1] for x, y in zip(a, b)])


def test_presets_match_mission_table():
    sizes = {p: (v["num_users"], v["num_items"], v["num_interactions"]) for p, v in PRESETS.items()}
    assert sizes["baby"] == (19_445, 7_050, 160_792)
    assert sizes["sports"] == (35_598, 18_357, 296_337)
    assert sizes["clothing"] == (39_387, 23_033, 278_677)
    assert sizes["elec"] == (192_403, 63_001, 1_689_188)
    assert parse_synthetic_spec("synthetic:baby?seed=3&image_dim=256&split=0.7,0.2,0.1") == \
        ("baby", {"seed": 3, "image_dim": 256, "split": (0.7, 0.2, 0.1)})


def test_exact_sizes_degrees_and_split(mid):
    data, _ = mid
    validate_hetero(data, contiguous=True)
    st = dataset_stats(data)
    assert (st["users"], st["items"], st["interactions"]) == (1500, 600, 14_000)
    e = all_edges(data)
    assert np.unique(e[0] * 600 + e[1]).size == e.shape[1]          # no repeated pair
    assert np.bincount(e[0], minlength=1500).min() >= 5
    assert np.bincount(e[1], minlength=600).min() >= 5
    counts = np.stack([np.bincount(split_edge_index(data, s)[0].numpy(), minlength=1500)
                       for s in SPLITS], 1)
    assert counts[:, 0].min() >= 1
    assert np.array_equal(counts, split_sizes(counts.sum(1)))       # MMRec rounding per user
    tr, va, te = st["split_ratio"]
    assert 0.70 < tr < 0.82 and 0.08 < va < 0.16 and 0.08 < te < 0.16
    assert data["item"].x_image.shape == (600, 512) and data["item"].x_text.shape == (600, 64)


def test_long_tailed_popularity(mid):
    data, _ = mid
    st = dataset_stats(data)
    assert st["top20_item_share"] > 0.4
    deg = np.bincount(all_edges(data)[1])
    assert deg.max() > 5 * np.median(deg)


def test_features_recover_latent_neighbours(mid):
    data, f = mid
    k = 10
    latent = knn(f.item, k)
    rand = k / 600
    for m in ("image", "text"):
        ov = overlap(knn(data["item"][f"x_{m}"].numpy(), k), latent)
        assert ov > 8 * rand, (m, ov)
    # same-cluster rate of feature neighbours is far above chance
    img = knn(data["item"].x_image.numpy(), k)
    same = (f.item_cluster[img] == f.item_cluster[:, None]).mean()
    chance = np.mean(np.bincount(f.item_cluster) / 600) * 1.0
    assert same > 0.8 and same > 3 * chance


def test_feature_ranges(mid):
    data, _ = mid
    img, txt = data["item"].x_image, data["item"].x_text
    assert img.dtype == txt.dtype == torch.float32
    assert img.min() >= 0 and (img > 0).float().mean() > 0.2        # ReLU-like, not all zero
    assert torch.allclose(txt.norm(dim=1), torch.ones(600), atol=1e-5)


def test_interactions_follow_the_planted_factors(mid):
    data, f = mid
    tr = split_edge_index(data, "train").numpy()
    te = split_edge_index(data, "test").numpy()
    n_u, n_i = 1500, 600
    seen = np.zeros((n_u, n_i), bool)
    seen[tr[0], tr[1]] = True
    truth = np.zeros((n_u, n_i), bool)
    truth[te[0], te[1]] = True

    def recall20(scores):
        scores = np.where(seen, -np.inf, scores)
        top = np.argpartition(-scores, 20, axis=1)[:, :20]
        hits = np.take_along_axis(truth, top, 1).sum(1)
        return np.mean(hits / truth.sum(1))

    pop = np.bincount(tr[1], minlength=n_i).astype(float)
    oracle = f.user @ f.item.T / f.temperature + f.log_popularity
    assert recall20(oracle) > 2 * recall20(np.tile(pop, (n_u, 1)))


def test_deterministic_per_seed():
    a = generate_synthetic(400, 150, 3000, image_dim=32, text_dim=16, seed=1)
    b = generate_synthetic(400, 150, 3000, image_dim=32, text_dim=16, seed=1)
    c = generate_synthetic(400, 150, 3000, image_dim=32, text_dim=16, seed=2)
    for s in SPLITS:
        assert torch.equal(split_edge_index(a, s), split_edge_index(b, s))
    for m in ("x_image", "x_text"):
        assert torch.equal(a["item"][m], b["item"][m])
        assert not torch.equal(a["item"][m], c["item"][m])
    assert not torch.equal(split_edge_index(a, "train"), split_edge_index(c, "train"))


def test_tight_budget_and_bad_arguments():
    # every user and item at exactly the minimum is still feasible
    d = generate_synthetic(100, 100, 500, image_dim=0, text_dim=0, seed=0)
    e = all_edges(d)
    assert (np.bincount(e[0]) == 5).all() and (np.bincount(e[1]) == 5).all()
    assert "x_image" not in d["item"]
    with pytest.raises(ValueError, match="too small"):
        generate_synthetic(100, 200, 900)
    with pytest.raises(ValueError, match="exceeds"):
        generate_synthetic(10, 20, 150)
    with pytest.raises(ValueError, match="unknown synthetic modalities"):
        generate_synthetic(12, 10, 60, modalities=("audio",))


def test_tiny_preset_fast_and_strong():
    load_dataset("synthetic:tiny")                     # warm-up (imports, BLAS)
    t = time.perf_counter()
    data = load_dataset("synthetic:tiny")
    elapsed = time.perf_counter() - t
    assert elapsed < 2.0                               # ~0.05 s on an idle core
    st = dataset_stats(data)
    assert (st["users"], st["items"]) == (300, 200)
    assert data["item"].x_image.shape == (200, 4096) and data["item"].x_text.shape == (200, 384)
    assert st["min_user_degree"] >= 5 and st["min_item_degree"] >= 5


@pytest.mark.slow
def test_baby_scale():
    t = time.perf_counter()
    data = load_dataset("synthetic:baby")
    elapsed = time.perf_counter() - t
    st = dataset_stats(data)
    assert (st["users"], st["items"], st["interactions"]) == (19_445, 7_050, 160_792)
    assert st["min_user_degree"] >= 5 and st["min_item_degree"] >= 5
    assert st["valid"] > 0 and st["test"] > 0
    assert data["item"].x_image.shape == (7_050, 4096)
    assert elapsed < 60                                # a few seconds on an idle machine


# ----------------------------------------------------------------- lazily built features
def test_lazy_features_match_eager_and_are_pinned():
    from mmgraph.data.lazy import is_lazy
    lazy = load_dataset("synthetic:tiny?seed=3")
    eager = load_dataset("synthetic:tiny?seed=3", lazy_features=False)
    assert is_lazy(lazy, "image") and is_lazy(lazy, "text") and not is_lazy(eager, "image")
    for m in ("image", "text"):
        assert torch.equal(lazy["item"][f"x_{m}"], eager["item"][f"x_{m}"])
    assert not is_lazy(lazy, "image")
    # the values of today's generator (seed 3), pinned
    img, txt = lazy["item"].x_image.double(), lazy["item"].x_text.double()
    assert float(img.sum()) == pytest.approx(280967.52749536216, rel=1e-12)
    assert float((img * img).sum()) == pytest.approx(250937.97751894087, rel=1e-12)
    assert float(txt.sum()) == pytest.approx(8.985742612043992, rel=1e-9)
    assert lazy["item"].x_image[7, :3].tolist() == [0.0, 0.22928965091705322, 0.0]


def test_lazy_features_built_only_when_read(tmp_path):
    import copy
    import pickle

    from mmgraph.data import dataset_stats, modality_names, modality_shapes
    from mmgraph.data.lazy import is_lazy
    from mmgraph.models import FREEDOM, LightGCN
    from mmgraph.train import Trainer, TrainConfig
    data = load_dataset("synthetic:tiny")
    # listing, shapes, membership and the CLI's stats build nothing
    assert modality_names(data) == ["image", "text"] and "x_image" in data["item"]
    assert modality_shapes(data) == {"image": [200, 4096], "text": [200, 384]}
    assert dataset_stats(data)["modalities"] == {"image": [200, 4096], "text": [200, 384]}
    # a model without modalities trains without building them
    cfg = TrainConfig(epochs=1, progress=False, out_dir=str(tmp_path / "run"))
    Trainer(LightGCN(data), data, cfg).fit()
    assert is_lazy(data, "image") and is_lazy(data, "text")
    # copies share the pending features; pickling builds them
    data = load_dataset("synthetic:tiny")
    shallow = copy.copy(data)
    back = pickle.loads(pickle.dumps(data))
    assert not is_lazy(data, "image") and torch.equal(back["item"].x_image, data["item"].x_image)
    assert shallow["item"].x_image is data["item"].x_image
    # a model reading modalities gets real tensors
    fresh = load_dataset("synthetic:tiny")
    FREEDOM(fresh)
    assert not is_lazy(fresh, "image") and type(fresh["item"].x_image) is torch.Tensor
    assert fresh["item"].get("x_text").shape == (200, 384)
