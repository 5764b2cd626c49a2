"""MMGCN, GRCN, SLMRec, MGCN and LGMRec against dense references and MMRec's settings
(the contract every model keeps is in models/test_contract.py)."""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from mmgraph.data import build_hetero, load_dataset
from mmgraph.models.base import Batch
from mmgraph.models.grcn import GRCN, GRCNConfig
from mmgraph.models.lgmrec import LGMRec, LGMRecConfig
from mmgraph.models.mgcn import MGCN, MGCNConfig
from mmgraph.models.mmgcn import MMGCN, MMGCNConfig
from mmgraph.models.slmrec import SLMRec, SLMRecConfig

U, I = 24, 18


def make_data(modalities=("image", "text"), dims=(20, 10), seed=0, isolated_item=False):
    g = torch.Generator().manual_seed(seed)
    n_items = I - 1 if isolated_item else I
    users = torch.arange(U).repeat_interleave(4)
    items = torch.randint(0, n_items, (users.numel(),), generator=g)
    items[:n_items] = torch.arange(n_items)          # every (used) item has an edge
    ei = torch.unique(torch.stack([users, items]), dim=1)
    feats = {m: torch.randn(I, dm, generator=g) for m, dm in zip(modalities, dims)}
    return build_hetero(U, I, ei, features=feats)


@pytest.fixture(scope="module")
def data():
    return make_data()


def small(cls, **kw):
    """Small configs (fewer dims) so that the tests stay fast."""
    base = {MMGCN: dict(embedding_dim=16, latent_dim=12),
            GRCN: dict(embedding_dim=16, latent_dim=8),
            SLMRec: dict(embedding_dim=16),
            MGCN: dict(embedding_dim=16, knn_k=4),
            LGMRec: dict(embedding_dim=16, feat_embed_dim=16)}[cls]
    return cls.config_class(**{**base, **kw})




def make_batch(model, n=16, seed=1, num_neg=1):
    g = torch.Generator().manual_seed(seed)
    users = torch.randint(0, model.num_users, (n,), generator=g)
    pos = torch.randint(0, model.num_items, (n,), generator=g)
    if not model.uses_negatives:
        return Batch(users, pos, None)
    shape = (n,) if num_neg == 1 else (n, num_neg)
    return Batch(users, pos, torch.randint(0, model.num_items, shape, generator=g))


def total(terms):
    return sum(terms.values())


# --------------------------------------------------------------------------- contract

def test_defaults_match_mmrec():
    assert MMGCNConfig().num_layers == 3 and MMGCNConfig().latent_dim == 256
    assert GRCNConfig().num_routing == 3 and GRCNConfig().latent_dim == 64
    s = SLMRecConfig()
    assert (s.num_layers, s.temperature, s.ssl_task, s.dropout) == (3, 0.2, "FAC", 0.3)
    assert SLMRec.train_defaults["weight_decay"] == 1e-4 and not SLMRec.uses_negatives
    m = MGCNConfig()
    assert (m.num_ui_layers, m.num_mm_layers, m.knn_k, m.reg_weight, m.cl_weight) == \
        (2, 1, 10, 1e-4, 0.01)
    lg = LGMRecConfig()
    assert (lg.num_ui_layers, lg.num_mm_layers, lg.num_hyper_layers, lg.num_hyperedges,
            lg.keep_rate, lg.alpha, lg.cl_weight, lg.reg_weight) == \
        (2, 2, 1, 4, 0.5, 0.3, 1e-4, 1e-6)


@pytest.mark.parametrize("cls", [MMGCN, GRCN, MGCN, LGMRec])
def test_multiple_negatives(data, cls):
    torch.manual_seed(0)
    model = cls(data, small(cls))
    terms = model.loss(make_batch(model, num_neg=3), model())
    assert torch.isfinite(total(terms))


@pytest.mark.parametrize("cls", [MMGCN, GRCN, SLMRec, MGCN, LGMRec])
@pytest.mark.parametrize("mods", [("image",), ("audio", "image", "text")])
def test_any_number_of_modalities(cls, mods):
    d = make_data(mods, dims=(14, 10, 6)[:len(mods)])
    torch.manual_seed(0)
    model = cls(d, small(cls, project_modalities=()) if cls is MMGCN else small(cls))
    out = model()
    assert out.user.shape[0] == U and out.item.shape[0] == I
    loss = total(model.loss(make_batch(model), out))
    assert torch.isfinite(loss)
    loss.backward()


