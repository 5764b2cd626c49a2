"""mmgraph.train.allocator: glibc malloc tuning keeps freed large blocks in the process."""
import pytest
import torch

from mmgraph.train import TrainConfig, Trainer, tuned_malloc
from mmgraph.train.allocator import glibc_available

glibc = pytest.mark.skipif(not glibc_available(), reason="needs glibc malloc (Linux)")


_PROBE = """
import resource, torch
from mmgraph.train import tuned_malloc

def refaults(mib, rounds=3):
    n = mib * 2 ** 20 // 4
    for _ in range(4):                                # warm-up: the heap settles in a few rounds
        torch.empty(n).fill_(1.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        torch.empty(n).fill_(1.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

with tuned_malloc():                                  # on and off before any large block
    pass
out = [refaults(64)]                                  # defaults are back: mmap/munmap each round
with tuned_malloc() as active:
    out += [int(active), refaults(64)]
    with tuned_malloc():
        pass
    out.append(refaults(64))                          # the nested exit keeps it on
print(*out)
"""


@glibc
def test_tuned_malloc_stops_refaulting_and_restores():
    """In a fresh process (the heap state of this one depends on earlier tests)."""
    import subprocess
    import sys
    res = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    default, active, tuned, nested = map(int, res.stdout.split())
    pages = 64 * 2 ** 20 // 4096                      # 16,384 pages per 64 MiB round
    assert default >= 3 * pages * 0.9                 # glibc defaults (restored): every round
    assert active == 1
    # reused from the heap (at most one of the three rounds may still fault: glibc can
    # move a freed block's place once more before it settles)
    assert tuned <= pages * 1.05 and nested <= pages * 1.05


def test_tuned_malloc_disabled_is_a_no_op():
    with tuned_malloc(False) as active:
        assert active is False


def test_trainer_tune_malloc_gives_identical_results(tiny):
    from mmgraph.models import BM3
    runs = []
    for tune in (True, False):
        torch.manual_seed(0)
        res = Trainer(BM3(tiny), tiny, TrainConfig(epochs=2, batch_size=512, progress=False,
                                                   tune_malloc=tune)).fit()
        runs.append([h["loss"] for h in res.history] + [res.test["recall@20"]])
    assert runs[0] == runs[1]


def test_tune_malloc_is_opt_in(tiny, monkeypatch):
    """Nothing process-wide is changed by default: fit enters tuned_malloc(False)."""
    import mmgraph.train.trainer as trainer_mod
    from mmgraph.models import LightGCN
    seen = []
    real = trainer_mod.tuned_malloc

    def spy(enable=True):
        seen.append(enable)
        return real(enable)
    monkeypatch.setattr(trainer_mod, "tuned_malloc", spy)
    assert TrainConfig().tune_malloc is False
    Trainer(LightGCN(tiny), tiny, TrainConfig(epochs=1, batch_size=1024, progress=False)).fit()
    Trainer(LightGCN(tiny), tiny, TrainConfig(epochs=1, batch_size=1024, progress=False,
                                               tune_malloc=True)).fit()
    assert seen == [False, True]
