r"""Dataset layouts on disk: detection, :func:`load_dataset`, conversion.

======================  ==========================================================
layout                  files (``<m>_feat.npy``: optional item features)
======================  ==========================================================
``'mmrec'``             ``NAME.inter`` (``userID itemID rating timestamp x_label``) + ``<m>_feat.npy``
``'npy'``               ``train.npy``, ``valid.npy``, ``test.npy`` (``[2, E]``) + ``<m>_feat.npy``
``'diffmm'``            ``trnMat.pkl``, ``valMat.pkl``, ``tstMat.pkl`` (scipy ``[U, I]``) + ``<m>_feat.npy``
``'json'``              ``<k>-core/train.json``, ``val.json``, ``test.json`` + ``<m>_feat.npy``
``'recbole'``           ``NAME.train.inter`` / ``.valid.inter`` / ``.test.inter`` (or ``NAME.inter``) + ``NAME.item``
======================  ==========================================================

All readers funnel through :func:`mmgraph.data.io.assemble` (one validation,
one cold-user policy, one :func:`~mmgraph.data.hetero.build_hetero`), so the
same interactions give the same :class:`~torch_geometric.data.HeteroData`
whatever the layout. See :mod:`mmgraph.data.io` and
:mod:`mmgraph.data.formats` for each layout's details.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

from torch_geometric.data import HeteroData

from .formats import (DIFFMM_FILES, JSON_FILES, _typed_header, find_json_dir, find_recbole_files,
                      read_diffmm, read_json, read_recbole, write_diffmm, write_json,
                      write_recbole)
from .hetero import SPLITS
from .io import _feature_files, _find_inter, read_mmrec, read_npy_splits, write_mmrec, \
    write_npy_splits

__all__ = ["LAYOUTS", "READERS", "WRITERS", "convert_dataset", "dataset_or_synthetic",
           "detect_layout", "layout_files", "load_dataset", "read_layout"]

#: Reader of each layout: ``reader(path, **options) -> HeteroData``.
READERS: dict[str, Callable[..., HeteroData]] = {
    "mmrec": read_mmrec, "npy": read_npy_splits, "diffmm": read_diffmm, "json": read_json,
    "recbole": read_recbole,
}
#: Writer of each layout: ``writer(data, directory, ...)``.
WRITERS: dict[str, Callable] = {
    "mmrec": write_mmrec, "npy": write_npy_splits, "diffmm": write_diffmm, "json": write_json,
    "recbole": write_recbole,
}
LAYOUTS = tuple(READERS)


def _is_recbole_inter(path: Path) -> bool:
    return any(path.name.endswith(f".{s}.inter") for s in SPLITS) or _typed_header(path)


def detect_layout(path: str | Path, name: str | None = None) -> str:
    """The layout (one of :data:`LAYOUTS`) of a dataset folder or ``.inter`` file.

    Checked in this order: RecBole (``*.train.inter`` or a typed ``.inter``
    header), MMRec (``NAME.inter``), DiffMM (``trnMat.pkl``), ``[2, E]``
    (``train.npy``), JSON (``train.json`` or ``<k>-core/train.json``).
    """
    path = Path(path).expanduser()
    if path.is_file():
        if path.suffix == ".inter":
            return "recbole" if _is_recbole_inter(path) else "mmrec"
        raise ValueError(f"{path}: not a dataset directory or .inter file")
    if not path.is_dir():
        raise FileNotFoundError(f"dataset path {path} does not exist")
    inters = [path / f"{name}.inter"] if name is not None else sorted(path.glob("*.inter"))
    if name is not None:
        inters += [path / f"{name}.{s}.inter" for s in SPLITS]
    inters = [p for p in inters if p.is_file()]
    if any(_is_recbole_inter(p) for p in inters):
        return "recbole"
    if inters:
        return "mmrec"
    if (path / DIFFMM_FILES["train"]).is_file():
        return "diffmm"
    if any((path / f"{s}.npy").is_file() for s in SPLITS):
        return "npy"
    if (path / JSON_FILES["train"]).is_file() or any(path.glob("*-core/" + JSON_FILES["train"])):
        return "json"
    want = f"{name}.inter" if name is not None else "NAME.inter"
    raise FileNotFoundError(
        f"{path}: no dataset found: expected {want} (MMRec), NAME.train.inter (RecBole), "
        f"train.npy/valid.npy/test.npy ([2, E]), trnMat.pkl/valMat.pkl/tstMat.pkl (DiffMM) "
        f"or <k>-core/train.json (LATTICE JSON)")


def _check_layout(layout: str) -> str:
    if layout not in READERS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    return layout


def layout_files(path: str | Path, layout: str, name: str | None = None,
                 core: int | None = None) -> list[Path]:
    """The raw files the ``layout`` reader reads for ``path`` (for cache keys)."""
    path = Path(path).expanduser()
    _check_layout(layout)
    if layout == "mmrec":
        inter = _find_inter(path, name)
        return [inter, *_feature_files(inter.parent).values()]
    if layout == "recbole":
        splits, inter, item, _ = find_recbole_files(path, name)
        files = list(splits.values()) if splits is not None else [inter]
        return files + ([item] if item is not None else [])
    if layout == "json":
        split_dir, feat_dir = find_json_dir(path, core)
        return [split_dir / f for f in JSON_FILES.values()] + list(_feature_files(feat_dir).values())
    names = DIFFMM_FILES.values() if layout == "diffmm" else [f"{s}.npy" for s in SPLITS]
    return [path / f for f in names] + list(_feature_files(path).values())


def reader_options(layout: str, path, options: dict) -> dict:
    """``options`` completed with the reader's defaults; unknown names raise ``ValueError``."""
    reader = READERS[_check_layout(layout)]
    sig = inspect.signature(reader)
    try:
        bound = sig.bind(path, **options)
    except TypeError:
        known = [p for p in list(sig.parameters)[1:]]
        bad = [k for k in options if k not in sig.parameters]
        raise ValueError(f"unknown option(s) {', '.join(map(repr, bad or options))} for the "
                         f"{layout!r} layout; known: {', '.join(known)}") from None
    bound.apply_defaults()
    out = dict(bound.arguments)
    out.pop(next(iter(sig.parameters)))
    return out


