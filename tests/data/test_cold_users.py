"""Cold users (drop / error / keep) and catalogue items end to end: loaders,
graph builders, training and evaluation (issue 16 item 3, issue 18 item 6)."""
import math
import warnings

import numpy as np
import pytest
import torch

from mmgraph.data import (DataValidationError, build_hetero, load_dataset, split_edge_index,
                          validate_hetero, write_npy_splits)
from mmgraph.evaluation import Evaluator

COLD = [3, 10, 57]          # users of synthetic:tiny whose train edges are removed


@pytest.fixture(scope="module")
def cold_dir(tmp_path_factory):
    """synthetic:tiny where users COLD have valid/test edges but no train edge."""
    tiny = load_dataset("synthetic:tiny?image_dim=16&text_dim=8")
    tr = split_edge_index(tiny, "train")
    keep = ~torch.isin(tr[0], torch.tensor(COLD))
    feats = {"image": tiny["item"].x_image, "text": tiny["item"].x_text}
    data = build_hetero(300, 200, tr[:, keep], split_edge_index(tiny, "valid"),
                        split_edge_index(tiny, "test"), feats, name="cold")
    path = tmp_path_factory.mktemp("cold")
    write_npy_splits(data, path)
    return path


def test_drop_is_default_and_keeps_user_ids(cold_dir):
    with pytest.warns(UserWarning, match=r"3 user\(s\) have no training interaction "
                                         r"\(first: 3, 10, 57\); dropped their \d+ valid/test"):
        data = load_dataset(cold_dir)
    assert data["user"].num_nodes == 300
    for s in ("train", "valid", "test"):
        assert not torch.isin(split_edge_index(data, s)[0], torch.tensor(COLD)).any()
    validate_hetero(data)
    with pytest.raises(DataValidationError, match=r"3 user\(s\) have no training interaction"):
        load_dataset(cold_dir, cold_users="error")


def _train_two_epochs(data, model_name):
    from mmgraph.models.base import get_model_class
    from mmgraph.train import TrainConfig, Trainer
    torch.manual_seed(0)
    cls = get_model_class(model_name)
    model = cls(data, cls.config_class())
    cfg = TrainConfig(epochs=2, batch_size=1024, progress=False, patience=50, out_dir=None)
    return Trainer(model, data, cfg).fit()


def _model_names():
    import mmgraph.models  # noqa: F401  (registers every model)
    from mmgraph.models.base import MODELS
    return sorted(MODELS)


@pytest.mark.parametrize("model_name", _model_names())
def test_users_without_edges_train_and_evaluate(cold_dir, model_name):
    with pytest.warns(UserWarning, match="dropped"):
        data = load_dataset(cold_dir)
    res = _train_two_epochs(data, model_name)          # zero-degree users in the graph
    assert all(math.isfinite(v) for v in res.test.values()), res.test
    assert res.test["recall@20"] > 0.0


def test_keep_evaluates_cold_users(cold_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_dataset(cold_dir, cold_users="keep")
    validate_hetero(data, cold_users="keep")
    res = _train_two_epochs(data, "lightgcn")
    assert all(math.isfinite(v) for v in res.test.values())
    # the evaluator ranks every user with test edges, the cold ones included
    n_cold_test = int(torch.isin(torch.unique(split_edge_index(data, "test")[0]),
                                 torch.tensor(COLD)).sum())
    assert n_cold_test > 0
    with pytest.warns(UserWarning, match="dropped"):
        dropped = load_dataset(cold_dir)
    assert Evaluator(data).num_eval_users("test") == \
        Evaluator(dropped).num_eval_users("test") + n_cold_test


def test_catalogue_items_are_candidates(tmp_path):
    # items 2 and 4 occur in no interaction, only as feature rows
    train = np.array([[0, 0, 1, 1], [0, 1, 1, 3]])
    valid = np.array([[0], [3]])
    test = np.array([[1], [0]])
    for s, e in (("train", train), ("valid", valid), ("test", test)):
        np.save(tmp_path / f"{s}.npy", e)
    feat = np.arange(15, dtype=np.float32).reshape(5, 3)
    np.save(tmp_path / "image_feat.npy", feat)
    with pytest.raises(DataValidationError, match=r"image features have 5 rows but the dataset "
                                                  r"has 4 items; if the last 1 row\(s\) are "
                                                  r"catalogue items without interactions, pass "
                                                  r"num_items=5"):
        load_dataset(tmp_path)
    with pytest.warns(UserWarning, match=r"2 of the item ids 0\.\.4 occur in no interaction "
                                         r"\(first: 2, 4\); kept as cold items"):
        data = load_dataset(tmp_path, num_items=5)
    assert data["item"].num_nodes == 5
    assert torch.equal(data["item"].x_image, torch.from_numpy(feat))   # features kept
    # ranked as candidates: a scorer preferring item 2 pushes user 1's test item 0 down
    ev = Evaluator(data, ks=(1, 2))

    def score(u):
        s = torch.zeros(u.numel(), 5)
        s[:, 2] = 2.0
        s[:, 0] = 1.0
        s[:, 4] = 0.5
        return s
    res = ev.evaluate(score, split="test")
    assert res["recall@1"] == 0.0 and res["recall@2"] == 1.0

    items, _ = ev.recommend(score, torch.tensor([0, 1]), k=2)
    assert items.tolist() == [[2, 4], [2, 0]]       # user 0's train items 0, 1 are masked


def test_real_tiktok_loads_with_a_warning():
    from conftest import SHARED_DATA
    path = SHARED_DATA / "tiktok"
    if not (path / "tiktok.inter").is_file():
        pytest.skip("../shared/data/tiktok is not present")
    with pytest.warns(UserWarning, match=r"10 user\(s\) have no training interaction"):
        data = load_dataset(path)
    assert (data["user"].num_nodes, data["item"].num_nodes) == (9308, 6710)
    assert split_edge_index(data, "train").size(1) == 59_541
