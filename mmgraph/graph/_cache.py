"""Per-``HeteroData`` cache of derived graphs, invalidated when their inputs change.

Entries live in ``data.__dict__['_mmgraph_cache']`` (outside PyG's stores, so
they are never collated, moved or saved as data attributes). Each entry is
keyed by a name and validated against a fingerprint of the tensors it was built
from: the same tensor object (weak reference), the same storage pointer,
shape, device and in-place version counter. Replacing an ``edge_index`` or
modifying it in place therefore rebuilds the entry.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Hashable, Sequence

from torch import Tensor

_ATTR = "_mmgraph_cache"
_MAX_ENTRIES = 32


def _fingerprint(t: Tensor) -> tuple:
    return (t.data_ptr(), tuple(t.shape), str(t.device), t.dtype, t._version)


def cache_of(data) -> dict:
    cache = data.__dict__.get(_ATTR)
    if cache is None:
        cache = {}
        data.__dict__[_ATTR] = cache
    return cache


def cached(data, key: Hashable, deps: Sequence[Tensor], build: Callable[[], Any],
           enabled: bool = True) -> Any:
    """Return ``build()``, memoised on ``data`` under ``key`` while ``deps`` are unchanged."""
    if not enabled:
        return build()
    cache = cache_of(data)
    prints = tuple(_fingerprint(t) for t in deps)
    entry = cache.get(key)
    if entry is not None:
        refs, old_prints, value = entry
        if old_prints == prints and all(r() is t for r, t in zip(refs, deps)):
            return value
    value = build()
    if key not in cache and len(cache) >= _MAX_ENTRIES:
        cache.pop(next(iter(cache)))
    cache[key] = (tuple(weakref.ref(t) for t in deps), prints, value)
    return value


def clear_cache(data) -> None:
    """Drop every cached graph of ``data``."""
    data.__dict__.pop(_ATTR, None)
