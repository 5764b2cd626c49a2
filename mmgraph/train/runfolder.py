r"""The run folder: everything a training run writes, in one place.

A run folder (``TrainConfig.out_dir``, ``mmgraph train --out-dir``) belongs to
one run. Only the process that trains it writes it (rank 0 of a distributed
run), under a lock, and every file is replaced atomically (written to a
temporary file in the folder, fsynced, renamed), so a crash, Ctrl-C or
``kill -9`` at any moment leaves each file either old or new, never torn.

======================  ===================================================
file                    content, and when it is written
======================  ===================================================
``run.json``            what was trained: model name, model and training
                        configs, the data (an absolute path or a
                        ``synthetic:`` spec; ``null`` when trained from
                        Python without one), the dataset signature and the
                        number of processes; at the start, again at resume
``metrics.jsonl``       one JSON object per finished epoch
                        (:data:`METRICS_FIELDS`); appended after the epoch,
                        rewritten from the checkpoint at resume
``checkpoint.pt``       everything needed to continue bit-identically:
                        weights, optimiser, schedule, every random state,
                        history; after every ``checkpoint_every``-th epoch
                        (default every epoch) and the last
``checkpoint.prev.pt``  the previous generation of ``checkpoint.pt``:
                        resume falls back to it, and says so, when the
                        newest one is damaged
``best_model.pt``       weights of the best validation epoch so far; when
                        validation improves and at the end
``results.json``        :class:`~mmgraph.train.TrainResult` (test metrics
                        of the best epoch, history, effective configs); at
                        the end, and with ``"interrupted": true`` after
                        Ctrl-C / SIGTERM
``results.md``,         a table and the learning curves of the same
``learning_curve.png``
``.lock``               held (``fcntl.flock``) while a process writes the
                        folder; holds its pid. A lock of a dead process is
                        released by the kernel: a stale file is harmless
======================  ===================================================

Every JSON file is strict JSON: a non-finite float is written as ``null``
(never ``NaN`` / ``Infinity``), see :func:`to_json`.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from .checkpoint import CheckpointError, atomic_write, load_checkpoint

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock
    fcntl = None

__all__ = ["RunFolder", "RunFolderError", "RUN_FILES", "METRICS_FIELDS", "to_json", "load_run",
           "data_spec_for_record"]

#: The files a run writes (besides ``.lock``); ``--overwrite`` removes exactly these.
RUN_FILES = ("run.json", "metrics.jsonl", "checkpoint.pt", "checkpoint.prev.pt", "best_model.pt",
             "results.json", "results.md", "learning_curve.png")

#: What each field of a ``metrics.jsonl`` line means (one line per finished epoch).
METRICS_FIELDS = {
    "epoch": "0-based epoch number",
    "loss": "mean training loss over the epoch's batches (sum of the terms)",
    "terms": "mean of each loss term the model returns, e.g. {'bpr': ..., 'reg': ...}",
    "lr": "learning rate used in the epoch",
    "train_seconds": "wall time of the epoch's training steps",
    "valid": "validation metrics ({'recall@20': ...}); on evaluated epochs only (eval_every)",
    "test": "test metrics of the same epoch's model; on evaluated epochs only",
    "eval_seconds": "wall time of the validation and test evaluation",
    "valid_seconds": "wall time of the validation evaluation alone (included in eval_seconds)",
    "improved": "whether valid_metric improved, i.e. this epoch is the best so far",
}

LOCK_FILE = ".lock"


class RunFolderError(ValueError):
    """A run folder cannot be used as asked (already holds a run, is in use,
    is a file); the message says what to do."""


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def to_json(obj: Any, **kwargs) -> str:
    """``json.dumps`` that writes strict JSON: ``NaN`` and ``Infinity`` become
    ``null`` (Python's default writes tokens that strict parsers reject)."""
    return json.dumps(_finite(obj), allow_nan=False, **kwargs)


def data_spec_for_record(spec: str | os.PathLike | None) -> str | None:
    """A dataset spec as ``run.json`` stores it: a path made absolute (so the run
    can be evaluated from any directory), a ``synthetic:`` spec as is."""
    if spec is None:
        return None
    spec = str(spec)
    if spec.startswith("synthetic:"):
        return spec
    return str(Path(spec).expanduser().resolve())


class RunFolder:
    """One run's folder: lock, files, checkpoints (see the module doc).

    Args:
        path: the folder (created when opened).

    Example::

        run = RunFolder("runs/lightgcn").open(resume=False, overwrite=False)
        try:
            run.write_json("run.json", {...})
        finally:
            run.close()
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------ names
    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def previous_checkpoint(self) -> Path:
        return self.path / "checkpoint.prev.pt"

    @property
    def best_model(self) -> Path:
        return self.path / "best_model.pt"

    def existing_files(self) -> list[str]:
        """The :data:`RUN_FILES` present in the folder."""
        return [f for f in RUN_FILES if (self.path / f).exists()]

    # -------------------------------------------------------------- ownership
    def check(self, resume: bool, overwrite: bool) -> None:
        """Read-only check that the folder can take this run (also done by
        :meth:`open`); the CLI calls it before the data loads.

        Raises:
            RunFolderError: the path is a file; it already holds a run and
                neither ``resume`` nor ``overwrite`` is set; another process
                is writing it.
        """
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"out_dir {self.path} exists and is a file, not a folder; "
                                 f"choose another --out-dir")
        for parent in self.path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise RunFolderError(f"out_dir {self.path}: {parent} is a file, not a folder")
                break
        found = self.existing_files()
        if found and not (resume or overwrite):
            raise RunFolderError(
                f"{self.path} already holds a run ({', '.join(found)}); a run folder belongs to "
                f"one run: pass --resume (resume=True) to continue it, --overwrite "
                f"(overwrite=True) to replace it, or choose another --out-dir")
        if self._lock_fd is None and fcntl is not None and (self.path / LOCK_FILE).is_file():
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR)
            try:
                self._try_lock(fd)
            finally:
                os.close(fd)    # closing the descriptor releases a lock taken for the check

    def _try_lock(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            except OSError:
                holder = "unknown"
            raise RunFolderError(f"{self.path} is in use by another process (pid {holder}) "
                                 f"training into it; wait for it to finish or choose another "
                                 f"--out-dir") from None

    def open(self, resume: bool, overwrite: bool, log: Callable[[str], None] | None = None
             ) -> "RunFolder":
        """Create and lock the folder for a run, then prepare it.

        Takes the lock (another process holding it: :class:`RunFolderError`
        at once), removes orphan ``*.tmp`` files of writes a kill cut short,
        and with ``overwrite`` removes the previous run's files
        (:data:`RUN_FILES`, nothing else). Held until :meth:`close`.

        Args:
            resume: the run continues the folder's checkpoint.
            overwrite: the run replaces the folder's previous run.
            log: called with a line for each thing done (e.g. ``print``).
        """
        if resume and overwrite:
            raise RunFolderError("resume and overwrite exclude each other")
        self.check(resume, overwrite)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as err:
            raise RunFolderError(f"cannot create out_dir {self.path}: {err}") from None
        if fcntl is not None:
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                self._try_lock(fd)
            except BaseException:
                os.close(fd)
                raise
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self._lock_fd = fd
        try:
            self.check(resume, overwrite)          # again, now that we hold the lock
            orphans = [p for p in self.path.glob("*.tmp")
                       if any(p.name.startswith(f + ".") for f in RUN_FILES)]
            for p in orphans:
                p.unlink(missing_ok=True)
            if orphans and log is not None:
                log(f"removed {len(orphans)} unfinished write(s) of an earlier process "
                    f"({', '.join(sorted(p.name for p in orphans))})")
            if overwrite:
                found = self.existing_files()
                for f in found:
                    (self.path / f).unlink()
                if found and log is not None:
                    log(f"--overwrite: removed the previous run's files from {self.path} "
                        f"({', '.join(found)})")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Release the lock (the ``.lock`` file stays: a later run reuses it)."""
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ files
    def write_json(self, name: str, obj: Any) -> None:
        """Atomically write strict JSON (:func:`to_json`, indented)."""
        text = to_json(obj, indent=2) + "\n"
        atomic_write(self.path / name, lambda f: f.write(text), binary=False)

    def write_text(self, name: str, text: str) -> None:
        atomic_write(self.path / name, lambda f: f.write(text), binary=False)

    def write_with(self, name: str, save: Callable[[Path], Any]) -> None:
        """Atomically write a file made by ``save(path)`` (e.g. a plot), through
        a temporary name in the folder."""
        tmp = self.path / f"{name}.{os.getpid()}.tmp"
        try:
            save(tmp)
            os.replace(tmp, self.path / name)
        finally:
            tmp.unlink(missing_ok=True)

    def reset_metrics(self, history: list[dict[str, Any]] = ()) -> None:
        """``metrics.jsonl`` with the rows of ``history`` (empty for a new run)."""
        self.write_text("metrics.jsonl", "".join(to_json(r) + "\n" for r in history))

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Append one epoch's line to ``metrics.jsonl`` (flushed and fsynced). A
        line cut by a kill is rewritten from the checkpoint at resume."""
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(to_json(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_run(self) -> dict[str, Any]:
        """``run.json`` as a dict.

        Raises:
            FileNotFoundError: no ``run.json`` (not a run folder).
            RunFolderError: it is not valid JSON or lacks a field.
        """
        path = self.path / "run.json"
        if not path.is_file():
            raise FileNotFoundError(f"{self.path} has no run.json: is it the output folder of "
                                    f"`mmgraph train` or of Trainer(out_dir=...)?")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise RunFolderError(f"{path} is not valid JSON ({err}); the run's record is "
                                 f"damaged") from None
        missing = [k for k in ("model", "model_config") if not isinstance(meta, dict) or k not in meta]
        if missing:
            raise RunFolderError(f"{path} lacks {', '.join(missing)}; the run's record is damaged")
        return meta

    # ------------------------------------------------------------ checkpoints
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write ``checkpoint.pt``, keeping the previous one as ``checkpoint.prev.pt``."""
        import torch
        atomic_write(self.checkpoint, lambda f: torch.save(state, f),
                     previous=self.previous_checkpoint)

    def load_latest_checkpoint(self, log: Callable[[str], None] | None = None
                               ) -> tuple[dict[str, Any], Path]:
        """The newest readable checkpoint and its path.

        Falls back to ``checkpoint.prev.pt`` when ``checkpoint.pt`` is missing
        (a kill between the two renames) or damaged, and says so through
        ``log``.

        Raises:
            FileNotFoundError: neither file exists.
            CheckpointError: both are damaged (each problem is named).
        """
        problems = []
        for path in (self.checkpoint, self.previous_checkpoint):
            if not path.is_file():
                problems.append(f"{path} does not exist")
                continue
            try:
                ckpt = load_checkpoint(path)
            except CheckpointError as err:
                problems.append(str(err))
                continue
            if path != self.checkpoint and log is not None:
                epoch = ckpt.get("trainer_state", {}).get("epoch", "?")
                log(f"{problems[0]}; resuming from the previous generation {path.name} "
                    f"(epoch {epoch}): the epochs after it are trained again")
            return ckpt, path
        if not self.checkpoint.exists() and not self.previous_checkpoint.exists():
            hint = (" (the run stopped before its first epoch finished: start it again with "
                    "--overwrite)" if (self.path / "run.json").exists() else "")
            raise FileNotFoundError(f"cannot resume: {self.checkpoint} does not exist{hint}")
        raise CheckpointError("cannot resume: " + "; ".join(problems))


def load_run(run_dir: str | os.PathLike, data: Any = None, device: str = "cpu"):
    """Open a finished (or interrupted) run: its best model, data and record.

    Args:
        run_dir: the run folder (``run.json`` + ``best_model.pt``).
        data: a dataset spec or a :class:`HeteroData`; default: the one
            ``run.json`` names.
        device: where to put the model.

    Returns:
        ``(model, data, meta)``: the model in eval mode with the best
        weights, the dataset, and ``run.json`` as a dict.

    Raises:
        FileNotFoundError: no ``run.json`` or ``best_model.pt``.
        ValueError: a damaged file, no data spec recorded and none given,
            or a checkpoint of another model / dataset.
    """
    from .. import models  # noqa: F401  (registers every model)
    from ..data import load_dataset
    from ..models.base import get_model_class, upgrade_options
    from .checkpoint import check_compatible, dataset_signature
    from .config import check_device, replace_checked

    folder = RunFolder(run_dir)
    meta = folder.read_run()
    if data is None:
        data = meta.get("data")
        if data is None:
            raise RunFolderError(f"{folder.path}/run.json records no dataset (trained from Python "
                                 f"without data_spec): pass it with --data")
    if isinstance(data, (str, os.PathLike)):
        data = load_dataset(data)
    cls = get_model_class(meta["model"])
    options = upgrade_options(cls.config_class, meta["model_config"])    # older option names
    config = replace_checked(cls.config_class(), **{k: tuple(v) if isinstance(v, list) else v
                                                    for k, v in options.items()})
    model = cls(data, config)
    if not folder.best_model.is_file():
        raise FileNotFoundError(f"{folder.best_model} does not exist: the run was stopped before "
                                f"its first validation")
    ckpt = load_checkpoint(folder.best_model)
    check_compatible(ckpt, model.extra_state_key(), dataset_signature(data), folder.best_model,
                     model.config_defaults())
    model.load_state_dict(ckpt["model_state"])
    return model.to(check_device(device)).eval(), data, meta
