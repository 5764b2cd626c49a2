"""MultimodalRecDataset: processed once, cached, invalidated, read-only raw folders."""
import os
import time
import warnings

import numpy as np
import pytest
import torch
from torch_geometric.data import HeteroData, InMemoryDataset

from conftest import SHARED_DATA
from test_io import assert_same, toy

from mmgraph.data import CACHE_ENV, load_dataset, split_edge_index, write_mmrec
from mmgraph.datasets import MultimodalRecDataset, default_processed_dir


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No MMGRAPH_CACHE, and a private XDG cache home."""
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def test_processed_once_then_cached(tmp_path, no_env):
    write_mmrec(toy(), tmp_path / "d", "toy")
    ds = MultimodalRecDataset(tmp_path / "d")
    assert isinstance(ds, InMemoryDataset) and len(ds) == 1 and ds.layout == "mmrec"
    assert not ds.from_cache
    assert ds.processed_dir == str(tmp_path / "d" / "processed")      # PyG convention
    pt = tmp_path / "d" / "processed" / ds.processed_file_names[0]
    assert pt.is_file()
    again = MultimodalRecDataset(tmp_path / "d")
    assert again.from_cache
    assert isinstance(again[0], HeteroData)
    assert_same(again[0], toy(), check_name=True)
    assert_same(load_dataset(tmp_path / "d"), toy())                 # load_dataset: same cache
    assert sorted(p.name for p in pt.parent.glob("mmrec-*")) == sorted(ds.processed_file_names)


def test_cache_invalidated_when_a_raw_file_changes(tmp_path, no_env):
    path = tmp_path / "d"
    inter = write_mmrec(toy(), path, "toy")
    first = MultimodalRecDataset(path)
    old = set(first.processed_file_names)
    # same size, same mtime, other content: caught by the content hash
    st = inter.stat()
    text = inter.read_text()
    inter.write_text(text.replace("3\t4\t0\t0\t0", "3\t2\t0\t0\t0"))
    os.utime(inter, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert inter.stat().st_size == st.st_size
    changed = MultimodalRecDataset(path)
    assert not changed.from_cache
    assert split_edge_index(changed[0], "train")[1].tolist() == [0, 1, 2, 3, 2, 0]
    # the stale file is gone, the new one is used next time
    names = {p.name for p in (path / "processed").glob("mmrec-*")}
    assert names == set(changed.processed_file_names) and not names & old
    assert MultimodalRecDataset(path).from_cache
    # a new feature file changes the key too
    np.save(path / "audio_feat.npy", np.ones((5, 2), np.float32))
    ds = MultimodalRecDataset(path)
    assert not ds.from_cache and "x_audio" in ds[0]["item"]
    # and so do the loader's options
    ds = MultimodalRecDataset(path, modalities=["image"])
    assert not ds.from_cache and "x_audio" not in ds[0]["item"]
    assert MultimodalRecDataset(path, modalities=["image"]).from_cache
    assert MultimodalRecDataset(path, force_reload=True).from_cache is False


def test_processing_leaves_other_writers_files_alone(tmp_path, no_env):
    """Processes sharing a cache: one's clean-up of stale versions must not delete another's
    write in flight (its ``*.tmp``), and PyG's in-place pre_transform.pt is not written."""
    path = tmp_path / "d"
    write_mmrec(toy(), path, "toy")
    ds = MultimodalRecDataset(path)
    proc = path / "processed"
    stem = ds.processed_file_names[0]
    live = proc / f"{stem}.abc123.tmp"                 # another process is writing this
    dead = proc / f"{stem}.def456.tmp"                 # a writer killed a day ago
    stale = proc / stem.replace(stem.rsplit("-", 1)[1], "0" * 12)
    for f in (live, dead, stale):
        f.write_bytes(b"x")
    old = time.time() - 86400
    os.utime(dead, (old, old))
    again = MultimodalRecDataset(path, force_reload=True)
    assert not again.from_cache
    assert live.exists() and not dead.exists() and not stale.exists()
    assert not list(proc.glob("pre_*.pt"))


def test_concurrent_first_loads_all_succeed(tmp_path, no_env):
    import subprocess
    import sys
    write_mmrec(toy(), tmp_path / "d", "toy")
    code = ("import sys; from mmgraph.datasets import MultimodalRecDataset as D; "
            "print(D(sys.argv[1])[0]['item'].num_nodes)")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "d")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip() == "5", err
    assert MultimodalRecDataset(tmp_path / "d").from_cache


