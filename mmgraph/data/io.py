r"""Reading and writing datasets on disk.

Two directory layouts are understood, and both produce the same
:class:`~torch_geometric.data.HeteroData` (see :mod:`mmgraph.data.hetero`)
for the same interactions:

* **MMRec**: ``NAME.inter``, a tab-separated file with the header
  ``userID itemID rating timestamp x_label`` (``x_label`` 0 = train,
  1 = valid, 2 = test; columns are found by name, ``rating`` and
  ``timestamp`` are optional), plus optional ``<modality>_feat.npy`` item
  feature matrices (``image_feat.npy`` -> ``data['item'].x_image``,
  ``text_feat.npy`` -> ``x_text``, any ``<m>_feat.npy`` -> ``x_<m>``);
* **splits** (REARM): ``train.npy``, ``valid.npy``, ``test.npy``, each an
  integer array ``[2, E]`` (row 0 user, row 1 item), plus the same optional
  ``*_feat.npy`` files.

:func:`load_dataset` is the single entry point: a directory (layout detected),
a ``.inter`` file, or ``'synthetic:<preset>[?key=value&...]'``.
"""
from __future__ import annotations

import codecs
import io
import re
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch_geometric.data import HeteroData

from .hetero import (INTERACTS, SPLITS, build_hetero, modality_features, split_attr_key,
                     split_edge_attr, split_edge_index)
from .validate import DataValidationError, validate_features, validate_interactions

__all__ = [
    "MMREC_COLUMNS",
    "detect_layout",
    "load_dataset",
    "read_features",
    "read_mmrec",
    "read_npy_splits",
    "write_mmrec",
    "write_npy_splits",
]

#: Header of an MMRec ``.inter`` file, in the order :func:`write_mmrec` writes it.
MMREC_COLUMNS = ("userID", "itemID", "rating", "timestamp", "x_label")
_REQUIRED = ("userID", "itemID", "x_label")
_EXTRAS = ("rating", "timestamp")
_FEAT_SUFFIX = "_feat.npy"
_LABELS = {"train": 0, "valid": 1, "test": 2}


# --------------------------------------------------------------------------- features
def _load_npy(path: Path) -> np.ndarray:
    """``np.load`` of a numeric array; an empty, truncated or non-.npy file is
    a :class:`DataValidationError` naming it."""
    if path.stat().st_size == 0:
        raise DataValidationError(f"{path}: empty file (0 bytes), expected a .npy array")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as err:   # object arrays, corrupt or cut headers
        raise DataValidationError(f"{path}: cannot read as a numeric .npy array "
                                  f"({type(err).__name__}: {err})") from None


def _feature_files(directory: Path) -> dict[str, Path]:
    return {p.name[:-len(_FEAT_SUFFIX)]: p for p in sorted(directory.glob("*" + _FEAT_SUFFIX))
            if p.is_file() and len(p.name) > len(_FEAT_SUFFIX)}