def test_forward_on_synthetic_tiny():
    d = load_dataset("synthetic:tiny")
    for cls in (MMGCN, GRCN, SLMRec, MGCN, LGMRec):
        torch.manual_seed(0)
        model = cls(d, small(cls))
        model.eval()
        with torch.no_grad():
            out = model()
        assert out.user.shape[0] == d["user"].num_nodes
        assert out.item.shape[0] == d["item"].num_nodes
        assert torch.isfinite(out.user).all() and torch.isfinite(out.item).all()


def test_config_errors(data):
    with pytest.raises(ValueError, match="project_modalities"):
        MMGCN(data, MMGCNConfig(project_modalities=("video",)))
    with pytest.raises(ValueError, match="weight_mode"):
        GRCN(data, GRCNConfig(weight_mode="min"))
    with pytest.raises(ValueError, match="latent_dim == embedding_dim"):
        GRCN(data, GRCNConfig(fusion_mode="mean", latent_dim=32))
    with pytest.raises(ValueError, match="ssl_task"):
        SLMRec(data, SLMRecConfig(ssl_task="XYZ"))
    with pytest.raises(ValueError, match="keep_rate"):
        LGMRec(data, LGMRecConfig(keep_rate=0.0))
    with pytest.raises(TypeError):
        MGCN(data, LGMRecConfig())
    no_feat = build_hetero(3, 2, torch.tensor([[0, 1, 2], [0, 1, 1]]))
    for cls in (MMGCN, GRCN, SLMRec, MGCN, LGMRec):
        with pytest.raises(ValueError, match="modality"):
            cls(no_feat)
    model = MGCN(data, small(MGCN))
    with pytest.raises(ValueError, match="neg_items"):
        model.loss(Batch(torch.tensor([0]), torch.tensor([1])), model())


# ------------------------------------------------------------- dense references

def dense_r(data):
    ei = data["user", "interacts", "item"].edge_index
    r = torch.zeros(U, I)
    r[ei[0], ei[1]] = 1.0
    return r


def test_mmgcn_matches_dense_reference(data):
    torch.manual_seed(0)
    model = MMGCN(data, small(MMGCN))
    out = model()
    r = dense_r(data)
    mean_u = r / r.sum(1, keepdim=True).clamp_min(1)              # users average items
    mean_i = r.t() / r.t().sum(1, keepdim=True).clamp_min(1)      # items average users
    reps = []
    for m in ("image", "text"):
        gcn = model.gcns[m]
        feat = data["item"][f"x_{m}"]
        items = gcn.proj(feat) if gcn.proj is not None else feat
        x = torch.cat([gcn.preference, items])
        x = x / x.norm(dim=1, keepdim=True)
        for w, lin, comb in zip(gcn.conv_weight, gcn.self_lin, gcn.combine):
            xw = x @ w
            h = F.leaky_relu(torch.cat([mean_u @ xw[U:], mean_i @ xw[:U]]))
            x_hat = F.leaky_relu(lin(x)) + model.id_emb
            x = F.leaky_relu(comb(torch.cat([h, x_hat], 1)))
        reps.append(x)
    ref = (reps[0] + reps[1]) / 2
    torch.testing.assert_close(torch.cat([out.user, out.item]), ref, rtol=1e-5, atol=1e-5)
    # the image modality is projected to latent_dim, text stays raw
    assert model.gcns["image"].preference.shape == (U, 12)
    assert model.gcns["text"].proj is None and model.gcns["text"].preference.shape == (U, 10)


