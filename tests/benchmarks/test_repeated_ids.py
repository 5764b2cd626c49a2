"""benchmarks/repeated_ids.py runs end to end on tiny data, checks that both forms agree,
and leaves the library's CPU path switched on afterwards."""
from pathlib import Path

import pytest
from scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "repeated_ids.py"


@pytest.mark.parametrize("model, terms", [("mambarec", {"bpr", "cl", "mmd", "reg"}),
                                          ("mgcn", {"bpr", "cl", "reg"})])
def test_repeated_ids_script_runs_and_restores_the_cpu_path(tiny, model, terms):
    # measure() raises SystemExit when a loss term or a gradient differs between the
    # [B, B] form and the distinct-rows form: running it is the model-level parity check
    ri = load_script(SCRIPT, "repeated_ids_script")
    import mmgraph.losses as losses_mod
    original = losses_mod._compactable
    r = ri.measure(model, tiny, batches=2, reps=1, seed=0)
    assert losses_mod._compactable is original
    assert r["[B, B]"] > 0 and r["distinct rows"] > 0
    assert terms <= set(r["terms"])
    assert 1 <= r["items"] < 2048 and 1 <= r["users"] < 2048     # the batches repeat ids


def test_repeated_ids_script_refuses_a_form_that_changes_the_loss(tiny, monkeypatch):
    # a broken compaction (weights dropped) must be caught by the script's check
    ri = load_script(SCRIPT, "repeated_ids_script_broken")
    import mmgraph.losses as losses_mod
    real = losses_mod.compact_rows

    def unweighted(ids, *rows):
        counts, kept = real(ids, *rows)
        return counts.new_ones(counts.shape), kept

    monkeypatch.setattr(losses_mod, "compact_rows", unweighted)
    with pytest.raises(SystemExit, match="differs"):
        ri.measure("mambarec", tiny, batches=2, reps=1, seed=0)
