"""Graph builders: bipartite adjacency, interaction matrix, kNN, co-occurrence, interest."""
import math

import pytest
import torch
from oracles import dense_interactions, dense_norm_adj

from mmgraph.data.hetero import INTERACTS, build_hetero
from mmgraph.graph import (SparseAdj, bipartite_adjacency, bipartite_adjacency_from_edges,
                           bipartite_gcn_norm, cooccurrence_graph, cooccurrence_topk,
                           interaction_matrix, knn_graph, knn_topk, modality_knn_graph,
                           prune_edges_by_degree, user_interest_graph, user_profiles)


# ------------------------------------------------------------------ helpers
def random_bipartite(n_users=9, n_items=7, n_edges=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randint(0, n_users - 1, (n_edges,), generator=g)  # last user isolated
    i = torch.randint(0, n_items - 1, (n_edges,), generator=g)  # last item isolated
    return torch.stack([u, i])


def make_data(n_users=9, n_items=7, seed=0, feats=None):
    ei = random_bipartite(n_users, n_items, seed=seed)
    return build_hetero(n_users, n_items, ei, features=feats)


def ref_topk(x, k, include_self=True):
    """Brute force: dense cosine, stable sort (ties -> lower index)."""
    xn = x / x.norm(dim=1, keepdim=True).clamp_min(1e-30)
    xn = torch.where(x.norm(dim=1, keepdim=True) > 0, xn, torch.zeros_like(xn))
    sim = xn @ xn.t()
    if not include_self:
        sim.fill_diagonal_(float("-inf"))
    order = torch.sort(-sim, dim=1, stable=True).indices[:, :k]
    return sim.gather(1, order), order


# ------------------------------------------------------------- bipartite
def test_bipartite_adjacency_equals_dense_formula():
    data = make_data()
    ei = data[INTERACTS].edge_index
    ei_dup = torch.cat([ei, ei[:, :5]], 1)  # duplicates count once
    adj = bipartite_adjacency_from_edges(ei_dup, 9, 7)
    assert adj.symmetric and adj.size == (16, 16)
    torch.testing.assert_close(adj.to_dense().double(),
                               dense_norm_adj(ei, 9, 7, dtype=torch.float64), atol=1e-6,
                               rtol=1e-6)
    assert adj.to_dense()[8].abs().sum() == 0 and adj.to_dense()[15].abs().sum() == 0
    assert adj.is_symmetric()
    torch.testing.assert_close(bipartite_adjacency(data).to_dense(), adj.to_dense())


def test_bipartite_adjacency_weighted():
    ei = random_bipartite(seed=3)
    w = torch.rand(ei.size(1)) + 0.5
    adj = bipartite_adjacency_from_edges(ei, 9, 7, edge_weight=w)
    torch.testing.assert_close(adj.to_dense().double(),
                               dense_norm_adj(ei, 9, 7, w, dtype=torch.float64), atol=1e-6,
                               rtol=1e-6)


def test_bipartite_adjacency_cache_and_invalidation():
    data = make_data(seed=1)
    a1 = bipartite_adjacency(data)
    assert bipartite_adjacency(data) is a1
    # in-place modification invalidates
    data[INTERACTS].edge_index[1, 0] = 6
    a2 = bipartite_adjacency(data)
    assert a2 is not a1
    torch.testing.assert_close(a2.to_dense().double(),
                               dense_norm_adj(data[INTERACTS].edge_index, 9, 7,
                                              dtype=torch.float64), atol=1e-6, rtol=1e-6)
    # replacing the tensor invalidates
    data[INTERACTS].edge_index = random_bipartite(seed=2)
    a3 = bipartite_adjacency(data)
    assert a3 is not a2
    torch.testing.assert_close(a3.to_dense().double(),
                               dense_norm_adj(data[INTERACTS].edge_index, 9, 7,
                                              dtype=torch.float64), atol=1e-6, rtol=1e-6)
    assert bipartite_adjacency(data, cache=False) is not a3


def test_bipartite_errors():
    with pytest.raises(ValueError, match="out of range"):
        bipartite_adjacency_from_edges(torch.tensor([[0], [7]]), 9, 7)
    with pytest.raises(ValueError, match=r"\[2, E\]"):
        bipartite_adjacency_from_edges(torch.tensor([0, 1]), 9, 7)


def test_interaction_matrix_normalisations():
    data = make_data(seed=4)
    ei = data[INTERACTS].edge_index
    r = dense_interactions(ei, 9, 7, dtype=torch.float64)
    torch.testing.assert_close(interaction_matrix(data).to_dense().double(), r)
    du, di = r.sum(1, keepdim=True), r.sum(0, keepdim=True)
    row = torch.where(du > 0, r / du.clamp_min(1), torch.zeros_like(r))
    torch.testing.assert_close(interaction_matrix(data, "row").to_dense().double(), row,
                               atol=1e-6, rtol=1e-6)
    sym = r / (du.clamp_min(1).sqrt() * di.clamp_min(1).sqrt())
    rs = interaction_matrix(data, "sym")
    torch.testing.assert_close(rs.to_dense().double(), sym, atol=1e-6, rtol=1e-6)
    # 'sym' is the off-diagonal block of the LightGCN adjacency
    torch.testing.assert_close(rs.to_dense(), bipartite_adjacency(data).to_dense()[:9, 9:])
    with pytest.raises(ValueError, match="normalization"):
        interaction_matrix(data, "bad")


def test_bipartite_gcn_norm_matches_adjacency():
    ei = torch.unique(random_bipartite(seed=5), dim=1)
    w = bipartite_gcn_norm(ei, 9, 7)
    dense = dense_norm_adj(ei, 9, 7, dtype=torch.float64)
    torch.testing.assert_close(w.double(), dense[ei[0], ei[1] + 9], atol=1e-6, rtol=1e-6)


def test_prune_edges_by_degree():
    ei = torch.unique(random_bipartite(20, 15, 120, seed=6), dim=1)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    kept = prune_edges_by_degree(ei, 20, 15, 0.7, generator=g1)
    assert kept.size(1) == round(0.7 * ei.size(1))
    assert torch.equal(kept, prune_edges_by_degree(ei, 20, 15, 0.7, generator=g2))
    keys = set((ei[0] * 15 + ei[1]).tolist())
    assert set((kept[0] * 15 + kept[1]).tolist()) <= keys
    adj = bipartite_adjacency_from_edges(kept, 20, 15)
    torch.testing.assert_close(adj.to_dense().double(),
                               dense_norm_adj(kept, 20, 15, dtype=torch.float64), atol=1e-6,
                               rtol=1e-6)
    with pytest.raises(ValueError, match="keep_ratio"):
        prune_edges_by_degree(ei, 20, 15, 0.0)


# ------------------------------------------------------------------- kNN
@pytest.mark.parametrize("chunk", [1, 3, 7, 16, None])
@pytest.mark.parametrize("include_self", [True, False])
def test_knn_topk_equals_brute_force(chunk, include_self):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(23, 6, generator=g)
    for copy in (True, False):
        v, i = knn_topk(x, 5, chunk_size=chunk, include_self=include_self, normalized_copy=copy)
        rv, ri = ref_topk(x, 5, include_self)
        assert torch.equal(i, ri)
        torch.testing.assert_close(v, rv, atol=1e-5, rtol=1e-5)
    if include_self:
        assert torch.equal(i[:, 0], torch.arange(23))  # own nearest neighbour


@pytest.mark.parametrize("chunk", [2, 5, 11, None])
def test_knn_ties_are_broken_by_lower_index(chunk):
    # one-hot-like rows (exact cosines 0/1), duplicates and zero rows -> many ties
    cls = torch.tensor([0, 1, 0, 2, 1, 0, 3, 3, 0, 1, 2])
    x = torch.nn.functional.one_hot(cls, 5).float() * torch.arange(1, 12).float()[:, None]
    x[9] = 0.0  # zero row: similarity 0 with everything
    for include_self in (True, False):
        for k in (1, 2, 3, 4, 6):
            v, i = knn_topk(x, k, chunk_size=chunk, include_self=include_self)
            rv, ri = ref_topk(x, k, include_self)
            assert torch.equal(i, ri), (k, include_self)
            torch.testing.assert_close(v, rv)
    v, i = knn_topk(x, 3, chunk_size=chunk)
    assert i[0].tolist() == [0, 2, 5]   # class 0: 0, 2, 5, 8 -> lowest ids first
    assert i[8].tolist() == [0, 2, 5]   # self (8) is tied with 0, 2, 5: lower ids win
    assert i[9].tolist() == [0, 1, 2]   # zero row: all ties at 0


@pytest.mark.parametrize("chunk", [64, 250, None])
def test_knn_block_prefilter_equals_brute_force(chunk, monkeypatch):
    # force the block-max prefilter (n / 32 blocks >= 2 (k + 1)), with a ragged tail
    import mmgraph.graph.knn as knn_mod
    monkeypatch.setattr(knn_mod, "PREFILTER_MIN_RATIO", 2)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(611, 8, generator=g)
    x[300:340] = x[5]          # duplicates -> exact ties across blocks
    x[600:] = x[610]           # ties in the ragged tail
    for include_self in (True, False):
        for k in (1, 3, 7):
            v, i = knn_topk(x, k, chunk_size=chunk, include_self=include_self)
            rv, ri = ref_topk(x, k, include_self)
            assert torch.equal(i, ri), (k, include_self)
            torch.testing.assert_close(v, rv, atol=1e-5, rtol=1e-5)


def test_knn_k_clamped_and_errors():
    x = torch.randn(4, 3)
    v, i = knn_topk(x, 10)
    assert i.shape == (4, 4)
    v, i = knn_topk(x, 10, include_self=False)
    assert i.shape == (4, 3) and not (i == torch.arange(4)[:, None]).any()
    with pytest.raises(ValueError, match="NaN"):
        knn_topk(torch.tensor([[float("nan"), 1.0], [1.0, 0.0]]), 1)
    with pytest.raises(ValueError, match="k must be"):
        knn_topk(x, 0)
    with pytest.raises(ValueError, match="normalization"):
        knn_graph(x, 2, normalization="bad")


def test_knn_graph_normalisations():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(15, 8, generator=g)  # non-negative -> positive similarities
    k = 4
    ei, w = knn_graph(x, k)  # binary + sym: every row sums to k -> 1/k
    assert ei.shape == (2, 15 * k)
    torch.testing.assert_close(w, torch.full_like(w, 1.0 / k))
    assert torch.equal(ei[0], torch.arange(15).repeat_interleave(k))
    # weighted 'sym' = D^-1/2 S D^-1/2 with row-sum degrees, S = kNN similarities
    v, idx = knn_topk(x, k)
    s = torch.zeros(15, 15)
    s.scatter_(1, idx, v)
    d = s.sum(1)
    ref = s / (d[:, None].sqrt() * d[None, :].sqrt())
    ei, w = knn_graph(x, k, weighted=True)
    dense = torch.zeros(15, 15)
    dense[ei[0], ei[1]] = w
    torch.testing.assert_close(dense, ref)
    ei, w = knn_graph(x, k, normalization="rw", weighted=True)
    a = SparseAdj.from_edge_index(ei, w, 15)
    torch.testing.assert_close(a.sum(1), torch.ones(15))
    ei, w = knn_graph(x, k, normalization=None, weighted=True)
    torch.testing.assert_close(w, v.reshape(-1))


def test_modality_knn_graph_store_mix_and_cache():
    g = torch.Generator().manual_seed(2)
    feats = {"image": torch.rand(7, 12, generator=g), "text": torch.randn(7, 5, generator=g)}
    data = make_data(feats=feats)
    a_img = modality_knn_graph(data, "image", k=3)
    assert a_img.size == (7, 7)
    assert ("item", "similar_image", "item") in data.edge_types
    st = data["item", "similar_image", "item"]
    back = SparseAdj.from_edge_index(st.edge_index, st.edge_weight, 7)
    torch.testing.assert_close(back.to_dense(), a_img.to_dense())
    ei, w = knn_graph(feats["image"], 3)
    torch.testing.assert_close(a_img.to_dense(), SparseAdj.from_edge_index(ei, w, 7).to_dense())
    assert modality_knn_graph(data, "image", k=3) is a_img  # cached
    assert modality_knn_graph(data, "image", k=2) is not a_img
    a_txt = modality_knn_graph(data, "text", k=3)
    mix = modality_knn_graph(data, {"image": 0.1, "text": 0.9}, k=3)
    torch.testing.assert_close(mix.to_dense(), 0.1 * a_img.to_dense() + 0.9 * a_txt.to_dense())
    assert ("item", "similar_image_text", "item") in data.edge_types
    with pytest.raises(KeyError, match="audio"):
        modality_knn_graph(data, "audio")
    # features replaced -> rebuilt
    data["item"].x_image = torch.rand(7, 12, generator=g)
    assert modality_knn_graph(data, "image", k=3) is not a_img


# ---------------------------------------------------------- co-occurrence
def hand_data():
    # u0: i0 i1 i2 ; u1: i0 i1 ; u2: i1 i2 ; u3: i3
    ei = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 3], [0, 1, 2, 0, 1, 1, 2, 3]])
    return build_hetero(4, 4, ei)


