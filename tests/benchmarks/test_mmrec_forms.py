"""Parity of LGMRec, BM3 and FREEDOM with their MMRec-form references (benchmarks/mmrec_forms.py).

With randomness switched off, our loss terms and gradients must equal those of
the reference written in MMRec's computational form: a change of the models'
math that breaks parity with MMRec fails here. (Timing is not run.)
"""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import mmrec_forms  # noqa: E402


@pytest.mark.parametrize("name", mmrec_forms.MODELS)
def test_parity_with_mmrec_form(tiny, name):            # `tiny`: conftest's synthetic:tiny
    assert {"x_image", "x_text"} <= set(tiny["item"].keys())
    torch.manual_seed(0)
    res = mmrec_forms.parity_check(name, tiny, batch_size=256)
    assert res["ok"], res["failures"]
    assert res["shared"] >= 6
    assert res["grad_rel"] < 1e-3


def test_parity_detects_a_changed_formula(tiny, monkeypatch):
    """The check is not vacuous: an unsquared -> squared regulariser in BM3 fails it."""
    import mmgraph.models.bm3 as bm3

    l2 = bm3.l2_reg
    monkeypatch.setattr(bm3, "l2_reg", lambda *t, batch_size=None, squared=True:
                        l2(*t, batch_size=batch_size, squared=True))
    res = mmrec_forms.parity_check("bm3", tiny, batch_size=256)
    assert not res["ok"]
    assert any("reg" in f for f in res["failures"])