def read_features(directory: str | Path, num_items: int,
                  modalities: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    r"""Load ``<modality>_feat.npy`` item features from ``directory``.

    Args:
        directory: folder holding the ``*_feat.npy`` files.
        num_items: expected number of rows.
        modalities: names to load (each file must exist); ``None`` loads
            every ``*_feat.npy`` present.

    Returns:
        ``{modality: float32 [num_items, dim]}`` (float16 and other widths
        are cast).
    """
    directory = Path(directory)
    found = _feature_files(directory)
    if modalities is not None:
        wanted = list(modalities)
        for m in wanted:
            if m not in found:
                raise FileNotFoundError(f"missing feature file {directory / (m + _FEAT_SUFFIX)} "
                                        f"for modality {m!r}")
        found = {m: found[m] for m in wanted}
    out = {}
    for m, path in found.items():
        arr = _load_npy(path)
        out[m] = validate_features(arr, num_items, m, str(path))
    return out


# --------------------------------------------------------------------------- MMRec layout
def _read_text(path: Path) -> str:
    """A text file as UTF-8 with ``\\n`` line ends; a leading byte-order mark
    (Excel's UTF-8 export) is dropped, and bytes that are not UTF-8 are
    reported with their line number."""
    raw = path.read_bytes()
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataValidationError(
            f"{path} line {line}: not valid UTF-8 (byte 0x{raw[err.start]:02x}); "
            f"save the file as UTF-8") from None
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _first_bad_line(path: Path, rows: Iterable[tuple[int, str]], delim: str | None,
                    usecols: list[int], names: list[str]) -> str:
    """Slow path for error messages: locate the first unparsable field."""
    for lineno, line in rows:
        fields = line.split(delim)
        for c, name in zip(usecols, names):
            if c >= len(fields):
                return f"{path} line {lineno}: only {len(fields)} field(s), column {name!r} missing"
            try:
                float(fields[c])
            except ValueError:
                return f"{path} line {lineno}: column {name!r} has non-numeric value {fields[c]!r}"
    return f"{path}: could not be parsed"


def _parse_inter(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Parse the used columns of an ``.inter`` file into float64 arrays.

    Blank (empty or whitespace-only) lines are skipped; the returned line
    numbers are those of the file, so messages point at the right line.
    """
    header, _, body = _read_text(path).partition("\n")
    if not header.strip():
        raise DataValidationError(f"{path}: empty file (expected a header "
                                  f"{' '.join(MMREC_COLUMNS)!r})")
    delim = "\t" if "\t" in header else None
    cols = [c.strip() for c in header.split(delim)]
    index = {c: j for j, c in enumerate(cols)}
    missing = [c for c in _REQUIRED if c not in index]
    if missing:
        raise DataValidationError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)} in header {cols}; "
            f"expected the MMRec header {' '.join(MMREC_COLUMNS)!r}")
    names = [c for c in MMREC_COLUMNS if c in index]
    usecols = [index[c] for c in names]
    if re.search(r"(?m)^[ \t\f\v]*$", body.rstrip("\n")) is None and body.strip():
        rows: list[tuple[int, str]] | None = None      # no blank line: parse the text as is
        source = io.StringIO(body)
    else:
        split = body.split("\n")
        rows = [(n, line) for n, line in enumerate(split, start=2) if line.strip()]
        source = [line for _, line in rows]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # "input contained no data"
            arr = np.loadtxt(source, delimiter=delim, usecols=usecols,
                             dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        if rows is None:
            rows = [(n, line) for n, line in enumerate(body.split("\n"), start=2)]
        raise DataValidationError(_first_bad_line(path, rows, delim, usecols, names)) from None
    columns = {c: arr[:, j] for j, c in enumerate(names)}
    if rows is None:
        lines = np.arange(arr.shape[0], dtype=np.int64) + 2   # 1-based, after the header
    else:
        lines = np.fromiter((n for n, _ in rows), dtype=np.int64, count=len(rows))
    return columns, lines


def _as_extra(values: np.ndarray, name: str) -> torch.Tensor:
    """Tensor of a per-interaction column: rating float32, integral timestamps int64."""
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.integer) and name != "rating":
        return torch.from_numpy(values.astype(np.int64))
    values = values.astype(np.float64)
    if name == "timestamp" and np.all(values == np.floor(values)):
        return torch.from_numpy(values.astype(np.int64))
    if name == "rating":
        return torch.from_numpy(values.astype(np.float32))
    return torch.from_numpy(values.astype(np.float64))


def _find_inter(path: Path, name: str | None) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"dataset path {path} does not exist")
    if name is not None:
        f = path / f"{name}.inter"
        if not f.is_file():
            raise FileNotFoundError(f"missing file {f} (MMRec layout for dataset {name!r})")
        return f
    found = sorted(path.glob("*.inter"))
    if not found:
        raise FileNotFoundError(f"{path}: no NAME.inter file (MMRec layout)")
    if len(found) > 1:
        raise ValueError(f"{path}: several .inter files ({', '.join(p.name for p in found)}); "
                         f"pass name=... to choose one")
    return found[0]


def read_mmrec(path: str | Path, name: str | None = None, num_users: int | None = None,
               num_items: int | None = None, modalities: Iterable[str] | None = None,
               extras: bool = True, dedup: bool = True) -> HeteroData:
    r"""Read an MMRec dataset (``NAME.inter`` + ``*_feat.npy``).

    Args:
        path: the dataset directory, or the ``.inter`` file itself.
        name: dataset name (``NAME.inter``); needed only when the directory
            holds several ``.inter`` files. Stored as ``data.name``.
        num_users, num_items: sizes; default max id + 1 over all splits.
        modalities: feature files to load (``None``: all ``*_feat.npy``).
        extras: keep the ``rating`` / ``timestamp`` columns as
            per-interaction attributes (``data[INTERACTS].rating``,
            ``.valid_rating``, ...) when present and not all zero.
        dedup: drop repeated (user, item) pairs with a warning.

    Raises:
        FileNotFoundError: missing directory / ``.inter`` / requested feature file.
        DataValidationError: malformed contents (see :mod:`mmgraph.data.validate`).
    """
    inter = _find_inter(Path(path), name)
    columns, lines = _parse_inter(inter)
    label = columns["x_label"]
    bad = ~np.isin(label, (0.0, 1.0, 2.0))
    if bad.any():
        idx = np.flatnonzero(bad)
        raise DataValidationError(
            f"{inter} line {int(lines[idx[0]])}: x_label must be 0 (train), 1 (valid) or 2 (test); "
            f"{idx.size} row(s) have other values, first {label[idx[0]]:g}")
    masks = {s: label == v for s, v in _LABELS.items()}
    ids = np.stack([columns["userID"], columns["itemID"]])
    checked = validate_interactions({s: ids[:, m] for s, m in masks.items()}, num_users, num_items,
                                    sources=str(inter), lines={s: lines[m] for s, m in masks.items()},
                                    dedup=dedup)
    feats = read_features(inter.parent, checked.num_items, modalities)
    s = checked.splits
    data = build_hetero(checked.num_users, checked.num_items, s["train"], s["valid"], s["test"],
                        feats, name=name if name is not None else inter.stem)
    if extras:
        for col in _EXTRAS:
            if col not in columns or not np.any(columns[col]):
                continue
            for split, m in masks.items():
                values = columns[col][m][checked.keep[split]]
                data[INTERACTS][split_attr_key(split, col)] = _as_extra(values, col)
    return data


# --------------------------------------------------------------------------- [2, E] layout
def read_npy_splits(path: str | Path, num_users: int | None = None, num_items: int | None = None,
                    modalities: Iterable[str] | None = None, name: str | None = None,
                    dedup: bool = True) -> HeteroData:
    r"""Read ``train.npy`` / ``valid.npy`` / ``test.npy`` (``[2, E]`` each) +
    ``*_feat.npy`` from a directory. Arguments as in :func:`read_mmrec`;
    ``name`` defaults to the directory name."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"dataset directory {path} does not exist")
    raw, sources = {}, {}
    for s in SPLITS:
        f = path / f"{s}.npy"
        if not f.is_file():
            raise FileNotFoundError(f"missing file {f} ([2, E] split layout needs "
                                    f"train.npy, valid.npy and test.npy)")
        raw[s] = _load_npy(f)
        sources[s] = str(f)
    checked = validate_interactions(raw, num_users, num_items, sources=sources, dedup=dedup)
    feats = read_features(path, checked.num_items, modalities)
    s = checked.splits
    return build_hetero(checked.num_users, checked.num_items, s["train"], s["valid"], s["test"],
                        feats, name=name if name is not None else path.resolve().name)


def detect_layout(path: str | Path, name: str | None = None) -> str:
    """``'mmrec'`` or ``'npy'`` for a dataset directory (or ``.inter`` file)."""
    path = Path(path)
    if path.is_file():
        if path.suffix == ".inter":
            return "mmrec"
        raise ValueError(f"{path}: not a dataset directory or .inter file")
    if not path.is_dir():
        raise FileNotFoundError(f"dataset path {path} does not exist")
    if (name is not None and (path / f"{name}.inter").is_file()) or \
            (name is None and any(path.glob("*.inter"))):
        return "mmrec"
    if any((path / f"{s}.npy").is_file() for s in SPLITS):
        return "npy"
    want = f"{name}.inter" if name is not None else "NAME.inter"
    raise FileNotFoundError(f"{path}: no dataset found: expected {want} (MMRec layout) or "
                            f"train.npy, valid.npy, test.npy ([2, E] layout)")


def load_dataset(spec: str | Path, **kwargs) -> HeteroData:
    r"""Load a dataset as the project's :class:`HeteroData`.

    Args:
        spec: a directory in either layout (detected; force it with
            ``layout='mmrec'|'npy'``), a ``.inter`` file, or
            ``'synthetic:<preset>'`` with ``preset`` in ``baby``, ``sports``,
            ``clothing``, ``elec``, ``tiny``, optionally followed by
            ``?key=value&...`` generator options
            (``'synthetic:baby?seed=3&image_dim=256'``).
        **kwargs: passed to :func:`read_mmrec` / :func:`read_npy_splits`
            (``num_users``, ``num_items``, ``modalities``, ``name``) or to
            :func:`~mmgraph.data.synthetic.generate_synthetic` (override the
            query string).

    Example::

        data = load_dataset("synthetic:tiny")
        data = load_dataset("~/data/baby")          # baby.inter + image/text_feat.npy
    """
    if isinstance(spec, str) and spec.startswith("synthetic:"):
        from .synthetic import synthetic_dataset
        return synthetic_dataset(spec, **kwargs)
    path = Path(spec).expanduser()
    layout = kwargs.pop("layout", None) or detect_layout(path, kwargs.get("name"))
    if layout == "mmrec":
        return read_mmrec(path, **kwargs)
    if layout == "npy":
        return read_npy_splits(path, **kwargs)
    raise ValueError(f"unknown layout {layout!r}; expected 'mmrec' or 'npy'")


# --------------------------------------------------------------------------- writers
def _safe_name(data: HeteroData, name: str | None) -> str:
    name = name if name is not None else getattr(data, "name", None) or "dataset"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-.") or "dataset"
    return name


def _write_features(data: HeteroData, directory: Path) -> list[Path]:
    paths = []
    for m, f in modality_features(data).items():
        p = directory / f"{m}{_FEAT_SUFFIX}"
        np.save(p, f.detach().cpu().to(torch.float32).numpy())
        paths.append(p)
    return paths


def write_mmrec(data: HeteroData, directory: str | Path, name: str | None = None,
                features: bool = True) -> Path:
    r"""Write ``data`` in the MMRec layout: ``NAME.inter`` (+ ``<m>_feat.npy``).

    Rows are written split by split (train, valid, test) in edge order, so
    :func:`read_mmrec` gives back identical tensors. ``rating`` and
    ``timestamp`` come from the stored per-interaction attributes when
    present (see :func:`~mmgraph.data.hetero.split_edge_attr`), else 0.

    Args:
        name: file stem; defaults to ``data.name`` (sanitised) or ``'dataset'``.
        features: also write the modality feature matrices.

    Returns:
        the path of the ``.inter`` file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = _safe_name(data, name)
    blocks = []
    int_ts = True
    for s in SPLITS:
        e = split_edge_index(data, s).detach().cpu()
        n = e.size(1)
        rating = split_edge_attr(data, s, "rating")
        ts = split_edge_attr(data, s, "timestamp")
        if ts is not None and ts.is_floating_point():
            int_ts = False
        rating = rating.detach().cpu().double().numpy() if rating is not None else np.zeros(n)
        ts = ts.detach().cpu().double().numpy() if ts is not None else np.zeros(n)
        blocks.append(np.column_stack([e[0].double().numpy(), e[1].double().numpy(), rating, ts,
                                       np.full(n, _LABELS[s], dtype=np.float64)]))
    rows = np.concatenate(blocks)
    fmt = ["%d", "%d", "%.9g", "%d" if int_ts else "%.17g", "%d"]
    path = directory / f"{name}.inter"
    np.savetxt(path, rows, fmt=fmt, delimiter="\t", header="\t".join(MMREC_COLUMNS),
               comments="")
    if features:
        _write_features(data, directory)
    return path


def write_npy_splits(data: HeteroData, directory: str | Path, features: bool = True) -> Path:
    r"""Write ``train.npy`` / ``valid.npy`` / ``test.npy`` (int64 ``[2, E]``)
    and ``<m>_feat.npy`` into ``directory``; returns ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for s in SPLITS:
        np.save(directory / f"{s}.npy",
                split_edge_index(data, s).detach().cpu().to(torch.int64).numpy())
    if features:
        _write_features(data, directory)
    return directory


def dataset_or_synthetic(data_dir: str | Path | None, fallback: str = "synthetic:baby",
                         require_features: bool = True, log=print) -> tuple[HeteroData, str]:
    """The dataset in ``data_dir`` if it is usable, else the synthetic ``fallback``.

    The examples' data behaviour in one place: a missing folder, or (with
    ``require_features``) one without ``*_feat.npy`` modality files, is
    reported through ``log`` and replaced by ``load_dataset(fallback)``.
    Invalid data in a folder that does exist still raises.

    Returns ``(data, spec)`` where ``spec`` names what was loaded.
    """
    if data_dir:
        path = Path(data_dir)
        if not path.is_dir():
            log(f"[data] {path} does not exist.")
        elif require_features and not any(path.glob("*_feat.npy")):
            log(f"[data] {path} has no *_feat.npy modality features; this model needs them.")
        else:
            return load_dataset(path), str(path)
    else:
        log("[data] no data folder given.")
    log(f"[data] falling back to {fallback} (synthetic, planted multimodal signal).")
    return load_dataset(fallback), fallback
