r"""User-item graphs: the normalised LightGCN adjacency and the interaction matrix.

Homogeneous view
----------------
Users come first, items follow with an offset of ``U = num_users``: node ``u``
is user ``u``, node ``U + i`` is item ``i``. The adjacency is

.. math::
    A = \begin{pmatrix} 0 & R \\ R^\top & 0 \end{pmatrix}, \qquad
    \hat A = D^{-1/2} A D^{-1/2}, \quad D = \mathrm{diag}(A \mathbf 1),

without self-loops (LightGCN; MMRec), where ``R`` is the binary ``[U, I]``
training interaction matrix. Nodes with no edge get zero rows.
``normalization='mean'`` gives LATTICE's random-walk form with self-loops,
``D'^{-1} (A + I)`` with ``D' = diag((A + I) 1)``, instead.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import num_items, num_users, split_edge_index
from ._cache import cached
from .sparse import SparseAdj, _coalesce

NORMALIZATIONS = (None, "row", "sym")
#: normalisations of the square ``[(U+I), (U+I)]`` adjacency
ADJ_NORMALIZATIONS = ("sym", "mean")


def _check_bipartite(edge_index: Tensor, n_users: int, n_items: int) -> None:
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
    if edge_index.is_floating_point():
        raise ValueError(f"edge_index must be an integer tensor, got {edge_index.dtype}")
    if edge_index.numel() > 0:
        if int(edge_index.min()) < 0:
            raise ValueError("edge_index holds negative ids")
        if int(edge_index[0].max()) >= n_users:
            raise ValueError(f"user id {int(edge_index[0].max())} out of range for "
                             f"num_users={n_users}")
        if int(edge_index[1].max()) >= n_items:
            raise ValueError(f"item id {int(edge_index[1].max())} out of range for "
                             f"num_items={n_items}")


def _inv_sqrt(deg: Tensor) -> Tensor:
    out = deg.pow(-0.5)
    return out.masked_fill(deg <= 0, 0.0)


def bipartite_adjacency_from_edges(edge_index: Tensor, num_users: int, num_items: int,
                                   edge_weight: Optional[Tensor] = None, *,
                                   normalization: str = "sym",
                                   backend: str = "auto") -> SparseAdj:
    r"""``D^{-1/2} A D^{-1/2}`` of shape ``[(U+I), (U+I)]`` from explicit user-item edges
    (or, ``normalization='mean'``, ``D'^{-1}(A + I)``).

    Args:
        edge_index: ``[2, E]`` (row 0 user ids, row 1 item ids), e.g. the
            edges FREEDOM keeps after degree-sensitive pruning.
        num_users, num_items: node counts ``U``, ``I``.
        edge_weight: optional ``[E]`` weights; ``A`` then holds them in both
            off-diagonal blocks and the degrees are weighted row sums.
            Without weights, duplicate edges count once (binary ``A``); with
            weights, duplicates are summed.
        normalization: ``'sym'`` (LightGCN, default): ``D^{-1/2} A D^{-1/2}``;
            ``'mean'`` (LATTICE): self-loops added and each row divided by its
            sum, so row ``v`` averages ``v`` and its neighbours (not symmetric).
        backend: sparse kernel of the result (see :class:`SparseAdj`).

    Returns:
        a :class:`SparseAdj` (``symmetric=True`` for ``'sym'``).
    """
    if normalization not in ADJ_NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {ADJ_NORMALIZATIONS}, "
                         f"got {normalization!r}")
    _check_bipartite(edge_index, num_users, num_items)
    edge_index = edge_index.long()
    n = num_users + num_items
    u, i = edge_index[0], edge_index[1] + num_users
    row = torch.cat([u, i])
    col = torch.cat([i, u])
    if normalization == "mean":
        loop = torch.arange(n, device=row.device)
        row, col = torch.cat([row, loop]), torch.cat([col, loop])
    if edge_weight is None:
        value = torch.ones(row.numel(), device=row.device)
        reduce = "max"
    else:
        if edge_weight.dim() != 1 or edge_weight.numel() != edge_index.size(1):
            raise ValueError(f"edge_weight must have shape [E={edge_index.size(1)}], "
                             f"got {tuple(edge_weight.shape)}")
        value = torch.cat([edge_weight, edge_weight]).float() \
            if not edge_weight.is_floating_point() else torch.cat([edge_weight, edge_weight])
        reduce = "sum"
    if normalization == "mean" and edge_weight is not None:
        value = torch.cat([value, torch.ones(n, device=value.device, dtype=value.dtype)])
    rowptr, col, value = _coalesce(row, col, value, (n, n), reduce=reduce)
    if normalization == "mean":
        adj = SparseAdj(rowptr, col, value, (n, n), symmetric=False, backend=backend)
        deg = adj.sum(1)
        return adj.with_value(value / deg[adj.row], symmetric=False)
    adj = SparseAdj(rowptr, col, value, (n, n), symmetric=True, backend=backend)
    dis = _inv_sqrt(adj.sum(1))
    return adj.with_value(dis[adj.row] * value * dis[adj.col])


def bipartite_adjacency(data: HeteroData, *, normalization: str = "sym", cache: bool = True,
                        backend: str = "auto") -> SparseAdj:
    r"""The LightGCN adjacency ``D^{-1/2} A D^{-1/2}`` of ``data``'s training edges
    (``normalization='mean'``: LATTICE's ``D'^{-1}(A + I)``, see
    :func:`bipartite_adjacency_from_edges`).

    Shape ``[(U+I), (U+I)]``, users first then items offset by ``U``, no
    self-loops (``'sym'``), symmetric. Cached on ``data`` and rebuilt when the
    training ``edge_index`` is replaced or modified in place.
    """
    ei = split_edge_index(data, "train")
    u, i = num_users(data), num_items(data)
    key = ("bipartite_adjacency", u, i, backend) + (() if normalization == "sym"
                                                      else (normalization,))
    return cached(data, key, (ei,), lambda: bipartite_adjacency_from_edges(
        ei, u, i, normalization=normalization, backend=backend), cache)


def interaction_matrix_from_edges(edge_index: Tensor, num_users: int, num_items: int,
                                  normalization: Optional[str] = None, *,
                                  backend: str = "auto") -> SparseAdj:
    r"""The binary ``[U, I]`` interaction matrix ``R``, optionally normalised.

    ``normalization``:

    * ``None``: ``R`` (duplicates count once);
    * ``'row'``: ``D_U^{-1} R`` (row ``u`` averages the user's items);
    * ``'sym'``: ``D_U^{-1/2} R D_I^{-1/2}`` (the off-diagonal block of the
      LightGCN adjacency).
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; expected one of {NORMALIZATIONS}")
    _check_bipartite(edge_index, num_users, num_items)
    edge_index = edge_index.long()
    value = torch.ones(edge_index.size(1), device=edge_index.device)
    rowptr, col, value = _coalesce(edge_index[0], edge_index[1], value, (num_users, num_items),
                                   reduce="max")
    adj = SparseAdj(rowptr, col, value, (num_users, num_items), backend=backend)
    if normalization is None:
        return adj
    deg_u = adj.sum(1)
    if normalization == "row":
        inv = (1.0 / deg_u).masked_fill(deg_u <= 0, 0.0)
        return adj.with_value(inv[adj.row] * value)
    deg_i = adj.sum(0)
    return adj.with_value(_inv_sqrt(deg_u)[adj.row] * value * _inv_sqrt(deg_i)[adj.col])


def interaction_matrix(data: HeteroData, normalization: Optional[str] = None, *,
                       cache: bool = True, backend: str = "auto") -> SparseAdj:
    """``[U, I]`` training interaction matrix of ``data`` (see
    :func:`interaction_matrix_from_edges`); cached like :func:`bipartite_adjacency`."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; expected one of {NORMALIZATIONS}")
    ei = split_edge_index(data, "train")
    u, i = num_users(data), num_items(data)
    return cached(data, ("interaction_matrix", normalization, u, i, backend), (ei,),
                  lambda: interaction_matrix_from_edges(ei, u, i, normalization, backend=backend),
                  cache)


def bipartite_gcn_norm(edge_index: Tensor, num_src: int, num_dst: int,
                       edge_weight: Optional[Tensor] = None) -> Tensor:
    r"""Edge weights ``w_e / sqrt(deg_src(s) deg_dst(t))`` of a bipartite edge list.

    For the edge type ``('user', 'interacts', 'item')`` these are exactly the
    LightGCN weights of :func:`bipartite_adjacency` (for duplicate-free edges),
    usable with :class:`mmgraph.nn.LightGCNConv` in both directions::

        w = bipartite_gcn_norm(ei, U, I)
        x_item_new = conv((x_user, x_item), ei, w)
        x_user_new = conv((x_item, x_user), ei.flip(0), w)

    Degrees are (weighted) edge counts; zero-degree nodes get weight 0.
    """
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
    src, dst = edge_index[0], edge_index[1]
    if edge_weight is None:
        w = torch.ones(src.numel(), device=src.device)
    else:
        w = edge_weight if edge_weight.is_floating_point() else edge_weight.float()
    deg_src = w.new_zeros(num_src).index_add_(0, src, w)
    deg_dst = w.new_zeros(num_dst).index_add_(0, dst, w)
    return _inv_sqrt(deg_src)[src] * w * _inv_sqrt(deg_dst)[dst]


def prune_edges_by_degree(edge_index: Tensor, num_users: int, num_items: int,
                          keep_ratio: float, generator: Optional[torch.Generator] = None) -> Tensor:
    r"""FREEDOM's degree-sensitive edge pruning: sample ``round(keep_ratio * E)`` edges
    without replacement, with probability proportional to ``1 / sqrt(d_u d_i)``.

    Returns the kept ``[2, E']`` user-item edges; feed them to
    :func:`bipartite_adjacency_from_edges` each epoch.
    """
    if not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
    _check_bipartite(edge_index, num_users, num_items)
    num_keep = int(round(keep_ratio * edge_index.size(1)))
    if num_keep >= edge_index.size(1):
        return edge_index
    prob = bipartite_gcn_norm(edge_index, num_users, num_items)
    keep = torch.multinomial(prob, num_keep, replacement=False, generator=generator)
    return edge_index[:, keep]


__all__ = ["bipartite_adjacency", "bipartite_adjacency_from_edges", "interaction_matrix",
           "interaction_matrix_from_edges", "bipartite_gcn_norm", "prune_edges_by_degree"]