def test_cooccurrence_hand_computed():
    data = hand_data()
    ei = data[INTERACTS].edge_index
    c, i, m = cooccurrence_topk(ei, 4, 4, "item", k=2)
    assert c.tolist() == [[2, 1], [2, 2], [2, 1], [0, 0]]
    assert i[:3].tolist() == [[1, 2], [0, 2], [1, 0]]
    assert m.tolist() == [[True, True], [True, True], [True, True], [False, False]]
    c, i, m = cooccurrence_topk(ei, 4, 4, "user", k=1)
    assert c[:, 0].tolist() == [2, 2, 2, 0]
    assert i[:3, 0].tolist() == [1, 0, 0]  # u0: tie u1/u2 -> u1
    # count weighting
    a = cooccurrence_graph(data, "item", k=2, weighting="count")
    expected = torch.tensor([[0, 2, 1, 0], [2, 0, 2, 0], [1, 2, 0, 0], [0, 0, 0, 0]]).float()
    torch.testing.assert_close(a.to_dense(), expected)
    # softmax over the kept counts of each row
    a = cooccurrence_graph(data, "item", k=2)
    e = math.e
    torch.testing.assert_close(a.to_dense()[0], torch.tensor([0, e / (e + 1), 1 / (e + 1), 0]))
    torch.testing.assert_close(a.to_dense()[1], torch.tensor([0.5, 0, 0.5, 0]))
    assert a.to_dense()[3].abs().sum() == 0
    st = data["item", "co_occurs", "item"]
    torch.testing.assert_close(SparseAdj.from_edge_index(st.edge_index, st.edge_weight, 4)
                               .to_dense(), a.to_dense())

    u = cooccurrence_graph(data, "user", k=2, weighting="count")
    expected = torch.tensor([[0, 2, 2, 0], [2, 0, 1, 0], [2, 1, 0, 0], [0, 0, 0, 0]]).float()
    torch.testing.assert_close(u.to_dense(), expected)
    assert ("user", "co_occurs", "user") in data.edge_types


