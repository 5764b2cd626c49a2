r"""Accelerator and sparse-kernel detection.

Small helpers that answer two questions the rest of the package asks:

* which device to run on (:func:`default_device`, :func:`accelerator_info`);
* which sparse-dense matmul kernel :class:`mmgraph.graph.SparseAdj` uses
  (:func:`resolve_spmm_backend`).

Sparse backends
---------------
``'torch'``
    PyTorch's native CSR kernels on a ``torch.sparse_csr_tensor``: on CPU
    ATen's spmm-reduce kernel (``torch.sparse.mm(csr, x, 'sum')``, one
    parallel loop over rows), on CUDA cuSPARSE (``torch.sparse.mm(csr, x)``,
    32-bit indices). Always available.
``'pyg'``
    :func:`torch_geometric.utils.spmm` on the same CSR tensor (PyG's dispatch:
    MKL on x86 CPUs, cuSPARSE on CUDA).
``'torch_sparse'``
    ``torch_sparse.matmul`` on a ``torch_sparse.SparseTensor``; only when the
    optional ``torch-sparse`` package is installed
    (``torch_geometric.typing.WITH_TORCH_SPARSE``).
``'auto'``
    ``'torch_sparse'`` when installed, else ``'torch'``.
"""
from __future__ import annotations

import os
import platform

import torch

SPMM_BACKENDS = ("auto", "torch", "torch_sparse", "pyg")


def has_torch_sparse() -> bool:
    """Whether the optional ``torch-sparse`` package is usable through PyG."""
    try:
        import torch_geometric.typing as pyg_typing
    except ImportError:  # pragma: no cover - torch_geometric is a dependency
        return False
    return bool(getattr(pyg_typing, "WITH_TORCH_SPARSE", False))


def resolve_spmm_backend(backend: str = "auto") -> str:
    """Map ``backend`` (one of :data:`SPMM_BACKENDS`) to a concrete kernel name.

    Raises:
        ValueError: unknown name, or ``'torch_sparse'`` requested but not installed.
    """
    if backend not in SPMM_BACKENDS:
        raise ValueError(f"unknown sparse backend {backend!r}; expected one of {SPMM_BACKENDS}")
    if backend == "auto":
        return "torch_sparse" if has_torch_sparse() else "torch"
    if backend == "torch_sparse" and not has_torch_sparse():
        raise ValueError("sparse backend 'torch_sparse' requested but the 'torch-sparse' package "
                         "is not installed (pip install mmgraph[sparse]); use backend='torch'")
    return backend


def has_cuda() -> bool:
    return torch.cuda.is_available()


def has_mps() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def default_device(prefer: str | None = None) -> torch.device:
    """The device to run on: ``prefer`` if given, else CUDA, else MPS, else CPU.

    The environment variable ``MMGRAPH_DEVICE`` overrides the automatic choice.
    """
    choice = prefer or os.environ.get("MMGRAPH_DEVICE")
    if choice:
        return torch.device(choice)
    if has_cuda():
        return torch.device("cuda")
    if has_mps():
        return torch.device("mps")
    return torch.device("cpu")


def accelerator_info() -> dict:
    """A small dict describing the compute environment (for logs and benchmarks)."""
    info = {
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": has_cuda(),
        "mps": has_mps(),
        "torch_sparse": has_torch_sparse(),
        "spmm_backend": resolve_spmm_backend("auto"),
    }
    try:
        import torch_geometric
        info["torch_geometric"] = torch_geometric.__version__
    except ImportError:  # pragma: no cover
        pass
    if info["cuda"]:
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


__all__ = ["SPMM_BACKENDS", "has_torch_sparse", "resolve_spmm_backend", "has_cuda", "has_mps",
           "default_device", "accelerator_info"]
