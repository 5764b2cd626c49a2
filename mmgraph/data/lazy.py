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
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.data.storage import NodeStorage

from .hetero import ITEM, feature_key

__all__ = ["LazyFeature", "LazyNodeStorage", "is_lazy", "set_lazy_features"]


class LazyFeature:
    """A ``[rows, dim]`` float32 matrix made by ``fn()`` when first needed."""

    __slots__ = ("shape", "_fn", "_value")

    def __init__(self, shape: Sequence[int], fn: Callable[[], Any]):
        self.shape = torch.Size(shape)
        self._fn = fn
        self._value: Tensor | None = None

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


def set_lazy_features(data: HeteroData,
                      features: Mapping[str, tuple[Sequence[int], Callable[[], Any]]]) -> HeteroData:
    """Store ``{modality: (shape, fn)}`` as features built on first access (in place)."""
    old = data[ITEM]
    if not isinstance(old, LazyNodeStorage):
        store = LazyNodeStorage(_parent=data, _key=ITEM)
        store._mapping = copy.copy(old._mapping)
        data._node_store_dict[ITEM] = store
    store = data[ITEM]
    n = int(store.num_nodes)
    for m, (shape, fn) in features.items():
        if len(shape) != 2 or int(shape[0]) != n:
            raise ValueError(f"feature {m!r} must have shape [num_items={n}, dim], got {tuple(shape)}")
        store._mapping[feature_key(m)] = LazyFeature(shape, fn)
    return data
