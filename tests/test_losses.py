import math

import pytest
import torch
from marks import requires_cuda
from oracles import ce_info_nce, naive_info_nce, naive_mmd, naive_orthogonal_loss

from mmgraph.losses import (BPRLoss, InfoNCE, MMDLoss, bpr_loss, info_nce, l2_reg, mmd_loss,
                            neg_cosine, orthogonal_loss)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- BPR
def test_bpr_hand_case():
    pos = torch.tensor([2.0, 0.0])
    neg = torch.tensor([1.0, 0.0])
    # -log sigmoid(1) = log(1 + e^-1) = 0.3132617; -log sigmoid(0) = log 2 = 0.6931472
    expected = (math.log(1 + math.exp(-1)) + math.log(2)) / 2
    assert bpr_loss(pos, neg).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.5032044, abs=1e-6)
    assert BPRLoss()(pos, neg).item() == pytest.approx(expected, abs=1e-6)


def test_bpr_multi_negative_and_stability():
    g = _gen()
    pos, neg = torch.randn(5, generator=g), torch.randn(5, 3, generator=g)
    naive = -torch.log(torch.sigmoid(pos[:, None] - neg)).mean()
    assert torch.allclose(bpr_loss(pos, neg), naive, atol=1e-6)
    # huge gap: naive log(sigmoid) underflows to inf, softplus stays exact
    big = bpr_loss(torch.tensor([-200.0]), torch.tensor([0.0]))
    assert torch.isfinite(big) and big.item() == pytest.approx(200.0)
    with pytest.raises(ValueError):
        bpr_loss(pos, torch.randn(4))


def test_bpr_gradient():
    pos = torch.tensor([1.0], requires_grad=True)
    neg = torch.tensor([1.0], requires_grad=True)
    bpr_loss(pos, neg).backward()
    assert pos.grad.item() == pytest.approx(-0.5) and neg.grad.item() == pytest.approx(0.5)


# ----------------------------------------------------------------------------- L2
def test_l2_reg_lightgcn_form():
    u = torch.tensor([[1.0, 2.0], [0.0, 1.0]])       # ||u||^2 = 6
    i = torch.tensor([[3.0, 0.0], [0.0, 0.0]])       # 9
    j = torch.tensor([[1.0, 1.0], [1.0, 1.0]])       # 4
    assert l2_reg(u, i, j).item() == pytest.approx((6 + 9 + 4) / 2 / 2)
    assert l2_reg(u, i, j, batch_size=1).item() == pytest.approx(9.5)
    # MMRec EmbLoss form: unsquared norms / B
    assert l2_reg(u, i, j, squared=False).item() == pytest.approx(
        (math.sqrt(6) + 3 + 2) / 2)
    x = u.clone().requires_grad_()
    l2_reg(x, batch_size=2).backward()
    assert torch.allclose(x.grad, u / 2)


# ------------------------------------------------------------------------- InfoNCE
def test_info_nce_matches_naive():
    g = _gen(1)
    a, b = torch.randn(8, 5, generator=g, dtype=torch.float64), torch.randn(8, 5, generator=g,
                                                                              dtype=torch.float64)
    for t in (0.2, 0.5, 1.0):
        assert torch.allclose(info_nce(a, b, t), naive_info_nce(a, b, t), atol=1e-10)
    sym = info_nce(a, b, 0.2, symmetric=True)
    assert torch.allclose(sym, 0.5 * (naive_info_nce(a, b, 0.2) + naive_info_nce(b, a, 0.2)))
    assert InfoNCE(0.2)(a, b).item() == pytest.approx(info_nce(a, b, 0.2).item())


def test_info_nce_small_temperature_finite():
    g = _gen(2)
    a = 1e4 * torch.randn(64, 16, generator=g)
    b = a + 1e3 * torch.randn(64, 16, generator=g)
    a.requires_grad_()
    loss = info_nce(a, b, temperature=0.01)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(a.grad).all()
    # float64 naive formula agrees where it does not overflow (|logit| <= 100)
    ref = naive_info_nce(a.detach().double(), b.double(), 0.01)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-4, abs=1e-4)


