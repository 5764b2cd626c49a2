"""Memory-mapped tensors: hand their resident pages back once they have been copied.

The processed dataset cache is loaded memory-mapped (``torch.load(mmap=True)``,
copy-on-write): a feature matrix takes memory only once its pages are read,
and then stays resident for as long as the dataset lives. A model that trains
the raw features (BM3, FREEDOM, LATTICE, ...) reads the data's matrix once,
into its own table, and a kNN builder reads it once, into a graph; afterwards
the data's pages would only double the memory of every trainable feature
table (a 7,050 x 4,096 image matrix: 110 MiB).

:func:`release_pages` asks the kernel to take such pages out of the process's
resident set (``madvise(MADV_PAGEOUT)``, Linux 5.4 or later). It is a hint
that never changes a value: clean pages of the file are dropped and read
again from the file when next touched; pages the process changed in place
are private memory and keep their contents. Tensors that are not in a file
mapping (ordinary memory, shared memory, other devices) are left alone, and
on other systems it does nothing. Pages that another mapping of the file
also holds (a second load of the same dataset, another process) stay: the
kernel leaves shared pages alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import sys

from torch import Tensor

__all__ = ["release_pages", "file_mapped"]

#: ``MADV_PAGEOUT`` of Linux (the same number on every architecture; Python's
#: ``mmap`` module names it from 3.12 on)
_MADV_PAGEOUT = getattr(mmap, "MADV_PAGEOUT", 21)
#: mappings that look like files in ``/proc/self/maps`` but are shared memory
_NOT_FILES = ("/dev/", "/memfd:", "/SYSV", "/dmabuf:")

_madvise = None


def _libc_madvise():
    global _madvise
    if _madvise is None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.madvise
        fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        fn.restype = ctypes.c_int
        _madvise = fn
    return _madvise


def _byte_range(t: Tensor) -> tuple[int, int]:
    """``[start, end)`` addresses of the bytes ``t`` can reach in its storage."""
    if t.numel() == 0:
        return t.data_ptr(), t.data_ptr()
    lo = hi = t.data_ptr()
    for size, stride in zip(t.shape, t.stride()):
        span = (size - 1) * stride * t.element_size()
        lo, hi = (lo + span, hi) if span < 0 else (lo, hi + span)
    return lo, hi + t.element_size()


def file_mapped(t: Tensor) -> bool:
    """Whether every byte of CPU tensor ``t`` lies in mappings of regular files
    (as the features of a memory-mapped dataset load do); ``False`` where
    ``/proc/self/maps`` cannot say (other systems)."""
    if t.device.type != "cpu" or t.numel() == 0 or not sys.platform.startswith("linux"):
        return False
    start, end = _byte_range(t)
    covered = start
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                fields = line.split(maxsplit=5)
                lo, hi = (int(a, 16) for a in fields[0].split("-"))
                if hi <= covered or lo >= end:
                    continue
                path = fields[5].strip() if len(fields) > 5 else ""
                if lo > covered or not path.startswith("/") or path.startswith(_NOT_FILES):
                    return False
                covered = hi
                if covered >= end:
                    return True
    except OSError:
        return False
    return False


def release_pages(t: Tensor) -> bool:
    """Hand the resident pages of a file-mapped CPU tensor back to the kernel.

    The whole pages inside ``t``'s bytes are advised ``MADV_PAGEOUT``: they
    leave this process's resident set (clean ones are read from the file
    again when next touched; ones changed in place keep their contents).
    Values never change. Call it after copying ``t`` somewhere (see the
    module doc).

    Returns:
        whether the advice was given: ``False`` for tensors outside file
        mappings (ordinary or shared memory, GPU), on systems without
        ``/proc/self/maps`` or ``MADV_PAGEOUT``.
    """
    if not file_mapped(t):
        return False
    start, end = _byte_range(t)
    page = mmap.PAGESIZE
    lo, hi = -(-start // page) * page, end // page * page
    if hi <= lo:
        return False
    try:
        return _libc_madvise()(lo, hi - lo, _MADV_PAGEOUT) == 0
    except (OSError, AttributeError):
        return False
