import math

import numpy as np
import pytest
import torch

from mmgraph.data.hetero import build_hetero, split_edge_index
from mmgraph.evaluation import Evaluator, cold_start_split, evaluate, recommend
from mmgraph.models.base import Embeddings, Recommender
from marks import requires_cuda


def _score_fn(matrix):
    matrix = torch.as_tensor(matrix, dtype=torch.float32)
    return lambda u: matrix[u].clone()


# --------------------------------------------------------------------- hand cases
def _hand_data():
    # 3 users, 6 items. train: u0 {0}, u1 {5}, u2 {0}; test: u0 {1, 3}, u1 {2}; u2 none
    train = torch.tensor([[0, 1, 2], [0, 5, 0]])
    test = torch.tensor([[0, 0, 1], [1, 3, 2]])
    valid = torch.tensor([[2], [4]])
    return build_hetero(3, 6, train, valid, test)


HAND_SCORES = [[10, 9, 8, 7, 6, 5],      # item 0 (train) masked -> ranking 1,2,3,4,5
               [1, 2, 3, 4, 5, 6],       # item 5 (train) masked -> ranking 4,3,2,1,0
               [0, 0, 0, 0, 0, 0]]


def test_hand_computed_metrics():
    ev = Evaluator(_hand_data(), ks=(1, 2, 3), batch_size=1)
    res = ev.evaluate(_score_fn(HAND_SCORES), split="test")
    assert ev.num_eval_users("test") == 2      # u2 has no test items: skipped
    # u0: held-out {1, 3}, hits at ranks 1 and 3.  u1: held-out {2}, hit at rank 3.
    l3 = 1 / math.log2(3)                    # 0.6309298
    expected = {
        # K=1: u0 recall 1/2 prec 1 ndcg 1 map 1; u1 all 0
        "recall@1": 0.25, "precision@1": 0.5, "ndcg@1": 0.5, "map@1": 0.5,
        # K=2: u0 recall 1/2, prec 1/2, ndcg 1/(1+l3)=0.6131472, map 1/min(2,2)=0.5; u1 0
        "recall@2": 0.25, "precision@2": 0.25, "ndcg@2": 0.5 / (1 + l3), "map@2": 0.25,
        # K=3: u0 recall 1, prec 2/3, ndcg (1+1/2)/(1+l3)=0.9197208, map (1+2/3)/2=0.8333333
        #      u1 recall 1, prec 1/3, ndcg (1/2)/1=0.5,               map (1/3)/1=0.3333333
        "recall@3": 1.0, "precision@3": 0.5, "ndcg@3": (1.5 / (1 + l3) + 0.5) / 2,
        "map@3": (5 / 6 + 1 / 3) / 2,
    }
    assert set(res) == set(expected)
    for k, v in expected.items():
        assert res[k] == pytest.approx(v, abs=1e-9), k
    assert res["ndcg@2"] == pytest.approx(0.3065736, abs=1e-7)
    assert res["ndcg@3"] == pytest.approx(0.7098604, abs=1e-7)
    assert res["map@3"] == pytest.approx(0.5833333, abs=1e-7)
    # valid split: only u2 (held-out {4}); its train item 0 is masked; ties among
    # zeros are broken by topk, so rank the valid item first explicitly
    s = torch.zeros(3, 6)
    s[2, 0], s[2, 4] = 5.0, 1.0
    rv = ev.evaluate(_score_fn(s), split="valid")
    assert rv["recall@1"] == 1.0 and rv["ndcg@1"] == 1.0 and rv["precision@3"] == pytest.approx(1 / 3)


def test_metric_subset_and_keys():
    ev = Evaluator(_hand_data(), ks=(2,), metrics=("ndcg", "recall"))
    res = ev.evaluate(_score_fn(HAND_SCORES), split="test")
    assert list(res) == ["ndcg@2", "recall@2"]
    with pytest.raises(ValueError, match="unknown metric"):
        Evaluator(_hand_data(), ks=(2,), metrics=("auc",))


def test_k_larger_than_items_raises():
    with pytest.raises(ValueError, match="larger than the number of items"):
        Evaluator(_hand_data(), ks=(10,))
    with pytest.raises(ValueError):
        Evaluator(_hand_data(), ks=(0,))


