"""Seconds per training step of LGMRec, BM3 and FREEDOM against the MMRec toolbox's form of them.

    python benchmarks/mmrec_forms.py [--models lgmrec,bm3,freedom] [--data synthetic:baby]
                                     [--threads 1] [--batches 10] [--malloc trainer|default]
                                     [--no-write]

The project's target is "every model at most half the seconds per epoch of the
MMRec toolbox's form of it on the same machine, data and thread count". This
script measures both sides in **one run**, on the same data, thread count and
batches:

* **ours**: the registered model with its default config, the trainer's
  optimizer (:meth:`Trainer._make_optimizer`: Adam, the model's default lr)
  and, with ``--malloc trainer`` (default), the trainer's CPU allocator
  setting (:func:`mmgraph.train.tuned_malloc`, on around our steps only; the
  reference's steps run with glibc's defaults, as MMRec's trainer does --
  though they can reuse heap blocks that our steps left free, which if
  anything flatters the reference). ``--malloc default``: glibc's defaults
  on both sides (the algorithmic difference alone);
* **reference**: a compact re-implementation of the model in the
  computational form of MMRec (github.com/enoche/MMRec, ``src/models/``):
  uncoalesced COO adjacencies multiplied with ``torch.sparse.mm``, the full
  forward over all users/items in every batch, modality projections of all
  items, unfused loss formulas, and ``torch.optim.Adam(params, lr)`` with its
  default (per-tensor) update, as MMRec's trainer creates it.

The reference starts from a copy of our model's weights. Before timing, a
**parity check** runs with the randomness switched off (LGMRec: ``softmax``
instead of Gumbel-softmax and ``keep_rate=1``; BM3 and FREEDOM: ``dropout=0``,
i.e. no target dropout / no edge pruning): the loss terms of one batch must
agree (``rtol`` 1e-4) and so must the gradients of every shared parameter.

Timing: one warm-up step, then ``--batches`` steps (forward + loss + backward
+ optimizer step), ours and the reference alternating on the same batch;
seconds per epoch = median step x batches per epoch (plus, for FREEDOM, the
once-per-epoch edge pruning of each side).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_results, command_line, machine_info  # noqa: E402

from mmgraph.data import load_dataset, num_items, num_users, split_edge_index  # noqa: E402
from mmgraph.data.hetero import modality_features  # noqa: E402
from mmgraph.models import get_model_class  # noqa: E402
from mmgraph.sampling import InteractionLoader  # noqa: E402
from mmgraph.train import Trainer, train_config_for, tuned_malloc  # noqa: E402

MODELS = ("lgmrec", "bm3", "freedom")


# ------------------------------------------------------------ MMRec-form pieces
def _coo(row: Tensor, col: Tensor, val: Tensor, shape) -> Tensor:
    """A COO tensor the way MMRec makes one (``torch.sparse.FloatTensor(i, v, shape)``):
    never flagged coalesced, so torch handles it as such in every ``sparse.mm``."""
    return torch.sparse_coo_tensor(torch.stack([row, col]), val, shape, check_invariants=False)


def _train_edges(data) -> Tensor:
    return torch.unique(split_edge_index(data, "train").long(), dim=1)   # sorted, deduplicated


def _norm_adj(edges: Tensor, n_users: int, n_items: int) -> tuple[Tensor, Tensor]:
    """MMRec's ``get_norm_adj_mat``: ``D^-1/2 A D^-1/2`` with degrees + 1e-7, rows in
    scipy's CSR order; returns ``(adjacency, degrees [U+I, 1])``."""
    n = n_users + n_items
    u, i = edges[0], edges[1] + n_users
    row, col = torch.cat([u, i]), torch.cat([i, u])
    deg = torch.zeros(n).index_add_(0, row, torch.ones(row.numel())) + 1e-7
    dis = deg.pow(-0.5)
    ordered = _coo(row, col, dis[row] * dis[col], (n, n)).coalesce()
    return _coo(ordered.indices()[0], ordered.indices()[1], ordered.values(), (n, n)), deg[:, None]


