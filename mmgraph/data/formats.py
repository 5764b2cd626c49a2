r"""Readers and writers of the field's other dataset layouts.

Every reader funnels through :func:`mmgraph.data.io.assemble` (the same
validation, cold-user policy and :func:`~mmgraph.data.hetero.build_hetero`
as the MMRec and ``[2, E]`` loaders), so all layouts give the same
:class:`~torch_geometric.data.HeteroData` for the same interactions.

* **DiffMM / MMSSL** (``'diffmm'``): ``trnMat.pkl``, ``valMat.pkl``,
  ``tstMat.pkl``, pickled scipy sparse matrices ``[users, items]`` (an entry
  ``!= 0`` is an interaction; the matrix shape gives the numbers of users and
  items), plus ``<modality>_feat.npy`` (float16 or float32). Entries are read
  in the matrix's stored order (COO order; row-major for CSR). Needs scipy.
  Unpickling runs code from the file: load only files you trust.
* **LATTICE / MICRO JSON** (``'json'``): ``DIR/<k>-core/train.json``,
  ``val.json``, ``test.json``, each ``{"user id": [item ids]}``, plus
  ``DIR/<modality>_feat.npy`` (LATTICE's ``image_feat.npy``,
  ``text_feat.npy``). ``DIR`` may also hold the three files directly.
  Edges are read user by user in file order.
* **RecBole atomic files** (``'recbole'``): pre-split ``NAME.train.inter``,
  ``NAME.valid.inter``, ``NAME.test.inter`` (RecBole's ``benchmark_filename``
  convention) or one ``NAME.inter`` (split per user 8:1:1, MMRec rounding,
  ``split=`` / ``seed=``), tab-separated with a typed header
  ``user_id:token  item_id:token  rating:float  timestamp:float``; optional
  ``NAME.item`` whose ``float_seq`` columns are item features
  (``image_feat:float_seq`` -> ``x_image``, a trailing ``_feat`` is dropped).
  RecBole ids are string tokens, mapped to contiguous ids deterministically:
  sorted numerically when every token of the field is an integer, else by
  string; ``.item`` tokens join the item map (catalogue items). Unless the
  map is the identity, it is kept as ``data['user'].token`` /
  ``data['item'].token`` (``token[i]`` is the raw token of id ``i``).
"""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch_geometric.data import HeteroData

from .hetero import INTERACTS, SPLITS, modality_features, split_attr_key, split_edge_attr, \
    split_edge_index
from .io import _as_extra, _safe_name, _write_features, assemble
from .validate import DataValidationError

__all__ = [
    "DIFFMM_FILES",
    "JSON_FILES",
    "read_diffmm",
    "read_json",
    "read_recbole",
    "write_diffmm",
    "write_json",
    "write_recbole",
    "find_json_dir",
    "find_recbole_files",
]

#: DiffMM / MMSSL matrix file of each split.
DIFFMM_FILES = {"train": "trnMat.pkl", "valid": "valMat.pkl", "test": "tstMat.pkl"}
#: LATTICE / MICRO JSON file of each split.
JSON_FILES = {"train": "train.json", "valid": "val.json", "test": "test.json"}
_CORE = re.compile(r"^(\d+)-core$")


def _dir(path: str | Path, layout: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"dataset directory {path} does not exist ({layout} layout)")
    return path


# --------------------------------------------------------------------------- DiffMM / MMSSL
def _scipy_sparse(path: Path):
    try:
        import scipy.sparse as sp
    except ImportError:
        raise ImportError(f"{path}: reading pickled scipy matrices needs scipy "
                          f"(pip install scipy)") from None
    return sp


