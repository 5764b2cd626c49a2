r"""Summary statistics of a dataset in the project layout."""
from __future__ import annotations

from typing import Any

import torch
from torch_geometric.data import HeteroData

import numpy as np

from .hetero import INTERACTS, SPLITS, modality_features, modality_shapes, num_items, num_users

__all__ = ["dataset_stats", "feature_stats", "format_stats"]


def feature_stats(data: HeteroData) -> dict[str, dict[str, Any]]:
    r"""Per-modality statistics of the item features.

    Returns:
        ``{modality: {'dim', 'norm_mean', 'norm_min', 'norm_max' (L2 norms
        of the finite rows), 'nan_rows' (rows with a NaN or inf),
        'zero_rows' (all-zero rows, e.g. items without an image),
        'duplicate_rows' (rows equal to an earlier row)}}``.
    """
    out = {}
    for m, x in modality_features(data).items():
        x = x.detach().cpu().float()
        finite = torch.isfinite(x).all(dim=1)
        norms = x[finite].norm(dim=1)
        zero = (x == 0).all(dim=1)
        rows = x.contiguous().numpy()
        if rows.shape[0] and rows.shape[1]:
            keys = np.ascontiguousarray(rows).view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1])))
            n_unique = np.unique(keys.ravel()).size
        else:
            n_unique = rows.shape[0]
        out[m] = {"dim": int(x.size(1)),
                  "norm_mean": float(norms.mean()) if norms.numel() else 0.0,
                  "norm_min": float(norms.min()) if norms.numel() else 0.0,
                  "norm_max": float(norms.max()) if norms.numel() else 0.0,
                  "nan_rows": int((~finite).sum()),
                  "zero_rows": int(zero.sum()),
                  "duplicate_rows": int(rows.shape[0] - n_unique)}
    return out


def dataset_stats(data: HeteroData, features: bool = False) -> dict[str, Any]:
    r"""Sizes, density, split counts, degrees and modality shapes of ``data``.

    Returns:
        ``{'name', 'users', 'items', 'interactions', 'density',
        'train', 'valid', 'test', 'split_ratio': (tr, va, te),
        'avg_user_degree', 'avg_item_degree', 'min_user_degree',
        'min_item_degree', 'max_user_degree', 'max_item_degree',
        'cold_items' (items without a training edge),
        'top20_item_share' (share of interactions on the 20% most popular items),
        'modalities': {m: [num_items, dim]}}``; degrees count all splits.
        With ``features=True`` also ``'feature_stats'``: :func:`feature_stats`
        (reads every feature matrix; off by default so that lazily generated
        synthetic features are not built just to print sizes).
    """
    n_u, n_i = num_users(data), num_items(data)
    store = data[INTERACTS]
    counts, users, items = {}, [], []
    for s in SPLITS:
        key = "edge_index" if s == "train" else f"{s}_edge_index"
        e = store[key] if key in store else None
        counts[s] = int(e.size(1)) if e is not None else 0
        if e is not None:
            users.append(e[0].cpu())
            items.append(e[1].cpu())
    total = sum(counts.values())
    u_deg = torch.bincount(torch.cat(users), minlength=n_u) if users else torch.zeros(n_u, dtype=torch.long)
    i_deg = torch.bincount(torch.cat(items), minlength=n_i) if items else torch.zeros(n_i, dtype=torch.long)
    train_items = torch.zeros(n_i, dtype=torch.bool)
    if "edge_index" in store:
        train_items[store["edge_index"][1].cpu()] = True
    top = torch.sort(i_deg, descending=True).values[:max(1, n_i // 5)]
    out = {
        "name": getattr(data, "name", None),
        "users": n_u,
        "items": n_i,
        "interactions": total,
        "density": total / (n_u * n_i) if n_u and n_i else 0.0,
        **counts,
        "split_ratio": tuple(counts[s] / total if total else 0.0 for s in SPLITS),
        "avg_user_degree": total / n_u if n_u else 0.0,
        "avg_item_degree": total / n_i if n_i else 0.0,
        "min_user_degree": int(u_deg.min()) if n_u else 0,
        "max_user_degree": int(u_deg.max()) if n_u else 0,
        "min_item_degree": int(i_deg.min()) if n_i else 0,
        "max_item_degree": int(i_deg.max()) if n_i else 0,
        "cold_items": int((~train_items).sum()),
        "top20_item_share": float(top.sum()) / total if total else 0.0,
        "modalities": modality_shapes(data),
    }
    if features:
        out["feature_stats"] = feature_stats(data)
    return out


def format_stats(stats: dict[str, Any]) -> str:
    r"""Render :func:`dataset_stats` output as an aligned two-column table.

    Example::

        dataset        synthetic-baby
        users          19,445
        items          7,050
        interactions   160,792
        density        0.1173%
        ...
    """
    def num(v):
        return f"{v:,}" if isinstance(v, int) else f"{v:.2f}"

    rows: list[tuple[str, str]] = []
    if stats.get("name"):
        rows.append(("dataset", str(stats["name"])))
    if stats.get("layout"):
        rows.append(("layout", str(stats["layout"])))
    for key in ("users", "items", "interactions"):
        if key in stats:
            rows.append((key, num(stats[key])))
    if "density" in stats:
        rows.append(("density", f"{100 * stats['density']:.4f}%"))
    ratio = stats.get("split_ratio")
    for i, s in enumerate(SPLITS):
        if s in stats:
            share = f" ({100 * ratio[i]:.1f}%)" if ratio else ""
            rows.append((s, f"{stats[s]:,}{share}"))
    for side in ("user", "item"):
        if f"avg_{side}_degree" in stats:
            rows.append((f"{side} degree", f"avg {stats[f'avg_{side}_degree']:.2f}, "
                                           f"min {stats[f'min_{side}_degree']}, "
                                           f"max {stats[f'max_{side}_degree']}"))
    if "top20_item_share" in stats:
        rows.append(("top-20% items", f"{100 * stats['top20_item_share']:.1f}% of interactions"))
    if stats.get("cold_items"):
        rows.append(("cold items", f"{stats['cold_items']:,} (no train edge)"))
    mods = stats.get("modalities") or {}
    if not mods:
        rows.append(("modalities", "none"))
    fstats = stats.get("feature_stats") or {}
    for m, shape in mods.items():
        rows.append((f"x_{m}", " x ".join(f"{d:,}" for d in shape)))
        if m in fstats:
            f = fstats[m]
            rows.append(("  norms", f"mean {f['norm_mean']:.4g}, min {f['norm_min']:.4g}, "
                                     f"max {f['norm_max']:.4g}"))
            rows.append(("  rows", f"{f['nan_rows']:,} NaN/inf, {f['zero_rows']:,} zero, "
                                    f"{f['duplicate_rows']:,} duplicate"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
