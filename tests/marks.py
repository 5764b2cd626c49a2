"""Skip marks shared by the suite (``from marks import requires_cuda``; tests/ is on
sys.path through tests/conftest.py): one definition per optional capability."""
import pytest
import torch

from mmgraph.backend import has_torch_sparse

#: a CUDA device is present (the CPU-only CI skips these; a GPU machine runs them)
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

#: the optional compiled torch-sparse extension (detected at import, never required)
requires_torch_sparse = pytest.mark.skipif(not has_torch_sparse(),
                                           reason="torch-sparse not installed")
