"""benchmarks/step_bound.py: the step cost it divides by is counted right (hand-computed
sparse FLOPs and bytes of LightGCN's propagation, optimiser bytes, dense FLOPs of a model
whose only matmuls are known), and the script runs end to end on tiny data."""
from pathlib import Path

import torch
from scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "step_bound.py"


def _load():
    return load_script(SCRIPT, "step_bound_script")


def test_sparse_counter_counts_each_product_forward_and_backward():
    sb = _load()
    from mmgraph.graph import SparseAdj
    ei = torch.tensor([[0, 0, 1, 2, 3], [1, 2, 0, 3, 3]])
    adj = SparseAdj.from_edge_index(ei, torch.rand(5), 4)
    x = torch.randn(4, 6, requires_grad=True)
    with sb.SparseCounter() as c:
        (adj.matmul(x) * 2).sum().backward()
    assert c.calls == 2                                   # forward A x, backward A^T g
    assert c.flops == 2 * (2 * 5 * 6)
    per_call = 5 * (8 + 4) + 8 * 5 + 4 * 6 * 4 + 4 * 6 * 4
    assert c.bytes == 2 * per_call
    # the wrapper is removed again
    import mmgraph.graph.sparse as sparse_mod
    assert sparse_mod._spmm_kernel.__name__ == "_spmm_kernel"


def test_lightgcn_step_cost_by_hand(tiny):
    sb = _load()
    from mmgraph.models import LightGCN
    from mmgraph.sampling import InteractionLoader
    torch.manual_seed(0)
    model = LightGCN(tiny)
    batch = next(iter(InteractionLoader(tiny, batch_size=64, num_neg=1,
                                        generator=torch.Generator().manual_seed(0))))
    cost = sb.step_cost(model, batch)
    adj, L, d = model.graph("adj"), model.config.num_layers, model.config.embedding_dim
    # L products forward, L backward (the normalised adjacency is symmetric)
    assert cost["sparse_calls"] == 2 * L
    assert cost["sparse_flops"] == 2 * L * 2 * adj.nnz * d
    n_params = sum(p.numel() for p in model.parameters())
    assert cost["param_bytes"] == 4 * n_params
    assert cost["bytes"] == cost["sparse_bytes"] + cost["saved_bytes"] + 9 * cost["param_bytes"]
    assert cost["dense_flops"] == 0          # BPR scores are row-wise dot products, no matmul


def test_script_end_to_end(capsys):
    sb = _load()
    assert sb.main(["--data", "synthetic:tiny", "--models", "lightgcn,bprmf", "--steps", "1",
                    "--no-write"]) == 0
    out = capsys.readouterr().out
    assert "| lightgcn | " in out and "| bprmf | " in out and "x the bound" in out
