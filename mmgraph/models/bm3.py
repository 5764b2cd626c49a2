r"""BM3 (Zhou et al., WWW'23): bootstrapped latent representations, no negatives.

Paper: "Bootstrap Latent Representations for Multi-modal Recommendation";
reference code github.com/enoche/BM3 (also in the MMRec toolbox). This is an
independent implementation on mmgraph's graphs, layers and losses. See
``docs/models/bm3.md``: the paper, the equations, every option with the authors'
name, and the differences from the authors' code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..graph import bipartite_adjacency
from ..losses import l2_reg, neg_cosine
from ..nn.encoder import LightGCNEncoder
from ..nn.modality import ModalityFeatures, ModalityProjector
from .base import (Batch, Embeddings, ModelConfig, Recommender, register, select_modalities,
                   project_items)

__all__ = ["BM3", "BM3Config"]


@dataclass
class BM3Config(ModelConfig):
    r"""BM3 settings; defaults are the authors' best Amazon-Baby configuration
    (sources and the authors' names: ``docs/models/bm3.md``).

    Attributes:
        embedding_dim: ``d`` of the ID embeddings and of the projected
            modality features (64).
        num_layers: LightGCN layers of the backbone (1).
        dropout: drop probability of the latent-embedding dropout that makes
            the target views (0.5).
        reg_weight: weight of the regulariser (0.1), MMRec's ``EmbLoss`` on the
            *whole* online embedding matrices:
            :math:`(\lVert\mathbf H_U\rVert_F + \lVert\mathbf H_I\rVert_F) / |I|`.
        cl_weight: weight of the multimodal terms ``align`` and ``mask`` (2.0).
        trainable_features: train the raw modality features as parameters (as
            MMRec's ``nn.Embedding.from_pretrained(freeze=False)``), or keep
            them frozen (buffers, not in the ``state_dict``).
        modalities: which of the data's modalities to use (``None``: all;
            ``()``: none, the paper's ``BM3 w/o v&t`` ablation).
        target_dropout: where the target views' dropout masks are drawn:
            ``'matrix'`` (default, MMRec's code: one mask per user / item row
            of the full matrices, shared by its repeats within a batch) or
            ``'batch'`` (one mask per batch row: repeats get independent
            masks; not a measured improvement, see ``benchmarks/RESULTS.md``).
    """
    embedding_dim: int = 64
    num_layers: int = 1
    dropout: float = 0.5
    reg_weight: float = 0.1
    cl_weight: float = 2.0
    trainable_features: bool = True
    modalities: Optional[tuple[str, ...]] = None
    target_dropout: Literal["batch", "matrix"] = "matrix"

    def __post_init__(self):
        if self.modalities is not None:
            self.modalities = tuple(self.modalities)
        if self.target_dropout not in ("batch", "matrix"):
            raise ValueError(f"target_dropout must be 'batch' or 'matrix', got {self.target_dropout!r}")
        if self.embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {self.embedding_dim}")
        if self.num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {self.num_layers}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.reg_weight < 0 or self.cl_weight < 0:
            raise ValueError("reg_weight and cl_weight must be >= 0")


@register
class BM3(Recommender):
    r"""BM3: a LightGCN backbone trained by bootstrapping, without negative sampling.

    Online representations (``M >= 0`` modalities with raw item features
    :math:`\mathbf X^{(m)}` = ``data['item'].x_<m>``):

    .. math::
        [\mathbf H_U; \bar{\mathbf H}_I] &= \tfrac{1}{L+1}\textstyle\sum_{l=0}^{L}
            \tilde{\mathbf A}^l [\mathbf E_U; \mathbf E_I],
        \qquad \mathbf H_I = \bar{\mathbf H}_I + \mathbf E_I \\
        \mathbf H^{(m)} &= \mathbf X^{(m)} \mathbf W_m^\top + \mathbf b_m,
        \qquad f_p(\mathbf h) = \mathbf W_p \mathbf h + \mathbf b_p

    with :math:`\tilde{\mathbf A}` the LightGCN adjacency (no self-loops),
    an item residual to the layer-0 ID embedding, per-modality ``Linear``
    projections to ``d`` and one shared ``Linear`` predictor :math:`f_p`.
    Target views are the online embeddings under dropout with a
    stop-gradient, :math:`\dot{\mathbf h} = \mathrm{sg}(\mathrm{Dropout}_p(\mathbf h))`.
    For a batch of positive pairs ``(u, i)`` (``batch.neg_items`` is unused;
    the trainer sends ``None`` because ``uses_negatives = False``) and
    :math:`C(a, b) = -\cos(a, b)` (:func:`~mmgraph.losses.neg_cosine`):

    * ``rec``: :math:`C(f_p(\mathbf h_u), \dot{\mathbf h}_i) + C(f_p(\mathbf h_i), \dot{\mathbf h}_u)`;
    * ``align``: ``cl_weight`` x :math:`\sum_m C(f_p(\mathbf h^{(m)}_i), \dot{\mathbf h}_i)`;
    * ``mask``: ``cl_weight`` x :math:`\sum_m C(f_p(\mathbf h^{(m)}_i), \dot{\mathbf h}^{(m)}_i)`;
    * ``reg``: ``reg_weight`` x :math:`(\lVert\mathbf H_U\rVert_F + \lVert\mathbf H_I\rVert_F)/|I|`.

    Scores use the predictor outputs: :math:`s(u, i) = f_p(\mathbf h_u)^\top f_p(\mathbf h_i)`.

    Each term is ``-cos`` where MMRec writes ``1 - cos`` (same gradients); the
    target dropout masks are drawn over the *full* matrices and the batch rows
    indexed afterwards, as MMRec does (``target_dropout='batch'``: one mask per
    batch row). Differences from MMRec's ``bm3.py`` and the parity run
    (``benchmarks/parity/bm3.py``): ``docs/models/bm3.md``.

    Shapes: ``forward() -> Embeddings(user [U, d], item [I, d], extra)`` with
    the predictor outputs as ``user`` / ``item`` and ``extra = {'online_user':
    [U, d], 'online_item': [I, d]}`` (the backbone outputs before the predictor).
    """
    name = "bm3"
    config_class = BM3Config
    uses_negatives = False

    def __init__(self, data, config: BM3Config | None = None):
        super().__init__(data, config)
        cfg = self.config
        d = cfg.embedding_dim
        names, feats = select_modalities(data, cfg.modalities, "BM3", required=False)
        self.modalities: list[str] = names

        self.user_emb = nn.Embedding(self.num_users, d)
        self.item_emb = nn.Embedding(self.num_items, d)
        self.predictor = nn.Linear(d, d)
        self.projectors = nn.ModuleDict({
            m: ModalityProjector(feats[m].size(1), d, reduction=None, layer_norm=False)
            for m in names})
        # ID-only data, or the ``modalities=()`` ablation: no feature table at all
        self.features = (ModalityFeatures({m: feats[m] for m in names},
                                          trainable=cfg.trainable_features) if names else None)
        self.encoder = LightGCNEncoder(cfg.num_layers, readout="mean")
        self.register_graph("adj", bipartite_adjacency(data))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """MMRec's init: Xavier-uniform ID embeddings, Xavier-normal predictor and
        projection weights (biases keep PyTorch's default init)."""
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        self.predictor.reset_parameters()
        nn.init.xavier_normal_(self.predictor.weight)
        for proj in self.projectors.values():
            proj.reset_parameters()
            nn.init.xavier_normal_(proj.proj.weight)
        if self.features is not None:
            self.features.reset_parameters()

    def modality_feature(self, m: str) -> Tensor:
        """Current raw features ``[I, d_m]`` of modality ``m``."""
        return self.features[m]

    def project(self, m: str, items: Tensor) -> Tensor:
        """Projected features ``[len(items), d]`` of modality ``m`` for ``items``
        (projects every item instead when that is cheaper)."""
        return project_items(self.projectors[m], self.modality_feature(m), items)

    def forward(self) -> Embeddings:
        e_u, e_i = self.user_emb.weight, self.item_emb.weight
        h_u, h_i = self.encoder(e_u, e_i, self.graph("adj"))
        h_i = h_i + e_i
        return Embeddings(self.predictor(h_u), self.predictor(h_i),
                          {"online_user": h_u, "online_item": h_i})

    def loss(self, batch: Batch, out: Embeddings) -> dict[str, Tensor]:
        cfg = self.config
        users, items = batch.users, batch.pos_items
        h_u, h_i = out.extra["online_user"], out.extra["online_item"]
        matrix = cfg.target_dropout == "matrix"
        with torch.no_grad():
            if matrix:      # MMRec: masks over the full matrices, then the batch rows
                t_u = F.dropout(h_u, cfg.dropout, training=True)[users]
                t_i = F.dropout(h_i, cfg.dropout, training=True)[items]
            else:
                t_u = F.dropout(h_u[users], cfg.dropout, training=True)
                t_i = F.dropout(h_i[items], cfg.dropout, training=True)
        rec = neg_cosine(out.user[users], t_i) + neg_cosine(out.item[items], t_u)
        align = mask = out.user.new_zeros(())
        for m in self.modalities:
            if matrix:
                all_m = self.projectors[m].project(self.modality_feature(m))     # [I, d]
                h_m = all_m[items]
                with torch.no_grad():
                    t_m = F.dropout(all_m, cfg.dropout, training=True)[items]
            else:
                h_m = self.project(m, items)                                  # [B, d]
                with torch.no_grad():
                    t_m = F.dropout(h_m, cfg.dropout, training=True)
            p_m = self.predictor(h_m)
            align = align + neg_cosine(p_m, t_i)
            mask = mask + neg_cosine(p_m, t_m)
        reg = l2_reg(h_u, h_i, batch_size=self.num_items, squared=False)
        return {"rec": rec, "align": cfg.cl_weight * align, "mask": cfg.cl_weight * mask,
                "reg": cfg.reg_weight * reg}
