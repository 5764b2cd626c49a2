"""The contract every registered model keeps, checked for all of them in one place.

A new model is covered by registering it (``ALL`` is the registry): shapes of
``forward`` and ``score``, finite outputs, a gradient for every trainable
parameter, a loss that falls
under Adam on a fixed batch, deterministic evaluation, an exact state_dict
round trip, and a short Trainer run that ranks better than chance. Options
that change a model's structure are listed in ``VARIANTS`` and get the same
checks. Model-specific behaviour (formulas against dense references, graph
schedules) stays in each model's own test file.
"""
from __future__ import annotations

import copy
import io

import pytest
import torch
from marks import requires_cuda

import mmgraph.models  # noqa: F401  (registers every model)
from mmgraph.data import load_dataset
from mmgraph.models.base import MODELS
from mmgraph.sampling import InteractionLoader
from mmgraph.train import Trainer, TrainConfig

#: the zoo this release ships (none may go missing); every registered model is checked
ZOO = ("bm3", "bprmf", "freedom", "grcn", "lattice", "lgmrec", "lightgcn", "mambarec", "mgcn",
       "mmgcn", "rearm", "slmrec", "vbpr")
ALL = tuple(sorted(MODELS))

# structural options worth the same checks (each is one more case)
VARIANTS = {
    "mmgcn": [dict(concat=False, num_layers=2)],
    "grcn": [dict(weight_mode="mean", fusion_mode="mean")],
    "slmrec": [dict(ssl_task="FD"), dict(ssl_task="FM"), dict(ssl_task="FD+FM", fusion="mean")],
    "mgcn": [dict(trainable_features=False)],
    "lgmrec": [dict(cf_model="mf", num_hyper_layers=2)],
    "bm3": [dict(trainable_features=False)],
    "mambarec": [dict(embedding_init="xavier")],
}
CASES = [(n, {}) for n in ALL] + [(n, kw) for n, kws in VARIANTS.items() for kw in kws]
IDS = [n + "".join(f"-{k}={v}" for k, v in kw.items()) for n, kw in CASES]

# parameters whose gradient the method's own maths makes exactly zero (always, or at
# initialisation); they still must receive a finite gradient
ZERO_GRAD_BY_DESIGN = {
    # u . b is added to the positive and the negative score alike and cancels in BPR
    "freedom": ("proj.bias",),
    # DREAM's gate max(relu(<w_c, u>), sigmoid(<w_s, u>)): the channel branch passes a
    # gradient only where it exceeds the spatial one (> 0.5), rare at initialisation
    "mambarec": ("channel_att.weight",),
}


@pytest.fixture(scope="module")
def data():
    """synthetic:tiny (300 users, 200 items, planted signal) with narrow features."""
    return load_dataset("synthetic:tiny?image_dim=64&text_dim=32")


def build(name, data, **kw):
    cls = MODELS[name]
    torch.manual_seed(0)
    return cls(data, cls.config_class(**kw))