def test_cooccurrence_fill_repeat_is_rearms_topk_sample():
    # items: i0 ~ {i1: 2, i2: 1}, i1 ~ {i0: 2, i2: 2}, i2 ~ {i1: 2, i0: 1}, i3: none;
    # item degrees 2, 3, 2, 1
    data = hand_data()
    e = math.e
    a = cooccurrence_graph(data, "item", k=3, fill="repeat", seed=0, store=False).to_dense()
    # short rows: the same neighbours, one of the two repeated once more
    assert a.sum(1).tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0])
    assert (a[0, 1] / a[0, 2]).item() in (pytest.approx(2 * e), pytest.approx(e / 2))
    assert (a[1, 0] / a[1, 2]).item() in (pytest.approx(2.0), pytest.approx(0.5))
    assert a[0, 3] == 0 and a[1, 3] == 0 and a[0, 0] == 0
    # the empty row: the 3 most interacted items (tie i0 / i2 -> i0), softmax(degree / sum)
    w = torch.softmax(torch.tensor([2.0, 3.0, 2.0]) / 7, 0)
    torch.testing.assert_close(a[3], torch.tensor([w[0], w[1], w[2], 0.0]))
    # seeded: the same graph again, while fill='none' leaves the short rows as they were
    again = cooccurrence_graph(data, "item", k=3, fill="repeat", seed=0, store=False, cache=False)
    assert torch.equal(again.to_dense(), a)
    plain = cooccurrence_graph(data, "item", k=3, store=False).to_dense()
    torch.testing.assert_close(plain[0], torch.tensor([0, e / (e + 1), 1 / (e + 1), 0]))
    assert plain[3].abs().sum() == 0
    with pytest.raises(ValueError, match="softmax"):
        cooccurrence_graph(data, "item", k=3, weighting="count", fill="repeat", store=False)
    with pytest.raises(ValueError, match="fill"):
        cooccurrence_graph(data, "item", k=3, fill="pad", store=False)


