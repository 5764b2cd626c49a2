r"""Negative sampling and the training-interaction loader.

:class:`NegativeSampler` draws, for each user, items uniformly from the items
that user has *not* interacted with in training (MMRec's protocol: one
uniformly sampled negative per positive). It is fully vectorised: the
training pairs are encoded once as sorted keys ``user * num_items + item``;
membership of a candidate is one :func:`torch.searchsorted`; rejected
candidates are redrawn in a few vectorised rounds (a loop over rejection
rounds, never over users or edges), and whatever is still rejected after
``max_rounds`` rounds is drawn exactly by inverting the rank of the
non-interacted items (see :meth:`NegativeSampler.sample_exact`), so sampling
always terminates, even for users who have seen almost every item.

:class:`InteractionLoader` iterates over shuffled training edges and yields
:class:`~mmgraph.models.base.Batch` objects with sampled negatives.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from .data.hetero import num_items as _num_items
from .data.hetero import num_users as _num_users
from .data.hetero import split_edge_index
from .models.base import Batch

__all__ = ["NegativeSampler", "InteractionLoader"]


class NegativeSampler:
    r"""Uniform negative items per user, excluding the user's training items.

    For user :math:`u` with training item set :math:`P_u`, each negative is
    drawn uniformly from :math:`\{0..I-1\}\setminus P_u` (independently, with
    replacement across the ``num_neg`` draws of one row).

    Args:
        edge_index_or_data: a :class:`HeteroData` (its *training* edges are
            used) or a ``[2, E]`` tensor of (user, item) pairs. Duplicate pairs
            are allowed.
        num_users, num_items: sizes; read from the data when a
            :class:`HeteroData` is given, required for an ``edge_index``.
        max_rounds: number of rejection rounds before the exact fallback.
        device: where the index lives and samples are returned; see :meth:`to`.

    Example::

        sampler = NegativeSampler(data)
        neg = sampler.sample(users, num_neg=1, generator=g)   # [B]
    """

    def __init__(self, edge_index_or_data: Tensor | HeteroData, num_users: int | None = None,
                 num_items: int | None = None, max_rounds: int = 8,
                 device: torch.device | str | None = None):
        if isinstance(edge_index_or_data, HeteroData):
            data = edge_index_or_data
            edge_index = split_edge_index(data, "train")
            num_users = _num_users(data) if num_users is None else int(num_users)
            num_items = _num_items(data) if num_items is None else int(num_items)
        else:
            edge_index = torch.as_tensor(edge_index_or_data)
            if num_users is None or num_items is None:
                raise ValueError("num_users and num_items are required when an edge_index is given")
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
        if num_items <= 0 or num_users <= 0:
            raise ValueError(f"num_users and num_items must be positive, got {num_users}, {num_items}")
        self.num_users = int(num_users)
        self.num_items = int(num_items)
        self.max_rounds = int(max_rounds)
        edge_index = edge_index.to(torch.long).cpu()
        if edge_index.numel() > 0:
            if int(edge_index.min()) < 0 or int(edge_index[0].max()) >= self.num_users \
                    or int(edge_index[1].max()) >= self.num_items:
                raise ValueError("edge_index has ids outside [0, num_users) x [0, num_items)")
        # sorted unique keys user * I + item; they also form a CSR (row-major)
        keys = torch.unique(edge_index[0] * self.num_items + edge_index[1])
        users = keys // self.num_items
        items = keys - users * self.num_items
        deg = torch.bincount(users, minlength=self.num_users)
        rowptr = torch.zeros(self.num_users + 1, dtype=torch.long)
        rowptr[1:] = deg.cumsum(0)
        local = torch.arange(keys.numel()) - rowptr[users]
        # q_j = p_j - j: the number of non-interacted items below the j-th positive
        self._keys = keys
        self._qkeys = users * self.num_items + (items - local)
        self._rowptr = rowptr
        self._deg = deg
        full = deg >= self.num_items
        self._full_users = full.nonzero().view(-1)
        self.device = torch.device("cpu")
        if device is not None:
            self.to(device)

    # ------------------------------------------------------------------ utils
    def to(self, device: torch.device | str) -> "NegativeSampler":
        """Move the index to ``device`` (in place); returns ``self``."""
        device = torch.device(device)
        for name in ("_keys", "_qkeys", "_rowptr", "_deg", "_full_users"):
            setattr(self, name, getattr(self, name).to(device))
        self.device = device
        return self

    @property
    def num_edges(self) -> int:
        """Number of distinct training (user, item) pairs."""
        return int(self._keys.numel())

    def is_positive(self, users: Tensor, items: Tensor) -> Tensor:
        """Boolean tensor (broadcast shape of ``users``/``items``): is the pair a training interaction?"""
        q = users.to(self.device) * self.num_items + items.to(self.device)
        return _member(self._keys, q)

    def _check_users(self, users: Tensor) -> None:
        if self._full_users.numel() > 0:  # only then pay for a host sync
            bad = torch.isin(users, self._full_users)
            if bool(bad.any()):
                u = users[bad][:5].tolist()
                raise ValueError(f"cannot sample a negative for user(s) {u}: they have interacted "
                                 f"with every one of the {self.num_items} items in training")

    def _rand(self, shape, generator: torch.Generator | None, dtype=None) -> Tensor:
        gdev = generator.device if generator is not None else self.device
        return torch.rand(shape, generator=generator, device=gdev,
                          dtype=dtype or torch.float64).to(self.device)

    def _randint(self, n: int, shape, generator: torch.Generator | None) -> Tensor:
        gdev = generator.device if generator is not None else self.device
        return torch.randint(n, shape, generator=generator, device=gdev).to(self.device)

    # --------------------------------------------------------------- sampling
    def sample_exact(self, users: Tensor, num_neg: int = 1,
                     generator: torch.Generator | None = None) -> Tensor:
        r"""Exact uniform negatives without rejection (inverse rank).

        Draw :math:`r \sim \mathcal{U}\{0, .., I - |P_u| - 1\}`; the ``r``-th
        (0-based) non-interacted item is :math:`r + |\{j : q_j \le r\}|` where
        :math:`q_j = p_j - j` for the user's sorted positives :math:`p_j`
        (:math:`q_j` counts the non-interacted items below :math:`p_j`). One
        :func:`torch.searchsorted` over the pre-encoded keys
        ``u * I + q_j`` answers it for the whole batch.

        Returns ``[B, num_neg]``.
        """
        users = torch.as_tensor(users).to(self.device, torch.long).view(-1)
        self._check_users(users)
        m = (self.num_items - self._deg[users]).unsqueeze(-1)            # [B, 1] allowed count
        r = (self._rand((users.numel(), num_neg), generator) * m).floor().long()
        r = torch.minimum(r, m - 1)
        base = users.unsqueeze(-1) * self.num_items
        cnt = torch.searchsorted(self._qkeys, base + r, right=True) - self._rowptr[users].unsqueeze(-1)
        return r + cnt

    def sample(self, users: Tensor, num_neg: int = 1,
               generator: torch.Generator | None = None) -> Tensor:
        r"""Uniform negatives for each user of ``users``.

        Candidates are drawn uniformly over all items, those that are training
        positives of their user are redrawn (a vectorised round each; at most
        ``max_rounds`` rounds, each costing one host sync), and the rest are
        drawn by :meth:`sample_exact`. The result is exactly uniform over the
        allowed items.

        Args:
            users: ``[B]`` user ids (any device; moved to the sampler's).
            num_neg: negatives per user.
            generator: optional :class:`torch.Generator` for reproducibility
                (draws happen on the generator's device and are then moved,
                so a CPU generator gives the same samples on every device).

        Returns:
            ``[B]`` if ``num_neg == 1`` else ``[B, num_neg]`` item ids on the
            sampler's device.

        Raises:
            ValueError: if a user has interacted with every item.
        """
        if num_neg < 1:
            raise ValueError(f"num_neg must be >= 1, got {num_neg}")
        users = torch.as_tensor(users).to(self.device, torch.long).view(-1)
        self._check_users(users)
        shape = (users.numel(), num_neg)
        cand = self._randint(self.num_items, shape, generator)
        base = users.unsqueeze(-1) * self.num_items
        if users.numel() > 0:
            for _ in range(self.max_rounds):
                rej = _member(self._keys, base + cand)
                idx = rej.nonzero()
                if idx.numel() == 0:
                    break
                cand[idx[:, 0], idx[:, 1]] = self._randint(self.num_items, (idx.size(0),), generator)
            else:
                rej = _member(self._keys, base + cand)
                if bool(rej.any()):
                    rows, cols = rej.nonzero().unbind(1)
                    exact = self.sample_exact(users[rows], 1, generator).view(-1)
                    cand[rows, cols] = exact
        return cand.view(-1) if num_neg == 1 else cand

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_users={self.num_users}, num_items={self.num_items}, "
                f"num_edges={self.num_edges}, device={self.device})")


def _member(sorted_keys: Tensor, query: Tensor) -> Tensor:
    """Vectorised ``query in sorted_keys`` (any query shape)."""
    if sorted_keys.numel() == 0:
        return torch.zeros_like(query, dtype=torch.bool)
    pos = torch.searchsorted(sorted_keys, query.reshape(-1)).clamp_max(sorted_keys.numel() - 1)
    return (sorted_keys[pos] == query.reshape(-1)).view(query.shape)


class InteractionLoader:
    r"""Mini-batches of training interactions with sampled negatives.

    Each epoch (each call to ``iter``) permutes the training edges
    (``shuffle=True``), samples negatives for all of them in one vectorised
    call, and yields :class:`~mmgraph.models.base.Batch` objects
    (``users [B]``, ``pos_items [B]``, ``neg_items [B]`` / ``[B, num_neg]`` /
    ``None`` when ``num_neg == 0``) on ``device``.

    Args:
        data: the project's :class:`HeteroData` (training edges are used).
        batch_size: edges per batch (MMRec default 2048).
        shuffle: permute edges every epoch.
        num_neg: negatives per positive; ``0`` for models without negatives
            (BM3), then ``Batch.neg_items`` is ``None``.
        generator: :class:`torch.Generator` making the order and the
            negatives reproducible (same generator state -> same epoch).
        device: where batches are produced.
        drop_last: drop the last incomplete batch.
        sampler: an existing :class:`NegativeSampler` to reuse.
    """

    def __init__(self, data: HeteroData, batch_size: int = 2048, shuffle: bool = True,
                 num_neg: int = 1, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu", drop_last: bool = False,
                 sampler: NegativeSampler | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_neg < 0:
            raise ValueError(f"num_neg must be >= 0, got {num_neg}")
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.num_neg = int(num_neg)
        self.generator = generator
        self.drop_last = drop_last
        self.edge_index = split_edge_index(data, "train").to(self.device, torch.long)
        self.sampler = None
        if self.num_neg > 0:
            self.sampler = (sampler if sampler is not None
                            else NegativeSampler(data, device=self.device))
            if self.sampler.device != self.device:
                self.sampler.to(self.device)

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.size(1))

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_edges // self.batch_size
        return math.ceil(self.num_edges / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        e = self.num_edges
        if self.shuffle:
            gdev = self.generator.device if self.generator is not None else self.device
            perm = torch.randperm(e, generator=self.generator, device=gdev).to(self.device)
            edges = self.edge_index[:, perm]
        else:
            edges = self.edge_index
        users, items = edges[0], edges[1]
        neg = None
        if self.num_neg > 0:
            neg = self.sampler.sample(users, self.num_neg, generator=self.generator)
        stop = len(self) * self.batch_size
        for s in range(0, min(stop, e), self.batch_size):
            sl = slice(s, s + self.batch_size)
            yield Batch(users[sl], items[sl], None if neg is None else neg[sl])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_edges={self.num_edges}, batch_size={self.batch_size}, "
                f"num_neg={self.num_neg}, shuffle={self.shuffle})")
