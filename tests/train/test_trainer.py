import json
import math

import pytest
import torch

from mmgraph.evaluation import Evaluator
from mmgraph.models import BPRMF, LightGCN, LightGCNConfig
from mmgraph.models.base import Recommender
from mmgraph.train import Trainer, TrainConfig, load_checkpoint, train_config_for


def _cfg(tmp_path=None, **kw):
    base = dict(epochs=4, batch_size=256, progress=False, patience=50, lr=5e-3,
                out_dir=None if tmp_path is None else str(tmp_path))
    base.update(kw)
    return TrainConfig(**base)


def _random_metric(data, ks=(20,)):
    g = torch.Generator().manual_seed(0)
    ev = Evaluator(data, ks=ks)
    return ev.evaluate(lambda u: torch.rand(u.numel(), data["item"].num_nodes, generator=g),
                       split="test")["recall@20"]


def test_lightgcn_learns_beats_random(tiny):
    torch.manual_seed(0)
    model = LightGCN(tiny, LightGCNConfig(num_layers=2))
    res = Trainer(model, tiny, _cfg(epochs=15)).fit()
    rnd = _random_metric(tiny)
    assert res.test["recall@20"] > 2 * rnd + 0.02, (res.test, rnd)
    assert res.best_epoch >= 0 and len(res.history) == 15
    # the model ends in its best-validation state
    again = Trainer(model, tiny, _cfg()).evaluate("valid")
    assert again["recall@20"] == pytest.approx(res.best_valid["recall@20"], abs=1e-6)


def test_bprmf_loss_decreases(tiny):
    torch.manual_seed(0)
    res = Trainer(BPRMF(tiny), tiny, _cfg(epochs=6)).fit()
    losses = [h["loss"] for h in res.history]
    assert losses[-1] < losses[0]


def test_seed_determinism(tiny):
    runs = []
    for _ in range(2):
        torch.manual_seed(123)  # model init differs from the trainer's seed on purpose
        model = LightGCN(tiny, LightGCNConfig(num_layers=1))
        runs.append(Trainer(model, tiny, _cfg(epochs=3, seed=7)).fit())
    assert [h["loss"] for h in runs[0].history] == [h["loss"] for h in runs[1].history]
    assert runs[0].test == runs[1].test


def test_early_stopping_and_files(tiny, tmp_path):
    torch.manual_seed(0)
    model = LightGCN(tiny, LightGCNConfig(num_layers=1))
    # lr 0: the metric never improves after epoch 0 -> stop after `patience` more epochs
    res = Trainer(model, tiny, _cfg(tmp_path, epochs=50, patience=3, lr=0.0)).fit()
    assert res.best_epoch == 0 and res.epochs_run == 4
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [0, 1, 2, 3]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["best_epoch"] == 0 and "recall@20" in results["test"]
    assert "| test |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "best_model.pt").is_file() and (tmp_path / "checkpoint.pt").is_file()


def test_lr_schedule_steps(tiny):
    model = BPRMF(tiny)
    res = Trainer(model, tiny, _cfg(epochs=5, lr=1.0e-2, lr_decay=0.5, lr_decay_every=2)).fit()
    assert [h["lr"] for h in res.history] == pytest.approx([1e-2 * 0.5 ** (e / 2) for e in range(5)])


def test_resume_reproduces_uninterrupted_run(tiny, tmp_path):
    def run(out, epochs, resume=False):
        torch.manual_seed(0)
        model = LightGCN(tiny, LightGCNConfig(num_layers=2))
        return Trainer(model, tiny, _cfg(out, epochs=epochs, resume=resume)).fit()

    full = run(tmp_path / "full", 6)
    run(tmp_path / "part", 3)                       # "interrupted" after 3 epochs
    resumed = run(tmp_path / "part", 6, resume=True)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert resumed.test == full.test and resumed.best_epoch == full.best_epoch
    lines = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 6