def test_info_nce_perfect_alignment_low_loss():
    a = torch.eye(4)
    # logits: 1/t on the diagonal, 0 elsewhere -> loss = log(1 + 3 e^{-1/t})
    assert info_nce(a, a, 0.5).item() == pytest.approx(math.log(1 + 3 * math.exp(-2)), abs=1e-6)


def test_info_nce_gradients_match_naive():
    g = _gen(11)
    a = torch.randn(12, 5, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(12, 5, generator=g, dtype=torch.float64, requires_grad=True)
    for sym in (False, True):
        ref = naive_info_nce(a, b, 0.3)
        if sym:
            ref = 0.5 * (ref + naive_info_nce(b, a, 0.3))
        want = torch.autograd.grad(ref, (a, b))
        got = torch.autograd.grad(info_nce(a, b, 0.3, symmetric=sym), (a, b))
        for w, x in zip(want, got):
            assert torch.allclose(w, x, atol=1e-12)


@pytest.mark.parametrize("symmetric", [False, True])
def test_info_nce_distinct_ids_equals_loss_over_unique_rows(symmetric):
    # a hand-made batch: ids 3 and 7 repeat (3 three times), as popular users and
    # items do in batches of interactions; with ids= the loss and its gradients are
    # those of the batch of distinct ids, each once
    g = _gen(12)
    table_a = torch.randn(10, 6, generator=g, dtype=torch.float64, requires_grad=True)
    table_b = torch.randn(10, 6, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([3, 0, 7, 3, 5, 7, 3, 9])
    unique = torch.tensor([0, 3, 5, 7, 9])
    ref = info_nce(table_a[unique], table_b[unique], 0.2, symmetric=symmetric)
    got = info_nce(table_a[ids], table_b[ids], 0.2, symmetric=symmetric, ids=ids)
    assert got.item() == pytest.approx(ref.item(), abs=1e-12)
    want = torch.autograd.grad(ref, (table_a, table_b))
    have = torch.autograd.grad(info_nce(table_a[ids], table_b[ids], 0.2, symmetric=symmetric,
                                        ids=ids), (table_a, table_b))
    for w, h in zip(want, have):
        assert torch.allclose(w, h, atol=1e-12)
    # without ids the repeated rows are their own negatives: a different (larger) loss
    plain = info_nce(table_a[ids], table_b[ids], 0.2, symmetric=symmetric)
    assert plain.item() > ref.item() + 0.1
    # no repeats: ids change nothing
    assert info_nce(table_a[unique], table_b[unique], 0.2, symmetric=symmetric,
                    ids=unique).item() == pytest.approx(ref.item(), abs=1e-12)


@pytest.mark.parametrize("symmetric", [False, True])
def test_info_nce_ids_plain_equals_loss_with_repeats(symmetric):
    # distinct=False: the loss of the batch as it stands (repeats are their own
    # negatives); on CPU it is computed over the 5 distinct rows with multiplicities
    g = _gen(13)
    table_a = torch.randn(10, 6, generator=g, dtype=torch.float64, requires_grad=True)
    table_b = torch.randn(10, 6, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([3, 0, 7, 3, 5, 7, 3, 9])
    ref = naive_info_nce(table_a[ids], table_b[ids], 0.2)
    if symmetric:
        ref = 0.5 * (ref + naive_info_nce(table_b[ids], table_a[ids], 0.2))
    got = info_nce(table_a[ids], table_b[ids], 0.2, symmetric=symmetric, ids=ids,
                   distinct=False)
    assert got.item() == pytest.approx(ref.item(), abs=1e-12)
    want = torch.autograd.grad(ref, (table_a, table_b))
    have = torch.autograd.grad(got, (table_a, table_b))
    for w, h in zip(want, have):
        assert torch.allclose(w, h, atol=1e-12)


def test_compact_rows_counts_first_rows_and_refuses_unequal_copies():
    from mmgraph.losses import compact_rows
    ids = torch.tensor([4, 1, 4, 4, 2, 1])
    rows = torch.tensor([[4.], [1.], [4.], [4.], [2.], [1.]])
    counts, (kept,) = compact_rows(ids, rows)
    assert counts.tolist() == [2, 1, 3]                   # ids 1, 2, 4
    assert kept.flatten().tolist() == [1., 2., 4.]
    bad = rows.clone()
    bad[2] = 5.0                                           # a "copy" of id 4 that differs
    with pytest.raises(ValueError, match="rows with equal ids differ"):
        compact_rows(ids, bad)
    with pytest.raises(ValueError, match="rows with equal ids differ"):
        info_nce(bad, bad, 0.2, ids=ids, distinct=False)
    with pytest.raises(ValueError, match="rows with equal ids differ"):
        mmd_loss(bad, rows, 1.0, ids=ids)
    # a diverged (NaN) table is not a bad ids argument: the loss is NaN, for the
    # trainer's divergence check to report
    nan_rows = torch.full_like(rows, float("nan"))
    assert torch.isnan(info_nce(nan_rows, nan_rows, 0.2, ids=ids, distinct=False))


def test_distinct_id_weights_counts():
    from mmgraph.losses import distinct_id_weights
    log_c, w = distinct_id_weights(torch.tensor([4, 1, 4, 4, 2, 1]))
    assert torch.allclose(log_c.exp(), torch.tensor([3., 2., 3., 3., 1., 2.]))
    assert w.sum().item() == pytest.approx(3.0)       # three distinct ids


# ----------------------------------------------------------------------------- MMD
def test_mmd_identical_zero_shifted_positive():
    g = _gen(3)
    x = torch.randn(32, 8, generator=g)
    assert mmd_loss(x, x.clone()).abs().item() < 1e-6
    assert mmd_loss(x, x + 3.0).item() > 1e-2
    assert mmd_loss(x, x + 3.0, normalize=False).item() > 1e-2


def test_mmd_matches_naive_several_sigmas():
    g = _gen(4)
    x = torch.randn(20, 6, generator=g, dtype=torch.float64)
    y = torch.randn(20, 6, generator=g, dtype=torch.float64) + 0.5
    for sigmas in ((1.0,), (1.5,), (2.0,), (1.0, 1.5, 2.0), (0.3,)):
        for norm in (True, False):
            got = mmd_loss(x, y, sigmas, normalize=norm)
            assert torch.allclose(got, naive_mmd(x, y, sigmas, norm), atol=1e-10), (sigmas, norm)
    assert mmd_loss(x, y, 1.5).item() == pytest.approx(naive_mmd(x, y, (1.5,)).item())
    assert MMDLoss((1.0, 2.0))(x, y).item() == pytest.approx(naive_mmd(x, y, (1.0, 2.0)).item())


@pytest.mark.parametrize("sigmas", [(1.0,), (0.1, 1.5, 2.0)])
def test_mmd_gradients_match_naive_broadcast(sigmas):
    # the fused kernel means against autograd through the authors' [B, B', d] form,
    # unequal sample sizes, one and several bandwidths (0.1: exp(1/sigma^2) would
    # overflow float32 without the shifted exponent)
    g = _gen(13)
    x = torch.randn(9, 5, generator=g, dtype=torch.float64, requires_grad=True)
    y = (torch.randn(7, 5, generator=g, dtype=torch.float64) + 0.3).requires_grad_()
    want = torch.autograd.grad(naive_mmd(x, y, sigmas), (x, y))
    got = torch.autograd.grad(mmd_loss(x, y, sigmas), (x, y))
    for w, h in zip(want, got):
        assert torch.allclose(w, h, atol=1e-12)
    assert torch.autograd.gradcheck(lambda a, b: mmd_loss(a, b, sigmas), (x, y))


@pytest.mark.parametrize("normalize", [True, False])
def test_mmd_ids_equal_loss_with_repeats(normalize):
    # repeated positive items: the means over the batch's rows, computed on CPU over
    # the distinct rows weighted by their counts -- same value and gradients
    g = _gen(14)
    tx = torch.randn(10, 5, generator=g, dtype=torch.float64, requires_grad=True)
    ty = torch.randn(10, 5, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([3, 0, 7, 3, 5, 7, 3, 9, 3])
    sigmas = (0.5, 1.0, 2.0)
    x, y = tx[ids], ty[ids] + 0.2
    ref = naive_mmd(x, y, sigmas, normalize=normalize)
    got = mmd_loss(tx[ids], ty[ids] + 0.2, sigmas, normalize=normalize, ids=ids)
    assert got.item() == pytest.approx(ref.item(), abs=1e-12)
    want = torch.autograd.grad(ref, (tx, ty))
    have = torch.autograd.grad(got, (tx, ty))
    for w, h in zip(want, have):
        assert torch.allclose(w, h, atol=1e-12)
    with pytest.raises(ValueError, match="ids must have shape"):
        mmd_loss(tx[ids], ty, sigmas, ids=ids)


def test_mmd_small_bandwidth_float32_finite():
    g = _gen(14)
    x = torch.randn(64, 16, generator=g, requires_grad=True)
    y = torch.randn(64, 16, generator=g)
    loss = mmd_loss(x, y, sigmas=(0.05,))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    ref = naive_mmd(x.detach().double(), y.double(), (0.05,))
    assert loss.item() == pytest.approx(ref.item(), rel=1e-4, abs=1e-6)


def test_mmd_gradient_flows():
    g = _gen(5)
    x = torch.randn(10, 4, generator=g, requires_grad=True)
    y = torch.randn(10, 4, generator=g, requires_grad=True)
    mmd_loss(x, y + 1, sigmas=(1.0, 2.0)).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


# ---------------------------------------------------------------------- neg cosine
def test_neg_cosine_value_and_stop_gradient():
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]], requires_grad=True)
    z = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], requires_grad=True)
    loss = neg_cosine(p, z)
    assert loss.item() == pytest.approx(-(1.0 + 0.0) / 2)
    loss.backward()
    assert z.grad is None
    assert p.grad is not None and p.grad.abs().sum() > 0


