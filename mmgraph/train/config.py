"""Typed configuration: the trainer's dataclass and dataclass <-> CLI helpers."""
from __future__ import annotations

import argparse
import dataclasses
import math
import re
import typing
from dataclasses import dataclass
from typing import Any, Literal

import torch

from ..evaluation import METRICS

#: Values of :attr:`TrainConfig.device`: the CPU or a CUDA GPU (``'cuda:1'``: the second).
DEVICES = ("cpu", "cuda", "cuda:N")


def parse_device(device: str) -> torch.device:
    """``device`` as a :class:`torch.device`; ``ValueError`` (naming the allowed
    values, :data:`DEVICES`) for anything but ``'cpu'``, ``'cuda'`` or ``'cuda:N'``."""
    if not isinstance(device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", device.strip()):
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    return torch.device(device.strip())


def check_device(device: str) -> torch.device:
    """:func:`parse_device`, and for a CUDA device that this machine has it.

    Raises:
        ValueError: an unknown device, CUDA without a usable GPU, or a GPU
            index beyond the visible ones.
    """
    dev = parse_device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if torch.version.cuda is None
                   else "no GPU is visible")
            raise ValueError(f"device {device!r} requested but CUDA is not available ({why}); "
                             f"use device 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} requested but this machine has "
                             f"{torch.cuda.device_count()} GPU(s) (cuda:0 .. "
                             f"cuda:{torch.cuda.device_count() - 1})")
    return dev