def test_cooccurrence_fill_repeat_draws_uniformly():
    from mmgraph.graph.cooccurrence import _fill_repeat
    # 4000 rows with 3 of k = 8 nodes: 5 repeats each, uniform over the 3 kept
    n, k = 4000, 8
    counts = torch.zeros(n, k)
    counts[:, :3] = torch.tensor([3.0, 2.0, 1.0])
    idx = torch.arange(k).repeat(n, 1)
    logits, _, mask = _fill_repeat(counts, idx, counts > 0, torch.ones(k), seed=1)
    mult = (logits - counts).exp()[:, :3]                # 1 + repeats of each kept node
    assert torch.equal(mask, counts > 0)
    assert torch.allclose(mult.sum(1), torch.full((n,), float(k)))
    assert (mult.mean(0) - (1 + 5 / 3)).abs().max() < 0.05


@pytest.mark.parametrize("chunk", [1, 4, 9, None])
def test_cooccurrence_equals_dense(chunk):
    ei = random_bipartite(12, 10, 50, seed=7)
    r = dense_interactions(ei, 12, 10)
    for side, cm in (("item", r.t() @ r), ("user", r @ r.t())):
        cm = cm.clone()
        cm.fill_diagonal_(-1)
        n = cm.size(0)
        order = torch.sort(-cm, dim=1, stable=True).indices[:, :3]
        c, i, m = cooccurrence_topk(ei, 12, 10, side, k=3, chunk_size=chunk)
        ref_c = cm.gather(1, order)
        assert torch.equal(m, ref_c > 0)
        assert torch.equal(i[m], order[m])
        torch.testing.assert_close(c[m], ref_c[m])
        assert n == c.size(0)


