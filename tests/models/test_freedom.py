"""FREEDOM: its frozen item graph and pruned user-item graph against dense
re-computations of the MMRec forms, modality weights and loss (the contract every model
keeps is in models/test_contract.py, shared options in models/test_options.py)."""

import pytest
import torch
from model_helpers import first_batch
from oracles import dense_knn, dense_norm_adj, dense_sym, naive_bpr

from mmgraph.models.freedom import FREEDOM, FREEDOMConfig, freedom_modality_weights


def test_freedom_modality_weights():
    assert freedom_modality_weights(["image", "text"]) == {"image": 0.1, "text": 0.9}
    assert freedom_modality_weights(["text"]) == {"text": 1.0}
    w = freedom_modality_weights(["audio", "image", "text"], 0.2)
    assert w["image"] == 0.2 and w["audio"] == pytest.approx(0.4) == w["text"]
    assert freedom_modality_weights(["a", "b"]) == {"a": 0.5, "b": 0.5}
    assert freedom_modality_weights(["image", "text"], weights={"image": 0.3, "text": 0.7}) == \
        {"image": 0.3, "text": 0.7}


def test_freedom_item_graph_matches_dense_reference(data_12x9):
    model = FREEDOM(data_12x9, FREEDOMConfig(knn_k=3))
    x = data_12x9["item"]
    ref = 0.1 * dense_sym(dense_knn(x.x_image, 3, False)) + \
        0.9 * dense_sym(dense_knn(x.x_text, 3, False))
    torch.testing.assert_close(model.graph("item_adj").to_dense(), ref)


def test_freedom_pruning_and_full_graph_in_eval(data_12x9):
    torch.manual_seed(0)
    model = FREEDOM(data_12x9, FREEDOMConfig(knn_k=3, dropout=0.5))
    ei = data_12x9["user", "interacts", "item"].edge_index
    E = ei.size(1)
    U = data_12x9["user"].num_nodes
    model.on_epoch_start(0)
    pruned = model.graph("train_adj").to_dense()
    # the kept edges, re-normalised on their own degrees
    kept = (pruned[:U, U:] > 0).float()
    assert int(kept.sum()) == round(0.5 * E)
    A = torch.zeros_like(pruned)
    A[:U, U:] = kept
    A[U:, :U] = kept.t()
    torch.testing.assert_close(pruned, dense_sym(A))
    # every kept edge is a training edge
    full = dense_norm_adj(ei, U, data_12x9["item"].num_nodes)
    assert bool(((pruned > 0) <= (full > 0)).all())
    # training uses the pruned graph, evaluation the full one
    E0 = torch.cat([model.user_emb.weight, model.item_emb.weight]).detach()
    h_item = model.graph("item_adj").to_dense() @ model.item_emb.weight.detach()
    for train, adj in ((True, pruned), (False, full)):
        model.train(train)
        with torch.no_grad():
            out = model()
        H = (E0 + adj @ E0 + adj @ adj @ E0) / 3
        torch.testing.assert_close(out.user, H[:U])
        torch.testing.assert_close(out.item, H[U:] + h_item)
    # a new epoch draws a new subgraph
    graphs = set()
    for epoch in range(5):
        model.on_epoch_start(epoch)
        graphs.add(tuple(model.graph("train_adj").col.tolist()))
    assert len(graphs) > 1


def test_freedom_dropout_zero_trains_on_full_graph(data_12x9):
    model = FREEDOM(data_12x9, FREEDOMConfig(knn_k=3, dropout=0.0))
    model.on_epoch_start(0)
    assert model.graph("train_adj") is model.graph("adj")


def test_freedom_loss_matches_reference(data_12x9):
    torch.manual_seed(0)
    model = FREEDOM(data_12x9, FREEDOMConfig(knn_k=3, reg_weight=0.25))
    model.train()
    out = model()
    batch = first_batch(data_12x9, num_neg=1)
    terms = model.loss(batch, out)
    u = out.user[batch.users]
    ref_mm = 0.0
    for m in ("image", "text"):
        proj = model.projectors[m].proj(model.features[m])     # all items, as MMRec
        ref_mm = ref_mm + naive_bpr(u, proj[batch.pos_items], proj[batch.neg_items])
    torch.testing.assert_close(terms["bpr"], naive_bpr(u, out.item[batch.pos_items],
                                                       out.item[batch.neg_items]))
    torch.testing.assert_close(terms["modality_bpr"], 0.25 * ref_mm)
    # [B, K] negatives
    assert torch.isfinite(sum(model.loss(first_batch(data_12x9, num_neg=2), out).values()))
