r"""LGMRec (Guo et al., AAAI'24): local and global graph learning for multimodal recommendation.

**Local graph embeddings.**

* collaborative: LightGCN over the ID embeddings (``num_ui_layers``, layer
  mean; ``cf_model='mf'`` skips propagation), :math:`\mathbf c`;
* modality: items :math:`\mathbf t^{(m)}_I = \mathbf X_m \mathbf T_m`
  (frozen raw features, learned ``[dim_m, feat_embed_dim]`` map), users the
  mean of their items :math:`\mathbf t^{(m)}_U = \mathbf D_U^{-1}\mathbf R\,
  \mathbf t^{(m)}_I`, then ``num_mm_layers`` propagation steps on the
  normalised user-item graph keeping the last,
  :math:`\mathbf g^{(m)} = \hat{\mathbf A}^{L_m}[\mathbf t^{(m)}_U; \mathbf t^{(m)}_I]`;
* :math:`\mathbf l = \mathbf c + \sum_m \mathrm{norm}(\mathbf g^{(m)})`.

**Global hypergraph embeddings.** ``num_hyperedges`` learnable hyperedges per
modality: item-hyperedge affinities :math:`\mathbf H^{(m)}_I =
\operatorname{gumbel\_softmax}(\mathbf X_m \mathbf V_m, \tau)` and
user-hyperedge affinities :math:`\mathbf H^{(m)}_U =
\operatorname{gumbel\_softmax}(\mathbf R\,\mathbf X_m \mathbf V_m, \tau)`, both
with dropout ``1 - keep_rate``; per hypergraph layer
:math:`\boldsymbol\Lambda = \mathbf H_I^{\top}\mathbf z_I`,
:math:`\mathbf z_I \leftarrow \mathbf H_I\boldsymbol\Lambda`,
:math:`\mathbf z_U = \mathbf H_U\boldsymbol\Lambda` starting from
:math:`\mathbf z_I = \mathbf c_I`. Global :math:`\mathbf z = \sum_m
[\mathbf z^{(m)}_U; \mathbf z^{(m)}_I]`.

**Final** :math:`\mathbf l + \alpha\,\mathrm{norm}(\mathbf z)`.

**Loss.** BPR + ``cl_weight`` x hypergraph contrastive loss (for each pair of
modalities, user and item hypergraph embeddings of the batch are contrasted
against *all* users / items, temperature ``temperature``, summed over the batch;
:func:`~mmgraph.losses.pool_info_nce`, with the pool in factored form: the
hypergraph embeddings :math:`\mathbf H\boldsymbol\Lambda` have rank ``num_hyperedges``,
so the ``[B, N]`` logits cost a rank-``H`` product instead of a rank-``d`` one) +
``reg_weight`` x :func:`~mmgraph.losses.l2_reg` (MMRec's unsquared form) of
the batch's final embeddings.

In ``eval()`` mode the Gumbel noise is left out (plain ``softmax(logits /
tau)``), so that scores are deterministic.

See ``docs/models/lgmrec.md``: the paper, the equations, every option with the authors'
name, and the differences from the authors' code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.hetero import modality_features
from ..graph import bipartite_adjacency, interaction_matrix
from ..losses import bpr_loss, l2_reg, pool_info_nce
from ..nn import LightGCNEncoder
from .base import (Batch, Embeddings, ModelConfig, Recommender, batch_rows, pair_scores,
                   register)


@dataclass
class LGMRecConfig(ModelConfig):
    """LGMRec settings (MMRec ``LGMRec.yaml``, the authors' Baby block).

    Attributes:
        embedding_dim: 64.
        reg_weight: 1e-6.
        feat_embed_dim: size of the modality embeddings (64).
        cf_model: ``'lightgcn'`` or ``'mf'``.
        num_ui_layers: LightGCN layers of the collaborative view (2).
        num_mm_layers: propagation steps of the modality view (2).
        num_hyper_layers: hypergraph layers (1).
        num_hyperedges: learnable hyperedges per modality (``hyper_num`` 4).
        keep_rate: 1 - dropout on the hyperedge affinities (0.5).
        alpha: weight of the global embeddings (0.3).
        cl_weight: weight of the hypergraph contrastive loss (1e-4).
        temperature: Gumbel-softmax and contrastive temperature (MMRec ``tau``, 0.2).
    """
    renamed = {"tau": "temperature"}
    embedding_dim: int = 64
    reg_weight: float = 1e-6
    feat_embed_dim: int = 64
    cf_model: Literal["lightgcn", "mf"] = "lightgcn"
    num_ui_layers: int = 2
    num_mm_layers: int = 2
    num_hyper_layers: int = 1
    num_hyperedges: int = 4
    keep_rate: float = 0.5
    alpha: float = 0.3
    cl_weight: float = 1e-4
    temperature: float = 0.2

    def __post_init__(self):
        if self.num_hyper_layers < 1:
            raise ValueError(f"num_hyper_layers must be >= 1, got {self.num_hyper_layers}")
        if not 0.0 < self.keep_rate <= 1.0:
            raise ValueError(f"keep_rate must be in (0, 1], got {self.keep_rate}")


@register
class LGMRec(Recommender):
    r"""Local and Global Graph Learning for Multimodal Recommendation, ``M >= 1``
    modalities (the contrastive loss needs ``M >= 2``).

    Shapes: ``forward() -> Embeddings(user [U, d], item [I, d],
    extra={'hyper_user': [M, U, d], 'hyper_item': [M, I, d], 'hyper_factors': M x (H_U [U, H],
    H_I [I, H], Lambda [H, d])})``.
    """
    name = "lgmrec"
    config_class = LGMRecConfig

    def __init__(self, data, config: LGMRecConfig | None = None):
        super().__init__(data, config)
        cfg = self.config
        feats = modality_features(data)
        if not feats:
            raise ValueError("LGMRec needs at least one item modality (data['item'].x_<name>)")
        self.modalities = list(feats)
        for m, x in feats.items():
            self.register_buffer(f"feat_{m}", x.float(), persistent=False)
        d = cfg.embedding_dim
        self.user_emb = nn.Embedding(self.num_users, d)
        self.item_emb = nn.Embedding(self.num_items, d)
        self.item_trs = nn.ParameterDict(
            {m: nn.Parameter(torch.empty(x.size(1), cfg.feat_embed_dim)) for m, x in feats.items()})
        self.hyper = nn.ParameterDict(
            {m: nn.Parameter(torch.empty(x.size(1), cfg.num_hyperedges)) for m, x in feats.items()})
        self.drop = nn.Dropout(1.0 - cfg.keep_rate)
        self.ui_encoder = LightGCNEncoder(cfg.num_ui_layers, readout="mean")
        self.mm_encoder = LightGCNEncoder(cfg.num_mm_layers, readout="last")
        self.register_graph("adj", bipartite_adjacency(data))
        self.register_graph("r", interaction_matrix(data))
        self.register_graph("r_mean", interaction_matrix(data, "row"))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        for m in self.modalities:
            nn.init.xavier_uniform_(self.item_trs[m])
            nn.init.xavier_uniform_(self.hyper[m])

    def _affinity(self, logits: Tensor) -> Tensor:
        """Soft hyperedge assignment: Gumbel-softmax in training, softmax in eval."""
        tau = self.config.temperature
        if self.training:
            return F.gumbel_softmax(logits, tau=tau, hard=False, dim=1)
        return torch.softmax(logits / tau, dim=1)

    def forward(self) -> Embeddings:
        cfg = self.config
        adj, r = self.graph("adj"), self.graph("r")
        n_u = self.num_users
        eu, ei = self.user_emb.weight, self.item_emb.weight
        if cfg.cf_model == "lightgcn":
            cu, ci = self.ui_encoder(eu, ei, adj)
        else:
            cu, ci = eu, ei
        # local modality view: all modalities propagated together as column blocks
        feats = [getattr(self, f"feat_{m}") for m in self.modalities]
        # one GEMM per modality for the projection and the hyperedge logits: a
        # separate [dim_m, H] product (H = 4) costs as much memory traffic as the
        # [dim_m, d] one, forward and backward
        k = cfg.feat_embed_dim
        xw = [x @ torch.cat([self.item_trs[m], self.hyper[m]], dim=1)
              for m, x in zip(self.modalities, feats)]
        item_t = torch.cat([t[:, :k] for t in xw], dim=-1)
        user_t = self.graph("r_mean").matmul(item_t)
        gu, gi = self.mm_encoder(user_t, item_t, adj)
        g = torch.cat([gu, gi], dim=0).view(n_u + self.num_items, len(feats), cfg.feat_embed_dim)
        local = torch.cat([cu, ci], dim=0) + F.normalize(g, dim=-1).sum(1)
        # global hypergraph view
        hyper_u, hyper_i, factors = [], [], []
        for t in xw:
            logits_i = t[:, k:]                                  # [I, H]
            logits_u = r.matmul(logits_i)                        # [U, H]
            h_i = self.drop(self._affinity(logits_i))
            h_u = self.drop(self._affinity(logits_u))
            z_i = ci
            for _ in range(cfg.num_hyper_layers):
                lat = h_i.t() @ z_i                              # [H, d]
                z_i = h_i @ lat
                z_u = h_u @ lat
            hyper_u.append(z_u)
            hyper_i.append(z_i)
            factors.append((h_u, h_i, lat))                      # z_u = h_u lat, z_i = h_i lat
        hu, hi = torch.stack(hyper_u), torch.stack(hyper_i)      # [M, U, d], [M, I, d]
        glob = torch.cat([hu.sum(0), hi.sum(0)], dim=0)
        final = local + cfg.alpha * F.normalize(glob, dim=-1)
        return Embeddings(final[:n_u], final[n_u:], {"hyper_user": hu, "hyper_item": hi,
                                                     "hyper_factors": factors})

    def loss(self, batch: Batch, out: Embeddings) -> dict[str, Tensor]:
        cfg = self.config
        users, pos = batch.users, batch.pos_items
        u, p, n = batch_rows(batch, out.user, out.item, "LGMRec")
        pos_s, neg_s = pair_scores(u, p, n)
        hu, hi = out.extra["hyper_user"], out.extra["hyper_item"]
        fac = out.extra["hyper_factors"]
        cl = u.new_zeros(())
        n_mod = hu.size(0)
        for a in range(n_mod):
            for b in range(a + 1, n_mod):
                # the pools z = H Lambda have rank num_hyperedges: factored logits
                h_u, h_i, lat = fac[b]
                cl = cl + pool_info_nce(hu[a][users], (h_u, lat), users, cfg.temperature)
                cl = cl + pool_info_nce(hi[a][pos], (h_i, lat), pos, cfg.temperature)
        reg = l2_reg(u, p, n, batch_size=users.numel(), squared=False)
        return {"bpr": bpr_loss(pos_s, neg_s), "cl": cfg.cl_weight * cl,
                "reg": cfg.reg_weight * reg}


__all__ = ["LGMRec", "LGMRecConfig"]