def test_user_interest_graph():
    g = torch.Generator().manual_seed(3)
    data = make_data(feats={"text": torch.randn(7, 6, generator=g)})
    ei = data[INTERACTS].edge_index
    r = dense_interactions(ei, 9, 7)
    prof = torch.where(r.sum(1, keepdim=True) > 0, r / r.sum(1, keepdim=True).clamp_min(1), r) \
        @ data["item"].x_text
    torch.testing.assert_close(user_profiles(data, "text"), prof, atol=1e-6, rtol=1e-6)
    a = user_interest_graph(data, "text", k=3)
    ei2, w2 = knn_graph(prof, 3)
    torch.testing.assert_close(a.to_dense(), SparseAdj.from_edge_index(ei2, w2, 9).to_dense())
    assert ("user", "similar_interest_text", "user") in data.edge_types
    assert user_interest_graph(data, "text", k=3) is a


# ------------------------------------------------- approximate kNN (faiss)
def clustered_features(n, dim, clusters, noise, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=g)
    labels = torch.randint(0, clusters, (n,), generator=g)
    return centres[labels] + noise * torch.randn(n, dim, generator=g)


def assert_canonical_rows(v, i):
    """Each row by decreasing value, then increasing id."""
    ok = (v[:, :-1] > v[:, 1:]) | ((v[:, :-1] == v[:, 1:]) & (i[:, :-1] < i[:, 1:]))
    assert bool(ok.all())


