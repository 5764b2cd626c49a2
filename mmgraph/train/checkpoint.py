"""Atomic checkpoints and the identity checks that guard them."""
from __future__ import annotations

import hashlib
import os
import tempfile
import weakref
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import modality_features, num_items, num_users, split_edge_index

# id(feature tensor) -> (its version counter, digest): each content is hashed once;
# the entry goes when the tensor does
_DIGESTS: dict[int, tuple[int, str]] = {}


def _sha1(t: Tensor) -> str:
    key = id(t)
    cached = _DIGESTS.get(key)
    if cached is not None and cached[0] == t._version:
        return cached[1]
    digest = hashlib.sha1(t.detach().cpu().contiguous().numpy().data).hexdigest()
    if cached is None:
        weakref.finalize(t, _DIGESTS.pop, key, None)
    _DIGESTS[key] = (t._version, digest)
    return digest


def dataset_signature(data: HeteroData) -> dict[str, Any]:
    """What identifies a dataset: sizes, a SHA-1 of the training edges and,
    per item modality, the feature matrix's shape, dtype and SHA-1 (a
    streaming hash, about 1 s per GB, computed once per tensor content)."""
    train = split_edge_index(data, "train").detach().cpu().contiguous()
    digest = hashlib.sha1(train.numpy().tobytes()).hexdigest()
    features = {m: {"shape": list(x.shape), "dtype": str(x.dtype).removeprefix("torch."),
                    "sha1": _sha1(x)} for m, x in modality_features(data).items()}
    return {"num_users": num_users(data), "num_items": num_items(data),
            "num_train": int(train.size(1)), "train_sha1": digest, "features": features}


def signature_mismatch(saved: dict[str, Any] | None, given: dict[str, Any]) -> list[str]:
    """The parts of ``given`` that differ from ``saved`` (a
    :func:`dataset_signature`), e.g. ``['features.image']``; a part the saved
    signature predates (no ``features``) is not compared."""
    if not isinstance(saved, dict):
        return ["signature"]
    out = [k for k in given if k != "features" and saved.get(k) != given[k]]
    if "features" in saved:
        names = sorted(set(saved["features"]) | set(given["features"]))
        out += [f"features.{m}" for m in names
                if saved["features"].get(m) != given["features"].get(m)]
    return out


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename.

    A crash or Ctrl-C during the write leaves the previous file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or "model_key" not in ckpt:
        raise ValueError(f"{path} is not an mmgraph checkpoint")
    return ckpt


def check_compatible(ckpt: dict[str, Any], model_key: dict[str, Any],
                     data_sig: dict[str, Any], path: str | os.PathLike,
                     config_defaults: dict[str, Any] | None = None) -> None:
    """Raise a clear error if a checkpoint belongs to another model or dataset.

    ``config_defaults`` (the model config class's defaults): a config field
    that the checkpoint does not have (added to the class after it was
    written) is accepted when the model uses that field's default.
    """
    saved = ckpt["model_key"]
    if saved["model"] != model_key["model"]:
        raise ValueError(f"checkpoint {path} is for model {saved['model']!r}, "
                         f"not {model_key['model']!r}")
    defaults = config_defaults or {}
    current = {k: v for k, v in model_key["config"].items()
               if k in saved["config"] or k not in defaults or v != defaults[k]}
    if saved["config"] != current:
        diff = sorted(k for k in set(saved["config"]) | set(current)
                      if saved["config"].get(k) != current.get(k))
        raise ValueError(f"checkpoint {path} was trained with another {saved['model']} config "
                         f"(differs in: {', '.join(diff)})")
    diff = signature_mismatch(ckpt.get("data_signature"), data_sig)
    if diff:
        raise ValueError(f"checkpoint {path} was trained on another dataset (differs in: "
                         f"{', '.join(diff)})")
