r"""SLMRec (Tao et al., IEEE TMM'22): self-supervised learning for multimedia recommendation.

**Views.** The item ID embeddings and each modality's projected features
:math:`\phi_m(\hat{\mathbf x}^{(m)}_i)` (:math:`\hat{\mathbf x}` L2-normalised
raw features) are propagated with LightGCN over the user-item graph, each
together with the shared user ID embeddings, giving ``M + 1`` views
:math:`(\mathbf u^{(v)}, \mathbf i^{(v)})`. Since propagation is linear and the
user input is shared, all views are propagated at once as one
``[N, (M+1) d]`` matrix.

**Fusion.** :math:`\mathbf u = \mathbf W_u[\mathbf u^{(0)}\|\dots\|\mathbf u^{(M)}]
+ \mathbf b_u`, :math:`\mathbf i = \mathbf W_i[\mathbf i^{(0)}\|\dots\|\mathbf
i^{(M)}] + \mathbf b_i` (``fusion='concat'``; ``'mean'`` averages the views
first).

**Main loss.** In-batch InfoNCE between a batch's users and their positive
items (:func:`~mmgraph.losses.info_nce`, temperature ``temperature``); no
negative sampling.

**Self-supervised task** (weight ``ssl_weight``, temperature ``ssl_temperature``):

* ``'FAC'`` (fine and coarse, MMRec's default): a chain of projection heads
  :math:`g_1, g_2, \dots` over the item ID view; at step ``k`` the anchor
  :math:`\mathbf a_k = g_k(\mathbf a_{k-1})` (:math:`\mathbf a_0 =
  \mathbf i^{(0)}`) is contrasted with :math:`h_k(\mathbf i^{(k)})` by
  cross-entropy over the in-batch logits :math:`\mathbf a_k \mathbf
  h_k^\top/\tau` (un-normalised, as in the reference code); the last step
  projects to ``d // 2`` (the coarse space);
* ``'FD'`` (feature dropout): two propagations with dropout after every
  layer; InfoNCE between the two fused views of the batch's users and of
  its items;
* ``'FM'`` (feature masking): two propagations in which one randomly chosen
  item view (different in each) is zeroed; InfoNCE as for ``'FD'``;
* ``'FD+FM'``: masking plus dropout.

See ``docs/models/slmrec.md``: the paper, the equations, every option with the authors'
name, and the differences from the authors' code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.hetero import modality_features
from ..graph import bipartite_adjacency
from ..losses import info_nce, l2_reg
from ..nn import LightGCNEncoder
from .base import Batch, Embeddings, ModelConfig, Recommender, register


@dataclass
class SLMRecConfig(ModelConfig):
    """SLMRec settings (MMRec ``SLMRec.yaml``; grid values from the authors' code).

    Attributes:
        embedding_dim: MMRec ``recdim`` 64.
        reg_weight: weight of an extra L2 term on the batch's ID embeddings.
            MMRec's SLMRec has none (its ``reg`` grid is unused); it
            regularises through Adam ``weight_decay=1e-4``, which
            :attr:`SLMRec.train_defaults` sets. Default 0.
        num_layers: LightGCN layers (MMRec ``layer_num`` 3).
        temperature: main InfoNCE temperature (MMRec ``temp`` 0.2).
        ssl_task: ``'FAC'`` (MMRec), ``'FD'``, ``'FM'`` or ``'FD+FM'``.
        ssl_weight: weight of the self-supervised loss (``ssl_alpha``; MMRec
            grid ``[0.01 ... 1.0]``, authors' default 0.1).
        ssl_temperature: its temperature (``ssl_temp``; MMRec grid
            ``[0.1 ... 1.0]``, authors' default 0.2).
        dropout: feature dropout of ``'FD'`` (MMRec ``dropout_rate`` 0.3).
        fusion: ``'concat'`` (MMRec ``mm_fusion_mode``) or ``'mean'``.
    """
    embedding_dim: int = 64
    reg_weight: float = 0.0
    num_layers: int = 3
    temperature: float = 0.2
    ssl_task: Literal["FAC", "FD", "FM", "FD+FM"] = "FAC"
    ssl_weight: float = 0.1
    ssl_temperature: float = 0.2
    dropout: float = 0.3
    fusion: Literal["concat", "mean"] = "concat"

    def __post_init__(self):
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@register
class SLMRec(Recommender):
    r"""Self-supervised Learning for Multimedia Recommendation, ``M >= 1`` modalities.

    Shapes: ``forward() -> Embeddings(user [U, d], item [I, d],
    extra={'user_views': [U, (M+1) d], 'item_views': [I, (M+1) d],
    'ego_user': [U, d], 'ego_item': [I, (M+1) d]})``.
    """
    name = "slmrec"
    config_class = SLMRecConfig
    uses_negatives = False
    train_defaults = {"weight_decay": 1e-4}

    def __init__(self, data, config: SLMRecConfig | None = None):
        super().__init__(data, config)
        cfg = self.config
        feats = modality_features(data)
        if not feats:
            raise ValueError("SLMRec needs at least one item modality (data['item'].x_<name>)")
        self.modalities = list(feats)
        d, M = cfg.embedding_dim, len(feats)
        for m, x in feats.items():
            self.register_buffer(f"feat_{m}", F.normalize(x.float(), dim=-1), persistent=False)
        self.user_emb = nn.Embedding(self.num_users, d)
        self.item_emb = nn.Embedding(self.num_items, d)
        self.proj = nn.ModuleDict({m: nn.Linear(x.size(1), d) for m, x in feats.items()})
        fused = d * (M + 1) if cfg.fusion == "concat" else d
        self.user_out = nn.Linear(fused, d)
        self.item_out = nn.Linear(fused, d)
        if cfg.ssl_task == "FAC":
            dims = [d] * M
            if M > 1:
                dims[-1] = d // 2
            self.fac_chain = nn.ModuleList(
                nn.Linear(d if k == 0 else dims[k - 1], dims[k]) for k in range(M))
            self.fac_heads = nn.ModuleList(nn.Linear(d, dims[k]) for k in range(M))
        else:
            self.fac_chain = self.fac_heads = None
        self.encoder = LightGCNEncoder(cfg.num_layers, readout="mean")
        self.register_graph("adj", bipartite_adjacency(data))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                mod.reset_parameters()
                nn.init.xavier_uniform_(mod.weight)

    # ------------------------------------------------------------------ views
    def _inputs(self) -> tuple[Tensor, Tensor]:
        """Layer-0 inputs: users ``[U, (M+1) d]`` (repeated), items ``[I, (M+1) d]``."""
        items = [self.item_emb.weight] + [self.proj[m](getattr(self, f"feat_{m}"))
                                          for m in self.modalities]
        users = self.user_emb.weight.repeat(1, len(items))
        return users, torch.cat(items, dim=-1)

    def _fuse(self, views: Tensor) -> Tensor:
        if self.config.fusion == "concat":
            return views
        d = self.config.embedding_dim
        return views.view(views.size(0), -1, d).mean(1)

    def forward(self) -> Embeddings:
        users, items = self._inputs()
        u_views, i_views = self.encoder(users, items, self.graph("adj"))
        user = self.user_out(self._fuse(u_views))
        item = self.item_out(self._fuse(i_views))
        return Embeddings(user, item, {"user_views": u_views, "item_views": i_views,
                                       "ego_user": self.user_emb.weight, "ego_item": items})

    # ------------------------------------------------------------------- loss
    def _fac_loss(self, item_views: Tensor) -> Tensor:
        d, tau = self.config.embedding_dim, self.config.ssl_temperature
        v = item_views.view(item_views.size(0), -1, d)
        anchor = v[:, 0]
        target = torch.arange(v.size(0), device=v.device)
        loss = item_views.new_zeros(())
        for k, (g, h) in enumerate(zip(self.fac_chain, self.fac_heads)):
            anchor = g(anchor)
            logits = anchor @ h(v[:, k + 1]).t() / tau
            loss = loss + F.cross_entropy(logits, target)
        return loss

    def _perturbed(self, users: Tensor, items: Tensor, item_mask: Tensor | None,
                   dropout: float) -> tuple[Tensor, Tensor]:
        """One perturbed LightGCN pass (layer mean), dropout after each layer."""
        if item_mask is not None:
            items = items * item_mask
        h = torch.cat([users, items], dim=0)
        acc = h
        adj = self.graph("adj")
        for _ in range(self.config.num_layers):
            h = adj.matmul(h)
            if dropout > 0:
                h = F.dropout(h, dropout, training=True)
            acc = acc + h
        acc = acc / (self.config.num_layers + 1)
        return acc[:self.num_users], acc[self.num_users:]

    def _view_masks(self, device) -> tuple[Tensor, Tensor]:
        """Column masks zeroing one item view each, two different views (no host sync)."""
        n_views, d = len(self.modalities) + 1, self.config.embedding_dim
        first = torch.randint(n_views, (), device=device)
        second = (first + torch.randint(1, n_views, (), device=device)) % n_views
        ids = torch.arange(n_views, device=device)
        m1 = (ids != first).float().repeat_interleave(d)
        m2 = (ids != second).float().repeat_interleave(d)
        return m1, m2

    def _two_view_loss(self, batch: Batch, out: Embeddings) -> Tensor:
        cfg = self.config
        task = cfg.ssl_task
        users, items = out.extra["ego_user"], out.extra["ego_item"]
        users = users.repeat(1, len(self.modalities) + 1)
        masks = (None, None)
        if task in ("FM", "FD+FM"):
            masks = self._view_masks(items.device)
        dropout = cfg.dropout if task in ("FD", "FD+FM") else 0.0
        outs = []
        for mask in masks:
            u, i = self._perturbed(users, items, mask, dropout)
            outs.append((self.user_out(self._fuse(u[batch.users])),
                         self.item_out(self._fuse(i[batch.pos_items]))))
        (u1, i1), (u2, i2) = outs
        return (info_nce(u1, u2, cfg.ssl_temperature)
                + info_nce(i1, i2, cfg.ssl_temperature))

    def loss(self, batch: Batch, out: Embeddings) -> dict[str, Tensor]:
        cfg = self.config
        main = info_nce(out.user[batch.users], out.item[batch.pos_items], cfg.temperature)
        if cfg.ssl_task == "FAC":
            if len(self.modalities) == 0:  # pragma: no cover - rejected in __init__
                ssl = main.new_zeros(())
            else:
                ssl = self._fac_loss(out.extra["item_views"][batch.pos_items])
        else:
            ssl = self._two_view_loss(batch, out)
        terms = {"infonce": main, "ssl": cfg.ssl_weight * ssl}
        if cfg.reg_weight > 0:
            terms["reg"] = cfg.reg_weight * l2_reg(self.user_emb.weight[batch.users],
                                                   self.item_emb.weight[batch.pos_items])
        return terms


__all__ = ["SLMRec", "SLMRecConfig"]
