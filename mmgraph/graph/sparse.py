r"""A small CSR sparse matrix with a fast, autograd-safe sparse-dense product.

:class:`SparseAdj` is the one sparse type of mmgraph: every graph builder in
:mod:`mmgraph.graph` returns one and every propagation layer in
:mod:`mmgraph.nn` accepts one.

Convention
----------
``SparseAdj`` is a matrix ``A`` of shape ``[num_rows, num_cols]``;
``A.matmul(x)`` is ``A @ x`` with ``x`` of shape ``[num_cols, d]``, so
``A[i, j]`` is the weight with which node ``j``'s features flow into node
``i``'s output. :meth:`SparseAdj.from_edge_index` reads ``edge_index`` in the
same *matrix* convention: ``edge_index[0]`` are row ids, ``edge_index[1]``
column ids (as :func:`torch.sparse_coo_tensor` and
:func:`torch_geometric.utils.to_torch_csr_tensor` do). In PyG's message-passing
terms a ``SparseAdj`` is an ``adj_t``: for symmetric graphs (the user-item
adjacency) the distinction does not matter.

PyG interop
-----------
:meth:`SparseAdj.to_edge_index` gives the graph as PyG message-passing input,
a sorted :class:`torch_geometric.EdgeIndex` and its ``edge_weight``, such that
any ``MessagePassing`` layer (default ``flow='source_to_target'``) computes
``A @ x`` on it: ``edge_index[0]`` are the sources (our columns),
``edge_index[1]`` the targets (our rows), sorted by target, with our row
pointers as its cached compressed index (no sort, no copy of the structure).
``SparseAdj.from_edge_index(*pair, flow='source_to_target')`` reads such a
pair back.

Autograd
--------
:meth:`SparseAdj.matmul` is a custom :class:`torch.autograd.Function`:

.. math::
    Y = A X, \qquad \frac{\partial L}{\partial X} = A^\top \frac{\partial L}{\partial Y},
    \qquad \frac{\partial L}{\partial A_{ij}} = \Big\langle \frac{\partial L}{\partial Y_i}, X_j \Big\rangle .

For a ``symmetric`` matrix the backward pass reuses the forward CSR
(``A^T = A``); for other matrices the transposed CSR structure is computed once
and cached (only a gather of the values is repeated when the values themselves
require gradients). The backward is written with the same Function, so
higher-order gradients work too. Gradients flow to ``x`` and, when
``value.requires_grad`` (learned edge weights), to ``value``.
"""
from __future__ import annotations

import warnings
from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric import EdgeIndex

from ..backend import resolve_spmm_backend

_INT32_MAX = 2 ** 31 - 1
_REDUCE_DTYPES = (torch.float32, torch.float64, torch.bfloat16)
_CSR_WARNING_SILENCED = False


def _sparse_csr(rowptr: Tensor, col: Tensor, value: Tensor, size: tuple[int, int]) -> Tensor:
    """``torch.sparse_csr_tensor`` without invariant checks (the structure is trusted)."""
    global _CSR_WARNING_SILENCED
    if not _CSR_WARNING_SILENCED:
        # PyTorch warns once per process that sparse CSR is "beta"; keep user logs clean.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = torch.sparse_csr_tensor(rowptr, col, value, size, check_invariants=False)
        _CSR_WARNING_SILENCED = True
        return out
    return torch.sparse_csr_tensor(rowptr, col, value, size, check_invariants=False)


