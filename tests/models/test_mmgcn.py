"""MMGCN against a dense re-computation of the MMRec form (the contract every model
keeps is in models/test_contract.py, shared options in models/test_options.py)."""

import torch
import torch.nn.functional as F
from model_helpers import I, U, small_config
from oracles import dense_interactions

from mmgraph.models.mmgcn import MMGCN


def test_mmgcn_matches_dense_reference(data_24x18):
    data = data_24x18
    torch.manual_seed(0)
    model = MMGCN(data, small_config(MMGCN))
    out = model()
    r = dense_interactions(data["user", "interacts", "item"].edge_index, U, I)
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
