r"""LightGCN-style propagation layers on sparse operations.

* :class:`LightGCNConv`: one parameter-free propagation step, a PyG
  :class:`~torch_geometric.nn.conv.MessagePassing` layer that runs on a
  homogeneous graph or directly on a bipartite edge type;
* :class:`ItemItemConv`: weighted propagation over an item-item graph
  (FREEDOM / LATTICE / MambaRec's item view).

Graph inputs
------------
``edge_index`` may be

* a :class:`~mmgraph.graph.SparseAdj` ``A`` (``[N_dst, N_src]``): the output
  is ``A @ x_src`` through the fused sparse kernel (``message_and_aggregate``),
  with weights used as given (already normalised, e.g.
  :func:`~mmgraph.graph.bipartite_adjacency`);
* a ``torch.sparse`` tensor or ``torch_sparse.SparseTensor`` ``adj_t``
  (PyG convention, ``[N_dst, N_src]``): same, weights used as given;
* an ``edge_index`` ``[2, E]`` in PyG's message-flow convention (messages from
  ``edge_index[0]`` to ``edge_index[1]``), with optional ``edge_weight``;
  normalised on the fly when ``normalize=True``. A
  :class:`torch_geometric.EdgeIndex` sorted by target (``sort_order='col'``,
  what :meth:`SparseAdj.to_edge_index() <mmgraph.graph.SparseAdj.to_edge_index>`
  returns) runs as one fused sparse product (``EdgeIndex.matmul``) instead of
  gather/scatter; other ``edge_index`` inputs go through ``message``.
"""
from __future__ import annotations

import warnings
from typing import Final, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric import EdgeIndex
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.typing import Adj, OptTensor, Size
from torch_geometric.utils import scatter, spmm

from ..graph.bipartite import bipartite_gcn_norm
from ..graph.sparse import SparseAdj

PairTensor = Tuple[Tensor, Optional[Tensor]]


class LightGCNConv(MessagePassing):
    r"""The light graph convolution of LightGCN (He et al., SIGIR'20).

    .. math::
        \mathbf{x}^{\prime}_i = \sum_{j \in \mathcal{N}(i)} w_{j,i}\, \mathbf{x}_j,
        \qquad w_{j,i} = \frac{e_{j,i}}{\sqrt{\deg(j)\,\deg(i)}} \text{ if normalize}

    No weights, no bias, no non-linearity, no self-loops (``aggr='add'``).

    Homogeneous use (``x`` a tensor ``[N, d]``)::

        adj = bipartite_adjacency(data)              # [(U+I), (U+I)] SparseAdj
        h = conv(torch.cat([x_user, x_item]), adj)   # = adj @ x, fused sparse path

    Bipartite use, directly on the edge type ``('user', 'interacts', 'item')``
    (``x = (x_src, x_dst)`` like PyG's bipartite convolutions)::

        ei = data['user', 'interacts', 'item'].edge_index
        w = bipartite_gcn_norm(ei, U, I)             # or normalize=True
        x_item_new = conv((x_user, x_item), ei, w)          # user -> item
        x_user_new = conv((x_item, x_user), ei.flip(0), w)  # item -> user

    Args:
        normalize: for ``edge_index`` inputs, normalise the weights
            symmetrically: ``gcn_norm`` without self-loops on homogeneous
            graphs (identical to :class:`torch_geometric.nn.LGConv`), source
            and target degrees on bipartite graphs (:func:`bipartite_gcn_norm`).
            Sparse-matrix inputs are always used as given.
        **kwargs: :class:`~torch_geometric.nn.conv.MessagePassing` arguments.

    Shapes:
        - input: ``x`` ``[N, d]`` or ``([N_src, d], [N_dst, d] | None)``;
          graph as described in the module docs; ``edge_weight`` ``[E]``
        - output: ``[N_dst, d]``
    """
    # a target-sorted EdgeIndex (plus edge_weight) goes to message_and_aggregate
    SUPPORTS_FUSED_EDGE_INDEX: Final[bool] = True

    def __init__(self, normalize: bool = True, **kwargs):
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)
        self.normalize = normalize

    def forward(self, x: Union[Tensor, PairTensor], edge_index: Union[Adj, SparseAdj],
                edge_weight: OptTensor = None, size: Size = None) -> Tensor:
        if isinstance(edge_index, SparseAdj):
            # Fused sparse path (MessagePassing.propagate only dispatches torch.sparse
            # tensors and SparseTensor, so SparseAdj goes to the kernel directly).
            return self.message_and_aggregate(edge_index, x)
        if isinstance(edge_index, Tensor) and not edge_index.is_sparse and \
                edge_index.layout == torch.strided and self.normalize:
            if isinstance(x, Tensor):
                edge_index, edge_weight = gcn_norm(edge_index, edge_weight, x.size(self.node_dim),
                                                   add_self_loops=False, flow=self.flow,
                                                   dtype=x.dtype)
            else:
                n_src = x[0].size(self.node_dim)
                n_dst = x[1].size(self.node_dim) if x[1] is not None else \
                    (size[1] if size is not None and size[1] is not None else n_src)
                src, dst = (0, 1) if self.flow == "source_to_target" else (1, 0)
                ei = edge_index[[src, dst]] if src == 1 else edge_index
                edge_weight = bipartite_gcn_norm(ei, n_src, n_dst, edge_weight).to(x[0].dtype)
                if size is None and self.flow == "source_to_target":
                    size = (n_src, n_dst)
        if isinstance(x, Tensor):
            x = (x, x)
        return self.propagate(edge_index, x=x, edge_weight=edge_weight, size=size)

    def message(self, x_j: Tensor, edge_weight: OptTensor) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(self, adj_t: Union[Adj, SparseAdj],
                              x: Union[Tensor, PairTensor], edge_weight: OptTensor = None) -> Tensor:
        if isinstance(adj_t, EdgeIndex):
            return self._edge_index_matmul(adj_t, x, edge_weight)
        x_src = x[0] if isinstance(x, (tuple, list)) else x
        if isinstance(adj_t, SparseAdj):
            return adj_t.matmul(x_src)
        return spmm(adj_t, x_src, reduce=self.aggr)

    def _edge_index_matmul(self, ei: EdgeIndex, x: Union[Tensor, PairTensor],
                           edge_weight: OptTensor) -> Tensor:
        """Sum of the weighted messages over a sorted ``EdgeIndex`` (PyG dispatches
        only target-sorted ones here; ``flow`` decides which row holds the targets)."""
        s2t = self.flow == "source_to_target"
        x_src = (x[0] if s2t else x[1]) if isinstance(x, (tuple, list)) else x
        if edge_weight is not None and edge_weight.dtype != x_src.dtype:
            edge_weight = edge_weight.to(x_src.dtype)
        if s2t or ei.is_sorted_by_row:
            # A_ei^T x (targets = row 1, sorted by column) or A_ei x (targets = row 0)
            with warnings.catch_warnings():  # torch's "sparse invariant checks" notice
                warnings.simplefilter("ignore")
                return ei.matmul(x_src, input_value=edge_weight, reduce="sum", transpose=s2t)
        # target_to_source on a column-sorted EdgeIndex: no CSR of the targets
        src, dst = ei.as_tensor()[1], ei.as_tensor()[0]
        msg = x_src.index_select(self.node_dim, src)
        msg = msg if edge_weight is None else edge_weight.view(-1, 1) * msg
        return scatter(msg, dst, dim=self.node_dim, dim_size=ei.get_sparse_size(0), reduce="sum")

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(normalize={self.normalize})"