# ---------------------------------------------------------------------- orthogonal
def _hadamard(n):
    h = torch.ones(1, 1)
    while h.size(0) < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def test_orthogonal_loss_zero_for_orthogonal_positive_otherwise():
    h = _hadamard(8)
    a, b = h[:, 1:4], h[:, 4:7]          # centred columns, orthogonal, equal row norms
    for center in (True, False):
        for red in ("mean", "sum"):
            assert orthogonal_loss(a, b, center=center, reduction=red).item() < 1e-10
    g = _gen(6)
    x = torch.randn(16, 4, generator=g)
    assert orthogonal_loss(x, x + 0.1 * torch.randn(16, 4, generator=g)).item() > 1e-3
    # hand case without centring: a_n = b_n = e_1 for both rows -> A^T B = [[2, 0], [0, 0]]
    e = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert orthogonal_loss(e, e, center=False, reduction="sum").item() == pytest.approx(4.0, abs=1e-4)
    assert orthogonal_loss(e, e, center=False).item() == pytest.approx(1.0, abs=1e-4)


def test_orthogonal_loss_gradient():
    g = _gen(7)
    a = torch.randn(12, 4, generator=g, requires_grad=True)
    b = torch.randn(12, 3, generator=g, requires_grad=True)
    orthogonal_loss(a, b).backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    assert torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0