def true_cosine(x, i):
    xn = torch.nn.functional.normalize(x.double(), dim=1)
    return (xn.unsqueeze(1) * xn[i]).sum(-1)


@pytest.mark.parametrize("include_self", [True, False])
def test_knn_faiss_ivf_recall_values_order(include_self):
    pytest.importorskip("faiss")
    from mmgraph.graph import faiss_nlist
    x = clustered_features(6000, 32, 60, 0.8)
    assert faiss_nlist(6000) >= 2  # large enough for the IVF index
    ev, ei = knn_topk(x, 10, include_self=include_self)
    fv, fi = knn_topk(x, 10, include_self=include_self, method="faiss")
    assert fv.shape == (6000, 10) and fi.shape == (6000, 10)
    assert fv.dtype == x.dtype and fi.dtype == torch.long
    assert bool((fi >= 0).all()) and bool((fi < 6000).all())
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(fi, ei))
    assert hits / ei.numel() >= 0.9
    torch.testing.assert_close(fv.double(), true_cosine(x, fi), atol=1e-5, rtol=0)
    assert_canonical_rows(fv, fi)
    has_self = (fi == torch.arange(6000).unsqueeze(1)).any(1)
    if include_self:
        assert bool(has_self.float().mean() > 0.99)
    else:
        assert not bool(has_self.any())


@pytest.mark.parametrize("include_self", [True, False])
def test_knn_faiss_small_n_is_exact(include_self):
    pytest.importorskip("faiss")
    g = torch.Generator().manual_seed(5)
    x = torch.randn(300, 12, generator=g, dtype=torch.float64)
    x[7] = 0.0  # all-zero row: similarity 0 with everything, lowest ids win
    ev, ei = knn_topk(x, 6, include_self=include_self)
    fv, fi = knn_topk(x, 6, include_self=include_self, method="faiss")
    assert torch.equal(fi, ei)
    assert fv.dtype == torch.float64
    torch.testing.assert_close(fv, ev, atol=1e-5, rtol=0)
    assert torch.equal(fv[7], torch.zeros(6, dtype=torch.float64))
    # k clamped as in the exact path
    v, i = knn_topk(x[:4], 10, include_self=include_self, method="faiss")
    assert i.shape == (4, 4 if include_self else 3)


def test_knn_faiss_completes_rows_with_too_few_candidates(monkeypatch):
    pytest.importorskip("faiss")
    import mmgraph.graph.knn as knn_mod
    calls = []
    exact_rows = knn_mod._exact_rows

    def spy(base, *args, rows=None, **kw):
        calls.append(base.size(0) if rows is None else rows.numel())
        return exact_rows(base, *args, rows=rows, **kw)

    monkeypatch.setattr(knn_mod, "_exact_rows", spy)
    x = clustered_features(4200, 16, 30, 1.0, seed=3)  # 107 lists of ~39 rows
    k = 40
    fv, fi = knn_topk(x, k, include_self=False, method="faiss", nprobe=1)
    assert len(calls) == 1 and 0 < calls[0] < 4200  # some rows, not all, completed exactly
    assert fv.shape == (4200, k) and fi.shape == (4200, k)
    assert bool((fi >= 0).all())
    assert not bool((fi == torch.arange(4200).unsqueeze(1)).any())
    assert all(len(set(r.tolist())) == k for r in fi[:200])
    torch.testing.assert_close(fv.double(), true_cosine(x, fi), atol=1e-5, rtol=0)
    assert_canonical_rows(fv, fi)