def batch_for(model, data, seed=0, batch_size=256, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    loader = InteractionLoader(data, batch_size=batch_size, device=device,
                               num_neg=1 if model.uses_negatives else 0, generator=gen)
    return next(iter(loader))


def step_loss(model, batch):
    terms = model.loss(batch, model())
    assert terms and all(t.dim() == 0 and torch.isfinite(t) for t in terms.values()), terms
    return sum(terms.values())


def test_every_model_is_registered_and_covered():
    assert set(ZOO) <= set(MODELS) and set(ALL) == set(MODELS)
    for name, cls in MODELS.items():
        assert cls.name == name and cls.config_class is not None
        assert isinstance(cls.uses_negatives, bool)


def test_published_learning_rate_schedules():
    """MMRec's constant rate is the trainer's default; the models that publish
    "x0.96 every 50 epochs" say so in their train_defaults, and no model repeats a
    trainer default there."""
    from mmgraph.train import train_config_for
    default = TrainConfig()
    for name, cls in MODELS.items():
        cfg = train_config_for(cls)
        decayed = name in ("mambarec", "lattice", "mgcn")
        assert (cfg.lr_decay, cfg.lr_decay_every) == ((0.96, 50) if decayed else (1.0, 50)), name
        repeated = {k for k, v in cls.train_defaults.items()
                    if k != "lr_decay_every" and getattr(default, k) == v}
        assert not repeated, (name, repeated)


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_forward_and_score_shapes(name, kw, data):
    model = build(name, data, **kw)
    U, I = data["user"].num_nodes, data["item"].num_nodes
    for train in (True, False):
        model.train(train)
        model.on_epoch_start(0)
        with torch.no_grad():
            out = model()
        assert out.user.shape[0] == U and out.item.shape[0] == I
        assert out.user.shape[1] == out.item.shape[1]
        assert torch.isfinite(out.user).all() and torch.isfinite(out.item).all()
    users = torch.tensor([0, 5, U - 1])
    with torch.no_grad():
        scores = model.score(users, out)
    assert scores.shape == (3, I) and torch.isfinite(scores).all()


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_every_parameter_gets_a_gradient(name, kw, data):
    model = build(name, data, **kw)
    model.train()
    model.on_epoch_start(0)
    step_loss(model, batch_for(model, data)).backward()
    zero_ok = ZERO_GRAD_BY_DESIGN.get(name, ())
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            continue
        assert p.grad is not None, f"{name}: {pname} got no gradient (unused parameter?)"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname}"
        if zero_ok and pname.endswith(zero_ok):
            continue
        assert p.grad.abs().sum() > 0, f"{name}: {pname} got an all-zero gradient"


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_loss_falls_under_adam(name, kw, data):
    model = build(name, data, **kw)
    model.train()
    model.on_epoch_start(0)
    batch = batch_for(model, data)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(12):
        loss = step_loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 1e-3, losses


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_eval_is_deterministic_and_state_dict_round_trips(name, kw, data):
    model = build(name, data, **kw)
    model.train()
    model.on_epoch_start(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for seed in range(2):
        loss = step_loss(model, batch_for(model, data, seed=seed))
        opt.zero_grad()
        loss.backward()
        opt.step()
    users = torch.arange(20)
    model.eval()
    with torch.no_grad():
        ref = model.score(users, model())
        assert torch.equal(model.score(users, model()), ref)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(123)
    clone = MODELS[name](data, MODELS[name].config_class(**kw))
    clone.load_state_dict(torch.load(buf))
    clone.eval()
    with torch.no_grad():
        assert torch.equal(clone.score(users, clone()), ref)


@pytest.mark.parametrize("name", ALL)
def test_a_short_run_ranks_better_than_chance(name, data):
    """8 epochs through the Trainer with the model's own training defaults but lr
    1e-2 (40 steps at batch 512): test Recall@20 at least 4x that of a random
    ranking (about 0.1 here)."""
    cls = MODELS[name]
    model = build(name, data)
    extra = dict(cls.train_defaults)
    extra["lr"] = 1e-2
    cfg = TrainConfig(**{**extra, "epochs": 8, "patience": 100, "batch_size": 512,
                         "progress": False, "seed": 0})
    res = Trainer(model, data, cfg).fit()
    assert res.test["recall@20"] > 4 * 0.1, (name, res.test["recall@20"])


@pytest.mark.parametrize("name", [n for n in ALL if MODELS[n].uses_negatives])
def test_bpr_models_name_a_batch_without_negatives(name, data):
    model = build(name, data)
    model.train()
    model.on_epoch_start(0)
    batch = batch_for(model, data)
    no_neg = type(batch)(batch.users, batch.pos_items, None)
    with pytest.raises(ValueError, match="needs sampled negatives"):
        model.loss(no_neg, model())


@requires_cuda
@pytest.mark.parametrize("name", ALL)
def test_cuda_matches_cpu(name, data):
    """``model.to('cuda')`` takes every graph, feature table and buffer along: the
    evaluation embeddings and scores equal the CPU model's, a training step there gives
    a finite gradient on the GPU for every parameter, and a short Trainer run on CUDA
    ranks better than chance (as on the CPU above)."""
    cpu = build(name, data).eval()
    gpu = copy.deepcopy(cpu).to("cuda").eval()
    users = torch.arange(20)
    with torch.no_grad():
        want, got = cpu.score(users, cpu()), gpu.score(users.cuda(), gpu())
    assert got.is_cuda
    torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-5)
    gpu.train()
    gpu.on_epoch_start(0)
    step_loss(gpu, batch_for(gpu, data, device="cuda")).backward()
    for pname, p in gpu.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.is_cuda, f"{name}: {pname}"
            assert torch.isfinite(p.grad).all(), f"{name}: {pname}"
    cls = MODELS[name]
    cfg = TrainConfig(**{**cls.train_defaults, "lr": 1e-2, "epochs": 8, "patience": 100,
                         "batch_size": 512, "progress": False, "seed": 0, "device": "cuda"})
    res = Trainer(build(name, data), data, cfg).fit()
    assert res.test["recall@20"] > 4 * 0.1, (name, res.test["recall@20"])