def test_resume_errors(tiny, tmp_path):
    torch.manual_seed(0)
    Trainer(LightGCN(tiny, LightGCNConfig(num_layers=1)), tiny, _cfg(tmp_path, epochs=1)).fit()
    with pytest.raises(ValueError, match="config changed in lr"):
        Trainer(LightGCN(tiny, LightGCNConfig(num_layers=1)), tiny,
                _cfg(tmp_path, epochs=2, lr=1e-2, resume=True)).fit()
    with pytest.raises(ValueError, match="another lightgcn config"):
        Trainer(LightGCN(tiny, LightGCNConfig(num_layers=3)), tiny,
                _cfg(tmp_path, epochs=2, resume=True)).fit()
    with pytest.raises(ValueError, match="for model 'lightgcn', not 'bprmf'"):
        Trainer(BPRMF(tiny), tiny, _cfg(tmp_path, epochs=2, resume=True)).fit()
    from mmgraph.data import build_hetero
    other = build_hetero(3, 30, [[0, 1, 2], [0, 1, 2]], [[0], [3]], [[1], [3]])
    with pytest.raises(ValueError, match="another dataset"):
        Trainer(LightGCN(other, LightGCNConfig(num_layers=1)), other,
                _cfg(tmp_path, epochs=2, resume=True)).fit()
    with pytest.raises(FileNotFoundError):
        Trainer(BPRMF(tiny), tiny, _cfg(tmp_path / "none", resume=True)).fit()


def test_keyboard_interrupt_saves_and_resumes(tiny, tmp_path):
    class Interrupting(LightGCN):
        def on_epoch_start(self, epoch):
            if epoch == 2 and not getattr(self, "fired", False):
                self.fired = True
                raise KeyboardInterrupt

    torch.manual_seed(0)
    model = Interrupting(tiny, LightGCNConfig(num_layers=1))
    res = Trainer(model, tiny, _cfg(tmp_path, epochs=4)).fit()
    assert res.interrupted and res.epochs_run == 2
    assert load_checkpoint(tmp_path / "checkpoint.pt")["trainer_state"]["epoch"] == 1
    res2 = Trainer(model, tiny, _cfg(tmp_path, epochs=4, resume=True)).fit()
    assert not res2.interrupted and res2.epochs_run == 4


def test_train_defaults_and_bad_config():
    class Paper(Recommender):
        name = "paper_defaults_probe"
        train_defaults = {"patience": 10, "optimizer": "adamw"}
    cfg = train_config_for(Paper, lr=0.01)
    assert (cfg.patience, cfg.optimizer, cfg.lr) == (10, "adamw", 0.01)
    with pytest.raises(ValueError, match="unknown option"):
        train_config_for(Paper, learning_rate=0.1)
    with pytest.raises(ValueError, match="valid_metric"):
        TrainConfig(valid_metric="recall@50")
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="sgd")


def test_custom_user_model_trains(tiny):
    """A model written outside the package trains with the same trainer."""
    from dataclasses import dataclass
    from mmgraph.models.base import Embeddings, ModelConfig, bpr_terms

    @dataclass
    class Cfg(ModelConfig):
        pass

    class Mine(Recommender):
        config_class = Cfg

        def __init__(self, data, config=None):
            super().__init__(data, config)
            self.u = torch.nn.Embedding(self.num_users, 16)
            self.i = torch.nn.Embedding(self.num_items, 16)

        def forward(self):
            return Embeddings(self.u.weight, self.i.weight)

        def loss(self, batch, out):
            return bpr_terms(batch, out.user, out.item, out.user, out.item, 0.0)

    torch.manual_seed(0)
    res = Trainer(Mine(tiny), tiny, _cfg(epochs=3)).fit()
    assert math.isfinite(res.history[-1]["loss"]) and res.test


def test_resume_from_checkpoint_predating_new_config_fields(tiny, tmp_path):
    """A field added to a config class after a checkpoint was written is accepted at
    its default (old run folders keep working) and refused at any other value."""
    from mmgraph.train.checkpoint import atomic_save, load_checkpoint
    torch.manual_seed(0)
    Trainer(LightGCN(tiny, LightGCNConfig(num_layers=1)), tiny, _cfg(tmp_path, epochs=1)).fit()
    path = tmp_path / "checkpoint.pt"
    ckpt = load_checkpoint(path)
    del ckpt["model_key"]["config"]["reg_weight"]      # as if written before these fields existed
    del ckpt["train_config"]["num_neg"]
    atomic_save(ckpt, path)
    res = Trainer(LightGCN(tiny, LightGCNConfig(num_layers=1)), tiny,
                  _cfg(tmp_path, epochs=2, resume=True)).fit()
    assert res.epochs_run == 2
    atomic_save(ckpt, path)
    with pytest.raises(ValueError, match=r"another lightgcn config \(differs in: reg_weight\)"):
        Trainer(LightGCN(tiny, LightGCNConfig(num_layers=1, reg_weight=0.5)), tiny,
                _cfg(tmp_path, epochs=2, resume=True)).fit()
    with pytest.raises(ValueError, match=r"config changed in num_neg \(1 -> 2\)"):
        Trainer(LightGCN(tiny, LightGCNConfig(num_layers=1)), tiny,
                _cfg(tmp_path, epochs=2, resume=True, num_neg=2)).fit()


