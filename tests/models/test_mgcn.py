"""MGCN against a dense re-computation of the MMRec form, and its fine-tuned features
(the contract every model keeps is in models/test_contract.py, shared options in
models/test_options.py)."""

import torch
from model_helpers import I, U, small_config
from oracles import dense_knn, dense_norm_adj, dense_sym, naive_fusion

from mmgraph.models.mgcn import MGCN


def test_mgcn_matches_dense_reference(data_24x18):
    data = data_24x18
    torch.manual_seed(0)
    model = MGCN(data, small_config(MGCN))
    out = model()
    a_hat = dense_norm_adj(data["user", "interacts", "item"].edge_index, U, I)
    r_hat = a_hat[:U, U:]
    h = torch.cat([model.user_emb.weight, model.item_emb.weight])
    content = (h + a_hat @ h + a_hat @ a_hat @ h) / 3
    views = []
    for m in ("image", "text"):
        x = data["item"][f"x_{m}"]
        knn = dense_sym(dense_knn(x, 4, True))                  # weighted, self included
        f = model.trs[m](x)
        purified = model.item_emb.weight * torch.sigmoid(model.gates[m].lin(f))
        hi = knn @ purified
        views.append(torch.cat([r_hat @ hi, hi]))
    side, _ = naive_fusion(model.fusion, views, content)
    ref = content + side
    torch.testing.assert_close(torch.cat([out.user, out.item]), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.extra["side"], side, rtol=1e-5, atol=1e-5)


def test_mgcn_features_are_fine_tuned(data_24x18):
    torch.manual_seed(0)
    model = MGCN(data_24x18, small_config(MGCN))
    assert set(model.features) == {"image", "text"}
    assert "features.image" in model.state_dict()
    frozen = MGCN(data_24x18, small_config(MGCN, trainable_features=False))
    assert not any(k.startswith("feat") for k in frozen.state_dict())
