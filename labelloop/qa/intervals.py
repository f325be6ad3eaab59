"""Intervals of figures measured on samples, and the three-way gate rule that uses them.

A QA figure measured on a sample (audited error rate, a reviewer's class accuracy or mean IoU
against the gold set, Cohen's kappa) is known only up to its 95% interval. A gate compares the
whole interval with its threshold:

- ``pass``: the interval lies on the right side of the threshold;
- ``fail`` (blocking): it lies on the wrong side;
- ``warn`` (not blocking): it straddles the threshold; the reason names the sample size that
  would be needed to decide, so a small batch neither blocks nor passes by luck.

Sources:

- Proportions: Wilson, E. B. (1927), "Probable inference, the law of succession, and statistical
  inference", JASA 22(158), computed with the maintained implementation
  ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")`` (:func:`wilson_interval`).
- Means and kappa: nonparametric percentile bootstrap (Efron & Tibshirani, "An Introduction to
  the Bootstrap", 1993, ch. 13) with a seeded generator, so reports are reproducible. Resampling
  weights are multinomial counts, which makes each statistic a vectorized function of counts.
  With fewer than :data:`MIN_BOOTSTRAP_N` units the bootstrap collapses (one unit gives a zero-
  width interval), so such a figure is reported with its interval but the gate only warns.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

#: With fewer units than this the bootstrap interval collapses, so such a gate only warns.
MIN_BOOTSTRAP_N = 5
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson (1927) score interval of a binomial proportion ``k / n``; ``(0.0, 1.0)`` if n == 0."""
    if n <= 0:
        return (0.0, 1.0)
    from scipy.stats import binomtest  # heavy (about a second): only when an interval is computed

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (min(max(float(ci.low), 0.0), 1.0), min(max(float(ci.high), 0.0), 1.0))


def sample_size_needed(p_hat: float, target: float, confidence: float = 0.95, max_n: int = 100_000) -> int | None:
    """Smallest audit size ``n`` whose Wilson upper bound is below ``target`` when the observed
    error proportion is ``p_hat`` (``k = round(p_hat * n)`` errors).

    Doubling search for a passing ``n``, then bisection between the last failing and the first
    passing size. ``None`` when ``p_hat >= target`` (no sample can show the rate is below the
    target) or when more than ``max_n`` images would be needed.
    """
    if p_hat >= target:
        return None

    def passes(n: int) -> bool:
        return wilson_interval(round(p_hat * n), n, confidence)[1] < target

    lo, hi = 0, 1  # invariant: lo fails (n = 0 gives [0, 1]), hi is the candidate
    while not passes(hi):
        if hi >= max_n:
            return None
        lo, hi = hi, min(hi * 2, max_n)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid
    return hi


def multinomial_weights(n: int, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Bootstrap resampling counts: ``(resamples, n)`` int64, each row sums to ``n`` (a draw of
    ``n`` units with replacement, equal probabilities), from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)


def bootstrap_interval(
    stat_of_weights: Callable[[np.ndarray], np.ndarray], n: int, confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of a statistic over ``n`` units.

    Args:
        stat_of_weights: maps ``(B, n)`` resampling counts to ``(B,)`` statistic values (NaN
            where the statistic is undefined for that resample; those resamples are dropped).
        n: number of units (images, boxes, box pairs).
    Returns:
        ``(low, high)``, or ``None`` when ``n == 0`` or every resample is undefined.
    """
    if n <= 0:
        return None
    values = np.asarray(stat_of_weights(multinomial_weights(n, resamples, seed)), dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def mean_interval(values, confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
                  seed: int = DEFAULT_SEED) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``values`` (1-D floats); None when empty."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return None
    return bootstrap_interval(lambda w: (w @ x) / x.size, x.size, confidence, resamples, seed)


def accuracy_sample_size_needed(p_hat: float, threshold: float, confidence: float = 0.95,
                                max_n: int = 100_000) -> int | None:
    """Smallest number of checked items whose Wilson *lower* bound reaches ``threshold`` when the
    observed accuracy is ``p_hat``; ``None`` when ``p_hat <= threshold`` (no sample can show it)
    or more than ``max_n`` would be needed. Mirror of :func:`labelloop.qa.intervals.sample_size_needed`
    (the Wilson interval of ``1 - p`` is the mirror image of that of ``p``)."""
    if p_hat <= threshold:
        return None
    return sample_size_needed(1.0 - p_hat, 1.0 - threshold, confidence, max_n)


def scaled_sample_size(n: int, value: float, low: float, high: float, threshold: float) -> int | None:
    """Rough sample size at which an interval around ``value`` would clear ``threshold``: the
    half width shrinks as ``1/sqrt(n)``, so ``n * (half_width / |value - threshold|)^2``.
    ``None`` when the value sits on the threshold."""
    gap = abs(value - threshold)
    if gap <= 1e-12:
        return None
    half = max(high - value, value - low, 1e-12)
    return max(n + 1, math.ceil(n * (half / gap) ** 2))


def gate_higher_is_better(value: float | None, interval: tuple[float, float] | None, threshold: float,
                          n: int, *, what: str, unit: str, needed: int | None,
                          min_n: int = 1, confidence: float = 0.95) -> tuple[str, str]:
    """Three-way rule for a figure that must be at least ``threshold``.

    Returns ``(status, reason)``: ``fail`` when the interval's upper bound is below the
    threshold, ``pass`` when its lower bound is at or above it, ``warn`` otherwise or when
    fewer than ``min_n`` units were measured. ``value is None`` gives ``not_measured``.
    """
    if value is None or interval is None:
        return "not_measured", f"{what}: not measured"
    low, high = interval
    conf = f"{confidence * 100:g}%"
    head = f"{what} {value:.3f} ({conf} interval [{low:.3f}, {high:.3f}], n={n} {unit})"
    if n < min_n:
        return "warn", (f"{head}: only {n} {unit}, at least {min_n} are needed before the interval decides "
                        f"against the {threshold:g} threshold")
    if high < threshold:
        return "fail", f"{head} lies below the {threshold:g} threshold"
    if low >= threshold:
        return "pass", f"{head} lies at or above the {threshold:g} threshold"
    more = f"; about {needed} {unit} would be needed" if needed else ""
    return "warn", f"{head} straddles the {threshold:g} threshold{more}"


def proportion_gate(k: int, n: int, threshold: float, *, what: str, unit: str,
                    confidence: float = 0.95) -> dict:
    """Wilson-interval gate of an accuracy ``k / n`` that must be at least ``threshold``.
    Returns ``{value, ci_low, ci_high, n, status, reason, sample_size_needed}``."""
    if n == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0, "status": "not_measured",
                "reason": f"{what}: not measured (no {unit})", "sample_size_needed": None}
    low, high = wilson_interval(k, n, confidence)
    p = k / n
    needed = accuracy_sample_size_needed(p, threshold, confidence)
    status, reason = gate_higher_is_better(p, (low, high), threshold, n, what=what, unit=unit, needed=needed,
                                           confidence=confidence)
    if status == "warn" and needed is None and p <= threshold:
        reason += f"; the observed {p:.3f} is not above the threshold, so more {unit} cannot pass"
    return {"value": p, "ci_low": low, "ci_high": high, "n": n, "status": status, "reason": reason,
            "sample_size_needed": needed}


STATUS_ORDER = {"fail": 3, "warn": 2, "pass": 1, "not_measured": 0}


def worst(statuses) -> str:
    """The worst of gate statuses (fail > warn > pass > not_measured); ``not_measured`` if none."""
    return max(statuses, key=lambda s: STATUS_ORDER.get(s, 0), default="not_measured")
