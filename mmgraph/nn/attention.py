r"""Attention blocks.

:class:`ScalarTokenAttention`: single-head attention in which each of the
``d`` coordinates of a node's vector is a one-dimensional token (REARM's
self- and cross-modal attention), with a fused kernel and closed-form
backward pass.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ScalarTokenAttention"]


class _ScalarAttentionDropout(torch.autograd.Function):
    r"""``o_i = sum_j dropout_p(softmax_j(q_i k_j)) v_j`` row by row, fused.

    ``q, k, v`` are ``[n, d]``, ``0 < p < 1``. The row maximum of
    ``q_i k_j`` is ``q_i max_j k_j`` or ``q_i min_j k_j`` (no pass over the
    ``[n, d, d]`` scores); the weights stay unnormalised
    (``e_ij = exp(q_i k_j - m_i)``, their row sums ``Z_i`` divide ``[n, d]``
    results); a weight is kept when a uniform draw is ``>= p`` and scaled by
    ``s = 1 / (1 - p)``. With ``A = e / Z``, ``Ã = s A ∘ keep``,
    ``g = dL/do`` and ``dL/dS_ij = A_ij g_i (s\,keep_ij v_j - o_i)`` the
    gradient is closed-form,

    .. math::
        \frac{\partial L}{\partial q_i} = g_i\Big(\sum_j \tilde A_{ij} v_j k_j
            - o_i \sum_j A_{ij} k_j\Big),\quad
        \frac{\partial L}{\partial k_j} = v_j \sum_i \tilde A_{ij} g_i q_i
            - \sum_i A_{ij} g_i q_i o_i,\quad
        \frac{\partial L}{\partial v_j} = \sum_i \tilde A_{ij} g_i :

    batched products with ``[n, d, <=2]`` right-hand sides instead of
    autograd's passes over the scores, the softmax and the mask. Saved: ``e``
    and ``e ∘ keep`` (``[n, d, d]`` each).
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, p: float) -> Tensor:
        row_max = torch.where(q >= 0, q * k.amax(1, keepdim=True), q * k.amin(1, keepdim=True))
        e = torch.mul(q.unsqueeze(2), k.unsqueeze(1))                   # [n, d, d]
        e.sub_(row_max.unsqueeze(2)).exp_()
        z = e.sum(2)                                                     # [n, d]
        # rand >= p is cheaper on CPU than bernoulli_ (what F.dropout uses)
        ek = torch.rand_like(e).ge_(p).mul_(e)
        s = 1.0 / (1.0 - p)
        o = torch.bmm(ek, v.unsqueeze(2)).squeeze(2) * (s / z)
        ctx.save_for_backward(q, k, v, e, ek, z, o)
        ctx.s = s
        return o

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor):
        q, k, v, e, ek, z, o = ctx.saved_tensors
        s = ctx.s
        gz = g / z                                                       # rows of A = e / Z
        r1 = torch.bmm(ek, (v * k).unsqueeze(2)).squeeze(2)
        r2 = torch.bmm(e, k.unsqueeze(2)).squeeze(2)
        gq = gz * (s * r1 - o * r2)
        c1 = torch.bmm(ek.transpose(1, 2), torch.stack([gz, gz * q], 2))
        c2 = torch.bmm(e.transpose(1, 2), (gz * q * o).unsqueeze(2)).squeeze(2)
        return gq, s * v * c1[..., 1] - c2, s * c1[..., 0], None


class ScalarTokenAttention(nn.Module):
    r"""Attention over the coordinates of a vector, each a one-dimensional token.

    For a query vector :math:`x \in \mathbb R^d` and a key/value vector
    :math:`y \in \mathbb R^d` (one pair per row of the input):

    .. math::
        q_i = a_q x_i + b_q,\quad k_j = a_k y_j + b_k,\quad v_j = a_v y_j + b_v,
        \qquad
        o_i = a_o \sum_{j=1}^{d}
              \operatorname{dropout}\big(\operatorname{softmax}_j(q_i k_j)\big)\, v_j + b_o

    with six scalars and two output scalars, i.e. exactly
    ``torch.nn.MultiheadAttention(embed_dim=1, num_heads=1, dropout=p)``
    applied to ``x.unsqueeze(-1)`` (REARM's modality attention). Without
    dropout (evaluation, or ``dropout=0``) computed by
    :func:`torch.nn.functional.scaled_dot_product_attention` on
    ``[n, 1, d, 1]`` (its fused kernel); with dropout by
    :class:`_ScalarAttentionDropout` (closed-form gradients, two ``[n, d, d]``
    buffers), which SDPA's fused kernels do not cover on CPU.
    Memory and time are ``O(n d^2)``.

    Args:
        dropout: dropout probability on the attention weights (training only);
            ``1`` drops every weight (the output is then ``b_o``).

    Shapes: ``query`` ``[n, d]``, ``key_value`` ``[n, d]`` -> ``[n, d]``.
    """

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout}")
        self.dropout = float(dropout)
        self.in_weight = nn.Parameter(torch.empty(3))
        self.in_bias = nn.Parameter(torch.empty(3))
        self.out_weight = nn.Parameter(torch.empty(1))
        self.out_bias = nn.Parameter(torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # the initialisation of nn.MultiheadAttention(1, 1): xavier-uniform
        # in-projection ([3, 1]: bound sqrt(6 / 4)), zero biases, out-projection
        # as nn.Linear(1, 1) (bound 1)
        bound = math.sqrt(6.0 / 4.0)
        nn.init.uniform_(self.in_weight, -bound, bound)
        nn.init.zeros_(self.in_bias)
        nn.init.uniform_(self.out_weight, -1.0, 1.0)
        nn.init.zeros_(self.out_bias)

    @classmethod
    def from_multihead(cls, mha: nn.MultiheadAttention) -> "ScalarTokenAttention":
        """Copy the weights of a ``nn.MultiheadAttention(1, 1)``."""
        if mha.embed_dim != 1 or mha.num_heads != 1:
            raise ValueError("from_multihead needs nn.MultiheadAttention(embed_dim=1, num_heads=1)")
        out = cls(mha.dropout)
        with torch.no_grad():
            out.in_weight.copy_(mha.in_proj_weight.view(3))
            out.in_bias.copy_(mha.in_proj_bias.view(3))
            out.out_weight.copy_(mha.out_proj.weight.view(1))
            out.out_bias.copy_(mha.out_proj.bias.view(1))
        return out

    def forward(self, query: Tensor, key_value: Tensor) -> Tensor:
        if query.dim() != 2 or query.shape != key_value.shape:
            raise ValueError(f"query and key_value must be [n, d] of equal shape, got "
                             f"{tuple(query.shape)} and {tuple(key_value.shape)}")
        p = self.dropout if self.training else 0.0
        if p >= 1.0:
            return self.out_bias.expand_as(query)
        if query.dtype in (torch.float16, torch.bfloat16):   # the kernel runs in float32
            query, key_value = query.float(), key_value.float()
        w, b = self.in_weight, self.in_bias
        q = query * w[0] + b[0]
        k = key_value * w[1] + b[1]
        v = key_value * w[2] + b[2]
        if p > 0.0:
            o = _ScalarAttentionDropout.apply(q, k, v, p)
        else:
            # [n, 1 head, d tokens, 1]: PyTorch's fused (flash) CPU/GPU kernel
            n, d = q.shape
            o = F.scaled_dot_product_attention(q.view(n, 1, d, 1), k.view(n, 1, d, 1),
                                               v.view(n, 1, d, 1), scale=1.0).view(n, d)
        return o * self.out_weight + self.out_bias

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}"
