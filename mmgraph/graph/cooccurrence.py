r"""Co-occurrence graphs (user-user, item-item) and user-interest similarity graphs.

These are the homogeneous graphs REARM and DualGNN propagate over.

Co-occurrence
-------------
With the binary training interaction matrix ``R`` (``[U, I]``), the number of
users two items share is ``C_I = R^T R`` and the number of items two users
share is ``C_U = R R^T``. Each row keeps its top-``k`` other nodes by count
(self excluded, only positive counts, ties broken by the lower node id) and
weights them by

* ``'softmax'``: a softmax over the kept counts of the row (DualGNN, REARM);
* ``'count'``: the raw counts.

Rows with fewer than ``k`` co-occurring nodes keep what they have
(``fill='none'``), or are filled as REARM's code does (``fill='repeat'``, its
``topk_sample``): a row with ``0 < n < k`` nodes is padded to ``k`` entries by
repeating ``k - n`` of its nodes drawn uniformly at random, so node ``j``
drawn ``r_j`` times gets the softmax weight of ``c_j + log(1 + r_j)``; a row
without any co-occurrence gets the ``k`` nodes with the most training
interactions (ties to the lower id) weighted by the softmax of their
interaction counts divided by the counts' sum.

The counts are computed block-wise, ``C[s:e] = (M\,M[s:e]^T)^T`` with one
sparse-dense product per block (``M = R`` or ``R^T``), so memory is
``O(n x chunk)``: no dense ``n x n`` matrix.

User interest
-------------
A user's interest profile in modality ``m`` is the mean of the modality
features of the items they interacted with, ``P = D_U^{-1} R X_m``; the
user-user graph is the cosine kNN graph of ``P`` (:func:`mmgraph.graph.knn_graph`,
REARM's ``get_knn_adj_mat`` conventions: binary, self included, ``'sym'``).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import ITEM, USER, feature_key, modality_names, num_items, num_users, \
    split_edge_index
from ._cache import cached
from .bipartite import interaction_matrix, interaction_matrix_from_edges
from .knn import DEFAULT_BLOCK_BYTES, knn_adjacency
from .sparse import SparseAdj

SIDES = ("item", "user")
WEIGHTINGS = ("softmax", "count")
FILLS = ("none", "repeat")


def cooccurrence_topk(edge_index: Tensor, num_users: int, num_items: int, side: str = "item",
                      k: int = 10, *, chunk_size: Optional[int] = None,
                      block_bytes: int = DEFAULT_BLOCK_BYTES) -> tuple[Tensor, Tensor, Tensor]:
    r"""Top-``k`` co-occurring nodes of every ``side`` node.

    Returns:
        ``(counts [n, k] float, indices [n, k] long, mask [n, k] bool)``;
        ``mask`` marks real entries (positive count), rows are ordered by
        decreasing count then increasing id; self is excluded.
    """
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    r = interaction_matrix_from_edges(edge_index, num_users, num_items)  # binary [U, I]
    m = r.t() if side == "item" else r  # [n, other]
    n, other = m.size
    k = min(k, max(n - 1, 0))
    dev = edge_index.device
    if k == 0:
        z = torch.zeros(n, 0, device=dev)
        return z, z.long(), z.bool()
    if chunk_size is None:
        # per chunk row: dense input column (other floats), counts (n floats), keys (n int64)
        chunk_size = int(max(1, min(n, block_bytes // max(1, 16 * n + 4 * other))))
    rowptr, col = m.rowptr, m.col
    row = m.row
    tiebreak = (n - 1) - torch.arange(n, device=dev)  # lower id -> larger key
    counts = torch.empty(n, k, device=dev)
    indices = torch.empty(n, k, dtype=torch.long, device=dev)
    for s in range(0, n, chunk_size):
        e = min(n, s + chunk_size)
        lo, hi = rowptr[s], rowptr[e]
        # dense M[s:e]^T, [other, c]
        block = torch.zeros(other, e - s, device=dev)
        block[col[lo:hi], row[lo:hi] - s] = 1.0
        c = m.matmul(block).t()  # C[s:e] = (M M[s:e]^T)^T, [c, n]
        key = c.round().long()
        key.diagonal(offset=s).fill_(-1)  # exclude self
        key = key * n + tiebreak
        top = key.topk(k, dim=1, sorted=True).values
        counts[s:e] = torch.div(top, n, rounding_mode="floor").to(counts.dtype)
        indices[s:e] = (n - 1) - (top - torch.div(top, n, rounding_mode="floor") * n)
    mask = counts > 0
    return counts, indices, mask


def _fill_repeat(counts: Tensor, idx: Tensor, mask: Tensor, degree: Tensor,
                 seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """``fill='repeat'`` (module docstring): ``(logits [n, k], idx [n, k], mask [n, k])``."""
    n, k = counts.shape
    logits = counts.clone()
    kept = mask.sum(1)                                           # real entries come first
    short = (kept > 0) & (kept < k)
    if short.any():
        g = torch.Generator(device=counts.device).manual_seed(seed)
        draw = torch.rand(n, k, generator=g, device=counts.device)
        pick = (draw * kept.unsqueeze(1)).long()                 # uniform over the row's nodes
        pad = (torch.arange(k, device=counts.device) >= kept.unsqueeze(1)) & short.unsqueeze(1)
        mult = torch.ones_like(counts).scatter_add_(1, pick, pad.to(counts.dtype))
        logits = torch.where(mask, logits + mult.log(), logits)
    empty = kept == 0
    if empty.any():
        top = torch.sort(-degree, stable=True).indices[:k]
        d = degree[top].to(counts.dtype)
        idx = torch.where(empty.unsqueeze(1), top.unsqueeze(0), idx)
        logits = torch.where(empty.unsqueeze(1), (d / d.sum().clamp_min(1)).unsqueeze(0), logits)
        mask = mask | empty.unsqueeze(1)
    return logits, idx, mask


def cooccurrence_graph_from_edges(edge_index: Tensor, num_users: int, num_items: int,
                                  side: str = "item", k: int = 10, weighting: str = "softmax",
                                  *, fill: str = "none", seed: int = 0,
                                  chunk_size: Optional[int] = None,
                                  backend: str = "auto") -> SparseAdj:
    """:func:`cooccurrence_graph` on an explicit ``[2, E]`` user-item edge list."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    if fill == "repeat" and weighting != "softmax":
        raise ValueError("fill='repeat' (REARM's topk_sample) needs weighting='softmax'")
    counts, idx, mask = cooccurrence_topk(edge_index, num_users, num_items, side, k,
                                          chunk_size=chunk_size)
    n = num_items if side == "item" else num_users
    if fill == "repeat" and counts.size(1) > 0:
        degree = torch.bincount(edge_index[1 if side == "item" else 0], minlength=n)
        counts, idx, mask = _fill_repeat(counts, idx, mask, degree, seed)
    if weighting == "softmax":
        w = counts.masked_fill(~mask, float("-inf")).softmax(dim=1)
    else:
        w = counts
    row = torch.arange(n, device=idx.device).unsqueeze(1).expand_as(idx)
    ei = torch.stack([row[mask], idx[mask]], dim=0)
    return SparseAdj.from_edge_index(ei, w[mask], (n, n), symmetric=False, coalesce=False,
                                     backend=backend)


