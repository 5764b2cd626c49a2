"""BPR-MF (Rendle et al., UAI'09): matrix factorisation trained with BPR.

See ``docs/models/bprmf.md``: the paper, the equations, every option with the authors'
name, and the differences from the authors' code.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Batch, Embeddings, ModelConfig, Recommender, bpr_terms, register


@dataclass
class BPRMFConfig(ModelConfig):
    """BPR-MF settings.

    ``reg_weight`` 0.1 is the best of the grid {1e-1, 1e-2} on real Amazon
    Baby (weaker regularisation overfits within 15 epochs); see
    benchmarks/RESULTS.md.
    """
    embedding_dim: int = 64
    reg_weight: float = 1e-1


@register
class BPRMF(Recommender):
    r"""Matrix factorisation :math:`\hat y_{ui} = \mathbf e_u^\top \mathbf e_i`
    trained with :func:`~mmgraph.losses.bpr_loss` plus
    ``reg_weight`` :math:`\times` :func:`~mmgraph.losses.l2_reg` of the batch's
    embeddings.

    Shapes: ``forward() -> Embeddings(user [U, d], item [I, d])``.
    """
    name = "bprmf"
    config_class = BPRMFConfig

    def __init__(self, data, config: BPRMFConfig | None = None):
        super().__init__(data, config)
        d = self.config.embedding_dim
        self.user_emb = torch.nn.Embedding(self.num_users, d)
        self.item_emb = torch.nn.Embedding(self.num_items, d)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.xavier_uniform_(self.user_emb.weight)
        torch.nn.init.xavier_uniform_(self.item_emb.weight)

    def forward(self) -> Embeddings:
        return Embeddings(self.user_emb.weight, self.item_emb.weight)

    def loss(self, batch: Batch, out: Embeddings) -> dict[str, Tensor]:
        return bpr_terms(batch, out.user, out.item, out.user, out.item, self.config.reg_weight)