class _Structure:
    """Index structure (rowptr, col, size) shared by matrices that differ only in values.

    Holds lazily computed, cached derivatives: expanded row ids, 32-bit index
    copies for the native kernel, and the transposed structure with the value
    permutation that maps this structure's values onto it.
    """

    def __init__(self, rowptr: Tensor, col: Tensor, size: tuple[int, int]):
        self.rowptr = rowptr
        self.col = col
        self.size = (int(size[0]), int(size[1]))
        self._row: Optional[Tensor] = None
        self._index32: Optional[tuple[Tensor, Tensor]] = None
        self._t: Optional[tuple["_Structure", Tensor]] = None  # (transposed, perm)

    @property
    def nnz(self) -> int:
        return self.col.numel()

    @property
    def row(self) -> Tensor:
        if self._row is None:
            counts = self.rowptr[1:] - self.rowptr[:-1]
            self._row = torch.repeat_interleave(
                torch.arange(self.size[0], device=self.col.device), counts,
                output_size=self.nnz)
        return self._row

    def index32(self) -> tuple[Tensor, Tensor]:
        """(rowptr, col) as int32 when they fit (faster MKL / cuSPARSE path)."""
        if self._index32 is None:
            if self.nnz <= _INT32_MAX and max(self.size) <= _INT32_MAX:
                self._index32 = (self.rowptr.to(torch.int32), self.col.to(torch.int32))
            else:
                self._index32 = (self.rowptr, self.col)
        return self._index32

    def transposed(self) -> tuple["_Structure", Tensor]:
        """The transposed structure and ``perm`` with ``value_t = value[perm]``."""
        if self._t is None:
            # Entries are stored row-major, so a stable sort by column yields
            # the column-major order with rows ascending inside each column.
            perm = torch.argsort(self.col, stable=True)
            col_sorted = self.col[perm]
            rowptr_t = torch.searchsorted(
                col_sorted, torch.arange(self.size[1] + 1, device=self.col.device))
            st = _Structure(rowptr_t, self.row[perm], (self.size[1], self.size[0]))
            st._row = col_sorted
            inv = torch.empty_like(perm)
            inv[perm] = torch.arange(perm.numel(), device=perm.device)
            st._t = (self, inv)
            self._t = (st, perm)
        return self._t

    def to(self, device) -> "_Structure":
        device = torch.device(device)
        if self.rowptr.device == device:
            return self
        out = _Structure(self.rowptr.to(device), self.col.to(device), self.size)
        if self._row is not None:
            out._row = self._row.to(device)
        return out


def _spmm_kernel(st: _Structure, backend: str, value: Tensor, x: Tensor) -> Tensor:
    """``A @ x`` for the structure ``st`` with values ``value``; no autograd."""
    if backend == "torch_sparse":
        from torch_sparse import SparseTensor, matmul
        adj = SparseTensor(rowptr=st.rowptr, col=st.col, value=value, sparse_sizes=st.size,
                           is_sorted=True, trust_data=True)
        return matmul(adj, x, reduce="sum")
    if backend == "pyg":
        from torch_geometric.utils import spmm
        return spmm(_sparse_csr(st.rowptr, st.col, value, st.size), x, reduce="sum")
    if x.device.type == "cpu" and x.dtype in _REDUCE_DTYPES:
        # ATen's native CSR spmm-reduce kernel (one parallel loop over rows); on a
        # shared/loaded CPU it is steadier and at least as fast as the MKL path.
        return torch.sparse.mm(_sparse_csr(st.rowptr, st.col, value, st.size), x, "sum")
    rowptr, col = st.index32()  # cuSPARSE / MKL prefer 32-bit indices
    return torch.sparse.mm(_sparse_csr(rowptr, col, value, st.size), x)


class _SpMM(torch.autograd.Function):
    """Autograd for ``A @ x`` with ``A`` given by (structure, values)."""

    @staticmethod
    def forward(ctx, value: Tensor, x: Tensor, st: _Structure, backend: str,
                symmetric: bool) -> Tensor:
        ctx.st, ctx.backend, ctx.symmetric = st, backend, symmetric
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(value, x)
        else:
            ctx.save_for_backward(value)
        return _spmm_kernel(st, backend, value, x)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        saved = ctx.saved_tensors
        value = saved[0]
        st: _Structure = ctx.st
        grad_out = grad_out.contiguous()
        grad_value = grad_x = None
        if ctx.needs_input_grad[1]:
            if ctx.symmetric:  # A^T = A: reuse the forward CSR.
                grad_x = _apply(st, ctx.backend, True, value, grad_out)
            else:
                st_t, perm = st.transposed()
                grad_x = _apply(st_t, ctx.backend, False, value.index_select(0, perm), grad_out)
        if ctx.needs_input_grad[0]:
            x = saved[1]
            grad_value = _sddmm(st, grad_out, x)
        return grad_value, grad_x, None, None, None


def _apply(st: _Structure, backend: str, symmetric: bool, value: Tensor, x: Tensor) -> Tensor:
    if torch.is_grad_enabled() and (x.requires_grad or value.requires_grad):
        return _SpMM.apply(value, x, st, backend, symmetric)
    return _spmm_kernel(st, backend, value, x)


_SDDMM_CHUNK = 1 << 13      # non-zeros per gathered block (never an [nnz, d] buffer)


