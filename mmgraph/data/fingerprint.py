"""Content fingerprints of tensors: what identifies a dataset or a graph's inputs.

A fingerprint names a tensor's *content*, so that things derived from it
(a checkpoint's dataset, a cached graph) can be recognised in another process
or another session: a SHA-1 of the bytes (a streaming hash, about 1 s per GB,
computed once per tensor content and remembered while the tensor lives and
is not modified in place), or, for generated features, their recipe
(:func:`~mmgraph.data.lazy.tensor_recipe`: nothing is hashed).
"""
from __future__ import annotations

import hashlib
import json
import weakref

from torch import Tensor

from .lazy import tensor_recipe

__all__ = ["tensor_digest", "tensor_fingerprint", "remember_digest"]

# id(tensor) -> (its version counter, digest): each content is hashed once;
# the entry goes when the tensor does
_DIGESTS: dict[int, tuple[int, str]] = {}


def tensor_digest(t: Tensor) -> str:
    """SHA-1 (hex) of the bytes of ``t`` (copied to the CPU, made contiguous),
    remembered for the tensor object until it is modified in place."""
    key = id(t)
    cached = _DIGESTS.get(key)
    if cached is not None and cached[0] == t._version:
        return cached[1]
    digest = hashlib.sha1(t.detach().cpu().contiguous().numpy().data).hexdigest()
    if cached is None:
        weakref.finalize(t, _DIGESTS.pop, key, None)
    _DIGESTS[key] = (t._version, digest)
    return digest


def remember_digest(t: Tensor, digest: str) -> None:
    """Record ``digest`` as :func:`tensor_digest` of ``t`` as it is now (the caller
    knows it: e.g. the processed dataset cache stores its features' digests), so
    that fingerprinting ``t`` reads none of its bytes; an in-place change of ``t``
    makes it hashed again."""
    key = id(t)
    if key not in _DIGESTS:
        weakref.finalize(t, _DIGESTS.pop, key, None)
    _DIGESTS[key] = (t._version, digest)


def tensor_fingerprint(t: Tensor) -> str:
    """A string that identifies the content of ``t``: shape, dtype and either the
    recipe it was generated from or :func:`tensor_digest`."""
    recipe = tensor_recipe(t)
    what = (f"recipe:{json.dumps(recipe, sort_keys=True, default=str)}" if recipe is not None
            else f"sha1:{tensor_digest(t)}")
    return f"{list(t.shape)}:{str(t.dtype).removeprefix('torch.')}:{what}"
