"""BM3, VBPR, FREEDOM and LATTICE: parity of their graphs and losses with dense
re-computations of the MMRec forms, and their options (the contract every model keeps
is in models/test_contract.py)."""

import pytest
import torch
import torch.nn.functional as F

from mmgraph.data.hetero import build_hetero
from mmgraph.models.bm3 import BM3, BM3Config
from mmgraph.models.freedom import FREEDOM, FREEDOMConfig, freedom_modality_weights
from mmgraph.models.lattice import LATTICE, LATTICEConfig, mean_bipartite_adjacency
from mmgraph.models.vbpr import VBPR, VBPRConfig
from mmgraph.sampling import InteractionLoader

MODEL_CLASSES = [BM3, VBPR, FREEDOM, LATTICE]


# ----------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def small():
    """A hand-sized dataset (dense references are cheap): 12 users, 9 items, 2 modalities."""
    g = torch.Generator().manual_seed(0)
    U, I = 12, 9
    users = torch.arange(U).repeat_interleave(3)
    items = torch.randint(0, I, (3 * U,), generator=g)
    items[:I] = torch.arange(I)                     # every item has an interaction
    ei = torch.unique(torch.stack([users, items]), dim=1)
    feats = {"image": torch.randn(I, 7, generator=g), "text": torch.randn(I, 5, generator=g)}
    return build_hetero(U, I, ei, features=feats)


def _batch(data, num_neg=1, batch_size=256, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return next(iter(InteractionLoader(data, batch_size=batch_size, num_neg=num_neg,
                                       generator=gen)))


def _batch_for(model, data, **kw):
    return _batch(data, num_neg=1 if model.uses_negatives else 0, **kw)


def _dense_lightgcn_adj(data):
    U, I = data["user"].num_nodes, data["item"].num_nodes
    ei = data["user", "interacts", "item"].edge_index
    A = torch.zeros(U + I, U + I)
    A[ei[0], ei[1] + U] = 1.0
    A[ei[1] + U, ei[0]] = 1.0
    d = A.sum(1)
    dis = torch.where(d > 0, d.pow(-0.5), torch.zeros_like(d))
    return dis[:, None] * A * dis[None, :]


def _dense_knn(x, k, weighted):
    """MMRec's build_sim + top-k (+ binary for FREEDOM) as a dense [n, n] matrix."""
    xn = x / x.norm(dim=1, keepdim=True)
    sim = xn @ xn.t()
    val, idx = sim.topk(k, dim=1)
    out = torch.zeros_like(sim)
    return out.scatter(1, idx, val if weighted else torch.ones_like(val))


def _dense_sym(adj):
    d = adj.sum(1)
    dis = torch.where(d > 0, d.pow(-0.5), torch.zeros_like(d))
    return dis[:, None] * adj * dis[None, :]


# ----------------------------------------------------------------------------- contract

@pytest.mark.parametrize("cls", [BM3, FREEDOM, LATTICE], ids=lambda c: c.name)
def test_frozen_features_are_buffers(cls, tiny):
    cfg = cls.config_class(trainable_features=False)
    model = cls(tiny, cfg)
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.startswith("features") for n in names)
    assert not any(k.startswith("feat_") for k in model.state_dict())
    trained = cls(tiny)
    assert sum(p.numel() for p in trained.parameters()) > sum(p.numel() for p in model.parameters())


def test_config_validation():
    with pytest.raises(ValueError, match="dropout"):
        BM3Config(dropout=1.0)
    with pytest.raises(ValueError, match="dropout"):
        FREEDOMConfig(dropout=-0.1)
    with pytest.raises(ValueError, match="graph_update"):
        LATTICEConfig(graph_update="never")
    with pytest.raises(ValueError, match="ui_adjacency"):
        LATTICEConfig(ui_adjacency="rw")
    with pytest.raises(ValueError, match="reg_weight"):
        VBPRConfig(reg_weight=-1.0)


