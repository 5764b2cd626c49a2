r"""FREEDOM (Zhou & Shen, MM'23): a frozen item-item graph and a denoised user-item graph.

Paper: "A Tale of Two Graphs: Freezing and Denoising Graph Structures for
Multimodal Recommendation"; reference code github.com/enoche/FREEDOM (also in
the MMRec toolbox). This is an independent implementation on mmgraph's graphs,
layers and losses. See ``docs/models/freedom.md``: the paper, the equations,
every option with the authors' name, and the differences from the authors' code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from ..data.hetero import split_edge_index
from ..graph import (check_knn_method, bipartite_adjacency, bipartite_adjacency_from_edges,
                     modality_knn_graph, modality_mix_weights, prune_edges_by_degree)
from ..losses import bpr_loss
from ..nn.conv import ItemItemConv
from ..nn.encoder import LightGCNEncoder
from ..nn.modality import ModalityFeatures, ModalityProjector
from .base import (Batch, Embeddings, ModelConfig, Recommender, batch_rows, pair_scores,
                   project_items, register, select_modalities)

__all__ = ["FREEDOM", "FREEDOMConfig", "freedom_modality_weights"]


@dataclass
class FREEDOMConfig(ModelConfig):
    r"""FREEDOM settings; defaults from MMRec / FREEDOM ``configs/model/FREEDOM.yaml``.

    Attributes:
        embedding_dim: ``d`` of the ID embeddings and projected features (64).
        knn_k: neighbours per item in the frozen modality kNN graphs (10).
        knn_method: how those graphs are built: ``'exact'`` (default) or
            ``'faiss'`` (approximate, the ``ann`` extra, for millions of
            items); see :func:`~mmgraph.graph.knn_topk`.
        mm_image_weight: weight of the image graph in the mix; the other
            modalities share ``1 - mm_image_weight`` (0.1, so text gets 0.9).
        modality_weights: explicit ``{modality: weight}`` mix (overrides
            ``mm_image_weight``).
        num_ii_layers: propagation steps over the item-item graph (1).
        num_ui_layers: LightGCN layers over the user-item graph (2).
        dropout: share of user-item edges pruned every epoch (0.8; MMRec's
            grid is {0.8, 0.9}).
        reg_weight: weight of the modality BPR terms (MMRec calls it
            ``reg_weight``; grid {0, 1e-5, 1e-4, 1e-3}, no per-dataset best
            published; default 1e-4 chosen from the grid). FREEDOM has no L2
            term.
        trainable_features: train the raw features (MMRec's
            ``from_pretrained(freeze=False)``) or keep them frozen. The kNN
            graph is always built from the features given in the data.
        modalities: which of the data's modalities to use (``None``: all).
    """
    renamed = {"num_mm_layers": "num_ii_layers"}
    embedding_dim: int = 64
    knn_k: int = 10
    knn_method: str = "exact"
    mm_image_weight: float = 0.1
    modality_weights: Optional[dict[str, float]] = None
    num_ii_layers: int = 1
    num_ui_layers: int = 2
    dropout: float = 0.8
    reg_weight: float = 1e-4
    trainable_features: bool = True
    modalities: Optional[tuple[str, ...]] = None

    def __post_init__(self):
        if self.modalities is not None:
            self.modalities = tuple(self.modalities)
        if self.modality_weights is not None:
            self.modality_weights = {str(k): float(v) for k, v in dict(self.modality_weights).items()}
        for name in ("embedding_dim", "knn_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_ii_layers", "num_ui_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.mm_image_weight <= 1.0:
            raise ValueError(f"mm_image_weight must be in [0, 1], got {self.mm_image_weight}")
        if self.reg_weight < 0:
            raise ValueError(f"reg_weight must be >= 0, got {self.reg_weight}")
        check_knn_method(self.knn_method, "knn_method")


def freedom_modality_weights(modalities, image_weight: float = 0.1,
                             weights: Optional[dict[str, float]] = None) -> dict[str, float]:
    """FREEDOM's mixing weights: :func:`~mmgraph.graph.modality_mix_weights` (the rule
    it shares with REARM) with FREEDOM's default image weight 0.1."""
    return modality_mix_weights(modalities, image_weight, weights)


