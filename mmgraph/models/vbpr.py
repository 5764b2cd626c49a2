r"""VBPR (He & McAuley, AAAI'16): BPR with visual (here: all modality) item factors.

This follows the MMRec toolbox's form of VBPR, in which the concatenation of
all item modality features replaces the paper's CNN image features. It is an
independent implementation on mmgraph's losses. See ``docs/models/vbpr.md``: the
paper, the equations, every option with the authors' name, and the differences from
the authors' code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from ..losses import bpr_loss, l2_reg
from .base import (Batch, Embeddings, ModelConfig, Recommender, batch_rows, pair_scores, register,
                   select_modalities)

__all__ = ["VBPR", "VBPRConfig"]


@dataclass
class VBPRConfig(ModelConfig):
    r"""VBPR settings.

    Attributes:
        embedding_dim: ``d``, the size of each half of the item vector (ID
            factors and content factors); users have ``2d`` factors (64, MMRec).
        reg_weight: weight of MMRec's ``EmbLoss`` on the batch's user, positive
            and negative vectors, :math:`(\lVert\mathbf u\rVert_F + \lVert\mathbf i\rVert_F
            + \lVert\mathbf j\rVert_F)/B` (unsquared norms). MMRec's grid is
            {2.0, 1.0, 0.1, 0.01, 1e-3, 1e-4, 1e-5} and no per-dataset best is
            published; the default 1e-4 is a choice from that grid (values
            below ~0.1 barely change training, as the term's gradient is
            ``reg_weight / B`` per unit vector).
        modalities: which of the data's modalities to concatenate (``None``:
            all, in the order of ``modalities``, default sorted names).
    """
    embedding_dim: int = 64
    reg_weight: float = 1e-4
    modalities: Optional[tuple[str, ...]] = None

    def __post_init__(self):
        if self.modalities is not None:
            self.modalities = tuple(self.modalities)
        if self.embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {self.embedding_dim}")
        if self.reg_weight < 0:
            raise ValueError(f"reg_weight must be >= 0, got {self.reg_weight}")


@register
class VBPR(Recommender):
    r"""Visual BPR, MMRec form.

    .. math::
        \mathbf v_i = [\,\boldsymbol\gamma_i\,;\ \mathbf E\,\mathbf f_i + \mathbf b\,],
        \qquad \mathbf u_u = [\,\boldsymbol\gamma_u\,;\ \boldsymbol\theta_u\,],
        \qquad s(u, i) = \mathbf u_u^\top \mathbf v_i

    with :math:`\mathbf f_i` the concatenation of item ``i``'s (frozen)
    modality features ``data['item'].x_<m>``, :math:`\boldsymbol\gamma_i \in
    \mathbb R^d` free item factors, :math:`\mathbf E` a ``Linear`` map to
    ``d`` and :math:`\mathbf u_u \in \mathbb R^{2d}` free user factors.
    Loss: ``bpr`` + ``reg`` (see :class:`VBPRConfig`). As in MMRec there are
    no separate bias terms (:math:`\beta_i`, :math:`\boldsymbol\beta'`) of
    the original paper.

    Init (MMRec): Xavier-uniform user and item factors, Xavier-normal
    ``Linear`` weight, zero bias.

    Shapes: ``forward() -> Embeddings(user [U, 2d], item [I, 2d])``.
    """
    name = "vbpr"
    config_class = VBPRConfig
    #: MMRec's overall.yaml: constant learning rate (scheduler [1.0, 50]).

    def __init__(self, data, config: VBPRConfig | None = None):
        super().__init__(data, config)
        cfg = self.config
        d = cfg.embedding_dim
        names, feats = select_modalities(data, cfg.modalities, "VBPR")
        self.modalities: list[str] = names
        # Frozen content features, rebuilt from the data (not in the state_dict).
        self.register_buffer("content", torch.cat([feats[m].float() for m in names], dim=1),
                             persistent=False)
        self.user_factors = nn.Parameter(torch.empty(self.num_users, 2 * d))
        self.item_factors = nn.Parameter(torch.empty(self.num_items, d))
        self.content_proj = nn.Linear(self.content.size(1), d)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_factors)
        nn.init.xavier_uniform_(self.item_factors)
        nn.init.xavier_normal_(self.content_proj.weight)
        nn.init.zeros_(self.content_proj.bias)

    def forward(self) -> Embeddings:
        item = torch.cat([self.item_factors, self.content_proj(self.content)], dim=1)
        return Embeddings(self.user_factors, item)

    def loss(self, batch: Batch, out: Embeddings) -> dict[str, Tensor]:
        u, pos, neg = batch_rows(batch, out.user, out.item, "VBPR")     # [B, 2d], neg [B(, K), 2d]
        pos_s, neg_s = pair_scores(u, pos, neg)
        reg = l2_reg(u, pos, neg, batch_size=u.size(0), squared=False)
        return {"bpr": bpr_loss(pos_s, neg_s), "reg": self.config.reg_weight * reg}
