r"""A PyG dataset class over a raw dataset folder, with a processed cache.

:class:`MultimodalRecDataset` reads a folder in any layout of
:mod:`mmgraph.data.layouts` once, saves the resulting
:class:`~torch_geometric.data.HeteroData` to a ``processed/`` file, and
afterwards loads that file (milliseconds) instead of parsing the raw files.
:func:`mmgraph.data.load_dataset` goes through the same cache
(``cache=False`` opts out).

Where the cache lives (first that applies):

1. ``processed_dir=`` given to the class;
2. ``$MMGRAPH_CACHE/<folder name>-<hash of its path>/`` when the
   environment variable ``MMGRAPH_CACHE`` is set;
3. ``<root>/processed/`` (the PyG convention) when the raw folder is writable;
4. ``$XDG_CACHE_HOME/mmgraph/...`` (default ``~/.cache/mmgraph/...``), e.g.
   for a read-only raw folder.

When is it rebuilt: the file name holds a hash of the layout, the reader's
options (defaults included) and, for every raw file the reader uses, its
name, size, modification time and a SHA-1 of its first and last MiB. Any
change of these processes the folder again (and replaces the old file);
``force_reload=True`` forces it. The warnings of processing (dropped cold
users, duplicates, catalogue items) are stored beside it and shown again on
every cached load.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import stat
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch_geometric.data import HeteroData, InMemoryDataset
from torch_geometric.data.dataset import files_exist

from .fingerprint import remember_digest, tensor_digest
from .hetero import modality_features
from .layouts import READERS, _check_layout, detect_layout, layout_files, reader_options

__all__ = ["CACHE_ENV", "MultimodalRecDataset", "default_processed_dir", "raw_signature"]

#: Environment variable overriding where processed files are written.
CACHE_ENV = "MMGRAPH_CACHE"
_FORMAT = 1          # bump when the processed content changes for the same raw files
_SAMPLE = 1 << 20    # bytes hashed at each end of a raw file
_STALE_TMP_S = 6 * 3600   # a processed-file write older than this was killed mid-way


def _folder_slug(root: Path) -> str:
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    return f"{root.resolve().name or 'root'}-{digest}"


def _writable(folder: Path) -> bool:
    """Writable by its permission bits *and* for this process (root ignores bits)."""
    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) and os.access(folder, os.W_OK)


def _usable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
        return True
    except OSError:
        return False


def default_processed_dir(root: str | Path) -> Path:
    """The cache folder of the raw folder ``root`` (see the module docstring)."""
    root = Path(root).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser() / _folder_slug(root)
    if _writable(root):
        candidate = root / "processed"
        if candidate.is_dir() and _writable(candidate) or not candidate.exists():
            return candidate
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base / "mmgraph" / _folder_slug(root)


def raw_signature(files: list[Path], root: Path) -> list[list]:
    """``[name, size, mtime_ns, sha1 of first and last MiB]`` of every raw file."""
    out = []
    for f in files:
        st = f.stat()
        h = hashlib.sha1()
        with open(f, "rb") as fh:
            h.update(fh.read(_SAMPLE))
            if st.st_size > 2 * _SAMPLE:
                fh.seek(-_SAMPLE, os.SEEK_END)
            h.update(fh.read(_SAMPLE))
        try:
            name = str(f.relative_to(root))
        except ValueError:
            name = str(f)
        out.append([name, int(st.st_size), int(st.st_mtime_ns), h.hexdigest()])
    return out


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=repr).encode()).hexdigest()


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)      # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class MultimodalRecDataset(InMemoryDataset):
    r"""A multimodal recommendation dataset folder as a PyG :class:`InMemoryDataset`.

    It holds one graph, the project's :class:`HeteroData` (``dataset[0]``).

    Args:
        root: the raw dataset folder (or a ``.inter`` file in it), in any
            layout of :mod:`mmgraph.data.layouts`.
        layout: ``'mmrec'``, ``'npy'``, ``'diffmm'``, ``'json'`` or
            ``'recbole'``; detected from the files when ``None``.
        processed_dir: where the processed file goes (default: see
            :func:`default_processed_dir`).
        transform: PyG transform applied on access.
        force_reload: process again even if a matching cache exists.
        log: print PyG's "Processing..." messages.
        **options: reader options (``cold_users``, ``modalities``, ``name``,
            ``num_items``, ...; see the layout's reader).

    Example::

        ds = MultimodalRecDataset("~/data/tiktok")      # first time: parses, saves
        data = ds[0]                                    # next times: loads processed/
        ds.layout, ds.processed_paths[0]
    """

    def __init__(self, root: str | Path, layout: str | None = None,
                 processed_dir: str | Path | None = None, transform: Callable | None = None,
                 force_reload: bool = False, log: bool = False, **options):
        path = Path(root).expanduser()
        if path.is_file():
            folder = path.parent
            if "name" not in options or options["name"] is None:
                stem = path.name[:-len(".inter")] if path.name.endswith(".inter") else path.stem
                for s in ("train", "valid", "test"):
                    stem = stem[:-len(s) - 1] if stem.endswith("." + s) else stem
                options["name"] = stem
        elif path.is_dir():
            folder = path
        else:
            raise FileNotFoundError(f"dataset path {path} does not exist")
        self.layout = _check_layout(layout or detect_layout(path, options.get("name")))
        self.options = reader_options(self.layout, folder, options)
        self._folder = folder
        self._given = options
        # a missing file is reported by the reader itself, with the layout's message
        self._files = [f for f in layout_files(folder, self.layout, self.options.get("name"),
                                               self.options.get("core")) if f.is_file()]
        self._processed = Path(processed_dir).expanduser() if processed_dir is not None \
            else default_processed_dir(folder)
        self._opt_key = _digest([_FORMAT, self.layout, self.options])[:10]
        self._signature = raw_signature(self._files, folder)
        self._raw_key = _digest(self._signature)[:12]
        self.warnings: list[str] = []
        self.from_cache = True
        self._no_cache = not _usable(self._processed)
        if self._no_cache:
            warnings.warn(f"cannot write a processed cache in {self._processed}; parsing "
                          f"{folder} every time (set {CACHE_ENV} to a writable folder)",
                          stacklevel=2)
            super().__init__(str(folder), transform, log=False)
            self.from_cache = False
            self._data, self.slices = self._read(), None
            return
        super().__init__(str(folder), transform, log=log, force_reload=force_reload)
        self.load(self.processed_paths[0], data_cls=HeteroData)
        meta = json.loads(Path(self.processed_paths[1]).read_text())
        # the features' content digests, computed once when the cache was written: a
        # checkpoint's dataset fingerprint then reads none of the (memory-mapped) pages
        features = modality_features(self._data)
        for m, digest in meta.get("feature_sha1", {}).items():
            if m in features:
                remember_digest(features[m], digest)
        if self.from_cache:
            self.warnings = list(meta.get("warnings", []))
            for msg in self.warnings:
                warnings.warn(msg, UserWarning, stacklevel=2)

    # ---------------------------------------------------------------- PyG hooks
    @property
    def raw_dir(self) -> str:
        return str(self._folder)

    @property
    def processed_dir(self) -> str:
        return str(self._processed)

    @property
    def raw_file_names(self) -> list[str]:
        return [str(f.relative_to(self._folder)) if f.is_relative_to(self._folder) else str(f)
                for f in self._files]

    @property
    def processed_file_names(self) -> list[str]:
        stem = f"{self.layout}-{self._opt_key}-{self._raw_key}"
        return [stem + ".pt", stem + ".json"]

    def load(self, path: str, data_cls=HeteroData) -> None:
        """PyG's :meth:`InMemoryDataset.load` with the file memory-mapped: a tensor's
        pages are read when first touched, so features a model never reads (an
        ID-only model on multimodal data) take no memory; writes stay private to
        the process (copy-on-write)."""
        try:
            out = torch.load(path, mmap=True, weights_only=True)
        except pickle.UnpicklingError:       # a PyG without its safe globals registered
            out = torch.load(path, mmap=True, weights_only=False)
        data, self.slices, data_cls = out
        self.data = data_cls.from_dict(data) if isinstance(data, dict) else data

    def _process(self) -> None:
        # PyG's version also writes pre_transform.pt / pre_filter.pt in place (not
        # atomically), which processes sharing the cache would race on; this class
        # takes no pre_transform, so the processed files alone say what is cached
        if self._no_cache or (not self.force_reload and files_exist(self.processed_paths)):
            return
        if self.log and "PYTEST_CURRENT_TEST" not in os.environ:
            print(f"Processing {self._folder} into {self.processed_dir} ...", file=sys.stderr)
        Path(self.processed_dir).mkdir(parents=True, exist_ok=True)
        self.process()

    def download(self) -> None:  # raw files are the user's: nothing to download
        raise FileNotFoundError(f"{self._folder}: raw files missing: {self.raw_file_names}")

    def _read(self) -> HeteroData:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = READERS[self.layout](self._folder, **self.options)
        self.warnings = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return data

    def process(self) -> None:
        self.from_cache = False
        data = self._read()
        pt, meta = (Path(p) for p in self.processed_paths)
        _atomic_write(pt, lambda tmp: torch.save((data.to_dict(), None, HeteroData), tmp))
        info = {"layout": self.layout, "options": self.options, "raw_files": self._signature,
                "warnings": self.warnings, "format": _FORMAT,
                "feature_sha1": {m: tensor_digest(x) for m, x in modality_features(data).items()}}
        _atomic_write(meta, lambda tmp: Path(tmp).write_text(json.dumps(info, indent=1,
                                                                        default=repr)))
        # older versions of the same dataset and options are stale now; another
        # process's write in flight (``*.tmp``) is its own, unless hours old (killed)
        for old in Path(self.processed_dir).glob(f"{self.layout}-{self._opt_key}-*"):
            try:
                if old.name in (pt.name, meta.name) or (
                        old.suffix == ".tmp" and time.time() - old.stat().st_mtime < _STALE_TMP_S):
                    continue
                old.unlink()
            except OSError:
                pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._folder}, layout={self.layout!r})"
