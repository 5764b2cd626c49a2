"""Typed configuration: the trainer's dataclass and dataclass <-> CLI helpers."""
from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass
from typing import Any


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
        out_dir: where checkpoints, ``metrics.jsonl`` and results go
            (``None``: keep everything in memory).
        resume: continue from ``out_dir/checkpoint.pt``.
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
    optimizer: str = "adam"
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
    progress: bool = True
    amp: str | None = None
    tune_malloc: bool = True

    def __post_init__(self):
        self.ks = tuple(int(k) for k in self.ks)
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        for name in ("epochs", "batch_size", "lr_decay_every", "eval_every", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_neg < 0 or self.patience < 1:
            raise ValueError("num_neg must be >= 0 and patience >= 1")
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks must be positive cut-offs, got {self.ks}")
        if self.amp is not None and self.amp not in ("bf16", "fp16"):
            raise ValueError(f"amp must be None, 'bf16' or 'fp16', got {self.amp!r}")
        metric, _, k = self.valid_metric.partition("@")
        if not k.isdigit() or int(k) not in self.ks:
            raise ValueError(f"valid_metric {self.valid_metric!r} must be '<metric>@K' with K in ks={self.ks}")


#: Fields that may change between a run and its resumption.
RESUMABLE_CHANGES = ("epochs", "device", "out_dir", "resume", "progress", "eval_batch_size",
                     "tune_malloc")


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
        group.add_argument("--" + f.name.replace("_", "-"), dest=f"{cls.__name__}.{f.name}",
                           metavar=getattr(hints[f.name], "__name__", "VALUE").upper(),
                           default=None, help=f"default: {shown}")


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