def test_unknown_modality_is_rejected(small):
    for cls in MODEL_CLASSES:
        with pytest.raises(ValueError, match=r"modalities \['audio'\] not in the data "
                                             r"\(available: \['image', 'text'\]\)"):
            cls(small, cls.config_class(modalities=("audio",)))


def test_models_that_need_features_reject_an_empty_selection(small):
    from mmgraph.models.mambarec import MambaRec, MambaRecConfig
    for cls in (VBPR, FREEDOM, LATTICE, MambaRec):
        cfg_cls = MambaRecConfig if cls is MambaRec else cls.config_class
        with pytest.raises(ValueError, match="needs at least one item modality feature"):
            cls(small, cfg_cls(modalities=()))


# ----------------------------------------------------------------------------- BM3

def test_bm3_trainer_batches_have_no_negatives(tiny):
    from mmgraph.train import TrainConfig, Trainer
    torch.manual_seed(0)
    model = BM3(tiny)
    seen = []
    original = model.loss

    def spy(batch, out):
        seen.append(batch.neg_items)
        return original(batch, out)

    model.loss = spy
    res = Trainer(model, tiny, TrainConfig(epochs=1, batch_size=1024, progress=False)).fit()
    assert seen and all(n is None for n in seen)
    assert set(res.history[0]["terms"]) == {"rec", "align", "mask", "reg"}