def test_orthogonal_loss_detach_norm_holds_row_norms_constant():
    g = _gen(8)
    a0 = torch.randn(10, 4, generator=g, dtype=torch.float64)
    b0 = torch.randn(10, 3, generator=g, dtype=torch.float64)

    grads = {}
    for name, fn in (("detached", lambda a, b: orthogonal_loss(a, b, detach_norm=True)),
                     ("reference", naive_orthogonal_loss), ("through", orthogonal_loss)):
        a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
        value = fn(a, b)
        grads[name] = (value.item(), *torch.autograd.grad(value, (a, b)))
    v, ga, gb = grads["detached"]
    assert v == pytest.approx(grads["reference"][0], rel=1e-12)
    assert v == pytest.approx(grads["through"][0], rel=1e-12)     # same value either way
    assert torch.allclose(ga, grads["reference"][1], atol=1e-14)
    assert torch.allclose(gb, grads["reference"][2], atol=1e-14)
    # differentiating through the norms removes the radial component: another gradient
    assert (ga - grads["through"][1]).norm() > 0.1 * ga.norm()


# ------------------------------------------------------------------ pool InfoNCE
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_pool_info_nce_matches_cross_entropy_value_and_gradients(reduction):
    from mmgraph.losses import pool_info_nce
    g = torch.Generator().manual_seed(0)
    a = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    p = torch.randn(11, 5, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([0, 3, 3, 10, 5, 1, 7])          # repeated positives too
    got = pool_info_nce(a, p, ids, 0.3, reduction)
    ga, gp = torch.autograd.grad(got, (a, p))
    want = ce_info_nce(a, p, ids, 0.3, reduction)
    wa, wp = torch.autograd.grad(want, (a, p))
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    # float64 autograd reference to 1e-12 (gradcheck itself backpropagates twice, see below)
    assert torch.allclose(ga, wa, atol=1e-12) and torch.allclose(gp, wp, atol=1e-12)


def test_pool_info_nce_small_temperature_and_scaled_grad():
    from mmgraph.losses import PoolInfoNCE, pool_info_nce
    g = torch.Generator().manual_seed(1)
    a = (100 * torch.randn(64, 8, generator=g)).requires_grad_()
    p = torch.randn(300, 8, generator=g).requires_grad_()
    ids = torch.randint(0, 300, (64,), generator=g)
    loss = PoolInfoNCE(temperature=0.01)(a, p, ids)          # logits up to 100: no overflow
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(ce_info_nce(a, p, ids, 0.01).item(), rel=1e-5)
    (3.0 * loss).backward()                                  # upstream gradient is applied
    ga = a.grad.clone()
    a.grad = None
    (3.0 * ce_info_nce(a, p, ids, 0.01)).backward()
    assert torch.allclose(ga, a.grad, rtol=1e-4, atol=1e-6)
    # only the anchor needs a gradient: the pool's is not computed
    loss = pool_info_nce(a, p.detach(), ids, 0.2)
    loss.backward()


def test_pool_info_nce_errors():
    from mmgraph.losses import pool_info_nce
    a, p = torch.randn(4, 3, requires_grad=True), torch.randn(6, 3)
    ids = torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"anchor \[B, d\] and pool \[N, d\]"):
        pool_info_nce(a, torch.randn(6, 2), ids)
    with pytest.raises(ValueError, match="positive_ids must be a \\[B\\] = \\[4\\] long"):
        pool_info_nce(a, p, ids[:3])
    with pytest.raises(ValueError, match="positive_ids must be"):
        pool_info_nce(a, p, ids.float())
    with pytest.raises(ValueError, match="temperature must be positive"):
        pool_info_nce(a, p, ids, 0.0)
    with pytest.raises(ValueError, match="reduction must be"):
        pool_info_nce(a, p, ids, reduction="none")
    loss = pool_info_nce(a, p, ids)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward through the same graph twice"):
        loss.backward()


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_pool_info_nce_factored_pool_equals_dense(reduction):
    from mmgraph.losses import pool_info_nce
    g = torch.Generator().manual_seed(2)
    a = torch.randn(6, 8, generator=g, dtype=torch.float64, requires_grad=True)
    left = torch.randn(13, 3, generator=g, dtype=torch.float64, requires_grad=True)
    right = torch.randn(3, 8, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([0, 12, 5, 5, 7, 1])
    got = pool_info_nce(a, (left, right), ids, 0.2, reduction)
    g_got = torch.autograd.grad(got, (a, left, right))
    want = ce_info_nce(a, left @ right, ids, 0.2, reduction)
    g_want = torch.autograd.grad(want, (a, left, right))
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    for x, y in zip(g_got, g_want):
        assert torch.allclose(x, y, atol=1e-10)
    with pytest.raises(ValueError, match=r"factored pool must be \(L \[N, r\], R \[r, d\]\)"):
        pool_info_nce(a, (left, right.t()), ids)
    with pytest.raises(ValueError, match=r"anchor \[B, d\] and pool \[N, d\], got \(6, 8\) and \(13, 9\)"):
        pool_info_nce(a, (left, torch.randn(3, 9, dtype=torch.float64)), ids)


def test_pool_info_nce_under_bf16_autocast_stays_float32():
    """The [B, N] softmax is computed in float32 under autocast; gradients keep the
    inputs' dtypes."""
    from mmgraph.losses import pool_info_nce
    g = torch.Generator().manual_seed(3)
    a = torch.randn(32, 16, generator=g, requires_grad=True)
    p = torch.randn(500, 16, generator=g, requires_grad=True)
    left = torch.randn(500, 4, generator=g, requires_grad=True)
    right = torch.randn(4, 16, generator=g, requires_grad=True)
    ids = torch.randint(0, 500, (32,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        dense = pool_info_nce(a, p, ids)
        factored = pool_info_nce(a, (left, right), ids)
    assert dense.dtype == torch.float32 and factored.dtype == torch.float32
    assert dense.item() == pytest.approx(pool_info_nce(a, p, ids).item(), rel=1e-6)
    assert factored.item() == pytest.approx(pool_info_nce(a, (left, right), ids).item(), rel=2e-2)
    (dense + factored).backward()
    assert a.grad.dtype == p.grad.dtype == left.grad.dtype == right.grad.dtype == torch.float32
    assert all(torch.isfinite(t.grad).all() for t in (a, p, left, right))


# ------------------------------------------------------------------ on the GPU
@requires_cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-4)])
def test_fused_losses_on_cuda_match_cpu(dtype, tol):
    """The fused InfoNCE, pool InfoNCE, MMD and orthogonality losses: values and
    gradients on CUDA equal the CPU's (float64 to rounding; float32 at a batch of 512
    where the kernels' reductions order differently)."""
    from mmgraph.losses import pool_info_nce
    n = 24 if dtype == torch.float64 else 512
    g = _gen(21)
    base = [torch.randn(n, 16, generator=g, dtype=dtype) for _ in range(3)]
    ids = torch.randint(0, n, (n,), generator=g)
    cases = {
        "info_nce": lambda a, b, c, i: info_nce(a, b, 0.2),
        "info_nce_sym": lambda a, b, c, i: info_nce(a, b, 0.2, symmetric=True),
        # ids: rows gathered by id (the CPU folds the repeats, CUDA offsets columns)
        "info_nce_ids": lambda a, b, c, i: info_nce(a[i], b[i], 0.2, ids=i),
        "info_nce_ids_plain": lambda a, b, c, i: info_nce(a[i], b[i], 0.2, ids=i,
                                                          distinct=False),
        "mmd_ids": lambda a, b, c, i: mmd_loss(a[i], b[i] + 0.3, (0.5, 1.0, 2.0), ids=i),
        "pool_info_nce": lambda a, b, c, i: pool_info_nce(a, c, i, 0.3, "mean"),
        "mmd": lambda a, b, c, i: mmd_loss(a, b + 0.3, (0.5, 1.0, 2.0)),
        "orthogonal": lambda a, b, c, i: orthogonal_loss(a, b, detach_norm=True),
    }
    for name, fn in cases.items():
        out = {}
        for dev in ("cpu", "cuda"):
            xs = [t.to(dev).requires_grad_() for t in base]
            val = fn(*xs, ids.to(dev))
            grads = torch.autograd.grad(val, xs, allow_unused=True)
            out[dev] = (val.detach().cpu(), [None if q is None else q.cpu() for q in grads])
        (vc, gc), (vg, gg) = out["cpu"], out["cuda"]
        assert abs(vc.item() - vg.item()) <= tol * max(1.0, abs(vc.item())), name
        for a_, b_ in zip(gc, gg):
            assert (a_ is None) == (b_ is None), name
            if a_ is not None:
                assert (a_ - b_).abs().max() <= tol * max(1.0, a_.abs().max().item()), name