def _lightgcn(adj: Tensor, ego: Tensor, layers: int) -> Tensor:
    """Layer mean of ``layers`` ``torch.sparse.mm`` propagations (MMRec's LightGCN loop)."""
    outs = [ego]
    for _ in range(layers):
        ego = torch.sparse.mm(adj, ego)
        outs.append(ego)
    return torch.stack(outs, dim=1).mean(dim=1)


def _bpr_logsigmoid(u: Tensor, p: Tensor, n: Tensor) -> Tensor:
    return -F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()


#: MMRec's names of the ID tables, raw feature tables and their projections (BM3 and
#: FREEDOM share them) -> our parameter names
_ID_AND_FEATURE_PARAMS = {
    "user_embedding.weight": "user_emb.weight", "item_id_embedding.weight": "item_emb.weight",
    "image_embedding.weight": "features.image", "text_embedding.weight": "features.text",
    "image_trs.weight": "projectors.image.proj.weight", "image_trs.bias": "projectors.image.proj.bias",
    "text_trs.weight": "projectors.text.proj.weight", "text_trs.bias": "projectors.text.proj.bias"}


class _Reference(nn.Module):
    """Common part: ``shared`` maps a reference parameter to our model's parameter of
    the same value; ``offsets`` are constants by which a reference loss term exceeds
    ours (MMRec's ``1 - cos`` against our ``-cos``)."""

    shared: dict[str, str] = {}
    offsets: dict[str, float] = {}

    def _copy_weights(self, ours: nn.Module) -> None:
        src, dst = dict(ours.named_parameters()), dict(self.named_parameters())
        with torch.no_grad():
            for ref_name, our_name in self.shared.items():
                dst[ref_name].copy_(src[our_name])