@pytest.mark.parametrize("how", ["id_only_data", "ablation"])
def test_bm3_without_modalities_trains(small, how):
    """BM3 w/o v&t: ID-only data (the real Baby interactions have no features) or
    ``modalities=()`` on multimodal data; the multimodal terms are exactly 0."""
    if how == "id_only_data":
        data = build_hetero(12, 9, small["user", "interacts", "item"].edge_index)
        cfg = BM3Config(embedding_dim=8, dropout=0.0)
    else:
        data, cfg = small, BM3Config(embedding_dim=8, dropout=0.0, modalities=())
    torch.manual_seed(0)
    model = BM3(data, cfg)
    assert model.modalities == [] and model.features is None
    assert sum(p.numel() for p in model.parameters()) == (12 + 9) * 8 + 8 * 8 + 8
    model.reset_parameters()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    batch = _batch_for(model, data)
    assert batch.neg_items is None
    losses = []
    for _ in range(20):
        terms = model.loss(batch, model())
        assert terms["align"].item() == 0.0 and terms["mask"].item() == 0.0
        loss = sum(terms.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1


def test_bm3_loss_matches_dense_reference(small):
    """With dropout 0 the targets equal the (detached) online views: check every term."""
    torch.manual_seed(0)
    model = BM3(small, BM3Config(dropout=0.0, num_layers=2, reg_weight=0.3, cl_weight=1.5))
    model.train()
    batch = _batch(small, num_neg=0)
    out = model()
    terms = model.loss(batch, out)

    A = _dense_lightgcn_adj(small)
    E0 = torch.cat([model.user_emb.weight, model.item_emb.weight]).detach()
    H = (E0 + A @ E0 + A @ A @ E0) / 3
    U = small["user"].num_nodes
    h_u, h_i = H[:U], H[U:] + model.item_emb.weight.detach()
    P = model.predictor
    u, i = batch.users, batch.pos_items
    with torch.no_grad():
        cos = lambda a, b: F.cosine_similarity(a, b, dim=-1).mean()
        rec = -cos(P(h_u[u]), h_i[i]) - cos(P(h_i[i]), h_u[u])
        align = mask = 0.0
        for m in ("image", "text"):
            hm = model.projectors[m].proj(small["item"][f"x_{m}"][i])
            align = align - cos(P(hm), h_i[i])
            mask = mask - cos(P(hm), hm)
        reg = (h_u.norm() + h_i.norm()) / small["item"].num_nodes
    torch.testing.assert_close(terms["rec"], rec)
    torch.testing.assert_close(terms["align"], 1.5 * align)
    torch.testing.assert_close(terms["mask"], 1.5 * mask)
    torch.testing.assert_close(terms["reg"], 0.3 * reg)
    # scores use the predictor outputs
    torch.testing.assert_close(out.user, P(h_u), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.item, P(h_i), rtol=1e-5, atol=1e-6)


def test_bm3_stop_gradient_on_targets(small):
    """'mask' only trains through the online branch: the projection's gradient equals
    that of -cos(P(h_m), sg(h_m))."""
    torch.manual_seed(0)
    model = BM3(small, BM3Config(dropout=0.0, modalities=("text",), trainable_features=False))
    batch = _batch(small, num_neg=0)
    model.loss(batch, model())["mask"].backward()
    got = model.projectors["text"].proj.weight.grad.clone()
    model.zero_grad()
    x = small["item"].x_text[batch.pos_items]
    h = model.projectors["text"].proj(x)
    ref = -2.0 * F.cosine_similarity(model.predictor(h), h.detach(), dim=-1).mean()
    ref.backward()
    torch.testing.assert_close(got, model.projectors["text"].proj.weight.grad)
    # without the stop-gradient the gradient would differ
    model.zero_grad()
    h = model.projectors["text"].proj(x)
    (-2.0 * F.cosine_similarity(model.predictor(h), h, dim=-1).mean()).backward()
    assert not torch.allclose(got, model.projectors["text"].proj.weight.grad)


def test_bm3_dropout_targets_are_random_and_detached(small):
    torch.manual_seed(0)
    model = BM3(small, BM3Config(dropout=0.5))
    batch = _batch(small, num_neg=0)
    out = model()
    a = model.loss(batch, out)["rec"]
    b = model.loss(batch, out)["rec"]
    assert not torch.equal(a, b)                       # fresh dropout masks each call


# ----------------------------------------------------------------------------- VBPR

def test_vbpr_scores_and_loss_match_formula(small):
    torch.manual_seed(0)
    model = VBPR(small, VBPRConfig(embedding_dim=4, reg_weight=0.5))
    out = model()
    f = torch.cat([small["item"].x_image, small["item"].x_text], dim=1)
    item = torch.cat([model.item_factors, f @ model.content_proj.weight.t()
                      + model.content_proj.bias], dim=1)
    torch.testing.assert_close(out.item, item)
    assert out.user.shape == (12, 8) and out.item.shape == (9, 8)
    batch = _batch(small, num_neg=1)
    terms = model.loss(batch, out)
    u, p, n = out.user[batch.users], out.item[batch.pos_items], out.item[batch.neg_items]
    bpr = -F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
    reg = (u.norm() + p.norm() + n.norm()) / u.size(0)
    torch.testing.assert_close(terms["bpr"], bpr)
    torch.testing.assert_close(terms["reg"], 0.5 * reg)
    # several negatives per positive
    batch3 = _batch(small, num_neg=3)
    assert batch3.neg_items.shape[1] == 3
    assert torch.isfinite(model.loss(batch3, out)["bpr"])


def test_vbpr_needs_negatives(small):
    model = VBPR(small)
    with pytest.raises(ValueError, match="neg_items"):
        model.loss(_batch(small, num_neg=0), model())


# ----------------------------------------------------------------------------- FREEDOM

def test_freedom_modality_weights():
    assert freedom_modality_weights(["image", "text"]) == {"image": 0.1, "text": 0.9}
    assert freedom_modality_weights(["text"]) == {"text": 1.0}
    w = freedom_modality_weights(["audio", "image", "text"], 0.2)
    assert w["image"] == 0.2 and w["audio"] == pytest.approx(0.4) == w["text"]
    assert freedom_modality_weights(["a", "b"]) == {"a": 0.5, "b": 0.5}
    assert freedom_modality_weights(["image", "text"], weights={"image": 0.3, "text": 0.7}) == \
        {"image": 0.3, "text": 0.7}


def test_freedom_item_graph_matches_dense_reference(small):
    model = FREEDOM(small, FREEDOMConfig(knn_k=3))
    x = small["item"]
    ref = 0.1 * _dense_sym(_dense_knn(x.x_image, 3, False)) + \
        0.9 * _dense_sym(_dense_knn(x.x_text, 3, False))
    torch.testing.assert_close(model.graph("item_adj").to_dense(), ref)


def test_freedom_pruning_and_full_graph_in_eval(small):
    torch.manual_seed(0)
    model = FREEDOM(small, FREEDOMConfig(knn_k=3, dropout=0.5))
    E = small["user", "interacts", "item"].edge_index.size(1)
    U = small["user"].num_nodes
    model.on_epoch_start(0)
    pruned = model.graph("train_adj").to_dense()
    # the kept edges, re-normalised on their own degrees
    kept = (pruned[:U, U:] > 0).float()
    assert int(kept.sum()) == round(0.5 * E)
    A = torch.zeros_like(pruned)
    A[:U, U:] = kept
    A[U:, :U] = kept.t()
    torch.testing.assert_close(pruned, _dense_sym(A))
    # every kept edge is a training edge
    full = _dense_lightgcn_adj(small)
    assert bool(((pruned > 0) <= (full > 0)).all())
    # training uses the pruned graph, evaluation the full one
    E0 = torch.cat([model.user_emb.weight, model.item_emb.weight]).detach()
    h_item = model.graph("item_adj").to_dense() @ model.item_emb.weight.detach()
    for train, adj in ((True, pruned), (False, full)):
        model.train(train)
        with torch.no_grad():
            out = model()
        H = (E0 + adj @ E0 + adj @ adj @ E0) / 3
        torch.testing.assert_close(out.user, H[:U])
        torch.testing.assert_close(out.item, H[U:] + h_item)
    # a new epoch draws a new subgraph
    graphs = set()
    for epoch in range(5):
        model.on_epoch_start(epoch)
        graphs.add(tuple(model.graph("train_adj").col.tolist()))
    assert len(graphs) > 1


def test_freedom_dropout_zero_trains_on_full_graph(small):
    model = FREEDOM(small, FREEDOMConfig(knn_k=3, dropout=0.0))
    model.on_epoch_start(0)
    assert model.graph("train_adj") is model.graph("adj")


def test_freedom_loss_matches_reference(small):
    torch.manual_seed(0)
    model = FREEDOM(small, FREEDOMConfig(knn_k=3, reg_weight=0.25))
    model.train()
    out = model()
    batch = _batch(small, num_neg=1)
    terms = model.loss(batch, out)
    u = out.user[batch.users]

    def bpr(pos, neg):
        return -F.logsigmoid((u * pos).sum(1) - (u * neg).sum(1)).mean()

    ref_mm = 0.0
    for m in ("image", "text"):
        proj = model.projectors[m].proj(model.features[m])     # all items, as MMRec
        ref_mm = ref_mm + bpr(proj[batch.pos_items], proj[batch.neg_items])
    torch.testing.assert_close(terms["bpr"], bpr(out.item[batch.pos_items], out.item[batch.neg_items]))
    torch.testing.assert_close(terms["modality_bpr"], 0.25 * ref_mm)
    # [B, K] negatives
    assert torch.isfinite(sum(model.loss(_batch(small, num_neg=2), out).values()))


# ----------------------------------------------------------------------------- LATTICE

def _lattice_dense_graph(model, small, k, lam):
    """MMRec's dense construction of LATTICE's item graph, differentiable."""
    w = torch.softmax(model.modal_weight, 0)
    learned = 0.0
    frozen = 0.0
    for j, m in enumerate(("image", "text")):
        x = model.projectors[m].proj(model.features[m])
        xn = x / x.norm(dim=1, keepdim=True)
        sim = xn @ xn.t()
        val, idx = sim.topk(k, dim=1)
        learned = learned + w[j] * torch.zeros_like(sim).scatter(1, idx, val)
        frozen = frozen + w[j] * _dense_sym(_dense_knn(small["item"][f"x_{m}"], k, True))
    return (1 - lam) * _dense_sym(learned) + lam * frozen


def test_lattice_item_graph_and_gradients_match_dense_reference(small):
    torch.manual_seed(0)
    model = LATTICE(small, LATTICEConfig(knn_k=3, lambda_coeff=0.7))
    with torch.no_grad():
        model.modal_weight.copy_(torch.tensor([0.2, -0.4]))
    weight = torch.randn(9, 9, generator=torch.Generator().manual_seed(1))
    S = model.build_item_graph()
    (S.to_dense() * weight).sum().backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    ref = _lattice_dense_graph(model, small, 3, 0.7)
    torch.testing.assert_close(S.to_dense().detach(), ref.detach())
    (ref * weight).sum().backward()
    assert set(got) >= {"modal_weight", "projectors.image.proj.weight", "features.text"}
    for n, p in model.named_parameters():
        if p.grad is None:
            assert n not in got
            continue
        torch.testing.assert_close(got[n], p.grad, rtol=1e-4, atol=1e-6)


def test_lattice_mean_adjacency(small):
    adj = mean_bipartite_adjacency(small).to_dense()
    U, I = 12, 9
    ei = small["user", "interacts", "item"].edge_index
    A = torch.eye(U + I)
    A[ei[0], ei[1] + U] = 1.0
    A[ei[1] + U, ei[0]] = 1.0
    torch.testing.assert_close(adj, A / A.sum(1, keepdim=True))


def test_lattice_forward_matches_reference(small):
    torch.manual_seed(0)
    model = LATTICE(small, LATTICEConfig(knn_k=3, num_ui_layers=2, num_item_layers=1))
    model.eval()
    with torch.no_grad():
        out = model()
        S = _lattice_dense_graph(model, small, 3, 0.9)
        A = mean_bipartite_adjacency(small).to_dense()
        E0 = torch.cat([model.user_emb.weight, model.item_emb.weight])
        H = (E0 + A @ E0 + A @ A @ E0) / 3
        h = F.normalize(S @ model.item_emb.weight, dim=1)
    torch.testing.assert_close(out.user, H[:12])
    torch.testing.assert_close(out.item, H[12:] + h)


def test_lattice_graph_schedule(small):
    """'epoch': the learned graph is rebuilt (with gradient) at the first training
    forward after on_epoch_start and reused detached afterwards; 'step': every time."""
    torch.manual_seed(0)
    model = LATTICE(small, LATTICEConfig(knn_k=3))
    model.train()
    batch = _batch(small)

    def proj_grad():
        model.zero_grad()
        sum(model.loss(batch, model()).values()).backward()
        g = model.projectors["text"].proj.weight.grad
        return g is not None and bool(g.abs().sum() > 0)

    model.on_epoch_start(0)
    assert proj_grad()            # first step of the epoch builds the graph
    assert not proj_grad()        # cached, detached
    with torch.no_grad():         # parameters change, the cached graph does not
        model.projectors["text"].proj.weight.add_(0.5)
    cached = model.graph("item_adj").value.clone()
    model()
    assert torch.equal(model.graph("item_adj").value, cached)
    model.eval()                  # evaluation rebuilds from the current parameters
    with torch.no_grad():
        model()
    assert not torch.equal(model.graph("item_adj").value, cached)
    model.train()
    model.on_epoch_start(1)
    assert proj_grad()

    step = LATTICE(small, LATTICEConfig(knn_k=3, graph_update="step"))
    step.train()
    for _ in range(2):
        step.zero_grad()
        sum(step.loss(batch, step()).values()).backward()
        assert step.projectors["text"].proj.weight.grad.abs().sum() > 0


def test_lattice_single_modality_has_no_modal_weight(small):
    model = LATTICE(small, LATTICEConfig(knn_k=3, modalities=("text",)))
    assert model.modal_weight is None
    model.train()
    sum(model.loss(_batch(small), model()).values()).backward()
    assert model.projectors["text"].proj.weight.grad.abs().sum() > 0
