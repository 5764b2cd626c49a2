r"""The contract every recommender in mmgraph follows, and the model registry.

A model is a :class:`torch.nn.Module` built from the project's
:class:`~torch_geometric.data.HeteroData` and a typed config dataclass::

    model = LightGCN(data, LightGCNConfig(num_layers=4))
    out = model()                       # Embeddings: user [U, d], item [I, d], extra
    terms = model.loss(batch, out)      # {'bpr': ..., 'reg': ...}; trainer sums them
    scores = model.score(users, out)    # [B, I]

One trainer (:mod:`mmgraph.train`) and one evaluator
(:mod:`mmgraph.evaluation`) serve every subclass, including models that users
write themselves.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import functools
import math
import types
import typing
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import modality_features, modality_names, num_items, num_users
from ..losses import bpr_loss, l2_reg


@dataclass
class Batch:
    """One training batch of interactions.

    Attributes:
        users: ``[B]`` user ids.
        pos_items: ``[B]`` positive item ids (training interactions).
        neg_items: ``[B]`` or ``[B, n_neg]`` sampled negatives, or ``None`` for
            models that do not use negatives (``uses_negatives = False``).
    """
    users: Tensor
    pos_items: Tensor
    neg_items: Tensor | None = None

    def to(self, device) -> "Batch":
        return Batch(self.users.to(device), self.pos_items.to(device),
                     None if self.neg_items is None else self.neg_items.to(device))


@dataclass
class Embeddings:
    """Output of a model's forward pass.

    Attributes:
        user: ``[U, d]`` final user representations used for scoring.
        item: ``[I, d]`` final item representations used for scoring.
        extra: model-specific tensors the loss needs (layer-0 embeddings,
            modality views, ...).
    """
    user: Tensor
    item: Tensor
    extra: dict[str, Any] = field(default_factory=dict)


#: Ranges every model config's numeric fields obey, by field name: ``(patterns, range)``,
#: ``fnmatch`` patterns, the first matching row applies; bool and non-numeric fields
#: (and ``None``) are not checked, and every float must be finite. A config class's own
#: ``__post_init__`` states only what is specific to it; these run after it.
FIELD_RANGES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("num_*layers", "*_layers"), ">= 0"),
    (("*_dim", "*knn_k", "num_*", "rank"), ">= 1"),
    (("*_weight",), ">= 0"),
    (("dropout", "*_drop"), "in [0, 1]"),
    (("temperature", "*_temperature"), "> 0"),
)
_RANGE_TESTS = {">= 0": lambda v: v >= 0, ">= 1": lambda v: v >= 1, "> 0": lambda v: v > 0,
                "in [0, 1]": lambda v: 0 <= v <= 1}


def field_range(name: str) -> str | None:
    """The :data:`FIELD_RANGES` range (e.g. ``'>= 1'``) of a config field, or ``None``."""
    for patterns, rng in FIELD_RANGES:
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            return rng
    return None


@functools.lru_cache(maxsize=None)
def field_choices(config_class: type) -> dict[str, tuple]:
    """``{field: allowed values}`` of the fields typed ``Literal[...]`` (or
    ``Optional[Literal[...]]``, ``None`` then allowed too)."""
    out = {}
    for name, tp in typing.get_type_hints(config_class).items():
        members = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) \
            else (tp,)
        choices: list = []
        for m in members:
            if typing.get_origin(m) is typing.Literal:
                choices += typing.get_args(m)
            elif m is type(None):
                choices.append(None)
            else:
                choices = []
                break
        if choices and any(c is not None for c in choices):
            out[name] = tuple(choices)
    return out


def check_field_ranges(config: Any) -> None:
    """Raise a ``ValueError`` naming the first field of ``config`` outside its
    declared values: a ``Literal`` choice (:func:`field_choices`), or a numeric
    :data:`FIELD_RANGES` range (or a non-finite float)."""
    for name, choices in field_choices(type(config)).items():
        v = getattr(config, name)
        if v not in choices:
            *head, last = map(repr, choices)
            raise ValueError(f"{name} must be {', '.join(head) + ' or ' if head else ''}{last}, "
                             f"got {v!r}")
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{f.name} must be a finite number, got {v}")
        rng = field_range(f.name)
        if rng is not None and not _RANGE_TESTS[rng](v):
            raise ValueError(f"{f.name} must be {rng}, got {v}")


@dataclass
class ModelConfig:
    """Fields every model config shares. Subclasses add their own.

    Every numeric field is range-checked by name (:data:`FIELD_RANGES`)
    when a config is made, after the subclass's own ``__post_init__``.

    Attributes:
        embedding_dim: size ``d`` of the user and item embeddings.
        reg_weight: weight of the model's L2 regularisation term.
    """
    embedding_dim: int = 64
    reg_weight: float = 1e-4
    #: options renamed to the one vocabulary, ``{old name: new name}``: the old
    #: name still works (a ``DeprecationWarning``; the CLI says so) for one
    #: release, and run records written with it load (:func:`upgrade_options`)
    renamed: ClassVar[dict[str, str]] = {}

    def __post_init__(self):
        check_field_ranges(self)

    def __getattr__(self, name: str):
        # only reached when normal lookup fails: an old option name reads the new one
        new = type(self).renamed.get(name)
        if new is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        warnings.warn(f"{type(self).__name__}: option {name!r} is now {new!r} (the old name "
                      f"goes in the next release)", DeprecationWarning, stacklevel=2)
        return getattr(self, new)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__post_init__")
        if own is not None and not getattr(own, "_checks_field_ranges", False):
            @functools.wraps(own)
            def __post_init__(self):
                own(self)
                check_field_ranges(self)
            __post_init__._checks_field_ranges = True
            cls.__post_init__ = __post_init__


def upgrade_options(config_class: type, options: dict[str, Any], warn: bool = False
                    ) -> dict[str, Any]:
    """``options`` with the old names of ``config_class.renamed`` replaced by the
    new ones (run records, CLI and Python overrides). ``warn``: a
    ``DeprecationWarning`` per old name used.

    Raises:
        ValueError: an option given under both its old and its new name.
    """
    renamed = getattr(config_class, "renamed", {})
    if not renamed or not any(k in renamed for k in options):
        return dict(options)
    out = {}
    for key, value in options.items():
        new = renamed.get(key)
        if new is None:
            out.setdefault(key, value)
            continue
        if new in options:
            raise ValueError(f"{config_class.__name__}: {key!r} is the old name of {new!r}; "
                             f"give only {new!r}")
        if warn:
            warnings.warn(f"{config_class.__name__}: option {key!r} is now {new!r} (the old "
                          f"name goes in the next release)", DeprecationWarning, stacklevel=3)
        out[new] = value
    return out


def _accept_renamed_options(config_class: type) -> None:
    """Let ``config_class(old_name=...)`` work with a warning (see ``renamed``)."""
    init = config_class.__init__
    if not getattr(config_class, "renamed", None) or getattr(init, "_accepts_renamed", False):
        return

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        init(self, *args, **upgrade_options(config_class, kwargs, warn=True))
    __init__._accepts_renamed = True
    config_class.__init__ = __init__


class Recommender(torch.nn.Module):
    r"""Base class of every mmgraph model.

    Subclasses set ``name`` and ``config_class``, build their graphs once in
    ``__init__`` from ``data`` (through :mod:`mmgraph.graph`, never privately)
    and implement :meth:`forward` and :meth:`loss`.

    Class attributes:
        name: registry name used by the CLI.
        config_class: the model's config dataclass.
        uses_negatives: whether training batches carry sampled negatives.
    """
    name: ClassVar[str] = ""
    config_class: ClassVar[type] = ModelConfig
    uses_negatives: ClassVar[bool] = True
    #: Training settings in which the model's paper differs from the trainer's
    #: defaults (e.g. ``{'patience': 10}``); applied unless the user overrides.
    train_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, data: HeteroData, config: Any | None = None):
        super().__init__()
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise TypeError(f"{type(self).__name__} expects a {self.config_class.__name__}, "
                            f"got {type(self.config).__name__}")
        self.num_users = num_users(data)
        self.num_items = num_items(data)
        self._graphs: dict[str, Any] = {}

    def register_graph(self, name: str, graph: Any) -> None:
        """Keep a sparse graph (e.g. :class:`~mmgraph.graph.SparseAdj`) on the model.

        Registered graphs follow ``model.to(device)`` like buffers do, but are
        not part of the ``state_dict``: they are rebuilt from the data.
        """
        self._graphs[name] = graph

    def graph(self, name: str) -> Any:
        return self._graphs[name]

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        for name, g in self._graphs.items():
            self._graphs[name] = g.apply(fn) if hasattr(g, "apply") else fn(g)
        return self

    def reset_parameters(self) -> None:
        for m in self.children():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def forward(self) -> Embeddings:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, batch: Batch, out: Embeddings) -> dict[str, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def score(self, users: Tensor, out: Embeddings) -> Tensor:
        """Scores ``[B, I]`` of every item for ``users`` (``[B]``)."""
        return out.user[users] @ out.item.t()

    def on_epoch_start(self, epoch: int) -> None:
        """Hook for per-epoch work (e.g. FREEDOM's edge pruning). Default: none."""

    def config_defaults(self) -> dict[str, Any]:
        """The defaults of this model's config class (for checkpoint checks)."""
        return dataclasses.asdict(type(self.config)())

    def extra_state_key(self) -> dict[str, Any]:
        """What identifies this model for checkpoints: name, config, sizes."""
        return {"model": self.name, "config": dataclasses.asdict(self.config),
                "num_users": self.num_users, "num_items": self.num_items}


def select_modalities(data: HeteroData, requested, model: str,
                      required: bool = True) -> tuple[list[str], dict[str, Tensor]]:
    """The modalities a model uses and the data's features ``{name: [I, d_m]}``.

    ``requested``: a config's ``modalities`` (``None``: all of the data's, in
    the data's order). Raises a ``ValueError`` naming ``model`` for names the
    data lacks, and, when ``required``, for an empty selection.
    """
    feats = modality_features(data)
    available = modality_names(data)
    names = list(requested) if requested is not None else available
    missing = [m for m in names if m not in feats]
    if missing:
        raise ValueError(f"{model}: modalities {missing} not in the data (available: {available})")
    if required and not names:
        raise ValueError(f"{model} needs at least one item modality feature "
                         "(data['item'].x_<modality>), found none")
    return names, feats


def project_items(projector, x: Tensor, items: Tensor) -> Tensor:
    """``projector.project`` of the rows ``items`` of the raw features ``x``
    ``[I, d_m] -> [len(items), d]``; projects every item and then indexes
    when the batch covers at least as many rows as the table (cheaper)."""
    if items.numel() >= x.size(0):
        return projector.project(x)[items]
    return projector.project(x[items])


def batch_rows(batch: Batch, user: Tensor, item: Tensor, model: str = "this model"
               ) -> tuple[Tensor, Tensor, Tensor]:
    """The rows of a BPR batch: ``(u [B, d], p [B, d], n [B, d] or [B, K, d])`` of
    ``user`` and ``item`` at ``batch.users``, ``batch.pos_items``, ``batch.neg_items``.

    Raises:
        ValueError: the batch has no negatives (``neg_items=None``), naming ``model``.
    """
    if batch.neg_items is None:
        raise ValueError(f"{model} is trained with BPR and needs sampled negatives; the batch "
                         "has neg_items=None")
    return user[batch.users], item[batch.pos_items], item[batch.neg_items]


def pair_scores(u: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
    """Dot-product scores ``(<u, pos> [B], <u, neg> [B] or [B, K])`` for ``u, pos``
    ``[B, d]`` and ``neg`` ``[B, d]`` (one negative each) or ``[B, K, d]``."""
    neg_s = (u.unsqueeze(-2) * neg).sum(-1) if neg.dim() == u.dim() + 1 else (u * neg).sum(-1)
    return (u * pos).sum(-1), neg_s


def bpr_terms(batch: Batch, user: Tensor, item: Tensor, ego_user: Tensor, ego_item: Tensor,
              reg_weight: float) -> dict[str, Tensor]:
    """BPR on propagated embeddings + L2 of the batch's layer-0 embeddings.

    The objective LightGCN and most of its descendants share:
    ``bpr(<u, i>, <u, j>) + reg_weight * l2_reg(e_u^0, e_i^0, e_j^0) / B``.
    ``batch.neg_items`` may be ``[B]`` or ``[B, K]``.
    """
    u, p, n = batch_rows(batch, user, item)
    reg = l2_reg(*batch_rows(batch, ego_user, ego_item), batch_size=batch.users.numel())
    return {"bpr": bpr_loss(*pair_scores(u, p, n)), "reg": reg_weight * reg}


MODELS: dict[str, type[Recommender]] = {}


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator adding a model to :data:`MODELS` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no registry name")
    if cls.name in MODELS and MODELS[cls.name] is not cls:
        raise ValueError(f"model name {cls.name!r} registered twice")
    _accept_renamed_options(cls.config_class)
    MODELS[cls.name] = cls
    return cls


def get_model_class(name: str) -> type[Recommender]:
    key = name.lower()
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    return MODELS[key]


def build_model(name: str, data: HeteroData, seed: int | None = None,
                **overrides: Any) -> Recommender:
    """Make a registered model as ``mmgraph train`` does.

    Args:
        name: registry name (``'lightgcn'``).
        data: its dataset.
        seed: ``torch.manual_seed(seed)`` before the weights are made (the
            training seed, so a run's initial weights follow from its config).
        **overrides: fields of the model's config (checked: an unknown name
            is a ``ValueError``).
    """
    from ..train.config import replace_checked
    cls = get_model_class(name)
    config = replace_checked(cls.config_class(), **overrides)
    if seed is not None:
        torch.manual_seed(seed)
    return cls(data, config)
