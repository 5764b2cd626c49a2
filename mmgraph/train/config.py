"""Typed configuration: the trainer's dataclass and dataclass <-> CLI helpers."""
from __future__ import annotations

import argparse
import collections.abc
import dataclasses
import inspect
import json
import math
import re
import sys
import types
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
    """Training settings. Defaults are the MMRec toolbox's protocol; a model's
    published settings that differ are its ``train_defaults``.

    Attributes:
        epochs: maximum number of epochs (MMRec: 1000).
        batch_size: interactions per batch (2048).
        lr: learning rate (1e-3).
        lr_decay, lr_decay_every: the learning rate at epoch ``e`` is
            ``lr * lr_decay ** (e / lr_decay_every)``. The default is MMRec's
            constant rate (1); MambaRec, LATTICE and MGCN publish "x0.96 every
            50 epochs" and set it in their ``train_defaults``.
        optimizer: ``'adam'`` or ``'adamw'``.
        weight_decay: weight decay of the optimiser (0; decoupled for ``'adamw'``).
        num_neg: negatives per positive for models that use negatives.
        patience: early stopping after this many evaluations without an
            improvement of ``valid_metric`` (20; MambaRec uses 10).
        valid_metric: model-selection metric on the validation split,
            ``<metric>@K`` with metric ``recall``, ``ndcg``, ``precision`` or
            ``map`` and ``K`` one of ``ks``.
        ks: cut-offs reported by the evaluator.
        eval_every: evaluate every this many epochs.
        checkpoint_every: write ``checkpoint.pt`` every this many epochs (1)
            and at the last epoch. ``metrics.jsonl`` (every epoch) and
            ``best_model.pt`` (on every improvement) are written regardless;
            an interrupted run resumes from the newest checkpoint, repeating
            the epochs after it (to the same result on CPU). More
            than 1 saves the write (model, optimizer state, best weights)
            where it is a large share of an epoch: small data, large
            trainable feature tables.
        eval_batch_size: users per evaluation batch.
        seed: fixes every random choice on CPU (999).
        device: where to train: ``'cpu'``, ``'cuda'`` or ``'cuda:N'`` (the N-th GPU).
        out_dir: the run folder, where ``run.json``, ``metrics.jsonl``,
            checkpoints and results go (``None``: keep everything in memory;
            see :mod:`mmgraph.train.runfolder`). A folder that already
            holds a run is refused unless ``resume`` or ``overwrite``.
        resume: continue the run in ``out_dir`` from its checkpoint (the
            previous generation if the newest is damaged).
        overwrite: replace the run in ``out_dir`` (its files are removed).
        progress: show progress bars (epochs; the steps of epochs longer
            than a few seconds).
        threads: torch intra-op CPU threads while training
            (:func:`torch.set_num_threads`; the CLI sets it before the data
            loads, so graph building uses it too). ``None`` leaves torch's
            setting: one thread per core, or ``OMP_NUM_THREADS``, which
            ``torchrun`` (``mmgraph train --nproc P``) sets to 1 per process
            when unset. With ``--nproc P`` every process uses ``threads``
            threads: keep ``P * threads`` at most the number of cores.
        amp: mixed precision for the forward pass and the loss: ``None``
            (float32), ``'bf16'`` (bfloat16 autocast; CUDA or CPU) or
            ``'fp16'`` (float16 autocast with gradient scaling; CUDA only).
            Sparse propagation and evaluation stay float32.
        tune_malloc: opt-in (``False``): on CPU, keep freed memory in the
            process during :meth:`~mmgraph.train.Trainer.fit` (glibc
            ``mallopt``, a process-wide setting, restored when fit returns;
            see :mod:`mmgraph.train.allocator`): about 1.4x faster steps for
            models with large per-step buffers (trainable feature tables,
            contrastive losses against all users), identical results, a
            7-15% higher resident set, and other threads of the process
            allocate under the same setting while it is on.
    """
    epochs: int = 1000
    batch_size: int = 2048
    lr: float = 1e-3
    lr_decay: float = 1.0
    lr_decay_every: int = 50
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = 0.0
    num_neg: int = 1
    patience: int = 20
    valid_metric: str = "recall@20"
    ks: tuple[int, ...] = (10, 20)
    eval_every: int = 1
    checkpoint_every: int = 1
    eval_batch_size: int = 4096
    seed: int = 999
    device: str = "cpu"
    out_dir: str | None = None
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    threads: int | None = None
    amp: Literal["bf16", "fp16"] | None = None
    tune_malloc: bool = False

    def __post_init__(self):
        """Check every value (before any data is loaded); errors name the allowed values."""
        self.ks = tuple(int(k) for k in self.ks)
        for name, allowed in (("optimizer", ("adam", "adamw")), ("amp", (None, "bf16", "fp16"))):
            if getattr(self, name) not in allowed:
                *head, last = map(repr, allowed)
                raise ValueError(f"{name} must be {', '.join(head)} or {last}, "
                                 f"got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "lr_decay_every", "eval_every", "checkpoint_every",
                     "eval_batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 (or None: torch's default), got {self.threads}")
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
                     "eval_batch_size", "tune_malloc", "threads", "checkpoint_every")


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


