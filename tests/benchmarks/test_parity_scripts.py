"""The parity scripts (benchmarks/parity/) run beside an upstream checkout; without
one they say so and exit 0, and their shims stand in for missing packages."""
from pathlib import Path

import pytest
import torch
from scripts import load_script

PARITY = Path(__file__).resolve().parents[2] / "benchmarks" / "parity"


def _load(name):
    return load_script(PARITY / f"{name}.py", f"parity_{name}")


@pytest.mark.parametrize("name", ["mambarec", "bm3", "grcn"])
def test_parity_scripts_skip_without_upstream(name, tmp_path, capsys):
    pytest.importorskip("scipy")
    mod = _load(name)
    assert mod.main(["--data", "synthetic:tiny", "--steps", "1"]) == 0
    assert "skip:" in capsys.readouterr().out
    (tmp_path / "src").mkdir()                       # a folder that is not the repository
    assert mod.main(["--upstream", str(tmp_path), "--data", "synthetic:tiny", "--steps", "1"]) == 0
    assert "does not look like the expected repository" in capsys.readouterr().out


def test_torch_scatter_shim_sums_like_index_add():
    up = _load("_upstream")
    shim = up._torch_scatter_shim()
    src = torch.tensor([1.0, 2.0, 3.0, 4.0])
    idx = torch.tensor([0, 2, 0, 1])
    assert shim.scatter_add(src, idx, dim=0, dim_size=4).tolist() == [4.0, 4.0, 2.0, 0.0]
    assert shim.scatter(src, idx, reduce="sum").tolist() == [4.0, 4.0, 2.0]


def test_fixed_batches_full_size_and_reproducible(tiny):
    up = _load("_upstream")
    a = up.fixed_batches(tiny, 256, 12, seed=3)
    b = up.fixed_batches(tiny, 256, 12, seed=3, negatives=False)
    assert len(a) == 12 and all(x.users.numel() == 256 for _, x in a)
    assert a[-1][0] >= 1                                   # wraps into the next epoch
    again = up.fixed_batches(tiny, 256, 12, seed=3)
    assert all(torch.equal(x.users, y.users) and torch.equal(x.neg_items, y.neg_items)
               for (_, x), (_, y) in zip(a, again))
    assert b[0][1].neg_items is None and a[0][1].neg_items.shape == (256,)
