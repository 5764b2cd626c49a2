"""GRCN against a dense re-computation of the MMRec form, and its learned edge weights
(the contract every model keeps is in models/test_contract.py, shared options in
models/test_options.py)."""

import pytest
import torch
import torch.nn.functional as F
from model_helpers import I, U, small_config
from oracles import dense_bipartite, dense_interactions

from mmgraph.models.grcn import GRCN


@pytest.mark.parametrize("routing, iterations", [("paper", 3), ("mmrec", 0)])
def test_grcn_matches_dense_reference(data_24x18, routing, iterations):
    """``routing='paper'``: users aggregate their items' content 3 times; ``'mmrec'``: the
    preferences are the normalised learned vectors, as MMRec's code computes them."""
    data = data_24x18
    torch.manual_seed(0)
    model = GRCN(data, small_config(GRCN, routing=routing))
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
        for _ in range(iterations):
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


def test_grcn_mmrec_routing_keeps_the_preferences(data_24x18):
    """``routing='mmrec'`` ignores ``num_routing``: the user rows of every content block
    are ``norm(P_m) + A x`` with the preferences as learned, where the paper's routing
    pulls them towards their items' content (a different model from the first step)."""
    torch.manual_seed(0)
    a = GRCN(data_24x18, small_config(GRCN, routing="mmrec", num_routing=1))
    b = GRCN(data_24x18, small_config(GRCN, routing="mmrec", num_routing=5))
    c = GRCN(data_24x18, small_config(GRCN, routing="paper"))
    b.load_state_dict(a.state_dict())
    c.load_state_dict(a.state_dict())
    oa, ob, oc = a(), b(), c()
    torch.testing.assert_close(oa.user, ob.user)
    d = a.config.embedding_dim
    for k, m in enumerate(a.modalities):
        block = slice(d + k * 8, d + (k + 1) * 8)
        p = F.normalize(a.preference[m], dim=1)
        # the attention-weighted sum of each user's items is a convex combination of
        # unit vectors: |c_u - p_u| <= 1 without routing
        assert (oa.user[:, block] - p).norm(dim=1).max() <= 1 + 1e-5
        cos_mmrec = F.cosine_similarity(oa.user[:, block], p, dim=1).mean()
        cos_paper = F.cosine_similarity(oc.user[:, block], p, dim=1).mean()
        assert cos_mmrec > 0.8 and cos_paper < 0.4, (m, float(cos_mmrec), float(cos_paper))
