"""Atomic checkpoints and the identity checks that guard them."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import HeteroData

from ..data.hetero import num_items, num_users, split_edge_index


def dataset_signature(data: HeteroData) -> dict[str, Any]:
    """Sizes plus a SHA-1 of the training edges: identifies a dataset cheaply."""
    train = split_edge_index(data, "train").detach().cpu().contiguous()
    digest = hashlib.sha1(train.numpy().tobytes()).hexdigest()
    return {"num_users": num_users(data), "num_items": num_items(data),
            "num_train": int(train.size(1)), "train_sha1": digest}


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
    if ckpt.get("data_signature") != data_sig:
        raise ValueError(f"checkpoint {path} was trained on another dataset "
                         f"(saved {ckpt.get('data_signature')}, given {data_sig})")