def read_layout(path: str | Path, layout: str | None = None, **options) -> HeteroData:
    """Read ``path`` with the reader of ``layout`` (detected when ``None``), no cache."""
    path = Path(path).expanduser()
    layout = _check_layout(layout or detect_layout(path, options.get("name")))
    reader_options(layout, path, options)
    return READERS[layout](path, **options)


def load_dataset(spec: str | Path, layout: str | None = None, cache: bool = True,
                 **kwargs) -> HeteroData:
    r"""Load a dataset as the project's :class:`HeteroData`.

    Args:
        spec: a directory in any layout of :data:`LAYOUTS` (detected), a
            ``.inter`` file, or ``'synthetic:<preset>'`` with ``preset`` in
            ``baby``, ``sports``, ``clothing``, ``elec``, ``tiny``,
            optionally followed by ``?key=value&...`` generator options
            (``'synthetic:baby?seed=3&image_dim=256'``).
        layout: force a layout (``'mmrec'``, ``'npy'``, ``'diffmm'``,
            ``'json'``, ``'recbole'``).
        cache: read through the processed cache of
            :class:`~mmgraph.data.dataset.MultimodalRecDataset` (processed
            once, then loaded in milliseconds; invalidated when a raw file or
            an option changes). ``False`` parses the raw files every time.
        **kwargs: reader options (``num_users``, ``num_items``,
            ``modalities``, ``name``, ``cold_users='drop'|'error'|'keep'``,
            ``dedup``, ...; see each reader) or, for ``synthetic:``,
            :func:`~mmgraph.data.synthetic.generate_synthetic` options
            (override the query string).

    Example::

        data = load_dataset("synthetic:tiny")
        data = load_dataset("~/data/baby")                 # baby.inter + image/text_feat.npy
        data = load_dataset("~/data/tiktok", cold_users="keep")   # trnMat.pkl ...
    """
    if isinstance(spec, str) and spec.startswith("synthetic:"):
        from .synthetic import synthetic_dataset
        return synthetic_dataset(spec, **kwargs)
    path = Path(spec).expanduser()
    layout = _check_layout(layout or detect_layout(path, kwargs.get("name")))
    if not cache:
        return read_layout(path, layout, **kwargs)
    from .dataset import MultimodalRecDataset
    return MultimodalRecDataset(path, layout=layout, **kwargs)[0]


def convert_dataset(src: str | Path, dst: str | Path, to: str, layout: str | None = None,
                    name: str | None = None, **kwargs) -> Path:
    r"""Rewrite the dataset at ``src`` in layout ``to`` under ``dst``.

    The conversion is lossless for what both layouts can hold: users without
    training interactions are kept (``cold_users='keep'``), features are
    written as float32; RecBole tokens survive only a RecBole target.
    ``kwargs`` are reader options of ``src``. Returns ``dst``.
    """
    _check_layout(to)
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise ValueError(f"{dst}: the destination must differ from the source")
    kwargs.setdefault("cold_users", "keep")
    if name is not None:
        kwargs["name"] = name
    data = load_dataset(src, layout=layout, cache=False, **kwargs)
    writer = WRITERS[to]
    if "name" in inspect.signature(writer).parameters:
        writer(data, dst, name=name)
    else:
        writer(data, dst)
    return dst


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
