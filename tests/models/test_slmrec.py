"""SLMRec: its views against separate dense LightGCNs, its InfoNCE, and the masks of its
self-supervised tasks (the contract every model keeps is in models/test_contract.py,
shared options in models/test_options.py)."""

import torch
import torch.nn.functional as F
from model_helpers import I, U, make_batch, small_config
from oracles import ce_info_nce, dense_norm_adj

from mmgraph.models.slmrec import SLMRec


def test_slmrec_views_match_separate_lightgcn(data_24x18):
    data = data_24x18
    torch.manual_seed(0)
    model = SLMRec(data, small_config(SLMRec))
    out = model()
    a_hat = dense_norm_adj(data["user", "interacts", "item"].edge_index, U, I)

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
    ref = ce_info_nce(out.user[batch.users], out.item[batch.pos_items],
                      torch.arange(len(batch.users)), 0.2, reduction="mean")
    torch.testing.assert_close(model.loss(batch, out)["infonce"], ref)


def test_slmrec_masks_drop_two_different_views(data_24x18):
    model = SLMRec(data_24x18, small_config(SLMRec, ssl_task="FM"))
    for seed in range(20):
        torch.manual_seed(seed)
        m1, m2 = model._view_masks(torch.device("cpu"))
        v1 = m1.view(3, 16)[:, 0]
        v2 = m2.view(3, 16)[:, 0]
        assert v1.sum() == 2 and v2.sum() == 2 and not torch.equal(v1, v2)