# ------------------------------------------------------------------- LGMRec
class MMRecLGMRec(_Reference):
    """LGMRec in the form of MMRec's ``src/models/lgmrec.py`` (image and text only).

    Kept choices: raw ``R`` and normalised ``[U+I]^2`` adjacencies as uncoalesced
    COO tensors used through ``torch.sparse.mm``; per modality a separate GEMM for
    the projection and for the hyperedge logits, its own propagation
    (``n_mm_layers`` steps, keep the last) and its own Gumbel-softmax + dropout;
    per-layer ``stack().mean()``; the hypergraph contrastive loss spelled out as
    ``-log(exp(pos / tau) / exp(a @ pool.T / tau).sum(1)).sum()`` over
    ``[B, U]`` and ``[B, I]`` matrices; BPR by ``logsigmoid``; the unsquared
    ``EmbLoss``-like regulariser divided by the batch size. ``noise=False``
    replaces Gumbel-softmax by ``softmax(logits / tau)`` (parity check only).
    """

    shared = {"user_embedding.weight": "user_emb.weight",
              "item_id_embedding.weight": "item_emb.weight",
              "item_image_trs": "item_trs.image", "item_text_trs": "item_trs.text",
              "v_hyper": "hyper.image", "t_hyper": "hyper.text"}

    def __init__(self, data, ours, noise: bool = True):
        super().__init__()
        cfg, self.noise = ours.config, noise
        self.cfg, self.n_users, self.n_items = cfg, num_users(data), num_items(data)
        edges = _train_edges(data)
        self.adj = _coo(edges[0], edges[1], torch.ones(edges.size(1)), (self.n_users, self.n_items))
        self.norm_adj, deg = _norm_adj(edges, self.n_users, self.n_items)
        self.inv_inters = 1.0 / deg                     # MMRec's num_inters: 1 / (deg + 1e-7)
        feats = modality_features(data)
        d, k, h = cfg.embedding_dim, cfg.feat_embed_dim, cfg.num_hyperedges
        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_id_embedding = nn.Embedding(self.n_items, d)
        self.image_embedding = nn.Embedding.from_pretrained(feats["image"].float(), freeze=True)
        self.text_embedding = nn.Embedding.from_pretrained(feats["text"].float(), freeze=True)
        self.item_image_trs = nn.Parameter(torch.zeros(feats["image"].size(1), k))
        self.item_text_trs = nn.Parameter(torch.zeros(feats["text"].size(1), k))
        self.v_hyper = nn.Parameter(torch.zeros(feats["image"].size(1), h))
        self.t_hyper = nn.Parameter(torch.zeros(feats["text"].size(1), h))
        self.drop = nn.Dropout(p=1.0 - cfg.keep_rate)
        self._copy_weights(ours)

    def _soft(self, logits: Tensor) -> Tensor:
        if self.noise:
            return F.gumbel_softmax(logits, self.cfg.temperature, dim=1, hard=False)
        return torch.softmax(logits / self.cfg.temperature, dim=1)

    def _modal_view(self, feat: Tensor, trs: Tensor) -> Tensor:
        items = torch.mm(feat, trs)
        users = torch.sparse.mm(self.adj, items) * self.inv_inters[:self.n_users]
        x = torch.cat([users, items], dim=0)
        for _ in range(self.cfg.num_mm_layers):
            x = torch.sparse.mm(self.norm_adj, x)
        return x

    def _hyper(self, h_i: Tensor, h_u: Tensor, z_i: Tensor) -> tuple[Tensor, Tensor]:
        for _ in range(self.cfg.num_hyper_layers):
            lat = torch.mm(h_i.t(), z_i)
            z_i, z_u = torch.mm(h_i, lat), torch.mm(h_u, lat)
        return z_u, z_i

    def forward(self):
        cfg, n_u = self.cfg, self.n_users
        logits_iv = torch.mm(self.image_embedding.weight, self.v_hyper)
        logits_it = torch.mm(self.text_embedding.weight, self.t_hyper)
        iv, uv = self._soft(logits_iv), self._soft(torch.mm(self.adj, logits_iv))
        it, ut = self._soft(logits_it), self._soft(torch.mm(self.adj, logits_it))
        ego = torch.cat([self.user_embedding.weight, self.item_id_embedding.weight])
        cge = _lightgcn(self.norm_adj, ego, cfg.num_ui_layers) if cfg.cf_model == "lightgcn" else ego
        local = cge + F.normalize(self._modal_view(self.image_embedding.weight, self.item_image_trs)) \
            + F.normalize(self._modal_view(self.text_embedding.weight, self.item_text_trs))
        uv_z, iv_z = self._hyper(self.drop(iv), self.drop(uv), cge[n_u:])
        ut_z, it_z = self._hyper(self.drop(it), self.drop(ut), cge[n_u:])
        glob = torch.cat([uv_z, iv_z]) + torch.cat([ut_z, it_z])
        final = local + cfg.alpha * F.normalize(glob)
        return final[:n_u], final[n_u:], (uv_z, iv_z, ut_z, it_z)

    def _ssl(self, anchor: Tensor, positive: Tensor, pool: Tensor) -> Tensor:
        a, p, pool = F.normalize(anchor), F.normalize(positive), F.normalize(pool)
        numer = torch.exp((a * p).sum(dim=1) / self.cfg.temperature)
        denom = torch.exp(torch.matmul(a, pool.T) / self.cfg.temperature).sum(dim=1)
        return -torch.log(numer / denom).sum()

    def loss_terms(self, users: Tensor, pos: Tensor, neg: Tensor) -> dict[str, Tensor]:
        ue, ie, (uv, iv, ut, it) = self.forward()
        u, p, n = ue[users], ie[pos], ie[neg]
        cl = self._ssl(uv[users], ut[users], ut) + self._ssl(iv[pos], it[pos], it)
        reg = (torch.norm(u, p=2) + torch.norm(p, p=2) + torch.norm(n, p=2)) / n.shape[0]
        return {"bpr": _bpr_logsigmoid(u, p, n), "cl": self.cfg.cl_weight * cl,
                "reg": self.cfg.reg_weight * reg}