@dataclass
class TrainConfig:
    """Training settings. Defaults are MMRec's protocol (MISSION.md section 2).

    Attributes:
        epochs: maximum number of epochs (MMRec: 1000).
        batch_size: interactions per batch (2048).
        lr: learning rate (1e-3).
        lr_decay, lr_decay_every: the learning rate at epoch ``e`` is
            ``lr * lr_decay ** (e / lr_decay_every)`` (MMRec's smooth form of
            "x0.96 every 50 epochs", MambaRec's setting). MMRec's baselines use
            a constant rate: their models set ``lr_decay=1`` in ``train_defaults``.
        optimizer: ``'adam'`` or ``'adamw'``; ``weight_decay`` for either.
        num_neg: negatives per positive for models that use negatives.
        patience: early stopping after this many evaluations without an
            improvement of ``valid_metric`` (20; MambaRec uses 10).
        valid_metric: model-selection metric on the validation split.
        ks: cut-offs reported by the evaluator.
        eval_every: evaluate every this many epochs.
        eval_batch_size: users per evaluation batch.
        seed: fixes every random choice on CPU (999).
        device: ``'cpu'``, ``'cuda'``, ``'cuda:1'``...
        out_dir: the run folder, where ``run.json``, ``metrics.jsonl``,
            checkpoints and results go (``None``: keep everything in memory;
            see :mod:`mmgraph.train.runfolder`). A folder that already
            holds a run is refused unless ``resume`` or ``overwrite``.
        resume: continue the run in ``out_dir`` from its checkpoint (the
            previous generation if the newest is damaged).
        overwrite: replace the run in ``out_dir`` (its files are removed).
        progress: show a tqdm progress bar.
        amp: mixed precision for the forward pass and the loss: ``None``
            (float32), ``'bf16'`` (bfloat16 autocast; CUDA or CPU) or
            ``'fp16'`` (float16 autocast with gradient scaling; CUDA only).
            Sparse propagation and evaluation stay float32.
        tune_malloc: on CPU, keep freed memory in the process during
            :meth:`~mmgraph.train.Trainer.fit` (glibc ``mallopt``; see
            :mod:`mmgraph.train.allocator`): about 1.4x faster steps for
            models with large per-step buffers (trainable feature tables,
            contrastive losses against all users), identical results, a
            somewhat higher resident set. ``False`` leaves the allocator alone.
    """
    epochs: int = 1000
    batch_size: int = 2048
    lr: float = 1e-3
    lr_decay: float = 0.96
    lr_decay_every: int = 50
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = 0.0
    num_neg: int = 1
    patience: int = 20
    valid_metric: str = "recall@20"
    ks: tuple[int, ...] = (10, 20)
    eval_every: int = 1
    eval_batch_size: int = 4096
    seed: int = 999
    device: str = "cpu"
    out_dir: str | None = None
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    amp: Literal["bf16", "fp16"] | None = None
    tune_malloc: bool = True

    def __post_init__(self):
        """Check every value (before any data is loaded); errors name the allowed values."""
        self.ks = tuple(int(k) for k in self.ks)
        for name, allowed in (("optimizer", ("adam", "adamw")), ("amp", (None, "bf16", "fp16"))):
            if getattr(self, name) not in allowed:
                *head, last = map(repr, allowed)
                raise ValueError(f"{name} must be {', '.join(head)} or {last}, "
                                 f"got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "lr_decay_every", "eval_every", "eval_batch_size",
                     "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_neg < 0:
            raise ValueError(f"num_neg must be >= 0, got {self.num_neg}")
        for name in ("lr", "weight_decay"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")
        if not (math.isfinite(self.lr_decay) and self.lr_decay > 0):
            raise ValueError(f"lr_decay must be a finite number > 0 (the rate is multiplied by "
                             f"lr_decay every lr_decay_every epochs; 1 keeps it constant), "
                             f"got {self.lr_decay}")
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks must be positive cut-offs, got {self.ks}")
        metric, _, k = self.valid_metric.partition("@")
        if metric not in METRICS or not k.isdigit() or int(k) not in self.ks:
            raise ValueError(f"valid_metric must be '<metric>@K' with metric one of "
                             f"{', '.join(METRICS)} and K one of ks={','.join(map(str, self.ks))}, "
                             f"got {self.valid_metric!r}")
        parse_device(self.device)
        if self.resume and self.overwrite:
            raise ValueError("resume (continue the run in out_dir) and overwrite (replace it) "
                             "exclude each other")


#: Fields that may change between a run and its resumption.
RESUMABLE_CHANGES = ("epochs", "device", "out_dir", "resume", "overwrite", "progress",
                     "eval_batch_size", "tune_malloc")


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _parse_value(text: str, tp: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if text.lower() in ("none", "null", ""):
            return None
        inner = [a for a in args if a is not type(None)]
        return _parse_value(text, inner[0], name)
    if origin is Literal:
        if text in args:
            return text
        raise ValueError(f"--{name}: expected one of {', '.join(map(str, args))}, got {text!r}")
    if origin in (tuple, list):
        inner = args[0] if args else str
        items = [t for t in text.replace(" ", "").split(",") if t]
        return tuple(_parse_value(t, inner, name) for t in items)
    if tp is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"--{name}: expected true/false, got {text!r}")
    try:
        return tp(text)
    except (TypeError, ValueError):
        raise ValueError(f"--{name}: cannot read {text!r} as {getattr(tp, '__name__', tp)}") from None


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls, title: str,
                            skip: tuple[str, ...] = ()) -> None:
    """Add one ``--field-name`` option per dataclass field (values parsed by type)."""
    group = parser.add_argument_group(title)
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name.startswith("_"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        flag = {"nargs": "?", "const": "true"} if hints[f.name] is bool else {}
        group.add_argument("--" + f.name.replace("_", "-"), dest=f"{cls.__name__}.{f.name}",
                           metavar=getattr(hints[f.name], "__name__", "VALUE").upper(),
                           default=None, help=f"default: {shown}", **flag)


def dataclass_overrides(args: argparse.Namespace, cls) -> dict[str, Any]:
    """The options of ``cls`` the user actually gave, parsed to their field types."""
    hints = _field_types(cls)
    out = {}
    for f in dataclasses.fields(cls):
        raw = getattr(args, f"{cls.__name__}.{f.name}", None)
        if raw is not None:
            out[f.name] = _parse_value(raw, hints[f.name], f.name.replace("_", "-"))
    return out


def replace_checked(config, **overrides):
    """``dataclasses.replace`` with an error naming unknown fields."""
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown option(s) for {type(config).__name__}: {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(names))}")
    return dataclasses.replace(config, **overrides)
