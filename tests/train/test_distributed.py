"""Data-parallel training (torch.distributed, gloo, 2 CPU processes) = single-process training."""
import json

import pytest
import torch

from mmgraph.models.base import Batch
from mmgraph.train.distributed import shard_batch

# batch 251 (prime) over 2 ranks: every global batch splits unevenly (125 / 126), so the
# loss weights W * B_r / B are exercised, not only the equal-shard case
CFG = dict(epochs=2, batch_size=251, lr=5e-3, progress=False, patience=50, seed=7)


def _train(out_dir=None):
    """Build and train LightGCN on synthetic:tiny; runs in each worker (and in the parent)."""
    from mmgraph.data import load_dataset
    from mmgraph.models import LightGCN, LightGCNConfig
    from mmgraph.train import Trainer, TrainConfig
    data = load_dataset("synthetic:tiny")
    torch.manual_seed(0)
    model = LightGCN(data, LightGCNConfig(num_layers=2))
    trainer = Trainer(model, data, TrainConfig(**CFG, out_dir=out_dir))
    res = trainer.fit()
    # evaluation of the final (best) state, again sharded over ranks
    valid = trainer.evaluate("valid")
    ws = 1 if trainer.dist is None else trainer.dist.world_size
    return {"losses": [h["loss"] for h in res.history], "test": res.test, "valid": valid,
            "world_size": ws, "weights": model.user_emb.weight.detach().clone()}


def test_shard_batch_weights():
    b = Batch(torch.arange(5), torch.arange(5) + 10, torch.arange(5) + 20)
    shards = [shard_batch(b, r, 2) for r in range(2)]
    assert [s.users.tolist() for s, _ in shards] == [[0, 1], [2, 3, 4]]
    assert [s.neg_items.tolist() for s, _ in shards] == [[20, 21], [22, 23, 24]]
    assert [w for _, w in shards] == pytest.approx([0.8, 1.2])  # W * B_r / B, mean 1
    # fewer rows than ranks: the empty rank gets a dummy row with weight 0
    one = Batch(torch.tensor([3]), torch.tensor([4]), None)
    s0, w0 = shard_batch(one, 0, 2)
    s1, w1 = shard_batch(one, 1, 2)
    assert (s0.users.numel(), w0) == (1, 0.0) and (s1.users.tolist(), w1) == ([3], 2.0)
    with pytest.raises(ValueError, match="rank"):
        shard_batch(b, 2, 2)