class ItemItemConv(torch.nn.Module):
    r"""Weighted propagation over an item-item graph, ``num_layers`` times.

    .. math::
        \mathbf H^{(l+1)} = \mathbf S\, \mathbf H^{(l)}, \qquad
        \text{out} = \mathbf H^{(L)} \ (\text{readout}='last')

    with ``S`` an item-item :class:`~mmgraph.graph.SparseAdj` such as
    :func:`~mmgraph.graph.modality_knn_graph` (FREEDOM, LATTICE, MambaRec use
    the last layer). ``edge_index``/``edge_weight`` inputs follow
    :class:`LightGCNConv` (PyG flow, used as given unless ``normalize``).

    Args:
        num_layers: propagation steps ``L`` (>= 0).
        readout: ``'last'`` (default), ``'mean'`` of layers ``0..L`` or ``'sum'``.
        normalize: forwarded to the inner :class:`LightGCNConv` for
            ``edge_index`` inputs.

    Shapes: ``x`` ``[I, d]`` -> ``[I, d]``.
    """

    def __init__(self, num_layers: int = 1, readout: str = "last", normalize: bool = False):
        super().__init__()
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        if readout not in ("last", "mean", "sum"):
            raise ValueError(f"readout must be 'last', 'mean' or 'sum', got {readout!r}")
        self.num_layers = num_layers
        self.readout = readout
        self.conv = LightGCNConv(normalize=normalize)

    def reset_parameters(self) -> None:
        """No parameters; present for the PyG layer convention."""

    def forward(self, x: Tensor, adj: Union[Adj, SparseAdj], edge_weight: OptTensor = None) -> Tensor:
        h = x
        acc = x if self.readout != "last" else None
        for _ in range(self.num_layers):
            h = self.conv(h, adj, edge_weight)
            if acc is not None:
                acc = acc + h
        if self.readout == "last":
            return h
        return acc / (self.num_layers + 1) if self.readout == "mean" else acc

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}, readout={self.readout!r}"


__all__ = ["LightGCNConv", "ItemItemConv"]
