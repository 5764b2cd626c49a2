"""REARM: graph mixes, blocks, losses, gradients, persistence and a learning check."""

import numpy as np
import pytest
import torch
from oracles import naive_orthogonal_loss

from mmgraph.data import build_hetero, load_dataset
from mmgraph.graph import SparseAdj
from mmgraph.losses import info_nce, orthogonal_loss
from mmgraph.models.base import Batch, Embeddings, get_model_class
from mmgraph.models.lightgcn import LightGCN, LightGCNConfig
from mmgraph.models.rearm import (ITEM_HOMOGRAPHY, USER_HOMOGRAPHY, REARM, REARMConfig,
                                  build_homography_graphs, homography_mix, modality_mix_weights)
from mmgraph.train import Trainer, TrainConfig, train_config_for

SMALL = dict(embedding_dim=16, user_knn_k=8, item_knn_k=5, num_layers=2)


@pytest.fixture(scope="module")
def small():
    """tiny synthetic data with narrow features (fast)."""
    return load_dataset("synthetic:tiny?image_dim=48&text_dim=24")


def _batch(data, n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    ei = data["user", "interacts", "item"].edge_index
    sel = torch.randperm(ei.size(1), generator=g)[:n]
    neg = torch.randint(0, data["item"].num_nodes, (n,), generator=g)
    return Batch(ei[0, sel], ei[1, sel], neg)


# --------------------------------------------------------------------------- config

def test_defaults_are_the_authors_baby_settings():
    c = REARMConfig()
    assert (c.num_layers, c.rank, c.s_drop, c.m_drop) == (4, 3, 0.4, 0.6)
    assert (c.user_knn_k, c.item_knn_k, c.num_ii_layers, c.num_uu_layers) == (40, 10, 1, 1)
    assert (c.temperature, c.cl_weight, c.diff_loss_weight) == (0.6, 5e-6, 5e-5)
    assert (c.uu_co_weight, c.ii_co_weight, c.u_mm_image_weight, c.i_mm_image_weight) == \
        (0.4, 0.2, 0.2, 0.0)
    assert c.embedding_dim == 64 and c.reg_weight == 0.0     # L2 is AdamW's weight decay
    tc = train_config_for(REARM)
    assert (tc.optimizer, tc.weight_decay, tc.lr, tc.lr_decay, tc.epochs, tc.patience) == \
        ("adamw", 5e-4, 1e-3, 1.0, 2000, 20)       # lr: the measured default, not 5e-5
    assert get_model_class("rearm") is REARM
    with pytest.raises(ValueError, match="meta_gradient"):
        REARMConfig(meta_gradient="nope")
    with pytest.raises(ValueError, match="ii_co_weight"):
        REARMConfig(ii_co_weight=1.5)


# --------------------------------------------------------------------------- graphs

def _hand_data():
    # 4 users, 5 items; item co-occurrence counts are all distinct or the row is small
    train = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 3],
                          [0, 1, 2, 0, 1, 0, 3, 4, 1, 2, 3, 4]])
    g = np.random.default_rng(0)
    feats = {"image": g.random((5, 6)).astype(np.float32),
             "text": g.standard_normal((5, 4)).astype(np.float32)}
    return build_hetero(4, 5, train, features=feats), train, feats


def _dense_cooc(train, n_users, n_items, side, k):
    r = np.zeros((n_users, n_items))
    r[train[0], train[1]] = 1.0
    c = r.T @ r if side == "item" else r @ r.T
    np.fill_diagonal(c, 0.0)
    out = np.zeros_like(c)
    for i in range(c.shape[0]):          # reference only: a loop over 5 rows
        order = sorted(range(c.shape[0]), key=lambda j: (-c[i, j], j))
        keep = [j for j in order[:k] if c[i, j] > 0]
        if keep:
            e = np.exp(c[i, keep] - c[i, keep].max())
            out[i, keep] = e / e.sum()
    return out


def _dense_knn_sim(x, k):
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = xn @ xn.T
    out = np.zeros_like(s)
    for i in range(s.shape[0]):
        keep = np.argsort(-s[i], kind="stable")[:k]
        out[i, keep] = s[i, keep]
    return out / k                       # the authors' D^-1/2 S D^-1/2 with count degree k