# ------------------------------------------------------------- naive reference
def _naive(scores, train, heldout, ks, cold=None):
    """Loop implementation of MMRec's metrics (one user at a time)."""
    scores = np.asarray(scores, dtype=np.float64)
    n_items = scores.shape[1]
    tr = {}
    for u, i in train.t().tolist():
        tr.setdefault(u, set()).add(i)
    ho = {}
    for u, i in heldout.t().tolist():
        if cold is None or cold[i]:
            ho.setdefault(u, set()).add(i)
    sums = {f"{m}@{k}": 0.0 for m in ("recall", "ndcg", "precision", "map") for k in ks}
    n = 0
    for u in sorted(ho):
        gt = ho[u]
        masked = set(tr.get(u, set()))
        if cold is not None:
            masked |= {i for i in range(n_items) if not cold[i]}
        s = scores[u].copy()
        for i in masked:
            s[i] = -np.inf
        order = np.argsort(-s, kind="stable")
        n += 1
        for k in ks:
            rel = [1.0 if (i in gt and i not in masked) else 0.0 for i in order[:k]]
            hits = sum(rel)
            dcg = sum(r / math.log2(j + 2) for j, r in enumerate(rel))
            idcg = sum(1 / math.log2(j + 2) for j in range(min(len(gt), k)))
            ap, h = 0.0, 0
            for j, r in enumerate(rel):
                if r:
                    h += 1
                    ap += h / (j + 1)
            sums[f"recall@{k}"] += hits / len(gt)
            sums[f"precision@{k}"] += hits / k
            sums[f"ndcg@{k}"] += dcg / idcg
            sums[f"map@{k}"] += ap / min(len(gt), k)
    return {k: v / max(n, 1) for k, v in sums.items()}


