r"""DREAM: the Dilated REfinement Attention Module of MambaRec (CIKM'25).

DREAM refines a modality's projected item features with five parallel
branches (a 1x1 conv, three dilated 3x3 convs, a global-pool branch), an
attention over their concatenation and a 1x1 fusion conv.

MambaRec applies it to per-item *vectors*, viewed as ``[N, C, 1, 1]`` maps.
On a 1x1 map a 3x3 conv with dilation ``r`` and zero padding ``r`` only ever
reads its centre tap (every other tap lands on padding), global average
pooling is the identity and bilinear upsampling ``1x1 -> 1x1`` is the
identity, so DREAM is exactly a short stack of per-item linear maps.
:class:`DREAM` therefore has two code paths over one set of parameters:

* ``x`` of shape ``[N, C]`` -> the *fused* path: one ``[N, C] x [C, 5C]``
  matmul for all five branches, one batch norm over the ``5C`` channels,
  the attention as row-wise dot products, one ``[N, 5C] x [5C, C]`` matmul;
* ``x`` of shape ``[N, C, H, W]`` -> the *general* convolutional path.

Both give the same numbers (forward, gradients, running statistics) on
``[N, C, 1, 1]`` inputs; ``tests/nn/test_dream.py`` checks it.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DREAM"]

_ATTENTIONS = ("authors", "paper")


class DREAM(nn.Module):
    r"""Dilated REfinement Attention Module (MambaRec).

    For an input map :math:`\mathbf X \in \mathbb R^{N \times C \times H \times W}`
    and dilations :math:`(r_1, r_2, r_3)` (default ``(6, 12, 18)``):

    .. math::
        \mathbf B_1 &= \mathrm{ReLU}(\mathrm{BN}(\mathrm{Conv}_{1\times 1}(\mathbf X))) \\
        \mathbf B_{1+k} &= \mathrm{ReLU}(\mathrm{BN}(\mathrm{Conv}_{3\times 3}^{\,
            \mathrm{dil}=r_k,\ \mathrm{pad}=r_k}(\mathbf X))), \quad k = 1, 2, 3 \\
        \mathbf B_5 &= \mathrm{Up}_{H\times W}^{\mathrm{bilinear}}\big(\mathrm{ReLU}(
            \mathrm{BN}(\mathrm{Conv}_{1\times 1}(\mathrm{GAP}(\mathbf X))))\big) \\
        \mathbf U &= [\mathbf B_1 \,\|\, \dots \,\|\, \mathbf B_5]
            \in \mathbb R^{N \times 5C \times H \times W} \\
        \mathbf Y &= \mathrm{ReLU}(\mathrm{BN}(\mathrm{Conv}_{1\times 1}^{5C \to C}(
            \mathbf A \odot \mathbf U)))

    Every conv has a bias; each BN has momentum ``bn_momentum``. The attention
    :math:`\mathbf A` combines a channel and a spatial branch by an
    element-wise maximum:

    * ``attention='authors'`` (default, the authors' released code):
      :math:`c = \mathrm{ReLU}(\mathbf w_c^\top \mathrm{GAP}(\mathbf U))
      \in \mathbb R^{N}` (a 1x1 conv to one channel, no bias, broadcast to
      :math:`H \times W` by nearest upsampling),
      :math:`\mathbf s = \sigma(\mathbf w_s^\top \mathbf U) \in
      \mathbb R^{N \times 1 \times H \times W}` (1x1 conv to one channel, no
      bias), :math:`\mathbf A = \max(c\,\mathbf U,\ \mathbf s \odot \mathbf U)`.
      Note that the code multiplies the branches onto :math:`\mathbf U`
      *and* multiplies their maximum onto :math:`\mathbf U` again, so the
      conv input is :math:`\mathbf U \odot \max(c\mathbf U, \mathbf s
      \odot\mathbf U)`; we reproduce that.
    * ``attention='paper'`` (SE/CBAM-style description of the paper):
      :math:`\mathbf M_c = \sigma(\mathbf W_2\,\mathrm{ReLU}(\mathbf W_1
      \mathrm{GAP}(\mathbf U) + \mathbf b_1) + \mathbf b_2) \in
      \mathbb R^{N\times 5C}` (hidden width ``5C // se_reduction``),
      :math:`\mathbf M_s = \sigma(a\,\overline{\mathbf U}^{\,\mathrm{ch}} + b)
      \in\mathbb R^{N\times 1\times H\times W}` (channel mean, 1x1 conv),
      :math:`\mathbf A = \max(\mathbf M_c, \mathbf M_s)`, i.e. the
      conv input is :math:`\max(\mathbf U\odot\mathbf M_c,
      \mathbf U\odot\mathbf M_s)` (:math:`\mathbf U \ge 0`).

    **Fused path.** For ``x`` of shape ``[N, C]`` (per-item vectors, i.e.
    ``H = W = 1``) the same parameters are applied as
    :math:`\mathbf U = \mathrm{ReLU}(\mathrm{BN}(\mathbf X \mathbf W^\top +
    \mathbf b))` with :math:`\mathbf W \in \mathbb R^{5C \times C}` the
    stacked 1x1 weights and *centre taps* of the dilated weights, followed
    by row-wise attention and one ``5C -> C`` matmul. It is exactly the
    general path on ``x.view(N, C, 1, 1)``: batch statistics in training
    mode are taken over the ``N`` rows (as ``BatchNorm2d`` over
    ``N x 1 x 1``), running statistics are updated identically, off-centre
    taps receive zero gradient in both paths.

    The five branch batch norms are stored as one ``BatchNorm2d(5C)``
    (:attr:`branch_norm`, channels ``[kC, (k+1)C)`` belong to branch ``k``);
    batch norm is per channel, so this is the same as five separate ones.

    Args:
        channels: ``C``, input and output channels (MambaRec: the embedding
            size, 64).
        dilations: dilations of the three 3x3 branches.
        attention: ``'authors'`` or ``'paper'``.
        bn_momentum: momentum of every batch norm.
        se_reduction: hidden-width divisor of the ``'paper'`` channel branch.
        eps: batch-norm epsilon.

    Shapes:
        - input: ``[N, C]`` (fused path) or ``[N, C, H, W]`` (general path)
        - output: same shape as the input.

    Training mode needs ``N > 1`` (batch statistics), as for ``BatchNorm2d``.
    """

    def __init__(self, channels: int, dilations: Sequence[int] = (6, 12, 18),
                 attention: str = "authors", bn_momentum: float = 0.1,
                 se_reduction: int = 16, eps: float = 1e-5):
        super().__init__()
        if channels <= 0:
            raise ValueError(f"DREAM needs channels > 0, got {channels}")
        dilations = tuple(int(r) for r in dilations)
        if len(dilations) == 0 or any(r <= 0 for r in dilations):
            raise ValueError(f"DREAM dilations must be positive integers, got {dilations}")
        if bn_momentum is None or not 0.0 <= float(bn_momentum) <= 1.0:
            raise ValueError(f"DREAM needs a batch-norm momentum in [0, 1], got {bn_momentum} "
                             f"(cumulative averaging, momentum=None, is not supported)")
        if attention not in _ATTENTIONS:
            raise ValueError(f"unknown DREAM attention {attention!r}; expected one of {_ATTENTIONS}")
        self.channels = channels
        self.dilations = dilations
        self.attention = attention
        self.num_branches = len(dilations) + 2
        cat = self.num_branches * channels
        self.cat_channels = cat

        self.conv1x1 = nn.Conv2d(channels, channels, 1, bias=True)
        self.dilated = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, padding=r, dilation=r, bias=True) for r in dilations)
        self.pool_conv = nn.Conv2d(channels, channels, 1, bias=True)
        self.branch_norm = nn.BatchNorm2d(cat, eps=eps, momentum=bn_momentum)

        if attention == "authors":
            self.channel_att = nn.Conv2d(cat, 1, 1, bias=False)
            self.spatial_att = nn.Conv2d(cat, 1, 1, bias=False)
        else:
            hidden = max(1, cat // se_reduction)
            self.se_fc1 = nn.Linear(cat, hidden)
            self.se_fc2 = nn.Linear(hidden, cat)
            self.spatial_att = nn.Conv2d(1, 1, 1, bias=True)

        self.out_conv = nn.Conv2d(cat, channels, 1, bias=True)
        self.out_norm = nn.BatchNorm2d(channels, eps=eps, momentum=bn_momentum)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default conv/linear init, BN weight 1 / bias 0, fresh running stats."""
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    # ------------------------------------------------------------------ utils
    def fused_branch_weight(self) -> tuple[Tensor, Tensor]:
        """``([5C, C], [5C])``: stacked weights (centre taps of the dilated
        convs) and biases of the five branches as one linear map."""
        ws = [self.conv1x1.weight[:, :, 0, 0]]
        bs = [self.conv1x1.bias]
        for conv in self.dilated:
            ws.append(conv.weight[:, :, 1, 1])
            bs.append(conv.bias)
        ws.append(self.pool_conv.weight[:, :, 0, 0])
        bs.append(self.pool_conv.bias)
        return torch.cat(ws, 0), torch.cat(bs, 0)

    def _bn(self, x: Tensor, bn: nn.BatchNorm2d, sl: slice | None = None) -> Tensor:
        # Functional batch norm with ``bn``'s parameters (optionally a channel
        # slice of them). Training mode normalises with batch statistics and
        # updates the running statistics in place -- on a slice the update
        # writes through to the buffers, since basic slices are views.
        rm, rv, w, b = bn.running_mean, bn.running_var, bn.weight, bn.bias
        if sl is not None:
            rm, rv, w, b = rm[sl], rv[sl], w[sl], b[sl]
        return F.batch_norm(x, rm, rv, w, b, self.training, bn.momentum, bn.eps)

    def _count_batch(self) -> None:
        if self.training:
            for bn in (self.branch_norm, self.out_norm):
                bn.num_batches_tracked.add_(1)

    # --------------------------------------------------------------- forward
    def forward(self, x: Tensor, fused: bool | None = None) -> Tensor:
        """Refine ``x`` (``[N, C]`` or ``[N, C, H, W]``).

        ``fused=False`` forces the convolutional path on ``[N, C]`` input
        (viewed as ``[N, C, 1, 1]``); ``fused=True`` on a 4-d input requires
        ``H = W = 1``.
        """
        if x.dim() == 2:
            if x.size(1) != self.channels:
                raise ValueError(f"DREAM expects {self.channels} channels, got input {tuple(x.shape)}")
            if fused is False:
                return self._forward_general(x[:, :, None, None])[:, :, 0, 0]
            return self._forward_fused(x)
        if x.dim() == 4:
            if x.size(1) != self.channels:
                raise ValueError(f"DREAM expects {self.channels} channels, got input {tuple(x.shape)}")
            if fused:
                if x.shape[2:] != (1, 1):
                    raise ValueError(f"the fused DREAM path needs 1x1 maps, got {tuple(x.shape)}")
                return self._forward_fused(x[:, :, 0, 0])[:, :, None, None]
            return self._forward_general(x)
        raise ValueError(f"DREAM expects an input of shape [N, C] or [N, C, H, W], got {tuple(x.shape)}")

    def _forward_fused(self, x: Tensor) -> Tensor:
        self._count_batch()
        w, b = self.fused_branch_weight()
        u = F.relu(self._bn(F.linear(x, w, b), self.branch_norm))          # [N, 5C]
        if self.attention == "authors":
            # channel: relu(<w_c, u>) (GAP of a 1x1 map is the identity);
            # spatial: sigmoid(<w_s, u>); both one number per item.
            gates = u @ torch.cat([self.channel_att.weight.view(1, -1),
                                   self.spatial_att.weight.view(1, -1)], 0).t()   # [N, 2]
            c = F.relu(gates[:, :1])
            s = torch.sigmoid(gates[:, 1:])
            # u >= 0 (ReLU), c >= 0, s > 0, hence max(u c, u s) = u max(c, s):
            # the same numbers (and gradients, see below) with an [N, 1]
            # maximum instead of an [N, 5C] one.  Gradients agree because
            # every path through the maximum is multiplied by u, and where
            # u = 0 the ReLU passes no gradient either.
            att = u * torch.maximum(c, s)
        else:
            mc = torch.sigmoid(self.se_fc2(F.relu(self.se_fc1(u))))       # [N, 5C]
            ms = torch.sigmoid(self.spatial_att.weight.view(()) * u.mean(1, keepdim=True)
                               + self.spatial_att.bias)                    # [N, 1]
            att = torch.maximum(mc, ms)
        y = F.linear(att * u, self.out_conv.weight[:, :, 0, 0], self.out_conv.bias)
        return F.relu(self._bn(y, self.out_norm))

    def _forward_general(self, x: Tensor) -> Tensor:
        self._count_batch()
        n, c, h, w = x.shape
        C = self.channels
        k = len(self.dilations)
        local = [self.conv1x1(x)] + [conv(x) for conv in self.dilated]
        local = F.relu(self._bn(torch.cat(local, 1), self.branch_norm, slice(0, (k + 1) * C)))
        g = self.pool_conv(x.mean(dim=(2, 3), keepdim=True))
        g = F.relu(self._bn(g, self.branch_norm, slice((k + 1) * C, (k + 2) * C)))
        g = F.interpolate(g, size=(h, w), mode="bilinear", align_corners=True)
        u = torch.cat([local, g], 1)                                        # [N, 5C, H, W]
        if self.attention == "authors":
            c_att = F.relu(self.channel_att(F.adaptive_avg_pool2d(u, 1)))  # [N, 1, 1, 1]
            c_att = F.interpolate(c_att, size=(h, w), mode="nearest")
            s_att = torch.sigmoid(self.spatial_att(u))                      # [N, 1, H, W]
            att = torch.maximum(u * c_att, u * s_att)
        else:
            z = F.adaptive_avg_pool2d(u, 1).flatten(1)                      # [N, 5C]
            mc = torch.sigmoid(self.se_fc2(F.relu(self.se_fc1(z))))[:, :, None, None]
            ms = torch.sigmoid(self.spatial_att(u.mean(1, keepdim=True)))   # [N, 1, H, W]
            att = torch.maximum(mc, ms)
        y = self.out_conv(att * u)
        return F.relu(self._bn(y, self.out_norm))

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, dilations={self.dilations}, "
                f"attention={self.attention!r}")
