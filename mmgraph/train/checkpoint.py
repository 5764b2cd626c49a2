"""Atomic checkpoints and the identity checks that guard them."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch_geometric.data import HeteroData

from ..data.hetero import ITEM, feature_key, modality_shapes, num_items, num_users, split_edge_index
from ..data.fingerprint import tensor_digest
from ..data.lazy import feature_recipe


def dataset_signature(data: HeteroData) -> dict[str, Any]:
    """What identifies a dataset: sizes, a SHA-1 of the training edges and,
    per item modality, the feature matrix's shape, dtype and SHA-1 (a
    streaming hash, about 1 s per GB, computed once per tensor content), or,
    for generated features, their recipe (:func:`~mmgraph.data.lazy.feature_recipe`:
    nothing is built or hashed)."""
    train = split_edge_index(data, "train").detach().cpu().contiguous()
    digest = hashlib.sha1(train.numpy().tobytes()).hexdigest()
    features = {}
    for m, shape in modality_shapes(data).items():
        recipe = feature_recipe(data, m)
        if recipe is not None:
            features[m] = {"shape": list(shape), "dtype": "float32", "recipe": recipe}
        else:
            x = data[ITEM][feature_key(m)]
            features[m] = {"shape": list(x.shape), "dtype": str(x.dtype).removeprefix("torch."),
                           "sha1": tensor_digest(x)}
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


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], binary: bool = True,
                 previous: str | os.PathLike | None = None) -> None:
    """Write ``path`` through a temporary file in the same folder, then rename.

    ``write(f)`` writes the content to the open temporary file, which is
    flushed and fsynced before it replaces ``path``; a crash, Ctrl-C or
    ``kill -9`` during the write leaves the old ``path`` intact (and at most
    an orphan ``<name>.<random>.tmp``, which :class:`~mmgraph.train.RunFolder`
    removes at the next start).

    Args:
        path: the file to write.
        write: called with the open temporary file.
        binary: open it in binary (default) or text (UTF-8) mode.
        previous: keep the old ``path`` (if any) under this name, renamed
            just before the new one takes its place (two generations).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the renames in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: str | os.PathLike,
                previous: str | os.PathLike | None = None) -> None:
    """``torch.save`` through :func:`atomic_write` (``previous``: keep the old file
    under that name)."""
    atomic_write(path, lambda f: torch.save(obj, f), previous=previous)


class CheckpointError(ValueError):
    """A checkpoint file cannot be read (empty, truncated, corrupt, not ours);
    the message names the file and the problem."""


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read an mmgraph checkpoint (on the CPU).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is empty, truncated or corrupt, or is not
            an mmgraph checkpoint; the message names it and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): its write was cut off")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any failure to unpickle is a damaged file
        detail = (str(err).strip().splitlines() or [""])[0].split(". ")[0].rstrip(".")
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({size} bytes; "
                              f"{type(err).__name__}{': ' + detail if detail else ''})") from None
    if not isinstance(ckpt, dict) or "model_key" not in ckpt:
        raise CheckpointError(f"{path} is not an mmgraph checkpoint")
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
    from ..models.base import MODELS, upgrade_options
    cls = MODELS.get(saved["model"])
    if cls is not None:      # a checkpoint written before an option was renamed
        saved = {**saved, "config": upgrade_options(cls.config_class, saved["config"])}
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
