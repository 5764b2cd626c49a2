"""Running an upstream (authors') implementation beside mmgraph, for parity checks.

Nothing of the upstream code is copied into this repository. Given the path of
a local checkout, :func:`import_upstream` copies its source folder into a
throw-away temporary folder, adds the minimum environment shims there (today:
a ``torch_scatter`` module providing ``scatter_add`` when the real package is
not installed; numpy aliases removed in numpy 2 such as ``np.float`` and ``np.float_``;
on request, :func:`keep_cuda_calls_on_cpu` for hard-coded ``.cuda()`` calls in a CPU run;
``scipy.sparse.dok_matrix._update``, removed in scipy 1.12) and
imports the requested module from that copy.

:class:`MMRecStub` stands in for the MMRec-style ``config`` dictionary and
training data loader that the authors' ``GeneralRecommender`` subclasses take
in their constructor; :func:`write_features` writes mmgraph's feature
tensors where those constructors read them.

Shared helpers for the scripts in this folder: :func:`compare` (max abs / rel
difference of matching tensors), :func:`fixed_batches` (one list of batches
with negatives, fed to both sides), :func:`recall_at` (the MMRec protocol
through mmgraph's evaluator, for any scoring function).
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import shutil
import sys
import tempfile
import types
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))          # the repository root, for `import mmgraph`


class UpstreamMissing(RuntimeError):
    """The upstream checkout is absent or incomplete (the scripts skip with this message)."""


def _numpy_aliases() -> None:
    # numpy 2 removed these aliases; old research code still uses them (RecBole 1.2's
    # Config re-creates np.float & co. from np.float_, np.complex_ and np.unicode_)
    for name, value in (("float", float), ("int", int), ("bool", bool), ("object", object),
                        ("float_", np.float64), ("complex_", np.complex128),
                        ("unicode_", np.str_)):
        if name not in np.__dict__:
            setattr(np, name, value)


def _scipy_aliases() -> None:
    # scipy >= 1.12 removed dok_matrix._update (a dict update without checks),
    # which MMRec's and REARM's adjacency builders call
    try:
        import scipy.sparse as sp
    except ImportError:
        return
    for cls in (sp.dok_matrix, getattr(sp, "dok_array", None)):
        if cls is None or hasattr(cls, "_update"):
            continue

        def _update(self, entries):
            store = getattr(self, "_dict", None)
            if store is not None:
                store.update(entries)
            else:
                for key, value in entries.items():
                    self[key] = value
        cls._update = _update


def _torch_scatter_shim() -> types.ModuleType:
    mod = types.ModuleType("torch_scatter")

    def scatter_add(src, index, dim=0, out=None, dim_size=None):
        if dim not in (0, -src.dim()):
            raise NotImplementedError("the parity shim supports dim=0 only")
        n = dim_size if dim_size is not None else int(index.max()) + 1
        res = src.new_zeros((n, *src.shape[1:])) if out is None else out
        return res.index_add_(0, index, src)

    def scatter(src, index, dim=0, out=None, dim_size=None, reduce="sum"):
        if reduce not in ("sum", "add"):
            raise NotImplementedError("the parity shim supports reduce='sum' only")
        return scatter_add(src, index, dim, out, dim_size)

    mod.scatter_add = scatter_add
    mod.scatter = scatter
    return mod


def import_upstream(checkout: str | Path, source_dir: str, module: str,
                    required: Iterable[str] = ()) -> types.ModuleType:
    """Import ``module`` from a throw-away copy of ``checkout/source_dir``.

    Args:
        checkout: the local clone of the upstream repository.
        source_dir: the folder inside it that holds the importable code
            (``'src'`` for MambaRec, ``'.'`` for REARM).
        module: dotted module name relative to that folder.
        required: files (relative to ``source_dir``) whose absence means the
            checkout is not the expected repository.

    Raises:
        UpstreamMissing: with a message saying what to fetch.
    """
    root = Path(checkout).expanduser() if checkout else None
    if root is None or not root.is_dir():
        raise UpstreamMissing(f"no upstream checkout at {checkout!r}")
    src = (root / source_dir).resolve()
    missing = [f for f in required if not (src / f).is_file()]
    if missing:
        raise UpstreamMissing(f"{root} does not look like the expected repository "
                              f"(missing {', '.join(missing)})")
    work = Path(tempfile.mkdtemp(prefix="mmgraph-parity-"))
    shutil.copytree(src, work / "upstream", ignore=shutil.ignore_patterns("*.pt", "data", ".git"))
    install_shims()
    sys.path.insert(0, str(work / "upstream"))
    return importlib.import_module(module)


def stub_missing_modules(names: Iterable[str]) -> list[str]:
    """Empty stand-ins for modules an upstream file imports at the top but the
    code paths we run never use (MMRec's raw-image helpers import torchvision and
    lmdb); any use of one raises. Returns the names stubbed (those not installed)."""
    stubbed = []
    for name in names:
        try:
            importlib.import_module(name)
            continue
        except ImportError:
            pass

        def missing(attr, _name=name):
            if attr.startswith("__"):
                raise AttributeError(attr)
            return _Unavailable(f"{_name}.{attr}")
        mod = types.ModuleType(name)
        mod.__getattr__ = missing
        # a spec without origin: importlib.util.find_spec (torch._dynamo asks it
        # about sklearn & co.) then answers instead of raising
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
        sys.modules[name] = mod
        stubbed.append(name)
    return stubbed


class _Unavailable:
    """What a stubbed module returns: fails when used, not when imported."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr):
        return _Unavailable(f"{self._name}.{attr}")

    def __call__(self, *args, **kwargs):
        raise ImportError(f"{self._name} is not installed (stubbed for the parity run)")