def test_item_and_user_graph_mixes_equal_hand_computation():
    data, train, feats = _hand_data()
    cfg = REARMConfig(item_knn_k=3, user_knn_k=2, ii_co_weight=0.3, uu_co_weight=0.6,
                      i_mm_image_weight=0.25, u_mm_image_weight=0.7)
    ii, uu = build_homography_graphs(data, cfg)
    tr = train.numpy()
    exp_ii = (0.3 * _dense_cooc(tr, 4, 5, "item", 3)
              + 0.7 * (0.25 * _dense_knn_sim(feats["image"], 3)
                       + 0.75 * _dense_knn_sim(feats["text"], 3)))
    np.testing.assert_allclose(ii.to_dense().numpy(), exp_ii, atol=1e-6)
    # user interest profiles: mean features of each user's training items
    r = np.zeros((4, 5))
    r[tr[0], tr[1]] = 1.0
    r /= r.sum(1, keepdims=True)
    exp_uu = (0.6 * _dense_cooc(tr, 4, 5, "user", 2)
              + 0.4 * (0.7 * _dense_knn_sim(r @ feats["image"], 2)
                       + 0.3 * _dense_knn_sim(r @ feats["text"], 2)))
    np.testing.assert_allclose(uu.to_dense().numpy(), exp_uu, atol=1e-6)
    # stored as edge types of the data
    for et, adj in ((ITEM_HOMOGRAPHY, ii), (USER_HOMOGRAPHY, uu)):
        back = SparseAdj.from_edge_index(data[et].edge_index, data[et].edge_weight, adj.size)
        torch.testing.assert_close(back.to_dense(), adj.to_dense())


def test_co_fill_repeat_mixes_the_authors_co_occurrence_rows():
    # one more item without any user in common with the others: item 5 (user 4 only)
    data, train, feats = _hand_data()
    train = torch.cat([train, torch.tensor([[4], [5]])], 1)
    feats = {m: np.concatenate([f, f[:1] + 0.5]) for m, f in feats.items()}
    data = build_hetero(5, 6, train, features=feats)
    base = dict(item_knn_k=3, user_knn_k=2, ii_co_weight=1.0, uu_co_weight=1.0)
    ii_none, _ = build_homography_graphs(data, REARMConfig(**base), store=False)
    ii_rep, _ = build_homography_graphs(data, REARMConfig(co_fill="repeat", **base), store=False)
    a, b = ii_none.to_dense(), ii_rep.to_dense()
    assert a[5].abs().sum() == 0
    # item degrees 3, 3, 2, 2, 2, 1: the 3 most popular (ties to the lower id) are 0, 1, 2
    w = torch.softmax(torch.tensor([3.0, 3.0, 2.0]) / 8, 0)
    torch.testing.assert_close(b[5], torch.tensor([w[0], w[1], w[2], 0.0, 0.0, 0.0]))
    # rows with k co-occurring items are untouched
    full = (a > 0).sum(1) == 3
    assert full.sum() >= 2
    torch.testing.assert_close(a[full], b[full])
    with pytest.raises(ValueError, match="co_fill"):
        REARMConfig(co_fill="popular")
    with pytest.raises(ValueError, match="softmax"):
        REARMConfig(co_fill="repeat", co_weighting="count")