# ---------------------------------------------------------------------- BM3
class MMRecBM3(_Reference):
    """BM3 in the form of MMRec's ``src/models/bm3.py`` (image and text).

    Kept choices: uncoalesced COO ``torch.sparse.mm`` LightGCN; trainable raw
    feature tables (``Embedding.from_pretrained(freeze=False)``) projected for
    *all* items in every batch, so the tables get dense gradients; the
    predictor applied to all users, items and projected features before the
    batch is indexed; full-matrix ``clone`` + dropout for the targets; each
    term ``1 - cosine_similarity(...).mean()`` (so ``rec`` exceeds our ``-cos``
    form by 2 and ``align``/``mask`` by ``cl_weight * M``); ``EmbLoss`` over
    the whole online matrices divided by the item count.
    """

    shared = {**_ID_AND_FEATURE_PARAMS,
              "predictor.weight": "predictor.weight", "predictor.bias": "predictor.bias"}

    def __init__(self, data, ours, noise: bool = True):
        super().__init__()
        cfg = self.cfg = ours.config
        self.n_users, self.n_items = num_users(data), num_items(data)
        self.dropout = cfg.dropout if noise else 0.0
        self.norm_adj, _ = _norm_adj(_train_edges(data), self.n_users, self.n_items)
        feats = modality_features(data)
        d = cfg.embedding_dim
        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_id_embedding = nn.Embedding(self.n_items, d)
        self.predictor = nn.Linear(d, d)
        # copies: training the tables must not change the data's feature tensors
        self.image_embedding = nn.Embedding.from_pretrained(feats["image"].float().clone(),
                                                            freeze=False)
        self.text_embedding = nn.Embedding.from_pretrained(feats["text"].float().clone(),
                                                           freeze=False)
        self.image_trs = nn.Linear(feats["image"].size(1), d)
        self.text_trs = nn.Linear(feats["text"].size(1), d)
        self.offsets = {"rec": 2.0, "align": 2.0 * cfg.cl_weight, "mask": 2.0 * cfg.cl_weight}
        self._copy_weights(ours)

    def forward(self):
        ego = torch.cat([self.user_embedding.weight, self.item_id_embedding.weight])
        x = _lightgcn(self.norm_adj, ego, self.cfg.num_layers)
        return x[:self.n_users], x[self.n_users:] + self.item_id_embedding.weight

    def loss_terms(self, users: Tensor, items: Tensor, neg=None) -> dict[str, Tensor]:
        def one_minus_cos(a: Tensor, b: Tensor) -> Tensor:
            return 1 - F.cosine_similarity(a, b.detach(), dim=-1).mean()

        u_on, i_on = self.forward()
        t_on, v_on = self.text_trs(self.text_embedding.weight), self.image_trs(self.image_embedding.weight)
        with torch.no_grad():
            u_tg, i_tg = F.dropout(u_on.clone(), self.dropout), F.dropout(i_on.clone(), self.dropout)
            t_tg, v_tg = F.dropout(t_on.clone(), self.dropout), F.dropout(v_on.clone(), self.dropout)
        u_pred, i_pred = self.predictor(u_on)[users], self.predictor(i_on)[items]
        t_pred, v_pred = self.predictor(t_on)[items], self.predictor(v_on)[items]
        u_tg, i_tg, t_tg, v_tg = u_tg[users], i_tg[items], t_tg[items], v_tg[items]
        rec = one_minus_cos(u_pred, i_tg) + one_minus_cos(i_pred, u_tg)
        align = one_minus_cos(t_pred, i_tg) + one_minus_cos(v_pred, i_tg)
        mask = one_minus_cos(t_pred, t_tg) + one_minus_cos(v_pred, v_tg)
        reg = (torch.norm(u_on, p=2) + torch.norm(i_on, p=2)) / i_on.shape[0]
        cl = self.cfg.cl_weight
        return {"rec": rec, "align": cl * align, "mask": cl * mask,
                "reg": self.cfg.reg_weight * reg}


