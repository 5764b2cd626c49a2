r"""The one data contract of mmgraph: a :class:`~torch_geometric.data.HeteroData`.

Layout
------
* node types ``'user'`` and ``'item'``, each with ``num_nodes``;
* modality features are item attributes named ``x_<modality>``
  (``data['item'].x_image`` ``[n_items, 4096]``, ``data['item'].x_text``
  ``[n_items, 384]``, any name, any number), always ``float32``;
* training interactions are the edge type :data:`INTERACTS`
  ``('user', 'interacts', 'item')`` with ``edge_index`` ``[2, E_train]``
  (row 0 user ids, row 1 item ids), and its reverse :data:`REV_INTERACTS`
  ``('item', 'rev_interacts', 'user')``;
* held-out interactions live *beside* the training edges on the same edge
  store, as ``data['user', 'interacts', 'item'].valid_edge_index`` and
  ``.test_edge_index`` (``[2, E_split]``), so that no message-passing layer
  ever sees them;
* optional per-interaction attributes read from MMRec files (``rating``,
  ``timestamp``) sit on the same store, aligned with their split's edges:
  ``rating`` / ``valid_rating`` / ``test_rating`` (see :func:`split_edge_attr`);
* graphs derived from the data (modality kNN, co-occurrence) are further edge
  types such as ``('item', 'similar_image', 'item')`` with ``edge_weight``.

Everything in the package reads and writes this layout through the helpers
below, so a change of convention happens in one place.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

USER = "user"
ITEM = "item"
INTERACTS = (USER, "interacts", ITEM)
REV_INTERACTS = (ITEM, "rev_interacts", USER)
FEATURE_PREFIX = "x_"
SPLITS = ("train", "valid", "test")


def feature_key(modality: str) -> str:
    """Item attribute name of a modality: ``'image'`` -> ``'x_image'``."""
    return FEATURE_PREFIX + modality


def similar_edge_type(modality: str) -> tuple[str, str, str]:
    """Edge type of a modality's item-item kNN graph."""
    return (ITEM, f"similar_{modality}", ITEM)


def num_users(data: HeteroData) -> int:
    return int(data[USER].num_nodes)


def num_items(data: HeteroData) -> int:
    return int(data[ITEM].num_nodes)


def modality_names(data: HeteroData) -> list[str]:
    """Names of the item modalities stored in ``data`` (sorted)."""
    return sorted(k[len(FEATURE_PREFIX):] for k in data[ITEM].keys()
                  if k.startswith(FEATURE_PREFIX))


def modality_features(data: HeteroData) -> dict[str, Tensor]:
    """``{modality: [n_items, dim] float tensor}``."""
    return {m: data[ITEM][feature_key(m)] for m in modality_names(data)}


def modality_shapes(data: HeteroData) -> dict[str, list[int]]:
    """``{modality: [n_items, dim]}`` without building lazily generated features."""
    store = data[ITEM]
    out = {}
    for m in modality_names(data):
        value = store._mapping[feature_key(m)]
        out[m] = list(getattr(value, "shape"))
    return out


def split_edge_index(data: HeteroData, split: str) -> Tensor:
    """``[2, E]`` user/item ids of ``split`` in ``('train', 'valid', 'test')``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    store = data[INTERACTS]
    key = "edge_index" if split == "train" else f"{split}_edge_index"
    if key not in store:
        raise KeyError(f"the data has no {split!r} interactions ({INTERACTS}.{key})")
    return store[key]


def split_attr_key(split: str, name: str) -> str:
    """Key of a per-interaction attribute of ``split`` on the :data:`INTERACTS` store.

    Training attributes are stored under ``name`` (aligned with ``edge_index``),
    held-out ones under ``f"{split}_{name}"`` (aligned with
    ``f"{split}_edge_index"``), e.g. ``rating`` / ``valid_rating`` /
    ``test_rating``.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return name if split == "train" else f"{split}_{name}"


def split_edge_attr(data: HeteroData, split: str, name: str) -> Tensor | None:
    """Per-interaction attribute ``name`` (e.g. ``'rating'``) of ``split``, or
    ``None`` when absent or not aligned with the split's edges."""
    store = data[INTERACTS]
    key = split_attr_key(split, name)
    if key not in store:
        return None
    value = store[key]
    try:
        e = split_edge_index(data, split)
    except KeyError:
        return None
    if not isinstance(value, Tensor) or value.dim() != 1 or value.numel() != e.size(1):
        return None
    return value


def _as_tensor(a, dtype) -> Tensor:
    if isinstance(a, Tensor):
        return a.to(dtype)
    return torch.as_tensor(np.asarray(a), dtype=dtype)


def build_hetero(num_users: int, num_items: int, train: Tensor | np.ndarray,
                 valid: Tensor | np.ndarray | None = None,
                 test: Tensor | np.ndarray | None = None,
                 features: Mapping[str, Tensor | np.ndarray] | None = None,
                 name: str | None = None) -> HeteroData:
    r"""Assemble the project's :class:`HeteroData` from already-validated parts.

    Args:
        num_users, num_items: node counts.
        train, valid, test: ``[2, E]`` integer arrays (user row, item row).
        features: ``{modality: [num_items, dim]}`` arrays, cast to float32.
        name: optional dataset name stored as ``data.name``.

    Loaders validate their inputs (see :mod:`mmgraph.data.validate`) before
    calling this; it only checks shapes.
    """
    data = HeteroData()
    data[USER].num_nodes = int(num_users)
    data[ITEM].num_nodes = int(num_items)
    tr = _as_tensor(train, torch.long).contiguous()
    if tr.dim() != 2 or tr.size(0) != 2:
        raise ValueError(f"train edges must have shape [2, E], got {tuple(tr.shape)}")
    data[INTERACTS].edge_index = tr
    data[REV_INTERACTS].edge_index = tr.flip(0).contiguous()
    for split, e in (("valid", valid), ("test", test)):
        if e is not None:
            e = _as_tensor(e, torch.long).contiguous()
            if e.dim() != 2 or e.size(0) != 2:
                raise ValueError(f"{split} edges must have shape [2, E], got {tuple(e.shape)}")
            data[INTERACTS][f"{split}_edge_index"] = e
    for m, f in (features or {}).items():
        f = _as_tensor(f, torch.float32).contiguous()
        if f.dim() != 2 or f.size(0) != num_items:
            raise ValueError(f"feature {m!r} must have shape [num_items={num_items}, dim], "
                             f"got {tuple(f.shape)}")
        data[ITEM][feature_key(m)] = f
    if name is not None:
        data.name = name
    return data