def test_grcn_matches_dense_reference(data):
    torch.manual_seed(0)
    model = GRCN(data, small(GRCN))
    out = model()
    r = dense_r(data)
    n = U + I
    a_full = torch.zeros(n, n)
    a_full[:U, U:] = r
    a_full[U:, :U] = r.t()

    def masked_softmax(logits, mask):
        logits = logits.masked_fill(mask == 0, float("-inf"))
        p = torch.softmax(logits, dim=1)
        return torch.nan_to_num(p, nan=0.0)

    contents, atts = [], []
    for m in ("image", "text"):
        feat = F.normalize(F.leaky_relu(model.mlp[m](data["item"][f"x_{m}"])), dim=1)
        pref = F.normalize(model.preference[m], dim=1)
        for _ in range(3):
            alpha = masked_softmax(pref @ feat.t(), r)
            pref = F.normalize(pref + alpha @ feat, dim=1)
        x = torch.cat([pref, feat])
        att = masked_softmax(x @ x.t(), a_full)                 # att[n, j]: j -> n
        contents.append(x + att @ x)
        atts.append(att)
    conf = model.confidence                                     # [N, M] of the sending node
    w = torch.maximum(atts[0] * conf[:, 0].unsqueeze(0), atts[1] * conf[:, 1].unsqueeze(0))
    w = F.relu(w) * a_full
    e = F.normalize(model.id_emb, dim=1)
    h1 = w @ e
    h2 = w @ h1
    ref = torch.cat([e + h1 + h2] + contents, dim=1)
    torch.testing.assert_close(torch.cat([out.user, out.item]), ref, rtol=1e-5, atol=1e-5)
    adj = model.graph("adj")
    torch.testing.assert_close(out.extra["edge_weight"], w[adj.row, adj.col])


def test_grcn_edge_weights_reach_refined_graph(data):
    """Gradients flow through the learned edge weights into the confidences."""
    torch.manual_seed(0)
    model = GRCN(data, small(GRCN))
    out = model()
    (out.user.sum() + out.item.sum()).backward()
    assert model.confidence.grad.abs().sum() > 0
    assert model.preference["image"].grad.abs().sum() > 0