def _sddmm(st: _Structure, left: Tensor, right: Tensor) -> Tensor:
    """``<left[row_e], right[col_e]>`` for every non-zero ``e``; no autograd. Gathered in
    blocks of :data:`_SDDMM_CHUNK` non-zeros (never an ``[nnz, d]`` buffer)."""
    row, col = st.row, st.col
    if torch.is_grad_enabled() and (left.requires_grad or right.requires_grad):
        # differentiated again (double backward of A @ x): the plain gather form
        return (left.index_select(0, row) * right.index_select(0, col)).sum(-1)
    out = left.new_empty(row.numel(), dtype=torch.promote_types(left.dtype, right.dtype))
    for s in range(0, row.numel(), _SDDMM_CHUNK):
        r, c = row[s:s + _SDDMM_CHUNK], col[s:s + _SDDMM_CHUNK]
        torch.sum(left.index_select(0, r) * right.index_select(0, c), -1,
                  out=out[s:s + _SDDMM_CHUNK])
    return out


class _EdgeDot(torch.autograd.Function):
    """Autograd for ``s_e = <left[row_e], right[col_e]>`` over a structure's non-zeros.

    The backward is two sparse products with the gradient ``g`` as values,
    ``G @ right`` and ``G^T @ left``, instead of scattering ``[nnz, d]`` rows."""

    @staticmethod
    def forward(ctx, left: Tensor, right: Tensor, st: _Structure, backend: str) -> Tensor:
        ctx.st, ctx.backend = st, backend
        ctx.save_for_backward(left, right)
        return _sddmm(st, left, right)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        left, right = ctx.saved_tensors
        st: _Structure = ctx.st
        grad = grad.contiguous()
        grad_left = grad_right = None
        if ctx.needs_input_grad[0]:
            grad_left = _spmm_kernel(st, ctx.backend, grad, right)
        if ctx.needs_input_grad[1]:
            st_t, perm = st.transposed()
            grad_right = _spmm_kernel(st_t, ctx.backend, grad.index_select(0, perm), left)
        return grad_left, grad_right, None, None


