r"""Reading and writing datasets on disk: the MMRec and ``[2, E]`` layouts,
item features, and :func:`assemble`, the funnel every loader (these and
those of :mod:`mmgraph.data.formats`) goes through.

Both layouts produce the same
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

The single entry point is :func:`mmgraph.data.load_dataset`
(:mod:`mmgraph.data.layouts`): a directory in any layout (detected), a
``.inter`` file, or ``'synthetic:<preset>[?key=value&...]'``.
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
    "assemble",
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


def assemble(splits, *, sources, lines=None, num_users: int | None = None,
             num_items: int | None = None, feature_dir: str | Path | None = None,
             modalities: Iterable[str] | None = None, features=None, dedup: bool = True,
             cold_users: str = "drop", name: str | None = None):
    r"""The one funnel of every loader: validate, read features, build the data.

    Args:
        splits: raw ``{split: [2, E]}`` user/item ids.
        sources, lines: file names (and line numbers) for messages, see
            :func:`~mmgraph.data.validate.validate_interactions`.
        feature_dir: folder of ``<modality>_feat.npy`` files (or ``None``).
        features: ``{modality: (array, source)}`` read by the loader itself
            (e.g. RecBole ``.item`` columns); validated the same way.
        cold_users: ``'drop'`` | ``'error'`` | ``'keep'`` (see
            :func:`~mmgraph.data.validate.check_train_coverage`).

    Item ids occurring in no interaction are kept as cold catalogue items
    (with a warning); feature rows after the largest interacted id need an
    explicit ``num_items``.

    Returns:
        ``(data, checked)`` with the :class:`ValidatedInteractions` (its
        ``keep`` masks align per-interaction columns).
    """
    if isinstance(modalities, str):
        modalities = [modalities]
    checked = validate_interactions(splits, num_users, num_items, sources=sources, lines=lines,
                                    dedup=dedup, cold_users=cold_users)
    if features is not None:
        feats = {m: validate_features(a, checked.num_items, m, src) for m, (a, src) in features.items()}
    elif feature_dir is not None:
        feats = read_features(feature_dir, checked.num_items, modalities)
    else:
        feats = {}
    s = checked.splits
    data = build_hetero(checked.num_users, checked.num_items, s["train"], s["valid"], s["test"],
                        feats, name=name)
    return data, checked


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
               extras: bool = True, dedup: bool = True, cold_users: str = "drop") -> HeteroData:
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
        cold_users: users with valid/test but no training interactions:
            ``'drop'`` their held-out interactions (warning, ids unchanged),
            ``'error'`` or ``'keep'`` (see :mod:`mmgraph.data.validate`).

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
    data, checked = assemble({s: ids[:, m] for s, m in masks.items()}, sources=str(inter),
                             lines={s: lines[m] for s, m in masks.items()}, num_users=num_users,
                             num_items=num_items, feature_dir=inter.parent, modalities=modalities,
                             dedup=dedup, cold_users=cold_users,
                             name=name if name is not None else inter.stem)
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
                    dedup: bool = True, cold_users: str = "drop") -> HeteroData:
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
    return assemble(raw, sources=sources, num_users=num_users, num_items=num_items,
                    feature_dir=path, modalities=modalities, dedup=dedup, cold_users=cold_users,
                    name=name if name is not None else path.resolve().name)[0]


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
