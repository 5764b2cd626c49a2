r"""Cosine k-nearest-neighbour graphs over item (or user) features: exact, or approximate (faiss).

Two methods (``method=`` of every builder here, :data:`KNN_METHODS`):

``'exact'`` (default): the similarity matrix is never materialised: rows are
processed in chunks, ``sim = x_n[chunk] @ x_n^T`` (one large GEMM,
``[c, n]``) followed by an exact top-k (on long rows through a block-max
prefilter: only the ``k + 1`` blocks of 32 columns with the largest maxima can
hold the ``k + 1`` largest values), so memory grows as ``O(n x chunk)`` and the
run time is dominated by the matrix product (``2 n^2 d`` FLOPs in all). The
same code runs on CPU and CUDA. Use it up to a few hundred thousand items (or
on a GPU): it is exact, deterministic and needs nothing beyond torch.

``'faiss'`` (the ``ann`` extra, ``pip install mmgraph[ann]``): approximate
cosine kNN through a faiss IVF-Flat index with inner-product metric on the
L2-normalised float32 rows, on CPU (inputs on another device are copied to
CPU, results come back to ``x.device``). Spherical k-means (fixed seed, 10
iterations on at most ``256 nlist`` rows) puts the rows into
``nlist ~ 4 sqrt(n)`` inverted lists (at most ``n // 39``: faiss wants 39
training rows per centroid); each row is then compared only with the rows of
the ``nprobe`` lists nearest to it (default ``min(nlist, 32)``), about
``n (n nprobe / nlist) d`` multiply-adds instead of ``2 n^2 d``, plus the
k-means ``~10 min(n, 256 nlist) nlist d``. Use it for millions of items on a
CPU, where the exact ``n^2`` product takes hours. Its per-row list scan runs
several times below GEMM speed, so the gain only grows with ``n`` (on one
thread about 2x at 20,000 x 384 and 3x at 60,000 x 128, see
``benchmarks/knn_graph.py``): below ~10^5 items, or on a GPU, keep
``'exact'``. Recall depends on how clustered the features are (near 1 on
clustered features, poor on structureless i.i.d. noise); raise ``nprobe`` for
more recall, lower it for speed. Small inputs (``n <= 4096``, or fewer than
2 lists) use an exact flat faiss index instead. Rows for which the probed
lists hold fewer than ``k`` candidates are completed by an exact search of
those rows only, so every row has ``k`` valid neighbours. faiss runs with
``torch.get_num_threads()`` OpenMP threads for the call.

Conventions (as MMRec's FREEDOM / LATTICE / MambaRec code):

* similarity is cosine (rows L2-normalised; all-zero rows have similarity 0
  with everything);
* ``include_self=True`` (default): a node is a candidate of its own
  neighbourhood like any other node, so it normally is its own nearest
  neighbour (MMRec). ``include_self=False`` masks the diagonal;
* **ties are broken deterministically by the lower node index**: among equal
  similarities the smaller column id is kept, and each row's neighbours are
  listed by decreasing similarity, then increasing id. (Implemented by a
  ``topk(k + 1)`` that detects rows whose ``k``-th and ``k+1``-th similarities
  are equal, and an exact re-selection for those rows only.) ``'faiss'``
  lists its rows in the same order, but which of several tied candidates it
  keeps is faiss's choice (all-zero rows excepted: their neighbours are the
  lowest ids, as with ``'exact'``);
* ``k`` is clamped to the number of candidates (``n`` or ``n - 1``).

The edge list is in matrix convention: ``edge_index[0]`` is the node ``i``,
``edge_index[1]`` one of its neighbours ``j``; ``A[i, j] = w``;
``SparseAdj.matmul`` aggregates neighbours into ``i`` (MMRec's
``torch.sparse.mm(adj, x)``). For PyG message passing over the stored edge
type use ``edge_index.flip(0)`` (messages flow from ``j`` to ``i``).

Normalisation of the kNN adjacency (degrees are row sums, as in MMRec):
``'sym'``: ``D^{-1/2} A D^{-1/2}``; ``'rw'``: ``D^{-1} A``; ``None``: raw.
With binary weights (``weighted=False``, FREEDOM/MambaRec) every row sums to
``k``, so ``'sym'`` gives ``1/k`` on every edge; ``weighted=True`` keeps the
cosine similarities (LATTICE).
"""
from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from ..data.hetero import ITEM, feature_key, modality_names, num_items, similar_edge_type
from ..data.mapped import release_pages
from ._cache import cached
from .sparse import SparseAdj, mix_adjacency