def read_diffmm(path: str | Path, num_users: int | None = None, num_items: int | None = None,
                modalities: Iterable[str] | None = None, name: str | None = None,
                dedup: bool = True, cold_users: str = "drop") -> HeteroData:
    r"""Read the DiffMM / MMSSL layout (``trnMat.pkl``, ``valMat.pkl``,
    ``tstMat.pkl`` + ``*_feat.npy``); see the module docstring.

    ``num_users`` / ``num_items`` default to the matrices' shape (they must
    agree); other arguments as in :func:`~mmgraph.data.read_mmrec`.
    """
    path = _dir(path, "DiffMM")
    raw, sources, shapes = {}, {}, {}
    for s, fname in DIFFMM_FILES.items():
        f = path / fname
        if not f.is_file():
            raise FileNotFoundError(f"missing file {f} (DiffMM layout needs "
                                    f"{', '.join(DIFFMM_FILES.values())})")
        sp = _scipy_sparse(f)
        try:
            with open(f, "rb") as fh:
                m = pickle.load(fh)
        except Exception as err:  # noqa: BLE001  (any unpickling failure is a bad file)
            raise DataValidationError(f"{f}: cannot unpickle ({type(err).__name__}: {err})") from None
        if isinstance(m, np.ndarray) and m.ndim == 2:
            m = sp.coo_matrix(m)
        if not sp.issparse(m) or len(m.shape) != 2:
            raise DataValidationError(f"{f}: expected a pickled scipy sparse matrix "
                                      f"[users, items], got {type(m).__name__}")
        m = m.tocoo()
        nz = np.asarray(m.data != 0)
        raw[s] = np.stack([np.asarray(m.row)[nz], np.asarray(m.col)[nz]]).astype(np.int64)
        shapes[s] = tuple(int(d) for d in m.shape)
        sources[s] = str(f)
    if len(set(shapes.values())) != 1:
        desc = ", ".join(f"{DIFFMM_FILES[s]} {shapes[s]}" for s in SPLITS)
        raise DataValidationError(f"{path}: the matrices' shapes differ ({desc}); all must be "
                                  f"[num_users, num_items]")
    n_u, n_i = shapes["train"]
    for given, n, kind in ((num_users, n_u, "users"), (num_items, n_i, "items")):
        if given is not None and int(given) != n:
            raise DataValidationError(f"{path / DIFFMM_FILES['train']}: the matrices have {n} "
                                      f"{kind} but num_{kind}={given}")
    return assemble(raw, sources=sources, num_users=n_u, num_items=n_i, feature_dir=path,
                    modalities=modalities, dedup=dedup, cold_users=cold_users,
                    name=name if name is not None else path.resolve().name)[0]


