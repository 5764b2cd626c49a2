"""SparseAdj: construction, conversions, product, autograd, backends."""
import pytest
import torch

from mmgraph.backend import has_torch_sparse, resolve_spmm_backend
from mmgraph.graph import SparseAdj, mix_adjacency
from marks import requires_cuda, requires_torch_sparse


BACKENDS = ["torch", "pyg"] + (["torch_sparse"] if has_torch_sparse() else [])


def random_edges(n_rows, n_cols, nnz, seed=0, dup=False):
    g = torch.Generator().manual_seed(seed)
    r = torch.randint(0, n_rows, (nnz,), generator=g)
    c = torch.randint(0, n_cols, (nnz,), generator=g)
    w = torch.rand(nnz, generator=g, dtype=torch.float64) + 0.1
    return torch.stack([r, c]), w


def dense_of(ei, w, size):
    d = torch.zeros(size, dtype=w.dtype)
    d.index_put_((ei[0], ei[1]), w, accumulate=True)
    return d


def test_from_edge_index_matches_dense_and_coalesces_duplicates():
    ei, w = random_edges(7, 5, 40, seed=1)  # many duplicates
    a = SparseAdj.from_edge_index(ei, w, (7, 5))
    assert a.size == (7, 5) and a.shape == torch.Size([7, 5])
    torch.testing.assert_close(a.to_dense(), dense_of(ei, w, (7, 5)))
    assert a.nnz == torch.unique(ei[0] * 5 + ei[1]).numel()
    assert not a.symmetric
    # rowptr / col / edge_index round trip
    b = SparseAdj.from_edge_index(a.edge_index, a.edge_weight, a.size)
    torch.testing.assert_close(b.to_dense(), a.to_dense())
    assert torch.equal(a.rowptr, b.rowptr) and torch.equal(a.col, b.col)


def test_reduce_max_and_errors():
    ei = torch.tensor([[0, 0, 1], [1, 1, 0]])
    a = SparseAdj.from_edge_index(ei, torch.tensor([1.0, 3.0, 2.0]), 2, reduce="max")
    assert a.to_dense().tolist() == [[0.0, 3.0], [2.0, 0.0]]
    with pytest.raises(ValueError, match="out of range"):
        SparseAdj.from_edge_index(ei, None, (1, 2))
    with pytest.raises(ValueError, match=r"\[2, E\]"):
        SparseAdj.from_edge_index(ei.t(), None, 2)
    with pytest.raises(ValueError, match="shape mismatch"):
        a.matmul(torch.ones(3, 1))
    with pytest.raises(ValueError, match="unknown sparse backend"):
        SparseAdj.from_edge_index(ei, None, 2, backend="nope")


def test_symmetric_detection_and_transpose():
    ei, w = random_edges(6, 6, 20, seed=2)
    a = SparseAdj.from_edge_index(ei, w, 6)
    assert a.symmetric is False
    torch.testing.assert_close(a.t().to_dense(), a.to_dense().t())
    assert a.t().t() is a  # cached both ways
    s = SparseAdj.from_edge_index(torch.cat([ei, ei.flip(0)], 1), torch.cat([w, w]), 6)
    assert s.symmetric is True and s.t() is s
    torch.testing.assert_close(s.to_dense(), s.to_dense().t())


@pytest.mark.parametrize("backend", BACKENDS)
def test_matmul_equals_dense(backend):
    ei, w = random_edges(9, 6, 30, seed=3)
    a = SparseAdj.from_edge_index(ei, w.float(), (9, 6), backend=backend)
    assert a.backend == backend
    x = torch.randn(6, 4)
    torch.testing.assert_close(a.matmul(x), a.to_dense() @ x)
    torch.testing.assert_close(a @ x[:, 0], a.to_dense() @ x[:, 0])
    # transposed product
    y = torch.randn(9, 3)
    torch.testing.assert_close(a.t().matmul(y), a.to_dense().t() @ y)


def test_backends_agree():
    ei, w = random_edges(30, 30, 200, seed=4)
    x = torch.randn(30, 8, requires_grad=True)
    outs, grads = [], []
    for b in BACKENDS:
        a = SparseAdj.from_edge_index(ei, w.float(), 30, backend=b)
        out = a.matmul(x)
        (g,) = torch.autograd.grad(out.square().sum(), x)
        outs.append(out.detach())
        grads.append(g)
    for o, g in zip(outs[1:], grads[1:]):
        torch.testing.assert_close(o, outs[0])
        torch.testing.assert_close(g, grads[0])
    assert resolve_spmm_backend("auto") == ("torch_sparse" if has_torch_sparse() else "torch")


