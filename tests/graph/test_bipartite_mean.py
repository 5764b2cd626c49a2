"""bipartite_adjacency(normalization='mean'): LATTICE's D'^-1 (A + I), in the graph module."""
import pytest
import torch

from mmgraph.data import build_hetero
from mmgraph.graph import bipartite_adjacency, bipartite_adjacency_from_edges


def test_mean_form_equals_dense_rw_with_self_loops():
    ei = torch.tensor([[0, 0, 1, 2, 2, 2], [0, 1, 1, 0, 2, 2]])      # (2, 2) twice, user 3 alone
    data = build_hetero(4, 3, ei)
    A = torch.zeros(7, 7)
    for u, i in ei.t().tolist():
        A[u, 4 + i] = A[4 + i, u] = 1.0
    A += torch.eye(7)
    expect = A / A.sum(1, keepdim=True)
    got = bipartite_adjacency(data, normalization="mean")
    assert not got.symmetric
    torch.testing.assert_close(got.to_dense(), expect)
    assert got.to_dense()[3].tolist() == [0, 0, 0, 1, 0, 0, 0]      # an isolated node keeps itself
    # the symmetric form is unchanged and cached apart
    sym = bipartite_adjacency(data)
    assert sym.symmetric and not torch.equal(sym.to_dense(), got.to_dense())
    with pytest.raises(ValueError, match="normalization must be one of"):
        bipartite_adjacency_from_edges(ei, 4, 3, normalization="rw")


def test_lattice_uses_it():
    from mmgraph.models.lattice import mean_bipartite_adjacency
    data = build_hetero(3, 3, torch.tensor([[0, 1, 2], [0, 1, 1]]))
    assert torch.equal(mean_bipartite_adjacency(data).to_dense(),
                       bipartite_adjacency(data, normalization="mean").to_dense())
