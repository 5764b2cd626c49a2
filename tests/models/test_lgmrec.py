"""LGMRec: evaluation forward against a dense re-computation of the MMRec form, its
hypergraph contrastive term, stochastic training (the contract every model keeps is in
models/test_contract.py, shared options in models/test_options.py)."""

import torch
import torch.nn.functional as F
from model_helpers import I, U, make_batch, small_config
from oracles import dense_interactions, dense_norm_adj, naive_pool_info_nce

from mmgraph.models.lgmrec import LGMRec


def test_lgmrec_eval_matches_dense_reference(data_24x18):
    data = data_24x18
    torch.manual_seed(0)
    model = LGMRec(data, small_config(LGMRec))
    model.eval()
    out = model()
    ei = data["user", "interacts", "item"].edge_index
    r = dense_interactions(ei, U, I)
    a_hat = dense_norm_adj(ei, U, I)
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


def test_lgmrec_contrastive_term_hand_computed(data_24x18):
    torch.manual_seed(0)
    model = LGMRec(data_24x18, small_config(LGMRec, reg_weight=0.0))
    model.eval()
    out = model()
    batch = make_batch(model, n=5)
    hu, hi = out.extra["hyper_user"], out.extra["hyper_item"]
    ref = naive_pool_info_nce(hu[0][batch.users], hu[1], batch.users, 0.2) + \
        naive_pool_info_nce(hi[0][batch.pos_items], hi[1], batch.pos_items, 0.2)
    torch.testing.assert_close(model.loss(batch, out)["cl"], 1e-4 * ref)


def test_lgmrec_training_is_stochastic(data_24x18):
    torch.manual_seed(0)
    model = LGMRec(data_24x18, small_config(LGMRec))
    model.train()
    a, b = model(), model()
    assert not torch.equal(a.user, b.user)          # Gumbel noise + dropout
    model.eval()
    assert torch.equal(model().user, model().user)