def test_slmrec_views_match_separate_lightgcn(data):
    torch.manual_seed(0)
    model = SLMRec(data, small(SLMRec))
    out = model()
    r = dense_r(data)
    a = torch.zeros(U + I, U + I)
    a[:U, U:] = r
    a[U:, :U] = r.t()
    deg = a.sum(1)
    dis = deg.pow(-0.5).masked_fill(deg == 0, 0)
    a_hat = dis[:, None] * a * dis[None, :]

    def lightgcn(xu, xi):
        h = torch.cat([xu, xi])
        acc = h
        for _ in range(3):
            h = a_hat @ h
            acc = acc + h
        return acc / 4

    eu = model.user_emb.weight
    views = [lightgcn(eu, model.item_emb.weight)]
    for m in ("image", "text"):
        x = F.normalize(data["item"][f"x_{m}"], dim=1)
        views.append(lightgcn(eu, model.proj[m](x)))
    cat = torch.cat(views, dim=1)
    torch.testing.assert_close(out.user, model.user_out(cat[:U]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.item, model.item_out(cat[U:]), rtol=1e-5, atol=1e-5)
    # main loss: in-batch InfoNCE over normalised user / positive embeddings, tau = 0.2
    batch = make_batch(model)
    u = F.normalize(out.user[batch.users], dim=1)
    p = F.normalize(out.item[batch.pos_items], dim=1)
    ref = F.cross_entropy(u @ p.t() / 0.2, torch.arange(len(batch.users)))
    torch.testing.assert_close(model.loss(batch, out)["infonce"], ref)


def test_slmrec_masks_drop_two_different_views(data):
    model = SLMRec(data, small(SLMRec, ssl_task="FM"))
    for seed in range(20):
        torch.manual_seed(seed)
        m1, m2 = model._view_masks(torch.device("cpu"))
        v1 = m1.view(3, 16)[:, 0]
        v2 = m2.view(3, 16)[:, 0]
        assert v1.sum() == 2 and v2.sum() == 2 and not torch.equal(v1, v2)


def test_mgcn_matches_dense_reference(data):
    torch.manual_seed(0)
    model = MGCN(data, small(MGCN))
    out = model()
    r = dense_r(data)
    a = torch.zeros(U + I, U + I)
    a[:U, U:] = r
    a[U:, :U] = r.t()
    deg = a.sum(1)
    dis = deg.pow(-0.5).masked_fill(deg == 0, 0)
    a_hat = dis[:, None] * a * dis[None, :]
    r_hat = a_hat[:U, U:]
    h = torch.cat([model.user_emb.weight, model.item_emb.weight])
    content = (h + a_hat @ h + a_hat @ a_hat @ h) / 3
    views = []
    for m in ("image", "text"):
        x = data["item"][f"x_{m}"]
        xn = F.normalize(x, dim=1)
        sim = xn @ xn.t()
        val, idx = sim.topk(4, dim=1)
        knn = torch.zeros(I, I).scatter_(1, idx, val)           # weighted, self included
        dk = knn.sum(1).pow(-0.5)
        knn = dk[:, None] * knn * dk[None, :]
        f = model.trs[m](x)
        purified = model.item_emb.weight * torch.sigmoid(model.gates[m].lin(f))
        hi = knn @ purified
        views.append(torch.cat([r_hat @ hi, hi]))
    fusion = model.fusion
    att = torch.softmax(torch.cat([fusion.query(v) for v in views], 1), dim=1)
    common = att[:, :1] * views[0] + att[:, 1:] * views[1]
    sep = [torch.sigmoid(fusion.prefer[k](content)) * (views[k] - common) for k in range(2)]
    side = (sep[0] + sep[1] + common) / 3
    ref = content + side
    torch.testing.assert_close(torch.cat([out.user, out.item]), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.extra["side"], side, rtol=1e-5, atol=1e-5)


def test_mgcn_features_are_fine_tuned(data):
    torch.manual_seed(0)
    model = MGCN(data, small(MGCN))
    assert set(model.features) == {"image", "text"}
    assert "features.image" in model.state_dict()
    frozen = MGCN(data, small(MGCN, train_features=False))
    assert not any(k.startswith("feat") for k in frozen.state_dict())


def test_lgmrec_eval_matches_dense_reference(data):
    torch.manual_seed(0)
    model = LGMRec(data, small(LGMRec))
    model.eval()
    out = model()
    r = dense_r(data)
    a = torch.zeros(U + I, U + I)
    a[:U, U:] = r
    a[U:, :U] = r.t()
    deg = a.sum(1)
    dis = deg.pow(-0.5).masked_fill(deg == 0, 0)
    a_hat = dis[:, None] * a * dis[None, :]
    h = torch.cat([model.user_emb.weight, model.item_emb.weight])
    cge = (h + a_hat @ h + a_hat @ a_hat @ h) / 3
    local = cge.clone()
    glob = torch.zeros_like(cge)
    for m in ("image", "text"):
        x = data["item"][f"x_{m}"]
        it = x @ model.item_trs[m]
        ut = (r / r.sum(1, keepdim=True)) @ it
        g = a_hat @ (a_hat @ torch.cat([ut, it]))
        local = local + F.normalize(g, dim=1)
        hi = torch.softmax(x @ model.hyper[m] / 0.2, dim=1)
        hu = torch.softmax(r @ (x @ model.hyper[m]) / 0.2, dim=1)
        lat = hi.t() @ cge[U:]
        glob = glob + torch.cat([hu @ lat, hi @ lat])
    ref = local + 0.3 * F.normalize(glob, dim=1)
    torch.testing.assert_close(torch.cat([out.user, out.item]), ref, rtol=1e-5, atol=1e-5)


def test_lgmrec_contrastive_term_hand_computed(data):
    torch.manual_seed(0)
    model = LGMRec(data, small(LGMRec, reg_weight=0.0))
    model.eval()
    out = model()
    batch = make_batch(model, n=5)
    hu, hi = out.extra["hyper_user"], out.extra["hyper_item"]

    def naive(a, b_all, ids):
        a, b_all = F.normalize(a, dim=1), F.normalize(b_all, dim=1)
        pos = torch.exp((a * b_all[ids]).sum(1) / 0.2)
        ttl = torch.exp(a @ b_all.t() / 0.2).sum(1)
        return -torch.log(pos / ttl).sum()

    ref = naive(hu[0][batch.users], hu[1], batch.users) + naive(hi[0][batch.pos_items], hi[1],
                                                                batch.pos_items)
    torch.testing.assert_close(model.loss(batch, out)["cl"], 1e-4 * ref)


def test_lgmrec_training_is_stochastic(data):
    torch.manual_seed(0)
    model = LGMRec(data, small(LGMRec))
    model.train()
    a, b = model(), model()
    assert not torch.equal(a.user, b.user)          # Gumbel noise + dropout
    model.eval()
    assert torch.equal(model().user, model().user)


def test_models_follow_device_moves(data):
    """Graphs and buffers move with .to() (float64 here as a device-free stand-in)."""
    for cls in (MMGCN, GRCN, SLMRec, MGCN, LGMRec):
        torch.manual_seed(0)
        model = cls(data, small(cls)).double()
        out = model()
        assert out.user.dtype == torch.float64
