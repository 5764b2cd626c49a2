r"""GRCN (Wei et al., ACM MM'20): graph-refined convolutional network.

GRCN refines the user-item graph with content: every modality scores every
interaction edge, and the ID embeddings are propagated over the re-weighted
("refined") graph, so that edges whose item does not match the user's taste in
any modality are pruned.

**Routing (per modality m).** Item content :math:`\mathbf f_i =
\mathrm{norm}(\operatorname{lrelu}(\mathbf W_m \mathbf x^{(m)}_i + \mathbf b_m))`
and user preferences :math:`\mathbf p_u = \mathrm{norm}(\mathbf P_m[u])` are
refined ``num_routing`` times with ``routing='paper'``:

.. math::
    \alpha_{ui} = \operatorname{softmax}_{i \in \mathcal N(u)}
        \langle \mathbf p_u, \mathbf f_i\rangle, \qquad
    \mathbf p_u \leftarrow \mathrm{norm}\Big(\mathbf p_u +
        \sum_{i\in\mathcal N(u)} \alpha_{ui}\mathbf f_i\Big).

(Users aggregate their items, as in the paper. The authors' and MMRec's code
leave the preferences as they are, ``routing='mmrec'``, the default: the
computation behind the published numbers, and the better one on real TikTok
and synthetic Baby; see ``docs/models/grcn.md``.)

**Edge scores.** On the symmetric user-item graph with nodes
:math:`\mathbf x = [\mathbf p; \mathbf f]`, each edge :math:`j \to n` gets the
attention :math:`a^{(m)}_{nj} = \operatorname{softmax}_{j \in \mathcal N(n)}
\langle\mathbf x_n, \mathbf x_j\rangle` and the modality's content
representation is :math:`\mathbf c^{(m)} = \mathbf x + \mathbf A^{(m)}\mathbf x`.
The refined edge weight (``weight_mode='confid'``) is

.. math::
    w_{nj} = \operatorname{relu}\big(\max_m a^{(m)}_{nj}\, \kappa_{j,m}\big)

with learned per-node modality confidences :math:`\kappa`.

**ID propagation.** :math:`\mathbf e = \mathrm{norm}(\mathbf E)`, two layers of
weighted sum aggregation, :math:`\mathbf h = \mathbf e + \mathbf W\mathbf e +
\mathbf W^2\mathbf e`. The representation of a node is
:math:`[\mathbf h \,\|\, \mathbf c^{(1)} \,\|\, \dots \,\|\, \mathbf c^{(M)}]`
(``fusion_mode='concat'``), scores are inner products, trained with BPR plus
``reg_weight`` x (mean squared ID embeddings + mean squared preferences of the
batch).

All edge-level operations (attention logits, segment softmax, weighted
aggregation) run on the CSR structure of the project's user-item adjacency
(:func:`~mmgraph.graph.bipartite_adjacency`) with learned values: there is no
loop over users or edges, and gradients reach the edge weights through
:meth:`~mmgraph.graph.SparseAdj.matmul`.

See ``docs/models/grcn.md``: the paper, the equations, every option with the authors'
name, and the differences from the authors' code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import softmax

from ..data.hetero import modality_features
from ..graph import bipartite_adjacency, interaction_matrix
from ..losses import bpr_loss
from .base import (Batch, Embeddings, ModelConfig, Recommender, batch_rows, pair_scores,
                   register)


@dataclass
class GRCNConfig(ModelConfig):
    """GRCN settings (MMRec ``GRCN.yaml`` and the authors' code defaults).

    Attributes:
        embedding_dim: ID embedding size (MMRec ``embedding_size`` 64).
        latent_dim: modality content size (MMRec ``latent_embedding`` 64).
        num_routing: routing iterations (MMRec ``n_layers`` 3); read by
            ``routing='paper'`` only.
        routing: how the user preferences are refined before the edges are
            scored. ``'paper'``: ``num_routing`` iterations in which every user
            aggregates its items' content (the paper's routing). ``'mmrec'``
            (default): none, the preferences stay the normalised learned vectors, which is
            what the authors' and MMRec's code compute (their routing passes
            messages from users to items along the one-directional edge list
            and reads back the user rows, which receive nothing).
        num_id_layers: propagation layers of the ID graph (2, hard-coded in MMRec).
        reg_weight: regulariser weight (authors' default ``weight_decay=1e-5``,
            inside MMRec's grid ``[0.1 ... 1e-5]``).
        weight_mode: how modality edge scores combine: ``'confid'`` (MMRec),
            ``'max'`` or ``'mean'``.
        fusion_mode: ``'concat'`` (MMRec), ``'id'`` or ``'mean'`` (needs
            ``latent_dim == embedding_dim``).
        pruning: clamp negative edge weights to 0 (MMRec: on).
        has_norm: L2-normalise embeddings/content (MMRec: on).
        has_act: leaky ReLU after propagation (MMRec: off).
    """
    embedding_dim: int = 64
    reg_weight: float = 1e-5
    latent_dim: int = 64
    num_routing: int = 3
    routing: Literal["paper", "mmrec"] = "mmrec"
    num_id_layers: int = 2
    weight_mode: Literal["confid", "max", "mean"] = "confid"
    fusion_mode: Literal["concat", "id", "mean"] = "concat"
    pruning: bool = True
    has_norm: bool = True
    has_act: bool = False

    def __post_init__(self):
        if self.fusion_mode == "mean" and self.latent_dim != self.embedding_dim:
            raise ValueError("fusion_mode='mean' needs latent_dim == embedding_dim, got "
                             f"{self.latent_dim} and {self.embedding_dim}")


@register
class GRCN(Recommender):
    r"""Graph-Refined Convolutional Network for any number ``M >= 1`` of modalities.

    Shapes: ``forward() -> Embeddings(user [U, D], item [I, D], extra={'id_emb':
    [U+I, d], 'edge_weight': [2E]})`` with ``D = d + M * latent_dim`` for
    ``fusion_mode='concat'``.
    """
    name = "grcn"
    config_class = GRCNConfig

    def __init__(self, data, config: GRCNConfig | None = None):
        super().__init__(data, config)
        cfg = self.config
        feats = modality_features(data)
        if not feats:
            raise ValueError("GRCN needs at least one item modality (data['item'].x_<name>)")
        self.modalities = list(feats)
        for m, x in feats.items():
            self.register_buffer(f"feat_{m}", x.float(), persistent=False)
        n = self.num_users + self.num_items
        self.id_emb = nn.Parameter(torch.empty(n, cfg.embedding_dim))
        self.preference = nn.ParameterDict(
            {m: nn.Parameter(torch.empty(self.num_users, cfg.latent_dim)) for m in feats})
        self.mlp = nn.ModuleDict(
            {m: nn.Linear(x.size(1), cfg.latent_dim) for m, x in feats.items()})
        # per-node modality confidences (only used by weight_mode='confid')
        self.confidence = (nn.Parameter(torch.empty(n, len(feats)))
                           if cfg.weight_mode == "confid" else None)
        # binary structures: the symmetric user-item graph and R [U, I]
        adj = bipartite_adjacency(data)
        self.register_graph("adj", adj.with_value(torch.ones_like(adj.value)))
        self.register_graph("r", interaction_matrix(data))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.id_emb)
        if self.confidence is not None:
            nn.init.xavier_normal_(self.confidence)
        for m in self.modalities:
            nn.init.xavier_normal_(self.preference[m])
            self.mlp[m].reset_parameters()
            nn.init.xavier_normal_(self.mlp[m].weight)

    def _content(self, m: str, adj, r) -> tuple[Tensor, Tensor]:
        """Routing and edge attention of modality ``m``: (content [U+I, c], attention [nnz])."""
        cfg = self.config
        feat = F.leaky_relu(self.mlp[m](getattr(self, f"feat_{m}")))
        pref = self.preference[m]
        if cfg.has_norm:
            pref, feat = F.normalize(pref, dim=-1), F.normalize(feat, dim=-1)
        ru = r.row
        for _ in range(cfg.num_routing if cfg.routing == "paper" else 0):
            a = softmax(r.edge_dot(pref, feat), ru, num_nodes=self.num_users)
            pref = pref + r.with_value(a, symmetric=False).matmul(feat)
            if cfg.has_norm:
                pref = F.normalize(pref, dim=-1)
        x = torch.cat([pref, feat], dim=0)
        row = adj.row                        # the receiving node of each edge
        a = softmax(adj.edge_dot(x), row, num_nodes=x.size(0))
        x_hat = adj.with_value(a, symmetric=False).matmul(x)
        if cfg.has_act:
            x_hat = F.leaky_relu(x_hat)
        return x + x_hat, a

    def forward(self) -> Embeddings:
        cfg = self.config
        adj, r = self.graph("adj"), self.graph("r")
        contents, scores = [], []
        for m in self.modalities:
            c, a = self._content(m, adj, r)
            contents.append(c)
            scores.append(a)
        w = torch.stack(scores, dim=-1)                                   # [nnz, M]
        if cfg.weight_mode == "confid":
            w = (w * self.confidence[adj.col]).amax(dim=-1)
        elif cfg.weight_mode == "max":
            w = w.amax(dim=-1)
        else:
            w = w.mean(dim=-1)
        if cfg.pruning:
            w = F.relu(w)
        refined = adj.with_value(w, symmetric=False)
        x = F.normalize(self.id_emb, dim=-1) if cfg.has_norm else self.id_emb
        rep, h = x, x
        for _ in range(cfg.num_id_layers):
            h = refined.matmul(h)
            if cfg.has_act:
                h = F.leaky_relu(h)
            rep = rep + h
        if cfg.fusion_mode == "concat":
            rep = torch.cat([rep] + contents, dim=-1)
        elif cfg.fusion_mode == "mean":
            rep = (rep + sum(contents)) / (len(contents) + 1)
        return Embeddings(rep[:self.num_users], rep[self.num_users:],
                          {"id_emb": self.id_emb, "edge_weight": w})

    def loss(self, batch: Batch, out: Embeddings) -> dict[str, Tensor]:
        users, pos, neg = batch.users, batch.pos_items, batch.neg_items
        pos_s, neg_s = pair_scores(*batch_rows(batch, out.user, out.item, "GRCN"))
        id_emb = out.extra["id_emb"]
        items = torch.cat([pos.view(-1), neg.reshape(-1)]) + self.num_users
        reg = id_emb[users].pow(2).mean() + id_emb[items].pow(2).mean()
        for m in self.modalities:
            reg = reg + self.preference[m][users].pow(2).mean()
        return {"bpr": bpr_loss(pos_s, neg_s), "reg": self.config.reg_weight * reg}


__all__ = ["GRCN", "GRCNConfig"]
