"""Memory-mapped features: a model's copy and a kNN build hand the data's pages back.

The processed dataset cache is loaded memory-mapped; a trainable feature table
(``ModalityFeatures``) and a kNN graph read the data's matrix once, after which
its pages must not stay resident beside the model's copy (they doubled the
memory of BM3's / FREEDOM's 110 MiB image table). Values never change and
in-place changes of the data stay private.
"""
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmgraph.data import load_dataset, write_mmrec
from mmgraph.data.mapped import file_mapped, release_pages
from mmgraph.datasets import MultimodalRecDataset

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="page residency is read from Linux's /proc/self/pagemap")


def resident_pages(t: torch.Tensor) -> int:
    """Whole pages inside ``t``'s bytes that are mapped in this process (the 'present'
    bit of /proc/self/pagemap; the two pages ``t`` shares with its neighbours are not
    counted)."""
    page = os.sysconf("SC_PAGE_SIZE")
    lo, hi = -(-t.data_ptr() // page), (t.data_ptr() + t.numel() * t.element_size()) // page
    try:
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(lo * 8)
            v = np.frombuffer(f.read(8 * (hi - lo)), dtype=np.uint64)
    except OSError:
        pytest.skip("/proc/self/pagemap is not readable here")
    return int(((v >> np.uint64(63)) & np.uint64(1)).sum())


def _fs_type(path: Path) -> str:
    best, fs = "", ""
    for line in Path("/proc/mounts").read_text().splitlines():
        mnt, typ = line.split()[1], line.split()[2]
        if str(path).startswith(mnt) and len(mnt) > len(best):
            best, fs = mnt, typ
    return fs


@pytest.fixture(scope="module")
def tiny_features():
    return load_dataset("synthetic:tiny")


@pytest.fixture
def cached_dir(tmp_path, tiny_features):
    """synthetic:tiny (200 items x 4096-d image features) as a processed dataset folder,
    one per test (the kernel does not page out pages that another mapping of the same
    file, e.g. a previous test's, holds)."""
    path = tmp_path / "d"
    if _fs_type(path) in ("tmpfs", "ramfs"):
        pytest.skip("the temporary folder is in memory: its pages cannot be handed back")
    write_mmrec(tiny_features, path, "tiny")
    MultimodalRecDataset(path, processed_dir=path.parent / "processed")      # write the cache
    return path


def _mapped_data(cached_dir):
    ds = MultimodalRecDataset(cached_dir, processed_dir=cached_dir.parent / "processed")
    assert ds.from_cache
    data = ds[0]
    assert file_mapped(data["item"].x_image)
    return data


def test_release_pages_keeps_values_and_private_changes(cached_dir):
    data = _mapped_data(cached_dir)
    x = data["item"].x_image
    want = x.clone()
    x[3, 5] += 1.0                                     # a private change (copy-on-write)
    want[3, 5] += 1.0
    assert resident_pages(x) > 100
    assert release_pages(x)
    assert resident_pages(x) <= 1                      # the changed page stays
    assert torch.equal(x, want)                        # read again: same values, change kept
    # ordinary memory is never advised
    y = torch.randn(1000, 100)
    assert not file_mapped(y) and not release_pages(y)
    assert not release_pages(torch.zeros(0))


def test_trainable_table_of_a_mapped_dataset_is_resident_once(cached_dir):
    from mmgraph.nn import ModalityFeatures
    data = _mapped_data(cached_dir)
    x = data["item"].x_image
    want = x.clone()
    release_pages(x)
    feats = ModalityFeatures({"image": x}, trainable=True)
    table = feats["image"]
    assert table.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
    assert torch.equal(table, want)
    assert resident_pages(x) == 0                      # the data's pages were handed back
    feats.reset_parameters()
    assert resident_pages(x) == 0
    with torch.no_grad():
        table.add_(1.0)                                # training changes the table only
    assert torch.equal(x, want) and not torch.equal(table, want)


def test_knn_graph_of_a_mapped_dataset_hands_the_pages_back(cached_dir, tiny_features):
    from mmgraph.graph import modality_knn_graph
    data = _mapped_data(cached_dir)
    x = data["item"].x_image
    adj = modality_knn_graph(data, "image", k=5, store=False, cache=False)
    assert resident_pages(x) == 0
    # the same features in ordinary memory give the same graph
    want = modality_knn_graph(tiny_features, "image", k=5, store=False, cache=False)
    assert torch.equal(adj.edge_index, want.edge_index) and torch.equal(adj.value, want.value)