def _random_data(n_users=40, n_items=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    train = torch.stack([torch.randint(n_users, (300,), generator=g),
                         torch.randint(n_items, (300,), generator=g)])
    test = torch.stack([torch.randint(n_users - 5, (80,), generator=g),   # last users: none
                        torch.randint(n_items, (80,), generator=g)])
    valid = torch.stack([torch.randint(n_users, (60,), generator=g),
                         torch.randint(n_items, (60,), generator=g)])
    return build_hetero(n_users, n_items, train, valid, test)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_naive_reference(seed):
    data = _random_data(seed=seed)
    scores = torch.rand(40, 30, generator=torch.Generator().manual_seed(100 + seed))
    ks = (1, 3, 5, 10, 20, 30)
    ev = Evaluator(data, ks=ks, batch_size=7)
    for split in ("valid", "test"):
        got = ev.evaluate(_score_fn(scores), split=split)
        ref = _naive(scores, split_edge_index(data, "train"), split_edge_index(data, split), ks)
        for k in ref:
            assert got[k] == pytest.approx(ref[k], abs=1e-9), (split, k)


def test_one_batch_of_scores_alive_at_a_time():
    """The [B, I] scores of a batch are freed before the next batch is scored (the
    evaluation's peak memory is one score matrix, not two), per_user too."""
    import weakref
    data = _random_data()
    scores = torch.rand(40, 30, generator=torch.Generator().manual_seed(7))
    ev = Evaluator(data, ks=(5,), batch_size=7)
    last, calls = [None], []

    def score(u):
        calls.append(last[0] is None or last[0]() is None)
        out = scores[u].clone()
        last[0] = weakref.ref(out)
        return out
    for split in ("valid", "test"):
        ev.evaluate(score, split=split)
        ev.evaluate_per_user(score, split=split)
        last[0] = None
    assert len(calls) > 8 and all(calls)


def test_masking_training_item_never_ranked():
    # user 0's training item 2 has by far the highest score; held-out item 4 is second
    data = build_hetero(1, 5, torch.tensor([[0], [2]]), test=torch.tensor([[0], [4]]))
    scores = torch.tensor([[0.1, 0.2, 100.0, 0.3, 50.0]])
    res = Evaluator(data, ks=(1, 2)).evaluate(_score_fn(scores), split="test")
    assert res["recall@1"] == 1.0 and res["ndcg@1"] == 1.0 and res["precision@2"] == 0.5


def test_all_items_seen_and_empty_split_do_not_crash():
    # user 0 has trained on every item; its test item duplicates a train pair
    train = torch.tensor([[0, 0, 0, 1], [0, 1, 2, 0]])
    test = torch.tensor([[0, 1], [1, 2]])
    data = build_hetero(2, 3, train, torch.empty(2, 0, dtype=torch.long), test)
    ev = Evaluator(data, ks=(1, 3))
    scores = torch.tensor([[3.0, 2.0, 1.0], [0.0, 1.0, 2.0]])
    res = ev.evaluate(_score_fn(scores), split="test")
    # u0: every item masked -> 0 everywhere (counted in the mean); u1: item 2 at rank 1
    assert res["recall@1"] == 0.5 and res["ndcg@3"] == 0.5 and res["map@1"] == 0.5
    ref = _naive(scores, train, test, (1, 3))
    for k in ref:
        assert res[k] == pytest.approx(ref[k])
    empty = ev.evaluate(_score_fn(scores), split="valid")
    assert empty == {k: 0.0 for k in ev.keys()}


def test_score_fn_shape_checked():
    ev = Evaluator(_hand_data(), ks=(1,))
    with pytest.raises(ValueError, match="score_fn must return"):
        ev.evaluate(lambda u: torch.zeros(u.numel(), 5), split="test")


# -------------------------------------------------------------- model helpers
class FixedModel(Recommender):
    def __init__(self, data, user, item):
        super().__init__(data)
        self.u = torch.nn.Parameter(user)
        self.i = torch.nn.Parameter(item)
        self.forward_calls = 0

    def forward(self):
        self.forward_calls += 1
        assert not torch.is_grad_enabled()
        return Embeddings(self.u, self.i)


def _fixed_model(data, seed=0, dim=4):
    g = torch.Generator().manual_seed(seed)
    return FixedModel(data, torch.randn(data["user"].num_nodes, dim, generator=g),
                      torch.randn(data["item"].num_nodes, dim, generator=g))


def test_evaluate_model_and_restores_mode():
    data = _random_data(seed=4)
    model = _fixed_model(data)
    model.train()
    res = evaluate(model, data, split="test", ks=(5, 10), batch_size=8)
    assert model.training and model.forward_calls == 1
    scores = (model.u @ model.i.t()).detach()
    ref = _naive(scores, split_edge_index(data, "train"), split_edge_index(data, "test"), (5, 10))
    for k in ref:
        assert res[k] == pytest.approx(ref[k], abs=1e-9)
    model.eval()
    evaluate(model, data, split="valid", ks=(5,))
    assert not model.training


def test_recommend_excludes_train_items():
    data = _random_data(seed=5)
    model = _fixed_model(data, seed=1)
    users = torch.arange(40)
    items, scores = recommend(model, data, users, k=5)
    assert items.shape == (40, 5) and scores.shape == (40, 5)
    train = split_edge_index(data, "train")
    seen = set(map(tuple, train.t().tolist()))
    for u, row in zip(users.tolist(), items.tolist()):
        assert not any((u, i) in seen for i in row)
    full = (model.u @ model.i.t()).detach()
    assert torch.allclose(scores, full.gather(1, items))
    assert bool((scores[:, :-1] >= scores[:, 1:]).all())
    # best unseen item equals a naive argmax
    for u in range(40):
        s = full[u].clone()
        s[[i for (v, i) in seen if v == u]] = -float("inf")
        assert items[u, 0].item() == int(s.argmax())
    with pytest.raises(ValueError):
        recommend(model, data, users, k=31)


# ------------------------------------------------------------------- cold start
def test_cold_start_hand_case():
    # items 3, 4 have no training interaction (cold)
    train = torch.tensor([[0, 0, 1, 1, 2], [0, 1, 1, 2, 0]])
    test = torch.tensor([[0, 0, 1, 2], [3, 2, 4, 0]])
    data = build_hetero(3, 5, train, None, test)
    ev = Evaluator(data, ks=(1, 2))
    assert ev.cold_items.tolist() == [False, False, False, True, True]
    scores = torch.tensor([[9.0, 8.0, 7.0, 1.0, 2.0],     # cold ranking: 4, 3 -> hit at rank 2
                           [0.0, 0.0, 0.0, 5.0, 4.0],     # cold ranking: 3, 4 -> hit at rank 2
                           [1.0, 1.0, 1.0, 1.0, 1.0]])    # u2: no cold held-out -> skipped
    res = ev.evaluate(_score_fn(scores), split="test", cold_start=True)
    assert ev.num_eval_users("test", cold_start=True) == 2
    assert res["recall@1"] == 0.0 and res["recall@2"] == 1.0
    assert res["ndcg@2"] == pytest.approx(1 / math.log2(3))
    assert res["precision@2"] == 0.5 and res["map@2"] == 0.5
    ref = _naive(scores, train, test, (1, 2), cold=ev.cold_items.tolist())
    for k in ref:
        assert res[k] == pytest.approx(ref[k])


def test_cold_start_split_properties_and_eval():
    data = _random_data(n_users=40, n_items=30, seed=6)
    cs = cold_start_split(data, fraction=0.2, seed=0)
    tr0 = split_edge_index(data, "train")
    tr = split_edge_index(cs, "train")
    te = split_edge_index(cs, "test")
    va = split_edge_index(cs, "valid")
    item_deg = torch.bincount(tr[1], minlength=30)
    old_deg = torch.bincount(tr0[1], minlength=30)
    cold = (item_deg == 0) & (old_deg > 0)            # newly cold
    assert 1 <= int(cold.sum()) <= 6
    # every user who had a training item keeps one
    had = torch.bincount(tr0[0], minlength=40) > 0
    has = torch.bincount(tr[0], minlength=40) > 0
    assert bool((has | ~had).all())
    # cold items' train and valid interactions are in test; valid has no cold item
    tset = set(map(tuple, te.t().tolist()))
    va0 = split_edge_index(data, "valid")
    moved = [p for e in (tr0, va0) for p in map(tuple, e.t().tolist()) if cold[p[1]]]
    assert moved and all(p in tset for p in moved)
    assert not cold[va[1]].any()
    assert set(map(tuple, split_edge_index(data, "test").t().tolist())) <= tset
    assert tr.size(1) + va.size(1) + len(tset) <= tr0.size(1) + va0.size(1) + 80
    rev = cs["item", "rev_interacts", "user"].edge_index
    assert torch.equal(rev, tr.flip(0))
    # deterministic
    cs2 = cold_start_split(data, fraction=0.2, seed=0)
    assert torch.equal(split_edge_index(cs2, "train"), tr)
    # cold-start evaluation equals the naive reference restricted to cold items
    scores = torch.rand(40, 30, generator=torch.Generator().manual_seed(9))
    ev = Evaluator(cs, ks=(1, 5, 10), batch_size=6)
    got = ev.evaluate(_score_fn(scores), split="test", cold_start=True)
    ref = _naive(scores, tr, te, (1, 5, 10), cold=ev.cold_items.tolist())
    for k in ref:
        assert got[k] == pytest.approx(ref[k], abs=1e-9)
    assert ev.num_eval_users("test", cold_start=True) > 0
    with pytest.raises(ValueError):
        cold_start_split(data, fraction=1.0)


def test_cold_start_split_protects_single_item_users():
    # user 0's only item is 0, user 1's only item is 1: neither may become cold
    train = torch.tensor([[0, 1, 2, 2, 2], [0, 1, 2, 3, 4]])
    data = build_hetero(3, 5, train, None, torch.tensor([[2], [0]]))
    cs = cold_start_split(data, fraction=0.8, seed=1)
    deg = torch.bincount(split_edge_index(cs, "train")[1], minlength=5)
    assert deg[0] > 0 and deg[1] > 0
    assert bool((torch.bincount(split_edge_index(cs, "train")[0], minlength=3) > 0).all())
    # user 2 keeps at least one of items 2..4; the others may be cold
    assert int((deg[2:] == 0).sum()) == 2


@requires_cuda
def test_cuda_matches_cpu():
    data = _random_data(seed=7)
    scores = torch.rand(40, 30, generator=torch.Generator().manual_seed(3))
    ev = Evaluator(data, ks=(5, 10), batch_size=9)
    cpu = ev.evaluate(_score_fn(scores), split="test")
    gpu_scores = scores.cuda()
    seen = []

    def fn(u):
        seen.append(u.device.type)
        return gpu_scores[u].clone()

    gpu = ev.evaluate(fn, split="test")
    assert seen[0] == "cpu" and all(d == "cuda" for d in seen[1:])
    for k in cpu:
        assert gpu[k] == pytest.approx(cpu[k], abs=1e-9)
    cold = ev.evaluate(fn, split="valid", cold_start=True, device="cuda")
    assert set(cold) == set(cpu)