_UNION_TYPES = (typing.Union, getattr(types, "UnionType", typing.Union))
_MAPPINGS = (dict, collections.abc.Mapping, typing.Mapping)


def _members(tp: Any) -> tuple[list[Any], bool]:
    """The non-``None`` members of a (possibly optional) union, and whether ``None`` is one."""
    if typing.get_origin(tp) in _UNION_TYPES:
        args = typing.get_args(tp)
        return [a for a in args if a is not type(None)], type(None) in args
    return [tp], False


def json_value(text: str, kind: type, label: str):
    """``json.loads(text)``, which must be a ``kind`` (``dict`` or ``list``); errors
    start with ``label`` (e.g. the option) and quote the text."""
    noun = "object" if kind is dict else "list"
    try:
        obj = json.loads(text)
    except ValueError as err:
        raise ValueError(f"{label}: invalid JSON {noun} {text!r} ({err})") from None
    if not isinstance(obj, kind):
        raise ValueError(f"{label}: expected a JSON {noun}, got {text!r}")
    return obj


def _parse_value(text: str, tp: Any, name: str) -> Any:
    """Read one CLI value as type ``tp`` (see :func:`type_help` for the forms)."""
    members, optional = _members(tp)
    if optional and text.strip().lower() in ("none", "null", ""):
        return None
    if len(members) > 1:                  # e.g. int | Mapping[str, int]: the first that reads
        for m in members:
            try:
                return _parse_value(text, m, name)
            except ValueError:
                continue
        raise ValueError(f"--{name}: cannot read {text!r} as {type_help(tp)[1]}")
    tp = members[0]
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        if text in args:
            return text
        raise ValueError(f"--{name}: expected one of {', '.join(map(str, args))}, got {text!r}")
    if origin in _MAPPINGS or tp in _MAPPINGS:
        value_tp = args[1] if len(args) == 2 else str
        text = text.strip()
        if text.startswith("{"):
            obj = json_value(text, dict, f"--{name}")
            return {str(k): _parse_value("none" if v is None else str(v), value_tp, name)
                    for k, v in obj.items()}
        out = {}
        for pair in (t for t in text.split(",") if t.strip()):
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"--{name}: expected KEY=VALUE pairs (e.g. image=1,text=2) or a "
                                 f"JSON object, got {text!r}")
            out[key.strip()] = _parse_value(value.strip(), value_tp, name)
        return out
    if origin in (tuple, list):
        inner = args[0] if args else str
        text = text.strip()
        if text.startswith("["):
            items = [str(v) for v in json_value(text, list, f"--{name}")]
        else:
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


def type_help(tp: Any) -> tuple[str, str]:
    """``(metavar, allowed values)`` of a field type for ``--help``: what
    :func:`_parse_value` reads (``none`` for optional fields; lists as
    ``a,b`` or JSON; mappings as ``key=value`` pairs or a JSON object)."""
    members, optional = _members(tp)
    metas, texts = [], []
    for m in members:
        origin, args = typing.get_origin(m), typing.get_args(m)
        if origin is Literal:
            metas.append("{" + ",".join(map(str, args)) + "}")
            texts.append("one of " + ", ".join(map(str, args)))
        elif origin in _MAPPINGS or m in _MAPPINGS:
            v_meta, v_text = type_help(args[1]) if len(args) == 2 else ("TEXT", "text")
            metas.append(f"KEY={v_meta}[,...]")
            texts.append(f"KEY=VALUE pairs (value: {v_text}) or a JSON object")
        elif origin in (tuple, list):
            i_meta, i_text = type_help(args[0] if args else str)
            plural = {"an integer": "integers", "a number": "numbers", "text": "names"}
            metas.append(f"{i_meta}[,{i_meta}...]")
            texts.append(f"comma-separated {plural.get(i_text, i_text)} (or a JSON list)")
        elif m is bool:
            metas.append("{true,false}")
            texts.append("true or false (the bare flag means true)")
        elif m is int:
            metas.append("N")
            texts.append("an integer")
        elif m is float:
            metas.append("X")
            texts.append("a number")
        else:
            metas.append("TEXT")
            texts.append("text")
    if optional:
        texts.append("none")
    meta = "|".join(metas)
    text = texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " or " + texts[-1]
    return meta, text