def install_shims() -> None:
    """The minimum environment fixes old upstream code needs, in this process:
    numpy aliases removed in numpy 2, scipy's removed ``dok_matrix._update``, and a
    ``torch_scatter`` module with ``scatter_add`` when the real one is absent."""
    _numpy_aliases()
    _scipy_aliases()
    try:
        importlib.import_module("torch_scatter")
    except ImportError:
        sys.modules["torch_scatter"] = _torch_scatter_shim()


def _cuda_noop(self, *args, **kwargs):
    return self


def keep_cuda_calls_on_cpu() -> None:
    """For a CPU run, make ``Tensor.cuda()`` return the tensor unchanged: old upstream
    code hard-codes it in places (MMRec's GRCN loss, the LATTICE and MGCN kNN
    graphs), which fails on a CPU-only torch and would split a run across devices
    on a GPU machine. Call it only in a throw-away process that runs on the CPU
    (in-process, use :func:`cuda_calls_on_cpu`)."""
    torch.Tensor.cuda = _cuda_noop


@contextlib.contextmanager
def cuda_calls_on_cpu():
    """:func:`keep_cuda_calls_on_cpu` for the duration of a ``with`` block; the real
    ``Tensor.cuda`` is restored after."""
    real = torch.Tensor.cuda
    torch.Tensor.cuda = _cuda_noop
    try:
        yield
    finally:
        torch.Tensor.cuda = real


def mmrec_roles(data, spec: str | None) -> tuple[list[str], str, str | None]:
    """The data's modalities in MMRec's image and text roles: ``spec`` ``"V[,T]"``, or
    image and text when the data has both, else its first two. Returns
    ``(modalities, vision, text)`` (``text`` is ``None`` for one modality)."""
    from mmgraph.data import modality_names
    names = modality_names(data)
    mods = spec.split(",") if spec else (
        ["image", "text"] if {"image", "text"} <= set(names) else names[:2])
    return mods, mods[0], (mods[1] if len(mods) > 1 else None)


def print_run_summary(rows: list[dict[str, Any]]) -> None:
    """Seconds per step of each side and the largest loss difference of a
    :func:`train_side_by_side` run."""
    sps = rows[-1]["seconds_per_step"]
    print(f"seconds per step: ours {sps['ours']:.3f}, MMRec {sps['upstream']:.3f}")
    print(f"max |loss difference| over {len(rows)} steps: "
          f"{max(abs(r['loss_ours'] - r['loss_upstream']) for r in rows):.2e}")


class _Frame:
    """The two methods of MMRec's ``RecDataset`` that model constructors call."""

    def __init__(self, num_users: int, num_items: int):
        self.user_num, self.item_num = num_users, num_items

    def get_user_num(self) -> int:
        return self.user_num

    def get_item_num(self) -> int:
        return self.item_num


class MMRecStub:
    """MMRec's ``config`` (a dict) and training loader, for a model constructor.

    ``stub.config`` holds the keys ``GeneralRecommender`` reads plus
    ``model_options``; ``stub.loader`` answers ``dataset.get_user_num()``,
    ``dataset.get_item_num()`` and ``inter_matrix(form='coo')`` from the
    training edges of ``data``.
    """

    def __init__(self, data, folder: Path, model_options: dict[str, Any],
                 vision: str | None, text: str | None, batch_size: int):
        from mmgraph.data.hetero import num_items, num_users, split_edge_index
        import scipy.sparse as sp

        self.folder = Path(folder)
        U, I = num_users(data), num_items(data)
        e = split_edge_index(data, "train").numpy()
        self.config = {
            "USER_ID_FIELD": "userID", "ITEM_ID_FIELD": "itemID", "NEG_PREFIX": "neg_",
            "train_batch_size": batch_size, "device": torch.device("cpu"), "end2end": False,
            "is_multimodal_model": True, "data_path": str(self.folder.parent) + "/",
            "dataset": self.folder.name,
            "vision_feature_file": f"{vision}_feat.npy" if vision else "none.npy",
            "text_feature_file": f"{text}_feat.npy" if text else "none.npy",
            **model_options,
        }
        matrix = sp.coo_matrix((np.ones(e.shape[1], dtype=np.float32), (e[0], e[1])), shape=(U, I))

        class Loader:
            dataset = _Frame(U, I)

            @staticmethod
            def inter_matrix(form="coo", value_field=None):
                return matrix.asformat(form)

        self.loader = Loader()