def test_read_only_folder_uses_user_cache(tmp_path, no_env):
    path = tmp_path / "ro"
    write_mmrec(toy(), path, "toy")
    os.chmod(path, 0o555)
    try:
        ds = MultimodalRecDataset(path)
        assert not (path / "processed").exists()
        assert ds.processed_dir.startswith(str(no_env / "mmgraph"))
        assert MultimodalRecDataset(path).from_cache
    finally:
        os.chmod(path, 0o755)


def test_env_variable_sets_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c"))
    write_mmrec(toy(), tmp_path / "d", "toy")
    assert default_processed_dir(tmp_path / "d").parent == tmp_path / "c"
    ds = MultimodalRecDataset(tmp_path / "d")
    assert list((tmp_path / "c").glob("d-*/mmrec-*.pt"))
    assert not (tmp_path / "d" / "processed").exists()
    assert ds.processed_paths[0].startswith(str(tmp_path / "c"))


def test_cached_load_repeats_the_warnings(tmp_path):
    (tmp_path / "c.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n0\t1\t1\n1\t1\t2\n"
                                      "0\t2\t2\n")
    with pytest.warns(UserWarning, match=r"1 user\(s\) have no training interaction"):
        MultimodalRecDataset(tmp_path)
    with pytest.warns(UserWarning, match=r"1 user\(s\) have no training interaction") as rec:
        ds = MultimodalRecDataset(tmp_path)
    assert ds.from_cache and len(ds.warnings) == 1 and len(rec) == 1


def test_cache_false_writes_nothing(tmp_path, no_env):
    write_mmrec(toy(), tmp_path / "d", "toy")
    load_dataset(tmp_path / "d", cache=False)
    assert not (tmp_path / "d" / "processed").exists()


def test_inter_file_spec_and_layouts(tmp_path):
    inter = write_mmrec(toy(), tmp_path / "d", "toy")
    ds = MultimodalRecDataset(inter)
    assert ds.options["name"] == "toy"
    assert_same(ds[0], toy(), check_name=True)


def test_real_tiktok_second_load_is_fast(tmp_path, monkeypatch):
    src = SHARED_DATA / "tiktok"
    if not (src / "tiktok.inter").is_file():
        pytest.skip("../shared/data/tiktok is not present")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = load_dataset(src)
        t = time.perf_counter()
        ds = MultimodalRecDataset(src)
        second = ds[0]
        elapsed = time.perf_counter() - t
    assert ds.from_cache
    assert_same(first, second)
    assert torch.equal(first["user", "interacts", "item"].rating, second["user", "interacts", "item"].rating)
    assert elapsed < 1.0, elapsed          # ~0.02 s on an idle core


def test_cached_features_are_memory_mapped_and_fingerprinted_without_reading(tmp_path, no_env,
                                                                            monkeypatch):
    """The cache stores each feature matrix's SHA-1 when it is written; a load maps the file
    and a checkpoint's dataset fingerprint then hashes no feature bytes (an ID-only model
    keeps the features out of memory), and equals the fingerprint of the hashed content."""
    import hashlib
    import json

    import mmgraph.data.fingerprint as fp
    from mmgraph.train.checkpoint import dataset_signature
    write_mmrec(toy(), tmp_path / "d", "toy")
    first = MultimodalRecDataset(tmp_path / "d")
    meta = json.loads((tmp_path / "d" / "processed" / first.processed_file_names[1]).read_text())
    x = toy()["item"].x_image
    assert meta["feature_sha1"]["image"] == hashlib.sha1(x.numpy().data).hexdigest()
    ds = MultimodalRecDataset(tmp_path / "d")
    assert ds.from_cache
    data = ds[0]
    assert torch.equal(data["item"].x_image, x)

    feat = data["item"].x_image
    assert fp._DIGESTS[id(feat)] == (feat._version, meta["feature_sha1"]["image"])  # known
    hashed = []
    real = fp.tensor_digest.__globals__["hashlib"].sha1

    def spy(b=b"", *a, **k):
        hashed.append(len(bytes(b)))
        return real(b, *a, **k)
    monkeypatch.setattr(fp, "hashlib", type("H", (), {"sha1": staticmethod(spy)}))
    sig = dataset_signature(data)
    assert sig["features"]["image"]["sha1"] == meta["feature_sha1"]["image"]
    assert hashed == []                                   # no feature byte was read
    monkeypatch.undo()
    # an in-place change is seen (hashed again), and stays private to the process
    data["item"].x_image[0, 0] += 1.0
    assert dataset_signature(data)["features"]["image"]["sha1"] != meta["feature_sha1"]["image"]
    assert torch.equal(MultimodalRecDataset(tmp_path / "d")[0]["item"].x_image, x)
