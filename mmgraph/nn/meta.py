r"""Meta-networks: transforms generated per node from shared knowledge.

:class:`LowRankMetaTransform`: REARM's meta-network, modality-shared
knowledge -> a personalised rank-``r`` transform of the ID embedding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LowRankMetaTransform", "META_GRADIENTS"]

#: how the meta-network's generated transform passes gradients (see LowRankMetaTransform)
META_GRADIENTS = ("frozen", "detach_input", "full")


class _KnowledgeMLP(nn.Module):
    """``normalize(Linear(PReLU(Linear(x))))``: knowledge -> flattened transform."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.lin1 = nn.Linear(in_dim, hidden)
        self.act = nn.PReLU()
        self.lin2 = nn.Linear(hidden, out_dim)

    def reset_parameters(self) -> None:
        self.lin1.reset_parameters()
        self.act.reset_parameters()
        self.lin2.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.lin2(self.act(self.lin1(x))), dim=-1)


class LowRankMetaTransform(nn.Module):
    r"""REARM's meta-network: modality-shared knowledge -> personalised low-rank transform.

    .. math::
        \kappa_n = W_c\, h_n \in \mathbb R^{d},\qquad
        M^{(1)}_n = \sigma_0\big(G_1(\kappa_n) + \overline{G_1}\big) \in \mathbb R^{d\times r},
        \qquad
        M^{(2)}_n = \sigma_0\big(G_2(\kappa_n) + \overline{G_2}\big) \in \mathbb R^{r\times d},

    .. math::
        s_n = \big(e_n^\top M^{(1)}_n\big) M^{(2)}_n \in \mathbb R^{d},

    with ``h_n`` ``[N d]`` the node's modality parts, ``e_n`` ``[d]`` its ID
    embedding, ``G_1, G_2`` two-layer MLPs (PReLU, L2-normalised output,
    reshaped to ``[d, r]`` / ``[r, d]``), :math:`\overline{G}` their mean over
    all nodes and :math:`\sigma_0` a softmax over the first matrix axis (each
    column sums to 1: over ``d`` for :math:`M^{(1)}`, over ``r`` for
    :math:`M^{(2)}`), as in the authors' code.

    Args:
        in_dim: width of ``h`` (``N d``).
        dim: ``d``.
        rank: ``r``.
        gradient: ``'frozen'`` (``W_c`` fixed, no gradient through ``kappa``:
            the authors' ``.detach()``), ``'detach_input'`` (``W_c`` trained,
            ``h`` detached) or ``'full'``.

    Shapes: ``forward(e [n, d], h [n, in_dim]) -> [n, d]``; memory ``O(n d r)``.
    """

    def __init__(self, in_dim: int, dim: int, rank: int, gradient: str = "frozen"):
        super().__init__()
        if gradient not in META_GRADIENTS:
            raise ValueError(f"gradient must be one of {META_GRADIENTS}, got {gradient!r}")
        self.dim, self.rank, self.gradient = dim, rank, gradient
        self.compress = nn.Linear(in_dim, dim)
        self.gen_in = _KnowledgeMLP(dim, dim * rank, dim * rank)
        self.gen_out = _KnowledgeMLP(dim, dim * rank, dim * rank)
        if gradient == "frozen":
            self.compress.requires_grad_(False)

    def reset_parameters(self) -> None:
        self.compress.reset_parameters()
        self.gen_in.reset_parameters()
        self.gen_out.reset_parameters()

    def forward(self, e: Tensor, h: Tensor) -> Tensor:
        d, r = self.dim, self.rank
        if self.gradient == "frozen":
            kappa = self.compress(h).detach()
        elif self.gradient == "detach_input":
            kappa = self.compress(h.detach())
        else:
            kappa = self.compress(h)
        m1 = self.gen_in(kappa).view(-1, d, r)
        m2 = self.gen_out(kappa).view(-1, r, d)
        m1 = torch.softmax(m1 + m1.mean(0), dim=1)
        m2 = torch.softmax(m2 + m2.mean(0), dim=1)
        mid = torch.bmm(e.unsqueeze(1), m1)                 # [n, 1, r]
        return torch.bmm(mid, m2).squeeze(1)                # [n, d]

    def extra_repr(self) -> str:
        return f"dim={self.dim}, rank={self.rank}, gradient={self.gradient!r}"