KNN_NORMALIZATIONS = ("sym", "rw", None)
#: ``method`` values of :func:`knn_topk` and the builders on it
KNN_METHODS = ("exact", "faiss")

#: ``method='faiss'``: inputs up to this many rows use an exact flat index
FAISS_FLAT_MAX_N = 4096
#: ``method='faiss'``: faiss wants at least this many training rows per k-means centroid
FAISS_MIN_POINTS_PER_LIST = 39
#: ``method='faiss'``: default number of inverted lists probed per query (capped at ``nlist``)
FAISS_DEFAULT_NPROBE = 32
#: ``method='faiss'``: k-means seed (deterministic index)
FAISS_SEED = 1234

#: default memory budget (bytes) for one ``[chunk, n]`` similarity block
DEFAULT_BLOCK_BYTES = 256 * 2 ** 20
#: inputs up to this size are L2-normalised into a copy; larger ones are scaled
#: column-wise on each block instead (no second copy of a big feature matrix)
NORMALIZED_COPY_BYTES = 512 * 2 ** 20


def default_chunk_size(n: int, element_size: int = 4,
                       block_bytes: int = DEFAULT_BLOCK_BYTES) -> int:
    """Rows per block so that one ``[chunk, n]`` block stays within ``block_bytes``."""
    return int(max(1, min(n, block_bytes // max(1, n * element_size))))


#: block width of the top-k prefilter (see :func:`_block_topk`)
PREFILTER_BLOCK = 32
#: the prefilter runs when a row has at least this many blocks per kept value
#: (below that, a plain ``topk`` is as fast)
PREFILTER_MIN_RATIO = 64


def _block_topk(sim: Tensor, kk: int, block: int = PREFILTER_BLOCK) -> tuple[Tensor, Tensor]:
    """Exact top-``kk`` values of each row of ``sim``, faster than ``topk`` on long rows.

    Each row is cut into blocks of ``block`` columns; only the ``kk`` blocks with
    the largest maxima can hold the row's ``kk`` largest values (if a top value
    sat in another block, the ``kk`` chosen block maxima would be ``kk`` larger
    or equal values), so ``topk`` runs on ``kk * block`` candidates (plus the
    ragged tail). The returned *values* equal ``sim.topk(kk)``'s; among equal
    values the indices may differ, which :func:`_select_ties` resolves.
    """
    c, n = sim.shape
    nb = n // block
    if nb < PREFILTER_MIN_RATIO * kk:
        return sim.topk(kk, dim=1, largest=True, sorted=True)
    main = sim[:, :nb * block].view(c, nb, block)
    bidx = main.amax(dim=2).topk(kk, dim=1, sorted=False).indices  # [c, kk]
    cand = main.gather(1, bidx.unsqueeze(-1).expand(c, kk, block)).reshape(c, kk * block)
    offs = torch.arange(block, device=sim.device)
    cols = (bidx.unsqueeze(-1) * block + offs).reshape(c, kk * block)
    if nb * block < n:
        cand = torch.cat([cand, sim[:, nb * block:]], dim=1)
        tail = torch.arange(nb * block, n, device=sim.device).expand(c, -1)
        cols = torch.cat([cols, tail], dim=1)
    vals, pos = cand.topk(kk, dim=1, largest=True, sorted=True)
    return vals, cols.gather(1, pos)


def _select_ties(sim: Tensor, vals: Tensor, idx: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Make the top-k set deterministic (lower index wins) and order rows canonically."""
    if vals.size(1) > k:
        tie = vals[:, k - 1] == vals[:, k]
        vals = vals[:, :k].contiguous()
        idx = idx[:, :k].contiguous()
        if bool(tie.any()):  # rare for real features; one sync per block
            rows = tie.nonzero().view(-1)
            sub = sim.index_select(0, rows)
            thr = vals.index_select(0, rows)[:, k - 1:k]
            gt = sub > thr
            need = k - gt.sum(1, keepdim=True)
            eq = sub == thr
            sel = gt | (eq & (eq.cumsum(1) <= need))
            cols = sel.nonzero()[:, 1].view(-1, k)
            vals[rows] = sub.gather(1, cols)
            idx[rows] = cols
    # canonical order within a row: similarity descending, then index ascending
    return _canonical_order(vals, idx)


def _canonical_order(vals: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """Order each row by decreasing value, then increasing index."""
    order = idx.argsort(dim=1)
    idx, vals = idx.gather(1, order), vals.gather(1, order)
    order = vals.argsort(dim=1, descending=True, stable=True)
    return vals.gather(1, order), idx.gather(1, order)


def check_knn_method(method: str, name: str = "method") -> str:
    """``method`` if it is one of :data:`KNN_METHODS`, else a ``ValueError`` naming ``name``."""
    if method not in KNN_METHODS:
        raise ValueError(f"{name} must be one of {KNN_METHODS}, got {method!r}")
    return method


def faiss_nlist(n: int) -> int:
    """Inverted lists of the ``method='faiss'`` index for ``n`` rows.

    ``round(4 sqrt(n))``, at least 1 and at most ``n // 39`` (39 training rows
    per centroid); fewer than 2 means an exact flat index is used.
    """
    return int(max(1, min(round(4 * math.sqrt(n)), n // FAISS_MIN_POINTS_PER_LIST)))


def _import_faiss():
    try:
        import faiss
    except ImportError as e:  # also when sys.modules['faiss'] is None
        raise ImportError("method='faiss' needs the faiss library: pip install 'mmgraph[ann]' "
                          "(or pip install faiss-cpu)") from e
    return faiss


#: A kNN build shows a progress bar on a terminal's stderr once it has run this many
#: seconds (large catalogues: minutes); never in logs, pipes or tests.
_PROGRESS_DELAY = 3.0


def _exact_rows(base: Tensor, k: int, include_self: bool, chunk_size: int,
                inv: Optional[Tensor] = None, rows: Optional[Tensor] = None
                ) -> tuple[Tensor, Tensor]:
    """Exact cosine top-``k`` of every row of ``base`` (``rows=None``) or of the rows
    ``rows``, in blocks of ``chunk_size`` rows.

    ``inv=None``: ``base`` is L2-normalised; else ``base`` is raw and ``inv`` its
    inverse row norms, applied to each similarity block (no normalised copy).
    """
    n = base.size(0)
    kk = min(k + 1, n)
    m = n if rows is None else rows.numel()
    out_v = base.new_empty(m, k)
    out_i = torch.empty(m, k, dtype=torch.long, device=base.device)
    base_t = base.t()
    bar = tqdm(total=m, desc=f"kNN graph ({n:,} rows)", unit="row", leave=False,
               delay=_PROGRESS_DELAY, disable=None)       # None: only on a terminal
    for s in range(0, m, chunk_size):
        e = min(m, s + chunk_size)
        bar.update(e - s)
        r = None if rows is None else rows[s:e]
        sim = (base[s:e] if r is None else base.index_select(0, r)) @ base_t
        if inv is not None:
            sim.mul_(inv)
        if not include_self:
            if r is None:
                sim.diagonal(offset=s).fill_(float("-inf"))
            else:
                sim[torch.arange(e - s, device=base.device), r] = float("-inf")
        vals, idx = _block_topk(sim, kk)
        vals, idx = _select_ties(sim, vals, idx, k)
        del sim
        if inv is not None:
            vals = vals * (inv[s:e] if r is None else inv[r]).unsqueeze(1)
        out_v[s:e] = vals
        out_i[s:e] = idx
    bar.close()
    return out_v, out_i


def _faiss_topk(x: Tensor, inv: Tensor, k: int, include_self: bool, nprobe: Optional[int],
                chunk_size: Optional[int], block_bytes: int) -> tuple[Tensor, Tensor]:
    """``method='faiss'`` of :func:`knn_topk` (inputs validated, ``k`` clamped)."""
    faiss = _import_faiss()
    n, d = x.shape
    xn = (x.detach() * inv.unsqueeze(1)).to(device="cpu", dtype=torch.float32).contiguous()
    zero = (inv == 0).cpu()
    xnp = xn.numpy()
    nlist = faiss_nlist(n)
    kk = k if include_self else k + 1  # <= n (k is clamped)
    old_threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, torch.get_num_threads()))
    try:
        if n > FAISS_FLAT_MAX_N and nlist >= 2:
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = FAISS_SEED
            index.cp.spherical = True
            index.cp.verbose = False
            index.train(xnp)
            index.add(xnp)
            index.nprobe = int(min(nlist, FAISS_DEFAULT_NPROBE if nprobe is None else nprobe))
        else:
            index = faiss.IndexFlatIP(d)
            index.add(xnp)
        dist, ids = index.search(xnp, kk)
        del index
    finally:
        faiss.omp_set_num_threads(old_threads)
    vals = torch.from_numpy(dist)
    idx = torch.from_numpy(ids).long()
    if not include_self:
        # drop the row itself; where faiss did not return it, drop the last result
        drop = idx == torch.arange(n).unsqueeze(1)
        drop[:, -1] |= ~drop.any(dim=1)
        keep = ~drop
        vals, idx = vals[keep].view(n, k), idx[keep].view(n, k)
    if bool(zero.any()):
        # all-zero rows: similarity 0 with everything, ties -> the lowest ids (as 'exact')
        zrows = zero.nonzero().view(-1)
        ar = torch.arange(k)
        zi = ar.expand(zrows.numel(), k)
        if not include_self:
            zi = zi + (ar.unsqueeze(0) >= zrows.unsqueeze(1)).long()
        idx[zrows] = zi
        vals[zrows] = 0.0
    missing = (idx < 0).any(dim=1)
    if bool(missing.any()):
        # the probed lists held fewer than k candidates: exact search of those rows only
        rows = missing.nonzero().view(-1)
        if chunk_size is None:
            chunk_size = default_chunk_size(n, xn.element_size(), block_bytes)
        vals[rows], idx[rows] = _exact_rows(xn, k, include_self, chunk_size, rows=rows)
    vals, idx = _canonical_order(vals, idx)
    return vals.to(device=x.device, dtype=x.dtype), idx.to(x.device)


def knn_topk(x: Tensor, k: int = 10, *, chunk_size: Optional[int] = None,
             include_self: bool = True, normalized_copy: Optional[bool] = None,
             block_bytes: int = DEFAULT_BLOCK_BYTES, method: str = "exact",
             nprobe: Optional[int] = None) -> tuple[Tensor, Tensor]:
    r"""Cosine top-``k`` neighbours of every row of ``x``, exact or approximate.

    ``sim(i, j) = <x_i, x_j> / (|x_i| |x_j|)`` (0 if either row is all zero);
    row ``i`` gets the ``k`` columns ``j`` with the largest ``sim(i, j)``.

    Args:
        x: ``[n, dim]`` features (any device).
        k: neighbours per row (clamped to the number of candidates).
        chunk_size: rows per block (default: a ``[chunk, n]`` block of at most
            ``block_bytes``, 256 MiB); with ``'faiss'``, of the exact
            completion of rows with too few candidates.
        include_self: whether a row may be its own neighbour (default, MMRec).
        normalized_copy: ``True``: L2-normalise ``x`` into a copy once;
            ``False``: multiply each block by the inverse column norms instead
            (saves a copy of ``x``); ``None``: copy if ``x`` is at most 512 MiB.
            (``'exact'`` only: ``'faiss'`` always indexes a normalised float32
            copy on CPU.)
        block_bytes: memory budget of one similarity block.
        method: ``'exact'`` (default): chunked GEMM + top-k, ``2 n^2 d`` FLOPs,
            any device. ``'faiss'``: approximate, a faiss IVF-Flat
            inner-product index on CPU (``nlist`` from :func:`faiss_nlist`,
            fixed k-means seed), about ``n (n nprobe / nlist) d`` plus the
            k-means; exact flat index for ``n <= 4096``. Needs the ``ann``
            extra (``pip install mmgraph[ann]``). See the module docs.
        nprobe: ``'faiss'``: inverted lists scanned per row (default
            ``min(nlist, 32)``; larger: higher recall, slower). Ignored by
            ``'exact'`` and by the flat index.

    Returns:
        ``(values [n, k], indices [n, k])``: cosine similarities and neighbour
        ids, each row by decreasing similarity then increasing id.

    Raises:
        ValueError: unknown ``method``, bad shapes / values.
        ImportError: ``method='faiss'`` without faiss installed.
    """
    check_knn_method(method)
    if nprobe is not None and nprobe < 1:
        raise ValueError(f"nprobe must be >= 1, got {nprobe}")
    if method == "faiss":
        _import_faiss()
    if x.dim() != 2:
        raise ValueError(f"x must have shape [n, dim], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be floating point, got {x.dtype}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if x.dtype in (torch.float16, torch.bfloat16) and x.device.type == "cpu":
        x = x.float()
    n = x.size(0)
    k = min(k, n if include_self else n - 1)
    if k <= 0 or n == 0:
        return x.new_zeros(n, 0), torch.zeros(n, 0, dtype=torch.long, device=x.device)
    norm = x.norm(dim=1)
    # NaN/inf anywhere in a row makes its norm non-finite: one cheap check, no [n, dim] temporary
    if not bool(torch.isfinite(norm).all()):
        raise ValueError("x holds NaN or infinite values (or rows whose norm overflows)")
    inv = torch.where(norm > 0, 1.0 / norm.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(norm))
    if method == "faiss":
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        return _faiss_topk(x, inv, k, include_self, nprobe, chunk_size, block_bytes)
    if normalized_copy is None:
        normalized_copy = x.numel() * x.element_size() <= NORMALIZED_COPY_BYTES
    base = x * inv.unsqueeze(1) if normalized_copy else x
    if chunk_size is None:
        chunk_size = default_chunk_size(n, x.element_size(), block_bytes)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return _exact_rows(base, k, include_self, chunk_size, None if normalized_copy else inv)


def normalize_edge_weight(edge_index: Tensor, edge_weight: Tensor, num_nodes: int,
                          normalization: Optional[str] = "sym") -> Tensor:
    r"""Normalise a (possibly directed) graph's weights with row-sum degrees.

    ``'sym'``: ``w_ij / sqrt(d_i d_j)``; ``'rw'``: ``w_ij / d_i``; ``None``:
    unchanged; ``d_i = sum_j w_ij`` (MMRec's convention for kNN graphs).
    Nodes with non-positive degree get weight 0.
    """
    if normalization not in KNN_NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; expected one of "
                         f"{KNN_NORMALIZATIONS}")
    if normalization is None:
        return edge_weight
    row, col = edge_index[0], edge_index[1]
    deg = edge_weight.new_zeros(num_nodes).index_add_(0, row, edge_weight)
    pos = deg > 0
    if normalization == "rw":
        inv = torch.where(pos, 1.0 / deg.clamp_min(1e-30), torch.zeros_like(deg))
        return inv[row] * edge_weight
    dis = torch.where(pos, deg.clamp_min(1e-30).rsqrt(), torch.zeros_like(deg))
    return dis[row] * edge_weight * dis[col]


def knn_graph(x: Tensor, k: int = 10, chunk_size: Optional[int] = None,
              normalization: Optional[str] = "sym", *, include_self: bool = True,
              weighted: bool = False, normalized_copy: Optional[bool] = None,
              block_bytes: int = DEFAULT_BLOCK_BYTES, method: str = "exact",
              nprobe: Optional[int] = None) -> tuple[Tensor, Tensor]:
    r"""Cosine kNN graph of the rows of ``x``: ``(edge_index [2, n*k], edge_weight [n*k])``.

    Args:
        x: ``[n, dim]`` features.
        k: neighbours per node (default 10, MMRec's ``knn_k``).
        chunk_size: rows per block (see :func:`knn_topk`).
        normalization: ``'sym'`` (default), ``'rw'`` or ``None``.
        include_self: a node may be its own neighbour (default, MMRec).
        weighted: ``False``: binary adjacency before normalisation (FREEDOM,
            MambaRec); ``True``: cosine similarities (LATTICE).
        method: ``'exact'`` (default; ``2 n^2 d`` FLOPs, any device) or
            ``'faiss'`` (approximate IVF-Flat on CPU, about
            ``n (n nprobe / nlist) d`` plus k-means; for millions of items);
            see :func:`knn_topk`.
        nprobe: ``'faiss'``: inverted lists scanned per row (default
            ``min(nlist, 32)``).

    ``edge_index[0]`` = node, ``edge_index[1]`` = neighbour (matrix
    convention, see module docs), sorted by node then rank.
    """
    if normalization not in KNN_NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; expected one of "
                         f"{KNN_NORMALIZATIONS}")
    vals, idx = knn_topk(x, k, chunk_size=chunk_size, include_self=include_self,
                         normalized_copy=normalized_copy, block_bytes=block_bytes,
                         method=method, nprobe=nprobe)
    n, kk = idx.shape
    row = torch.arange(n, device=idx.device).repeat_interleave(kk)
    edge_index = torch.stack([row, idx.reshape(-1)], dim=0)
    w = vals.reshape(-1).clone() if weighted else torch.ones(n * kk, dtype=vals.dtype,
                                                             device=vals.device)
    return edge_index, normalize_edge_weight(edge_index, w, n, normalization)


def knn_adjacency(x: Tensor, k: int = 10, chunk_size: Optional[int] = None,
                  normalization: Optional[str] = "sym", *, include_self: bool = True,
                  weighted: bool = False, backend: str = "auto", method: str = "exact",
                  nprobe: Optional[int] = None) -> SparseAdj:
    """:func:`knn_graph` as an ``[n, n]`` :class:`SparseAdj` (``method``: ``'exact'`` or
    ``'faiss'``, see :func:`knn_topk`)."""
    ei, w = knn_graph(x, k, chunk_size, normalization, include_self=include_self,
                      weighted=weighted, method=method, nprobe=nprobe)
    n = x.size(0)
    return SparseAdj.from_edge_index(ei, w, (n, n), symmetric=False, coalesce=False,
                                     backend=backend)


def _store(data: HeteroData, edge_type: tuple[str, str, str], adj: SparseAdj) -> None:
    data[edge_type].edge_index = adj.edge_index
    data[edge_type].edge_weight = adj.value


def modality_knn_graph(data: HeteroData, modality: str | Mapping[str, float] | Sequence[str],
                       k: int = 10, normalization: Optional[str] = "sym", store: bool = True, *,
                       include_self: bool = True, weighted: bool = False,
                       chunk_size: Optional[int] = None, relation: Optional[str] = None,
                       device=None, cache: bool = True, backend: str = "auto",
                       method: str = "exact", nprobe: Optional[int] = None) -> SparseAdj:
    r"""Item-item kNN graph from item modality features ``data['item'].x_<modality>``.

    Args:
        data: the project's :class:`HeteroData`.
        modality: a modality name (``'image'``); or ``{modality: weight}`` for a
            weighted mix of the per-modality (normalised) graphs,
            :math:`\sum_m w_m \hat A_m` (FREEDOM: ``{'image': 0.1, 'text': 0.9}``);
            or a list of names (equal weights).
        k, normalization, include_self, weighted, chunk_size: see :func:`knn_graph`.
        store: write the graph(s) into ``data`` as edge types
            ``('item', 'similar_<m>', 'item')`` with ``edge_index`` and
            ``edge_weight``; a mix is stored as ``'similar_<m1>_<m2>...'``
            (or ``relation``), besides each modality's own graph.
        device: compute on this device (default: the features' device).
        cache: reuse a graph built earlier from the same, unchanged features
            with the same parameters (``method`` and ``nprobe`` included).
        method: ``'exact'`` (default) or ``'faiss'`` (approximate, CPU, the
            ``ann`` extra; for millions of items), see :func:`knn_topk`.
        nprobe: ``'faiss'``: inverted lists scanned per row (default
            ``min(nlist, 32)``).

    Returns:
        ``[n_items, n_items]`` :class:`SparseAdj` (``A @ x`` aggregates an
        item's neighbours).
    """
    if isinstance(modality, str):
        key = feature_key(modality)
        if key not in data[ITEM]:
            raise KeyError(f"the data has no item modality {modality!r} (data['item'].{key}); "
                           f"available: {modality_names(data)}")
        x = data[ITEM][key]
        if x.size(0) != num_items(data):
            raise ValueError(f"{key} has {x.size(0)} rows but there are {num_items(data)} items")

        def build() -> SparseAdj:
            xx = x if device is None else x.to(device)
            adj = knn_adjacency(xx, k, chunk_size, normalization, include_self=include_self,
                                weighted=weighted, backend=backend, method=method,
                                nprobe=nprobe)
            # a memory-mapped dataset's features were read once for the graph: their
            # pages need not stay resident beside the model's own copies
            release_pages(x)
            return adj

        ckey = ("modality_knn", modality, k, normalization, include_self, weighted,
                None if device is None else str(device), backend, method, nprobe)
        adj = cached(data, ckey, (x,), build, cache)
        if store:
            _store(data, (ITEM, relation, ITEM) if relation else similar_edge_type(modality), adj)
        return adj

    weights = dict(modality) if isinstance(modality, Mapping) else {m: 1.0 / len(modality)
                                                                     for m in modality}
    if not weights:
        raise ValueError("no modality given")
    adjs = [modality_knn_graph(data, m, k, normalization, store, include_self=include_self,
                               weighted=weighted, chunk_size=chunk_size, device=device,
                               cache=cache, backend=backend, method=method, nprobe=nprobe)
            for m in weights]
    if len(adjs) == 1 and next(iter(weights.values())) == 1.0:
        return adjs[0]
    adj = mix_adjacency(adjs, list(weights.values()))
    if store:
        rel = relation or "similar_" + "_".join(weights)
        _store(data, (ITEM, rel, ITEM), adj)
    return adj


__all__ = ["check_knn_method", "knn_topk", "knn_graph", "knn_adjacency", "normalize_edge_weight",
           "modality_knn_graph", "default_chunk_size", "faiss_nlist", "DEFAULT_BLOCK_BYTES",
           "KNN_METHODS"]
