"""BM3: its loss terms against a dense re-computation of the MMRec form, stop-gradient
targets, dropout, and training without modalities (the contract every model keeps is
in models/test_contract.py, shared options in models/test_options.py)."""

import pytest
import torch
import torch.nn.functional as F
from model_helpers import first_batch, first_batch_for
from oracles import dense_norm_adj

from mmgraph.data.hetero import build_hetero
from mmgraph.models.bm3 import BM3, BM3Config


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
def test_bm3_without_modalities_trains(data_12x9, how):
    """BM3 w/o v&t: ID-only data (the real Baby interactions have no features) or
    ``modalities=()`` on multimodal data; the multimodal terms are exactly 0."""
    if how == "id_only_data":
        data = build_hetero(12, 9, data_12x9["user", "interacts", "item"].edge_index)
        cfg = BM3Config(embedding_dim=8, dropout=0.0)
    else:
        data, cfg = data_12x9, BM3Config(embedding_dim=8, dropout=0.0, modalities=())
    torch.manual_seed(0)
    model = BM3(data, cfg)
    assert model.modalities == [] and model.features is None
    assert sum(p.numel() for p in model.parameters()) == (12 + 9) * 8 + 8 * 8 + 8
    model.reset_parameters()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    batch = first_batch_for(model, data)
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


def test_bm3_loss_matches_dense_reference(data_12x9):
    """With dropout 0 the targets equal the (detached) online views: check every term."""
    torch.manual_seed(0)
    model = BM3(data_12x9, BM3Config(dropout=0.0, num_layers=2, reg_weight=0.3, cl_weight=1.5))
    model.train()
    batch = first_batch(data_12x9, num_neg=0)
    out = model()
    terms = model.loss(batch, out)

    U = data_12x9["user"].num_nodes
    A = dense_norm_adj(data_12x9["user", "interacts", "item"].edge_index, U,
                       data_12x9["item"].num_nodes)
    E0 = torch.cat([model.user_emb.weight, model.item_emb.weight]).detach()
    H = (E0 + A @ E0 + A @ A @ E0) / 3
    h_u, h_i = H[:U], H[U:] + model.item_emb.weight.detach()
    P = model.predictor
    u, i = batch.users, batch.pos_items
    with torch.no_grad():
        cos = lambda a, b: F.cosine_similarity(a, b, dim=-1).mean()
        rec = -cos(P(h_u[u]), h_i[i]) - cos(P(h_i[i]), h_u[u])
        align = mask = 0.0
        for m in ("image", "text"):
            hm = model.projectors[m].proj(data_12x9["item"][f"x_{m}"][i])
            align = align - cos(P(hm), h_i[i])
            mask = mask - cos(P(hm), hm)
        reg = (h_u.norm() + h_i.norm()) / data_12x9["item"].num_nodes
    torch.testing.assert_close(terms["rec"], rec)
    torch.testing.assert_close(terms["align"], 1.5 * align)
    torch.testing.assert_close(terms["mask"], 1.5 * mask)
    torch.testing.assert_close(terms["reg"], 0.3 * reg)
    # scores use the predictor outputs
    torch.testing.assert_close(out.user, P(h_u), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.item, P(h_i), rtol=1e-5, atol=1e-6)


def test_bm3_stop_gradient_on_targets(data_12x9):
    """'mask' only trains through the online branch: the projection's gradient equals
    that of -cos(P(h_m), sg(h_m))."""
    torch.manual_seed(0)
    model = BM3(data_12x9, BM3Config(dropout=0.0, modalities=("text",),
                                     trainable_features=False))
    batch = first_batch(data_12x9, num_neg=0)
    model.loss(batch, model())["mask"].backward()
    got = model.projectors["text"].proj.weight.grad.clone()
    model.zero_grad()
    x = data_12x9["item"].x_text[batch.pos_items]
    h = model.projectors["text"].proj(x)
    ref = -2.0 * F.cosine_similarity(model.predictor(h), h.detach(), dim=-1).mean()
    ref.backward()
    torch.testing.assert_close(got, model.projectors["text"].proj.weight.grad)
    # without the stop-gradient the gradient would differ
    model.zero_grad()
    h = model.projectors["text"].proj(x)
    (-2.0 * F.cosine_similarity(model.predictor(h), h, dim=-1).mean()).backward()
    assert not torch.allclose(got, model.projectors["text"].proj.weight.grad)


def test_bm3_dropout_targets_are_random_and_detached(data_12x9):
    torch.manual_seed(0)
    model = BM3(data_12x9, BM3Config(dropout=0.5))
    batch = first_batch(data_12x9, num_neg=0)
    out = model()
    a = model.loss(batch, out)["rec"]
    b = model.loss(batch, out)["rec"]
    assert not torch.equal(a, b)                       # fresh dropout masks each call
