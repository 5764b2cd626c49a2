r"""Training objectives shared by the models of mmgraph.

Every loss is a plain function of tensors (functional style, like
:mod:`torch.nn.functional`), with a thin :class:`torch.nn.Module` wrapper for
people who prefer modules. All are device-agnostic and differentiable; on
accelerators they are free of host synchronisation (on the CPU, where a
synchronisation costs nothing, :func:`info_nce` and :func:`mmd_loss` fold a
batch's repeated ids into weights, see :func:`compact_rows`).

================  ============================================================
function          used by
================  ============================================================
:func:`bpr_loss`  every pairwise model (BPR-MF, LightGCN, MambaRec, ...)
:func:`l2_reg`    embedding regularisation, LightGCN form
:func:`info_nce`  MambaRec (side vs user-item view), REARM, SGL-style models
:func:`pool_info_nce`  LGMRec (batch anchors against *all* users / items)
:func:`mmd_loss`  MambaRec (image vs text DREAM features)
:func:`neg_cosine`  BM3 (stop-gradient on the target view)
:func:`orthogonal_loss`  REARM's difference (orthogonality) constraint
================  ============================================================
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "bpr_loss", "l2_reg", "info_nce", "distinct_id_weights", "compact_rows", "pool_info_nce",
    "mmd_loss", "neg_cosine", "orthogonal_loss",
    "BPRLoss", "L2Reg", "InfoNCE", "PoolInfoNCE", "MMDLoss", "NegCosine", "OrthogonalLoss",
]


def bpr_loss(pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
    r"""Bayesian Personalised Ranking loss.

    .. math::
        \mathcal{L} = \frac{1}{B K}\sum_{b=1}^{B}\sum_{k=1}^{K}
        -\log\sigma(s^+_b - s^-_{bk})
        = \frac{1}{BK}\sum_{b,k}\operatorname{softplus}(s^-_{bk} - s^+_b)

    computed through ``softplus``, so it is exact and finite for any score
    gap (``-log(sigmoid(x))`` underflows for ``x << 0``).

    Args:
        pos_scores: ``[B]`` scores of the positive items.
        neg_scores: ``[B]`` (one negative each) or ``[B, K]`` (``K``
            negatives each, averaged over all ``B * K`` pairs).

    Returns:
        scalar.
    """
    if neg_scores.dim() == pos_scores.dim() + 1:
        pos_scores = pos_scores.unsqueeze(-1)
    elif neg_scores.dim() != pos_scores.dim():
        raise ValueError(f"neg_scores must have shape [B] or [B, K] for pos_scores "
                         f"{tuple(pos_scores.shape)}, got {tuple(neg_scores.shape)}")
    if neg_scores.size(0) != pos_scores.size(0):
        raise ValueError(f"batch sizes differ: pos_scores {tuple(pos_scores.shape)}, "
                         f"neg_scores {tuple(neg_scores.shape)}")
    return F.softplus(neg_scores - pos_scores).mean()


def l2_reg(*tensors: Tensor, batch_size: int | None = None, squared: bool = True) -> Tensor:
    r"""L2 regularisation of the embeddings used in a batch (LightGCN form).

    .. math::
        \mathcal{R} = \frac{1}{B}\cdot\frac{1}{2}\sum_{t}\lVert t\rVert_F^2
        \qquad\text{e.g.}\qquad
        \frac{\lVert E_u\rVert^2 + \lVert E_i\rVert^2 + \lVert E_j\rVert^2}{2B}

    with :math:`E_u, E_i, E_j` the ``[B, d]`` layer-0 embeddings of the batch's
    users, positive and negative items. This is the regulariser of the
    LightGCN paper's code and of MambaRec's ``bpr_loss``; the model multiplies
    it by its ``reg_weight``.

    Args:
        *tensors: any number of tensors (typically ``[B, d]`` each).
        batch_size: the divisor :math:`B`. ``None`` uses ``tensors[0].size(0)``
            (the batch size when the first tensor is the batch's user
            embeddings); pass ``batch_size=1`` for a plain
            :math:`\tfrac12\sum\lVert t\rVert^2` weight decay.
        squared: ``True`` (default) as above. ``False`` gives MMRec's
            ``EmbLoss`` instead: :math:`\frac{1}{B}\sum_t\lVert t\rVert_F`
            (unsquared Frobenius norms, no :math:`\tfrac12`).

    Returns:
        scalar.
    """
    if not tensors:
        raise ValueError("l2_reg needs at least one tensor")
    if batch_size is None:
        batch_size = tensors[0].size(0) if tensors[0].dim() > 0 else 1
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if squared:
        total = sum(t.pow(2).sum() for t in tensors) * 0.5
    else:
        total = sum(torch.linalg.vector_norm(t) for t in tensors)
    return total / batch_size


def distinct_id_weights(ids: Tensor, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    r"""Column offsets and row weights that turn an in-batch InfoNCE over a
    batch with repeated ids into the InfoNCE over its *distinct* ids.

    With :math:`c_j` the number of rows of the batch that carry the id of row
    :math:`j`, adding :math:`-\log c_j` to column :math:`j`'s logits counts
    every distinct id once in each denominator (the :math:`c_j` identical
    columns of one id add up to one), and weighting row :math:`i` by
    :math:`1/c_i` counts every distinct anchor once. The counts come from a
    sort and two binary searches (``O(B log B)``, no host synchronisation).

    Returns:
        ``(log_counts [B], row_weights [B])`` with ``row_weights`` summing to
        the number of distinct ids.
    """
    ordered = ids.sort().values
    counts = (torch.searchsorted(ordered, ids, right=True)
              - torch.searchsorted(ordered, ids)).to(dtype)
    return counts.log(), counts.reciprocal()


def compact_rows(ids: Tensor, *rows: Tensor) -> tuple[Tensor, list[Tensor]]:
    r"""The distinct ids of a batch, one row each, and how often each repeats.

    A batch of interactions repeats users and items; rows gathered by id
    (``table[ids]``) then repeat too. A loss that is a function of the rows'
    multiset (an in-batch InfoNCE, a kernel mean) can be computed over the
    ``K`` distinct rows with their multiplicities as weights: the same value
    and the same gradients (each id's gradient lands on one copy instead of
    being split over its copies, and gathering sums copies anyway), with
    ``[K, K]`` instead of ``[B, B]`` pairwise work.

    ``torch.unique`` synchronises with the host, which costs nothing on the
    CPU but stalls a GPU's queue: :func:`info_nce` and :func:`mmd_loss` take
    this path on CPU tensors only (their ``ids`` argument).

    Args:
        ids: ``[B]`` ids of the rows.
        rows: ``[B, ...]`` tensors whose rows with equal ids are equal
            (checked: a batch whose repeated ids carry different rows raises
            :class:`ValueError`, it would be silently wrong).

    Returns:
        ``(counts [K], [r[first] for r in rows])``: the multiplicity of each
        distinct id (in ascending id order) and the rows of its first
        occurrence.
    """
    _, inverse, counts = torch.unique(ids, return_inverse=True, return_counts=True)
    positions = torch.arange(ids.numel(), device=ids.device)
    first = torch.full_like(counts, ids.numel()).scatter_reduce_(0, inverse, positions, "amin")
    out = []
    for r in rows:
        kept = r[first]
        if counts.numel() < ids.numel() and not _same_rows(kept.detach()[inverse], r.detach()):
            raise ValueError("rows with equal ids differ: ids must say which rows are copies "
                             "of one row (rows gathered by id from one table)")
        out.append(kept)
    return counts, out


def _same_rows(a: Tensor, b: Tensor) -> bool:
    """Equal, NaN matching NaN (a diverged table is the trainer's to report, not a bad ``ids``)."""
    return torch.equal(a, b) or bool(((a == b) | (a.isnan() & b.isnan())).all())


def _compactable(ids: Tensor | None, *rows: Tensor) -> bool:
    """Whether the distinct-rows path applies: ids given and every tensor on the CPU."""
    return ids is not None and all(t.device.type == "cpu" for t in (ids, *rows))


def info_nce(a: Tensor, b: Tensor, temperature: float = 0.2,
             symmetric: bool = False, ids: Tensor | None = None,
             distinct: bool = True) -> Tensor:
    r"""InfoNCE between two aligned views with in-batch negatives.

    Rows are L2-normalised; row :math:`i` of ``b`` is the positive of row
    :math:`i` of ``a`` and every other row of ``b`` a negative:

    .. math::
        \mathcal{L}_{a\to b} = -\frac{1}{B}\sum_{i=1}^{B}
        \log\frac{\exp(\hat a_i^\top \hat b_i/\tau)}
                 {\sum_{j=1}^{B}\exp(\hat a_i^\top \hat b_j/\tau)},
        \qquad \hat x = x/\lVert x\rVert_2 .

    This asymmetric (:math:`a\to b`) form is the default and is the one of
    MambaRec's and SGL's code. With ``symmetric=True`` the loss is
    :math:`\tfrac12(\mathcal{L}_{a\to b} + \mathcal{L}_{b\to a})` (CLIP form).

    **Repeated ids.** Batches of interactions repeat users and items (a user
    with 300 interactions appears ~10 times in a batch of 2048 drawn from
    60,000). Then a row's own copies sit among its negatives: they are
    identical to its positive, so the row can never be resolved and popular
    ids weigh as many times as they repeat. ``ids`` (``[B]``, the user or
    item id of each row; rows with equal ids must be equal, i.e. gathered
    from one table) says which rows are copies:

    * ``distinct=True``: the loss over the batch's *distinct* ids, each
      once, the form of SGL/SimGCL's ``torch.unique`` batches (see
      :func:`distinct_id_weights`);
    * ``distinct=False``: the formula above as it stands (copies are their
      own negatives and weigh as often as they repeat); ``ids`` only make it
      cheaper.

    On CPU tensors either is computed over the ``K`` distinct rows, copies
    folded into weights (:func:`compact_rows`: ``[K, K]`` logits instead of
    ``[B, B]``, the same value and gradients); on other devices over the
    ``[B, B]`` logits with per-column offsets, without a host
    synchronisation.

    Computed by a fused cross-entropy over the logits (max-subtracted, finite
    at small temperatures such as ``0.01``, one logits buffer reused for the
    gradient).

    Args:
        a: ``[B, d]`` anchors.
        b: ``[B, d]`` positives (same row order).
        temperature: :math:`\tau > 0`.
        symmetric: average both directions.
        ids: optional ``[B]`` ids of the rows (same for ``a`` and ``b``).
        distinct: with ``ids``, the loss over distinct ids (``True``) or the
            plain loss with repeats (``False``).

    Returns:
        scalar.
    """
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"info_nce expects two [B, d] tensors of equal shape, "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if ids is not None and ids.shape != (a.size(0),):
        raise ValueError(f"ids must have shape [B] = [{a.size(0)}], got {tuple(ids.shape)}")
    dt = torch.promote_types(a.dtype, torch.float32)
    col_bias = row_weight = offset = None
    n = a.size(0)
    if _compactable(ids, a, b):
        counts, (a, b) = compact_rows(ids, a, b)
        if distinct:
            n = a.size(0)
        else:
            # copies as weights: column k stands for its c_k equal columns (+log c_k in
            # the denominator), row k for its c_k equal rows; the target logit carries
            # the same +log c_k, taken back out of the loss as a constant
            c = counts.to(dt)
            col_bias, row_weight = c.log(), c
            offset = (c * col_bias).sum()
    elif ids is not None and distinct:
        log_counts, row_weight = distinct_id_weights(ids, dt)
        col_bias = -log_counts
        n = row_weight.sum()
        # the offset target logit of row i is its distinct-id logit - log c_i: every
        # (weighted) row exceeds its distinct-id loss by log c_i, in either direction
        offset = -(row_weight * log_counts).sum()
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    target = torch.arange(a.size(0), device=a.device)
    scale = 1.0 / temperature
    loss = _PoolCrossEntropy.apply(a, b, target, scale, col_bias, row_weight)
    if symmetric:
        loss = 0.5 * (loss + _PoolCrossEntropy.apply(b, a, target, scale, col_bias, row_weight))
    if offset is not None:
        loss = loss + offset
    return loss / n


class _PoolCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of ``logits = scale * a @ p.T (+ col_bias)`` against
    ``target`` (each row weighted by ``row_weight`` when given), fused: one
    ``[B, N]`` buffer holds ``E = exp(logits - rowmax)``; nothing else of that
    size is written. The backward needs no ``[B, N]`` pass besides its two
    GEMMs: with ``z`` the row sums of ``E`` and ``w`` the row weights,

    * ``dL/da = scale * (diag(w / z) E p - diag(w) p[target])``,
    * ``dL/dp = scale * (E^T (a * w / z) - onehot(target)^T (a * w))``,

    the second computed as ``((a * w / z)^T E)^T`` (the big operand is never
    transposed: 1.6x faster on MKL). Computed in at least float32 with
    autocast off (a sum of ``N`` exponentials is not a job for bfloat16); the
    gradients come back in the inputs' dtypes."""

    @staticmethod
    def forward(ctx, a: Tensor, p: Tensor, target: Tensor, scale: float,
                col_bias: Tensor | None = None, row_weight: Tensor | None = None) -> Tensor:
        ctx.dtypes = (a.dtype, p.dtype)
        with torch.autocast(a.device.type, enabled=False):
            dt = torch.promote_types(torch.promote_types(a.dtype, p.dtype), torch.float32)
            a, p = a.to(dt), p.to(dt)                                 # half -> float32
            e = (a * scale) @ p.t()                                   # [B, N] logits
            if col_bias is not None:
                e.add_(col_bias.to(dt))
            rows = torch.arange(a.size(0), device=a.device)
            pos = e[rows, target]                                     # [B]
            mx = e.amax(dim=1, keepdim=True)
            e.sub_(mx).exp_()
            z = e.sum(dim=1)
            per_row = z.log() + mx.squeeze(1) - pos
            w = row_weight.to(dt) if row_weight is not None else None
            loss = (per_row * w if w is not None else per_row).sum()
        ctx.scale = scale
        ctx.consumed = False
        ctx.save_for_backward(a, p, target, e, z, w)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        if ctx.consumed:
            raise RuntimeError("pool_info_nce: backward through the same graph twice "
                               "(retain_graph=True) is not supported; recompute the loss")
        ctx.consumed = True
        a, p, target, e, z, w = ctx.saved_tensors
        s = grad * ctx.scale
        rw = s if w is None else s * w                                # [B] or scalar
        rz = (rw / z).unsqueeze(1)                                    # [B, 1]
        grad_a = grad_p = None
        if ctx.needs_input_grad[0]:
            # skinny factors (a factored pool): the product against the row-major
            # [B, N] block as an [r, .] x [., .] GEMM -- up to 18x faster on CPU
            ep = (p.t() @ e.t()).t() if a.size(1) <= 16 else e @ p    # [B, r]
            pt = p[target]
            grad_a = rz * ep - (rw.unsqueeze(1) * pt if w is not None else rw * pt)
            grad_a = grad_a.to(ctx.dtypes[0])
        if ctx.needs_input_grad[1]:
            grad_p = ((a * rz).t() @ e).t()                           # [N, r]
            aw = a * rw.unsqueeze(1) if w is not None else a * rw
            grad_p = grad_p.index_add(0, target, aw, alpha=-1.0).to(ctx.dtypes[1])
        return grad_a, grad_p, None, None, None, None


def pool_info_nce(anchor: Tensor, pool: Tensor | tuple[Tensor, Tensor], positive_ids: Tensor,
                  temperature: float = 0.2, reduction: str = "sum") -> Tensor:
    r"""InfoNCE of a batch of anchors against a whole pool (all users, all items).

    Row :math:`b` of ``anchor`` has ``pool[positive_ids[b]]`` as its positive
    and every other pool row as a negative (LGMRec's hypergraph contrastive
    loss, where the pool is all users or all items of the other modality):

    .. math::
        \mathcal{L} = \sum_{b=1}^{B} -\log
        \frac{\exp(\hat a_b^\top \hat p_{y_b}/\tau)}
             {\sum_{n=1}^{N}\exp(\hat a_b^\top \hat p_n/\tau)},
        \qquad \hat x = x/\lVert x\rVert_2 .

    Unlike :func:`info_nce` (``[B, B]``, in-batch negatives) this is a
    ``[B, N]`` problem, so it is computed by a fused kernel sequence: the
    logits buffer becomes the softmax in place (max-subtracted, finite at any
    temperature) and is reused for the gradient ``softmax - onehot``. Peak
    extra memory is one ``[B, N]`` float tensor; the result and gradients
    equal ``F.cross_entropy(logits, positive_ids, reduction=...)`` (tested).
    It cannot be backpropagated twice (``retain_graph=True`` raises).

    **Factored pool.** ``pool=(L, R)`` with ``L [N, r]``, ``R [r, d]`` means
    :math:`P = LR` without forming it: :math:`\hat a_b^\top \hat p_n =
    (\hat a_b R^\top)^\top \ell_n / \lVert \ell_n R\rVert`, so the logits are
    an ``[B, r] x [r, N]`` product instead of ``[B, d] x [d, N]`` (LGMRec's
    hypergraph embeddings :math:`\mathbf z = \mathbf H\boldsymbol\Lambda`
    have rank ``r`` = number of hyperedges). Same value and gradients as
    passing ``L @ R`` (tested).

    Args:
        anchor: ``[B, d]``.
        pool: ``[N, d]``, or the factors ``(L [N, r], R [r, d])``.
        positive_ids: ``[B]`` long, indices into ``pool``.
        temperature: :math:`\tau > 0`.
        reduction: ``'sum'`` (LGMRec's form) or ``'mean'``.

    Returns:
        scalar.
    """
    if isinstance(pool, (tuple, list)):
        if (len(pool) != 2 or pool[0].dim() != 2 or pool[1].dim() != 2
                or pool[0].size(1) != pool[1].size(0)):
            raise ValueError("a factored pool must be (L [N, r], R [r, d]), got shapes "
                             f"{[tuple(t.shape) for t in pool]}")
        left, right = pool
        n_rows, width = left.size(0), right.size(1)
    else:
        left = right = None
        n_rows, width = (pool.size(0), pool.size(1)) if pool.dim() == 2 else (-1, -1)
    if anchor.dim() != 2 or width < 0 or anchor.size(1) != width:
        raise ValueError(f"pool_info_nce expects anchor [B, d] and pool [N, d], got "
                         f"{tuple(anchor.shape)} and "
                         f"{tuple(pool.shape) if left is None else (n_rows, width)}")
    if positive_ids.shape != (anchor.size(0),) or positive_ids.dtype != torch.long:
        raise ValueError(f"positive_ids must be a [B] = [{anchor.size(0)}] long tensor, got "
                         f"{tuple(positive_ids.shape)} {positive_ids.dtype}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    a = F.normalize(anchor, dim=-1)
    if left is None:
        p = F.normalize(pool, dim=-1)
    else:
        # row norms of L R through the [r, r] Gram matrix; F.normalize's eps (1e-12)
        sq = ((left @ (right @ right.t())) * left).sum(-1)
        p = left / sq.clamp_min(1e-24).sqrt().unsqueeze(-1)
        a = a @ right.t()
    loss = _PoolCrossEntropy.apply(a, p, positive_ids, 1.0 / temperature)
    return loss / anchor.size(0) if reduction == "mean" else loss


def _sq_dists(x: Tensor, y: Tensor) -> Tensor:
    r"""``[N, M]`` squared Euclidean distances :math:`\lVert x_i\rVert^2 +
    \lVert y_j\rVert^2 - 2x_i^\top y_j`, clamped at 0 (never ``[N, M, d]``)."""
    d = x.pow(2).sum(-1, keepdim=True) + y.pow(2).sum(-1).unsqueeze(0) - 2.0 * (x @ y.t())
    return d.clamp_min(0.0)


class _UnitGaussianKernelMean(torch.autograd.Function):
    r"""``sum_ij w_i w'_j sum_s exp(-||u_i - v_j||^2 / (2 sigma_s^2)) / (sum w sum w')``
    for rows of norm ~1 (row weights ``w``, ``w'``: multiplicities; ones by default).

    With :math:`c = 1/(2\sigma^2)`, :math:`a_i = \lVert u_i\rVert^2`,
    :math:`b_j = \lVert v_j\rVert^2` the kernel factors as
    :math:`K_{ij} = e^{-c(a_i - 1)}\,P_{ij}\,e^{-c(b_j - 1)}` with
    :math:`P = \exp(2c(UV^\top - 1))` (entries :math:`\le 1` up to rounding
    for unit rows, so nothing overflows at small bandwidths); the row weights
    ride in the two vector factors. Forward: one GEMM with the scale and
    shift in its epilogue, one in-place ``exp``, one matrix-vector product
    (the shift is a column appended to both operands of the GEMM, so no pass
    over ``[B, B']`` adds it). Backward, from the saved ``P`` alone:

    .. math::
        \frac{\partial \bar K}{\partial u_i} = \frac{2c\,w_i}{W W'}\Big(
            (K\,\mathrm{diag}(w') V)_i - (K w')_i\, u_i\Big)

    (and the mirror image for :math:`v_j`), where both products come out of
    *one* GEMM of ``P`` against
    :math:`[e^{-c(b-1)} w' \odot V \,|\, e^{-c(b-1)} w']`. When ``u`` and
    ``v`` are the same tensor with the same weights (``same=True``) ``K`` is
    symmetric and one GEMM serves both arguments. Computed in at least
    float32 with autocast off."""

    @staticmethod
    def forward(ctx, u: Tensor, v: Tensor, cs: tuple, same: bool,
                wu: Tensor | None = None, wv: Tensor | None = None) -> Tensor:
        ctx.dtypes = (u.dtype, v.dtype)
        with torch.autocast(u.device.type, enabled=False):
            dt = torch.promote_types(torch.promote_types(u.dtype, v.dtype), torch.float32)
            u, v = u.to(dt), v.to(dt)
            wu = u.new_ones(u.size(0)) if wu is None else wu.to(dt)
            wv = v.new_ones(v.size(0)) if wv is None else wv.to(dt)
            a, b = u.pow(2).sum(1), v.pow(2).sum(1)
            total = u.new_zeros(())
            ps = []
            ones = u.new_ones(v.size(0), 1)
            for c in cs:
                # [2c u | -2c] [v | 1]^T = 2c (u v^T - 1): the shift rides in the GEMM
                p = torch.cat([u * (2.0 * c), ones[:1].expand(u.size(0), 1) * (-2.0 * c)], 1) \
                    @ torch.cat([v, ones], 1).t()
                p.exp_()
                ea, eb = torch.exp(-c * (a - 1.0)) * wu, torch.exp(-c * (b - 1.0)) * wv
                total = total + ea @ (p @ eb)
                ps.append(p)
        ctx.cs, ctx.same = cs, same
        ctx.n = wu.sum() * wv.sum()
        ctx.save_for_backward(u, v, wu, wv, *ps)
        return total / ctx.n

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        u, v, wu, wv, *ps = ctx.saved_tensors
        a, b = u.pow(2).sum(1), v.pow(2).sum(1)
        gu = torch.zeros_like(u)
        gv = None if ctx.same else torch.zeros_like(v)
        for c, p in zip(ctx.cs, ps):
            ea, eb = torch.exp(-c * (a - 1.0)) * wu, torch.exp(-c * (b - 1.0)) * wv
            w = (grad * 2.0 * c / ctx.n)
            m = p @ torch.cat([v * eb.unsqueeze(1), eb.unsqueeze(1)], 1)          # [B, d+1]
            gu += w * ea.unsqueeze(1) * (m[:, :-1] - m[:, -1:] * u)
            if not ctx.same:    # P^T X as (X^T P)^T: the big operand is not transposed
                m = (torch.cat([u * ea.unsqueeze(1), ea.unsqueeze(1)], 1).t() @ p).t()
                gv += w * eb.unsqueeze(1) * (m[:, :-1] - m[:, -1:] * v)
        if ctx.same:
            return (2.0 * gu).to(ctx.dtypes[0]), None, None, None, None, None
        return gu.to(ctx.dtypes[0]), gv.to(ctx.dtypes[1]), None, None, None, None


def mmd_loss(x: Tensor, y: Tensor, sigmas: float | Sequence[float] = (1.0,),
             normalize: bool = True, ids: Tensor | None = None) -> Tensor:
    r"""Maximum mean discrepancy between two samples (biased estimator).

    With the Gaussian kernel summed over the bandwidths :math:`\sigma_s`,

    .. math::
        k(u, v) = \sum_s \exp\!\Big(-\frac{\lVert u - v\rVert^2}{2\sigma_s^2}\Big),
        \qquad
        \mathrm{MMD}^2 = \overline{K_{xx}} + \overline{K_{yy}} - 2\,\overline{K_{xy}},

    where :math:`\overline{K}` is the mean over all ``[B, B']`` pairs
    (diagonals included); never through a ``[B, B', d]`` broadcast.

    With ``normalize=True`` (MambaRec's form) rows are L2-normalised first and
    each kernel mean is one fused pass (:class:`_UnitGaussianKernelMean`: the
    Gram matrix, an in-place ``exp``, a matrix-vector product; the backward
    reuses the one saved ``[B, B']`` buffer in a single GEMM). With
    ``normalize=False`` distances are formed as :math:`\lVert u\rVert^2 +
    \lVert v\rVert^2 - 2u^\top v` (clamped at 0) in ``[B, B']`` memory.

    **Repeated rows.** When the rows are gathered by id (``x = X[ids]``,
    ``y = Y[ids]``, e.g. the batch's positive items, which repeat), pass
    ``ids``: on CPU tensors the means are then taken over the ``K`` distinct
    rows weighted by their multiplicities (:func:`compact_rows`), the same
    value and gradients with ``[K, K]`` instead of ``[B, B]`` work; on other
    devices ``ids`` change nothing (no host synchronisation).

    Args:
        x: ``[B, d]`` first sample.
        y: ``[B', d]`` second sample.
        sigmas: one bandwidth or a sequence of them (kernels are summed).
        normalize: L2-normalise rows before the kernel.
        ids: optional ``[B]`` ids of the rows of ``x`` and ``y`` (then
            ``B' = B``; rows with equal ids must be equal).

    Returns:
        scalar :math:`\ge 0` up to rounding; 0 when ``x`` and ``y`` are the
        same sample.
    """
    if x.dim() != 2 or y.dim() != 2 or x.size(1) != y.size(1):
        raise ValueError(f"mmd_loss expects [B, d] and [B', d] tensors, "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")
    if isinstance(sigmas, (int, float)):
        sigmas = (float(sigmas),)
    if len(sigmas) == 0 or any(s <= 0 for s in sigmas):
        raise ValueError(f"sigmas must be positive bandwidths, got {sigmas}")
    if ids is not None and (ids.shape != (x.size(0),) or y.size(0) != x.size(0)):
        raise ValueError(f"ids must have shape [B] = [{x.size(0)}] with x and y of B rows, got "
                         f"{tuple(ids.shape)} for {tuple(x.shape)} and {tuple(y.shape)}")
    w = None
    if _compactable(ids, x, y):
        counts, (x, y) = compact_rows(ids, x, y)
        w = counts.to(torch.promote_types(x.dtype, torch.float32))
    if normalize:
        x = F.normalize(x, dim=-1)
        y = F.normalize(y, dim=-1)
        cs = tuple(1.0 / (2.0 * float(s) * float(s)) for s in sigmas)
        km = _UnitGaussianKernelMean.apply
        return km(x, x, cs, True, w, w) + km(y, y, cs, True, w, w) - 2.0 * km(x, y, cs, False, w, w)

    def kernel_mean(u: Tensor, v: Tensor) -> Tensor:
        d2 = _sq_dists(u, v)
        k = sum(torch.exp(d2 / (-2.0 * s * s)) for s in sigmas)
        return k.mean() if w is None else w @ k @ w / w.sum().square()

    return kernel_mean(x, x) + kernel_mean(y, y) - 2.0 * kernel_mean(x, y)


def neg_cosine(p: Tensor, z: Tensor) -> Tensor:
    r"""Negative cosine similarity with a stop-gradient on the target (BM3).

    .. math::
        \mathcal{L} = -\frac{1}{B}\sum_{i}\frac{p_i^\top \operatorname{sg}(z_i)}
        {\lVert p_i\rVert\,\lVert z_i\rVert}

    ``z`` is detached: no gradient ever reaches it (BYOL/SimSiam-style target).

    Args:
        p: ``[B, d]`` online (predicted) view.
        z: ``[B, d]`` target view.

    Returns:
        scalar in :math:`[-1, 1]`.
    """
    if p.shape != z.shape:
        raise ValueError(f"neg_cosine expects equal shapes, got {tuple(p.shape)} and {tuple(z.shape)}")
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


def orthogonal_loss(a: Tensor, b: Tensor, center: bool = True, reduction: str = "mean",
                    eps: float = 1e-6, detach_norm: bool = False) -> Tensor:
    r"""Difference (orthogonality) constraint between two ``[B, d]`` views (REARM).

    Columns are centred over the batch (``center=True``), rows are divided by
    their L2 norm (plus ``eps``), and the cross-correlation of the two
    feature sets is penalised:

    .. math::
        \tilde A = \frac{A - \bar A}{\lVert A - \bar A\rVert_{\text{row}} + \epsilon},\quad
        \mathcal{L} = \frac{1}{d_a d_b}\big\lVert \tilde A^\top \tilde B\big\rVert_F^2
        \quad(\texttt{reduction='mean'})

    or the plain squared Frobenius norm with ``reduction='sum'``. It is 0 when
    the (centred, row-normalised) feature columns of ``a`` are orthogonal to
    those of ``b`` over the batch, and positive otherwise. Defaults follow
    REARM's code (centring, mean of squared entries).

    Args:
        a: ``[B, d_a]`` first view (e.g. modality-unique part of image).
        b: ``[B, d_b]`` second view.
        center: subtract the batch mean of each column first.
        reduction: ``'mean'`` (over the ``d_a x d_b`` entries) or ``'sum'``.
        eps: added to the row norms.
        detach_norm: treat the row norms
            :math:`\lVert A - \bar A\rVert_{\text{row}}` as constants in the
            backward pass (REARM's code: ``.detach()``); by default they are
            differentiated through. The value is the same either way.

    Returns:
        scalar :math:`\ge 0`.
    """
    if a.dim() != 2 or b.dim() != 2 or a.size(0) != b.size(0):
        raise ValueError(f"orthogonal_loss expects [B, d_a] and [B, d_b] tensors, "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if center:
        a = a - a.mean(0, keepdim=True)
        b = b - b.mean(0, keepdim=True)
    na = torch.linalg.vector_norm(a, dim=1, keepdim=True)
    nb = torch.linalg.vector_norm(b, dim=1, keepdim=True)
    if detach_norm:
        na, nb = na.detach(), nb.detach()
    a = a / (na + eps)
    b = b / (nb + eps)
    c = (a.t() @ b).pow(2)
    return c.mean() if reduction == "mean" else c.sum()


# --------------------------------------------------------------------------- modules

class BPRLoss(torch.nn.Module):
    """Module form of :func:`bpr_loss`."""

    def forward(self, pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
        return bpr_loss(pos_scores, neg_scores)


class L2Reg(torch.nn.Module):
    """Module form of :func:`l2_reg`."""

    def __init__(self, squared: bool = True):
        super().__init__()
        self.squared = squared

    def forward(self, *tensors: Tensor, batch_size: int | None = None) -> Tensor:
        return l2_reg(*tensors, batch_size=batch_size, squared=self.squared)


class InfoNCE(torch.nn.Module):
    """Module form of :func:`info_nce`."""

    def __init__(self, temperature: float = 0.2, symmetric: bool = False):
        super().__init__()
        self.temperature = temperature
        self.symmetric = symmetric

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return info_nce(a, b, self.temperature, self.symmetric)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, symmetric={self.symmetric}"


class PoolInfoNCE(torch.nn.Module):
    """Module form of :func:`pool_info_nce`."""

    def __init__(self, temperature: float = 0.2, reduction: str = "sum"):
        super().__init__()
        self.temperature = temperature
        self.reduction = reduction

    def forward(self, anchor: Tensor, pool: Tensor | tuple[Tensor, Tensor],
                positive_ids: Tensor) -> Tensor:
        return pool_info_nce(anchor, pool, positive_ids, self.temperature, self.reduction)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}"


class MMDLoss(torch.nn.Module):
    """Module form of :func:`mmd_loss`."""

    def __init__(self, sigmas: float | Sequence[float] = (1.0,), normalize: bool = True):
        super().__init__()
        self.sigmas = (float(sigmas),) if isinstance(sigmas, (int, float)) else tuple(sigmas)
        self.normalize = normalize

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return mmd_loss(x, y, self.sigmas, self.normalize)

    def extra_repr(self) -> str:
        return f"sigmas={self.sigmas}, normalize={self.normalize}"


class NegCosine(torch.nn.Module):
    """Module form of :func:`neg_cosine`."""

    def forward(self, p: Tensor, z: Tensor) -> Tensor:
        return neg_cosine(p, z)


class OrthogonalLoss(torch.nn.Module):
    """Module form of :func:`orthogonal_loss`."""

    def __init__(self, center: bool = True, reduction: str = "mean", detach_norm: bool = False):
        super().__init__()
        self.center = center
        self.reduction = reduction
        self.detach_norm = detach_norm

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return orthogonal_loss(a, b, self.center, self.reduction, detach_norm=self.detach_norm)