def test_graph_mix_extremes_and_binary_knn():
    data, train, feats = _hand_data()
    # co-occurrence only / similarity only
    ii, _ = build_homography_graphs(data, REARMConfig(item_knn_k=3, user_knn_k=2, ii_co_weight=1.0),
                                    store=False)
    np.testing.assert_allclose(ii.to_dense().numpy(), _dense_cooc(train.numpy(), 4, 5, "item", 3),
                               atol=1e-6)
    ii, _ = build_homography_graphs(data, REARMConfig(item_knn_k=3, user_knn_k=2, ii_co_weight=0.0,
                                                      i_mm_image_weight=1.0), store=False)
    np.testing.assert_allclose(ii.to_dense().numpy(), _dense_knn_sim(feats["image"], 3), atol=1e-6)
    # 'binary': 1/k on each kept neighbour
    ii, _ = build_homography_graphs(data, REARMConfig(item_knn_k=3, user_knn_k=2, ii_co_weight=0.0,
                                                      i_mm_image_weight=1.0,
                                                      knn_weighting="binary"), store=False)
    np.testing.assert_allclose(ii.to_dense().numpy(),
                               (_dense_knn_sim(feats["image"], 3) != 0) / 3.0, atol=1e-6)
    # 0.25 * A + 0.75 * 0.5 * B by hand
    a = SparseAdj.from_dense(torch.tensor([[0.0, 1.0], [0.5, 0.5]]))
    b = SparseAdj.from_dense(torch.tensor([[2.0, 0.0], [0.0, 4.0]]))
    mix = homography_mix(a, {"x": b}, {"x": 1.0}, 0.25, sim_scale=0.5)
    torch.testing.assert_close(mix.to_dense(), torch.tensor([[0.75, 0.25], [0.125, 1.625]]))
    with pytest.raises(ValueError, match="co-occurrence"):
        homography_mix(None, {"x": b}, {"x": 1.0}, 0.5)


def test_general_blocks_moved_out_keep_their_rearm_names():
    import mmgraph.graph as graph
    import mmgraph.models.rearm as rearm
    import mmgraph.nn as nn
    assert rearm.ScalarTokenAttention is nn.ScalarTokenAttention
    assert rearm.LowRankMetaTransform is nn.LowRankMetaTransform
    assert rearm.homography_mix is graph.homography_mix
    assert rearm.modality_mix_weights is graph.modality_mix_weights


def test_modality_mix_weights():
    assert modality_mix_weights(["image", "text"], 0.2) == {"image": 0.2, "text": 0.8}
    assert modality_mix_weights(["audio", "image", "text"], 0.4) == \
        pytest.approx({"audio": 0.3, "image": 0.4, "text": 0.3})
    assert modality_mix_weights(["text"], 0.2) == {"text": 1.0}
    assert modality_mix_weights(["a", "b"], 0.9) == {"a": 0.5, "b": 0.5}


# --------------------------------------------------------------------------- model

def test_forward_shapes_and_modality_counts(small):
    torch.manual_seed(0)
    model = REARM(small, REARMConfig(**SMALL))
    out = model()
    assert out.user.shape == (300, 3 * 16) and out.item.shape == (200, 3 * 16)
    assert out.extra["feat_item"].shape == (200, 32)
    assert model.score(torch.tensor([0, 5]), out).shape == (2, 200)
    # one modality: no contrastive / orthogonality terms
    one = REARM(small, REARMConfig(modalities=("text",), **SMALL))
    o1 = one()
    assert o1.user.shape == (300, 32)
    assert set(one.loss(_batch(small), o1)) == {"bpr"}
    with pytest.raises(ValueError, match="not in the data"):
        REARM(small, REARMConfig(modalities=("audio",), **SMALL))


def test_three_modalities():
    g = np.random.default_rng(1)
    data = load_dataset("synthetic:tiny?image_dim=16&text_dim=8")
    data["item"].x_audio = torch.from_numpy(g.random((200, 5)).astype(np.float32))
    torch.manual_seed(0)
    model = REARM(data, REARMConfig(**SMALL))
    assert model.modalities == ["audio", "image", "text"]
    out = model()
    assert out.item.shape == (200, 4 * 16)
    terms = model.loss(_batch(data), out)
    assert set(terms) == {"bpr", "cl", "diff"}
    sum(terms.values()).backward()


def test_loss_terms_use_the_shared_losses(small):
    torch.manual_seed(0)
    cfg = REARMConfig(cl_weight=0.3, diff_loss_weight=0.7, **SMALL)
    model = REARM(small, cfg).eval()
    b = _batch(small)
    out = model()
    terms = model.loss(b, out)
    d = 16
    fu, fi = out.extra["feat_user"], out.extra["feat_item"]
    uu = torch.unique(b.users)
    ii = torch.unique(torch.cat([b.pos_items, b.neg_items]))
    cl = info_nce(fu[uu, :d], fu[uu, d:], 0.6) + info_nce(fi[ii, :d], fi[ii, d:], 0.6)
    diff = (orthogonal_loss(fu[b.users, :d], fu[b.users, d:])
            + orthogonal_loss(fi[b.pos_items, :d], fi[b.pos_items, d:]))
    torch.testing.assert_close(terms["cl"], 0.3 * cl)
    torch.testing.assert_close(terms["diff"], 0.7 * diff)


