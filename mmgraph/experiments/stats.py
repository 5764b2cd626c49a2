r"""Spread over seeds and paired significance tests over users.

:func:`mean_std` summarises a metric over seeds (sample standard deviation,
``ddof=1``). :func:`paired_tests` compares two models on the same users: the
paired t-test on the per-user differences and the Wilcoxon signed-rank test
(two-sided). With scipy installed (the ``scipy`` or ``test`` extra) the
p-values are scipy's (``ttest_rel``; ``wilcoxon`` with its default
``zero_method='wilcox'``); without it, the normal approximations below, which
agree with scipy to a few 1e-4 once there are more than ~50 non-zero
differences (a leaderboard has thousands of users):

* t-test: :math:`t = \bar d / (s_d / \sqrt n)`, :math:`p = 2\,(1 - \Phi(|t|))`
  (the t distribution with ``n - 1`` degrees of freedom is close to normal);
* Wilcoxon: zero differences dropped, ranks of :math:`|d|` with ties
  averaged, :math:`W^+` the sum of ranks of positive differences,
  :math:`z = (W^+ - n(n+1)/4) / \sigma` with
  :math:`\sigma^2 = n(n+1)(2n+1)/24 - \sum_t (t^3 - t)/48` over tie groups,
  no continuity correction (scipy's ``method='asymptotic'``).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["mean_std", "paired_tests", "paired_ttest_normal", "wilcoxon_normal", "normal_sf"]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, sample standard deviation)`` of ``values`` (std ``nan`` for one value).

    Args:
        values: e.g. a test metric of each seed.
    """
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else float("nan")


def normal_sf(z: float) -> float:
    """``P(Z > z)`` for a standard normal ``Z``."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def paired_ttest_normal(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Paired t statistic of ``a - b`` and its two-sided p-value from the normal
    approximation.

    Args:
        a, b: paired observations (e.g. per-user Recall@20 of two models).

    Returns:
        ``(t, p)``; ``(nan, nan)`` with fewer than two pairs, ``(0, 1)`` when every
        difference is 0.
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = d.size
    if n < 2:
        return float("nan"), float("nan")
    sd = d.std(ddof=1)
    if sd == 0:
        return (0.0, 1.0) if d.mean() == 0 else (math.copysign(math.inf, d.mean()), 0.0)
    t = float(d.mean() / (sd / math.sqrt(n)))
    return t, min(1.0, 2.0 * normal_sf(abs(t)))


def _average_ranks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks (1-based) of ``x`` with ties averaged, and the size of each tie group."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(xs)) + 1]
    sizes = np.diff(np.r_[starts, xs.size])
    avg = starts + (sizes + 1) / 2.0                     # mean of ranks start+1 .. start+size
    ranks = np.empty(x.size)
    ranks[order] = np.repeat(avg, sizes)
    return ranks, sizes


def wilcoxon_normal(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Wilcoxon signed-rank test of ``a - b`` (two-sided), normal approximation.

    Args:
        a, b: paired observations.

    Returns:
        ``(W, p)``: ``W = min(W+, W-)`` (scipy's two-sided statistic) and the
        p-value; ``(nan, nan)`` when every difference is 0.
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    d = d[d != 0]
    n = d.size
    if n == 0:
        return float("nan"), float("nan")
    ranks, ties = _average_ranks(np.abs(d))
    w_plus = float(ranks[d > 0].sum())
    w_minus = float(ranks[d < 0].sum())
    mean = n * (n + 1) / 4.0
    var = n * (n + 1) * (2 * n + 1) / 24.0 - float(((ties ** 3) - ties).sum()) / 48.0
    if var <= 0:
        return min(w_plus, w_minus), 1.0
    z = (w_plus - mean) / math.sqrt(var)
    return min(w_plus, w_minus), min(1.0, 2.0 * normal_sf(abs(z)))


def paired_tests(a: Sequence[float], b: Sequence[float], use_scipy: bool | None = None) -> dict:
    """Paired t-test and Wilcoxon signed-rank test of ``a`` against ``b``.

    Args:
        a, b: paired observations of equal length (e.g. per-user metrics of a
            model and of the baseline, on the same users in the same order).
        use_scipy: ``None``: scipy when importable; ``False``: the normal
            approximations; ``True``: scipy (``ImportError`` without it).

    Returns:
        ``{'n', 'mean_diff', 't', 'p_ttest', 'wilcoxon', 'p_wilcoxon',
        'method'}`` with ``method`` ``'scipy'`` or ``'normal approximation'``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples must be 1-d of equal length, got {a.shape} and {b.shape}")
    if use_scipy is None:
        try:
            import scipy.stats  # noqa: F401
            use_scipy = True
        except ImportError:
            use_scipy = False
    out = {"n": int(a.size), "mean_diff": float((a - b).mean()) if a.size else float("nan")}
    if use_scipy:
        import warnings

        from scipy import stats
        d = a - b
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if a.size < 2:
                t, pt = float("nan"), float("nan")
            elif d.std() == 0:
                t, pt = paired_ttest_normal(a, b)        # scipy returns nan for constant d
            else:
                res = stats.ttest_rel(a, b)
                t, pt = float(res.statistic), float(res.pvalue)
            if not np.any(d != 0):
                w, pw = float("nan"), float("nan")
            else:
                res = stats.wilcoxon(a, b)
                w, pw = float(res.statistic), float(res.pvalue)
        out.update(t=t, p_ttest=pt, wilcoxon=w, p_wilcoxon=pw, method="scipy")
    else:
        t, pt = paired_ttest_normal(a, b)
        w, pw = wilcoxon_normal(a, b)
        out.update(t=t, p_ttest=pt, wilcoxon=w, p_wilcoxon=pw, method="normal approximation")
    return out