@requires_torch_sparse
def test_torch_sparse_backend_matches_torch():  # pragma: no cover - optional dependency
    ei, w = random_edges(20, 20, 80, seed=5)
    x = torch.randn(20, 4)
    a = SparseAdj.from_edge_index(ei, w.float(), 20, backend="torch")
    b = SparseAdj.from_edge_index(ei, w.float(), 20, backend="torch_sparse")
    torch.testing.assert_close(a.matmul(x), b.matmul(x))
    assert b.to_sparse_tensor().nnz() == b.nnz


def test_torch_sparse_backend_missing_raises():
    if has_torch_sparse():  # pragma: no cover
        pytest.skip("torch-sparse installed")
    with pytest.raises(ValueError, match="torch-sparse"):
        SparseAdj.from_edge_index(torch.tensor([[0], [0]]), None, 1, backend="torch_sparse")


def test_gradcheck_symmetric():
    ei, w = random_edges(5, 5, 8, seed=6)
    a = SparseAdj.from_edge_index(torch.cat([ei, ei.flip(0)], 1), torch.cat([w, w]), 5)
    assert a.symmetric
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: a.matmul(x), (x,))
    v = a.value.clone().requires_grad_()
    # values as parameters (each stored entry independent)
    assert torch.autograd.gradcheck(lambda v, x: a.with_value(v, symmetric=False).matmul(x), (v, x))


def test_gradcheck_nonsymmetric_and_values():
    ei, w = random_edges(6, 4, 12, seed=7)
    a = SparseAdj.from_edge_index(ei, w, (6, 4))
    x = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    v = a.value.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda v, x: a.with_value(v).matmul(x), (v, x))
    assert torch.autograd.gradgradcheck(lambda v, x: a.with_value(v).matmul(x), (v, x))
    # transposed operand with learned values
    assert torch.autograd.gradcheck(lambda v, y: a.with_value(v).t().matmul(y),
                                    (v, torch.randn(6, 2, dtype=torch.float64,
                                                    requires_grad=True)))



def test_symmetric_backward_matches_dense_autograd():
    ei, w = random_edges(12, 12, 40, seed=8)
    a = SparseAdj.from_edge_index(torch.cat([ei, ei.flip(0)], 1), torch.cat([w, w]), 12)
    assert a.symmetric and a.dtype == torch.float64
    g = torch.Generator().manual_seed(8)
    x = torch.randn(12, 5, generator=g, dtype=torch.float64, requires_grad=True)
    xd = x.detach().clone().requires_grad_()
    h = x
    hd = xd
    for _ in range(3):
        h = a.matmul(h)
        hd = a.to_dense() @ hd
    h.sin().sum().backward()
    hd.sin().sum().backward()
    torch.testing.assert_close(x.grad, xd.grad)


def test_dtype_and_device_handling():
    ei, w = random_edges(4, 4, 6, seed=9)
    a = SparseAdj.from_edge_index(ei, w.float(), 4)
    xd = torch.randn(4, 2, dtype=torch.float64)
    torch.testing.assert_close(a.matmul(xd), a.to_dense().double() @ xd)
    assert a.double().dtype == torch.float64
    b = a.to("cpu")
    assert b is a
    c = a.apply(lambda t: t.double() if t.is_floating_point() else t)
    assert c.dtype == torch.float64 and c.rowptr.dtype == torch.long
    with pytest.raises(ValueError, match="floating point"):
        a.matmul(torch.ones(4, 2, dtype=torch.long))