def test_orthogonality_term_zero_for_orthogonal_parts(small):
    torch.manual_seed(0)
    model = REARM(small, REARMConfig(diff_loss_weight=1.0, **SMALL))
    d, U, I = 16, 300, 200
    g = torch.Generator().manual_seed(3)
    b = Batch(torch.arange(64), torch.arange(64), torch.arange(1, 65))

    def diff(fu, fi):
        out = Embeddings(torch.randn(U, 3 * d, generator=g), torch.randn(I, 3 * d, generator=g),
                         {"feat_user": fu, "feat_item": fi})
        return float(model.loss(b, out)["diff"])

    def pattern(n, period):
        return ((torch.arange(n) // period) % 2).float() * 2 - 1     # +-1, zero mean over 64 rows

    # image part: the row parity in every column; text part: a pattern orthogonal
    # to it over the batch (both already centred, constant row norms)
    img_u, img_i = pattern(U, 1).unsqueeze(1).repeat(1, d), pattern(I, 1).unsqueeze(1).repeat(1, d)
    txt_u, txt_i = torch.zeros(U, d), torch.zeros(I, d)
    txt_u[:, 0], txt_i[:, 0] = pattern(U, 2), pattern(I, 2)
    assert diff(torch.cat([img_u, txt_u], 1), torch.cat([img_i, txt_i], 1)) == \
        pytest.approx(0.0, abs=1e-10)
    # correlated parts are penalised, identical parts the most
    rnd_u, rnd_i = torch.randn(U, d, generator=g), torch.randn(I, d, generator=g)
    some = diff(torch.cat([rnd_u, rnd_u + torch.randn(U, d, generator=g)], 1),
                torch.cat([rnd_i, rnd_i + torch.randn(I, d, generator=g)], 1))
    same = diff(torch.cat([rnd_u, rnd_u], 1), torch.cat([rnd_i, rnd_i], 1))
    assert 0 < some < same


def test_orthogonality_gradient_holds_row_norms_constant(small):
    # the authors' cal_diff_loss divides the centred rows by their .detach()ed norms
    torch.manual_seed(0)
    model = REARM(small, REARMConfig(diff_loss_weight=1.0, **SMALL))
    d, U, I = 16, 300, 200
    g = torch.Generator().manual_seed(4)
    b = _batch(small)
    fu0, fi0 = torch.randn(U, 2 * d, generator=g), torch.randn(I, 2 * d, generator=g)

    def grads(fn):
        fu, fi = fu0.clone().requires_grad_(), fi0.clone().requires_grad_()
        value = fn(fu, fi)
        return (value.item(), *torch.autograd.grad(value, (fu, fi)))

    ours = grads(lambda fu, fi: model.loss(b, Embeddings(
        torch.zeros(U, 3 * d), torch.zeros(I, 3 * d), {"feat_user": fu, "feat_item": fi}))["diff"])
    ref = grads(lambda fu, fi: sum(naive_orthogonal_loss(x[:, :d], x[:, d:])
                                   for x in (fu[b.users], fi[b.pos_items])))
    assert ours[0] == pytest.approx(ref[0], rel=1e-5)
    torch.testing.assert_close(ours[1], ref[1], rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(ours[2], ref[2], rtol=1e-4, atol=1e-9)
    assert ours[1].abs().max() > 1e-4


@pytest.mark.parametrize("meta_gradient", ["frozen", "detach_input", "full"])
def test_every_parameter_gets_a_gradient(small, meta_gradient):
    torch.manual_seed(0)
    model = REARM(small, REARMConfig(meta_gradient=meta_gradient, reg_weight=1e-4, **SMALL))
    model.train()
    terms = model.loss(_batch(small), model())
    assert set(terms) == {"bpr", "cl", "diff", "reg"}
    sum(terms.values()).backward()
    # an attention block's output bias is added before a LayerNorm, which is
    # invariant to a constant shift: its gradient is 0 up to rounding (as for
    # the out_proj.bias of the authors' nn.MultiheadAttention)
    shift_invariant = {n for n, _ in model.named_parameters()
                       if "_attn." in n and n.endswith(".out_bias")}
    assert shift_invariant
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all()
                                       or (p.grad.abs().sum() == 0 and n not in shift_invariant))]
    assert not missing, missing
    for n in shift_invariant:
        assert float(dict(model.named_parameters())[n].grad.abs().max()) < 1e-5
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ([n for n, _ in model.named_parameters() if ".compress." in n]
                      if meta_gradient == "frozen" else [])


def test_homography_norm_parts_and_joint(small):
    x = torch.randn(5, 3 * 16) * torch.tensor([0.1] * 16 + [30.0] * 16 + [1.0] * 16)
    torch.manual_seed(0)
    parts = REARM(small, REARMConfig(homography_norm="parts", **SMALL))
    torch.manual_seed(0)
    joint = REARM(small, REARMConfig(homography_norm="joint", **SMALL))
    # 'parts': every d-wide part of a row has unit norm, whatever the raw scales
    norms = parts._normalize(x).view(5, 3, 16).norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones(5, 3))
    # 'joint' (the authors'): one norm per row, the large part takes nearly all of it
    y = joint._normalize(x)
    torch.testing.assert_close(y.norm(dim=-1), torch.ones(5))
    assert (y.view(5, 3, 16).norm(dim=-1)[:, 0] < 0.01).all()
    # same weights, other outputs
    assert not torch.allclose(parts().user, joint().user)
    with pytest.raises(ValueError, match="homography_norm"):
        REARMConfig(homography_norm="rows")


