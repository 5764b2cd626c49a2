"""LightGCN (He et al., SIGIR'20) on the project's propagation layers.

See ``docs/models/lightgcn.md``: the paper, the equations, every option with the authors'
name, and the differences from the authors' code.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..graph import bipartite_adjacency
from ..nn import LightGCNEncoder
from .base import Batch, Embeddings, ModelConfig, Recommender, bpr_terms, register


@dataclass
class LightGCNConfig(ModelConfig):
    """LightGCN settings.

    ``num_layers`` and ``reg_weight`` are the best of MMRec's grid
    (layers {1,2,3,4} x reg {1e-2..1e-6}) on Amazon Baby, see
    benchmarks/RESULTS.md.

    Attributes:
        num_layers: propagation layers over the user-item graph (4).
        reg_weight: weight of the L2 term on the batch's layer-0 embeddings (1e-4).
    """
    embedding_dim: int = 64
    num_layers: int = 4
    reg_weight: float = 1e-4


@register
class LightGCN(Recommender):
    r"""LightGCN: :math:`\mathbf E^{(l+1)} = \tilde{\mathbf A}\mathbf E^{(l)}`
    with :math:`\tilde{\mathbf A} = \mathbf D^{-1/2}\mathbf A\mathbf D^{-1/2}`
    (user-item graph, no self-loops), final embedding
    :math:`\frac{1}{L+1}\sum_{l=0}^{L}\mathbf E^{(l)}`, BPR loss plus
    ``reg_weight`` x L2 of the batch's layer-0 embeddings.

    Shapes: ``forward() -> Embeddings(user [U, d], item [I, d],
    extra={'ego_user': [U, d], 'ego_item': [I, d]})``.
    """
    name = "lightgcn"
    config_class = LightGCNConfig

    def __init__(self, data, config: LightGCNConfig | None = None):
        super().__init__(data, config)
        d = self.config.embedding_dim
        self.user_emb = torch.nn.Embedding(self.num_users, d)
        self.item_emb = torch.nn.Embedding(self.num_items, d)
        self.encoder = LightGCNEncoder(self.config.num_layers, readout="mean")
        self.register_graph("adj", bipartite_adjacency(data))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.xavier_uniform_(self.user_emb.weight)
        torch.nn.init.xavier_uniform_(self.item_emb.weight)

    def forward(self) -> Embeddings:
        eu, ei = self.user_emb.weight, self.item_emb.weight
        user, item = self.encoder(eu, ei, self.graph("adj"))
        return Embeddings(user, item, {"ego_user": eu, "ego_item": ei})

    def loss(self, batch: Batch, out: Embeddings) -> dict[str, Tensor]:
        return bpr_terms(batch, out.user, out.item, out.extra["ego_user"],
                         out.extra["ego_item"], self.config.reg_weight)
