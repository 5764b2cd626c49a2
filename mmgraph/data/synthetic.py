r"""Seeded synthetic multimodal datasets with a planted signal.

The real Amazon image/text features cannot be shipped, so tests, examples
and offline benchmarks run on data this module makes. It mimics the
benchmarks' shape (sizes of MMRec's Baby/Sports/Clothing and BM3's Elec,
5-core, long-tailed popularity, per-user 8:1:1 split) and plants a signal
that multimodal models can exploit:

* **latent factors**: ``C`` taste clusters with random unit centres in
  ``R^L``; item ``i`` has ``v_i = normalise(c_{k(i)} + \sigma_c z_i)``, user
  ``u`` ``p_u = normalise(c_{k(u)} + \alpha_u c_{k'(u)} + \sigma_c z_u)``
  (a main and a side taste);
* **interactions**: user ``u`` draws ``d_u`` distinct items without
  replacement from

  .. math::
      P(i \mid u) \propto \exp\big(p_u^\top v_i / \tau + \beta \log \pi_i\big),
      \qquad \log \pi_i \sim \mathcal N(0, \sigma_\pi^2),

  via Gumbel-top-``d_u`` (vectorised over chunks of users); ``d_u`` is
  ``min_degree`` plus a multinomial share of the remaining budget with
  lognormal activity weights, so the total is exact. Items left below
  ``min_degree`` are then topped up by moving interactions of the users
  with the highest affinity to them away from those users' least-liked
  popular items (every user keeps its degree, every item ends >= ``min_degree``);
* **features** (built on first access, see ``lazy_features``): noisy non-linear functions of ``v_i``: image
  ``relu(tanh(v_i A) + \epsilon)`` in ``R^{4096}`` (non-negative like CNN
  ReLU outputs), text ``normalise(tanh(v_i B_1) B_2 + \epsilon)`` in
  ``R^{384}`` (unit norm like sentence-transformers). Cosine kNN on either
  recovers latent neighbours, so feature graphs carry real information.

Everything is a deterministic function of ``seed``; the latent factors,
interactions, split, image and text noise use independent streams, so e.g.
changing ``image_dim`` leaves the interactions unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence
from urllib.parse import parse_qsl

import numpy as np
from torch_geometric.data import HeteroData

from .hetero import build_hetero
from .lazy import set_lazy_features
from .preprocess import per_user_split

__all__ = [
    "PRESETS",
    "SyntheticFactors",
    "generate_synthetic",
    "parse_synthetic_spec",
    "synthetic_dataset",
]

#: Preset sizes (the Amazon datasets' sizes as the MMRec toolbox ships them) and
#: generator defaults per preset.
PRESETS: dict[str, dict] = {
    "baby": dict(num_users=19_445, num_items=7_050, num_interactions=160_792),
    "sports": dict(num_users=35_598, num_items=18_357, num_interactions=296_337),
    "clothing": dict(num_users=39_387, num_items=23_033, num_interactions=278_677),
    "elec": dict(num_users=192_403, num_items=63_001, num_interactions=1_689_188),
    # Baby's shape (8.3 interactions per user, long tail) on about 1/5 of its users
    # and items, with Baby's 28 taste clusters: the examples' --fast runs, minutes on 2 CPU cores
    "baby_small": dict(num_users=4_000, num_items=1_500, num_interactions=33_000, num_clusters=28),
    # small and strongly structured, for unit tests of other modules
    "tiny": dict(num_users=300, num_items=200, num_interactions=3_000, num_clusters=8,
                 temperature=0.1, popularity_sigma=0.5, image_noise=0.3, text_noise=0.1),
}

_CHUNK_ELEMS = 1 << 22   # scores per user chunk (16 MiB of float32)


@dataclass
class SyntheticFactors:
    """Ground truth behind a synthetic dataset (``return_factors=True``)."""

    user: np.ndarray            # [U, L] unit-norm user tastes
    item: np.ndarray            # [I, L] unit-norm item factors
    user_cluster: np.ndarray    # [U] main taste cluster
    item_cluster: np.ndarray    # [I]
    log_popularity: np.ndarray  # [I] log pi_i
    temperature: float


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _user_degrees(rng: np.random.Generator, n_users: int, total: int, min_deg: int,
                  max_deg: int, sigma: float) -> np.ndarray:
    """Degrees >= min_deg, <= max_deg, long-tailed, summing exactly to ``total``."""
    deg = np.full(n_users, min_deg, dtype=np.int64)
    weights = rng.lognormal(0.0, sigma, n_users)
    left = total - deg.sum()
    while left > 0:
        room = max_deg - deg
        w = np.where(room > 0, weights, 0.0)
        deg += np.minimum(rng.multinomial(left, w / w.sum()), room)
        left = total - deg.sum()
    return deg


def _sample_interactions(rng: np.random.Generator, user_f: np.ndarray, item_f: np.ndarray,
                         item_bias: np.ndarray, tau: float, deg: np.ndarray,
                         chunk_elems: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Per-user Gumbel-top-``d_u`` sampling without replacement, in user chunks."""
    n_users, n_items = user_f.shape[0], item_f.shape[0]
    item_t = np.ascontiguousarray((item_f / tau).T.astype(np.float32))
    bias = item_bias.astype(np.float32)
    chunk = max(1, chunk_elems // n_items)
    users_out, items_out = [], []
    for start in range(0, n_users, chunk):
        stop = min(start + chunk, n_users)
        scores = user_f[start:stop] @ item_t
        scores += bias
        # Gumbel(0,1) = -log(Exp(1)); argmax-k of logits + Gumbel = sampling w/o replacement
        with np.errstate(divide="ignore"):
            scores -= np.log(rng.standard_exponential(scores.shape, dtype=np.float32))
        d = deg[start:stop]
        kmax = int(d.max())
        top = np.argpartition(scores, n_items - kmax, axis=1)[:, n_items - kmax:]
        vals = np.take_along_axis(scores, top, axis=1)
        top = np.take_along_axis(top, np.argsort(-vals, axis=1), axis=1)
        mask = np.arange(kmax) < d[:, None]
        items_out.append(top[mask])
        users_out.append(np.repeat(np.arange(start, stop), d))
    return np.concatenate(users_out).astype(np.int64), np.concatenate(items_out).astype(np.int64)


def _repair_item_degrees(rng: np.random.Generator, users: np.ndarray, items: np.ndarray,
                         user_f: np.ndarray, item_f: np.ndarray, tau: float, min_deg: int,
                         n_items: int, chunk_elems: int, max_rounds: int = 200) -> None:
    r"""Raise every item to ``min_deg`` interactions in place, keeping user degrees.

    Each round, every deficient item picks its missing users by
    Gumbel-top-k on affinity (users who do not have it yet); each picked user
    (at most one move per user and round) hands over its least-affine
    interaction among items that can spare one.
    """
    n_users = user_f.shape[0]
    pool = min(n_users, max(4096, min_deg * 64))
    user_s = (user_f / tau).astype(np.float32)
    for _ in range(max_rounds):
        deg = np.bincount(items, minlength=n_items)
        need = min_deg - deg
        short = np.flatnonzero(need > 0)
        if short.size == 0:
            return
        # --- donor interaction of each user: least affine among its items that
        # can spare one (degree > min_deg); users without one cannot take part
        aff = np.einsum("ij,ij->i", user_f[users], item_f[items])
        key = np.where(deg[items] > min_deg, aff, np.inf)
        order = np.lexsort((key, users))
        u_sorted = users[order]
        first_of_user = np.full(n_users, -1, dtype=np.int64)
        starts = np.flatnonzero(np.r_[True, u_sorted[1:] != u_sorted[:-1]])
        first_of_user[u_sorted[starts]] = order[starts]
        can_give = first_of_user >= 0
        can_give[can_give] = np.isfinite(key[first_of_user[can_give]])
        if not can_give.any():
            break
        # --- candidate (item, user) pairs: per chunk of deficient items, the
        # most affine (Gumbel-perturbed) donating users of a random pool
        slot = np.full(n_items, -1, dtype=np.int64)
        slot[short] = np.arange(short.size)
        has = slot[items] >= 0
        pair_rows, pair_users = slot[items[has]], users[has]
        cand_i, cand_u = [], []
        chunk = max(1, chunk_elems // pool)
        where = np.full(n_users, -1, dtype=np.int64)
        for start in range(0, short.size, chunk):
            rows = short[start:start + chunk]
            cand = rng.choice(n_users, size=pool, replace=False) if pool < n_users \
                else np.arange(n_users)
            where[cand] = np.arange(pool)
            sc = item_f[rows] @ user_s[cand].T
            with np.errstate(divide="ignore"):
                sc -= np.log(rng.standard_exponential(sc.shape, dtype=np.float32))
            sel = (pair_rows >= start) & (pair_rows < start + rows.size)
            col = where[pair_users[sel]]
            ok = col >= 0
            sc[pair_rows[sel][ok] - start, col[ok]] = -np.inf      # already interacted
            sc[:, ~can_give[cand]] = -np.inf
            where[cand] = -1
            k = int(need[rows].max())
            top = np.argpartition(sc, pool - k, axis=1)[:, pool - k:]
            vals = np.take_along_axis(sc, top, axis=1)
            top = np.take_along_axis(top, np.argsort(-vals, axis=1), axis=1)
            mask = (np.arange(k) < need[rows][:, None]) & np.isfinite(
                np.take_along_axis(sc, top, axis=1))
            cand_i.append(np.broadcast_to(rows[:, None], mask.shape)[mask])
            cand_u.append(cand[top[mask]])
        cand_i, cand_u = np.concatenate(cand_i), np.concatenate(cand_u)
        perm = rng.permutation(cand_i.size)
        cand_i, cand_u = cand_i[perm], cand_u[perm]
        _, first = np.unique(cand_u, return_index=True)          # one move per user
        cand_i, cand_u = cand_i[first], cand_u[first]
        donor = first_of_user[cand_u]
        # --- a donor item gives at most deg - min_deg interactions this round
        j = items[donor]
        o = np.argsort(j, kind="stable")
        js = j[o]
        grp_start = np.flatnonzero(np.r_[True, js[1:] != js[:-1]])
        rank = np.arange(js.size) - np.repeat(grp_start, np.diff(np.r_[grp_start, js.size]))
        fine = np.empty(js.size, dtype=bool)
        fine[o] = rank < (deg[js] - min_deg)
        if not fine.any():
            break
        items[donor[fine]] = cand_i[fine]
    raise RuntimeError(f"could not give every item {min_deg} interactions; "
                       f"increase num_interactions or lower min_degree")


def _image_features(rng: np.random.Generator, item_f: np.ndarray, dim: int, noise: float,
                    rows_per_chunk: int = 4096) -> np.ndarray:
    latent = item_f.shape[1]
    proj = rng.standard_normal((latent, dim), dtype=np.float32) * np.float32(math.sqrt(2.0))
    out = np.empty((item_f.shape[0], dim), dtype=np.float32)
    for s in range(0, item_f.shape[0], rows_per_chunk):
        h = np.tanh(item_f[s:s + rows_per_chunk] @ proj)
        h += noise * rng.standard_normal(h.shape, dtype=np.float32)
        np.maximum(h, 0.0, out=out[s:s + rows_per_chunk])
    return out


def _text_features(rng: np.random.Generator, item_f: np.ndarray, dim: int, noise: float,
                   hidden: int = 128) -> np.ndarray:
    latent = item_f.shape[1]
    w1 = rng.standard_normal((latent, hidden), dtype=np.float32) * np.float32(math.sqrt(2.0))
    w2 = rng.standard_normal((hidden, dim), dtype=np.float32) / np.float32(math.sqrt(hidden))
    h = np.tanh(item_f @ w1) @ w2
    h += noise * rng.standard_normal(h.shape, dtype=np.float32)
    return _normalise(h).astype(np.float32)


def generate_synthetic(num_users: int, num_items: int, num_interactions: int,
                       image_dim: int = 4096, text_dim: int = 384, latent_dim: int = 32,
                       seed: int = 0, *, num_clusters: int | None = None,
                       temperature: float = 0.2, popularity_sigma: float = 1.0,
                       popularity_weight: float = 1.0, activity_sigma: float = 1.0,
                       cluster_noise: float = 0.6, image_noise: float = 1.0,
                       text_noise: float = 0.3, min_degree: int = 5,
                       max_user_degree: int | None = None,
                       split: Sequence[float] = (0.8, 0.1, 0.1),
                       modalities: Sequence[str] = ("image", "text"),
                       name: str | None = None, return_factors: bool = False,
                       chunk_elems: int = _CHUNK_ELEMS, lazy_features: bool = True,
                       ) -> HeteroData | tuple[HeteroData, SyntheticFactors]:
    r"""Generate a synthetic multimodal recommendation dataset (see module doc).

    Args:
        num_users, num_items, num_interactions: exact sizes.
        image_dim, text_dim: feature widths (``0`` drops the modality).
        latent_dim: ``L``, width of the planted factors.
        seed: everything is deterministic given the seed.
        num_clusters: taste clusters ``C`` (default ``clip(num_items / 250, 8, 256)``).
        temperature: ``\tau``; lower = interactions follow taste more tightly.
        popularity_sigma, popularity_weight: ``\sigma_\pi`` and ``\beta``
            (long tail of item popularity).
        activity_sigma: lognormal spread of the user activity weights.
        cluster_noise: ``\sigma_c``, spread of factors around their cluster centre.
        image_noise, text_noise: std of the additive feature noise.
        min_degree: every user and item gets at least this many interactions.
        max_user_degree: cap on a user's degree (default ``num_items // 2``).
        split: per-user train/valid/test ratios (MMRec rounding).
        modalities: which of ``'image'``, ``'text'`` to generate.
        name: ``data.name`` (default ``'synthetic'``).
        return_factors: also return the :class:`SyntheticFactors`.
        chunk_elems: scores held at once while sampling (memory knob).
        lazy_features: build each feature matrix on first access of
            ``data['item'].x_<m>`` (see :mod:`mmgraph.data.lazy`), so runs
            that never read a modality (LightGCN, BPR-MF) skip it; the values
            are the same as with ``False`` (each modality has its own stream).

    Returns:
        :class:`HeteroData` (and :class:`SyntheticFactors` if requested).
    """
    n_u, n_i, n_e = int(num_users), int(num_items), int(num_interactions)
    max_deg = int(max_user_degree) if max_user_degree is not None else max(min_degree, n_i // 2)
    if n_u < 1 or n_i < 1:
        raise ValueError(f"need at least one user and one item, got {n_u} users, {n_i} items")
    if max_deg > n_i or max_deg < min_degree:
        raise ValueError(f"max_user_degree must be in [min_degree={min_degree}, num_items={n_i}], "
                         f"got {max_deg}")
    if n_e < min_degree * max(n_u, n_i):
        raise ValueError(f"num_interactions={n_e} is too small: every one of {n_u} users and "
                         f"{n_i} items needs >= {min_degree} interactions")
    if n_e > n_u * max_deg:
        raise ValueError(f"num_interactions={n_e} exceeds num_users * max_user_degree = "
                         f"{n_u * max_deg}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    modalities = (modalities,) if isinstance(modalities, str) else tuple(modalities)
    unknown = set(modalities) - {"image", "text"}
    if unknown:
        raise ValueError(f"unknown synthetic modalities {sorted(unknown)}; use 'image', 'text'")
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(7)]
    r_lat, r_deg, r_int, r_fix, r_split, r_img, r_txt = streams

    # --- planted factors
    c = int(num_clusters) if num_clusters is not None else int(np.clip(round(n_i / 250), 8, 256))
    centers = _normalise(r_lat.standard_normal((c, latent_dim)))
    cluster_p = r_lat.dirichlet(np.full(c, 2.0))
    item_cluster = r_lat.choice(c, size=n_i, p=cluster_p)
    spread = cluster_noise / math.sqrt(latent_dim)
    item_f = _normalise(centers[item_cluster] + spread * r_lat.standard_normal((n_i, latent_dim)))
    user_cluster = r_lat.choice(c, size=n_u, p=cluster_p)
    side = r_lat.choice(c, size=n_u, p=cluster_p)
    alpha = r_lat.uniform(0.0, 0.6, size=(n_u, 1))
    user_f = _normalise(centers[user_cluster] + alpha * centers[side]
                        + spread * r_lat.standard_normal((n_u, latent_dim)))
    log_pop = r_lat.normal(0.0, popularity_sigma, size=n_i)
    item_f32, user_f32 = item_f.astype(np.float32), user_f.astype(np.float32)

    # --- interactions
    deg = _user_degrees(r_deg, n_u, n_e, min_degree, max_deg, activity_sigma)
    users, items = _sample_interactions(r_int, user_f32, item_f32, popularity_weight * log_pop,
                                        temperature, deg, chunk_elems)
    _repair_item_degrees(r_fix, users, items, user_f32, item_f32, temperature, min_degree, n_i,
                         chunk_elems)

    # --- split, canonical (user, item) order inside each split
    labels = per_user_split(users, n_u, split, r_split)
    parts = []
    for lab in range(3):
        m = labels == lab
        u, i = users[m], items[m]
        o = np.lexsort((i, u))
        parts.append(np.stack([u[o], i[o]]))

    makers = {}
    # what determines a feature matrix (the item factors and its own stream):
    # dataset fingerprints use it instead of hashing the values
    base = {"generator": "mmgraph.data.generate_synthetic", "seed": int(seed), "num_items": n_i,
            "latent_dim": int(latent_dim), "num_clusters": c, "cluster_noise": float(cluster_noise)}
    if "image" in modalities and image_dim > 0:
        makers["image"] = ((n_i, int(image_dim)), lambda: _image_features(
            r_img, item_f32, int(image_dim), image_noise),
            {**base, "modality": "image", "dim": int(image_dim), "noise": float(image_noise)})
    if "text" in modalities and text_dim > 0:
        makers["text"] = ((n_i, int(text_dim)), lambda: _text_features(
            r_txt, item_f32, int(text_dim), text_noise),
            {**base, "modality": "text", "dim": int(text_dim), "noise": float(text_noise)})
    feats = {} if lazy_features else {m: fn() for m, (_, fn, _) in makers.items()}
    data = build_hetero(n_u, n_i, parts[0], parts[1], parts[2], feats,
                        name=name if name is not None else "synthetic")
    if lazy_features and makers:
        set_lazy_features(data, makers)
    if return_factors:
        return data, SyntheticFactors(user_f32, item_f32, user_cluster, item_cluster, log_pop,
                                      float(temperature))
    return data


def _convert(value: str):
    low = value.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    if "," in value:
        return tuple(_convert(v) for v in value.split(","))
    return value


def parse_synthetic_spec(spec: str) -> tuple[str, dict]:
    r"""``'synthetic:baby?seed=3&image_dim=256'`` -> ``('baby', {'seed': 3, 'image_dim': 256})``.

    The ``synthetic:`` prefix is optional; values are converted to int,
    float, bool (``true``/``false``), ``None`` or comma-separated tuples
    (``split=0.7,0.15,0.15``).
    """
    body = spec[len("synthetic:"):] if spec.startswith("synthetic:") else spec
    preset, _, query = body.partition("?")
    preset = preset.strip().lower()
    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset {preset!r}; choose one of {sorted(PRESETS)}")
    pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    opts = {k: _convert(v) for k, v in pairs}
    return preset, opts


def synthetic_dataset(spec: str = "tiny", **overrides) -> HeteroData:
    r"""A preset dataset: ``synthetic_dataset('baby', seed=3)`` or
    ``synthetic_dataset('synthetic:baby?seed=3')``; keyword arguments override
    the query string, which overrides the preset's defaults."""
    preset, opts = parse_synthetic_spec(spec)
    kwargs = dict(PRESETS[preset])
    kwargs["name"] = f"synthetic-{preset}"
    kwargs.update(opts)
    kwargs.update(overrides)
    try:
        return generate_synthetic(**kwargs)
    except TypeError as err:
        raise ValueError(f"bad option for synthetic preset {preset!r}: {err}") from None
