"""ScalarTokenAttention (mmgraph.nn.attention): equal to nn.MultiheadAttention(1, 1) on
one-dimensional tokens, fused gradients equal to autograd's (float64)."""
import copy

import pytest
import torch

from mmgraph.nn import ScalarTokenAttention
from marks import requires_cuda


def test_scalar_token_attention_equals_multihead_attention():
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(1, 1, dropout=0.3, batch_first=True).eval()
    att = ScalarTokenAttention.from_multihead(mha).eval()
    q, kv = torch.randn(7, 12), torch.randn(7, 12)
    ref, _ = mha(q.unsqueeze(2), kv.unsqueeze(2), kv.unsqueeze(2), need_weights=False)
    torch.testing.assert_close(att(q, kv), ref.squeeze(2), atol=1e-6, rtol=1e-5)
    # training: expectation preserved, p = 1 leaves the output bias only
    att.train()
    assert att(q, kv).shape == (7, 12)
    full = ScalarTokenAttention(1.0).train()
    torch.testing.assert_close(full(q, kv), full.out_bias.expand(7, 12))


@pytest.mark.parametrize("p", [0.0, 0.4])
def test_scalar_token_attention_fused_gradients_equal_autograd(p):
    # SDPA (p = 0) and the fused dropout kernel against softmax / dropout / bmm
    # through autograd, float64, the same dropout mask (the kernel's one uniform
    # draw, replayed)
    torch.manual_seed(1)
    att = ScalarTokenAttention(p).double().train()
    with torch.no_grad():
        att.in_bias.normal_()
        att.out_bias.normal_()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(9, 13, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(9, 13, generator=g, dtype=torch.float64, requires_grad=True)
    w_out = torch.randn(9, 13, generator=g, dtype=torch.float64)
    params = [x, y, *att.parameters()]
    torch.manual_seed(5)
    got = att(x, y)
    g_got = torch.autograd.grad((got * w_out).sum(), params)
    torch.manual_seed(5)
    keep = torch.rand(9, 13, 13, dtype=torch.float64) >= p
    w, b = att.in_weight, att.in_bias
    q, k, v = x * w[0] + b[0], y * w[1] + b[1], y * w[2] + b[2]
    a = torch.softmax(q.unsqueeze(2) * k.unsqueeze(1), -1) * keep / (1 - p)
    want = torch.bmm(a, v.unsqueeze(2)).squeeze(2) * att.out_weight + att.out_bias
    g_want = torch.autograd.grad((want * w_out).sum(), params)
    assert (got - want).abs().max() < 1e-13
    for name, a_, b_ in zip(["x", "y", "in_weight", "in_bias", "out_weight", "out_bias"],
                            g_got, g_want):
        assert (a_ - b_).abs().max() < 1e-12 * max(1.0, b_.abs().max().item()), name
    if p > 0:
        assert 0.5 < keep.double().mean() < 0.7           # the mask really drops weights


@requires_cuda
@pytest.mark.parametrize("p", [0.0, 0.4])
def test_scalar_token_attention_cuda_matches_autograd(p):
    # the same check on the GPU (SDPA's CUDA kernels, the fused dropout kernel's mask
    # drawn by the CUDA generator and replayed there), against the CPU module's output
    # for p = 0
    torch.manual_seed(1)
    cpu = ScalarTokenAttention(p).double().train()
    with torch.no_grad():
        cpu.in_bias.normal_()
        cpu.out_bias.normal_()
    att = copy.deepcopy(cpu).cuda()
    g = torch.Generator().manual_seed(2)
    x0, y0, w_out = (torch.randn(9, 13, generator=g, dtype=torch.float64) for _ in range(3))
    x, y = x0.cuda().requires_grad_(), y0.cuda().requires_grad_()
    params = [x, y, *att.parameters()]
    torch.manual_seed(5)
    got = att(x, y)
    g_got = torch.autograd.grad((got * w_out.cuda()).sum(), params)
    torch.manual_seed(5)
    keep = torch.rand(9, 13, 13, dtype=torch.float64, device="cuda") >= p
    w, b = att.in_weight, att.in_bias
    q, k, v = x * w[0] + b[0], y * w[1] + b[1], y * w[2] + b[2]
    a = torch.softmax(q.unsqueeze(2) * k.unsqueeze(1), -1) * keep / (1 - p)
    want = torch.bmm(a, v.unsqueeze(2)).squeeze(2) * att.out_weight + att.out_bias
    g_want = torch.autograd.grad((want * w_out.cuda()).sum(), params)
    assert (got - want).abs().max() < 1e-12
    for a_, b_ in zip(g_got, g_want):
        assert (a_ - b_).abs().max() < 1e-11 * max(1.0, b_.abs().max().item())
    if p == 0:
        torch.testing.assert_close(got.cpu(), cpu(x0, y0), atol=1e-12, rtol=1e-12)
