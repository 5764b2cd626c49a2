r"""CPU allocator tuning for training loops (glibc ``malloc``).

A training step on CPU allocates the same large buffers again and again: the
``[B, N]`` logits of a contrastive loss against all users, the gradient of a
``[I, d_in]`` trainable feature table, a gathered ``[B, d_in]`` block of raw
features. glibc serves every block above its mmap threshold (at most 32 MiB)
with a fresh ``mmap`` and gives it back with ``munmap`` when the tensor is
freed, so the kernel zero-fills and page-faults the same memory in every
step. At Baby scale this is a third of FREEDOM's and BM3's step time on one
CPU thread (``benchmarks/mmrec_forms.py``, ``--malloc`` column).

:func:`tuned_malloc` switches glibc to keep freed memory in the process for
the duration of a ``with`` block (``mallopt(M_MMAP_MAX, 0)``: large blocks
come from the heap; ``mallopt(M_TRIM_THRESHOLD, 2 GiB)``: the heap is not
trimmed after every free) and restores glibc's defaults afterwards. Results
are bit-identical; the cost is a somewhat higher resident set (freed blocks
are kept for reuse; +7-15% peak RSS measured for FREEDOM / BM3 at Baby
scale). :class:`~mmgraph.train.Trainer` uses it on CPU when asked,
``TrainConfig(tune_malloc=True)`` (``--tune-malloc``). Elsewhere than glibc/Linux it does
nothing. The setting is process-wide while the block runs (the allocator has
no per-thread switch).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import platform
import sys
from typing import Iterator, Optional

__all__ = ["tuned_malloc", "glibc_available"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: glibc's documented initial values, restored on exit. (Any mallopt call also
#: turns off glibc's dynamic raising of the mmap threshold, and glibc has no
#: call to turn it back on: after the block the mmap threshold stays where it
#: was.)
_DEFAULTS = {_M_MMAP_MAX: 65536, _M_TRIM_THRESHOLD: 128 * 1024}
_TUNED = {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: 2 ** 31 - 1}

_libc: Optional[ctypes.CDLL] = None
_depth = 0


def _glibc() -> Optional[ctypes.CDLL]:
    global _libc
    if _libc is None:
        if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
            return None
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            return None
        if not hasattr(lib, "mallopt"):
            return None
        lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.mallopt.restype = ctypes.c_int
        _libc = lib
    return _libc


def glibc_available() -> bool:
    """Whether this process allocates with glibc ``malloc`` (Linux, glibc)."""
    return _glibc() is not None


@contextlib.contextmanager
def tuned_malloc(enable: bool = True) -> Iterator[bool]:
    """Keep freed memory in the process while the block runs (see the module docs).

    Yields whether the tuning is active (``False`` with ``enable=False`` or
    without glibc). Nested blocks are fine: the outermost one restores the
    defaults.
    """
    global _depth
    lib = _glibc() if enable else None
    if lib is None:
        yield False
        return
    if _depth == 0:
        for opt, val in _TUNED.items():
            lib.mallopt(opt, val)
    _depth += 1
    try:
        yield True
    finally:
        _depth -= 1
        if _depth == 0:
            for opt, val in _DEFAULTS.items():
                lib.mallopt(opt, val)