def test_knn_faiss_deterministic():
    pytest.importorskip("faiss")
    x = clustered_features(5000, 16, 40, 1.0, seed=4)
    a = knn_topk(x, 8, method="faiss", nprobe=4)
    b = knn_topk(x, 8, method="faiss", nprobe=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_knn_method_errors(monkeypatch):
    import sys
    x = torch.randn(10, 4)
    with pytest.raises(ValueError, match=r"method must be one of \('exact', 'faiss'\), got 'annoy'"):
        knn_topk(x, 3, method="annoy")
    with pytest.raises(ValueError, match="nprobe"):
        knn_topk(x, 3, method="faiss", nprobe=0)
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss fails
    with pytest.raises(ImportError, match=r"pip install 'mmgraph\[ann\]'"):
        knn_topk(x, 3, method="faiss")
    with pytest.raises(ImportError, match="faiss-cpu"):
        knn_graph(x, 3, method="faiss")
    knn_topk(x, 3)  # the exact path needs no faiss


def test_modality_knn_graph_faiss_and_freedom():
    pytest.importorskip("faiss")
    g = torch.Generator().manual_seed(2)
    feats = {"image": torch.rand(7, 12, generator=g), "text": torch.randn(7, 5, generator=g)}
    data = make_data(feats=feats)
    exact = modality_knn_graph(data, {"image": 0.1, "text": 0.9}, k=3)
    approx = modality_knn_graph(data, {"image": 0.1, "text": 0.9}, k=3, method="faiss")
    assert approx is not exact  # method is part of the cache key
    assert modality_knn_graph(data, "image", k=3, method="faiss") is not \
        modality_knn_graph(data, "image", k=3)
    assert modality_knn_graph(data, "image", k=3, method="faiss") is \
        modality_knn_graph(data, "image", k=3, method="faiss")
    assert modality_knn_graph(data, "image", k=3, method="faiss", nprobe=2) is not \
        modality_knn_graph(data, "image", k=3, method="faiss")
    torch.testing.assert_close(approx.to_dense(), exact.to_dense())  # small n: exact index

    from mmgraph.data import load_dataset
    from mmgraph.models import FREEDOM, FREEDOMConfig
    data = load_dataset("synthetic:tiny")
    m_faiss = FREEDOM(data, FREEDOMConfig(knn_k=5, knn_method="faiss"))
    m_exact = FREEDOM(data, FREEDOMConfig(knn_k=5))
    a, b = m_faiss.graph("item_adj"), m_exact.graph("item_adj")
    assert a is not b and a.size == b.size == (200, 200)
    torch.testing.assert_close(a.to_dense(), b.to_dense(), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="knn_method must be one of"):
        FREEDOMConfig(knn_method="hnsw")


def test_knn_build_progress_only_on_a_terminal(monkeypatch):
    """A long kNN build shows a bar on a terminal's stderr; logs and pipes get nothing."""
    import io
    import sys

    import mmgraph.graph.knn as knn

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.setattr(knn, "_PROGRESS_DELAY", 0.0)      # "long" from the start
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    for stream, shown in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        vals, idx = knn.knn_topk(x, 5, chunk_size=7)
        assert ("kNN graph (50 rows)" in stream.getvalue()) is shown
        assert torch.equal(idx, knn.knn_topk(x, 5)[1])