def _coalesce(row: Tensor, col: Tensor, value: Tensor, size: tuple[int, int],
              reduce: str = "sum", coalesce: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Sort COO entries row-major, merge duplicates, return (rowptr, col, value)."""
    if reduce not in ("sum", "max", "min", "mean"):
        raise ValueError(f"unknown reduce {reduce!r}; expected 'sum', 'max', 'min' or 'mean'")
    num_rows, num_cols = size
    key = row * num_cols + col
    if key.numel() > 1:
        key, perm = torch.sort(key, stable=True)
        value = value[perm]
    if coalesce and key.numel() > 1:
        key_u, inverse = torch.unique_consecutive(key, return_inverse=True)
        if key_u.numel() != key.numel():
            if reduce == "sum":
                value = value.new_zeros(key_u.numel()).index_add_(0, inverse, value)
            else:
                red = {"max": "amax", "min": "amin", "mean": "mean"}[reduce]
                value = value.new_zeros(key_u.numel()).scatter_reduce_(
                    0, inverse, value, red, include_self=False)
            key = key_u
    row = torch.div(key, num_cols, rounding_mode="floor")
    col = key - row * num_cols
    rowptr = torch.searchsorted(row, torch.arange(num_rows + 1, device=row.device))
    return rowptr, col, value


class SparseAdj:
    r"""A sparse matrix in CSR form: ``(rowptr, col, value, size)``.

    Args:
        rowptr: ``[num_rows + 1]`` long, row pointers.
        col: ``[nnz]`` long, column ids, row-major order.
        value: ``[nnz]`` float values (``None``: all ones).
        size: ``(num_rows, num_cols)``.
        symmetric: whether ``A == A^T`` (structure and values). When true the
            backward pass of :meth:`matmul` reuses the forward CSR. Not
            checked here; :meth:`from_edge_index` can detect it.
        backend: sparse-dense kernel, one of ``'auto'``, ``'torch'``,
            ``'torch_sparse'``, ``'pyg'`` (see :mod:`mmgraph.backend`).

    Example::

        adj = SparseAdj.from_edge_index(edge_index, edge_weight, size=(n, n))
        out = adj.matmul(x)            # [n, d], differentiable w.r.t. x
        adj = adj.to('cuda')
    """

    def __init__(self, rowptr: Tensor, col: Tensor, value: Optional[Tensor] = None,
                 size: Optional[Sequence[int]] = None, symmetric: bool = False,
                 backend: str = "auto", *, _structure: Optional[_Structure] = None):
        if _structure is None:
            if rowptr.dim() != 1 or col.dim() != 1:
                raise ValueError("rowptr and col must be 1-dimensional")
            if size is None:
                raise ValueError("size=(num_rows, num_cols) is required")
            if rowptr.numel() != int(size[0]) + 1:
                raise ValueError(f"rowptr has {rowptr.numel()} entries, expected num_rows + 1 = "
                                 f"{int(size[0]) + 1}")
            _structure = _Structure(rowptr.long(), col.long(), (int(size[0]), int(size[1])))
        self._st = _structure
        self._t_cache: Optional[SparseAdj] = None
        self._cast_cache: dict = {}
        # through the setter: one place checks the value's shape and device
        self.value = (value if value is not None
                      else torch.ones(self._st.nnz, device=self._st.col.device))
        self.symmetric = bool(symmetric)
        self._backend_name = backend
        self.backend = resolve_spmm_backend(backend)

    # ------------------------------------------------------------------ build
    @classmethod
    def from_edge_index(cls, edge_index: Tensor, edge_weight: Optional[Tensor] = None,
                        size: int | Sequence[int] | None = None,
                        symmetric: Optional[bool] = None, *, reduce: str = "sum",
                        coalesce: bool = True, backend: str = "auto",
                        flow: Optional[str] = None) -> "SparseAdj":
        r"""Build ``A`` with ``A[edge_index[0], edge_index[1]] = edge_weight``
        (``flow='source_to_target'``: ``A[edge_index[1], edge_index[0]]``).

        Args:
            edge_index: ``[2, E]`` integer (row ids, column ids), or a
                :class:`torch_geometric.EdgeIndex` (its ``sparse_size`` is the
                default ``size``).
            edge_weight: ``[E]`` values (``None``: ones).
            size: ``n`` (square) or ``(num_rows, num_cols)``; ``None`` infers
                a square size from the largest id (host sync).
            flow: ``None`` or ``'target_to_source'``: the matrix convention
                above; ``'source_to_target'``: ``edge_index`` is PyG
                message-passing input (``edge_index[0]`` sources = columns,
                ``edge_index[1]`` targets = rows), so that ``A @ x`` is what a
                default PyG layer computes on it. Reads back
                :meth:`to_edge_index`; ``size`` is still ``(num_rows, num_cols)``
                of ``A``.
            symmetric: ``None`` detects it (exact comparison with the
                transpose, computed once and cached); ``True``/``False``
                trusts the caller.
            reduce: how duplicate entries merge (``'sum'``, ``'max'``,
                ``'min'``, ``'mean'``).
            coalesce: merge duplicates (set ``False`` only for duplicate-free input).
            backend: see :class:`SparseAdj`.
        """
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
        if edge_index.is_floating_point():
            raise ValueError(f"edge_index must be an integer tensor, got {edge_index.dtype}")
        if flow not in (None, "target_to_source", "source_to_target"):
            raise ValueError(f"flow must be None, 'source_to_target' or 'target_to_source', "
                             f"got {flow!r}")
        transpose = flow == "source_to_target"
        if isinstance(edge_index, EdgeIndex):
            if size is None and None not in edge_index.sparse_size():
                size = tuple(edge_index.sparse_size())
                size = size[::-1] if transpose else size
            edge_index = edge_index.as_tensor()
        edge_index = edge_index.long()
        if transpose:
            edge_index = edge_index.flip(0)
        num_edges = edge_index.size(1)
        if size is None:
            n = int(edge_index.max()) + 1 if num_edges > 0 else 0
            size = (n, n)
        elif isinstance(size, int):
            size = (size, size)
        size = (int(size[0]), int(size[1]))
        if num_edges > 0:
            lo = int(edge_index.min())
            hi_r, hi_c = int(edge_index[0].max()), int(edge_index[1].max())
            if lo < 0 or hi_r >= size[0] or hi_c >= size[1]:
                raise ValueError(f"edge_index ids out of range for size {size}: rows up to {hi_r}, "
                                 f"columns up to {hi_c}, minimum {lo}")
        if edge_weight is None:
            value = torch.ones(num_edges, device=edge_index.device)
        else:
            if edge_weight.dim() != 1 or edge_weight.numel() != num_edges:
                raise ValueError(f"edge_weight must have shape [E={num_edges}], "
                                 f"got {tuple(edge_weight.shape)}")
            value = edge_weight if edge_weight.is_floating_point() else edge_weight.float()
        rowptr, col, value = _coalesce(edge_index[0], edge_index[1], value, size, reduce, coalesce)
        adj = cls(rowptr, col, value, size, symmetric=bool(symmetric), backend=backend)
        if symmetric is None:
            adj.symmetric = adj.is_symmetric()
        return adj

    @classmethod
    def from_dense(cls, dense: Tensor, symmetric: Optional[bool] = None,
                   backend: str = "auto") -> "SparseAdj":
        """Build from a dense ``[num_rows, num_cols]`` matrix (its non-zeros)."""
        if dense.dim() != 2:
            raise ValueError(f"dense must be 2-dimensional, got shape {tuple(dense.shape)}")
        idx = dense.nonzero().t()
        return cls.from_edge_index(idx, dense[idx[0], idx[1]], tuple(dense.shape),
                                   symmetric=symmetric, coalesce=False, backend=backend)

    def with_value(self, value: Tensor, symmetric: Optional[bool] = None) -> "SparseAdj":
        """Same sparsity structure (and its caches), new values ``[nnz]``."""
        return SparseAdj(None, None, value, symmetric=self.symmetric if symmetric is None else symmetric,
                         backend=self._backend_name, _structure=self._st)

    def is_symmetric(self) -> bool:
        """Exact check ``A == A^T`` (host sync; caches the transpose)."""
        if self.size[0] != self.size[1]:
            return False
        st_t, perm = self._st.transposed()
        return (torch.equal(st_t.rowptr, self._st.rowptr) and torch.equal(st_t.col, self._st.col)
                and torch.equal(self.value.detach()[perm], self.value.detach()))

    # ------------------------------------------------------------- properties
    @property
    def value(self) -> Tensor:
        """``[nnz]`` stored values (row-major order)."""
        return self._value

    @value.setter
    def value(self, value: Tensor) -> None:
        if value.dim() != 1 or value.numel() != self._st.nnz:
            raise ValueError(f"value must have shape [nnz={self._st.nnz}], got {tuple(value.shape)}")
        if value.device != self._st.col.device:
            raise ValueError(f"value is on {value.device} but the indices are on "
                             f"{self._st.col.device}")
        self._value = value
        self._cast_cache = {}
        if self._t_cache is not None:
            self._t_cache._t_cache = None
            self._t_cache = None

    @property
    def rowptr(self) -> Tensor:
        return self._st.rowptr

    @property
    def col(self) -> Tensor:
        return self._st.col

    @property
    def row(self) -> Tensor:
        """``[nnz]`` row id of every stored entry (cached)."""
        return self._st.row

    @property
    def size(self) -> tuple[int, int]:
        return self._st.size

    @property
    def shape(self) -> torch.Size:
        return torch.Size(self._st.size)

    @property
    def nnz(self) -> int:
        return self._st.nnz

    @property
    def num_rows(self) -> int:
        return self._st.size[0]

    @property
    def num_cols(self) -> int:
        return self._st.size[1]

    @property
    def device(self) -> torch.device:
        return self._st.col.device

    @property
    def dtype(self) -> torch.dtype:
        return self.value.dtype

    @property
    def edge_index(self) -> Tensor:
        """``[2, nnz]`` (row ids, column ids), row-major order."""
        return torch.stack([self._st.row, self._st.col], dim=0)

    @property
    def edge_weight(self) -> Tensor:
        """``[nnz]`` values, aligned with :attr:`edge_index`."""
        return self.value

    # ------------------------------------------------------------- conversion
    def to(self, device=None, dtype: Optional[torch.dtype] = None) -> "SparseAdj":
        """Move to ``device`` and/or cast the values to ``dtype``."""
        st = self._st.to(device) if device is not None else self._st
        value = self.value
        if device is not None:
            value = value.to(device)
        if dtype is not None:
            value = value.to(dtype)
        if st is self._st and value is self.value:
            return self
        return SparseAdj(None, None, value, symmetric=self.symmetric, backend=self._backend_name,
                         _structure=st)

    def apply(self, fn) -> "SparseAdj":
        """Apply a tensor function (as ``nn.Module._apply`` passes) to indices and values.

        Lets a model carry ``SparseAdj`` graphs through ``model.to(device)`` /
        ``model.double()``; integer index tensors keep their dtype.
        """
        rowptr, col, value = fn(self._st.rowptr), fn(self._st.col), fn(self.value)
        if rowptr is self._st.rowptr and col is self._st.col:
            st = self._st
        elif rowptr.device == self._st.rowptr.device and torch.equal(rowptr, self._st.rowptr) \
                and torch.equal(col, self._st.col):
            st = self._st
        else:
            st = _Structure(rowptr.long(), col.long(), self.size)
        if st is self._st and value is self.value:
            return self
        return SparseAdj(None, None, value, symmetric=self.symmetric, backend=self._backend_name,
                         _structure=st)

    def cpu(self) -> "SparseAdj":
        return self.to("cpu")

    def cuda(self, device=None) -> "SparseAdj":
        return self.to(torch.device("cuda") if device is None else device)

    def double(self) -> "SparseAdj":
        return self.to(dtype=torch.float64)

    def float(self) -> "SparseAdj":
        return self.to(dtype=torch.float32)

    def detach(self) -> "SparseAdj":
        return self.with_value(self.value.detach())

    def to_dense(self) -> Tensor:
        """Dense ``[num_rows, num_cols]`` copy (differentiable w.r.t. the values)."""
        out = self.value.new_zeros(self.size)
        return out.index_put((self._st.row, self._st.col), self.value, accumulate=True)

    def to_torch_sparse(self, layout: torch.layout = torch.sparse_csr) -> Tensor:
        """As a ``torch.sparse`` tensor (``torch.sparse_csr`` or ``torch.sparse_coo``)."""
        if layout == torch.sparse_csr:
            return _sparse_csr(self._st.rowptr, self._st.col, self.value, self.size)
        if layout == torch.sparse_coo:
            return torch.sparse_coo_tensor(self.edge_index, self.value, self.size,
                                           is_coalesced=True, check_invariants=False)
        raise ValueError(f"unsupported layout {layout}; use torch.sparse_csr or torch.sparse_coo")

    def to_edge_index(self, flow: str = "source_to_target") -> tuple[EdgeIndex, Tensor]:
        r"""The graph as PyG message-passing input: ``(edge_index, edge_weight)``
        such that a ``MessagePassing`` layer with this ``flow`` computes ``A @ x``.

        For the default ``flow='source_to_target'``, ``edge_index[0]`` are the
        sources (columns of ``A``) and ``edge_index[1]`` the targets (rows),
        sorted by target (``sort_order='col'``), ``sparse_size =
        (num_cols, num_rows)``; for ``'target_to_source'`` it is ``(rows,
        columns)`` sorted by row. Either way the :class:`~torch_geometric.EdgeIndex`
        holds our row pointers as its compressed index (no sort) and
        ``is_undirected`` when ``A`` is :attr:`symmetric`; ``edge_weight`` is
        :attr:`value` (differentiable when it requires grad).

        Example::

            ei, w = adj.to_edge_index()
            out = LGConv(normalize=False)(x, ei, w)          # == adj @ x
            out = ei.matmul(x, input_value=w, transpose=True)  # == adj @ x
            back = SparseAdj.from_edge_index(ei, w, flow="source_to_target")

        The values are used as given: for a normalised graph such as
        :func:`~mmgraph.graph.bipartite_adjacency` pass ``normalize=False`` to
        layers that would normalise again (``LGConv``, ``GCNConv``, our
        :class:`~mmgraph.nn.LightGCNConv`).
        """
        if flow not in ("source_to_target", "target_to_source"):
            raise ValueError(f"flow must be 'source_to_target' or 'target_to_source', got {flow!r}")
        nr, nc = self.size
        st, value = self._st, self.value.detach()
        with warnings.catch_warnings():   # torch's once-per-process "sparse CSR/CSC is beta"
            warnings.simplefilter("ignore")
            # EdgeIndex keeps a CSR/CSC tensor's compressed index: no sort. With targets
            # = rows of A, our CSR is the CSC of the (source, target) list.
            mat = (torch.sparse_csc_tensor(st.rowptr, st.col, value, (nc, nr), check_invariants=False)
                   if flow == "source_to_target" else
                   torch.sparse_csr_tensor(st.rowptr, st.col, value, (nr, nc), check_invariants=False))
        ei = EdgeIndex(mat, is_undirected=self.symmetric and nr == nc)
        return ei, self.value

    def to_sparse_tensor(self):
        """As a ``torch_sparse.SparseTensor`` (needs the optional torch-sparse package)."""
        try:
            from torch_sparse import SparseTensor
        except ImportError as e:
            raise ImportError("to_sparse_tensor() needs the 'torch-sparse' package") from e
        return SparseTensor(rowptr=self._st.rowptr, col=self._st.col, value=self.value,
                            sparse_sizes=self.size, is_sorted=True, trust_data=True)

    # ------------------------------------------------------------- algebra
    def t(self) -> "SparseAdj":
        """The transpose ``A^T`` (``self`` when symmetric; structure cached)."""
        if self.symmetric:
            return self
        if self._t_cache is not None:
            return self._t_cache
        st_t, perm = self._st.transposed()
        out = SparseAdj(None, None, self.value.index_select(0, perm), symmetric=False,
                        backend=self._backend_name, _structure=st_t)
        if not self.value.requires_grad:
            out._t_cache = self
            self._t_cache = out
        return out

    def sum(self, dim: int = 1) -> Tensor:
        """Row sums (``dim=1``, ``[num_rows]``) or column sums (``dim=0``, ``[num_cols]``)."""
        if dim in (1, -1):
            return self.value.new_zeros(self.size[0]).index_add(0, self._st.row, self.value)
        if dim == 0:
            return self.value.new_zeros(self.size[1]).index_add(0, self._st.col, self.value)
        raise ValueError(f"dim must be 0 or 1, got {dim}")

    def __mul__(self, other: float) -> "SparseAdj":
        if isinstance(other, Tensor) and other.dim() > 0:
            raise ValueError("SparseAdj only supports multiplication by a scalar")
        return self.with_value(self.value * other)

    __rmul__ = __mul__

    def __add__(self, other: "SparseAdj") -> "SparseAdj":
        if not isinstance(other, SparseAdj):
            return NotImplemented
        if other.size != self.size:
            raise ValueError(f"cannot add SparseAdj of sizes {self.size} and {other.size}")
        ei = torch.cat([self.edge_index, other.edge_index], dim=1)
        w = torch.cat([self.value, other.value.to(self.value.dtype)])
        return SparseAdj.from_edge_index(ei, w, self.size,
                                         symmetric=self.symmetric and other.symmetric,
                                         backend=self._backend_name)

    # ------------------------------------------------------------- product
    def _value_like(self, x: Tensor) -> Tensor:
        if x.device != self.device:
            raise ValueError(f"SparseAdj is on {self.device} but the dense operand is on {x.device}; "
                             f"move one of them with .to(device)")
        if self.value.dtype == x.dtype:
            return self.value
        if self.value.requires_grad:
            return self.value.to(x.dtype)
        cached = self._cast_cache.get(x.dtype)
        if cached is None:
            cached = self._cast_cache[x.dtype] = self.value.to(x.dtype)
        return cached

    def matmul(self, x: Tensor) -> Tensor:
        r"""``A @ x`` for ``x`` of shape ``[num_cols, d]`` (or ``[num_cols]``).

        Differentiable w.r.t. ``x`` and (if it requires grad) :attr:`value`.
        No host synchronisation.
        """
        squeeze = x.dim() == 1
        if squeeze:
            x = x.unsqueeze(-1)
        if x.dim() != 2:
            raise ValueError(f"matmul expects x of shape [num_cols, d], got {tuple(x.shape)}")
        if x.size(0) != self.size[1]:
            raise ValueError(f"shape mismatch: SparseAdj is {self.size}, x has {x.size(0)} rows")
        if not x.is_floating_point():
            raise ValueError(f"matmul expects a floating point x, got {x.dtype}")
        if x.dtype in (torch.float16, torch.bfloat16) and self.value.dtype in (torch.float32, torch.float64):
            x = x.to(self.value.dtype)       # under autocast: propagate in the matrix's precision
        with torch.autocast(device_type=x.device.type, enabled=False):
            out = _apply(self._st, self.backend, self.symmetric, self._value_like(x), x)
        return out.squeeze(-1) if squeeze else out

    def __matmul__(self, x: Tensor) -> Tensor:
        return self.matmul(x)

    def edge_dot(self, left: Tensor, right: Optional[Tensor] = None) -> Tensor:
        r"""One score per non-zero: :math:`s_e = \langle \mathbf l_{r_e},
        \mathbf r_{c_e}\rangle` for the non-zero :math:`e` at row :math:`r_e`, column
        :math:`c_e` (edge attention logits, GAT-style routing; SDDMM).

        Equal to ``(left[adj.row] * right[adj.col]).sum(-1)`` without an ``[nnz, d]``
        buffer: the forward gathers blocks of non-zeros, the backward is two sparse
        products with the incoming gradient as values (``G @ right``,
        ``G^T @ left``) instead of scatter-adds of ``[nnz, d]`` rows.

        Args:
            left: ``[num_rows, d]``.
            right: ``[num_cols, d]`` (default: ``left``, for a square matrix).

        Returns:
            ``[nnz]`` in the order of :attr:`row` / :attr:`col`.
        """
        right = left if right is None else right
        if left.dim() != 2 or right.dim() != 2 or left.size(1) != right.size(1):
            raise ValueError(f"edge_dot expects [num_rows, d] and [num_cols, d], got "
                             f"{tuple(left.shape)} and {tuple(right.shape)}")
        if left.size(0) != self.size[0] or right.size(0) != self.size[1]:
            raise ValueError(f"shape mismatch: SparseAdj is {self.size}, left has "
                             f"{left.size(0)} rows and right {right.size(0)}")
        if left.device != self.device or right.device != self.device:
            raise ValueError(f"SparseAdj is on {self.device}, the operands on "
                             f"{left.device} / {right.device}")
        left, right = left.contiguous(), right.contiguous()
        if torch.is_grad_enabled() and (left.requires_grad or right.requires_grad):
            return _EdgeDot.apply(left, right, self._st, self.backend)
        return _sddmm(self._st, left, right)

    def __repr__(self) -> str:
        return (f"SparseAdj(size={self.size}, nnz={self.nnz}, symmetric={self.symmetric}, "
                f"device={self.device}, dtype={self.dtype}, backend={self.backend!r})")


def mix_adjacency(adjs: Sequence[SparseAdj], weights: Sequence[float]) -> SparseAdj:
    r"""Weighted sum :math:`\sum_m w_m A_m` over the union of the sparsity patterns.

    Used for FREEDOM-style modality mixing, e.g.
    ``mix_adjacency([A_image, A_text], [0.1, 0.9])``.
    """
    adjs, weights = list(adjs), list(weights)
    if not adjs or len(adjs) != len(weights):
        raise ValueError(f"need one weight per matrix, got {len(adjs)} matrices and "
                         f"{len(weights)} weights")
    size = adjs[0].size
    for a in adjs[1:]:
        if a.size != size:
            raise ValueError(f"cannot mix SparseAdj of sizes {size} and {a.size}")
    ei = torch.cat([a.edge_index for a in adjs], dim=1)
    w = torch.cat([a.value * float(wt) for a, wt in zip(adjs, weights)])
    return SparseAdj.from_edge_index(ei, w, size, symmetric=all(a.symmetric for a in adjs),
                                     backend=adjs[0]._backend_name)


def modality_mix_weights(modalities: Sequence[str], image_weight: float,
                         weights: Optional[Mapping[str, float]] = None) -> dict[str, float]:
    r"""Weights of per-modality graphs in a mix (:func:`mix_adjacency`), the rule
    FREEDOM and REARM share.

    ``image`` gets ``image_weight`` and the other modalities share
    ``1 - image_weight`` equally (two modalities: ``{image: w, text: 1 - w}``, the
    authors' form); without ``image``, or with one modality, each weighs ``1 / N``.
    ``weights`` (a weight for every modality) replaces the rule.

    Raises:
        ValueError: no modality, or ``weights`` missing one.
    """
    mods = list(modalities)
    if not mods:
        raise ValueError("need at least one modality")
    if weights is not None:
        missing = [m for m in mods if m not in weights]
        if missing:
            raise ValueError(f"modality_weights has no weight for {missing}")
        return {m: float(weights[m]) for m in mods}
    if "image" not in mods or len(mods) == 1:
        return {m: 1.0 / len(mods) for m in mods}
    rest = (1.0 - image_weight) / (len(mods) - 1)
    return {m: (image_weight if m == "image" else rest) for m in mods}


def homography_mix(co_graph: Optional[SparseAdj], sim_graphs: dict[str, SparseAdj],
                   sim_weights: dict[str, float], co_weight: float,
                   sim_scale: float = 1.0) -> SparseAdj:
    r"""``co_weight * C + (1 - co_weight) * sim_scale * sum_m w_m K_m`` (REARM's graph mix).

    Terms with zero weight are left out (their graphs may be ``None`` /
    absent). ``sim_scale`` is ``1/k`` for the authors' similarity
    convention (``K_m`` raw cosine similarities of the ``k`` kept neighbours).
    Built with :func:`mix_adjacency` (union of the patterns,
    coinciding entries summed).
    """
    adjs, weights = [], []
    if co_weight > 0:
        if co_graph is None:
            raise ValueError("co_weight > 0 needs a co-occurrence graph")
        adjs.append(co_graph)
        weights.append(co_weight)
    if co_weight < 1:
        for m, w in sim_weights.items():
            if w > 0:
                adjs.append(sim_graphs[m])
                weights.append((1.0 - co_weight) * w * sim_scale)
    if not adjs:
        raise ValueError("every graph of the mix has zero weight")
    return mix_adjacency(adjs, weights)


__all__ = ["SparseAdj", "mix_adjacency", "modality_mix_weights", "homography_mix"]