def write_diffmm(data: HeteroData, directory: str | Path, features: bool = True) -> Path:
    r"""Write ``data`` in the DiffMM layout: ``trnMat.pkl`` / ``valMat.pkl`` /
    ``tstMat.pkl`` (pickled ``scipy.sparse.coo_matrix`` ``[users, items]``,
    float32 ones, entries in edge order) + ``<m>_feat.npy``; returns ``directory``."""
    directory = Path(directory)
    sp = _scipy_sparse(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shape = (int(data["user"].num_nodes), int(data["item"].num_nodes))
    for s, fname in DIFFMM_FILES.items():
        e = split_edge_index(data, s).detach().cpu().numpy()
        m = sp.coo_matrix((np.ones(e.shape[1], np.float32), (e[0], e[1])), shape=shape)
        with open(directory / fname, "wb") as fh:
            pickle.dump(m, fh, protocol=pickle.HIGHEST_PROTOCOL)
    if features:
        _write_features(data, directory)
    return directory


# --------------------------------------------------------------------------- LATTICE JSON
def find_json_dir(path: str | Path, core: int | None = None) -> tuple[Path, Path]:
    r"""``(folder of train/val/test.json, folder of *_feat.npy)`` of a JSON dataset.

    ``path`` is the dataset folder (``path/<k>-core/*.json``, features in
    ``path``) or the folder holding the JSON files itself (features there, or
    in its parent when it is a ``<k>-core`` folder without features).
    """
    path = _dir(path, "JSON")
    if core is not None:
        split_dir = path / f"{int(core)}-core"
        if not (split_dir / JSON_FILES["train"]).is_file():
            raise FileNotFoundError(f"missing file {split_dir / JSON_FILES['train']} "
                                    f"(JSON layout, core={core})")
        return split_dir, path
    if (path / JSON_FILES["train"]).is_file():
        if _CORE.match(path.name) and not any(path.glob("*_feat.npy")):
            return path, path.parent
        return path, path
    cores = sorted((p for p in path.iterdir() if p.is_dir() and _CORE.match(p.name)
                    and (p / JSON_FILES["train"]).is_file()),
                   key=lambda p: int(_CORE.match(p.name).group(1)))
    if not cores:
        raise FileNotFoundError(f"{path}: no train.json (JSON layout: <k>-core/train.json, "
                                f"val.json, test.json)")
    if len(cores) > 1:
        raise ValueError(f"{path}: several k-core folders ({', '.join(p.name for p in cores)}); "
                         f"pass core=K to choose one")
    return cores[0], path


def _read_json_split(f: Path) -> np.ndarray:
    try:
        with open(f, encoding="utf-8") as fh:
            obj = json.load(fh)
    except json.JSONDecodeError as err:
        raise DataValidationError(f"{f} line {err.lineno}: invalid JSON ({err.msg})") from None
    except UnicodeDecodeError as err:
        raise DataValidationError(f"{f}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not isinstance(obj, dict):
        raise DataValidationError(f"{f}: expected an object {{user id: [item ids]}}, "
                                  f"got {type(obj).__name__}")
    users, items = [], []
    for key, val in obj.items():
        try:
            u = int(key)
        except ValueError:
            raise DataValidationError(f"{f}: user key {key!r} is not an integer id") from None
        if not isinstance(val, list):
            raise DataValidationError(f"{f}: user {key!r} maps to {type(val).__name__}, "
                                      f"expected a list of item ids")
        bad = [v for v in val if isinstance(v, bool) or not isinstance(v, (int, float))]
        if bad:
            raise DataValidationError(f"{f}: user {key!r} has non-numeric item id {bad[0]!r}")
        users.append(np.full(len(val), u, dtype=np.int64))
        items.append(np.asarray(val, dtype=np.float64 if any(isinstance(v, float) for v in val)
                                else np.int64).reshape(-1))
    if not users:
        return np.zeros((2, 0), np.int64)
    it = np.concatenate(items)
    return np.stack([np.concatenate(users).astype(it.dtype), it])


def read_json(path: str | Path, num_users: int | None = None, num_items: int | None = None,
              modalities: Iterable[str] | None = None, name: str | None = None,
              dedup: bool = True, cold_users: str = "drop", core: int | None = None) -> HeteroData:
    r"""Read the LATTICE / MICRO JSON layout (``<k>-core/train.json``,
    ``val.json``, ``test.json`` + ``*_feat.npy``); see the module docstring.

    ``core`` picks ``<core>-core`` when the folder has several; other
    arguments as in :func:`~mmgraph.data.read_mmrec`. ``name`` defaults to
    the dataset folder's name.
    """
    split_dir, feat_dir = find_json_dir(path, core)
    raw, sources = {}, {}
    for s, fname in JSON_FILES.items():
        f = split_dir / fname
        if not f.is_file():
            raise FileNotFoundError(f"missing file {f} (JSON layout needs "
                                    f"{', '.join(JSON_FILES.values())})")
        raw[s] = _read_json_split(f)
        sources[s] = str(f)
    return assemble(raw, sources=sources, num_users=num_users, num_items=num_items,
                    feature_dir=feat_dir, modalities=modalities, dedup=dedup,
                    cold_users=cold_users,
                    name=name if name is not None else feat_dir.resolve().name)[0]


def write_json(data: HeteroData, directory: str | Path, core: int = 5,
               features: bool = True) -> Path:
    r"""Write ``data`` in the LATTICE layout: ``directory/<core>-core/train.json``,
    ``val.json``, ``test.json`` (``{user: [items]}``, users in order of first
    appearance) + ``directory/<m>_feat.npy``; returns ``directory``."""
    directory = Path(directory)
    split_dir = directory / f"{int(core)}-core"
    split_dir.mkdir(parents=True, exist_ok=True)
    for s, fname in JSON_FILES.items():
        e = split_edge_index(data, s).detach().cpu().tolist()
        out: dict[str, list[int]] = {}
        for u, i in zip(*e):
            out.setdefault(str(u), []).append(i)
        with open(split_dir / fname, "w", encoding="utf-8") as fh:
            json.dump(out, fh)
    if features:
        _write_features(data, directory)
    return directory


# --------------------------------------------------------------------------- RecBole
def find_recbole_files(path: str | Path, name: str | None = None
                       ) -> tuple[dict[str, Path] | None, Path | None, Path | None, str]:
    r"""``(split files or None, unsplit NAME.inter or None, NAME.item or None, NAME)``.

    ``path`` is a folder or a ``.inter`` file. Pre-split files
    (``NAME.train.inter`` ...) win over ``NAME.inter``.
    """
    path = Path(path).expanduser()
    if path.is_file():
        stem = path.name[:-len(".inter")] if path.name.endswith(".inter") else path.stem
        for s in SPLITS:
            if stem.endswith("." + s):
                stem = stem[:-len(s) - 1]
        folder, name = path.parent, name or stem
    elif path.is_dir():
        folder = path
        if name is None:
            names = sorted({p.name[:-len(f".{s}.inter")] for s in SPLITS
                            for p in folder.glob(f"*.{s}.inter")})
            if not names:
                names = sorted(p.name[:-len(".inter")] for p in folder.glob("*.inter")
                               if _typed_header(p))
            if not names:
                raise FileNotFoundError(f"{folder}: no RecBole NAME.inter or NAME.train.inter "
                                        f"(typed header such as 'user_id:token')")
            if len(names) > 1:
                raise ValueError(f"{folder}: several RecBole datasets ({', '.join(names)}); "
                                 f"pass name=... to choose one")
            name = names[0]
    else:
        raise FileNotFoundError(f"dataset path {path} does not exist")
    splits = {s: folder / f"{name}.{s}.inter" for s in SPLITS}
    present = [s for s, f in splits.items() if f.is_file()]
    item = folder / f"{name}.item"
    item = item if item.is_file() else None
    if present:
        missing = [str(f) for s, f in splits.items() if s not in present]
        if missing:
            raise FileNotFoundError(f"missing file {missing[0]} (RecBole pre-split layout needs "
                                    f"{name}.train.inter, {name}.valid.inter, {name}.test.inter)")
        return splits, None, item, name
    inter = folder / f"{name}.inter"
    if not inter.is_file():
        raise FileNotFoundError(f"missing file {inter} (RecBole layout for dataset {name!r})")
    return None, inter, item, name


def _typed_header(path: Path) -> bool:
    """Whether ``path`` starts with a RecBole typed header (every field ``name:type``)."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            head = fh.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        return False
    fields = head.split("\t")
    return bool(head) and all(":" in f for f in fields)


def _read_atomic(path: Path, want: Sequence[str]) -> tuple[dict[str, list[str]], dict[str, str],
                                                          np.ndarray]:
    """Columns of a RecBole atomic file as lists of strings: ``(columns, types, lines)``."""
    with open(path, encoding="utf-8-sig") as fh:
        header = fh.readline().rstrip("\r\n")
        if not header:
            raise DataValidationError(f"{path}: empty file (expected a typed header such as "
                                      f"'user_id:token\\titem_id:token')")
        fields = header.split("\t")
        names, types = [], {}
        for f in fields:
            nm, sep, tp = f.partition(":")
            if not sep:
                raise DataValidationError(f"{path}: header field {f!r} has no type; RecBole "
                                          f"headers are 'name:type' (token, float, float_seq, ...)")
            names.append(nm)
            types[nm] = tp
        missing = [c for c in want if c not in types]
        if missing:
            raise DataValidationError(f"{path}: missing column(s) {', '.join(map(repr, missing))} "
                                      f"in header {fields}")
        cols = {nm: [] for nm in names}
        lines = []
        for lineno, line in enumerate(fh, start=2):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != len(names):
                raise DataValidationError(f"{path} line {lineno}: {len(parts)} field(s), the "
                                          f"header has {len(names)}")
            for nm, v in zip(names, parts):
                cols[nm].append(v)
            lines.append(lineno)
    return cols, types, np.asarray(lines, dtype=np.int64)


def _token_order(tokens: Iterable[str]) -> list[str]:
    """Distinct tokens in id order: numeric when all are integers, else by string."""
    uniq = set(tokens)
    try:
        return sorted(uniq, key=lambda t: (int(t), t))
    except ValueError:
        return sorted(uniq)


def _encode(values: list[str], index: dict[str, int]) -> np.ndarray:
    return np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values))


def _float_column(values: list[str], path: Path, col: str, lines: np.ndarray) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except ValueError:
        for v, ln in zip(values, lines):
            try:
                float(v)
            except ValueError:
                raise DataValidationError(f"{path} line {int(ln)}: column {col!r} has "
                                          f"non-numeric value {v!r}") from None
        raise


def _float_seq(values: list[str], path: Path, col: str, lines: np.ndarray,
               sep: str) -> np.ndarray:
    rows, dim = [], None
    for v, ln in zip(values, lines):
        try:
            row = np.asarray(v.split(sep) if sep != " " else v.split(), dtype=np.float32)
        except ValueError:
            raise DataValidationError(f"{path} line {int(ln)}: column {col!r} is not a "
                                      f"sequence of numbers") from None
        if dim is None:
            dim = row.size
        elif row.size != dim:
            raise DataValidationError(f"{path} line {int(ln)}: column {col!r} has {row.size} "
                                      f"values, earlier rows have {dim}")
        rows.append(row)
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


def read_recbole(path: str | Path, name: str | None = None, num_users: int | None = None,
                 num_items: int | None = None, modalities: Iterable[str] | None = None,
                 extras: bool = True, dedup: bool = True, cold_users: str = "drop",
                 user_field: str = "user_id", item_field: str = "item_id",
                 split: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 999,
                 seq_separator: str = " ") -> HeteroData:
    r"""Read RecBole atomic files (see the module docstring).

    Args:
        path: folder, or one of its ``.inter`` files.
        name: dataset name (``NAME.inter``); needed when the folder holds several.
        user_field, item_field: id columns (RecBole's ``USER_ID_FIELD`` /
            ``ITEM_ID_FIELD``).
        split, seed: per-user split of an unsplit ``NAME.inter``.
        seq_separator: separator inside ``float_seq`` values.
        extras: keep ``rating`` / ``timestamp`` columns as per-interaction attributes.
        Other arguments as in :func:`~mmgraph.data.read_mmrec`.
    """
    splits, inter, item_file, name = find_recbole_files(path, name)
    want = (user_field, item_field)
    files = splits if splits is not None else {"all": inter}
    parsed = {s: _read_atomic(f, want) for s, f in files.items()}
    item_cols, item_types, item_lines = (None, None, None)
    if item_file is not None:
        item_cols, item_types, item_lines = _read_atomic(item_file, (item_field,))
    u_order = _token_order(t for c, _, _ in parsed.values() for t in c[user_field])
    i_tokens = [t for c, _, _ in parsed.values() for t in c[item_field]]
    if item_cols is not None:
        i_tokens += item_cols[item_field]
    i_order = _token_order(i_tokens)
    u_index = {t: k for k, t in enumerate(u_order)}
    i_index = {t: k for k, t in enumerate(i_order)}

    raw, sources, lines, rows = {}, {}, {}, {}
    if splits is not None:
        for s, (cols, _, ln) in parsed.items():
            raw[s] = np.stack([_encode(cols[user_field], u_index), _encode(cols[item_field], i_index)])
            sources[s], lines[s] = str(files[s]), ln
    else:
        from .preprocess import per_user_split
        cols, _, ln = parsed["all"]
        e = np.stack([_encode(cols[user_field], u_index), _encode(cols[item_field], i_index)])
        labels = per_user_split(e[0], len(u_order), split, seed)
        for lab, s in enumerate(SPLITS):
            m = labels == lab
            raw[s], sources[s], lines[s], rows[s] = e[:, m], str(inter), ln[m], np.flatnonzero(m)

    feats = None
    if item_cols is not None:
        seq_cols = [c for c, t in item_types.items() if t == "float_seq"]
        mods = {(c[:-len("_feat")] if c.endswith("_feat") and len(c) > 5 else c): c for c in seq_cols}
        if modalities is not None:
            wanted = [modalities] if isinstance(modalities, str) else list(modalities)
            absent = [m for m in wanted if m not in mods]
            if absent:
                raise DataValidationError(f"{item_file}: no float_seq column for modality "
                                          f"{absent[0]!r} (found: {sorted(mods)})")
            mods = {m: mods[m] for m in wanted}
        if mods:
            ids = _encode(item_cols[item_field], i_index)
            if np.unique(ids).size != ids.size:
                counts = np.bincount(ids, minlength=len(i_order))
                dup = i_order[int(np.flatnonzero(counts > 1)[0])]
                raise DataValidationError(f"{item_file}: item {dup!r} has several rows")
            if ids.size != len(i_order):
                has = np.zeros(len(i_order), dtype=bool)
                has[ids] = True
                lacking = [i_order[k] for k in np.flatnonzero(~has)[:5]]
                raise DataValidationError(f"{item_file}: {int((~has).sum())} item(s) of the "
                                          f"interactions have no row (first: "
                                          f"{', '.join(map(repr, lacking))})")
            feats = {}
            for m, c in mods.items():
                arr = _float_seq(item_cols[c], item_file, c, item_lines, seq_separator)
                out = np.empty_like(arr)
                out[ids] = arr
                feats[m] = (out, f"{item_file} column {c!r}")
    n_i = num_items if num_items is not None else (len(i_order) if item_cols is not None else None)
    data, checked = assemble(raw, sources=sources, lines=lines, num_users=num_users,
                             num_items=n_i, features=feats if feats is not None else {},
                             dedup=dedup, cold_users=cold_users, name=name)
    if extras:
        for col in ("rating", "timestamp"):
            per = {}
            for s in SPLITS:
                cols, _, ln = parsed[s] if splits is not None else parsed["all"]
                if col not in cols:
                    break
                vals = _float_column(cols[col], Path(sources[s]), col, ln)
                per[s] = (vals if splits is not None else vals[rows[s]])[checked.keep[s]]
            else:
                if any(np.any(v) for v in per.values()):
                    for s, v in per.items():
                        data[INTERACTS][split_attr_key(s, col)] = _as_extra(v, col)
    if u_order != [str(k) for k in range(len(u_order))]:
        data["user"].token = list(u_order) + [None] * (checked.num_users - len(u_order))
    if i_order != [str(k) for k in range(len(i_order))]:
        data["item"].token = list(i_order) + [None] * (checked.num_items - len(i_order))
    return data


def _tokens(data: HeteroData, kind: str, n: int) -> list[str]:
    tok = data[kind].get("token") if "token" in data[kind] else None
    if tok is not None and len(tok) == n:
        return [str(t) if t is not None else str(k) for k, t in enumerate(tok)]
    return [str(k) for k in range(n)]


def write_recbole(data: HeteroData, directory: str | Path, name: str | None = None,
                  features: bool = True) -> Path:
    r"""Write RecBole atomic files: ``NAME.train.inter`` / ``.valid.inter`` /
    ``.test.inter`` (``user_id:token  item_id:token`` [``rating:float``]
    [``timestamp:float``]) and, with ``features``, ``NAME.item``
    (``item_id:token`` + one ``<m>_feat:float_seq`` column per modality,
    ``%.9g`` so float32 values read back exactly). Tokens are
    ``data[kind].token`` when present, else the ids. Returns ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = _safe_name(data, name)
    n_u, n_i = int(data["user"].num_nodes), int(data["item"].num_nodes)
    ut, it = _tokens(data, "user", n_u), _tokens(data, "item", n_i)
    cols = [c for c in ("rating", "timestamp")
            if all(split_edge_attr(data, s, c) is not None for s in SPLITS)]
    for s in SPLITS:
        e = split_edge_index(data, s).detach().cpu().tolist()
        extra = [split_edge_attr(data, s, c).detach().cpu().tolist() for c in cols]
        with open(directory / f"{name}.{s}.inter", "w", encoding="utf-8") as fh:
            fh.write("\t".join(["user_id:token", "item_id:token"] + [f"{c}:float" for c in cols])
                     + "\n")
            for k, (u, i) in enumerate(zip(*e)):
                vals = [ut[u], it[i]] + [repr(x[k]) if isinstance(x[k], float) else str(x[k])
                                         for x in extra]
                fh.write("\t".join(vals) + "\n")
    feats = modality_features(data) if features else {}
    if feats:
        arrays = {m: f.detach().cpu().to(torch.float32).numpy() for m, f in feats.items()}
        with open(directory / f"{name}.item", "w", encoding="utf-8") as fh:
            fh.write("\t".join(["item_id:token"] + [f"{m}_feat:float_seq" for m in arrays]) + "\n")
            for k in range(n_i):
                fh.write("\t".join([it[k]] + [" ".join(f"{v:.9g}" for v in a[k].tolist())
                                              for a in arrays.values()]) + "\n")
    return directory
