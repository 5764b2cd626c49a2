"""VBPR: scores and loss against the formula (the contract every model keeps is in
models/test_contract.py, shared options in models/test_options.py)."""

import pytest
import torch
from model_helpers import first_batch
from oracles import naive_bpr

from mmgraph.models.vbpr import VBPR, VBPRConfig


def test_vbpr_scores_and_loss_match_formula(data_12x9):
    torch.manual_seed(0)
    model = VBPR(data_12x9, VBPRConfig(embedding_dim=4, reg_weight=0.5))
    out = model()
    f = torch.cat([data_12x9["item"].x_image, data_12x9["item"].x_text], dim=1)
    item = torch.cat([model.item_factors, f @ model.content_proj.weight.t()
                      + model.content_proj.bias], dim=1)
    torch.testing.assert_close(out.item, item)
    assert out.user.shape == (12, 8) and out.item.shape == (9, 8)
    batch = first_batch(data_12x9, num_neg=1)
    terms = model.loss(batch, out)
    u, p, n = out.user[batch.users], out.item[batch.pos_items], out.item[batch.neg_items]
    reg = (u.norm() + p.norm() + n.norm()) / u.size(0)
    torch.testing.assert_close(terms["bpr"], naive_bpr(u, p, n))
    torch.testing.assert_close(terms["reg"], 0.5 * reg)
    # several negatives per positive
    batch3 = first_batch(data_12x9, num_neg=3)
    assert batch3.neg_items.shape[1] == 3
    assert torch.isfinite(model.loss(batch3, out)["bpr"])


def test_vbpr_needs_negatives(data_12x9):
    model = VBPR(data_12x9)
    with pytest.raises(ValueError, match="neg_items"):
        model.loss(first_batch(data_12x9, num_neg=0), model())