def format_value(value: Any) -> str:
    """A config value as the CLI writes and reads it (``--help`` defaults)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return ",".join(format_value(v) for v in value)
    if isinstance(value, collections.abc.Mapping):
        return ",".join(f"{k}={format_value(v)}" for k, v in value.items())
    return str(value)


def _attribute_entries(doc: str | None) -> dict[str, str]:
    """``{field: text}`` of a Google-style ``Attributes:`` section (an entry
    ``a, b: text`` documents both)."""
    out: dict[str, str] = {}
    if not doc:
        return out
    lines = inspect.cleandoc(doc).splitlines()
    start = next((k for k, line in enumerate(lines) if line.strip() == "Attributes:"), None)
    if start is None:
        return out
    base = len(lines[start]) - len(lines[start].lstrip())
    names: list[str] = []
    indent = None
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if depth <= base:
            break
        indent = depth if indent is None else indent
        m = re.match(r"(\w+(?:\s*,\s*\w+)*)\s*:\s+(.*)", line.strip())
        if depth == indent and m:
            names = [n.strip() for n in m.group(1).split(",")]
            for n in names:
                out[n] = m.group(2)
        else:
            for n in names:
                out[n] += " " + line.strip()
    return out


def _one_line(text: str) -> str:
    """The first sentence of a docstring entry, without reST markup."""
    def role(m):   # :func:`~a.b.c` -> c, :func:`a.b.c` -> a.b.c, :class:`text <a.b>` -> text
        target = m.group(2).strip()
        return target.split(".")[-1] if m.group(1) and not m.group(3) else target
    text = re.sub(r":\w+:`(~?)([^`<]*)(<[^>]*>)?`", role, text)
    text = " ".join(text.replace("``", "").split())
    # the first ". " not followed by lowercase ("e.g. the") and not an ellipsis ("0.1 ... 1e-5")
    first = re.split(r"(?<=[^.]\.)\s+(?![a-z.])", text, maxsplit=1)[0]
    return first.rstrip(".")


def field_descriptions(cls) -> dict[str, str]:
    """One-line description of each field of a config dataclass, taken from
    the ``Attributes:`` sections of its docstring and of its bases' (the
    class's own entry first): the text is written once, in the docstring."""
    out: dict[str, str] = {}
    for klass in cls.__mro__:
        for name, text in _attribute_entries(klass.__dict__.get("__doc__")).items():
            out.setdefault(name, _one_line(text))
    return out


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls, title: str,
                            defaults: dict[str, Any] | None = None,
                            skip: tuple[str, ...] = ()) -> None:
    """Add one ``--field-name`` option per dataclass field (values parsed by type).

    Args:
        parser: the parser to extend (a new argument group ``title``).
        cls: the config dataclass.
        title: the group's title in ``--help``.
        defaults: values shown as defaults instead of the class's (e.g. a
            model's ``train_defaults``: help shows what the run will use).
        skip: fields not to add.

    Each option's help is the field's one-line description
    (:func:`field_descriptions`), its allowed values (:func:`type_help`,
    plus the range of :data:`~mmgraph.models.base.FIELD_RANGES` for model
    configs) and its default.
    """
    from ..models.base import ModelConfig, field_range
    group = parser.add_argument_group(title)
    hints = _field_types(cls)
    docs = field_descriptions(cls)
    defaults = defaults or {}
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name.startswith("_"):
            continue
        if f.name in defaults:
            default = defaults[f.name]
        else:
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        tp = hints[f.name]
        metavar, allowed = type_help(tp)
        rng = field_range(f.name) if issubclass(cls, ModelConfig) and tp in (int, float) else None
        if rng is not None:
            allowed += f" {rng}"
        desc = docs.get(f.name, f.name.replace("_", " "))
        flag = {"nargs": "?", "const": "true"} if tp is bool else {}
        group.add_argument("--" + f.name.replace("_", "-"), dest=f"{cls.__name__}.{f.name}",
                           metavar=metavar, default=None,
                           help=f"{desc}. Values: {allowed}. Default: {format_value(default)}"
                           .replace("%", "%%"), **flag)
    for old, new in getattr(cls, "renamed", {}).items():     # old names: hidden, with a note
        if new in {f.name for f in dataclasses.fields(cls)} and new not in skip:
            flag = {"nargs": "?", "const": "true"} if hints[new] is bool else {}
            group.add_argument("--" + old.replace("_", "-"), dest=f"{cls.__name__}.{new}",
                               default=None, help=argparse.SUPPRESS, action=_RenamedOption,
                               **flag)


class _RenamedOption(argparse.Action):
    """An option's old name: stores under the new one and says so on stderr."""
    def __call__(self, parser, namespace, values, option_string=None):
        new = "--" + self.dest.split(".", 1)[1].replace("_", "-")
        print(f"{parser.prog}: {option_string} is now {new} (the old name goes in the next "
              f"release)", file=sys.stderr)
        setattr(namespace, self.dest, values)


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
    """``dataclasses.replace`` with an error naming unknown fields (a model
    option's old name, see ``ModelConfig.renamed``, is taken with a warning)."""
    if getattr(type(config), "renamed", None):
        from ..models.base import upgrade_options
        overrides = upgrade_options(type(config), overrides, warn=True)
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown option(s) for {type(config).__name__}: {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(names))}")
    return dataclasses.replace(config, **overrides)
