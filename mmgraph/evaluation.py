r"""Full-ranking evaluation with the MMRec protocol, serving and cold-start splits.

Protocol (MMRec ``TopKEvaluator`` / ``utils/metrics.py``):

* every evaluated user is ranked against **all** items;
* the user's **training** items are masked out (also for the test split; the
  validation items are *not* masked when evaluating on test);
* users with no held-out interaction in the split are skipped;
* metrics are computed per user and averaged over the evaluated users.

With :math:`\mathrm{rel}_r\in\{0,1\}` the relevance of the item at rank
:math:`r` (1-based), :math:`P_u` the user's held-out items and
:math:`h_K=\sum_{r\le K}\mathrm{rel}_r`:

.. math::
    \mathrm{Recall@K} = \frac{h_K}{|P_u|},\qquad
    \mathrm{Precision@K} = \frac{h_K}{K},

    \mathrm{NDCG@K} = \frac{\sum_{r\le K}\mathrm{rel}_r/\log_2(r+1)}
                           {\sum_{r\le\min(|P_u|,K)}1/\log_2(r+1)},\qquad
    \mathrm{MAP@K} = \frac{1}{\min(|P_u|,K)}\sum_{r\le K}
                     \mathrm{rel}_r\,\frac{h_r}{r}.

These are exactly MMRec's ``recall_``, ``precision_``, ``ndcg_`` and ``map_``
(MMRec rounds the reported numbers to 4 decimals; we do not round).

Implementation: scores come from a ``score_fn(users) -> [B, I]`` on any
device; the training items of the batch are set to ``-inf`` with one
``index_put_`` from a CSR of the training interactions; ``topk(max K)`` runs
on the score device; hits are a vectorised membership test
(:func:`torch.searchsorted`) against the sorted keys ``user * I + item`` of
the held-out interactions. Metric sums stay on the device and are copied to
the host once, at the end. :meth:`Evaluator.evaluate_per_user` returns each
user's metrics instead of their mean (for paired tests between models).
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from .data.hetero import (INTERACTS, build_hetero, modality_features, num_items,
                          num_users, split_edge_index)

__all__ = ["Evaluator", "evaluate", "recommend", "cold_start_split", "METRICS"]

METRICS = ("recall", "ndcg", "precision", "map")
#: A progress bar appears once an evaluation has run this many seconds.
_PROGRESS_DELAY = 3.0


def _member(sorted_keys: Tensor, query: Tensor) -> Tensor:
    """Vectorised ``query in sorted_keys`` (any query shape)."""
    if sorted_keys.numel() == 0:
        return torch.zeros_like(query, dtype=torch.bool)
    flat = query.reshape(-1)
    pos = torch.searchsorted(sorted_keys, flat).clamp_max(sorted_keys.numel() - 1)
    return (sorted_keys[pos] == flat).view(query.shape)


class _TrainIndex:
    """CSR of the distinct training (user, item) pairs, kept on the CPU."""

    def __init__(self, data: HeteroData):
        self.num_users = num_users(data)
        self.num_items = num_items(data)
        tr = split_edge_index(data, "train").to(torch.long).cpu()
        self.keys = torch.unique(tr[0] * self.num_items + tr[1])   # sorted
        users = self.keys // self.num_items
        self.col = self.keys - users * self.num_items
        self.deg = torch.bincount(users, minlength=self.num_users)
        self.rowptr = torch.zeros(self.num_users + 1, dtype=torch.long)
        self.rowptr[1:] = self.deg.cumsum(0)
        self.item_deg = torch.bincount(self.col, minlength=self.num_items)

    def batch_entries(self, users: Tensor) -> tuple[Tensor, Tensor]:
        """(row-in-batch, item) of every training pair of ``users`` (CPU ``[B]``)."""
        cnt = self.deg[users]
        rows = torch.repeat_interleave(torch.arange(users.numel()), cnt)
        offs = torch.cumsum(cnt, 0) - cnt
        pos = self.rowptr[users][rows] + torch.arange(rows.numel()) - offs[rows]
        return rows, self.col[pos]


class Evaluator:
    r"""Full-ranking top-K evaluator following MMRec's protocol.

    Args:
        data: the project's :class:`HeteroData` with training edges and
            ``valid_edge_index`` / ``test_edge_index``.
        ks: cut-offs, e.g. ``(10, 20)``; each must be ``<= num_items``.
        metrics: subset of ``('recall', 'ndcg', 'precision', 'map')``.
        batch_size: users scored per call of ``score_fn``.
        progress: show a bar of the user batches when an evaluation takes
            more than a few seconds (the trainer passes its ``progress``).

    Example::

        ev = Evaluator(data, ks=(10, 20))
        res = ev.evaluate(lambda u: model.score(u, out), split='valid')
        res['recall@20']

    Held-out interactions are de-duplicated; a held-out pair that is also a
    training pair counts in :math:`|P_u|` (as in MMRec) but, being masked,
    can never be a hit.
    """

    def __init__(self, data: HeteroData, ks: Sequence[int] = (10, 20),
                 metrics: Sequence[str] = METRICS, batch_size: int = 4096,
                 progress: bool = False):
        if isinstance(ks, int):
            ks = (ks,)
        ks = tuple(int(k) for k in ks)
        self.num_users = num_users(data)
        self.num_items = num_items(data)
        if len(ks) == 0 or any(k < 1 for k in ks):
            raise ValueError(f"ks must be positive integers, got {ks}")
        if max(ks) > self.num_items:
            raise ValueError(f"K={max(ks)} is larger than the number of items ({self.num_items})")
        if isinstance(metrics, str):
            metrics = (metrics,)
        metrics = tuple(m.lower() for m in metrics)
        unknown = [m for m in metrics if m not in METRICS]
        if unknown or not metrics:
            raise ValueError(f"unknown metric(s) {unknown}; available: {METRICS}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.ks = ks
        self.metrics = metrics
        self.batch_size = int(batch_size)
        self.progress = bool(progress)
        self._train = _TrainIndex(data)
        self._cold = self._train.item_deg == 0
        self._data = data
        self._split_cache: dict[tuple[str, bool], tuple[Tensor, Tensor, Tensor]] = {}
        self._device_cache: dict[tuple[str, torch.device], Tensor] = {}

    # ----------------------------------------------------------- bookkeeping
    @property
    def cold_items(self) -> Tensor:
        """``[I]`` bool: items with no training interaction."""
        return self._cold

    def keys(self) -> list[str]:
        """Result keys in order, e.g. ``['recall@10', 'recall@20', 'ndcg@10', ...]``."""
        return [f"{m}@{k}" for m in self.metrics for k in self.ks]

    def _split(self, split: str, cold_start: bool) -> tuple[Tensor, Tensor, Tensor]:
        """(sorted eval users [N], their |P_u| [N], sorted held-out keys) on CPU."""
        key = (split, cold_start)
        if key not in self._split_cache:
            if split == "train":
                raise ValueError("evaluate on 'valid' or 'test'; training items are masked")
            e = split_edge_index(self._data, split).to(torch.long).cpu()
            if e.numel() > 0 and (int(e.min()) < 0 or int(e[0].max()) >= self.num_users
                                  or int(e[1].max()) >= self.num_items):
                raise ValueError(f"{split!r} edges have ids outside [0, num_users) x [0, num_items)")
            if cold_start:
                e = e[:, self.cold_items[e[1]]]
            keys = torch.unique(e[0] * self.num_items + e[1])
            users, pos_len = torch.unique_consecutive(keys // self.num_items, return_counts=True)
            self._split_cache[key] = (users, pos_len, keys)
        return self._split_cache[key]

    def _on(self, name: str, t: Tensor, device: torch.device) -> Tensor:
        """``t`` on ``device``, copied once per (name, device); ``name`` identifies ``t``."""
        k = (name, device)
        if k not in self._device_cache:
            self._device_cache[k] = t.to(device)
        return self._device_cache[k]

    def num_eval_users(self, split: str = "valid", cold_start: bool = False) -> int:
        """Number of users evaluated on ``split`` (those with held-out items)."""
        return int(self._split(split, cold_start)[0].numel())

    # ------------------------------------------------------------- evaluate
    def _zeros(self) -> dict[str, float]:
        return {k: 0.0 for k in self.keys()}

    @torch.no_grad()
    def evaluate(self, score_fn: Callable[[Tensor], Tensor], split: str = "valid",
                 cold_start: bool = False, device: torch.device | str | None = None
                 ) -> dict[str, float]:
        r"""Rank all items for every user with held-out items in ``split``.

        Args:
            score_fn: ``users [B] (long) -> scores [B, I]`` on any device.
                The evaluator writes ``-inf`` into the returned tensor in place
                (return a fresh tensor, as ``model.score`` does).
            split: ``'valid'`` or ``'test'``.
            cold_start: evaluate only on *cold* items, i.e. items without any
                training interaction: the ground truth is restricted to
                held-out interactions with cold items, warm items are masked
                out of the ranking (so a user's list is a ranking of cold items
                only), and users without a cold held-out item are skipped. A
                ``K`` larger than the number of cold items is allowed; masked
                positions never count as hits.
            device: device of the user ids passed to ``score_fn``. Default:
                CPU for the first batch, then the device of the returned
                scores (:func:`evaluate` passes the model's device).

        Returns:
            ``{'recall@10': float, ..., 'map@20': float}``. All zeros if no
            user qualifies (empty split).
        """
        n = self._split(split, cold_start)[0].numel()     # this evaluator's users
        if n == 0:
            return self._zeros()
        acc = None
        for _, values in self._batches(score_fn, split, cold_start, device):
            batch = values.sum(0)
            acc = batch if acc is None else acc + batch
        vals = (acc / n).tolist()   # the one host sync
        return {f"{m}@{k}": vals[i][j] for i, m in enumerate(self.metrics)
                for j, k in enumerate(self.ks)}

    @torch.no_grad()
    def evaluate_per_user(self, score_fn: Callable[[Tensor], Tensor], split: str = "test",
                          cold_start: bool = False, device: torch.device | str | None = None
                          ) -> tuple[Tensor, dict[str, Tensor]]:
        """Each evaluated user's metrics (for paired significance tests between models).

        Args:
            score_fn, split, cold_start, device: as in :meth:`evaluate`.

        Returns:
            ``(users, values)``: the evaluated user ids (sorted, CPU ``[N]``)
            and ``{'recall@20': [N] float64 CPU tensor, ...}``; the mean of
            ``values[key]`` is :meth:`evaluate`'s ``key``.
        """
        users = self._split(split, cold_start)[0]
        parts = [values for _, values in self._batches(score_fn, split, cold_start, device)]
        per = (torch.cat(parts).cpu() if parts                 # [N, metrics, ks]: one copy
               else torch.zeros(0, len(self.metrics), len(self.ks), dtype=torch.float64))
        return users.clone(), {f"{m}@{k}": per[:, i, j].contiguous()
                               for i, m in enumerate(self.metrics) for j, k in enumerate(self.ks)}

    def _batches(self, score_fn: Callable[[Tensor], Tensor], split: str, cold_start: bool,
                 device: torch.device | str | None):
        """Yield ``(users [B], per-user metrics [B, len(metrics), len(ks)] float64)`` per
        batch of evaluated users, on the scores' device (no host sync)."""
        users_all, pos_len_all, heldout = self._split(split, cold_start)
        n = users_all.numel()
        # user ids go to ``device``; by default CPU for the first batch, then the
        # device the scores came back on
        udev = torch.device(device) if device is not None else None
        kmax = max(self.ks)
        n_items = self.num_items
        bar = tqdm(total=n, desc=f"evaluating {split}", unit="user", leave=False,
                   delay=_PROGRESS_DELAY, disable=not self.progress)
        try:
            for s in range(0, n, self.batch_size):
                users = users_all[s:s + self.batch_size]
                bar.update(users.numel())
                rows, cols = self._train.batch_entries(users)
                scores = score_fn(users if udev is None else users.to(udev))
                if (scores.dim() != 2 or scores.size(0) != users.numel()
                        or scores.size(1) != n_items):
                    raise ValueError(f"score_fn must return [B={users.numel()}, I={n_items}] "
                                     f"scores, got {tuple(scores.shape)}")
                if not scores.is_floating_point():
                    scores = scores.float()
                dev = scores.device
                if device is None:
                    udev = dev
                u = users.to(dev)
                scores.index_put_((rows.to(dev), cols.to(dev)),
                                  torch.tensor(float("-inf"), dtype=scores.dtype, device=dev))
                if cold_start:
                    cold = self._on("cold", self.cold_items, dev)
                    scores.masked_fill_(~cold.unsqueeze(0), float("-inf"))
                top = torch.topk(scores, kmax, dim=1).indices                      # [B, kmax]
                # the generator's locals live across the yield: without this, the next
                # batch's [B, I] scores would be computed while this batch's are still held
                del scores
                q = u.unsqueeze(1) * n_items + top
                hit = _member(self._on(f"heldout:{split}:{cold_start}", heldout, dev), q)
                hit &= ~_member(self._on("train", self._train.keys, dev), q)  # masked never hit
                yield users, self._user_metrics(hit, pos_len_all[s:s + self.batch_size].to(dev))
        finally:
            bar.close()

    def _user_metrics(self, hit: Tensor, pos_len: Tensor) -> Tensor:
        """Each user's metrics: ``[B, len(metrics), len(ks)]`` (float64)."""
        dev = hit.device
        kmax = hit.size(1)
        h = hit.to(torch.float64)
        cum = h.cumsum(1)                                                   # h_r
        ranks = torch.arange(1, kmax + 1, device=dev, dtype=torch.float64)
        ks = torch.tensor(self.ks, device=dev, dtype=torch.long)
        kf = ks.to(torch.float64)
        kidx = ks - 1
        pl = pos_len.to(torch.float64).unsqueeze(1)
        ideal = torch.minimum(pos_len.unsqueeze(1), ks.unsqueeze(0))        # [B, nk]
        out = []
        for m in self.metrics:
            if m == "recall":
                v = cum[:, kidx] / pl
            elif m == "precision":
                v = cum[:, kidx] / kf
            elif m == "ndcg":
                disc = 1.0 / torch.log2(ranks + 1.0)
                dcg = (h * disc).cumsum(1)[:, kidx]
                idcg = disc.cumsum(0)[ideal - 1]
                v = dcg / idcg
            else:  # map
                ap = (h * cum / ranks).cumsum(1)[:, kidx]
                v = ap / ideal.to(torch.float64)
            out.append(v)
        return torch.stack(out, dim=1)

    # ------------------------------------------------------------- serving
    @torch.no_grad()
    def recommend(self, score_fn: Callable[[Tensor], Tensor], users: Tensor, k: int = 10,
                  exclude_train: bool = True) -> tuple[Tensor, Tensor]:
        """Top-``k`` items (training items excluded) for ``users``; see :func:`recommend`."""
        if k < 1 or k > self.num_items:
            raise ValueError(f"k must be in [1, num_items={self.num_items}], got {k}")
        users = torch.as_tensor(users, dtype=torch.long).view(-1)
        scores = score_fn(users)
        if scores.dim() != 2 or scores.shape != (users.numel(), self.num_items):
            raise ValueError(f"score_fn must return [B={users.numel()}, I={self.num_items}] "
                             f"scores, got {tuple(scores.shape)}")
        if not scores.is_floating_point():
            scores = scores.float()
        if exclude_train and users.numel() > 0:
            rows, cols = self._train.batch_entries(users.cpu())
            dev = scores.device
            scores.index_put_((rows.to(dev), cols.to(dev)),
                              torch.tensor(float("-inf"), dtype=scores.dtype, device=dev))
        vals, idx = torch.topk(scores, k, dim=1)
        return idx, vals


def _model_device(model: torch.nn.Module, out) -> torch.device:
    return out.user.device


def evaluate(model: torch.nn.Module, data: HeteroData, split: str = "test",
             ks: Sequence[int] = (10, 20), batch_size: int = 4096, cold_start: bool = False,
             metrics: Sequence[str] = METRICS, evaluator: Evaluator | None = None
             ) -> dict[str, float]:
    r"""Evaluate a :class:`~mmgraph.models.base.Recommender` on ``split``.

    Puts the model in eval mode, computes ``out = model()`` once under
    :func:`torch.no_grad`, ranks with ``model.score(users, out)`` and restores
    the previous training mode afterwards.

    Args:
        model: a recommender (``forward() -> Embeddings``, ``score(users, out)``).
        data: the dataset the model was built from.
        split: ``'valid'`` or ``'test'``.
        ks, batch_size, metrics: see :class:`Evaluator`.
        cold_start: see :meth:`Evaluator.evaluate`.
        evaluator: reuse a prepared :class:`Evaluator` (its ``ks``/``metrics``
            win); saves rebuilding the index on every call.

    Returns:
        ``{'recall@10': ..., 'ndcg@10': ..., ...}``.
    """
    ev = evaluator if evaluator is not None else Evaluator(data, ks, metrics, batch_size)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model()
            return ev.evaluate(lambda u: model.score(u, out), split=split,
                               cold_start=cold_start, device=_model_device(model, out))
    finally:
        model.train(was_training)


def recommend(model: torch.nn.Module, data: HeteroData, users: Tensor | Iterable[int],
              k: int = 10, out=None, exclude_train: bool = True) -> tuple[Tensor, Tensor]:
    r"""Top-``k`` recommendations for serving.

    Args:
        model: a recommender.
        data: its dataset (for the training items to exclude).
        users: ``[B]`` user ids.
        k: list length (``<= num_items``).
        out: precomputed ``model()`` output (computed if ``None``).
        exclude_train: mask the users' training items (default).

    Returns:
        ``(item_ids [B, k], scores [B, k])`` sorted by decreasing score, on the
        model's device. A user with fewer than ``k`` unseen items gets
        training items with score ``-inf`` at the tail.
    """
    ev = Evaluator(data, ks=(1,), batch_size=1)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if out is None:
                out = model()
            dev = _model_device(model, out)
            users = torch.as_tensor(users, dtype=torch.long).view(-1)
            return ev.recommend(lambda u: model.score(u.to(dev), out), users, k, exclude_train)
    finally:
        model.train(was_training)


def cold_start_split(data: HeteroData, fraction: float = 0.1, seed: int = 0,
                     max_rounds: int = 50) -> HeteroData:
    r"""Make a cold-start split: some items lose all their training interactions.

    Procedure:

    1. Draw ``round(fraction * num_items)`` items (seeded) among the items that
       have training interactions.
    2. An item is *not* made cold if that would leave one of its users with no
       training item at all: in rounds, every user who would be left empty gets
       back one of the chosen items (the last one drawn), and released items
       are replaced by further random items (a loop over rounds, never over
       users); a final pass only releases, so every user who had a training
       item keeps one. The number of cold items can therefore be slightly
       below the target.
    3. All training **and validation** interactions of the cold items are moved
       to the test split (so validation, used for early stopping, has only
       warm items, and the test split holds every interaction of the cold
       items); the test split is de-duplicated.

    The result is a fresh :class:`HeteroData` built with
    :func:`~mmgraph.data.hetero.build_hetero` (node counts, modality features
    and name are kept; derived graphs and caches of ``data`` are *not* copied
    because they were computed from the old training edges). Cold items are
    those without training interactions; evaluate on them with
    ``Evaluator(...).evaluate(..., cold_start=True)``.

    Args:
        data: the project's :class:`HeteroData`.
        fraction: fraction of all items to make cold, in ``[0, 1)``.
        seed: random seed of the item choice.
        max_rounds: replacement rounds of step 2.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    n_users, n_items = num_users(data), num_items(data)
    tr = split_edge_index(data, "train").to(torch.long).cpu()
    store = data[INTERACTS]
    va = store["valid_edge_index"].to(torch.long).cpu() if "valid_edge_index" in store else None
    te = store["test_edge_index"].to(torch.long).cpu() if "test_edge_index" in store else None

    item_deg = torch.bincount(tr[1], minlength=n_items)
    user_deg = torch.bincount(tr[0], minlength=n_users)
    candidates = (item_deg > 0).nonzero().view(-1)
    g = torch.Generator().manual_seed(int(seed))
    perm = candidates[torch.randperm(candidates.numel(), generator=g)]
    target = min(int(round(fraction * n_items)), perm.numel())

    cold = torch.zeros(n_items, dtype=torch.bool)
    cold[perm[:target]] = True
    ptr = target

    rank = torch.full((n_items,), -1, dtype=torch.long)
    rank[perm] = torch.arange(perm.numel())

    def release_bad() -> bool:
        # users left without a training item get back one of their chosen items:
        # the one drawn last (highest rank in the permutation), a vectorised scatter-max
        remain = torch.bincount(tr[0][~cold[tr[1]]], minlength=n_users)
        bad_user = (remain == 0) & (user_deg > 0)
        if not bool(bad_user.any()):
            return False
        m = bad_user[tr[0]] & cold[tr[1]]
        last = torch.full((n_users,), -1, dtype=torch.long)
        last.scatter_reduce_(0, tr[0][m], rank[tr[1][m]], reduce="amax")
        cold[perm[last[bad_user]]] = False
        return True

    for _ in range(max_rounds):
        if not release_bad():
            break
        need = target - int(cold.sum())
        if need > 0 and ptr < perm.numel():
            cold[perm[ptr:ptr + need]] = True
            ptr += need
    release_bad()  # release only: afterwards every user keeps a training item

    def keep(e: Tensor | None) -> tuple[Tensor | None, Tensor]:
        if e is None:
            return None, torch.empty(2, 0, dtype=torch.long)
        m = cold[e[1]]
        return e[:, ~m], e[:, m]

    new_tr, moved_tr = keep(tr)
    new_va, moved_va = keep(va)
    parts = [x for x in (te, moved_tr, moved_va) if x is not None]
    new_te = torch.cat(parts, dim=1)
    keys = torch.unique(new_te[0] * n_items + new_te[1])
    new_te = torch.stack([keys // n_items, keys % n_items])

    feats = modality_features(data)
    name = data._global_store.get("name", None)
    return build_hetero(n_users, n_items, new_tr, new_va, new_te, features=feats,
                        name=None if name is None else f"{name}-cold{fraction:g}")
