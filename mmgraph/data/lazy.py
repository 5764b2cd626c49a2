r"""Item features computed on first access (used by the synthetic generator).

``set_lazy_features(data, {'image': ((n, 4096), make_image)})`` stores a
placeholder; the first read of ``data['item'].x_image`` (attribute or key,
:func:`~mmgraph.data.hetero.modality_features`, ``.values()``, ``.items()``,
``to_dict()``, pickling, copying with ``deepcopy``) calls ``make_image()``
once and replaces the placeholder by the real ``float32`` tensor, so every
reader sees an ordinary tensor. Listing the modalities
(:func:`~mmgraph.data.hetero.modality_names`, ``keys()``, ``'x_image' in
data['item']``) and their shapes (:func:`~mmgraph.data.hetero.modality_shapes`)
builds nothing: a model that never reads a modality never pays for it.
"""
from __future__ import annotations

import copy
import weakref
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.data.storage import NodeStorage

from .hetero import ITEM, feature_key

__all__ = ["LazyFeature", "LazyNodeStorage", "feature_recipe", "tensor_recipe", "is_lazy",
           "set_lazy_features"]

#: id of a tensor built by a :class:`LazyFeature` that has a recipe ->
#: (recipe, the tensor's version when built, a weak reference to it)
_BUILT: dict[int, tuple[dict, int, weakref.ref]] = {}


class LazyFeature:
    """A ``[rows, dim]`` float32 matrix made by ``fn()`` when first needed.

    ``recipe`` (optional, JSON-serialisable) describes how ``fn`` makes it,
    e.g. the synthetic generator's arguments: dataset fingerprints use it
    instead of hashing the values, before and after the matrix is built
    (see :func:`feature_recipe`)."""

    __slots__ = ("shape", "_fn", "_value", "recipe")

    def __init__(self, shape: Sequence[int], fn: Callable[[], Any], recipe: dict | None = None):
        self.shape = torch.Size(shape)
        self._fn = fn
        self._value: Tensor | None = None
        self.recipe = recipe

    def materialize(self) -> Tensor:
        if self._value is None:
            with torch.inference_mode(False):      # an ordinary tensor even under inference_mode
                value = self._fn()
                value = value if isinstance(value, Tensor) else torch.from_numpy(np.asarray(value))
                value = value.to(torch.float32).contiguous()
            if tuple(value.shape) != tuple(self.shape):
                raise RuntimeError(f"lazy feature built with shape {tuple(value.shape)}, "
                                   f"announced {tuple(self.shape)}")
            self._value, self._fn = value, None
            if self.recipe is not None:
                _BUILT[id(value)] = (self.recipe, value._version, weakref.ref(value))
                weakref.finalize(value, _BUILT.pop, id(value), None)
        return self._value

    def __repr__(self) -> str:
        return f"LazyFeature({list(self.shape)})"


class LazyNodeStorage(NodeStorage):
    """A :class:`NodeStorage` whose :class:`LazyFeature` values build on access."""

    def __getitem__(self, key: str) -> Any:
        value = self._mapping[key]
        if isinstance(value, LazyFeature):
            value = value.materialize()
            self._mapping[key] = value
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._mapping

    def get(self, key: str, value: Any = None) -> Any:
        return self[key] if key in self._mapping else value

    def materialize(self) -> "LazyNodeStorage":
        """Build every pending feature now."""
        for key in list(self._mapping):
            self[key]
        return self

    def values(self, *args: str):
        self.materialize()
        return super().values(*args)

    def items(self, *args: str):
        self.materialize()
        return super().items(*args)

    def to_dict(self) -> dict[str, Any]:
        self.materialize()
        return super().to_dict()

    def __getstate__(self) -> dict[str, Any]:
        self.materialize()
        return super().__getstate__()

    def __deepcopy__(self, memo):
        self.materialize()
        return super().__deepcopy__(memo)


def is_lazy(data: HeteroData, modality: str) -> bool:
    """Whether ``modality``'s features of ``data`` are still to be built."""
    return isinstance(data[ITEM]._mapping.get(feature_key(modality)), LazyFeature)


def feature_recipe(data: HeteroData, modality: str) -> dict | None:
    """The recipe of ``modality``'s features if they come, unmodified, from a
    :class:`LazyFeature` with one (pending or built); else ``None``. Builds
    nothing. A tensor changed in place or replaced has no recipe any more."""
    value = data[ITEM]._mapping.get(feature_key(modality))
    if isinstance(value, LazyFeature):
        return value.recipe
    return tensor_recipe(value) if isinstance(value, Tensor) else None


def tensor_recipe(value: Tensor) -> dict | None:
    """The recipe of a tensor built by a :class:`LazyFeature` with one, while it is
    unmodified (same object, same in-place version); else ``None``."""
    built = _BUILT.get(id(value))
    if built is not None and built[2]() is value and built[1] == value._version:
        return built[0]
    return None


def set_lazy_features(data: HeteroData,
                      features: Mapping[str, tuple]) -> HeteroData:
    """Store ``{modality: (shape, fn)}`` or ``{modality: (shape, fn, recipe)}``
    as features built on first access (in place)."""
    old = data[ITEM]
    if not isinstance(old, LazyNodeStorage):
        store = LazyNodeStorage(_parent=data, _key=ITEM)
        store._mapping = copy.copy(old._mapping)
        data._node_store_dict[ITEM] = store
    store = data[ITEM]
    n = int(store.num_nodes)
    for m, (shape, fn, *recipe) in features.items():
        if len(shape) != 2 or int(shape[0]) != n:
            raise ValueError(f"feature {m!r} must have shape [num_items={n}, dim], got {tuple(shape)}")
        store._mapping[feature_key(m)] = LazyFeature(shape, fn, recipe[0] if recipe else None)
    return data
