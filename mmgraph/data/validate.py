r"""Validation of interaction splits and item features.

Every loader of :mod:`mmgraph.data` funnels its raw arrays through
:func:`validate_interactions` and :func:`validate_features` before it calls
:func:`~mmgraph.data.hetero.build_hetero`, so a malformed dataset fails early
with a :class:`DataValidationError` (a :class:`ValueError`) whose message
names the file and the problem, instead of failing deep inside a model.

Checks, in order:

1. ids are integers (integral floats are accepted), non-negative and, when
   ``num_users`` / ``num_items`` are given, below them;
2. no split is empty;
3. user ids are contiguous: every id in ``0 .. n-1`` occurs in some split
   (``n`` = the given size, else max id + 1); item ids that occur in no
   interaction (catalogue items known only from a feature row, or a given
   ``num_items``) are kept as cold items with a warning giving the count,
   unless most of the range is unused (then the ids need re-indexing);
   memory is bounded by the number of ids, not by ``n`` (one id of
   ``2**40`` must not cost 1 TiB);
4. duplicate ``(user, item)`` pairs, within or across splits, are removed
   with a :func:`warnings.warn`, keeping the first occurrence in the order
   train, valid, test (so a pair in train and test stays in train); a split
   left empty by this is refused;
5. users with valid/test interactions but no training interaction follow
   the ``cold_users`` policy: ``'drop'`` (default, as the MMRec toolbox's
   ``filter_out_cod_start_users``: their valid/test interactions are removed
   with a warning giving the count, the user id space is unchanged, so they
   stay as users without any edge), ``'error'`` (refuse the data) or
   ``'keep'`` (keep them, for cold-start user evaluation).

Features must be ``[num_items, dim]`` real arrays without NaN/inf; any float
width (float16 included) is accepted and cast to ``float32``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .hetero import SPLITS, modality_features, num_items, num_users, split_edge_index

__all__ = [
    "DataValidationError",
    "ValidatedInteractions",
    "as_id_array",
    "COLD_USER_POLICIES",
    "check_contiguous",
    "check_train_coverage",
    "deduplicate",
    "validate_features",
    "validate_interactions",
    "validate_hetero",
]

_MAX_LISTED = 5

#: Values of ``cold_users`` (users with valid/test but no training interactions).
COLD_USER_POLICIES = ("drop", "error", "keep")


class DataValidationError(ValueError):
    """A dataset file or array is malformed; the message names where and why."""


def _fmt_ids(ids: np.ndarray, limit: int = _MAX_LISTED) -> str:
    ids = np.asarray(ids).ravel()
    head = ", ".join(str(int(v)) for v in ids[:limit])
    return head + (", ..." if ids.size > limit else "")


def _where(source: str | None, lines: np.ndarray | None, idx: np.ndarray) -> str:
    """``"file line 12"`` or ``"file entry 3"`` for the first offending index."""
    first = int(idx[0])
    if lines is not None:
        return f"{source} line {int(lines[first])}"
    return f"{source} column {first}"


def as_id_array(values, kind: str, source: str, lines: np.ndarray | None = None,
                upper: int | None = None) -> np.ndarray:
    r"""Check one row of ids and return it as ``int64``.

    Args:
        values: 1-D array-like of ids (integer dtype, or floats holding
            integral values).
        kind: ``'user'`` or ``'item'`` (used in messages).
        source: file (and split) named in messages.
        lines: optional 1-based line number of every entry (text files).
        upper: if given, ids must be ``< upper``.

    Raises:
        DataValidationError: non-numeric, non-integer, negative or
            out-of-range ids.
    """
    a = values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)
    if a.ndim != 1:
        raise DataValidationError(f"{source}: {kind} ids must be one-dimensional, got shape {a.shape}")
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer)
                                   or np.issubdtype(a.dtype, np.floating)):
        raise DataValidationError(f"{source}: {kind} ids must be integers, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating):
        bad = ~np.isfinite(a)
        bad[~bad] = a[~bad] != np.floor(a[~bad])
        if bad.any():
            idx = np.flatnonzero(bad)
            raise DataValidationError(
                f"{_where(source, lines, idx)}: {idx.size} non-integer {kind} id(s), "
                f"first {a[idx[0]]!r}")
        if a.size and np.abs(a).max() >= 2 ** 53:
            raise DataValidationError(f"{source}: {kind} ids too large to be exact as floats")
    a = a.astype(np.int64, copy=False)
    neg = a < 0
    if neg.any():
        idx = np.flatnonzero(neg)
        raise DataValidationError(
            f"{_where(source, lines, idx)}: {idx.size} negative {kind} id(s), first {int(a[idx[0]])}")
    if upper is not None:
        over = a >= upper
        if over.any():
            idx = np.flatnonzero(over)
            raise DataValidationError(
                f"{_where(source, lines, idx)}: {idx.size} {kind} id(s) out of range "
                f"[0, {upper}), first {int(a[idx[0]])} (num_{kind}s={upper})")
    return a


def check_contiguous(ids: Sequence[np.ndarray], n: int, kind: str, source: str,
                     unused: str = "error") -> None:
    """Check that every id in ``0 .. n-1`` occurs in one of ``ids``.

    ``unused='error'`` raises for ids that never occur; ``'keep'`` accepts
    them with a warning giving the count (catalogue items without
    interactions stay as cold items), unless they are the majority of the
    range (a stray huge id, or ids that need re-indexing).

    Memory is bounded by the number of ids given, not by ``n``: a range
    larger than that count (one huge id) is checked on the sorted distinct
    ids, without allocating anything of size ``n``.
    """
    count = sum(int(np.asarray(a).size) for a in ids)
    if n <= count:
        seen = np.zeros(n, dtype=bool)
        for a in ids:
            seen[a] = True
        n_missing = int(n - seen.sum())
        missing = np.flatnonzero(~seen)[:_MAX_LISTED + 1] if n_missing else None
    else:
        present = np.unique(np.concatenate([np.asarray(a).ravel() for a in ids]))
        present = present[present < n]
        n_missing = int(n - present.size)
        # the first k missing ids lie below len(present) + k
        head = np.arange(min(n, present.size + _MAX_LISTED + 1), dtype=np.int64)
        missing = np.setdiff1d(head, present, assume_unique=True)[:_MAX_LISTED + 1]
    if not n_missing:
        return
    if unused == "keep" and n_missing <= n - n_missing:
        warnings.warn(f"{source}: {n_missing} of the {kind} ids 0..{n - 1} occur in no "
                      f"interaction (first: {_fmt_ids(missing)}); kept as cold {kind}s "
                      f"(features kept, ranked as candidates)", stacklevel=3)
        return
    raise DataValidationError(
        f"{source}: {kind} ids are not contiguous: {n_missing} of the ids 0..{n - 1} "
        f"never occur (first missing: {_fmt_ids(missing)}); ids must be 0-based and "
        f"contiguous (re-index them, e.g. with mmgraph.data.preprocess_interactions)")



def check_train_coverage(splits: Mapping[str, np.ndarray], n_users: int, source: str,
                         cold_users: str = "drop") -> dict[str, np.ndarray]:
    r"""Apply the ``cold_users`` policy to users with held-out but no training edges.

    Args:
        splits: ``{split: int64 [2, E]}`` with a ``'train'`` entry.
        cold_users: ``'drop'`` (remove their valid/test interactions with a
            warning; ids unchanged), ``'error'`` or ``'keep'``.

    Returns:
        ``{split: bool [E]}`` keep masks (all ``True`` unless ``'drop'``
        removed something).
    """
    if cold_users not in COLD_USER_POLICIES:
        raise ValueError(f"cold_users must be one of {COLD_USER_POLICIES}, got {cold_users!r}")
    keep = {s: np.ones(e.shape[1], dtype=bool) for s, e in splits.items()}
    if cold_users == "keep" or "train" not in splits:
        return keep
    has = np.zeros(n_users, dtype=bool)
    has[splits["train"][0]] = True
    held = [s for s in splits if s != "train"]
    cold = np.zeros(n_users, dtype=bool)
    for s in held:
        cold[splits[s][0]] = True
    cold &= ~has
    if not cold.any():
        return keep
    users = np.flatnonzero(cold)
    if cold_users == "error":
        raise DataValidationError(
            f"{source}: {users.size} user(s) have no training interaction "
            f"(first: {_fmt_ids(users)}); every user needs at least one train edge "
            f"(cold_users='drop' drops their valid/test interactions, 'keep' keeps them "
            f"for cold-start evaluation)")
    for s in held:
        keep[s] = has[splits[s][0]]
    per = ", ".join(f"{s}: {int((~keep[s]).sum())}" for s in held if (~keep[s]).any())
    n_drop = sum(int((~keep[s]).sum()) for s in held)
    warnings.warn(f"{source}: {users.size} user(s) have no training interaction "
                  f"(first: {_fmt_ids(users)}); dropped their {n_drop} valid/test "
                  f"interaction(s) ({per}) as the MMRec toolbox does, user ids unchanged "
                  f"(cold_users='keep' evaluates them, 'error' refuses such data)",
                  stacklevel=3)
    for s in held:
        if not keep[s].any():
            raise DataValidationError(
                f"{source}: the {s} split is empty after dropping the interactions of users "
                f"without a training interaction (cold_users='drop')")
    return keep


def deduplicate(splits: Mapping[str, np.ndarray], n_items: int,
                source: str, warn: bool = True) -> dict[str, np.ndarray]:
    r"""Boolean keep-masks removing repeated ``(user, item)`` pairs.

    The splits are scanned in the order of ``splits`` (train, valid, test);
    the first occurrence of a pair is kept, so a pair present in train and in
    test stays in train only.

    Args:
        splits: ``{split: int64 [2, E]}``.
        n_items: number of items (pairs are encoded as ``user * n_items + item``).

    Returns:
        ``{split: bool [E]}`` keep masks (all ``True`` when nothing repeats).
    """
    names = list(splits)
    keys = np.concatenate([splits[s][0] * np.int64(n_items) + splits[s][1] for s in names])
    _, first = np.unique(keys, return_index=True)
    keep = np.zeros(keys.size, dtype=bool)
    keep[first] = True
    out, start = {}, 0
    for s in names:
        e = splits[s].shape[1]
        out[s] = keep[start:start + e]
        start += e
    n_dup = int(keys.size - first.size)
    if n_dup and warn:
        per = ", ".join(f"{s}: {int((~m).sum())}" for s, m in out.items() if (~m).any())
        warnings.warn(f"{source}: removed {n_dup} duplicate (user, item) interaction(s) "
                      f"({per}); the first occurrence (train before valid before test) is kept",
                      stacklevel=3)
    return out


@dataclass
class ValidatedInteractions:
    """Result of :func:`validate_interactions`."""

    splits: dict[str, np.ndarray]          # {split: int64 [2, E]} after de-duplication
    num_users: int
    num_items: int
    keep: dict[str, np.ndarray] = field(default_factory=dict)   # {split: bool mask on input rows}


def validate_interactions(splits: Mapping[str, np.ndarray | Tensor],
                          num_users: int | None = None, num_items: int | None = None,
                          sources: Mapping[str, str] | str = "interactions",
                          lines: Mapping[str, np.ndarray] | None = None,
                          contiguous: bool = True, dedup: bool = True,
                          cold_users: str = "drop", unused_items: str = "keep",
                          ) -> ValidatedInteractions:
    r"""Validate ``{split: [2, E]}`` user/item id arrays (see module docstring).

    Args:
        splits: ``{'train': [2, E], 'valid': ..., 'test': ...}``; row 0 user
            ids, row 1 item ids.
        num_users, num_items: sizes; inferred as max id + 1 over all splits
            when ``None``.
        sources: file name per split (or one name for all) used in messages.
        lines: optional 1-based line numbers per split (text formats).
        contiguous: check that every id below the size occurs (users:
            error; items: see ``unused_items``).
        dedup: remove duplicate pairs with a warning.
        cold_users: ``'drop'`` | ``'error'`` | ``'keep'``, see
            :func:`check_train_coverage`.
        unused_items: ``'keep'`` accepts item ids that occur in no
            interaction with a warning (catalogue items), ``'error'`` refuses them.
    """
    if isinstance(sources, str):
        sources = {s: sources for s in splits}
    lines = lines or {}
    arrays: dict[str, np.ndarray] = {}
    for s, e in splits.items():
        src = sources.get(s, s)
        e = e.detach().cpu().numpy() if isinstance(e, Tensor) else np.asarray(e)
        if e.ndim != 2 or e.shape[0] != 2:
            hint = " (looks transposed: expected [2, E])" if e.ndim == 2 and e.shape[1] == 2 else ""
            raise DataValidationError(
                f"{src}: {s} interactions must have shape [2, E] (row 0 user, row 1 item), "
                f"got {e.shape}{hint}")
        u = as_id_array(e[0], "user", src, lines.get(s), num_users)
        i = as_id_array(e[1], "item", src, lines.get(s), num_items)
        arrays[s] = np.stack([u, i])
    for s, e in arrays.items():
        if e.shape[1] == 0:
            raise DataValidationError(f"{sources.get(s, s)}: the {s} split is empty (0 interactions)")
    n_u = int(num_users) if num_users is not None else \
        int(max(e[0].max() for e in arrays.values())) + 1
    n_i = int(num_items) if num_items is not None else \
        int(max(e[1].max() for e in arrays.values())) + 1
    all_src = ", ".join(dict.fromkeys(sources.get(s, s) for s in arrays))
    if contiguous:
        check_contiguous([e[0] for e in arrays.values()], n_u, "user", all_src)
        check_contiguous([e[1] for e in arrays.values()], n_i, "item", all_src, unused_items)
    keep = {s: np.ones(e.shape[1], dtype=bool) for s, e in arrays.items()}
    if dedup:
        keep = deduplicate(arrays, n_i, all_src)
        arrays = {s: (e if keep[s].all() else e[:, keep[s]]) for s, e in arrays.items()}
        for s, e in arrays.items():
            if e.shape[1] == 0:
                raise DataValidationError(
                    f"{sources.get(s, s)}: the {s} split is empty after removing duplicate "
                    f"(user, item) pairs: all its {keep[s].size} interaction(s) also occur in an "
                    f"earlier split (train before valid before test)")
    cold = check_train_coverage(arrays, n_u, all_src, cold_users)
    for s, m in cold.items():
        if not m.all():
            arrays[s] = arrays[s][:, m]
            kept = np.flatnonzero(keep[s])
            keep[s] = keep[s].copy()
            keep[s][kept[~m]] = False
    return ValidatedInteractions(arrays, n_u, n_i, keep)


def validate_features(feat, num_items: int, modality: str, source: str) -> np.ndarray:
    r"""Check a ``[num_items, dim]`` feature matrix and return it as ``float32``.

    Raises:
        DataValidationError: wrong rank, wrong number of rows, non-numeric
            dtype, or NaN/inf entries.
    """
    a = feat.detach().cpu().numpy() if isinstance(feat, Tensor) else np.asarray(feat)
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.floating)
                                   or np.issubdtype(a.dtype, np.integer)):
        raise DataValidationError(f"{source}: {modality} features must be a real-valued array, "
                                  f"got dtype {a.dtype}")
    if a.ndim != 2:
        raise DataValidationError(f"{source}: {modality} features must have shape [n_items, dim], "
                                  f"got {a.shape}")
    if a.shape[0] != num_items:
        hint = (f"; if the last {a.shape[0] - num_items} row(s) are catalogue items without "
                f"interactions, pass num_items={a.shape[0]}") if a.shape[0] > num_items else ""
        raise DataValidationError(f"{source}: {modality} features have {a.shape[0]} rows but the "
                                  f"dataset has {num_items} items{hint}")
    a = a.astype(np.float32, copy=False)
    finite = np.isfinite(a)
    if not finite.all():
        rows = np.flatnonzero(~finite.all(axis=1))
        raise DataValidationError(f"{source}: {modality} features contain NaN/inf in "
                                  f"{rows.size} row(s) (first items: {_fmt_ids(rows)})")
    return a


def validate_hetero(data, contiguous: bool = False, cold_users: str = "error") -> None:
    r"""Check an assembled :class:`HeteroData` against the project layout.

    Verifies that train/valid/test edges exist with ids in range, that no
    split is empty, that every user with valid/test edges has a training edge
    (unless ``cold_users='keep'``; users without any edge are fine) and that
    every modality feature is a finite ``float32 [num_items, dim]`` tensor.
    ``contiguous=True`` also demands that every user and item occurs.
    """
    n_u, n_i = num_users(data), num_items(data)
    splits = {}
    for s in SPLITS:
        try:
            splits[s] = split_edge_index(data, s)
        except KeyError as err:
            raise DataValidationError(f"HeteroData: {err.args[0]}") from None
    if cold_users == "drop":
        raise ValueError("validate_hetero checks data: cold_users must be 'error' or 'keep'")
    validate_interactions(splits, n_u, n_i, sources="HeteroData", contiguous=contiguous,
                          dedup=False, cold_users=cold_users, unused_items="error")
    for m, f in modality_features(data).items():
        if f.dtype != torch.float32:
            raise DataValidationError(f"HeteroData: feature {m!r} has dtype {f.dtype}, expected float32")
        validate_features(f, n_i, m, "HeteroData")
