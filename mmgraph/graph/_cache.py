"""Caches of derived graphs: per ``HeteroData`` in memory, and optionally on disk.

**In memory.** Entries live in ``data.__dict__['_mmgraph_cache']`` (outside
PyG's stores, so they are never collated, moved or saved as data attributes).
Each entry is keyed by a name and validated against a fingerprint of the
tensors it was built from: the same tensor object (weak reference), the same
storage pointer, shape, device and in-place version counter. Replacing an
``edge_index`` or modifying it in place therefore rebuilds the entry.

**On disk** (while :func:`disk_cache` is active, or ``$MMGRAPH_GRAPH_CACHE``
names a folder): a graph missing from memory is looked up in the folder under
a key made of the builder's name and options and the *content* fingerprints of
its inputs (:func:`~mmgraph.data.fingerprint.tensor_fingerprint`), so another
process, or a later session, building the same graph from the same data
reads it instead (memory-mapped: ``torch.load(mmap=True)``, pages shared
between processes by the OS). A file lock per entry makes concurrent
processes build each graph once: the second waits for the first and reads
its file. Files are written atomically; an unreadable file is rebuilt.
Sweeps (:mod:`mmgraph.experiments`) put this cache under the sweep folder.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import weakref
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator, Sequence

import torch
from torch import Tensor

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock (a graph may be built twice)
    fcntl = None

__all__ = ["cached", "cache_of", "clear_cache", "disk_cache", "disk_cache_dir", "disk_cache_stats",
           "GRAPH_CACHE_ENV"]

_ATTR = "_mmgraph_cache"
_MAX_ENTRIES = 32
#: Environment variable naming a folder for the on-disk graph cache (used when no
#: :func:`disk_cache` block is active; inherited by worker processes).
GRAPH_CACHE_ENV = "MMGRAPH_GRAPH_CACHE"

_disk_dir: Path | None = None
#: what this process's disk cache did: graphs read, graphs built and written
_STATS = {"hits": 0, "misses": 0}


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
    """Return ``build()``, memoised on ``data`` under ``key`` while ``deps`` are
    unchanged, and on disk (see the module doc) when a disk cache is active.

    Args:
        data: the object the in-memory entry is attached to.
        key: the builder's name and every option the result depends on
            (its ``repr`` is part of the disk key: use plain values).
        deps: the tensors the result is computed from.
        build: makes the value (a :class:`~mmgraph.graph.SparseAdj` or a
            tensor go to disk; other values stay in memory only).
        enabled: ``False``: always ``build()`` (no cache at all).
    """
    if not enabled:
        return build()
    cache = cache_of(data)
    prints = tuple(_fingerprint(t) for t in deps)
    entry = cache.get(key)
    if entry is not None:
        refs, old_prints, value = entry
        if old_prints == prints and all(r() is t for r, t in zip(refs, deps)):
            return value
    folder = disk_cache_dir()
    value = build() if folder is None else _disk_cached(folder, key, deps, build)
    if key not in cache and len(cache) >= _MAX_ENTRIES:
        cache.pop(next(iter(cache)))
    cache[key] = (tuple(weakref.ref(t) for t in deps), prints, value)
    return value


def clear_cache(data) -> None:
    """Drop every cached graph of ``data`` (in memory; the disk cache stays)."""
    data.__dict__.pop(_ATTR, None)


# --------------------------------------------------------------------- disk
@contextlib.contextmanager
def disk_cache(folder: str | os.PathLike | None) -> Iterator[Path | None]:
    """Within the block, graphs are also cached in ``folder`` (created when
    needed); ``None`` turns the disk cache off. Nested blocks restore the outer
    setting.

    Example::

        with disk_cache("sweeps/s1/cache/graphs"):
            model = FREEDOM(data)       # the kNN graphs are read if present
    """
    global _disk_dir
    before = _disk_dir
    _disk_dir = None if folder is None else Path(folder)
    try:
        yield _disk_dir
    finally:
        _disk_dir = before


def disk_cache_dir() -> Path | None:
    """The active disk cache folder: the innermost :func:`disk_cache` block, else
    ``$MMGRAPH_GRAPH_CACHE``, else ``None``."""
    if _disk_dir is not None:
        return _disk_dir
    env = os.environ.get(GRAPH_CACHE_ENV)
    return Path(env) if env else None


def disk_cache_stats(reset: bool = False) -> dict[str, int]:
    """``{'hits': graphs read from disk, 'misses': graphs built and written}`` in
    this process (since the last ``reset``)."""
    out = dict(_STATS)
    if reset:
        _STATS.update(hits=0, misses=0)
    return out


def _disk_key(key: Hashable, deps: Sequence[Tensor]) -> str:
    from ..data.fingerprint import tensor_fingerprint
    h = hashlib.sha1(repr(key).encode())
    for t in deps:
        h.update(b"|" + tensor_fingerprint(t).encode())
    name = key[0] if isinstance(key, tuple) and key and isinstance(key[0], str) else "graph"
    return f"{name}-{h.hexdigest()[:24]}"


def _encode(value: Any) -> dict | None:
    from .sparse import SparseAdj
    if isinstance(value, SparseAdj):
        if value.value.requires_grad:
            return None
        return {"kind": "SparseAdj", "rowptr": value.rowptr.cpu(), "col": value.col.cpu(),
                "value": value.value.cpu(), "size": list(value.size),
                "symmetric": bool(value.symmetric), "backend": value._backend_name,
                "device": str(value.device)}
    if isinstance(value, Tensor) and not value.requires_grad:
        return {"kind": "tensor", "value": value.cpu(), "device": str(value.device)}
    return None


def _decode(obj: dict) -> Any:
    from .sparse import SparseAdj
    if obj["kind"] == "SparseAdj":
        adj = SparseAdj(obj["rowptr"], obj["col"], obj["value"], obj["size"],
                        symmetric=obj["symmetric"], backend=obj["backend"])
        return adj if obj["device"] == "cpu" else adj.to(obj["device"])
    return obj["value"] if obj["device"] == "cpu" else obj["value"].to(obj["device"])


def _read(path: Path) -> Any:
    try:
        return _decode(torch.load(path, map_location="cpu", mmap=True, weights_only=True))
    except Exception:  # noqa: BLE001 - a damaged or foreign file is rebuilt
        return None


def _disk_cached(folder: Path, key: Hashable, deps: Sequence[Tensor],
                 build: Callable[[], Any]) -> Any:
    from ..train.checkpoint import atomic_save
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_disk_key(key, deps)}.pt"
    lock_fd = None
    if fcntl is not None:
        lock_fd = os.open(folder / f"{path.stem}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)        # another process building it: wait
    try:
        if path.is_file():
            value = _read(path)
            if value is not None:
                _STATS["hits"] += 1
                return value
        value = build()
        obj = _encode(value)
        if obj is not None:
            atomic_save(obj, path)
            _STATS["misses"] += 1
        return value
    finally:
        if lock_fd is not None:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
            os.close(lock_fd)