def write_features(data, folder: Path, names: Iterable[str]) -> None:
    """``<m>_feat.npy`` for each modality ``m`` of ``data`` into ``folder``."""
    from mmgraph.data.hetero import modality_features
    folder.mkdir(parents=True, exist_ok=True)
    feats = modality_features(data)
    for m in names:
        np.save(folder / f"{m}_feat.npy", feats[m].numpy())


def compare(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
    """Rows ``{name, max_abs, max_rel, scale, norm, rel_norm}`` for every name in
    both dicts: the largest element-wise difference, relative to the largest
    upstream magnitude, and ``||ours - upstream|| / ||upstream||``."""
    rows = []
    for k in ours:
        if k not in theirs:
            continue
        a, b = ours[k].detach().double(), theirs[k].detach().double()
        if a.shape != b.shape:
            raise ValueError(f"{k}: shapes differ, ours {tuple(a.shape)} vs upstream {tuple(b.shape)}")
        diff = (a - b).abs().max().item() if a.numel() else 0.0
        scale = b.abs().max().item() if b.numel() else 0.0
        norm = b.norm().item()
        rows.append({"name": k, "max_abs": diff, "scale": scale,
                     "max_rel": diff / scale if scale > 0 else diff,
                     "norm": norm, "rel_norm": (a - b).norm().item() / norm if norm > 0 else diff})
    return rows


def fixed_batches(data, batch_size: int, steps: int, seed: int = 0, drop_last: bool = True,
                  negatives: bool = True):
    """``steps`` batches (users, positives and, with ``negatives``, one negative
    each) from mmgraph's loader, epoch after epoch, as ``(epoch, batch)``;
    ``drop_last`` keeps every batch at ``batch_size`` rows (MMRec models divide
    their L2 term by the configured batch size)."""
    from mmgraph.sampling import InteractionLoader
    loader = InteractionLoader(data, batch_size=batch_size, shuffle=True,
                               num_neg=1 if negatives else 0,
                               generator=torch.Generator().manual_seed(seed))
    out, epoch = [], 0
    while len(out) < steps:
        for b in loader:
            if drop_last and b.users.numel() < batch_size:
                continue
            out.append((epoch, b))
            if len(out) == steps:
                break
        epoch += 1
    return out


def recall_at(data, score: Callable[[torch.Tensor], torch.Tensor], split: str = "valid",
              k: int = 20) -> float:
    """Recall@k of a scoring function ``users [B] -> [B, I]`` (MMRec protocol)."""
    from mmgraph.evaluation import Evaluator
    return Evaluator(data, ks=(k,)).evaluate(score, split=split)[f"recall@{k}"]


def train_side_by_side(data, ours, theirs, opt_ours, opt_theirs, batches, eval_every: int,
                       their_loss: Callable, their_scorer: Callable, schedulers=(),
                       digits: int = 5) -> list[dict[str, Any]]:
    """N steps of both models on the same ``batches`` (``[(epoch, Batch), ...]``).

    Each step: ours (``sum(ours.loss(b, ours()))``) then theirs
    (``their_loss(b)``, a scalar tensor), each through its own optimiser;
    ``schedulers`` step when the epoch changes. Every ``eval_every`` steps and
    at the last, both are evaluated on valid Recall@20 through mmgraph's
    evaluator (``their_scorer()`` returns ``users [B] -> scores [B, I]``).
    Returns one row per step (losses, recalls where evaluated); the last row
    also holds the seconds per step of each side.
    """
    import time
    rows, epoch, t_o, t_t = [], batches[0][0], 0.0, 0.0
    for step, (ep, b) in enumerate(batches, 1):
        if ep != epoch:
            for s in schedulers:
                s.step()
            epoch = ep
        ours.train(), theirs.train()
        t0 = time.perf_counter()
        loss_o = sum(ours.loss(b, ours()).values())
        opt_ours.zero_grad()
        loss_o.backward()
        opt_ours.step()
        t1 = time.perf_counter()
        loss_t = their_loss(b)
        opt_theirs.zero_grad()
        loss_t.backward()
        opt_theirs.step()
        t_o += t1 - t0
        t_t += time.perf_counter() - t1
        row = {"step": step, "loss_ours": loss_o.item(), "loss_upstream": loss_t.item()}
        if step % eval_every == 0 or step == len(batches):
            ours.eval(), theirs.eval()
            with torch.no_grad():
                out = ours()
                row["recall20_ours"] = recall_at(data, lambda u: ours.score(u, out))
                row["recall20_upstream"] = recall_at(data, their_scorer())
            print(f"step {step:4d}  loss {row['loss_ours']:.{digits}f} / "
                  f"{row['loss_upstream']:.{digits}f}   valid R@20 {row['recall20_ours']:.4f} / "
                  f"{row['recall20_upstream']:.4f}", flush=True)
        rows.append(row)
    rows[-1]["seconds_per_step"] = {"ours": t_o / len(batches), "upstream": t_t / len(batches)}
    return rows
