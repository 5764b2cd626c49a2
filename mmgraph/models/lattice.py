r"""LATTICE (Zhang et al., MM'21): mining latent item-item structures from modality features.

Paper: "Mining Latent Structures for Multimedia Recommendation"; reference
code github.com/CRIPAC-DIG/LATTICE and the MMRec toolbox's ``lattice.py``.
This is an independent implementation on mmgraph's graphs, layers and losses.
See ``docs/models/lattice.md``: the paper, the equations, every option with the authors'
name, and the differences from the authors' code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..graph import (check_knn_method, SparseAdj, bipartite_adjacency, knn_topk, modality_knn_graph,
                     normalize_edge_weight)
from ..nn.conv import ItemItemConv
from ..nn.encoder import LightGCNEncoder
from ..nn.modality import ModalityFeatures, ModalityProjector
from .base import (Batch, Embeddings, ModelConfig, Recommender, bpr_terms, register,
                   select_modalities)

__all__ = ["LATTICE", "LATTICEConfig", "mean_bipartite_adjacency"]

UI_ADJACENCIES = ("mean", "lightgcn")
GRAPH_UPDATES = ("epoch", "step")


@dataclass
class LATTICEConfig(ModelConfig):
    r"""LATTICE settings; defaults from MMRec ``configs/model/LATTICE.yaml`` and
    the authors' code (github.com/CRIPAC-DIG/LATTICE ``parser.py``).

    Attributes:
        embedding_dim: ``d`` of the ID embeddings (64).
        feat_embed_dim: size of the projected features the learned graph is
            built from (64).
        knn_k: neighbours per item, in the frozen and the learned graphs (10).
        knn_method: how the frozen modality graphs are built: ``'exact'``
            (default) or ``'faiss'`` (approximate, the ``ann`` extra, for
            millions of items); see :func:`~mmgraph.graph.knn_topk`. The
            learned graph (small projected features, rebuilt in training)
            is always exact.
        lambda_coeff: skip-connection weight :math:`\lambda` of the frozen
            graph, ``S = (1 - lambda) S_learned + lambda S_frozen`` (0.9).
        num_ii_layers: propagation steps over the item-item graph (1).
        num_ui_layers: LightGCN layers over the user-item graph (2, MMRec's
            ``weight_size: [64, 64]``).
        reg_weight: weight of the L2 term on the batch's *final* user /
            positive / negative embeddings divided by ``2B`` (1e-5, the
            authors' default ``regs[0]``; MMRec's grid {0, 1e-5, 1e-4, 1e-3}).
        ui_adjacency: ``'mean'``: :math:`\mathbf D^{-1}(\mathbf A + \mathbf I)`
            as in the authors' and MMRec's code (row-normalised, self-loops);
            ``'lightgcn'``: :math:`\mathbf D^{-1/2}\mathbf A\mathbf D^{-1/2}`.
        graph_update: when the learned graph is rebuilt in training:
            ``'epoch'`` (MMRec and the authors: at the first batch of every
            epoch, with gradients; later batches of the epoch reuse it
            detached) or ``'step'`` (every batch, with gradients).
        trainable_features: train the raw features (as MMRec's
            ``from_pretrained(freeze=False)``) or keep them frozen.
        knn_chunk_size: rows per block of the chunked top-``k`` search
            (``None``: automatic, see :func:`~mmgraph.graph.knn_topk`).
        modalities: which of the data's modalities to use (``None``: all).
    """
    renamed = {"num_item_layers": "num_ii_layers"}
    embedding_dim: int = 64
    feat_embed_dim: int = 64
    knn_k: int = 10
    knn_method: str = "exact"
    lambda_coeff: float = 0.9
    num_ii_layers: int = 1
    num_ui_layers: int = 2
    reg_weight: float = 1e-5
    ui_adjacency: str = "mean"
    graph_update: str = "epoch"
    trainable_features: bool = True
    knn_chunk_size: Optional[int] = None
    modalities: Optional[tuple[str, ...]] = None

    def __post_init__(self):
        if self.modalities is not None:
            self.modalities = tuple(self.modalities)
        for name in ("embedding_dim", "feat_embed_dim", "knn_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_ii_layers", "num_ui_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.lambda_coeff <= 1.0:
            raise ValueError(f"lambda_coeff must be in [0, 1], got {self.lambda_coeff}")
        if self.reg_weight < 0:
            raise ValueError(f"reg_weight must be >= 0, got {self.reg_weight}")
        if self.ui_adjacency not in UI_ADJACENCIES:
            raise ValueError(f"ui_adjacency must be one of {UI_ADJACENCIES}, got {self.ui_adjacency!r}")
        if self.graph_update not in GRAPH_UPDATES:
            raise ValueError(f"graph_update must be one of {GRAPH_UPDATES}, got {self.graph_update!r}")
        check_knn_method(self.knn_method, "knn_method")


def mean_bipartite_adjacency(data) -> SparseAdj:
    r"""LATTICE's user-item propagation matrix :math:`\mathbf D^{-1}(\mathbf A + \mathbf I)`
    (:func:`~mmgraph.graph.bipartite_adjacency` with ``normalization='mean'``)."""
    return bipartite_adjacency(data, normalization="mean")


@register
class LATTICE(Recommender):
    r"""LATTICE with the LightGCN downstream model (MMRec's ``cf_model: lightgcn``).

    Item-item graph, for modalities ``m = 1..M`` with raw features
    :math:`\mathbf X^{(m)}` and learned projections
    :math:`\tilde{\mathbf X}^{(m)} = \mathrm{Linear}_m(\mathbf X^{(m)})`:

    .. math::
        \boldsymbol\alpha &= \mathrm{softmax}(\mathbf a), \qquad
        \mathbf S_{\text{frozen}} = \textstyle\sum_m \alpha_m\,
            \mathrm{norm}\big(\mathrm{kNN}_k(\mathbf X^{(m)})\big) \\
        \mathbf S_{\text{learned}} &= \mathrm{norm}\Big(\textstyle\sum_m \alpha_m\,
            \mathrm{kNN}_k(\tilde{\mathbf X}^{(m)})\Big), \qquad
        \mathbf S = (1 - \lambda)\,\mathbf S_{\text{learned}} + \lambda\,\mathbf S_{\text{frozen}}

    where :math:`\mathrm{kNN}_k` keeps each row's top-``k`` cosine
    similarities (self included) with their values and :math:`\mathrm{norm}`
    is :math:`\mathbf D^{-1/2}\cdot\mathbf D^{-1/2}` with row-sum degrees.
    The frozen graphs are built once by :func:`~mmgraph.graph.modality_knn_graph`
    (``weighted=True``). The learned graph is never dense: the top-``k``
    indices come from the chunked :func:`~mmgraph.graph.knn_topk` without
    gradient, then the ``I x k`` selected similarities are recomputed *with*
    gradient, so :math:`\mathbf a`, the projections and (if trainable) the raw
    features get exactly the gradients of MMRec's dense construction.

    Representations and scores:

    .. math::
        \mathbf h_I = \mathbf S^{L_i} \mathbf E_I, \qquad
        [\mathbf H_U; \bar{\mathbf H}_I] = \tfrac{1}{L+1}\textstyle\sum_{l=0}^{L}
            \hat{\mathbf A}^l [\mathbf E_U; \mathbf E_I], \qquad
        \mathbf H_I = \bar{\mathbf H}_I + \mathbf h_I / \lVert\mathbf h_I\rVert_2,

    :math:`s(u, i) = \mathbf h_u^\top \mathbf h_i`, with :math:`\hat{\mathbf A}`
    per ``ui_adjacency`` (default LATTICE's :math:`\mathbf D^{-1}(\mathbf A + \mathbf I)`).
    Loss: ``bpr`` + ``reg`` (``reg_weight`` x L2 of the batch's final
    embeddings / ``2B``).

    Graph schedule (``graph_update='epoch'``, as MMRec): :meth:`on_epoch_start`
    marks the learned graph stale; the next training forward rebuilds it with
    gradients (the only step of the epoch in which the projections and
    modality weights get gradients) and caches it detached for the rest of
    the epoch. Every evaluation forward rebuilds it from the current
    parameters (MMRec's ``full_sort_predict`` does too). The cache is not in
    the ``state_dict``; a loaded model rebuilds it.

    Shapes: ``forward() -> Embeddings(user [U, d], item [I, d], extra={'item_graph': [I, d]})``.
    """
    name = "lattice"
    config_class = LATTICEConfig
    #: authors' code: lr 5e-4 decayed by 0.96 ** (epoch / 50); MMRec: scheduler [0.96, 50].
    train_defaults = {"lr": 5e-4, "lr_decay": 0.96, "lr_decay_every": 50}

    def __init__(self, data, config: LATTICEConfig | None = None):
        super().__init__(data, config)
        cfg = self.config
        names, feats = select_modalities(data, cfg.modalities, "LATTICE")
        self.modalities: list[str] = names

        self.user_emb = nn.Embedding(self.num_users, cfg.embedding_dim)
        self.item_emb = nn.Embedding(self.num_items, cfg.embedding_dim)
        self.projectors = nn.ModuleDict({
            m: ModalityProjector(feats[m].size(1), cfg.feat_embed_dim, reduction=None,
                                 layer_norm=False)
            for m in names})
        self.modal_weight = nn.Parameter(torch.empty(len(names))) if len(names) > 1 else None
        self.features = ModalityFeatures({m: feats[m] for m in names}, trainable=cfg.trainable_features)
        self.encoder = LightGCNEncoder(cfg.num_ui_layers, readout="mean")
        self.item_conv = ItemItemConv(cfg.num_ii_layers, readout="last")

        self.register_graph("adj", mean_bipartite_adjacency(data) if cfg.ui_adjacency == "mean"
                            else bipartite_adjacency(data))
        for m in names:
            self.register_graph(f"frozen_{m}", modality_knn_graph(
                data, m, k=cfg.knn_k, normalization="sym", weighted=True, store=False,
                chunk_size=cfg.knn_chunk_size, method=cfg.knn_method))
        self._stale = True
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """MMRec's init: Xavier-uniform ID embeddings, PyTorch's default ``Linear``
        init, equal modality weights (0.5 each for two modalities)."""
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        for proj in self.projectors.values():
            proj.reset_parameters()
        if self.modal_weight is not None:
            nn.init.constant_(self.modal_weight, 1.0 / len(self.modalities))
        self.features.reset_parameters()
        self._stale = True

    def modality_feature(self, m: str) -> Tensor:
        """Current raw features ``[I, d_m]`` of modality ``m``."""
        return self.features[m]

    def modality_weights(self) -> Tensor:
        """:math:`\\mathrm{softmax}(\\mathbf a)`, ``[M]``."""
        if self.modal_weight is None:
            return self.item_emb.weight.new_ones(1)
        return torch.softmax(self.modal_weight, dim=0)

    def build_item_graph(self) -> SparseAdj:
        r"""The mixed item-item graph ``S`` ``[I, I]`` from the current parameters
        (differentiable w.r.t. the projections, features and modality weights)."""
        cfg = self.config
        n = self.num_items
        alpha = self.modality_weights()
        eis, vals = [], []
        for k, m in enumerate(self.modalities):
            x = self.projectors[m].project(self.modality_feature(m))          # [I, d']
            with torch.no_grad():
                _, idx = knn_topk(x.detach(), cfg.knn_k, chunk_size=cfg.knn_chunk_size)
            row = torch.arange(n, device=x.device).repeat_interleave(idx.size(1))
            col = idx.reshape(-1)
            xn = F.normalize(x, dim=1)
            sim = (xn.index_select(0, row) * xn.index_select(0, col)).sum(-1)   # with grad
            eis.append(torch.stack([row, col]))
            vals.append(alpha[k] * sim)
        ei = torch.cat(eis, dim=1)
        learned = normalize_edge_weight(ei, torch.cat(vals), n, "sym")
        all_ei, all_val = [ei], [(1.0 - cfg.lambda_coeff) * learned]
        for k, m in enumerate(self.modalities):
            frozen = self.graph(f"frozen_{m}")
            all_ei.append(frozen.edge_index)
            all_val.append(cfg.lambda_coeff * alpha[k] * frozen.value)
        return SparseAdj.from_edge_index(torch.cat(all_ei, dim=1), torch.cat(all_val),
                                         (n, n), symmetric=False)

    def on_epoch_start(self, epoch: int) -> None:
        self._stale = True

    def item_graph(self) -> SparseAdj:
        """The item-item graph this forward pass uses (see the class docs)."""
        if self.training and self.config.graph_update == "epoch" and not self._stale:
            return self.graph("item_adj")
        adj = self.build_item_graph()
        self.register_graph("item_adj", adj.detach())
        if self.training:
            self._stale = False
        return adj

    def forward(self) -> Embeddings:
        e_u, e_i = self.user_emb.weight, self.item_emb.weight
        h = self.item_conv(e_i, self.item_graph())
        h_u, h_i = self.encoder(e_u, e_i, self.graph("adj"))
        return Embeddings(h_u, h_i + F.normalize(h, dim=1), {"item_graph": h})

    def loss(self, batch: Batch, out: Embeddings) -> dict[str, Tensor]:
        return bpr_terms(batch, out.user, out.item, out.user, out.item, self.config.reg_weight)