def test_changed_features_are_detected(tiny, tmp_path):
    """The dataset fingerprint covers the modality features: resuming (or evaluating) with
    other feature values of the same shape is refused, naming the modality."""
    import copy

    from mmgraph.train import dataset_signature
    torch.manual_seed(0)
    Trainer(LightGCN(tiny, LightGCNConfig(num_layers=1)), tiny, _cfg(tmp_path, epochs=1)).fit()
    other = copy.copy(tiny)
    other["item"].x_image = tiny["item"].x_image.flip(0)          # same shape and dtype
    sig = dataset_signature(other)
    assert sig["features"]["image"]["shape"] == list(tiny["item"].x_image.shape)
    assert sig["features"]["image"] != dataset_signature(tiny)["features"]["image"]
    with pytest.raises(ValueError, match=r"another dataset \(differs in: features\.image\)"):
        Trainer(LightGCN(other, LightGCNConfig(num_layers=1)), other,
                _cfg(tmp_path, epochs=2, resume=True)).fit()


def test_generated_features_fingerprinted_by_recipe_without_building_them():
    """Synthetic features are fingerprinted by their generator arguments: nothing is
    built for it, the fingerprint is the same before and after they are built, and a
    matrix changed in place is hashed again (so the change is detected)."""
    from mmgraph.data import load_dataset
    from mmgraph.data.lazy import is_lazy
    from mmgraph.train import dataset_signature
    data = load_dataset("synthetic:tiny")
    before = dataset_signature(data)
    assert is_lazy(data, "image") and "recipe" in before["features"]["image"]
    x = data["item"].x_image                                   # built now
    assert not is_lazy(data, "image") and dataset_signature(data) == before
    other = load_dataset("synthetic:tiny?image_noise=0.5")
    assert dataset_signature(other)["features"]["image"] != before["features"]["image"]
    assert dataset_signature(other)["features"]["text"] == before["features"]["text"]
    x[0, 0] += 1.0                                             # in place: no recipe any more
    after = dataset_signature(data)["features"]["image"]
    assert "recipe" not in after and "sha1" in after and after != before["features"]["image"]


def test_all_finite_check_allocates_nothing_of_the_weights_size():
    """The per-epoch weight check says what ``isfinite(p).all()`` says without the
    ``abs`` copy and the masks of ``p``'s size that cost 1.7x a feature table."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from mmgraph.train.trainer import _all_finite

    class Sizes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.numels = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            ins = {a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor)}
            self.numels += [t.numel() for t in (out if isinstance(out, (tuple, list)) else [out])
                            if isinstance(t, torch.Tensor)      # new memory, not views
                            and t.untyped_storage().data_ptr() not in ins]
            return out

    x = torch.randn(300, 40)
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        for bad in (None, float("nan"), float("inf"), -float("inf"), 3e38):
            y = x.to(dtype)
            if bad is not None:
                y[123, 7] = bad
            mode = Sizes()
            with mode:
                got = _all_finite(y)
            assert bool(got) == bool(torch.isfinite(y).all()), (dtype, bad)
            assert got.dim() == 0 and max(mode.numels) <= 2, mode.numels
    assert bool(_all_finite(torch.zeros(0, 4)))


def test_gradients_are_not_held_between_epochs(tiny):
    """The last step's gradients are dropped at the end of each epoch (evaluation and
    checkpoints run without them); the next epoch's steps are unaffected."""
    seen = []

    class Probe(Trainer):
        def evaluate(self, *a, **k):
            seen.append([p.grad is None for p in self.model.parameters()])
            return super().evaluate(*a, **k)
    torch.manual_seed(0)
    model = LightGCN(tiny, LightGCNConfig(num_layers=1))
    res = Probe(model, tiny, _cfg(epochs=2)).fit()
    assert res.epochs_run == 2 and len(seen) == 4 and all(all(s) for s in seen)
    assert all(p.grad is None for p in model.parameters())
