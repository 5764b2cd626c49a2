r"""The LightGCN user-item encoder: ``L`` propagation steps and a layer readout."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch_geometric import EdgeIndex
from torch_geometric.data import HeteroData
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.typing import OptTensor

from ..graph.bipartite import bipartite_adjacency, bipartite_gcn_norm
from ..graph.sparse import SparseAdj
from .conv import LightGCNConv


class LightGCNEncoder(torch.nn.Module):
    r"""LightGCN propagation over the user-item graph with a layer readout.

    .. math::
        \mathbf E^{(l+1)} = \hat{\mathbf A}\, \mathbf E^{(l)}, \qquad
        \mathbf E = \sum_{l=0}^{L} \alpha_l \mathbf E^{(l)},

    with :math:`\mathbf E^{(0)} = [\mathbf X_{user}; \mathbf X_{item}]` and
    :math:`\alpha_l = 1/(L+1)` for ``readout='mean'`` (LightGCN / MMRec),
    :math:`1` for ``'sum'``, :math:`\delta_{lL}` for ``'last'``, or the given
    list of ``L+1`` weights. Parameter-free; gradients flow to the inputs.

    Args:
        num_layers: ``L`` (>= 0).
        readout: ``'mean'`` (default), ``'sum'``, ``'last'`` or a sequence of
            ``num_layers + 1`` weights.
        normalize: for ``edge_index`` graph inputs, compute the LightGCN
            weights :math:`1/\sqrt{d_u d_i}` (:func:`~mmgraph.graph.bipartite_gcn_norm`)
            of ``edge_weight`` (or ones) on each call.

    Forward:
        ``forward(x_user [U, d], x_item [I, d], adj, return_layers=False, edge_weight=None)``
        with ``adj`` one of

        * :class:`~mmgraph.graph.SparseAdj` ``[(U+I), (U+I)]``: the normalised
          homogeneous adjacency (:func:`~mmgraph.graph.bipartite_adjacency`), fastest;
        * :class:`~mmgraph.graph.SparseAdj` ``[U, I]``: a normalised interaction
          matrix ``R̂`` (:func:`~mmgraph.graph.interaction_matrix` ``'sym'``):
          users take ``R̂ E_item``, items ``R̂^T E_user``;
        * a :class:`~torch_geometric.data.HeteroData`: uses its (cached)
          :func:`~mmgraph.graph.bipartite_adjacency`;
        * the bipartite ``edge_index`` ``[2, E]`` (row 0 users, row 1 items):
          runs :class:`LightGCNConv` on the edge type in both directions;
        * a :class:`torch_geometric.EdgeIndex` of the homogeneous graph
          (``sparse_size`` ``((U+I), (U+I))``, PyG message flow, e.g.
          ``ei, w = adj.to_edge_index()`` then ``edge_weight=w``): runs
          :class:`LightGCNConv` on it, fused when sorted by target; with
          ``normalize`` its weights (or ones) are normalised once per call
          (``gcn_norm`` without self-loops), so pass ``normalize=False`` for
          already normalised weights;
        * a ``torch.sparse`` tensor / ``SparseTensor`` ``[(U+I), (U+I)]``.

        Returns ``(user [U, d], item [I, d])``, plus the list of per-layer
        ``(user_l, item_l)`` pairs (``l = 0..L``) when ``return_layers``.
    """

    def __init__(self, num_layers: int = 3, readout: Union[str, Sequence[float]] = "mean",
                 normalize: bool = True):
        super().__init__()
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        if isinstance(readout, str):
            if readout not in ("mean", "sum", "last"):
                raise ValueError(f"readout must be 'mean', 'sum', 'last' or a list of weights, "
                                 f"got {readout!r}")
            self.layer_weights: Optional[List[float]] = None
        else:
            weights = [float(w) for w in readout]
            if len(weights) != num_layers + 1:
                raise ValueError(f"readout weights must have num_layers + 1 = {num_layers + 1} "
                                 f"entries, got {len(weights)}")
            self.layer_weights = weights
            readout = "weights"
        self.num_layers = num_layers
        self.readout = readout
        self.conv = LightGCNConv(normalize=False)
        self.normalize = normalize

    def reset_parameters(self) -> None:
        """No parameters; present for the PyG layer convention."""

    # -- propagation on the chosen graph representation ----------------------
    def _propagate(self, x_user: Tensor, x_item: Tensor, adj, edge_weight: OptTensor):
        """Return ``(state_0, step)``: the layer-0 state and a function mapping the state of
        layer ``l`` to layer ``l + 1``. A state is ``(h,)`` (homogeneous, users then items)
        or ``(user, item)`` (bipartite representations)."""
        n_u, n_i = x_user.size(0), x_item.size(0)
        if isinstance(adj, HeteroData):
            adj = bipartite_adjacency(adj)
            if adj.device != x_user.device:
                adj = adj.to(x_user.device)
        if isinstance(adj, SparseAdj) and adj.size == (n_u, n_i):
            adj_t = adj.t()
            return (x_user, x_item), lambda s: (adj.matmul(s[1]), adj_t.matmul(s[0]))
        n = n_u + n_i
        if isinstance(adj, EdgeIndex) and tuple(adj.sparse_size()) == (n, n):
            w = edge_weight
            if self.normalize:
                _, w = gcn_norm(adj, edge_weight, n, add_self_loops=False, dtype=x_user.dtype)
            return (torch.cat([x_user, x_item], dim=0),), lambda s: (self.conv(s[0], adj, w),)
        if isinstance(adj, Tensor) and adj.layout == torch.strided:
            if adj.dim() != 2 or adj.size(0) != 2:
                raise ValueError(f"edge_index must have shape [2, E], got {tuple(adj.shape)}")
            w = edge_weight
            if self.normalize:
                w = bipartite_gcn_norm(adj, n_u, n_i, edge_weight).to(x_user.dtype)
            rev = adj.flip(0)
            return (x_user, x_item), lambda s: (self.conv((s[1], s[0]), rev, w, size=(n_i, n_u)),
                                                self.conv((s[0], s[1]), adj, w, size=(n_u, n_i)))
        if isinstance(adj, SparseAdj) and adj.size != (n, n):
            raise ValueError(f"adjacency of size {adj.size} matches neither the homogeneous "
                             f"view ({n}, {n}) nor the interaction matrix ({n_u}, {n_i})")
        return (torch.cat([x_user, x_item], dim=0),), lambda s: (self.conv(s[0], adj),)

    def forward(self, x_user: Tensor, x_item: Tensor, adj, return_layers: bool = False,
                edge_weight: OptTensor = None):
        if x_user.dim() != 2 or x_item.dim() != 2 or x_user.size(1) != x_item.size(1):
            raise ValueError(f"x_user and x_item must be [U, d] and [I, d], got "
                             f"{tuple(x_user.shape)} and {tuple(x_item.shape)}")
        n_u = x_user.size(0)
        state, step = self._propagate(x_user, x_item, adj, edge_weight)

        def split(s):
            return (s[0][:n_u], s[0][n_u:]) if len(s) == 1 else s

        layers: List[Tuple[Tensor, Tensor]] = [(x_user, x_item)] if return_layers else []
        w = self.layer_weights
        acc = None  # readout accumulator: fresh tensors, then updated in place (autograd-safe:
        #            add/scalar-mul do not save their inputs), saving memory passes
        h0 = state
        for layer in range(1, self.num_layers + 1):
            state = step(state)
            if return_layers:
                layers.append(split(state))
            if self.readout in ("mean", "sum"):
                acc = tuple(a + b for a, b in zip(h0, state)) if acc is None else \
                    tuple(a.add_(b) for a, b in zip(acc, state))
            elif self.readout == "weights":
                acc = tuple(a * w[0] + b * w[layer] for a, b in zip(h0, state)) if acc is None \
                    else tuple(a.add_(b, alpha=w[layer]) for a, b in zip(acc, state))
        if self.readout == "last" or self.num_layers == 0:
            out = state if self.readout != "weights" else tuple(a * w[0] for a in state)
        else:
            out = acc
            if self.readout == "mean":
                out = tuple(a.mul_(1.0 / (self.num_layers + 1)) for a in out)
        user, item = split(out)
        if return_layers:
            return user, item, layers
        return user, item

    def extra_repr(self) -> str:
        ro = self.layer_weights if self.readout == "weights" else repr(self.readout)
        return f"num_layers={self.num_layers}, readout={ro}"


__all__ = ["LightGCNEncoder"]
