r"""Modality blocks: projection of raw item features, ID gates, attention fusion.

These are the pieces MambaRec (and several of its relatives: MGCN, LGMRec)
put around a graph encoder:

* :class:`ModalityProjector` maps raw modality features (``[I, 4096]``
  image CNN features, ``[I, 384]`` sentence embeddings, ...) to the
  embedding size, optionally refines them (e.g. with
  :class:`~mmgraph.nn.DREAM`) and applies LayerNorm + dropout;
* :class:`ModalityGate` turns item ID embeddings into modality-specific item
  embeddings, :math:`\mathbf e_i \odot \sigma(\mathbf W\mathbf f_i + \mathbf b)`;
* :class:`ModalityAttentionFusion` splits ``M >= 1`` modality views into a
  common part (attention-weighted mean) and preference-gated specific parts.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.mapped import release_pages

__all__ = ["ModalityProjector", "ModalityGate", "ModalityAttentionFusion"]


class ModalityProjector(nn.Module):
    r"""Project raw modality features to ``out_dim`` and normalise them.

    .. math::
        \mathbf h &= \mathbf W_2(\mathbf W_1 \mathbf x + \mathbf b_1) + \mathbf b_2
            \quad (\texttt{reduction}=r:\ \ d_{in} \to d_{in}/r \to d) \\
        \mathbf h &= \mathbf W \mathbf x + \mathbf b
            \quad (\texttt{reduction}=\texttt{None}:\ \ d_{in} \to d) \\
        \mathbf z &= \mathrm{Dropout}(\mathrm{LayerNorm}(\mathrm{refine}(\mathbf h)))

    As in MambaRec's code there is *no* activation between the two linear
    layers (``activation=None``), so they compose to one linear map of rank
    at most ``min(d_in / r, d)``. The projector exploits that: with
    ``fuse_linear=True`` (default) and no activation it applies
    :math:`(\mathbf W_2\mathbf W_1)\mathbf x + (\mathbf W_2 \mathbf b_1 +
    \mathbf b_2)`, which costs ``d_in x d`` instead of ``d_in x d_in/r``
    multiply-adds per item (8x fewer for 4096 -> 512 -> 64) and gives the same
    result and the same gradients for ``W_1, b_1, W_2, b_2`` up to float
    rounding (the parameters are the same two ``nn.Linear`` layers).

    ``refine`` is any module mapping ``[N, d] -> [N, d]`` (MambaRec:
    :class:`~mmgraph.nn.DREAM`); MambaRec applies LayerNorm and dropout
    *after* it. ``layer_norm`` may be a ``nn.LayerNorm`` instance to share one
    normalisation between modalities (the authors' code does).

    Args:
        in_dim: raw feature size ``d_in``.
        out_dim: output size ``d`` (default 64).
        reduction: ``r`` for the two-layer projection, ``None`` for one layer.
        dropout: dropout probability after the normalisation.
        layer_norm: ``True`` (own LayerNorm), ``False`` (none) or a shared
            ``nn.LayerNorm(out_dim)``.
        refine: optional module applied between projection and normalisation.
        activation: optional activation between the two linear layers
            (``None`` as in MambaRec; e.g. ``nn.LeakyReLU()``).
        fuse_linear: compose the two linear layers into one matmul when there
            is no activation.

    Shapes:
        - input: ``[N, d_in]``
        - output: ``[N, d]``; with ``return_refined=True`` also the
          refined features before normalisation/dropout, ``[N, d]``.
    """

    def __init__(self, in_dim: int, out_dim: int = 64, reduction: int | None = None,
                 dropout: float = 0.0, layer_norm: bool | nn.LayerNorm = True,
                 refine: nn.Module | None = None, activation: nn.Module | None = None,
                 fuse_linear: bool = True):
        super().__init__()
        if in_dim <= 0 or out_dim <= 0:
            raise ValueError(f"ModalityProjector needs positive sizes, got in_dim={in_dim}, "
                             f"out_dim={out_dim}")
        if reduction is not None and (reduction <= 0 or in_dim // reduction < 1):
            raise ValueError(f"reduction={reduction} is invalid for in_dim={in_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_dim, self.out_dim, self.reduction = in_dim, out_dim, reduction
        if reduction is None:
            self.reduce = None
            self.proj = nn.Linear(in_dim, out_dim)
        else:
            self.reduce = nn.Linear(in_dim, in_dim // reduction)
            self.proj = nn.Linear(in_dim // reduction, out_dim)
        self.activation = activation
        self.fuse_linear = fuse_linear
        self.refine = refine
        if isinstance(layer_norm, nn.LayerNorm):
            if tuple(layer_norm.normalized_shape) != (out_dim,):
                raise ValueError(f"shared LayerNorm has shape {tuple(layer_norm.normalized_shape)}, "
                                 f"expected ({out_dim},)")
            self.norm = layer_norm
        elif layer_norm:
            self.norm = nn.LayerNorm(out_dim)
        else:
            self.norm = None
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in (self.reduce, self.proj, self.refine, self.norm):
            if m is not None and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def project(self, x: Tensor) -> Tensor:
        """The linear projection ``[N, d_in] -> [N, d]`` alone."""
        if x.dim() != 2 or x.size(-1) != self.in_dim:
            raise ValueError(f"ModalityProjector expects [N, {self.in_dim}] features, "
                             f"got {tuple(x.shape)}")
        if self.reduce is None:
            return self.proj(x)
        if self.activation is None and self.fuse_linear:
            w = self.proj.weight @ self.reduce.weight                     # [d, d_in]
            b = self.proj.bias + self.proj.weight @ self.reduce.bias      # [d]
            return F.linear(x, w, b)
        h = self.reduce(x)
        if self.activation is not None:
            h = self.activation(h)
        return self.proj(h)

    def forward(self, x: Tensor, return_refined: bool = False):
        h = self.project(x)
        if self.refine is not None:
            h = self.refine(h)
        z = h if self.norm is None else self.norm(h)
        z = self.dropout(z)
        return (z, h) if return_refined else z

    def extra_repr(self) -> str:
        mid = "" if self.reduce is None else f" -> {self.in_dim // self.reduction}"
        return f"{self.in_dim}{mid} -> {self.out_dim}"


class ModalityGate(nn.Module):
    r"""ID-gated modality item embeddings (MambaRec, MGCN):

    .. math::
        \mathbf e^{(m)}_i = \mathbf e_i \odot \sigma(\mathbf W \mathbf z^{(m)}_i + \mathbf b)

    Args:
        channels: embedding size ``d``.
        feature_dim: size of the modality features (default ``d``).

    Shapes:
        - ``id_emb``: ``[N, d]``, ``feats``: ``[N, feature_dim]``
        - output: ``[N, d]``
    """

    def __init__(self, channels: int, feature_dim: int | None = None):
        super().__init__()
        self.lin = nn.Linear(feature_dim or channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()

    def forward(self, id_emb: Tensor, feats: Tensor) -> Tensor:
        return id_emb * torch.sigmoid(self.lin(feats))


class ModalityAttentionFusion(nn.Module):
    r"""Common/specific attention fusion of ``M >= 1`` modality views (MambaRec).

    For modality embeddings :math:`\mathbf h^{(m)}_n` (rows ``n`` are
    users and items) and the user-item (collaborative) view
    :math:`\mathbf c_n`:

    .. math::
        \alpha^{(m)}_n &= \operatorname{softmax}_m\big(\mathbf q^\top
            \tanh(\mathbf W \mathbf h^{(m)}_n + \mathbf b)\big) \\
        \bar{\mathbf h}_n &= \textstyle\sum_m \alpha^{(m)}_n \mathbf h^{(m)}_n
            \quad\text{(common part)} \\
        \tilde{\mathbf h}^{(m)}_n &= \sigma(\mathbf G_m \mathbf c_n + \mathbf g_m)
            \odot (\mathbf h^{(m)}_n - \bar{\mathbf h}_n)
            \quad\text{(specific parts)} \\
        \mathbf s_n &= \frac{1}{M + 1}\Big(\textstyle\sum_m
            \tilde{\mathbf h}^{(m)}_n + \bar{\mathbf h}_n\Big)

    i.e. the mean of the ``M`` specific parts and the common part (the
    authors' ``(sep_v + sep_t + common) / 3`` for ``M = 2``). The query
    network ``Linear(d, d) - Tanh - Linear(d, 1, bias=False)`` is shared by
    the modalities; each modality has its own preference gate. With
    ``M = 1`` the weight is 1, the specific part vanishes and
    :math:`\mathbf s = \mathbf h / 2` (MambaRec itself skips fusion then).

    Args:
        channels: embedding size ``d``.
        num_modalities: ``M >= 1``.

    Shapes:
        - ``views``: ``[M, N, d]`` tensor or a sequence of ``M`` ``[N, d]``
        - ``collab``: ``[N, d]``
        - output: ``[N, d]`` (and the weights ``[N, M]`` with
          ``return_weights=True``)
    """

    def __init__(self, channels: int, num_modalities: int):
        super().__init__()
        if num_modalities < 1:
            raise ValueError(f"ModalityAttentionFusion needs num_modalities >= 1, got {num_modalities}")
        self.channels, self.num_modalities = channels, num_modalities
        self.query = nn.Sequential(nn.Linear(channels, channels), nn.Tanh(),
                                   nn.Linear(channels, 1, bias=False))
        self.prefer = nn.ModuleList(nn.Linear(channels, channels) for _ in range(num_modalities))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, views: Tensor | Sequence[Tensor], collab: Tensor,
                return_weights: bool = False):
        h = views if isinstance(views, Tensor) else torch.stack(list(views), 0)
        M = self.num_modalities
        if h.dim() != 3 or h.size(0) != M or h.size(-1) != self.channels:
            raise ValueError(f"expected {M} views of shape [N, {self.channels}], got {tuple(h.shape)}")
        if collab.shape != h.shape[1:]:
            raise ValueError(f"collaborative view has shape {tuple(collab.shape)}, expected "
                             f"{tuple(h.shape[1:])}")
        alpha = torch.softmax(self.query(h).squeeze(-1), dim=0)               # [M, N]
        common = (alpha.unsqueeze(-1) * h).sum(0)                               # [N, d]
        gw = torch.cat([g.weight for g in self.prefer], 0)                      # [M d, d]
        gb = torch.cat([g.bias for g in self.prefer], 0)
        gate = torch.sigmoid(F.linear(collab, gw, gb)).view(-1, M, self.channels).transpose(0, 1)
        specific = (gate * (h - common)).sum(0)                                 # [N, d]
        side = (specific + common) / (M + 1)
        return (side, alpha.t()) if return_weights else side

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_modalities={self.num_modalities}"


class ModalityFeatures(torch.nn.Module):
    r"""A model's raw item feature tables, one per modality, trainable or frozen.

    Several models train the raw modality features as parameters (MMRec's
    ``nn.Embedding.from_pretrained(freeze=False)``: BM3, FREEDOM, LATTICE,
    MGCN, MambaRec); others keep them fixed. This block holds the tables
    either way:

    * ``trainable=True``: each table ``[n_items, dim_m]`` is a
      :class:`~torch.nn.Parameter` named ``<modality>`` (saved in the
      ``state_dict`` as ``features.<modality>`` when the block is a model's
      ``features`` attribute);
    * ``trainable=False``: a non-persistent buffer (follows ``.to(device)``,
      not saved: it is rebuilt from the data).

    :meth:`reset_parameters` restores every table to the values it was built
    from. ``features[m]``, ``iter(features)``, ``features.items()`` give
    access by modality name.

    The tables are private copies: training never changes the given tensors.
    Given tensors that are memory-mapped (a dataset loaded from its processed
    cache) have their pages handed back after each copy
    (:func:`~mmgraph.data.mapped.release_pages`), so a table is resident once,
    not once in the data and once here (values unchanged; the data reads its
    pages again from the file if something touches them later).

    Args:
        features: ``{modality: [n_items, dim_m]}`` (e.g.
            :func:`~mmgraph.data.modality_features` of the data); copied as
            float32.
        trainable: parameters (default) or frozen buffers.
    """

    def __init__(self, features, trainable: bool = True):
        super().__init__()
        if not features:
            raise ValueError("ModalityFeatures needs at least one modality")
        self.trainable = bool(trainable)
        self._source = dict(features)          # the data's tensors, for reset_parameters
        self.names = list(features)
        for m, x in features.items():
            table = x.detach().clone().float()
            release_pages(x)
            if self.trainable:
                self.register_parameter(m, torch.nn.Parameter(table))
            else:
                self.register_buffer(m, table, persistent=False)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for m in self.names:
                getattr(self, m).copy_(self._source[m])
                release_pages(self._source[m])

    def __getitem__(self, modality: str) -> Tensor:
        if modality not in self.names:
            raise KeyError(f"no modality {modality!r}; have {self.names}")
        return getattr(self, modality)

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def items(self):
        return [(m, getattr(self, m)) for m in self.names]

    def extra_repr(self) -> str:
        shapes = ", ".join(f"{m}={tuple(getattr(self, m).shape)}" for m in self.names)
        return f"{shapes}, trainable={self.trainable}"
