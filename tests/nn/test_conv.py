"""LightGCNConv / LightGCNEncoder / ItemItemConv: parity with dense formulas and PyG's LGConv."""
import pytest
import torch
from oracles import dense_norm_adj
from torch_geometric.nn import LGConv

from mmgraph.backend import has_torch_sparse
from mmgraph.data.hetero import build_hetero
from mmgraph.graph import (SparseAdj, bipartite_adjacency, bipartite_adjacency_from_edges,
                           bipartite_gcn_norm, interaction_matrix, knn_graph)
from mmgraph.nn import ItemItemConv, LightGCNConv, LightGCNEncoder
from marks import requires_cuda, requires_torch_sparse

U, I, D = 11, 8, 5


def bipartite_edges(seed=0, n_edges=40):
    g = torch.Generator().manual_seed(seed)
    ei = torch.stack([torch.randint(0, U, (n_edges,), generator=g),
                      torch.randint(0, I, (n_edges,), generator=g)])
    return torch.unique(ei, dim=1)  # duplicate-free (LGConv would count duplicates twice)


def homogeneous(ei):
    return torch.cat([torch.stack([ei[0], ei[1] + U]), torch.stack([ei[1] + U, ei[0]])], 1)


def feats(seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(U, D, generator=g, dtype=dtype), torch.randn(I, D, generator=g, dtype=dtype))


# ------------------------------------------------------------------ conv
def test_conv_matches_lgconv_on_homogeneous_edge_index():
    ei = homogeneous(bipartite_edges())
    x = torch.randn(U + I, D)
    torch.testing.assert_close(LightGCNConv()(x, ei), LGConv()(x, ei))
    w = torch.rand(ei.size(1)) + 0.1
    torch.testing.assert_close(LightGCNConv()(x, ei, w), LGConv()(x, ei, w))
    torch.testing.assert_close(LightGCNConv(normalize=False)(x, ei, w),
                               LGConv(normalize=False)(x, ei, w))


def test_conv_sparse_adj_matches_lgconv_and_dense():
    ei = bipartite_edges(seed=2)
    adj = bipartite_adjacency_from_edges(ei, U, I)
    x = torch.randn(U + I, D)
    out = LightGCNConv()(x, adj)
    torch.testing.assert_close(out, LGConv()(x, homogeneous(ei)))
    ref = dense_norm_adj(ei, U, I, dtype=torch.float64) @ x.double()
    torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=1e-6)
    # torch.sparse adj_t goes through MessagePassing.propagate's fused path
    out2 = LightGCNConv()(x, adj.to_torch_sparse())
    torch.testing.assert_close(out2, out)