@requires_cuda
def test_cuda_matches_cpu():  # pragma: no cover - needs a GPU
    ei, w = random_edges(50, 50, 300, seed=10)
    a = SparseAdj.from_edge_index(ei, w.float(), 50)
    x = torch.randn(50, 8, requires_grad=True)
    out = a.matmul(x)
    out.sum().backward()
    xc = x.detach().cuda().requires_grad_()
    ac = a.cuda()
    outc = ac.matmul(xc)
    outc.sum().backward()
    torch.testing.assert_close(outc.cpu(), out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(xc.grad.cpu(), x.grad, atol=1e-5, rtol=1e-5)


def test_sum_mul_add_mix():
    ei, w = random_edges(5, 5, 10, seed=11)
    a = SparseAdj.from_edge_index(ei, w, 5)
    b = SparseAdj.from_edge_index(ei.flip(0), w * 2, 5)
    torch.testing.assert_close(a.sum(1), a.to_dense().sum(1))
    torch.testing.assert_close(a.sum(0), a.to_dense().sum(0))
    torch.testing.assert_close((0.5 * a).to_dense(), 0.5 * a.to_dense())
    torch.testing.assert_close((a + b).to_dense(), a.to_dense() + b.to_dense())
    m = mix_adjacency([a, b], [0.1, 0.9])
    torch.testing.assert_close(m.to_dense(), 0.1 * a.to_dense() + 0.9 * b.to_dense())
    coo = a.to_torch_sparse(torch.sparse_coo)
    torch.testing.assert_close(coo.to_dense(), a.to_dense())
    csr = a.to_torch_sparse()
    torch.testing.assert_close(csr.to_dense(), a.to_dense())
    torch.testing.assert_close(SparseAdj.from_dense(a.to_dense()).to_dense(), a.to_dense())


def test_empty_matrix():
    a = SparseAdj.from_edge_index(torch.zeros(2, 0, dtype=torch.long), None, (3, 4))
    assert a.nnz == 0
    x = torch.randn(4, 2, requires_grad=True)
    out = a.matmul(x)
    assert out.shape == (3, 2) and out.abs().sum() == 0
    out.sum().backward()
    assert x.grad.abs().sum() == 0


def test_value_setter_invalidates_caches():
    ei, w = random_edges(5, 5, 9, seed=12)
    a = SparseAdj.from_edge_index(ei, w.float(), 5)
    x = torch.randn(5, 2, dtype=torch.float64)
    a.matmul(x)  # fills the float64 cast cache
    at = a.t()
    a.value = a.value * 2
    torch.testing.assert_close(a.matmul(x), a.to_dense().double() @ x)
    assert a.t() is not at
    torch.testing.assert_close(a.t().to_dense(), a.to_dense().t())
    with pytest.raises(ValueError, match="nnz"):
        a.value = torch.ones(3)


def test_constructor_validates_value_like_the_setter():
    rowptr, col = torch.tensor([0, 1, 3]), torch.tensor([1, 0, 1])
    a = SparseAdj(rowptr, col, size=(2, 2))
    assert a.value.tolist() == [1.0, 1.0, 1.0]           # default: ones
    with pytest.raises(ValueError, match=r"value must have shape \[nnz=3\], got \(2,\)"):
        SparseAdj(rowptr, col, torch.ones(2), size=(2, 2))
    with pytest.raises(ValueError, match=r"value must have shape \[nnz=3\]"):
        SparseAdj(rowptr, col, torch.ones(3, 1), size=(2, 2))
    with pytest.raises(ValueError, match="value is on meta but the indices are on cpu"):
        SparseAdj(rowptr, col, torch.ones(3, device="meta"), size=(2, 2))


# ------------------------------------------------------------- PyG EdgeIndex
@pytest.mark.parametrize("shape,sym", [((6, 6), True), ((6, 6), False), ((7, 4), False)])
def test_to_edge_index_round_trip_and_pyg_layers(shape, sym):
    from torch_geometric import EdgeIndex
    from torch_geometric.nn import LGConv
    ei, w = random_edges(*shape, 25, seed=11)
    if sym:
        ei, w = torch.cat([ei, ei.flip(0)], 1), torch.cat([w, w])
    a = SparseAdj.from_edge_index(ei, w, shape)
    assert a.symmetric is sym
    dense = a.to_dense()
    x = torch.randn(shape[1], 3, dtype=torch.float64)
    # PyG message flow: sources = our columns, targets = our rows, sorted by target,
    # our row pointers reused as the compressed index
    e, v = a.to_edge_index()
    assert isinstance(e, EdgeIndex) and e.sort_order == "col" and e.is_undirected is sym
    assert e.sparse_size() == (shape[1], shape[0]) and v is a.value
    assert torch.equal(e.as_tensor(), torch.stack([a.col, a.row]))
    assert torch.equal(e.get_indptr(), a.rowptr)
    torch.testing.assert_close(e.matmul(x, input_value=v, transpose=True), dense @ x)
    if shape[0] == shape[1]:          # a PyG layer on our converted graph computes A @ x
        torch.testing.assert_close(LGConv(normalize=False)(x, e, v), dense @ x)
    back = SparseAdj.from_edge_index(e, v, flow="source_to_target")
    assert back.size == a.size and back.symmetric is sym
    assert torch.equal(back.rowptr, a.rowptr) and torch.equal(back.col, a.col)
    assert torch.equal(back.value, a.value)
    # the matrix convention (flow='target_to_source'): rows first, sorted by row
    e2, v2 = a.to_edge_index("target_to_source")
    assert e2.sort_order == "row" and e2.sparse_size() == shape
    assert torch.equal(e2.as_tensor(), a.edge_index) and torch.equal(e2.get_indptr(), a.rowptr)
    torch.testing.assert_close(e2.matmul(x, input_value=v2), dense @ x)
    if shape[0] == shape[1]:
        torch.testing.assert_close(LGConv(normalize=False, flow="target_to_source")(x, e2, v2),
                                   dense @ x)
    back2 = SparseAdj.from_edge_index(e2, v2)
    assert torch.equal(back2.to_dense(), dense)
    with pytest.raises(ValueError, match="flow"):
        a.to_edge_index("both")
    with pytest.raises(ValueError, match="flow"):
        SparseAdj.from_edge_index(e2, v2, flow="both")


def test_from_edge_index_source_to_target_on_plain_tensor():
    ei = torch.tensor([[0, 1, 2], [1, 2, 2]])           # messages 0->1, 1->2, 2->2
    a = SparseAdj.from_edge_index(ei, torch.tensor([1.0, 2.0, 3.0]), (3, 3),
                                  flow="source_to_target")
    assert a.to_dense().tolist() == [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 3.0]]


