r"""MambaRec (CIKM'25): local feature alignment with DREAM, global alignment with MMD.

Paper: "Modality Alignment with Multi-scale Bilateral Attention for
Multimodal Recommendation"; authors' code github.com/rkl71/MambaRec. This is
an independent implementation on mmgraph's graphs, layers and losses. See
``docs/models/mambarec.md``: the paper, the equations, every option with the authors'
name, and the differences from the authors' code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Literal, Mapping, Optional

import torch
from torch import Tensor, nn

from ..graph import check_knn_method, bipartite_adjacency, interaction_matrix, modality_knn_graph
from ..losses import info_nce, mmd_loss
from ..nn.dream import DREAM
from ..nn.conv import ItemItemConv
from ..nn.encoder import LightGCNEncoder
from ..nn.modality import ModalityAttentionFusion, ModalityFeatures, ModalityGate, ModalityProjector
from .base import (Batch, Embeddings, ModelConfig, Recommender, bpr_terms, register,
                   select_modalities)

__all__ = ["MambaRec", "MambaRecConfig"]


@dataclass
class MambaRecConfig(ModelConfig):
    r"""MambaRec settings; defaults are the authors' Amazon-Baby configuration.

    Attributes:
        embedding_dim: ``d`` (64).
        num_ui_layers: LightGCN layers of the user-item view (4).
        num_ii_layers: propagation layers over each modality's item-item
            kNN graph (1).
        knn_k: neighbours per item in the modality kNN graphs (10).
        knn_method: how those graphs are built: ``'exact'`` (default) or
            ``'faiss'`` (approximate, the ``ann`` extra, for millions of
            items); see :func:`~mmgraph.graph.knn_topk`.
        knn_normalization: normalisation of the kNN graphs (``'sym'``).
        knn_weighted: edge weights are the cosine similarities before the
            normalisation (``True``, the authors' ``build_knn_normalized_graph``
            keeps the top-k similarity values) rather than ones.
        reduction: ``r`` of the two-layer projection ``d_in -> d_in / r -> d``
            per modality, as in the authors' code: a mapping
            ``{modality: r or None}`` (default ``{'image': 8}``: image
            features always go ``d_in -> d_in / 8 -> d``, e.g. 4096 -> 512 ->
            64 or 128 -> 16 -> 64; every other modality, text or audio, one
            Linear ``d_in -> d``); an int applies to every modality;
            ``None`` gives one Linear everywhere.
        reduce_wide_only: apply ``reduction`` only where ``d_in // r``
            exceeds ``embedding_dim`` (mmgraph 0.1's rule; ``False``).
        dropout: dropout after DREAM + LayerNorm (0.2).
        reg_weight: weight of the L2 term (1e-4), on the batch's *final*
            user / positive / negative embeddings divided by ``2B`` (the
            authors' ``bpr_loss``).
        cl_weight: weight of the InfoNCE term (0.01).
        temperature: InfoNCE temperature (0.2 in the code; the paper review
            says 0.01).
        mmd_weight: weight of the MMD term (0.1; grid {0.1, 0.15, 0.2}).
        mmd_sigmas: Gaussian-kernel bandwidths (``(1.0,)``; grid {1, 1.5, 2}).
        trainable_features: the raw modality features are trained (as in the
            authors' code, ``nn.Embedding.from_pretrained(freeze=False)``) or
            frozen.
        use_dream: ablation switch (``False``: no DREAM, projection only).
        dream_attention: ``'authors'`` or ``'paper'`` (see :class:`~mmgraph.nn.DREAM`).
        dream_dilations: dilations of DREAM's 3x3 branches.
        bn_momentum: DREAM batch-norm momentum (0.1).
        shared_layer_norm: one LayerNorm for all modalities (the authors'
            code) instead of one per modality.
        modalities: which of the data's modalities to use (``None``: all).
        cl_distinct_ids: compute the InfoNCE terms over the batch's distinct
            users and items (repeated ids are not their own negatives; see
            :func:`~mmgraph.losses.info_nce`); ``False`` as the authors.
        embedding_init: initialisation of the user and item ID tables:
            ``'normal'`` (default; ``N(0, embedding_init_std^2)`` per entry,
            a scale independent of the number of users and items) or
            ``'xavier'`` (the authors' Xavier-uniform, whose bound
            ``sqrt(6 / (N + d))`` shrinks with the table size ``N``). With
            Xavier on tables of thousands of rows the contrastive term's
            gradient dominates BPR's at the start and the BPR loss stays
            near ln 2 for tens of epochs (see ``docs/models/mambarec.md``).
        embedding_init_std: standard deviation of ``'normal'`` (0.1, the
            LightGCN authors' initialisation).
    """
    renamed = {"num_item_layers": "num_ii_layers"}
    embedding_dim: int = 64
    num_ui_layers: int = 4
    num_ii_layers: int = 1
    knn_k: int = 10
    knn_method: str = "exact"
    knn_normalization: str = "sym"
    knn_weighted: bool = True
    reduction: Optional[int | Mapping[str, Optional[int]]] = field(
        default_factory=lambda: {"image": 8})
    reduce_wide_only: bool = False
    dropout: float = 0.2
    reg_weight: float = 1e-4
    cl_weight: float = 0.01
    temperature: float = 0.2
    mmd_weight: float = 0.1
    mmd_sigmas: tuple[float, ...] = (1.0,)
    trainable_features: bool = True
    use_dream: bool = True
    dream_attention: str = "authors"
    dream_dilations: tuple[int, ...] = (6, 12, 18)
    bn_momentum: float = 0.1
    shared_layer_norm: bool = True
    modalities: Optional[tuple[str, ...]] = None
    cl_distinct_ids: bool = False
    embedding_init: Literal["normal", "xavier"] = "normal"
    embedding_init_std: float = 0.1

    def __post_init__(self):
        if isinstance(self.mmd_sigmas, (int, float)):
            self.mmd_sigmas = (float(self.mmd_sigmas),)
        self.mmd_sigmas = tuple(float(s) for s in self.mmd_sigmas)
        self.dream_dilations = tuple(int(r) for r in self.dream_dilations)
        if self.modalities is not None:
            self.modalities = tuple(self.modalities)
        for name in ("embedding_dim", "knn_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_ui_layers", "num_ii_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if min(self.reg_weight, self.cl_weight, self.mmd_weight) < 0:
            raise ValueError("reg_weight, cl_weight and mmd_weight must be >= 0")
        check_knn_method(self.knn_method, "knn_method")
        if self.embedding_init not in _INITS:
            raise ValueError(f"embedding_init must be one of {_INITS}, got {self.embedding_init!r}")
        if self.embedding_init_std <= 0:
            raise ValueError(f"embedding_init_std must be positive, got {self.embedding_init_std}")
        if isinstance(self.reduction, Mapping):
            self.reduction = dict(self.reduction)
            bad = {m: r for m, r in self.reduction.items() if r is not None and int(r) < 1}
        else:
            bad = {"*": self.reduction} if self.reduction is not None and int(self.reduction) < 1 else {}
        if bad:
            raise ValueError(f"reduction factors must be integers >= 1 (or None), got {bad}")


_INITS = ("normal", "xavier")


def _reduction_for(cfg: MambaRecConfig, modality: str, in_dim: int) -> Optional[int]:
    """The factor ``r`` of ``modality``'s projection ``d_in -> d_in / r -> d`` (``None``: one Linear)."""
    r = cfg.reduction
    r = r.get(modality) if isinstance(r, Mapping) else r
    if r is None:
        return None
    if cfg.reduce_wide_only and in_dim // int(r) <= cfg.embedding_dim:
        return None
    return int(r)


@register
class MambaRec(Recommender):
    r"""MambaRec: DREAM-refined, ID-gated modality views on item-item kNN
    graphs, fused with a LightGCN user-item view and aligned by InfoNCE and MMD.

    For each modality :math:`m` with raw item features
    :math:`\mathbf X^{(m)}` (``data['item'].x_<m>``, any number ``M >= 1``):

    .. math::
        \mathbf H^{(m)} &= \mathrm{DREAM}_m\big(\mathrm{Proj}_m(\mathbf X^{(m)})\big),
        \qquad \mathbf Z^{(m)} = \mathrm{Dropout}(\mathrm{LN}(\mathbf H^{(m)})) \\
        \mathbf I^{(m)} &= \mathbf S_m^{\,L_i}\big(\mathbf E_I \odot
            \sigma(\mathbf Z^{(m)}\mathbf W_m^\top + \mathbf b_m)\big),
        \qquad \mathbf U^{(m)} = \hat{\mathbf R}\,\mathbf I^{(m)} \\
        [\mathbf C_U; \mathbf C_I] &= \tfrac{1}{L+1}\textstyle\sum_{l=0}^{L}
            \tilde{\mathbf A}^l [\mathbf E_U; \mathbf E_I]
            \quad\text{(user-item view, LightGCN)} \\
        \mathbf S &= \mathrm{Fusion}\big(\{[\mathbf U^{(m)}; \mathbf I^{(m)}]\}_m,\
            [\mathbf C_U; \mathbf C_I]\big) \quad (M \ge 2;\ M = 1:\
            \mathbf S = [\mathbf U^{(1)}; \mathbf I^{(1)}]) \\
        [\mathbf Y_U; \mathbf Y_I] &= [\mathbf C_U; \mathbf C_I] + \mathbf S

    with :math:`\mathbf S_m` the symmetric-normalised top-``knn_k`` cosine
    graph of the *raw* features (self included, cosine similarities as edge
    weights; built once by :func:`~mmgraph.graph.modality_knn_graph` and
    cached on ``data``),
    :math:`\hat{\mathbf R} = \mathbf D_U^{-1/2}\mathbf R\mathbf D_I^{-1/2}`,
    :math:`\tilde{\mathbf A}` the LightGCN adjacency, ``Proj`` a
    :class:`~mmgraph.nn.ModalityProjector`, ``Fusion`` a
    :class:`~mmgraph.nn.ModalityAttentionFusion`. Scores are
    :math:`\mathbf y_u^\top \mathbf y_i`.

    Loss (named terms, summed by the trainer):

    * ``bpr``: BPR on the final embeddings;
    * ``reg``: ``reg_weight`` x L2 of the batch's final embeddings / ``2B``;
    * ``cl``: ``cl_weight`` x [InfoNCE(S_I[pos], C_I[pos]) + InfoNCE(S_U[u], C_U[u])];
    * ``mmd``: ``mmd_weight`` x MMD(H^(m)[pos], H^(m')[pos]) (Gaussian kernel on
      L2-normalised DREAM outputs, computed in ``[B, B]`` memory), averaged
      over modality pairs for ``M > 2``, zero for ``M = 1``.

    The ID tables start from ``N(0, 0.1^2)`` (``embedding_init='normal'``),
    not the authors' Xavier-uniform; raw features are trained
    (``trainable_features=True``) as in the authors' code. Training: Adam, lr
    1e-3 x ``0.96 ** (epoch / 50)``, patience 10 (:attr:`train_defaults`).
    Every difference from the authors' code, and the parity run
    (``benchmarks/parity/mambarec.py``): ``docs/models/mambarec.md``.

    Cold start: an item without training interactions has no user-item
    neighbours (its collaborative part is only ``E_I / (L+1)``) but it is
    in the kNN graphs, so its modality view -- hence its score -- comes
    from its features and its feature neighbours.

    Shapes: ``forward() -> Embeddings(user [U, d], item [I, d], extra)`` with
    ``extra = {'side': [U+I, d], 'content': [U+I, d],
    'refined': {m: [I, d]}}``.
    """
    name = "mambarec"
    config_class = MambaRecConfig
    train_defaults = {"patience": 10, "lr_decay": 0.96, "lr_decay_every": 50}

    def __init__(self, data, config: MambaRecConfig | None = None):
        super().__init__(data, config)
        cfg = self.config
        d = cfg.embedding_dim
        names, feats = select_modalities(data, cfg.modalities, "MambaRec")
        bad = [m for m in names if not m.isidentifier()]
        if bad:
            raise ValueError(f"MambaRec: modality names must be identifiers (they name "
                             f"sub-modules), got {bad}")
        self.modalities: list[str] = list(names)

        self.user_emb = nn.Embedding(self.num_users, d)
        self.item_emb = nn.Embedding(self.num_items, d)

        # raw features: trainable parameters (authors) or frozen buffers
        self.features = ModalityFeatures({m: feats[m] for m in names}, trainable=cfg.trainable_features)

        shared_ln = nn.LayerNorm(d) if cfg.shared_layer_norm else None
        self.projectors = nn.ModuleDict()
        self.gates = nn.ModuleDict()
        for m in names:
            in_dim = feats[m].size(1)
            refine = (DREAM(d, dilations=cfg.dream_dilations, attention=cfg.dream_attention,
                            bn_momentum=cfg.bn_momentum) if cfg.use_dream else None)
            self.projectors[m] = ModalityProjector(
                in_dim, d, reduction=_reduction_for(cfg, m, in_dim), dropout=cfg.dropout,
                layer_norm=shared_ln if shared_ln is not None else True, refine=refine)
            self.gates[m] = ModalityGate(d)
        self.fusion = ModalityAttentionFusion(d, len(names)) if len(names) > 1 else None
        self.encoder = LightGCNEncoder(cfg.num_ui_layers, readout="mean")
        self.item_conv = ItemItemConv(cfg.num_ii_layers, readout="last")

        # graphs: built once through mmgraph.graph (cached on data), not saved
        self.register_graph("adj", bipartite_adjacency(data))
        self.register_graph("R", interaction_matrix(data, normalization="sym"))
        for m in names:
            self.register_graph(f"knn_{m}", modality_knn_graph(
                data, m, k=cfg.knn_k, normalization=cfg.knn_normalization,
                weighted=cfg.knn_weighted, method=cfg.knn_method))
        self.reset_parameters()

    # ---------------------------------------------------------------- params
    def reset_parameters(self) -> None:
        for emb in (self.user_emb, self.item_emb):
            if self.config.embedding_init == "xavier":
                nn.init.xavier_uniform_(emb.weight)
            else:
                nn.init.normal_(emb.weight, std=self.config.embedding_init_std)
        self.features.reset_parameters()
        for mod in (*self.projectors.values(), *self.gates.values(), self.fusion):
            if mod is not None:
                mod.reset_parameters()

    def modality_feature(self, m: str) -> Tensor:
        """Current raw features ``[I, d_m]`` of modality ``m``."""
        return self.features[m]

    # --------------------------------------------------------------- forward
    def forward(self) -> Embeddings:
        e_u, e_i = self.user_emb.weight, self.item_emb.weight
        R = self.graph("R")
        views, refined = [], {}
        for m in self.modalities:
            z, h = self.projectors[m](self.modality_feature(m), return_refined=True)
            refined[m] = h
            x = self.gates[m](e_i, z)                                   # [I, d]
            x = self.item_conv(x, self.graph(f"knn_{m}"))                # [I, d]
            views.append(torch.cat([R.matmul(x), x], 0))                # [U+I, d]
        c_u, c_i = self.encoder(e_u, e_i, self.graph("adj"))
        content = torch.cat([c_u, c_i], 0)
        side = self.fusion(views, content) if self.fusion is not None else views[0]
        final = content + side
        user, item = final.split([self.num_users, self.num_items], 0)
        return Embeddings(user, item, {"side": side, "content": content, "refined": refined})

    def loss(self, batch: Batch, out: Embeddings) -> dict[str, Tensor]:
        cfg = self.config
        terms = bpr_terms(batch, out.user, out.item, out.user, out.item, cfg.reg_weight)
        U = self.num_users
        side, content = out.extra["side"], out.extra["content"]
        users, pos = batch.users, batch.pos_items
        # ids: repeats are folded into weights on CPU (the same loss, computed over the
        # batch's distinct users / items); cl_distinct_ids drops them from the loss
        distinct = cfg.cl_distinct_ids
        cl = (info_nce(side[U + pos], content[U + pos], cfg.temperature, ids=pos,
                       distinct=distinct)
              + info_nce(side[users], content[users], cfg.temperature, ids=users,
                         distinct=distinct))
        terms["cl"] = cfg.cl_weight * cl
        refined = out.extra["refined"]
        if len(self.modalities) > 1 and cfg.mmd_weight > 0:
            pairs = list(combinations(self.modalities, 2))
            mmd = sum(mmd_loss(refined[a][pos], refined[b][pos], cfg.mmd_sigmas, ids=pos)
                      for a, b in pairs) / len(pairs)
            terms["mmd"] = cfg.mmd_weight * mmd
        else:
            terms["mmd"] = out.user.new_zeros(())
        return terms
