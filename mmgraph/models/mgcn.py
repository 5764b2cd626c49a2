r"""MGCN (Yu et al., ACM MM'23): multi-view graph convolutional network.

**Behaviour-guided purifier.** Each modality's raw features are projected,
:math:`\mathbf f^{(m)}_i = \mathbf W_m\mathbf x^{(m)}_i + \mathbf b_m`, and
gate the item ID embedding,
:math:`\mathbf e^{(m)}_i = \mathbf e_i \odot \sigma(\mathbf G_m\mathbf f^{(m)}_i +
\mathbf g_m)` (:class:`~mmgraph.nn.modality.ModalityGate`).

**User-item view.** LightGCN over the ID embeddings,
``num_ui_layers`` layers, layer mean: :math:`\mathbf c = [\mathbf c_U; \mathbf c_I]`.

**Item-item view.** Per modality, a frozen cosine kNN graph
:math:`\mathbf S_m` over the raw features (top-``knn_k``, similarity
weights, symmetric normalisation; :func:`~mmgraph.graph.modality_knn_graph`)
propagates the purified items ``num_ii_layers`` times,
:math:`\mathbf h^{(m)}_I = \mathbf S_m^{L}\mathbf e^{(m)}`, and users average
them through the normalised interaction matrix,
:math:`\mathbf h^{(m)}_U = \hat{\mathbf R}\mathbf h^{(m)}_I`.

**Behaviour-aware fuser** (:class:`~mmgraph.nn.modality.ModalityAttentionFusion`):
attention over modalities gives a common part, each modality minus the common
part is gated by :math:`\sigma(\mathbf P_m \mathbf c + \mathbf p_m)`; the side
view :math:`\mathbf s` is the mean of the specific parts and the common part.
Final embeddings :math:`\mathbf c + \mathbf s`.

**Loss.** BPR on the final embeddings + ``reg_weight`` x
:func:`~mmgraph.losses.l2_reg` of the batch's final embeddings +
``cl_weight`` x (InfoNCE(side, user-item view) of the batch's positive items
+ the same for its users), temperature ``temperature``.

See ``docs/models/mgcn.md``: the paper, the equations, every option with the authors'
name, and the differences from the authors' code.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..data.hetero import modality_features
from ..graph import check_knn_method, bipartite_adjacency, interaction_matrix, modality_knn_graph
from ..losses import bpr_loss, info_nce, l2_reg
from ..nn import ItemItemConv, LightGCNEncoder
from ..nn.modality import ModalityAttentionFusion, ModalityFeatures, ModalityGate
from .base import (Batch, Embeddings, ModelConfig, Recommender, batch_rows, pair_scores,
                   register)


@dataclass
class MGCNConfig(ModelConfig):
    """MGCN settings (MMRec ``MGCN.yaml`` / authors' ``MGCN.yaml`` for Baby).

    Attributes:
        embedding_dim: 64.
        reg_weight: 1e-4 (L2 of the batch's final embeddings).
        num_ui_layers: LightGCN layers of the user-item view (``n_ui_layers`` 2).
        num_ii_layers: item-item propagation steps (``n_layers`` 1).
        knn_k: neighbours of the modality kNN graphs (10).
        knn_method: how those graphs are built: ``'exact'`` (default) or
            ``'faiss'`` (approximate, the ``ann`` extra, for millions of
            items); see :func:`~mmgraph.graph.knn_topk`.
        cl_weight: weight of the contrastive loss (``cl_loss``; MMRec grid
            ``[0.001, 0.01, 0.1]``, authors' Baby setting 0.01).
        temperature: InfoNCE temperature (0.2 in the code).
        trainable_features: fine-tune the raw modality features (MMRec stores
            them as ``nn.Embedding(..., freeze=False)``); the kNN graphs stay
            those of the initial features.
    """
    renamed = {"cl_temperature": "temperature", "train_features": "trainable_features",
               "num_mm_layers": "num_ii_layers"}
    embedding_dim: int = 64
    reg_weight: float = 1e-4
    num_ui_layers: int = 2
    num_ii_layers: int = 1
    knn_k: int = 10
    knn_method: str = "exact"
    cl_weight: float = 0.01
    temperature: float = 0.2
    trainable_features: bool = True

    def __post_init__(self):
        check_knn_method(self.knn_method, "knn_method")


@register
class MGCN(Recommender):
    r"""Multi-View Graph Convolutional Network for ``M >= 1`` modalities.

    Shapes: ``forward() -> Embeddings(user [U, d], item [I, d], extra={'side':
    [U+I, d], 'content': [U+I, d]})``.
    """
    name = "mgcn"
    config_class = MGCNConfig
    # MMRec MGCN.yaml: learning_rate 1e-3, learning_rate_scheduler [0.96, 50]
    train_defaults = {"lr_decay": 0.96, "lr_decay_every": 50}

    def __init__(self, data, config: MGCNConfig | None = None):
        super().__init__(data, config)
        cfg = self.config
        feats = modality_features(data)
        if not feats:
            raise ValueError("MGCN needs at least one item modality (data['item'].x_<name>)")
        self.modalities = list(feats)
        d = cfg.embedding_dim
        self.features = ModalityFeatures(feats, trainable=cfg.trainable_features)
        self.user_emb = nn.Embedding(self.num_users, d)
        self.item_emb = nn.Embedding(self.num_items, d)
        self.trs = nn.ModuleDict({m: nn.Linear(x.size(1), d) for m, x in feats.items()})
        self.gates = nn.ModuleDict({m: ModalityGate(d) for m in feats})
        self.fusion = ModalityAttentionFusion(d, len(feats))
        self.ui_encoder = LightGCNEncoder(cfg.num_ui_layers, readout="mean")
        self.ii_conv = ItemItemConv(cfg.num_ii_layers, readout="last")
        self.register_graph("adj", bipartite_adjacency(data))
        self.register_graph("r", interaction_matrix(data, "sym"))
        for m in feats:
            self.register_graph(f"knn_{m}", modality_knn_graph(
                data, m, k=cfg.knn_k, normalization="sym", weighted=True, store=False,
                method=cfg.knn_method))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        for mod in (self.features, *self.trs.values(), *self.gates.values(), self.fusion):
            mod.reset_parameters()

    def _feature(self, m: str) -> Tensor:
        return self.features[m]

    def forward(self) -> Embeddings:
        eu, ei = self.user_emb.weight, self.item_emb.weight
        cu, ci = self.ui_encoder(eu, ei, self.graph("adj"))
        content = torch.cat([cu, ci], dim=0)
        r = self.graph("r")
        views = []
        for m in self.modalities:
            purified = self.gates[m](ei, self.trs[m](self._feature(m)))
            hi = self.ii_conv(purified, self.graph(f"knn_{m}"))
            views.append(torch.cat([r.matmul(hi), hi], dim=0))
        side = self.fusion(views, content)
        final = content + side
        n_u = self.num_users
        return Embeddings(final[:n_u], final[n_u:], {"side": side, "content": content})

    def loss(self, batch: Batch, out: Embeddings) -> dict[str, Tensor]:
        cfg = self.config
        users, pos = batch.users, batch.pos_items
        u, p, n = batch_rows(batch, out.user, out.item, "MGCN")
        pos_s, neg_s = pair_scores(u, p, n)
        reg = l2_reg(u, p, n, batch_size=users.numel())
        n_u = self.num_users
        side, content = out.extra["side"], out.extra["content"]
        # ids only make it cheaper on CPU (repeats folded into weights, same loss)
        cl = (info_nce(side[n_u + pos], content[n_u + pos], cfg.temperature, ids=pos,
                       distinct=False)
              + info_nce(side[users], content[users], cfg.temperature, ids=users,
                         distinct=False))
        return {"bpr": bpr_loss(pos_s, neg_s), "reg": cfg.reg_weight * reg,
                "cl": cfg.cl_weight * cl}


__all__ = ["MGCN", "MGCNConfig"]