def cooccurrence_graph(data: HeteroData, side: str = "item", k: int = 10,
                       weighting: str = "softmax", store: bool = True, *,
                       fill: str = "none", seed: int = 0,
                       chunk_size: Optional[int] = None, cache: bool = True,
                       backend: str = "auto") -> SparseAdj:
    r"""Item-item (``side='item'``) or user-user (``side='user'``) co-occurrence graph.

    Counts come from the training interactions; each row keeps its top-``k``
    co-occurring nodes (self excluded, positive counts only, lower id wins
    ties), weighted by ``'softmax'`` over the kept counts or raw ``'count'``.
    ``fill='repeat'`` fills short and empty rows as REARM's code does (module
    docstring; ``seed`` seeds its draws). Stored (``store=True``) as edge type
    ``(side, 'co_occurs', side)`` with ``edge_index`` (row = node, column =
    neighbour) and ``edge_weight``.
    """
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    ei = split_edge_index(data, "train")
    u, i = num_users(data), num_items(data)
    adj = cached(data, ("cooccurrence", side, k, weighting, fill, seed, backend), (ei,),
                 lambda: cooccurrence_graph_from_edges(ei, u, i, side, k, weighting, fill=fill,
                                                       seed=seed, chunk_size=chunk_size,
                                                       backend=backend),
                 cache)
    if store:
        et = (side, "co_occurs", side)
        data[et].edge_index = adj.edge_index
        data[et].edge_weight = adj.value
    return adj


def user_profiles(data: HeteroData, modality: str) -> Tensor:
    r"""``[U, dim]`` mean modality features of each user's training items (zeros if none)."""
    key = feature_key(modality)
    if key not in data[ITEM]:
        raise KeyError(f"the data has no item modality {modality!r} (data['item'].{key}); "
                       f"available: {modality_names(data)}")
    x = data[ITEM][key]
    r = interaction_matrix(data, "row")
    if r.device != x.device:
        r = r.to(x.device)
    return r.matmul(x)


def user_interest_graph(data: HeteroData, modality: str, k: int = 10,
                        normalization: Optional[str] = "sym", store: bool = True, *,
                        include_self: bool = True, weighted: bool = False,
                        chunk_size: Optional[int] = None, cache: bool = True,
                        backend: str = "auto") -> SparseAdj:
    r"""User-user cosine kNN graph over the users' interest profiles in ``modality``.

    Profile = mean of the interacted items' ``x_<modality>``
    (:func:`user_profiles`); graph = :func:`mmgraph.graph.knn_graph` of the
    profiles with the given ``k``, ``normalization``, ``include_self``,
    ``weighted``. Stored as edge type ``('user', 'similar_interest_<m>', 'user')``.
    Memory: the ``[U, dim]`` profiles plus one ``[chunk, U]`` block.
    """
    key = feature_key(modality)
    if key not in data[ITEM]:
        raise KeyError(f"the data has no item modality {modality!r} (data['item'].{key}); "
                       f"available: {modality_names(data)}")
    x = data[ITEM][key]
    ei = split_edge_index(data, "train")

    def build() -> SparseAdj:
        prof = user_profiles(data, modality)
        return knn_adjacency(prof, k, chunk_size, normalization, include_self=include_self,
                             weighted=weighted, backend=backend)

    adj = cached(data, ("user_interest", modality, k, normalization, include_self, weighted,
                        backend), (x, ei), build, cache)
    if store:
        et = (USER, f"similar_interest_{modality}", USER)
        data[et].edge_index = adj.edge_index
        data[et].edge_weight = adj.value
    return adj


__all__ = ["cooccurrence_topk", "cooccurrence_graph", "cooccurrence_graph_from_edges",
           "user_profiles", "user_interest_graph"]
