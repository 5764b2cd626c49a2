r"""REARM (Ma et al., ACM MM'25): refining multi-modal contrastive learning and
homography relations for recommendation.

Pipeline of one forward pass (shapes for ``U`` users, ``I`` items, ``N``
modalities, width ``d``):

1. **Graphs** (built once, through :mod:`mmgraph.graph`):

   * item homography ``S_I = a_I C_I + (1 - a_I) sum_m w_m K_m`` where ``C_I``
     is the top-``item_knn_k`` item co-occurrence graph (softmax over shared
     user counts, :func:`~mmgraph.graph.cooccurrence_graph`) and ``K_m`` the
     cosine kNN graph of item features of modality ``m``
     (:func:`~mmgraph.graph.modality_knn_graph`; the kept cosine
     similarities, self included, divided by ``k``: the authors'
     ``get_knn_adj_mat``), ``a_I = ii_co_weight``;
   * user homography ``S_U = a_U C_U + (1 - a_U) sum_m v_m P_m`` with the
     top-``user_knn_k`` user co-occurrence graph ``C_U`` and the cosine kNN
     graph ``P_m`` of the users' interest profiles (mean features of their
     training items, :func:`~mmgraph.graph.user_interest_graph`),
     ``a_U = uu_co_weight``.

   The mixes are stored in ``data`` as edge types
   ``('item', 'homography', 'item')`` and ``('user', 'homography', 'user')``
   (``edge_index`` row = node, column = neighbour; ``edge_weight``).

2. **Homography propagation**: ``X_I = normalize(S_I^{L_I} [E_I | T_1 F_1 | ... | T_N F_N])``
   with item ID embeddings ``E_I`` ``[I, d]``, (trainable) item features
   ``F_m`` ``[I, dim_m]`` projected by ``T_m``; the same for users over
   ``S_U`` with the trainable interest profiles. Each ``d``-wide part of a
   row is L2-normalised (``homography_norm='parts'``); the authors normalise
   the whole ``(1 + N) d`` row (``'joint'``).

3. **Attention on item modality features** (each of the ``d`` coordinates is
   a one-dimensional token, :class:`ScalarTokenAttention`):
   self-attention ``A_m = PReLU(LN(X_m + SelfAttn_m(X_m, X_m)))``, then
   cross-modal attention ``B_m = PReLU(LN(A_m + CrossAttn_m(q=Q_m, kv=A_m)))``
   with ``Q_m`` the other modality (``N = 2``) or the mean of the other
   modalities (``N > 2``). User modality parts get ``PReLU`` only.

4. **Heterography propagation**: LightGCN over the user-item graph (layer
   mean, ``num_layers``) of the ID part ``[E_U'; E_I']`` and of the modality
   part ``[B_U; B_I]`` (``[U + I, N d]``).

5. **Meta-network** (:class:`LowRankMetaTransform`): modality-shared
   knowledge ``k = W [h_1 | ... | h_N]`` (``N d -> d``) generates a
   personalised rank-``r`` transform ``W_1 W_2`` (``[d, r]`` and ``[r, d]``,
   softmax-normalised, plus their mean over nodes) applied to the ID
   embedding: ``s = (e^T W_1) W_2``.

6. **Output**: ``z = [PReLU(h_1) + e | ... | PReLU(h_N) + e | PReLU(s) + e]``
   (``(N + 1) d`` wide) for users and items; score = ``z_u^T z_i``.

Loss: BPR (:func:`~mmgraph.losses.bpr_loss`)
+ ``cl_weight`` x InfoNCE (:func:`~mmgraph.losses.info_nce`, temperature
``temperature``) between every pair of modality parts ``h_m, h_m'`` of the batch's
unique users and of its unique (positive and negative) items
+ ``diff_loss_weight`` x orthogonality (:func:`~mmgraph.losses.orthogonal_loss`,
row norms held constant in the backward pass as the authors do) between every
pair of modality parts of the batch's users and positive items.
The authors' L2 regularisation is AdamW's decoupled weight decay
(``optimizer='adamw'``, ``weight_decay=5e-4``), carried by
:attr:`REARM.train_defaults`; the learning rate there is ``1e-3``, not the
authors' ``5e-5`` (measured: ``docs/models/rearm.md``).

Any number ``N >= 1`` of modalities (the authors hard-wire image and text;
``N = 2`` reduces to their model). The modalities, every option with the
authors' name, the differences from the authors' code
(github.com/MrShouxingMa/REARM) and the parity run
(``benchmarks/parity/rearm.py``): ``docs/models/rearm.md``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from ..data.hetero import ITEM, USER, feature_key, modality_names
from ..graph import (check_knn_method, SparseAdj, bipartite_adjacency, cooccurrence_graph,
                     homography_mix, modality_knn_graph, modality_mix_weights, user_interest_graph,
                     user_profiles)
from ..losses import bpr_loss, info_nce, l2_reg, orthogonal_loss
from ..nn.attention import ScalarTokenAttention
from ..nn.conv import ItemItemConv
from ..nn.encoder import LightGCNEncoder
from ..nn.meta import META_GRADIENTS, LowRankMetaTransform
from .base import (Batch, Embeddings, ModelConfig, Recommender, batch_rows, pair_scores,
                   register)

#: edge types under which the mixed homography graphs are stored in ``data``
ITEM_HOMOGRAPHY = (ITEM, "homography", ITEM)
USER_HOMOGRAPHY = (USER, "homography", USER)

KNN_WEIGHTINGS = ("similarity", "binary")
CO_FILLS = ("none", "repeat")
HOMOGRAPHY_NORMS = ("parts", "joint")


@dataclass
class REARMConfig(ModelConfig):
    r"""REARM settings. Defaults are the authors' Amazon Baby settings
    (README command of github.com/MrShouxingMa/REARM; their names in brackets).

    Attributes:
        embedding_dim: ``d`` [embedding_dim 64].
        reg_weight: weight of an explicit batch L2 term (LightGCN form) on the
            layer-0 ID embeddings. ``0``: the authors' loss has none
            (``reg_loss = 0  # Realized in AdamW``); their ``--reg_weight 5e-4``
            is AdamW's decoupled ``weight_decay``, a training setting: see
            :attr:`REARM.train_defaults` (``optimizer='adamw'``,
            ``weight_decay=5e-4``, ``lr=1e-3``), which
            :func:`mmgraph.train.train_config_for` and the CLI apply.
        num_layers: user-item (heterography) propagation layers [num_layer 4].
        rank: rank ``r`` of the personalised transforms [rank 3].
        s_drop: dropout on self-attention weights [s_drop 0.4].
        m_drop: dropout on cross-modal attention weights [m_drop 0.6].
        user_knn_k: neighbours per user in the user co-occurrence and
            interest graphs [user_knn_k 40; num_user_co = user_knn_k].
        item_knn_k: neighbours per item in the item co-occurrence and
            modality graphs [item_knn_k 10; num_item_co = item_knn_k].
        knn_method: how the item modality kNN graphs are built: ``'exact'``
            (default) or ``'faiss'`` (approximate, the ``ann`` extra, for
            millions of items); see :func:`~mmgraph.graph.knn_topk`. The
            user interest graphs are always exact.
        num_ii_layers: item-item propagation layers [n_ii_layers 1].
        num_uu_layers: user-user propagation layers [n_uu_layers 1].
        temperature: InfoNCE temperature [cl_tmp 0.6].
        cl_weight: InfoNCE weight [cl_loss_weight 5e-6].
        diff_loss_weight: orthogonality weight [diff_loss_weight 5e-5].
        uu_co_weight: share of the co-occurrence graph in the user graph [0.4].
        ii_co_weight: share of the co-occurrence graph in the item graph [0.2].
        u_mm_image_weight: share of the image interest graph among the user
            modality graphs [0.2]; the other modalities share the rest
            equally (the authors: text gets ``1 - w``). Without an ``'image'``
            modality all modalities weigh the same.
        i_mm_image_weight: the same for the item modality graphs [0].
        co_weighting: co-occurrence edge weights, ``'softmax'`` over the kept
            counts [user_aggr_mode 'softmax'] or raw ``'count'``.
        co_fill: co-occurrence rows with fewer than ``k`` nodes: ``'none'``
            keeps what they have; ``'repeat'`` fills them as the authors'
            ``topk_sample`` does (short rows padded by repeating random kept
            nodes, rows without co-occurrence given the ``k`` most popular
            nodes; see :func:`~mmgraph.graph.cooccurrence_graph`).
        homography_norm: L2 normalisation of the homography output
            ``[id | T_1 F_1 | ... | T_N F_N]``: ``'parts'`` normalises each
            ``d``-wide part, ``'joint'`` (the authors') the whole row, where
            large raw features drown the ID part (``docs/models/rearm.md``).
        knn_weighting: ``'similarity'`` (the authors' ``get_knn_adj_mat``:
            cosine similarity of the kept neighbours divided by ``k``, self
            included) or ``'binary'`` (``1/k`` per kept neighbour, FREEDOM's
            convention).
        modalities: modalities to use (default: every ``x_<m>`` in the data,
            sorted). Order matters only for the output layout.
        trainable_features: item features and user interest profiles are
            trainable tables initialised from the data (the authors:
            ``nn.Embedding.from_pretrained(freeze=False)`` and
            ``nn.Parameter(u_interest)``); ``False`` keeps them fixed.
        meta_gradient: how gradients reach the meta-network's knowledge
            extractor. ``'frozen'`` (the authors: its output is detached, so
            the extractor is a fixed random projection; here its weights are
            marked ``requires_grad=False``); ``'detach_input'`` (trained, but
            no gradient flows back into the modality parts); ``'full'``.
    """
    renamed = {"cl_tmp": "temperature", "cl_loss_weight": "cl_weight",
               "train_features": "trainable_features", "n_ii_layers": "num_ii_layers",
               "n_uu_layers": "num_uu_layers"}
    embedding_dim: int = 64
    reg_weight: float = 0.0
    num_layers: int = 4
    rank: int = 3
    s_drop: float = 0.4
    m_drop: float = 0.6
    user_knn_k: int = 40
    item_knn_k: int = 10
    knn_method: str = "exact"
    num_ii_layers: int = 1
    num_uu_layers: int = 1
    temperature: float = 0.6
    cl_weight: float = 5e-6
    diff_loss_weight: float = 5e-5
    uu_co_weight: float = 0.4
    ii_co_weight: float = 0.2
    u_mm_image_weight: float = 0.2
    i_mm_image_weight: float = 0.0
    co_weighting: str = "softmax"
    co_fill: str = "none"
    homography_norm: str = "parts"
    knn_weighting: str = "similarity"
    modalities: tuple[str, ...] | None = None
    trainable_features: bool = True
    meta_gradient: str = "frozen"

    def __post_init__(self):
        if self.modalities is not None:
            self.modalities = tuple(self.modalities)
        for name in ("embedding_dim", "rank", "user_knn_k", "item_knn_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_layers", "num_ii_layers", "num_uu_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("s_drop", "m_drop", "uu_co_weight", "ii_co_weight", "u_mm_image_weight",
                     "i_mm_image_weight"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.co_weighting not in ("softmax", "count"):
            raise ValueError(f"co_weighting must be 'softmax' or 'count', "
                             f"got {self.co_weighting!r}")
        if self.homography_norm not in HOMOGRAPHY_NORMS:
            raise ValueError(f"homography_norm must be one of {HOMOGRAPHY_NORMS}, "
                             f"got {self.homography_norm!r}")
        if self.co_fill not in CO_FILLS:
            raise ValueError(f"co_fill must be one of {CO_FILLS}, got {self.co_fill!r}")
        if self.co_fill == "repeat" and self.co_weighting != "softmax":
            raise ValueError("co_fill='repeat' (the authors' topk_sample) needs "
                             "co_weighting='softmax'")
        if self.knn_weighting not in KNN_WEIGHTINGS:
            raise ValueError(f"knn_weighting must be one of {KNN_WEIGHTINGS}, "
                             f"got {self.knn_weighting!r}")
        if self.meta_gradient not in META_GRADIENTS:
            raise ValueError(f"meta_gradient must be one of {META_GRADIENTS}, "
                             f"got {self.meta_gradient!r}")
        check_knn_method(self.knn_method, "knn_method")


# --------------------------------------------------------------------------- graphs

def build_homography_graphs(data: HeteroData, config: REARMConfig,
                            modalities: Sequence[str] | None = None,
                            store: bool = True) -> tuple[SparseAdj, SparseAdj]:
    r"""REARM's item-item ``[I, I]`` and user-user ``[U, U]`` homography graphs.

    Item: ``ii_co_weight`` x co-occurrence (top ``item_knn_k``) +
    ``(1 - ii_co_weight)`` x modality kNN mix (``item_knn_k``,
    :func:`modality_mix_weights` with ``i_mm_image_weight``). User: the same
    with ``uu_co_weight``, ``user_knn_k``, interest graphs and
    ``u_mm_image_weight``. With ``store``, written to ``data`` as
    :data:`ITEM_HOMOGRAPHY` / :data:`USER_HOMOGRAPHY` (the co-occurrence
    graphs also as ``(side, 'co_occurs', side)`` by their builder).
    """
    mods = list(modalities) if modalities is not None else modality_names(data)
    weighted = config.knn_weighting == "similarity"
    norm = None if weighted else "sym"
    out = []
    for side, k, co_w, img_w in (("item", config.item_knn_k, config.ii_co_weight,
                                  config.i_mm_image_weight),
                                 ("user", config.user_knn_k, config.uu_co_weight,
                                  config.u_mm_image_weight)):
        n = int(data[side].num_nodes)
        co = cooccurrence_graph(data, side=side, k=k, weighting=config.co_weighting,
                                fill=config.co_fill,
                                store=store) if co_w > 0 else None
        sim_w = modality_mix_weights(mods, img_w)
        sims = {}
        if co_w < 1:
            for m, w in sim_w.items():
                if w <= 0:
                    continue
                if side == "item":
                    sims[m] = modality_knn_graph(data, m, k, normalization=norm, store=False,
                                                 weighted=weighted, method=config.knn_method)
                else:
                    sims[m] = user_interest_graph(data, m, k, normalization=norm, store=False,
                                                  weighted=weighted)
        # the authors' D^-1/2 S D^-1/2 with count degrees = S / k (k kept per row)
        scale = 1.0 / min(k, n) if weighted else 1.0
        adj = homography_mix(co, sims, sim_w, co_w, scale)
        if store:
            et = ITEM_HOMOGRAPHY if side == "item" else USER_HOMOGRAPHY
            data[et].edge_index = adj.edge_index
            data[et].edge_weight = adj.value
        out.append(adj)
    return out[0], out[1]


# --------------------------------------------------------------------------- model

@register
class REARM(Recommender):
    r"""REARM: homography + heterography propagation, modality attention,
    meta-network low-rank transforms, orthogonality and InfoNCE constraints.

    See the module documentation for the equations. Shapes:
    ``forward() -> Embeddings(user [U, (N+1) d], item [I, (N+1) d],
    extra={'feat_user': [U, N d], 'feat_item': [I, N d], 'id_user': [U, d],
    'id_item': [I, d]})`` where ``feat_*`` are the propagated modality parts
    (modality ``m`` in columns ``m d .. (m+1) d``) the contrastive and
    orthogonality losses act on.

    Args:
        data: the project's :class:`HeteroData` with at least one item
            modality ``x_<m>`` and training interactions.
        config: :class:`REARMConfig`.
    """
    name = "rearm"
    config_class = REARMConfig
    uses_negatives = True
    #: the authors' optimisation (main.py / parser.py): AdamW, lr held constant,
    #: weight decay 5e-4 (their ``--reg_weight``), 2000 epochs; early stopping
    #: patience 20, batch 2048 and the learning rate are the trainer's defaults:
    #: 1e-3, not their 5e-5 (``--lr 5e-5`` restores it; equal accuracy on
    #: synthetic Baby in a quarter of the epochs, +0.014 test Recall@20 on TikTok
    #: where 5e-5 peaks below LightGCN: docs/models/rearm.md)
    train_defaults = {"optimizer": "adamw", "weight_decay": 5e-4, "epochs": 2000}

    def __init__(self, data: HeteroData, config: REARMConfig | None = None):
        super().__init__(data, config)
        cfg = self.config
        available = modality_names(data)
        mods = list(cfg.modalities) if cfg.modalities is not None else available
        if not mods:
            raise ValueError("REARM needs at least one item modality (data['item'].x_<m>); "
                             "the data has none")
        missing = [m for m in mods if m not in available]
        if missing:
            raise ValueError(f"modalities {missing} are not in the data; available: {available}")
        self.modalities = mods
        d = cfg.embedding_dim
        n_mod = len(mods)

        # graphs
        ii, uu = build_homography_graphs(data, cfg, mods, store=True)
        self.register_graph("ii", ii)
        self.register_graph("uu", uu)
        self.register_graph("ui", bipartite_adjacency(data))

        # embeddings and modality inputs
        self.user_emb = nn.Embedding(self.num_users, d)
        self.item_emb = nn.Embedding(self.num_items, d)
        self._raw = {}
        self.item_feat = nn.ParameterDict() if cfg.trainable_features else None
        self.user_pref = nn.ParameterDict() if cfg.trainable_features else None
        self.item_proj = nn.ModuleDict()
        self.user_proj = nn.ModuleDict()
        for m in mods:
            x = data[ITEM][feature_key(m)].float()
            prof = user_profiles(data, m)
            self._raw[m] = (x, prof)
            if cfg.trainable_features:
                self.item_feat[m] = nn.Parameter(x.detach().clone())
                self.user_pref[m] = nn.Parameter(prof.detach().clone())
            else:
                self.register_buffer(f"_item_feat_{m}", x.detach().clone(), persistent=False)
                self.register_buffer(f"_user_pref_{m}", prof.detach().clone(), persistent=False)
            self.item_proj[m] = nn.Linear(x.size(1), d)
            self.user_proj[m] = nn.Linear(x.size(1), d)

        # propagation (parameter-free)
        self.ii_conv = ItemItemConv(cfg.num_ii_layers, readout="last")
        self.uu_conv = ItemItemConv(cfg.num_uu_layers, readout="last")
        self.ui_encoder = LightGCNEncoder(cfg.num_layers, readout="mean")

        # attention on item modality features
        self.self_attn = nn.ModuleDict({m: ScalarTokenAttention(cfg.s_drop) for m in mods})
        self.cross_attn = nn.ModuleDict({m: ScalarTokenAttention(cfg.m_drop) for m in mods}) \
            if n_mod > 1 else None
        self.norm = nn.LayerNorm(d)      # one LayerNorm shared by every attention block
        self.act = nn.PReLU()            # one PReLU shared by the whole model (the authors')

        # meta-network
        self.meta_user = LowRankMetaTransform(n_mod * d, d, cfg.rank, cfg.meta_gradient)
        self.meta_item = LowRankMetaTransform(n_mod * d, d, cfg.rank, cfg.meta_gradient)
        self.reset_parameters()

    # ------------------------------------------------------------------ setup
    def reset_parameters(self) -> None:
        nn.init.normal_(self.user_emb.weight, std=0.1)
        nn.init.normal_(self.item_emb.weight, std=0.1)
        for m in self.modalities:
            for lin in (self.item_proj[m], self.user_proj[m]):
                nn.init.xavier_normal_(lin.weight)
                bound = 1.0 / math.sqrt(lin.in_features)
                nn.init.uniform_(lin.bias, -bound, bound)
            if self.item_feat is not None:
                x, prof = self._raw[m]
                with torch.no_grad():
                    self.item_feat[m].copy_(x.to(self.item_feat[m].device))
                    self.user_pref[m].copy_(prof.to(self.user_pref[m].device))
            self.self_attn[m].reset_parameters()
            if self.cross_attn is not None:
                self.cross_attn[m].reset_parameters()
        self.norm.reset_parameters()
        self.act.reset_parameters()
        self.meta_user.reset_parameters()
        self.meta_item.reset_parameters()

    def _item_feature(self, m: str) -> Tensor:
        return self.item_feat[m] if self.item_feat is not None else getattr(self, f"_item_feat_{m}")

    def _user_preference(self, m: str) -> Tensor:
        return self.user_pref[m] if self.user_pref is not None else getattr(self, f"_user_pref_{m}")

    # ---------------------------------------------------------------- forward
    def _normalize(self, x: Tensor) -> Tensor:
        """L2 rows of ``[id | modality parts]``: each ``d``-wide part or the whole row."""
        if self.config.homography_norm == "joint":
            return F.normalize(x, dim=-1)
        n, d = x.size(0), self.config.embedding_dim
        return F.normalize(x.view(n, -1, d), dim=-1).view(n, -1)

    def _attend(self, parts: list[Tensor]) -> list[Tensor]:
        """Self-attention per modality, then cross-modal attention."""
        mods = self.modalities
        s = [self.act(self.norm(x + self.self_attn[m](x, x))) for m, x in zip(mods, parts)]
        if self.cross_attn is None:
            return s
        n = len(s)
        total = torch.stack(s, 0).sum(0) if n > 2 else None
        out = []
        for j, (m, x) in enumerate(zip(mods, s)):
            q = s[1 - j] if n == 2 else (total - x) / (n - 1)
            out.append(self.act(self.norm(x + self.cross_attn[m](q, x))))
        return out

    def forward(self) -> Embeddings:
        d = self.config.embedding_dim
        mods = self.modalities
        n_mod = len(mods)
        # homography: item-item and user-user graphs over [id | modality projections]
        xi = torch.cat([self.item_emb.weight]
                       + [self.item_proj[m](self._item_feature(m)) for m in mods], dim=-1)
        xu = torch.cat([self.user_emb.weight]
                       + [self.user_proj[m](self._user_preference(m)) for m in mods], dim=-1)
        xi = self._normalize(self.ii_conv(xi, self.graph("ii")))
        xu = self._normalize(self.uu_conv(xu, self.graph("uu")))
        item_parts = list(xi[:, d:].split(d, dim=-1))
        user_parts = list(xu[:, d:].split(d, dim=-1))

        # attention on item modality parts; users: PReLU only
        item_parts = self._attend(item_parts)
        user_parts = [self.act(x) for x in user_parts]

        # heterography: LightGCN over the user-item graph of [id | modality parts]
        hu, hi = self.ui_encoder(torch.cat([xu[:, :d]] + user_parts, dim=-1),
                                 torch.cat([xi[:, :d]] + item_parts, dim=-1), self.graph("ui"))
        id_u, feat_u = hu[:, :d], hu[:, d:]
        id_i, feat_i = hi[:, :d], hi[:, d:]

        share_u = self.meta_user(id_u, feat_u)
        share_i = self.meta_item(id_i, feat_i)

        def final(idv: Tensor, feat: Tensor, share: Tensor) -> Tensor:
            act = self.act(torch.cat([feat, share], dim=-1))
            return act + idv.repeat(1, n_mod + 1)

        return Embeddings(final(id_u, feat_u, share_u), final(id_i, feat_i, share_i),
                          {"feat_user": feat_u, "feat_item": feat_i, "id_user": id_u,
                           "id_item": id_i})

    # ------------------------------------------------------------------- loss
    def _modality_pairs(self) -> list[tuple[int, int]]:
        n = len(self.modalities)
        return [(a, b) for a in range(n) for b in range(a + 1, n)]

    def loss(self, batch: Batch, out: Embeddings) -> dict[str, Tensor]:
        cfg = self.config
        d = cfg.embedding_dim
        users, pos, neg = batch.users, batch.pos_items, batch.neg_items
        terms = {"bpr": bpr_loss(*pair_scores(*batch_rows(batch, out.user, out.item, "REARM")))}

        pairs = self._modality_pairs()
        if pairs:
            fu, fi = out.extra["feat_user"], out.extra["feat_item"]
            # InfoNCE between modalities over the batch's distinct users / items
            uu = torch.unique(users)
            ii = torch.unique(torch.cat([pos.reshape(-1), neg.reshape(-1)]))
            fu_b, fi_b = fu[uu], fi[ii]
            cl = sum(info_nce(fu_b[:, a * d:(a + 1) * d], fu_b[:, b * d:(b + 1) * d], cfg.temperature)
                     + info_nce(fi_b[:, a * d:(a + 1) * d], fi_b[:, b * d:(b + 1) * d], cfg.temperature)
                     for a, b in pairs)
            terms["cl"] = cfg.cl_weight * cl
            # orthogonality of modality-unique parts: the batch's users and positives
            fu_o, fi_o = fu[users], fi[pos]
            # the row norms are constants in the backward pass (the authors' .detach())
            diff = sum(orthogonal_loss(fu_o[:, a * d:(a + 1) * d], fu_o[:, b * d:(b + 1) * d],
                                       detach_norm=True)
                       + orthogonal_loss(fi_o[:, a * d:(a + 1) * d], fi_o[:, b * d:(b + 1) * d],
                                         detach_norm=True)
                       for a, b in pairs)
            terms["diff"] = cfg.diff_loss_weight * diff
        if cfg.reg_weight > 0:
            terms["reg"] = cfg.reg_weight * l2_reg(
                self.user_emb.weight[users], self.item_emb.weight[pos],
                self.item_emb.weight[neg], batch_size=users.numel())
        return terms


# ScalarTokenAttention (mmgraph.nn.attention), LowRankMetaTransform (mmgraph.nn.meta),
# modality_mix_weights and homography_mix (mmgraph.graph) are general blocks now; their
# names stay importable from here
__all__ = ["REARM", "REARMConfig", "build_homography_graphs", "ITEM_HOMOGRAPHY", "USER_HOMOGRAPHY",
           "ScalarTokenAttention", "LowRankMetaTransform", "modality_mix_weights",
           "homography_mix"]