@pytest.mark.parametrize("square", [True, False])
def test_edge_dot_equals_gathered_dot_products_and_their_gradients(square, monkeypatch):
    # SDDMM: one score per non-zero, against the gather form (values and gradients);
    # blocks smaller than nnz so the chunking is exercised
    import mmgraph.graph.sparse as sparse_mod
    monkeypatch.setattr(sparse_mod, "_SDDMM_CHUNK", 64)
    g = torch.Generator().manual_seed(3)
    n_rows, n_cols = (40, 40) if square else (30, 20)
    ei = torch.stack([torch.randint(0, n_rows, (300,), generator=g),
                      torch.randint(0, n_cols, (300,), generator=g)])
    adj = SparseAdj.from_edge_index(ei, torch.rand(300, generator=g),
                                    n_rows if square else (n_rows, n_cols)).double()
    left = torch.randn(n_rows, 8, generator=g, dtype=torch.float64, requires_grad=True)
    right = left if square else torch.randn(n_cols, 8, generator=g, dtype=torch.float64,
                                            requires_grad=True)
    ref = (left[adj.row] * right[adj.col]).sum(-1)
    got = adj.edge_dot(left) if square else adj.edge_dot(left, right)
    assert got.shape == (adj.nnz,)
    assert torch.allclose(got, ref, atol=1e-12)
    w = torch.randn(adj.nnz, generator=g, dtype=torch.float64)
    params = (left,) if square else (left, right)
    for a, b in zip(torch.autograd.grad((ref * w).sum(), params),
                    torch.autograd.grad((got * w).sum(), params)):
        assert torch.allclose(a, b, atol=1e-12)
    with torch.no_grad():
        assert torch.allclose(adj.edge_dot(left, right), ref, atol=1e-12)
    with pytest.raises(ValueError, match="shape mismatch"):
        adj.edge_dot(right if not square else left[:5])


def test_learned_edge_values_get_the_gathered_gradient():
    # the value gradient of A @ x (GRCN's refined graph) is an SDDMM of the output
    # gradient and x: check it against dense autograd
    g = torch.Generator().manual_seed(4)
    ei = torch.randint(0, 25, (2, 120), generator=g)
    adj = SparseAdj.from_edge_index(ei, torch.rand(120, generator=g), 25).double()
    value = adj.value.clone().requires_grad_()
    x = torch.randn(25, 6, generator=g, dtype=torch.float64)
    out = adj.with_value(value, symmetric=False).matmul(x)
    w = torch.randn_like(out)
    got = torch.autograd.grad((out * w).sum(), value)[0]
    dense = torch.zeros(25, 25, dtype=torch.float64).index_put(
        (adj.row, adj.col), value.detach(), accumulate=True).requires_grad_()
    want_dense = torch.autograd.grad(((dense @ x) * w).sum(), dense)[0]
    assert torch.allclose(got, want_dense[adj.row, adj.col], atol=1e-12)
