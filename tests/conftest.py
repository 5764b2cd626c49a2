from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny():
    """The small synthetic dataset with a planted multimodal signal."""
    from mmgraph.data import load_dataset
    return load_dataset("synthetic:tiny")


@pytest.fixture(scope="session")
def baby_dir():
    path = SHARED_DATA / "baby"
    if not (path / "train.npy").is_file():
        pytest.skip("../shared/data/baby is not present")
    return path


@pytest.fixture(autouse=True, scope="session")
def _one_intra_op_thread():
    """The suite is many small tensor ops: one intra-op thread avoids OpenMP
    barrier stalls when the 2 CI cores are shared (restored afterwards).
    Tests that compare thread counts set their own."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def _processed_cache(tmp_path_factory):
    """Processed dataset caches of the suite go to a temporary folder, never to
    the user's ~/.cache or next to read-only data (restored afterwards)."""
    import os
    before = os.environ.get("MMGRAPH_CACHE")
    os.environ["MMGRAPH_CACHE"] = str(tmp_path_factory.mktemp("mmgraph-cache"))
    yield
    if before is None:
        os.environ.pop("MMGRAPH_CACHE", None)
    else:
        os.environ["MMGRAPH_CACHE"] = before


# The hand-sized data sets of the per-model tests (tests/models/test_<model>.py). They
# are here rather than in a tests/models/conftest.py: conftest files outside packages
# all import as the module "conftest", and tests/data imports SHARED_DATA from it.

@pytest.fixture(scope="module")
def data_12x9():
    """12 users, 9 items, image (7) and text (5) features: BM3, VBPR, FREEDOM, LATTICE."""
    from model_helpers import make_data_12x9
    return make_data_12x9()


@pytest.fixture(scope="module")
def data_24x18():
    """24 users, 18 items, image (20) and text (10) features: MMGCN, GRCN, SLMRec, MGCN,
    LGMRec."""
    from model_helpers import make_data_24x18
    return make_data_24x18()