def test_conv_bipartite_both_directions():
    ei = bipartite_edges(seed=3)
    xu, xi = feats()
    a = dense_norm_adj(ei, U, I, dtype=torch.float64)
    r_hat = a[:U, U:]  # [U, I]
    w = bipartite_gcn_norm(ei, U, I)
    conv = LightGCNConv(normalize=False)
    item_new = conv((xu, xi), ei, w)
    user_new = conv((xi, xu), ei.flip(0), w)
    torch.testing.assert_close(item_new.double(), r_hat.t() @ xu.double(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(user_new.double(), r_hat @ xi.double(), atol=1e-6, rtol=1e-6)
    # normalize=True computes the same weights; x_dst may be None with explicit size
    torch.testing.assert_close(LightGCNConv()((xu, xi), ei), item_new)
    torch.testing.assert_close(LightGCNConv()((xu, None), ei, size=(U, I)), item_new)
    # SparseAdj [I, U] on the bipartite pair
    r = interaction_matrix(build_hetero(U, I, ei), "sym")
    torch.testing.assert_close(LightGCNConv()((xu, xi), r.t()), item_new)
    # weighted edges
    ew = torch.rand(ei.size(1)) + 0.5
    wn = bipartite_gcn_norm(ei, U, I, ew)
    dw = torch.zeros(U, I, dtype=torch.float64)
    dw[ei[0], ei[1]] = ew.double()
    ref = (dw / (dw.sum(1, keepdim=True).clamp_min(1e-12).sqrt()
                 * dw.sum(0, keepdim=True).clamp_min(1e-12).sqrt())).t() @ xu.double()
    torch.testing.assert_close(LightGCNConv()((xu, xi), ei, ew).double(), ref, atol=1e-6,
                               rtol=1e-6)

    torch.testing.assert_close(conv((xu, xi), ei, wn), LightGCNConv()((xu, xi), ei, ew))


# --------------------------------------------------------------- encoder
def dense_encoder(xu, xi, a, layers, weights=None):
    h = torch.cat([xu, xi]).double()
    hs = [h]
    for _ in range(layers):
        h = a @ h
        hs.append(h)
    if weights is None:
        out = torch.stack(hs).mean(0)
    else:
        out = sum(w * x for w, x in zip(weights, hs))
    return out[:U], out[U:]


@pytest.mark.parametrize("layers", [0, 1, 2, 4])
def test_encoder_equals_dense_formula_all_graph_inputs(layers):
    ei = bipartite_edges(seed=4)
    data = build_hetero(U, I, ei)
    xu, xi = feats()
    ru, ri = dense_encoder(xu, xi, dense_norm_adj(ei, U, I, dtype=torch.float64), layers)
    enc = LightGCNEncoder(layers)
    for graph in (bipartite_adjacency(data), interaction_matrix(data, "sym"), data, ei,
                  bipartite_adjacency(data).to_torch_sparse()):
        u, i = enc(xu, xi, graph)
        torch.testing.assert_close(u.double(), ru, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(i.double(), ri, atol=1e-5, rtol=1e-5)


def test_encoder_equals_stacked_lgconv_mean():
    ei = bipartite_edges(seed=5)
    xu, xi = feats(seed=2)
    h = torch.cat([xu, xi])
    hs, conv, hom = [h], LGConv(), homogeneous(ei)
    for _ in range(3):
        h = conv(h, hom)
        hs.append(h)
    ref = torch.stack(hs).mean(0)
    u, i = LightGCNEncoder(3)(xu, xi, bipartite_adjacency_from_edges(ei, U, I))
    torch.testing.assert_close(torch.cat([u, i]), ref)


def test_encoder_readouts_and_layers():
    ei = bipartite_edges(seed=6)
    adj = bipartite_adjacency_from_edges(ei, U, I)
    a = dense_norm_adj(ei, U, I, dtype=torch.float64)
    xu, xi = feats(seed=3)
    for ro, ws in (("sum", [1, 1, 1]), ("last", [0, 0, 1]), ([0.5, 0.3, 0.2], [0.5, 0.3, 0.2])):
        ru, ri = dense_encoder(xu, xi, a, 2, ws)
        for graph in (adj, interaction_matrix(build_hetero(U, I, ei), "sym")):
            u, i = LightGCNEncoder(2, readout=ro)(xu, xi, graph)
            torch.testing.assert_close(u.double(), ru, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(i.double(), ri, atol=1e-5, rtol=1e-5)
    u, i, layers = LightGCNEncoder(2)(xu, xi, adj, return_layers=True)
    assert len(layers) == 3 and layers[0][0] is xu
    h2 = a @ (a @ torch.cat([xu, xi]).double())
    torch.testing.assert_close(torch.cat(layers[2]).double(), h2, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="readout"):
        LightGCNEncoder(2, readout=[1.0, 2.0])
    with pytest.raises(ValueError, match="matches neither"):
        LightGCNEncoder(1)(xu, xi, SparseAdj.from_edge_index(ei, None, (U + 1, U + 1)))


def test_encoder_gradients_match_dense_autograd():
    ei = bipartite_edges(seed=7)
    a = dense_norm_adj(ei, U, I, dtype=torch.float64)
    xu, xi = feats(seed=4, dtype=torch.float64)
    xu.requires_grad_()
    xi.requires_grad_()
    adj = bipartite_adjacency_from_edges(ei, U, I).double()
    u, i = LightGCNEncoder(3)(xu, xi, adj)
    (u.pow(2).sum() + (i * torch.arange(D, dtype=i.dtype)).sum()).backward()
    xu2, xi2 = xu.detach().clone().requires_grad_(), xi.detach().clone().requires_grad_()
    ru, ri = dense_encoder(xu2, xi2, a, 3)
    (ru.pow(2).sum() + (ri * torch.arange(D, dtype=ri.dtype)).sum()).backward()
    torch.testing.assert_close(xu.grad, xu2.grad)
    torch.testing.assert_close(xi.grad, xi2.grad)


def test_encoder_gradcheck_tiny():
    ei = bipartite_edges(seed=8, n_edges=10)
    adj = bipartite_adjacency_from_edges(ei, U, I).double()
    xu, xi = feats(seed=5, dtype=torch.float64)
    xu = xu[:, :2].clone().requires_grad_()
    xi = xi[:, :2].clone().requires_grad_()
    enc = LightGCNEncoder(2)
    assert torch.autograd.gradcheck(lambda a, b: enc(a, b, adj), (xu, xi))


BACKENDS = ["torch", "pyg"] + (["torch_sparse"] if has_torch_sparse() else [])


def test_encoder_backends_agree():
    ei = bipartite_edges(seed=9)
    xu, xi = feats(seed=6)
    ref = None
    for b in BACKENDS:
        adj = bipartite_adjacency_from_edges(ei, U, I, backend=b)
        assert adj.backend == b
        xu_, xi_ = xu.clone().requires_grad_(), xi.clone().requires_grad_()
        u, i = LightGCNEncoder(3)(xu_, xi_, adj)
        (u.sum() + i.square().sum()).backward()
        got = (u.detach(), i.detach(), xu_.grad, xi_.grad)
        if ref is None:
            ref = got
        else:
            for g, r in zip(got, ref):
                torch.testing.assert_close(g, r)


@requires_torch_sparse
def test_encoder_sparse_tensor_input():  # pragma: no cover - optional dependency
    ei = bipartite_edges(seed=10)
    adj = bipartite_adjacency_from_edges(ei, U, I)
    xu, xi = feats()
    u1, i1 = LightGCNEncoder(2)(xu, xi, adj)
    u2, i2 = LightGCNEncoder(2)(xu, xi, adj.to_sparse_tensor())
    torch.testing.assert_close(u1, u2)
    torch.testing.assert_close(i1, i2)


# ------------------------------------------------------------- item-item
def test_item_item_conv():
    g = torch.Generator().manual_seed(11)
    feat = torch.rand(I, 7, generator=g)
    ei, w = knn_graph(feat, 3, weighted=True)
    s = SparseAdj.from_edge_index(ei, w, I)
    sd = s.to_dense().double()
    x = torch.randn(I, D, dtype=torch.float64, requires_grad=True)
    out = ItemItemConv(2)(x, s.double())
    torch.testing.assert_close(out, sd @ (sd @ x))
    mean = ItemItemConv(2, readout="mean")(x, s.double())
    torch.testing.assert_close(mean, (x + sd @ x + sd @ sd @ x) / 3)
    assert torch.autograd.gradcheck(lambda y: ItemItemConv(2)(y, s.double()), (x,))
    # edge_index input in PyG flow (neighbour -> item) gives the same result
    out_ei = ItemItemConv(2)(x, ei.flip(0), w.double())
    torch.testing.assert_close(out_ei, out)
    assert torch.equal(ItemItemConv(0)(x, s.double()), x)


@requires_cuda
def test_encoder_cuda_matches_cpu():  # pragma: no cover - needs a GPU
    ei = bipartite_edges(seed=12)
    adj = bipartite_adjacency_from_edges(ei, U, I)
    xu, xi = feats()
    u, i = LightGCNEncoder(3)(xu, xi, adj)
    uc, ic = LightGCNEncoder(3)(xu.cuda(), xi.cuda(), adj.cuda())
    torch.testing.assert_close(uc.cpu(), u, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ic.cpu(), i, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------- PyG EdgeIndex inputs
def test_conv_on_edge_index_equals_sparse_adj_values_and_gradients(monkeypatch):
    ei = bipartite_edges(seed=13)
    adj = bipartite_adjacency_from_edges(ei, U, I).double()
    x = torch.randn(U + I, D, dtype=torch.float64, requires_grad=True)
    w_ref = adj.value.clone().requires_grad_()           # learned edge weights: grads too
    ref = LightGCNConv()(x, adj.with_value(w_ref))
    (ref * torch.arange(D, dtype=ref.dtype)).sum().backward()
    gx_ref, gw_ref = x.grad.clone(), w_ref.grad.clone()
    conv = LightGCNConv(normalize=False)
    # the target-sorted EdgeIndex takes the fused product, never the per-edge message
    monkeypatch.setattr(conv, "message", lambda *a, **k: pytest.fail("gather/scatter path"))
    e, v = adj.to_edge_index()
    for w in (v.detach().clone(), v.detach().clone().requires_grad_()):
        x.grad = None
        out = conv(x, e, w)
        torch.testing.assert_close(out, ref)
        (out * torch.arange(D, dtype=out.dtype)).sum().backward()
        torch.testing.assert_close(x.grad, gx_ref)
        if w.requires_grad:
            torch.testing.assert_close(w.grad, gw_ref)


def test_conv_on_edge_index_normalizes_like_lgconv_and_other_flows():
    from torch_geometric import EdgeIndex
    ei = bipartite_edges(seed=14)
    hom = homogeneous(ei)
    x = torch.randn(U + I, D)
    ref = LightGCNConv()(x, bipartite_adjacency_from_edges(ei, U, I))
    e = EdgeIndex(hom, sparse_size=(U + I, U + I)).sort_by("col")[0]   # unnormalised ones
    torch.testing.assert_close(LightGCNConv()(x, e), ref)
    torch.testing.assert_close(LightGCNConv()(x, e), LGConv()(x, e))
    # row-sorted / target_to_source EdgeIndex inputs give A @ x as well
    adj = bipartite_adjacency_from_edges(ei, U, I)
    for flow in ("source_to_target", "target_to_source"):
        for conv_flow in ("source_to_target", "target_to_source"):
            e2, w2 = adj.to_edge_index(flow)
            out = LightGCNConv(normalize=False, flow=conv_flow)(x, e2, w2)
            torch.testing.assert_close(out, ref)   # symmetric: every flow is A @ x
    # bipartite pair on the [I, U] interaction matrix's EdgeIndex (user -> item)
    xu, xi = feats()
    r = interaction_matrix(build_hetero(U, I, ei), "sym")       # [U, I]
    er, wr = r.t().to_edge_index()                              # users -> items
    torch.testing.assert_close(LightGCNConv(normalize=False)((xu, xi), er, wr), r.t() @ xu)


def test_encoder_on_edge_index_equals_sparse_adj_and_stacked_lgconv():
    from torch_geometric import EdgeIndex
    ei = bipartite_edges(seed=15)
    adj = bipartite_adjacency_from_edges(ei, U, I)
    xu, xi = feats(seed=7)
    xu.requires_grad_()
    xi.requires_grad_()
    e, w = adj.to_edge_index()
    e_raw = EdgeIndex(homogeneous(ei), sparse_size=(U + I, U + I)).sort_by("col")[0]
    results = []
    for enc, graph, kw in ((LightGCNEncoder(3), adj, {}),
                           (LightGCNEncoder(3, normalize=False), e, {"edge_weight": w}),
                           (LightGCNEncoder(3), e_raw, {})):          # normalised once per call
        xu.grad = xi.grad = None
        u, i = enc(xu, xi, graph, **kw)
        (u.square().sum() + i.sum()).backward()
        results.append((u.detach(), i.detach(), xu.grad.clone(), xi.grad.clone()))
    for got in results[1:]:
        for g, r in zip(got, results[0]):
            torch.testing.assert_close(g, r)
    # a user's own PyG model (LGConv stack, mean readout) on our converted graph
    h = torch.cat([xu, xi]).detach()
    hs, conv = [h], LGConv(normalize=False)
    for _ in range(3):
        h = conv(h, e, w)
        hs.append(h)
    torch.testing.assert_close(torch.stack(hs).mean(0), torch.cat(results[0][:2]))
