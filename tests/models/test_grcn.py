"""GRCN against a dense re-computation of the MMRec form, and its learned edge weights
(the contract every model keeps is in models/test_contract.py, shared options in
models/test_options.py)."""

import torch
import torch.nn.functional as F
from model_helpers import I, U, small_config
from oracles import dense_bipartite, dense_interactions

from mmgraph.models.grcn import GRCN


def test_grcn_matches_dense_reference(data_24x18):
    data = data_24x18
    torch.manual_seed(0)
    model = GRCN(data, small_config(GRCN))
    out = model()
    ei = data["user", "interacts", "item"].edge_index
    r = dense_interactions(ei, U, I)
    a_full = dense_bipartite(ei, U, I)

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


def test_grcn_edge_weights_reach_refined_graph(data_24x18):
    """Gradients flow through the learned edge weights into the confidences."""
    torch.manual_seed(0)
    model = GRCN(data_24x18, small_config(GRCN))
    out = model()
    (out.user.sum() + out.item.sum()).backward()
    assert model.confidence.grad.abs().sum() > 0
    assert model.preference["image"].grad.abs().sum() > 0