def test_fixed_features_option(small):
    model = REARM(small, REARMConfig(trainable_features=False, **SMALL))
    names = [n for n, _ in model.named_parameters()]
    assert not any("item_feat" in n or "user_pref" in n for n in names)
    assert "_item_feat_image" not in model.state_dict()
    assert model().user.shape == (300, 48)


def test_loss_decreases_on_tiny_data(small):
    torch.manual_seed(0)
    model = REARM(small, REARMConfig(**SMALL))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    b = _batch(small, n=256)
    losses = []
    for _ in range(15):
        terms = model.loss(b, model())
        loss = sum(terms.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


def test_save_load_round_trip(small, tmp_path):
    torch.manual_seed(0)
    model = REARM(small, REARMConfig(**SMALL))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    terms = model.loss(_batch(small), model())
    sum(terms.values()).backward()
    opt.step()                               # move away from the initial state
    path = tmp_path / "rearm.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(1)
    other = REARM(small, REARMConfig(**SMALL))
    other.load_state_dict(torch.load(path))
    model.eval()
    other.eval()
    users = torch.arange(300)
    with torch.no_grad():
        assert torch.equal(model.score(users, model()), other.score(users, other()))


def test_reset_parameters_restores_features(small):
    torch.manual_seed(0)
    model = REARM(small, REARMConfig(**SMALL))
    with torch.no_grad():
        model.item_feat["image"].add_(1.0)
    model.reset_parameters()
    torch.testing.assert_close(model.item_feat["image"], small["item"].x_image)


def test_beats_lightgcn_with_planted_multimodal_signal():
    # sparse interactions (8 per user), strongly clustered features: after the
    # same short training, REARM's modality graphs and features must help
    data = load_dataset("synthetic:tiny?image_dim=128&num_users=400&num_items=300"
                        "&num_interactions=2400")
    tc = dict(epochs=5, lr=1e-3, lr_decay=1.0, batch_size=512, patience=100, progress=False,
              seed=0)
    torch.manual_seed(0)
    lgcn = Trainer(LightGCN(data, LightGCNConfig(embedding_dim=32)), data, TrainConfig(**tc)).fit()
    torch.manual_seed(0)
    rearm = Trainer(REARM(data, REARMConfig(embedding_dim=32, user_knn_k=10, item_knn_k=5)), data,
                    TrainConfig(**tc)).fit()
    assert rearm.test["recall@20"] > lgcn.test["recall@20"] + 0.05, (rearm.test, lgcn.test)
    assert rearm.test["ndcg@20"] > lgcn.test["ndcg@20"], (rearm.test, lgcn.test)
