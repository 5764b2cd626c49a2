"""LATTICE: its learned item graph (values and gradients) and forward against dense
re-computations of the MMRec form, the mean user-item adjacency and the graph schedule
(the contract every model keeps is in models/test_contract.py, shared options in
models/test_options.py)."""

import torch
import torch.nn.functional as F
from model_helpers import first_batch
from oracles import dense_bipartite, dense_knn, dense_sym

from mmgraph.models.lattice import LATTICE, LATTICEConfig, mean_bipartite_adjacency


def _lattice_dense_graph(model, data, k, lam):
    """MMRec's dense construction of LATTICE's item graph, differentiable."""
    w = torch.softmax(model.modal_weight, 0)
    learned = 0.0
    frozen = 0.0
    for j, m in enumerate(("image", "text")):
        x = model.projectors[m].proj(model.features[m])
        learned = learned + w[j] * dense_knn(x, k, True)
        frozen = frozen + w[j] * dense_sym(dense_knn(data["item"][f"x_{m}"], k, True))
    return (1 - lam) * dense_sym(learned) + lam * frozen


def test_lattice_item_graph_and_gradients_match_dense_reference(data_12x9):
    torch.manual_seed(0)
    model = LATTICE(data_12x9, LATTICEConfig(knn_k=3, lambda_coeff=0.7))
    with torch.no_grad():
        model.modal_weight.copy_(torch.tensor([0.2, -0.4]))
    weight = torch.randn(9, 9, generator=torch.Generator().manual_seed(1))
    S = model.build_item_graph()
    (S.to_dense() * weight).sum().backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    ref = _lattice_dense_graph(model, data_12x9, 3, 0.7)
    torch.testing.assert_close(S.to_dense().detach(), ref.detach())
    (ref * weight).sum().backward()
    assert set(got) >= {"modal_weight", "projectors.image.proj.weight", "features.text"}
    for n, p in model.named_parameters():
        if p.grad is None:
            assert n not in got
            continue
        torch.testing.assert_close(got[n], p.grad, rtol=1e-4, atol=1e-6)


def test_lattice_mean_adjacency(data_12x9):
    adj = mean_bipartite_adjacency(data_12x9).to_dense()
    U, I = 12, 9
    A = torch.eye(U + I) + dense_bipartite(data_12x9["user", "interacts", "item"].edge_index,
                                           U, I)
    torch.testing.assert_close(adj, A / A.sum(1, keepdim=True))


def test_lattice_forward_matches_reference(data_12x9):
    torch.manual_seed(0)
    model = LATTICE(data_12x9, LATTICEConfig(knn_k=3, num_ui_layers=2, num_ii_layers=1))
    model.eval()
    with torch.no_grad():
        out = model()
        S = _lattice_dense_graph(model, data_12x9, 3, 0.9)
        A = mean_bipartite_adjacency(data_12x9).to_dense()
        E0 = torch.cat([model.user_emb.weight, model.item_emb.weight])
        H = (E0 + A @ E0 + A @ A @ E0) / 3
        h = F.normalize(S @ model.item_emb.weight, dim=1)
    torch.testing.assert_close(out.user, H[:12])
    torch.testing.assert_close(out.item, H[12:] + h)


def test_lattice_graph_schedule(data_12x9):
    """'epoch': the learned graph is rebuilt (with gradient) at the first training
    forward after on_epoch_start and reused detached afterwards; 'step': every time."""
    torch.manual_seed(0)
    model = LATTICE(data_12x9, LATTICEConfig(knn_k=3))
    model.train()
    batch = first_batch(data_12x9)

    def proj_grad():
        model.zero_grad()
        sum(model.loss(batch, model()).values()).backward()
        g = model.projectors["text"].proj.weight.grad
        return g is not None and bool(g.abs().sum() > 0)

    model.on_epoch_start(0)
    assert proj_grad()            # first step of the epoch builds the graph
    assert not proj_grad()        # cached, detached
    with torch.no_grad():         # parameters change, the cached graph does not
        model.projectors["text"].proj.weight.add_(0.5)
    cached = model.graph("item_adj").value.clone()
    model()
    assert torch.equal(model.graph("item_adj").value, cached)
    model.eval()                  # evaluation rebuilds from the current parameters
    with torch.no_grad():
        model()
    assert not torch.equal(model.graph("item_adj").value, cached)
    model.train()
    model.on_epoch_start(1)
    assert proj_grad()

    step = LATTICE(data_12x9, LATTICEConfig(knn_k=3, graph_update="step"))
    step.train()
    for _ in range(2):
        step.zero_grad()
        sum(step.loss(batch, step()).values()).backward()
        assert step.projectors["text"].proj.weight.grad.abs().sum() > 0


def test_lattice_single_modality_has_no_modal_weight(data_12x9):
    model = LATTICE(data_12x9, LATTICEConfig(knn_k=3, modalities=("text",)))
    assert model.modal_weight is None
    model.train()
    sum(model.loss(first_batch(data_12x9), model()).values()).backward()
    assert model.projectors["text"].proj.weight.grad.abs().sum() > 0
