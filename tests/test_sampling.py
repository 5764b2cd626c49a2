import pytest
import torch

from mmgraph.data.hetero import build_hetero
from mmgraph.models.base import Batch
from mmgraph.sampling import InteractionLoader, NegativeSampler
from marks import requires_cuda


def _random_data(n_users=30, n_items=50, n_edges=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randint(n_users, (n_edges,), generator=g)
    i = torch.randint(n_items, (n_edges,), generator=g)
    return build_hetero(n_users, n_items, torch.stack([u, i]))


def _pos_sets(edge_index):
    s = {}
    for u, i in edge_index.t().tolist():
        s.setdefault(u, set()).add(i)
    return s


def test_negatives_never_positive_many_draws():
    data = _random_data()
    ei = data["user", "interacts", "item"].edge_index
    pos = _pos_sets(ei)
    sampler = NegativeSampler(data)
    g = torch.Generator().manual_seed(1)
    users = torch.arange(30).repeat(100)
    neg = sampler.sample(users, num_neg=3, generator=g)
    assert neg.shape == (3000, 3) and neg.dtype == torch.long
    assert bool(((neg >= 0) & (neg < 50)).all())
    for u, row in zip(users.tolist(), neg.tolist()):
        assert not (set(row) & pos.get(u, set()))
    assert not sampler.is_positive(users.unsqueeze(1), neg).any()
    one = sampler.sample(users, generator=g)
    assert one.shape == (3000,)
    assert not sampler.is_positive(users, one).any()


def test_dense_user_terminates_and_exact_fallback():
    # user 0 has seen 48 of 50 items: rejection alone needs ~25 draws per sample
    items = torch.arange(48)
    ei = torch.stack([torch.zeros(48, dtype=torch.long), items])
    sampler = NegativeSampler(ei, num_users=2, num_items=50, max_rounds=2)
    g = torch.Generator().manual_seed(0)
    neg = sampler.sample(torch.zeros(2000, dtype=torch.long), generator=g)
    assert set(neg.tolist()) == {48, 49}
    frac = (neg == 48).float().mean().item()
    assert abs(frac - 0.5) < 0.05


def test_sample_exact_uniform_and_valid():
    data = _random_data(n_users=4, n_items=12, n_edges=30, seed=3)
    pos = _pos_sets(data["user", "interacts", "item"].edge_index)
    sampler = NegativeSampler(data)
    g = torch.Generator().manual_seed(2)
    for u in range(4):
        draws = sampler.sample_exact(torch.full((3000,), u), num_neg=1, generator=g).view(-1)
        allowed = sorted(set(range(12)) - pos.get(u, set()))
        assert sorted(set(draws.tolist())) == allowed
        counts = torch.bincount(draws, minlength=12)[allowed].double()
        exp = 3000 / len(allowed)
        chi2 = ((counts - exp) ** 2 / exp).sum().item()
        assert chi2 < 3 * len(allowed) + 30


def test_distribution_close_to_uniform():
    # user 0 interacted with items 0..9 of 20: negatives uniform over 10..19
    ei = torch.stack([torch.zeros(10, dtype=torch.long), torch.arange(10)])
    sampler = NegativeSampler(ei, num_users=1, num_items=20)
    g = torch.Generator().manual_seed(5)
    n = 20000
    neg = sampler.sample(torch.zeros(n, dtype=torch.long), generator=g)
    counts = torch.bincount(neg, minlength=20).double()
    assert counts[:10].sum() == 0
    exp = n / 10
    chi2 = ((counts[10:] - exp) ** 2 / exp).sum().item()
    # chi-square with 9 dof: P(chi2 > 27.9) ~ 0.001
    assert chi2 < 27.9


def test_deterministic_with_generator():
    data = _random_data()
    sampler = NegativeSampler(data)
    users = torch.arange(30).repeat(5)
    a = sampler.sample(users, 4, generator=torch.Generator().manual_seed(7))
    b = sampler.sample(users, 4, generator=torch.Generator().manual_seed(7))
    c = sampler.sample(users, 4, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_full_user_raises():
    ei = torch.tensor([[0, 0, 0, 1], [0, 1, 2, 0]])
    sampler = NegativeSampler(ei, num_users=2, num_items=3)
    assert sampler.sample(torch.tensor([1, 1])).tolist() != []
    with pytest.raises(ValueError, match="every one of the 3 items"):
        sampler.sample(torch.tensor([1, 0]))
    with pytest.raises(ValueError):
        NegativeSampler(ei)  # sizes required for a raw edge_index
    with pytest.raises(ValueError):
        NegativeSampler(ei, num_users=2, num_items=2)  # item id 2 out of range


def test_empty_users():
    sampler = NegativeSampler(_random_data())
    assert sampler.sample(torch.empty(0, dtype=torch.long)).shape == (0,)
    assert sampler.sample(torch.empty(0, dtype=torch.long), 3).shape == (0, 3)


def test_loader_batches_cover_edges_and_are_deterministic():
    data = _random_data()
    ei = data["user", "interacts", "item"].edge_index
    loader = InteractionLoader(data, batch_size=64, generator=torch.Generator().manual_seed(0))
    assert len(loader) == 7  # ceil(400 / 64)
    batches = list(loader)
    assert len(batches) == 7 and all(isinstance(b, Batch) for b in batches)
    assert [b.users.numel() for b in batches] == [64] * 6 + [16]
    users = torch.cat([b.users for b in batches])
    items = torch.cat([b.pos_items for b in batches])
    neg = torch.cat([b.neg_items for b in batches])
    got = sorted(zip(users.tolist(), items.tolist()))
    assert got == sorted(zip(ei[0].tolist(), ei[1].tolist()))      # a permutation of the edges
    assert not NegativeSampler(data).is_positive(users, neg).any()
    # same seed -> same epoch; next epoch differs
    l1 = InteractionLoader(data, batch_size=64, generator=torch.Generator().manual_seed(3))
    l2 = InteractionLoader(data, batch_size=64, generator=torch.Generator().manual_seed(3))
    e1, e2 = list(l1), list(l2)
    assert all(torch.equal(a.users, b.users) and torch.equal(a.neg_items, b.neg_items)
               for a, b in zip(e1, e2))
    e1b = list(l1)
    assert not torch.equal(e1[0].users, e1b[0].users)


def test_loader_options():
    data = _random_data()
    l0 = InteractionLoader(data, batch_size=100, num_neg=0, shuffle=False)
    b = next(iter(l0))
    assert b.neg_items is None
    assert torch.equal(b.users, data["user", "interacts", "item"].edge_index[0, :100])
    lk = InteractionLoader(data, batch_size=64, num_neg=3, drop_last=True,
                           generator=torch.Generator().manual_seed(0))
    assert len(lk) == 6
    bs = list(lk)
    assert len(bs) == 6 and bs[0].neg_items.shape == (64, 3)


@requires_cuda
def test_cuda_sampler_and_loader():
    data = _random_data()
    cpu = NegativeSampler(data)
    gpu = NegativeSampler(data).to("cuda")
    users = torch.arange(30).repeat(20)
    a = cpu.sample(users, 2, generator=torch.Generator().manual_seed(0))
    b = gpu.sample(users.cuda(), 2, generator=torch.Generator().manual_seed(0))
    assert b.is_cuda and torch.equal(a, b.cpu())
    assert not gpu.is_positive(users.cuda().unsqueeze(1), b).any()
    exact = gpu.sample_exact(users.cuda(), 2)
    assert exact.is_cuda and not gpu.is_positive(users.cuda().unsqueeze(1), exact).any()
    loader = InteractionLoader(data, batch_size=128, device="cuda",
                               generator=torch.Generator().manual_seed(0))
    batch = next(iter(loader))
    assert batch.users.is_cuda and batch.neg_items.is_cuda