@register
class FREEDOM(Recommender):
    r"""FREEDOM: LightGCN on a degree-sensitively pruned user-item graph plus
    propagation over a frozen multimodal item-item kNN graph.

    .. math::
        \mathbf S &= \textstyle\sum_m w_m\, \hat{\mathbf S}_m, \qquad
            \hat{\mathbf S}_m = \mathbf D^{-1/2}\,\mathrm{kNN}_k(\mathbf X^{(m)})\,\mathbf D^{-1/2} \\
        \mathbf h_I &= \mathbf S^{L_{mm}} \mathbf E_I, \qquad
        [\mathbf H_U; \bar{\mathbf H}_I] = \tfrac{1}{L+1}\textstyle\sum_{l=0}^{L}
            \tilde{\mathbf A}_\rho^l [\mathbf E_U; \mathbf E_I], \qquad
        \mathbf H_I = \bar{\mathbf H}_I + \mathbf h_I

    * :math:`\hat{\mathbf S}_m`: binary cosine top-``knn_k`` graph of the raw
      features (self included), symmetric-normalised with row-sum degrees,
      built once by :func:`~mmgraph.graph.modality_knn_graph` and frozen;
      weights :func:`freedom_modality_weights` (image 0.1, text 0.9).
    * :math:`\tilde{\mathbf A}_\rho`: in training, the LightGCN adjacency of
      a subgraph of ``(1 - dropout) E`` user-item edges drawn once per epoch
      (:meth:`on_epoch_start`) without replacement with probability
      :math:`\propto 1/\sqrt{d_u d_i}` (:func:`~mmgraph.graph.prune_edges_by_degree`)
      and re-normalised on the kept edges
      (:func:`~mmgraph.graph.bipartite_adjacency_from_edges`); in evaluation,
      the full graph (:func:`~mmgraph.graph.bipartite_adjacency`).

    Loss (named terms):

    * ``bpr``: BPR of :math:`\mathbf h_u^\top \mathbf h_i` vs :math:`\mathbf h_u^\top \mathbf h_j`;
    * ``modality_bpr``: ``reg_weight`` x :math:`\sum_m` BPR of
      :math:`\mathbf h_u^\top \mathbf p^{(m)}_i` vs :math:`\mathbf h_u^\top \mathbf p^{(m)}_j`,
      :math:`\mathbf p^{(m)} = \mathrm{Linear}_m(\mathbf X^{(m)})` (computed for
      the batch's items when that is cheaper: same values and gradients as
      MMRec's projection of all items).

    The projected features appear only in the loss, not in the scores
    (as in MMRec). Scores: :math:`\mathbf h_u^\top \mathbf h_i` on the full graph.

    Shapes: ``forward() -> Embeddings(user [U, d], item [I, d], extra={'item_graph': [I, d]})``.
    """
    name = "freedom"
    config_class = FREEDOMConfig

    def __init__(self, data, config: FREEDOMConfig | None = None):
        super().__init__(data, config)
        cfg = self.config
        d = cfg.embedding_dim
        names, feats = select_modalities(data, cfg.modalities, "FREEDOM")
        self.modalities: list[str] = names
        self.mix_weights = freedom_modality_weights(names, cfg.mm_image_weight,
                                                    cfg.modality_weights)

        self.user_emb = nn.Embedding(self.num_users, d)
        self.item_emb = nn.Embedding(self.num_items, d)
        self.projectors = nn.ModuleDict({
            m: ModalityProjector(feats[m].size(1), d, reduction=None, layer_norm=False)
            for m in names})
        self.features = ModalityFeatures({m: feats[m] for m in names}, trainable=cfg.trainable_features)
        self.encoder = LightGCNEncoder(cfg.num_ui_layers, readout="mean")
        self.item_conv = ItemItemConv(cfg.num_ii_layers, readout="last")

        # graphs (built once through mmgraph.graph, cached on data, not saved)
        self.register_graph("train_edges", split_edge_index(data, "train"))
        self.register_graph("adj", bipartite_adjacency(data))
        self.register_graph("item_adj", modality_knn_graph(
            data, self.mix_weights, k=cfg.knn_k, normalization="sym",
            method=cfg.knn_method))
        self._pruned = False
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """MMRec's init: Xavier-uniform ID embeddings; PyTorch's default ``Linear`` init."""
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        for proj in self.projectors.values():
            proj.reset_parameters()
        self.features.reset_parameters()

    def modality_feature(self, m: str) -> Tensor:
        """Current raw features ``[I, d_m]`` of modality ``m``."""
        return self.features[m]

    def project(self, m: str, items: Tensor) -> Tensor:
        """Projected features ``[len(items), d]`` of modality ``m`` for ``items``
        (projects every item instead when that is cheaper)."""
        return project_items(self.projectors[m], self.modality_feature(m), items)

    def prune(self, generator: Optional[torch.Generator] = None) -> None:
        """Draw this epoch's denoised user-item graph (degree-sensitive edge pruning)."""
        if self.config.dropout <= 0.0:
            self.register_graph("train_adj", self.graph("adj"))
        else:
            kept = prune_edges_by_degree(self.graph("train_edges"), self.num_users,
                                         self.num_items, 1.0 - self.config.dropout,
                                         generator=generator)
            self.register_graph("train_adj", bipartite_adjacency_from_edges(
                kept, self.num_users, self.num_items))
        self._pruned = True

    def on_epoch_start(self, epoch: int) -> None:
        self.prune()

    def forward(self) -> Embeddings:
        if self.training:
            if not self._pruned:
                self.prune()
            adj = self.graph("train_adj")
        else:
            adj = self.graph("adj")
        e_u, e_i = self.user_emb.weight, self.item_emb.weight
        h = self.item_conv(e_i, self.graph("item_adj"))
        h_u, h_i = self.encoder(e_u, e_i, adj)
        return Embeddings(h_u, h_i + h, {"item_graph": h})

    def loss(self, batch: Batch, out: Embeddings) -> dict[str, Tensor]:
        u, p, n = batch_rows(batch, out.user, out.item, "FREEDOM")      # u [B, d]
        neg_ids = batch.neg_items
        terms = {"bpr": bpr_loss(*pair_scores(u, p, n))}
        ids = torch.cat([batch.pos_items, neg_ids.reshape(-1)])
        b = batch.pos_items.numel()
        mm = out.user.new_zeros(())
        for m in self.modalities:
            f = self.project(m, ids)
            mm = mm + bpr_loss(*pair_scores(u, f[:b], f[b:].view(*neg_ids.shape, -1)))
        terms["modality_bpr"] = self.config.reg_weight * mm
        return terms