# ------------------------------------------------------------------ FREEDOM
_MM_ADJ_CACHE: dict = {}   # MMRec saves the mixed kNN graph to a .pt file and reloads it


def _knn_norm(x: Tensor, k: int) -> Tensor:
    """Full ``[I, I]`` cosine similarity, ``topk``, binary COO, ``D^-1/2 . D^-1/2`` with row sums."""
    xn = x.div(torch.norm(x, p=2, dim=-1, keepdim=True))
    _, idx = torch.topk(torch.mm(xn, xn.t()), k, dim=-1)
    row = torch.arange(idx.size(0)).unsqueeze(1).expand(-1, k).reshape(-1)
    col = idx.reshape(-1)
    deg = torch.zeros(x.size(0)).index_add_(0, row, torch.ones(row.numel())) + 1e-7
    return _coo(row, col, deg[row].pow(-0.5) * deg[col].pow(-0.5), (x.size(0), x.size(0)))


class MMRecFREEDOM(_Reference):
    """FREEDOM in the form of MMRec's ``src/models/freedom.py`` (image and text).

    Kept choices: the item-item graph ``w * kNN(image) + (1 - w) * kNN(text)``
    as a sum of two uncoalesced COO tensors (kNN from a full ``[I, I]``
    similarity and ``topk``); once per epoch, degree-sensitive pruning by
    ``torch.multinomial`` over all edges and a fresh uncoalesced COO of the
    kept edges (:meth:`pre_epoch_processing`); COO ``torch.sparse.mm``
    LightGCN; trainable raw feature tables projected for *all* items in every
    batch (dense table gradients); BPR by ``logsigmoid``. ``dropout = 0``
    (or ``noise=False``) uses the full normalised graph, as MMRec does.
    """

    shared = _ID_AND_FEATURE_PARAMS

    def __init__(self, data, ours, noise: bool = True):
        super().__init__()
        cfg = self.cfg = ours.config
        self.n_users, self.n_items = num_users(data), num_items(data)
        self.dropout = cfg.dropout if noise else 0.0
        edges = _train_edges(data)
        self.norm_adj, _ = _norm_adj(edges, self.n_users, self.n_items)
        self.edge_indices, self.edge_values = edges, self._bipartite_norm(edges)
        feats = modality_features(data)
        w = ours.mix_weights["image"]
        key = (id(data), cfg.knn_k, w)
        if key not in _MM_ADJ_CACHE:
            _MM_ADJ_CACHE[key] = w * _knn_norm(feats["image"].float(), cfg.knn_k) \
                + (1.0 - w) * _knn_norm(feats["text"].float(), cfg.knn_k)
        self.mm_adj = _MM_ADJ_CACHE[key]
        d = cfg.embedding_dim
        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_id_embedding = nn.Embedding(self.n_items, d)
        # copies: training the tables must not change the data's feature tensors
        self.image_embedding = nn.Embedding.from_pretrained(feats["image"].float().clone(),
                                                            freeze=False)
        self.text_embedding = nn.Embedding.from_pretrained(feats["text"].float().clone(),
                                                           freeze=False)
        self.image_trs = nn.Linear(feats["image"].size(1), d)
        self.text_trs = nn.Linear(feats["text"].size(1), d)
        self.masked_adj = self.norm_adj
        self._copy_weights(ours)

    def _bipartite_norm(self, edges: Tensor) -> Tensor:
        """``1 / sqrt(d_u d_i)`` per ``[U, I]`` edge, degrees + 1e-7 (MMRec's ``_normalize_adj_m``)."""
        ones = torch.ones(edges.size(1))
        du = torch.zeros(self.n_users).index_add_(0, edges[0], ones) + 1e-7
        di = torch.zeros(self.n_items).index_add_(0, edges[1], ones) + 1e-7
        return du.pow(-0.5)[edges[0]] * di.pow(-0.5)[edges[1]]

    def pre_epoch_processing(self) -> None:
        if self.dropout <= 0.0:
            self.masked_adj = self.norm_adj
            return
        n_keep = int(self.edge_values.size(0) * (1.0 - self.dropout))
        kept = self.edge_indices[:, torch.multinomial(self.edge_values, n_keep)]
        val = self._bipartite_norm(kept)
        u, i = kept[0], kept[1] + self.n_users
        n = self.n_users + self.n_items
        self.masked_adj = _coo(torch.cat([u, i]), torch.cat([i, u]), torch.cat([val, val]), (n, n))

    def forward(self, adj: Tensor):
        h = self.item_id_embedding.weight
        for _ in range(self.cfg.num_ii_layers):
            h = torch.sparse.mm(self.mm_adj, h)
        ego = torch.cat([self.user_embedding.weight, self.item_id_embedding.weight])
        x = _lightgcn(adj, ego, self.cfg.num_ui_layers)
        return x[:self.n_users], x[self.n_users:] + h

    def loss_terms(self, users: Tensor, pos: Tensor, neg: Tensor) -> dict[str, Tensor]:
        ue, ie = self.forward(self.masked_adj)
        u = ue[users]
        t = self.text_trs(self.text_embedding.weight)
        v = self.image_trs(self.image_embedding.weight)
        mm = _bpr_logsigmoid(u, t[pos], t[neg]) + _bpr_logsigmoid(u, v[pos], v[neg])
        return {"bpr": _bpr_logsigmoid(u, ie[pos], ie[neg]),
                "modality_bpr": self.cfg.reg_weight * mm}


