r"""MMGCN (Wei et al., ACM MM'19): one graph convolution network per modality.

Each modality :math:`m` runs its own GCN on the user-item graph. Users hold a
learned preference vector in the modality's space, items hold their
(optionally projected) features; both are propagated with ``L`` layers of

.. math::
    \mathbf h^{(l)}_n &= \operatorname{lrelu}\Big(\frac{1}{|\mathcal N(n)|}
        \sum_{j\in\mathcal N(n)} \mathbf W^{(l)\top} \mathbf x^{(l)}_j\Big)
        \quad\text{(mean aggregation over the neighbours)} \\
    \hat{\mathbf x}^{(l)}_n &= \operatorname{lrelu}(\mathbf W^{(l)}_{lin}\mathbf x^{(l)}_n
        + \mathbf b^{(l)}_{lin}) + \mathbf e_n
        \quad\text{(node's own view plus its ID embedding)} \\
    \mathbf x^{(l+1)}_n &= \operatorname{lrelu}\big(\mathbf W^{(l)}_g
        [\mathbf h^{(l)}_n \,\|\, \hat{\mathbf x}^{(l)}_n] + \mathbf b^{(l)}_g\big)
        \quad\text{(``concat`` combination; else } \mathbf W_g\mathbf h + \hat{\mathbf x})

with :math:`\mathbf x^{(0)} = \mathrm{normalize}([\mathbf P_m; \phi_m(\mathbf F_m)])`
(user preferences ``P_m``, item features ``F_m``, optional linear projection
:math:`\phi_m`). The final representation of every node is the mean over
modalities of :math:`\mathbf x^{(L)}`; scores are inner products, trained with
BPR plus ``reg_weight`` times the mean squared ID embeddings and user
preferences of the batch.

Mean aggregation uses the project's row-normalised interaction matrices
(:func:`~mmgraph.graph.interaction_matrix_from_edges` with ``'row'``) in both
directions, i.e. two CSR products per layer instead of a scatter over edges.

See ``docs/models/mmgcn.md``: the paper, the equations, every option with the authors'
name, and the differences from the authors' code.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.hetero import modality_features, split_edge_index
from ..graph import interaction_matrix_from_edges
from ..losses import bpr_loss
from .base import (Batch, Embeddings, ModelConfig, Recommender, batch_rows, pair_scores,
                   register)


@dataclass
class MMGCNConfig(ModelConfig):
    """MMGCN settings.

    Attributes:
        embedding_dim: ID embedding / output size (MMRec ``embedding_size`` 64).
        reg_weight: weight of the mean-squared regulariser (authors' code
            default ``weight_decay=1e-5``, inside MMRec's grid
            ``[0, 1e-5, ..., 0.1]``).
        num_layers: GCN layers per modality. MMRec's ``MMGCN.yaml`` lists
            ``n_layers: 2`` but its ``GCN`` hard-codes three layers, which is
            what produced MMRec's numbers; default 3.
        latent_dim: size the features of ``project_modalities`` are projected
            to before propagation (MMRec/authors: 256 for the visual modality).
        project_modalities: modalities projected by a linear layer to
            ``latent_dim``; the others propagate their raw features
            (MMRec: image projected, text raw 384-d).
        concat: combine aggregation and self view by concatenation (MMRec's
            effective setting: its ``concate='False'`` string is truthy).
        has_id: add the ID embedding to each layer's self view.
        leaky_slope: negative slope of the leaky ReLUs (PyTorch default 0.01).
    """
    embedding_dim: int = 64
    reg_weight: float = 1e-5
    num_layers: int = 3
    latent_dim: int = 256
    project_modalities: tuple[str, ...] = ("image",)
    concat: bool = True
    has_id: bool = True
    leaky_slope: float = 0.01

    def __post_init__(self):
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1 for MMGCN, got {self.num_layers}")


class _ModalityGCN(nn.Module):
    """The GCN of one modality (preferences, optional projection, ``L`` layers)."""

    def __init__(self, num_users: int, feat_dim: int, embedding_dim: int, num_layers: int,
                 latent_dim: int | None, concat: bool):
        super().__init__()
        self.proj = nn.Linear(feat_dim, latent_dim) if latent_dim else None
        in_dim = latent_dim if latent_dim else feat_dim
        self.preference = nn.Parameter(torch.empty(num_users, in_dim))
        dims = [in_dim] + [embedding_dim] * (num_layers - 1)
        self.conv_weight = nn.ParameterList(nn.Parameter(torch.empty(d, d)) for d in dims)
        self.self_lin = nn.ModuleList(nn.Linear(d, embedding_dim) for d in dims)
        self.combine = nn.ModuleList(
            nn.Linear(d + embedding_dim if concat else d, embedding_dim) for d in dims)
        self.concat = concat
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.preference)
        if self.proj is not None:
            self.proj.reset_parameters()
        for w in self.conv_weight:
            nn.init.xavier_normal_(w)
        for lin in self.self_lin:
            lin.reset_parameters()
            nn.init.xavier_normal_(lin.weight)
        for layer, lin in enumerate(self.combine):
            lin.reset_parameters()
            if layer == 0:  # MMRec re-initialises only the first combination layer
                nn.init.xavier_normal_(lin.weight)

    def forward(self, features: Tensor, id_emb: Tensor | None, r_user, r_item,
                slope: float) -> Tensor:
        items = self.proj(features) if self.proj is not None else features
        x = F.normalize(torch.cat([self.preference, items], dim=0), dim=-1)
        num_users = self.preference.size(0)
        for w, lin, comb in zip(self.conv_weight, self.self_lin, self.combine):
            xw = x @ w
            # mean over neighbours: users average their items, items their users
            h = torch.cat([r_user.matmul(xw[num_users:]), r_item.matmul(xw[:num_users])], dim=0)
            h = F.leaky_relu(h, slope)
            x_hat = F.leaky_relu(lin(x), slope)
            if id_emb is not None:
                x_hat = x_hat + id_emb
            if self.concat:
                x = F.leaky_relu(comb(torch.cat([h, x_hat], dim=-1)), slope)
            else:
                x = F.leaky_relu(comb(h) + x_hat, slope)
        return x


@register
class MMGCN(Recommender):
    r"""Multi-modal Graph Convolution Network (per-modality GCNs, mean fusion).

    Works with any number ``M >= 1`` of item modalities.

    Shapes: ``forward() -> Embeddings(user [U, d], item [I, d],
    extra={'id_emb': [U+I, d]})``.
    """
    name = "mmgcn"
    config_class = MMGCNConfig

    def __init__(self, data, config: MMGCNConfig | None = None):
        super().__init__(data, config)
        cfg = self.config
        feats = modality_features(data)
        if not feats:
            raise ValueError("MMGCN needs at least one item modality (data['item'].x_<name>)")
        unknown = set(cfg.project_modalities) - set(feats)
        if unknown:
            raise ValueError(f"project_modalities {sorted(unknown)} are not modalities of the "
                             f"data; available: {sorted(feats)}")
        self.modalities = list(feats)
        for m, x in feats.items():
            self.register_buffer(f"feat_{m}", x.float(), persistent=False)
        n = self.num_users + self.num_items
        self.id_emb = nn.Parameter(torch.empty(n, cfg.embedding_dim))
        self.gcns = nn.ModuleDict({
            m: _ModalityGCN(self.num_users, x.size(1), cfg.embedding_dim, cfg.num_layers,
                            cfg.latent_dim if m in cfg.project_modalities else None, cfg.concat)
            for m, x in feats.items()})
        ei = split_edge_index(data, "train")
        # D_U^-1 R  [U, I] and D_I^-1 R^T  [I, U]: mean aggregation in both directions
        self.register_graph("r_user", interaction_matrix_from_edges(
            ei, self.num_users, self.num_items, "row"))
        self.register_graph("r_item", interaction_matrix_from_edges(
            ei.flip(0), self.num_items, self.num_users, "row"))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.id_emb)
        for gcn in self.gcns.values():
            gcn.reset_parameters()

    def forward(self) -> Embeddings:
        cfg = self.config
        id_emb = self.id_emb if cfg.has_id else None
        r_user, r_item = self.graph("r_user"), self.graph("r_item")
        rep = None
        for m in self.modalities:
            x = self.gcns[m](getattr(self, f"feat_{m}"), id_emb, r_user, r_item, cfg.leaky_slope)
            rep = x if rep is None else rep + x
        rep = rep / len(self.modalities)
        return Embeddings(rep[:self.num_users], rep[self.num_users:], {"id_emb": self.id_emb})

    def loss(self, batch: Batch, out: Embeddings) -> dict[str, Tensor]:
        users, pos, neg = batch.users, batch.pos_items, batch.neg_items
        pos_s, neg_s = pair_scores(*batch_rows(batch, out.user, out.item, "MMGCN"))
        # MMRec's regulariser: mean of squared entries over the (user, item) pairs
        id_emb = out.extra["id_emb"]
        items = torch.cat([pos.view(-1), neg.reshape(-1)]) + self.num_users
        reg = id_emb[users].pow(2).mean() + id_emb[items].pow(2).mean()
        for gcn in self.gcns.values():
            reg = reg + gcn.preference[users].pow(2).mean()
        return {"bpr": bpr_loss(pos_s, neg_s), "reg": self.config.reg_weight * reg}


__all__ = ["MMGCN", "MMGCNConfig"]
