"""PyG-style dataset classes of mmgraph (see :mod:`mmgraph.data.dataset`).

Example::

    from mmgraph.datasets import MultimodalRecDataset
    data = MultimodalRecDataset("~/data/tiktok")[0]
"""
from .data.dataset import CACHE_ENV, MultimodalRecDataset, default_processed_dir

__all__ = ["CACHE_ENV", "MultimodalRecDataset", "default_processed_dir"]