REFERENCES = {"lgmrec": MMRecLGMRec, "bm3": MMRecBM3, "freedom": MMRecFREEDOM}
#: config overrides that switch the randomness off for the parity check, and
#: whether our model must be in eval() mode for it (LGMRec: softmax, not Gumbel)
PARITY_SETTINGS = {"lgmrec": ({"keep_rate": 1.0}, True),
                   "bm3": ({"dropout": 0.0}, False),
                   "freedom": ({"dropout": 0.0}, False)}


# ------------------------------------------------------------------- parity
def _loader(data, cls, batch_size: int, seed: int = 0) -> InteractionLoader:
    return InteractionLoader(data, batch_size=batch_size, num_neg=1 if cls.uses_negatives else 0,
                             generator=torch.Generator().manual_seed(seed))


def _rel(a: Tensor, b: Tensor, floor: float) -> float:
    """Largest ``|a - b|`` over the largest ``|b|`` (at least ``floor``: a gradient that
    is exactly zero in exact arithmetic, such as a bias that cancels in ``pos - neg``,
    holds float noise only)."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(floor))


def parity_check(name: str, data, batch_size: int = 2048, seed: int = 0,
                 rtol: float = 1e-4) -> dict:
    """Deterministic loss terms and gradients of ours vs the reference on one batch.

    Returns ``{'ok', 'loss_rel' (largest relative term difference), 'grad_rel'
    (largest max-normalised gradient difference), 'terms' ({term: (ours, ref)}),
    'mode', 'failures'}``.
    """
    cls = get_model_class(name)
    overrides, ours_eval = PARITY_SETTINGS[name]
    torch.manual_seed(seed)
    ours = cls(data, cls.config_class(**overrides))
    ours.train(not ours_eval)
    ref = REFERENCES[name](data, ours, noise=False).train()
    batch = next(iter(_loader(data, cls, batch_size, seed)))
    t_ours = ours.loss(batch, ours())
    t_ref = ref.loss_terms(batch.users, batch.pos_items, batch.neg_items)
    failures, terms, loss_rel = [], {}, 0.0
    for k in t_ref:
        a = float(t_ours[k].detach())
        b = float(t_ref[k].detach().sum()) - ref.offsets.get(k, 0.0)
        terms[k] = (a, b)
        # MMRec's constants (BM3's ``1 - cos``) are subtracted in float32: allow their rounding
        slack = 4 * torch.finfo(torch.float32).eps * abs(ref.offsets.get(k, 0.0)) + 1e-9
        loss_rel = max(loss_rel, max(abs(a - b) - slack, 0.0) / max(abs(b), 1e-30))
        if abs(a - b) > rtol * abs(b) + slack:
            failures.append(f"loss term {k}: ours {a:.8g} vs reference {b:.8g}")
    if set(t_ours) != set(t_ref):
        failures.append(f"loss terms differ: ours {sorted(t_ours)} vs reference {sorted(t_ref)}")
    sum(t_ours.values()).backward()
    sum(v.sum() for v in t_ref.values()).backward()
    ours_p, ref_p = dict(ours.named_parameters()), dict(ref.named_parameters())
    grad_rel = 0.0
    grads = {rn: ref_p[rn].grad for rn in ref.shared}
    floor = 1e-5 * max(float(g.abs().max()) for g in grads.values() if g is not None)
    for rn, on in ref.shared.items():
        go, gr = ours_p[on].grad, grads[rn]
        if go is None or gr is None:
            failures.append(f"gradient of {on}: ours {go is not None}, reference {gr is not None}")
            continue
        rel = _rel(go, gr, floor)
        grad_rel = max(grad_rel, rel)
        if rel > 10 * rtol:
            failures.append(f"gradient of {on}: max-normalised difference {rel:.2e}")
    mode = ("ours in eval() (softmax instead of Gumbel-softmax), " if ours_eval else "") + \
        ", ".join(f"{k}={v}" for k, v in overrides.items())
    return {"ok": not failures, "loss_rel": loss_rel, "grad_rel": grad_rel, "terms": terms,
            "mode": mode, "failures": failures, "shared": len(ref.shared)}


# ------------------------------------------------------------------- timing
def _time_model(name: str, data, n_batches: int, seed: int = 0, malloc: str = "trainer") -> dict:
    cls = get_model_class(name)
    torch.manual_seed(seed)
    ours = cls(data, cls.config_class())
    ref = REFERENCES[name](data, ours)
    cfg = train_config_for(cls, epochs=1, progress=False)
    opt = Trainer(ours, data, cfg)._make_optimizer()
    ref_opt = torch.optim.Adam(ref.parameters(), lr=cfg.lr)       # MMRec: optim.Adam(params, lr)
    loader = _loader(data, cls, cfg.batch_size, seed)
    batches, it = [], iter(loader)
    while len(batches) < n_batches + 1:
        try:
            batches.append(next(it))
        except StopIteration:
            it = iter(loader)
    ours.train()
    ref.train()
    t0 = time.perf_counter()
    ours.on_epoch_start(0)                        # FREEDOM: this epoch's pruned graph
    ours_epoch_extra = time.perf_counter() - t0
    t0 = time.perf_counter()
    if hasattr(ref, "pre_epoch_processing"):
        ref.pre_epoch_processing()
    ref_epoch_extra = time.perf_counter() - t0

    def step_ours(b):
        with tuned_malloc(malloc == "trainer"):
            loss = sum(ours.loss(b, ours()).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            del loss

    def step_ref(b):
        loss = sum(v.sum() for v in ref.loss_terms(b.users, b.pos_items, b.neg_items).values())
        ref_opt.zero_grad()
        loss.backward()
        ref_opt.step()

    times = {"ours": [], "ref": [], "ours_cpu": [], "ref_cpu": []}
    for k, b in enumerate(batches):            # alternate, so load changes hit both sides
        for side, step in (("ours", step_ours), ("ref", step_ref)):
            w0, c0 = time.perf_counter(), time.process_time()
            step(b)
            if k:                              # batch 0 is the warm-up
                times[side].append(time.perf_counter() - w0)
                times[side + "_cpu"].append(time.process_time() - c0)
    med = {k: statistics.median(v) for k, v in times.items()}
    n = len(loader)
    return {"model": name, "ours_step": med["ours"], "ref_step": med["ref"],
            "ours_epoch": med["ours"] * n + ours_epoch_extra,
            "ref_epoch": med["ref"] * n + ref_epoch_extra,
            "cpu_ratio": med["ref_cpu"] / med["ours_cpu"], "batches_per_epoch": n}


# --------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--data", default="synthetic:baby")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", type=int, default=10, help="timed steps per side (after 1 warm-up)")
    p.add_argument("--malloc", choices=("trainer", "default"), default="trainer",
                   help="our steps with the trainer's tuned CPU allocator (default) or glibc's "
                        "defaults like the reference")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    names = [m.strip() for m in a.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in REFERENCES]
    if unknown:
        p.error(f"no MMRec-form reference for {unknown}; choose from {list(REFERENCES)}")
    torch.set_num_threads(a.threads)
    data = load_dataset(a.data)
    print(f"{machine_info()}\ndata: {a.data}, {num_users(data)} users, {num_items(data)} items, "
          f"{split_edge_index(data, 'train').size(1)} train edges; torch threads "
          f"{torch.get_num_threads()}", flush=True)

    rows = []
    for name in names:
        par = parity_check(name, data)
        status = "ok" if par["ok"] else "FAILED"
        print(f"[{name}] parity {status} ({par['mode']}): loss terms max rel diff {par['loss_rel']:.1e}, "
              f"gradients of {par['shared']} shared parameters max rel diff {par['grad_rel']:.1e}"
              + "".join(f"\n    {f}" for f in par["failures"]), flush=True)
        row = _time_model(name, data, a.batches, malloc=a.malloc)
        row["parity"] = f"{status} (loss {par['loss_rel']:.0e}, grad {par['grad_rel']:.0e})"
        rows.append(row)
        print(f"[{name}] ours {row['ours_step']:.3f} s/step, reference {row['ref_step']:.3f} s/step",
              flush=True)

    lines = [f"Machine: {machine_info()}", f"Command: `{command_line()}`",
             f"Data: {a.data}; torch threads {a.threads}; batch 2048; median of {a.batches} steps "
             "after 1 warm-up, ours and the reference alternating on the same batches; s/epoch = "
             "median step x batches per epoch (+ FREEDOM's per-epoch edge pruning). Allocator: "
             + ("ours with the trainer's `tuned_malloc` (glibc keeps freed memory), the reference "
                "with glibc's defaults." if a.malloc == "trainer" else
                "glibc's defaults on both sides."), "",
             "| model | ours s/step | reference s/step | ours s/epoch | reference s/epoch | "
             "ratio (reference/ours) | half-of-MMRec target met (ratio >= 2) | ratio in CPU time | "
             "parity |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["ref_epoch"] / r["ours_epoch"]
        lines.append(f"| {r['model']} | {r['ours_step']:.3f} | {r['ref_step']:.3f} | "
                     f"{r['ours_epoch']:.1f} | {r['ref_epoch']:.1f} | {ratio:.2f}x | "
                     f"{'yes' if ratio >= 2 else 'no'} | {r['cpu_ratio']:.2f}x | {r['parity']} |")
    lines += ["", "Reference: the model written in MMRec's computational form (uncoalesced COO "
              "`torch.sparse.mm`, full forward and all-item projections per batch, unfused losses, "
              "per-tensor Adam), starting from our weights; parity = largest relative difference of "
              "the loss terms and of the shared parameters' gradients with randomness off."]
    text = "\n".join(lines)
    print(text)
    if not a.no_write:
        append_results(f"MMRec-form references in one run ({a.data}, {a.threads} thread, "
                       f"malloc {a.malloc})", text)
    return 0 if all(r["parity"].startswith("ok") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