def test_two_gloo_processes_match_single_process(tmp_path):
    from mmgraph.train import run_distributed
    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # the workers' setting: same kernels, same rounding
    try:
        single = _train()
    finally:
        torch.set_num_threads(threads)
    ranks = run_distributed(_train, 2, str(tmp_path / "dist"), threads_per_process=1)
    assert [r["world_size"] for r in ranks] == [2, 2]
    for r in ranks:
        assert r["losses"] == pytest.approx(single["losses"], abs=1e-5, rel=0)
        for split in ("test", "valid"):
            assert r[split].keys() == single[split].keys()
            for k in single[split]:
                assert r[split][k] == pytest.approx(single[split][k], abs=1e-5), (split, k)
        assert torch.allclose(r["weights"], single["weights"], atol=1e-5)
    # every rank holds identical parameters and identical reduced metrics
    assert torch.equal(ranks[0]["weights"], ranks[1]["weights"])
    assert ranks[0]["test"] == ranks[1]["test"]
    # only rank 0 wrote the run's files (one line per epoch, not one per rank)
    lines = (tmp_path / "dist" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [0, 1]
    res = json.loads((tmp_path / "dist" / "results.json").read_text())
    assert res["extra"]["world_size"] == 2
    assert res["test"]["recall@20"] == pytest.approx(single["test"]["recall@20"], abs=1e-5)


@pytest.mark.slow   # torchrun starts 2 fresh interpreters: ~20-30 s on 2 loaded cores
def test_cli_nproc_launches_torchrun(tmp_path):
    """`mmgraph train --nproc 2` goes through torch.distributed.run (torchrun)."""
    from mmgraph.cli import main
    common = ["train", "--model", "lightgcn", "--data", "synthetic:tiny", "--epochs", "1",
              "--batch-size", "300", "--num-layers", "1", "--progress", "false"]
    assert main(common + ["--out-dir", str(tmp_path / "one")]) == 0
    assert main(common + ["--nproc", "2", "--out-dir", str(tmp_path / "two")]) == 0
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["extra"]["world_size"] == 2 and one["extra"]["world_size"] == 1
    assert two["history"][0]["loss"] == pytest.approx(one["history"][0]["loss"], abs=1e-5)
    for k, v in one["test"].items():
        assert two["test"][k] == pytest.approx(v, abs=1e-5), k
    assert json.loads((tmp_path / "two" / "run.json").read_text())["world_size"] == 2


@pytest.mark.parametrize("name, term, ratio", [
    ("bprmf", None, 1.0),            # means over the batch: exact
    ("bm3", None, 1.0),              # + a batch-independent term and full-matrix dropout masks
    ("lgmrec", "cl", 0.5),           # a sum over the batch: weighted like a mean, / W
    ("vbpr", "reg", 2 ** 0.5),       # unsquared norms of the batch's rows (EmbLoss): ~sqrt(W)
])
def test_shard_gradients_follow_the_documented_semantics(name, term, ratio):
    """docs/distributed.md's table: the weighted shard gradients of one step, averaged
    over W = 2 ranks as DDP does, against the single-process gradient of the same step
    (every rank's generator in the same state, as in a run). ``term=None``: the whole
    loss is exact; otherwise the other terms are exact and ``term``'s gradient is
    ``ratio`` times the single-process one (exactly for a sum over the batch, whose
    shards are equal here; about, along the single-process direction, for the norms)."""
    import warnings

    from mmgraph.data import load_dataset
    from mmgraph.data.hetero import split_edge_index
    from mmgraph.models.base import build_model
    from mmgraph.sampling import NegativeSampler
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_dataset("synthetic:tiny")
    model = build_model(name, data, seed=0)
    model.train()
    g = torch.Generator().manual_seed(1)
    ei = split_edge_index(data, "train")
    idx = torch.randperm(ei.size(1), generator=g)[:256]
    neg = NegativeSampler(data).sample(ei[0, idx], 1, generator=g).view(-1) \
        if model.uses_negatives else None
    batch = Batch(ei[0, idx], ei[1, idx], neg)
    params = [p for p in model.parameters() if p.requires_grad]

    def grad(b, weight, keys):
        torch.manual_seed(123)
        model.zero_grad(set_to_none=True)
        terms = model.loss(b, model())
        (sum(v for k, v in terms.items() if k in keys) * weight).backward()
        return torch.cat([torch.zeros(p.numel()) if p.grad is None else p.grad.flatten()
                          for p in params])

    torch.manual_seed(123)
    keys = set(model.loss(batch, model()))
    groups = [(keys - {term}, 1.0)] + ([({term}, ratio)] if term else [])
    for group, expected in groups:
        full = grad(batch, 1.0, group)
        sharded = sum(grad(*shard_batch(batch, r, 2), group) for r in range(2)) / 2
        assert full.norm() > 0, (name, group)
        along = float((sharded @ full) / (full @ full))
        if name == "vbpr" and group == {term}:
            assert along == pytest.approx(expected, rel=0.05), (name, group, along)
        else:
            assert torch.allclose(sharded, expected * full, rtol=1e-3,
                                  atol=1e-6 * float(full.abs().max())), (name, group, along)


def _train_lattice_epoch_graph(out_dir=None):
    """LATTICE with its default graph_update='epoch': its feature path gets a gradient in
    the first step of an epoch only (the learned graph is rebuilt there)."""
    from mmgraph.data import load_dataset
    from mmgraph.models import LATTICE
    from mmgraph.train import Trainer, TrainConfig
    data = load_dataset("synthetic:tiny?image_dim=16&text_dim=8")
    torch.manual_seed(0)
    Trainer(LATTICE(data), data, TrainConfig(**{**CFG, "epochs": 1}, out_dir=out_dir)).fit()


@pytest.mark.slow   # 2 gloo processes: ~40-75 s on 2 loaded cores
def test_a_parameter_left_unused_after_the_first_step_is_named(tmp_path):
    # without the per-step check DDP fails one step later with "Expected to have finished
    # reduction in the prior iteration", naming no parameter
    from mmgraph.train import run_distributed
    with pytest.raises(Exception) as e:
        run_distributed(_train_lattice_epoch_graph, 2, str(tmp_path / "dist"),
                        threads_per_process=1)
    msg = str(e.value)
    assert "every trainable parameter to receive a gradient" in msg, msg
    assert "image" in msg and "Expected to have finished reduction" not in msg, msg
