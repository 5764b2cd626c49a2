"""What a sweep runs: its typed configuration, the grid expansion, the trials and presets."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from ..models.base import get_model_class
from ..train.config import TrainConfig, _parse_value, format_value
from ..train.trainer import train_config_for

__all__ = ["SweepConfig", "Trial", "PRESETS", "model_grid", "expand_grid", "trial_folder",
           "GRID_FORBIDDEN", "cpu_count"]

#: Training options a grid may not vary: the sweep sets them (``seed`` comes from
#: ``seeds``; the run folder, resumption and threads are the sweep's business).
GRID_FORBIDDEN = ("seed", "out_dir", "resume", "overwrite", "progress", "threads", "device")

#: ``--preset`` grids: ``{preset: {model: {option: values}}}``. ``'mmrec-grid'``
#: holds the hyper-parameter grids of the MMRec toolbox's model configs
#: (``configs/model/<MODEL>.yaml``), in mmgraph's option names
#: (``learning_rate`` -> ``lr``, ``n_layers`` -> ``num_layers``, ``cl_loss`` ->
#: ``cl_weight``, ``ssl_alpha`` / ``ssl_temp`` -> ``ssl_weight`` / ``ssl_temperature``).
#: SLMRec's ``reg`` grid is left out (MMRec's SLMRec never reads it); LGMRec's
#: grid has one value per option (its defaults). MambaRec's is its paper's MMD grid;
#: REARM publishes none (its defaults are its tuned values).
PRESETS: dict[str, dict[str, dict[str, list]]] = {
    "mmrec-grid": {
        "bprmf": {"reg_weight": [2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5]},
        "lightgcn": {"num_layers": [1, 2, 3, 4], "reg_weight": [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]},
        "vbpr": {"reg_weight": [2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5]},
        "mmgcn": {"reg_weight": [0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1],
                  "lr": [1e-4, 5e-4, 1e-3, 5e-3, 1e-2]},
        "grcn": {"reg_weight": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5], "lr": [1.0, 1e-1, 1e-2, 1e-3, 1e-4]},
        "lattice": {"reg_weight": [0.0, 1e-5, 1e-4, 1e-3], "lr": [1e-4, 5e-4, 1e-3, 5e-3]},
        "slmrec": {"lr": [1e-4, 1e-3, 1e-2, 1e-1], "ssl_temperature": [0.1, 0.2, 0.5, 1.0],
                   "ssl_weight": [0.01, 0.05, 0.1, 0.5, 1.0]},
        "bm3": {"num_layers": [1, 2], "reg_weight": [0.1, 0.01], "dropout": [0.3, 0.5]},
        "freedom": {"dropout": [0.8, 0.9], "reg_weight": [0.0, 1e-5, 1e-4, 1e-3]},
        "mgcn": {"cl_weight": [1e-3, 1e-2, 1e-1]},
        "lgmrec": {},
        "mambarec": {"mmd_weight": [0.1, 0.15, 0.2], "mmd_sigmas": [(1.0,), (1.5,), (2.0,)]},
        "rearm": {},
    },
}


def cpu_count() -> int:
    """CPU cores this process may use (its affinity mask, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass
class SweepConfig:
    """A sweep: models x grid x seeds, each trial an ordinary run folder.

    Attributes:
        models: registered model names, e.g. ``('lightgcn', 'freedom')``.
        data: the dataset (a folder or a ``synthetic:`` spec), as for ``train``.
        grid: ``{option: [values]}`` over model options and training options
            (each typed by its dataclass field: text is read as ``mmgraph
            train`` reads it); ``'model.option'`` applies to that model only.
            A bare option must be known to every model of the sweep.
        seeds: training seeds; every configuration runs once per seed.
        out_dir: the sweep folder (``trials/``, ``cache/``, leaderboard files).
        jobs: trials run at once (local worker processes, or Ray trials at a
            time; ``None`` on Ray: as many as the cluster fits).
        threads: CPU threads per trial (``None``: ``cores // jobs``, at least 1).
        epochs: maximum epochs per trial (``None``: each model's default).
        patience: early-stopping patience (``None``: each model's default).
        device: where trials train (``'cpu'``, ``'cuda'``; on Ray one GPU per trial).
        baseline: model the others are tested against (paired tests over users).
        select: ``'mean'``: the configuration with the best mean validation
            metric over all seeds; ``'first'``: MMRec's single-seed choice
            (the grid runs on the lowest seed only), then the chosen
            configuration's other seeds.
        backend: ``'local'`` (a process pool on this machine) or ``'ray'``
            (Ray Tune; the ``tune`` extra).
        address: the Ray cluster (``'auto'``: the running one; ``None``: a
            local Ray instance started for the sweep).
        search: ``'grid'`` (every combination) or ``'random'`` / ``'tpe'``
            (Optuna samplers over the same grid values; the ``optuna`` extra).
        trials: configurations per model for ``'random'`` / ``'tpe'``.
        preset: a grid from :data:`PRESETS` per model (``'mmrec-grid'``);
            ``grid`` entries are added on top (they win).
        progress: print a line per trial.
    """
    models: tuple[str, ...]
    data: str
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    out_dir: str = "sweeps/sweep"
    jobs: int | None = 1
    threads: int | None = None
    epochs: int | None = None
    patience: int | None = None
    device: str = "cpu"
    baseline: str | None = None
    select: Literal["mean", "first"] = "mean"
    backend: Literal["local", "ray"] = "local"
    address: str | None = None
    search: Literal["grid", "random", "tpe"] = "grid"
    trials: int | None = None
    preset: str | None = None
    progress: bool = True

    def __post_init__(self):
        """Check every value before anything runs; errors name the allowed values."""
        if isinstance(self.models, str):
            self.models = tuple(m for m in self.models.split(",") if m.strip())
        self.models = tuple(get_model_class(m.strip()).name for m in self.models)
        if not self.models:
            raise ValueError("no model given: --model NAME or --models a,b")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"a model is named twice: {', '.join(self.models)}")
        self.seeds = tuple(int(s) for s in self.seeds)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct integers, got {self.seeds}")
        for name, allowed in (("select", ("mean", "first")), ("backend", ("local", "ray")),
                              ("search", ("grid", "random", "tpe"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        if self.jobs is not None and self.jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {self.jobs}")
        if self.jobs is None and self.backend == "local":
            raise ValueError("jobs=None (as many as fit) is for the Ray backend; give jobs >= 1")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.search == "grid" and self.trials is not None:
            raise ValueError("trials (configurations per model) is for search 'random' or 'tpe'")
        if self.search != "grid" and (self.trials is None or self.trials < 1):
            raise ValueError(f"search {self.search!r} needs trials >= 1 (configurations per model)")
        if self.search != "grid" and self.select == "first":
            raise ValueError("select 'first' is for the grid search; random/tpe score each "
                             "configuration by its mean over the seeds")
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; available: {', '.join(PRESETS)}")
        if self.baseline is not None:
            self.baseline = get_model_class(self.baseline).name
            if self.baseline not in self.models:
                raise ValueError(f"baseline {self.baseline!r} is not one of the sweep's models "
                                 f"({', '.join(self.models)})")
        self.grid = {k: list(v) if isinstance(v, (list, tuple)) else [v]
                     for k, v in dict(self.grid).items()}
        for key, values in self.grid.items():
            if not values:
                raise ValueError(f"grid {key}: no value given")
        for m in self.models:                  # every key and value checked, every model
            model_grid(self, m)

    @property
    def threads_per_trial(self) -> int:
        """``threads``, or the cores divided among the ``jobs`` (at least 1)."""
        if self.threads is not None:
            return self.threads
        return max(1, cpu_count() // (self.jobs or 1))

    def train_config(self, model: str, overrides: Mapping[str, Any], seed: int,
                     folder: str | os.PathLike) -> TrainConfig:
        """The :class:`TrainConfig` of one trial: the model's defaults, the sweep's
        ``epochs`` / ``patience`` / ``device`` / threads, the trial's ``overrides``."""
        fixed = {"seed": seed, "out_dir": str(folder), "progress": False,
                 "threads": self.threads_per_trial, "device": self.device}
        if self.epochs is not None:
            fixed["epochs"] = self.epochs
        if self.patience is not None:
            fixed["patience"] = self.patience
        return train_config_for(get_model_class(model), **{**fixed, **overrides})


def _field_owner(cls, option: str) -> str:
    """``'model'`` or ``'train'``: whose field ``option`` is (model first)."""
    if option in {f.name for f in dataclasses.fields(cls.config_class)}:
        return "model"
    if option in {f.name for f in dataclasses.fields(TrainConfig)}:
        if option in GRID_FORBIDDEN:
            raise ValueError(f"grid: {option} is set by the sweep, not a grid option"
                             + (" (use seeds / --seeds)" if option == "seed" else ""))
        return "train"
    raise ValueError(f"grid: {cls.name} has no option {option!r}; model options: "
                     f"{', '.join(f.name for f in dataclasses.fields(cls.config_class))}; "
                     f"training options: {', '.join(f.name for f in dataclasses.fields(TrainConfig) if f.name not in GRID_FORBIDDEN)}")


def _typed(cls, owner: str, option: str, value: Any) -> Any:
    """``value`` as the field's type: text is read like the CLI reads it."""
    klass = cls.config_class if owner == "model" else TrainConfig
    tp = typing.get_type_hints(klass)[option]
    if isinstance(value, str) and tp is not str:
        return _parse_value(value, tp, option.replace("_", "-"))
    if isinstance(value, list):
        return tuple(value)
    return value


def model_grid(config: SweepConfig, model: str) -> dict[str, list[tuple[str, Any]]]:
    """The grid of one model: ``{option: [(owner, typed value), ...]}``.

    The preset's grid for ``model`` (if any), then ``config.grid``'s bare
    options and its ``'model.option'`` entries. Each value is typed by its
    field and checked by making the config with it.

    Raises:
        ValueError: an option no dataclass of the model has, a value that does
            not read as its type or that the config rejects.
    """
    cls = get_model_class(model)
    merged: dict[str, list] = {}
    if config.preset is not None:
        merged.update(PRESETS[config.preset].get(model, {}))
    for key, values in config.grid.items():
        target, _, option = key.rpartition(".")
        if target and get_model_class(target).name not in config.models:
            raise ValueError(f"grid {key}: {target} is not one of the sweep's models "
                             f"({', '.join(config.models)})")
        if target and get_model_class(target).name != model:
            continue
        option = option.replace("-", "_")
        merged.pop(option, None)
        merged[option] = values
    out: dict[str, list[tuple[str, Any]]] = {}
    for option, values in merged.items():
        owner = _field_owner(cls, option)
        typed = []
        for v in values:
            tv = _typed(cls, owner, option, v)
            try:          # the dataclass checks the value (ranges, allowed names)
                if owner == "model":
                    dataclasses.replace(cls.config_class(), **{option: tv})
                else:
                    train_config_for(cls, **{option: tv})
            except (ValueError, TypeError) as err:
                raise ValueError(f"grid {option}={format_value(tv)} for {model}: {err}") from None
            if tv not in [t for _, t in typed]:
                typed.append((owner, tv))
        out[option] = typed
    return out


@dataclass
class Trial:
    """One training run of a sweep.

    Attributes:
        model: registry name.
        params: the configuration's grid values, ``((option, value), ...)`` in
            grid order (empty: the model's defaults).
        model_overrides, train_overrides: the same values split by owner.
        seed: the training seed.
    """
    model: str
    params: tuple[tuple[str, Any], ...]
    model_overrides: dict[str, Any]
    train_overrides: dict[str, Any]
    seed: int

    @property
    def config_name(self) -> str:
        """``key=value,...`` (``'default'`` without grid values): the folder name."""
        if not self.params:
            return "default"
        text = ",".join(f"{k}={format_value(v)}" for k, v in self.params)
        text = text.replace(os.sep, "_").replace("\0", "_")
        if len(text.encode()) > 200:          # file names are limited to 255 bytes
            text = text[:150] + "-" + hashlib.sha1(text.encode()).hexdigest()[:12]
        return text


def trial_folder(out_dir: str | os.PathLike, trial: Trial) -> Path:
    """``out_dir/trials/<model>/<key=value,...>/seed-<seed>``."""
    return Path(out_dir) / "trials" / trial.model / trial.config_name / f"seed-{trial.seed}"


def make_trial(model: str, params: Sequence[tuple[str, str, Any]], seed: int) -> Trial:
    """A :class:`Trial` from ``[(option, owner, value), ...]``."""
    return Trial(model=model, params=tuple((o, v) for o, _, v in params),
                 model_overrides={o: v for o, w, v in params if w == "model"},
                 train_overrides={o: v for o, w, v in params if w == "train"}, seed=seed)


def expand_grid(config: SweepConfig, model: str, seeds: Sequence[int] | None = None
                ) -> list[Trial]:
    """Every combination of ``model``'s grid (the last option varies fastest),
    each with every seed (``seeds``, default ``config.seeds``), configuration by
    configuration.

    Args:
        config: the sweep.
        model: one of its models.
        seeds: the seeds to expand (e.g. only the first one for ``select='first'``).
    """
    grid = model_grid(config, model)
    combos: list[list[tuple[str, str, Any]]] = [[]]
    for option, values in grid.items():
        combos = [c + [(option, owner, v)] for c in combos for owner, v in values]
    seeds = config.seeds if seeds is None else seeds
    return [make_trial(model, c, s) for c in combos for s in seeds]
