r"""Confidence intervals and acceptance regions for the book's statistical checks.

A statistical test of a random algorithm can fail by bad luck. Every test and every chapter
check in this project therefore states its **false-failure probability**: the probability that
a correct implementation lands outside the acceptance region. The functions here compute the
regions from exact laws (binomial) or from the normal law (for means of many draws).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

__all__ = [
    "Interval",
    "binomial_acceptance",
    "clopper_pearson",
    "mean_interval",
    "variance_interval",
    "z_for_false_failure",
]


@dataclass(frozen=True)
class Interval:
    """A closed interval ``[low, high]`` with the estimate it surrounds."""

    estimate: float
    low: float
    high: float

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    def __str__(self) -> str:
        return f"{self.estimate:.4g} [{self.low:.4g}, {self.high:.4g}]"


def z_for_false_failure(false_failure: float) -> float:
    r"""Two-sided normal quantile :math:`z` with :math:`P(|Z| > z) = \text{false\_failure}`.

    For example ``z_for_false_failure(1e-9)`` is about 6.11.
    """
    if not 0.0 < false_failure < 1.0:
        raise ValueError(f"false_failure must lie in (0, 1), but got {false_failure!r}")
    return float(_st.norm.isf(false_failure / 2.0))


def binomial_acceptance(n: int, prob: float, false_failure: float = 1e-9) -> tuple[int, int]:
    r"""Acceptance region for a count :math:`K \sim \mathrm{Binomial}(n, \text{prob})`.

    Returns the integers ``(low, high)`` such that
    :math:`P(K < \text{low}) \le \alpha/2` and :math:`P(K > \text{high}) \le \alpha/2` with
    :math:`\alpha` = ``false_failure``, computed from the exact binomial law. A correct
    sampler therefore fails ``low <= K <= high`` with probability at most ``false_failure``.
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, but got {n}")
    half = false_failure / 2.0
    # ppf(q) is the smallest k with P(K <= k) >= q; step back one so P(K < low) <= half.
    low = int(_st.binom.ppf(half, n, prob))
    while low > 0 and _st.binom.cdf(low - 1, n, prob) > half:
        low -= 1
    high = int(_st.binom.isf(half, n, prob))
    while high < n and _st.binom.sf(high, n, prob) > half:
        high += 1
    return low, high


def clopper_pearson(successes: int, n: int, level: float = 0.95) -> Interval:
    """Exact (Clopper-Pearson) confidence interval for a binomial proportion."""
    alpha = 1.0 - level
    low = 0.0 if successes == 0 else float(_st.beta.ppf(alpha / 2, successes, n - successes + 1))
    high = 1.0 if successes == n else float(_st.beta.isf(alpha / 2, successes + 1, n - successes))
    return Interval(successes / n, low, high)


def mean_interval(samples: np.ndarray, level: float = 0.95, axis: int = 0) -> Interval:
    r"""Student-t confidence interval for the mean of i.i.d. samples along ``axis``.

    :math:`\bar x \pm t_{n-1,\,1-\alpha/2}\; s / \sqrt n` with the sample standard deviation
    :math:`s` (``ddof=1``). Works on a 1-d array of samples; for arrays of several
    quantities, returns arrays in the fields.
    """
    samples = np.asarray(samples, dtype=np.float64)
    n = samples.shape[axis]
    if n < 2:
        raise ValueError(f"need at least 2 samples for an interval, but got {n}")
    mean = samples.mean(axis=axis)
    half = _st.t.isf((1.0 - level) / 2.0, n - 1) * samples.std(axis=axis, ddof=1) / np.sqrt(n)
    return Interval(mean, mean - half, mean + half)


def variance_interval(samples: np.ndarray, level: float = 0.95) -> Interval:
    r"""Large-sample confidence interval for the variance of i.i.d. samples.

    The sample variance :math:`s^2` is asymptotically normal with variance
    :math:`(\mu_4 - \sigma^4)/n`, where :math:`\mu_4` is the fourth central moment
    (no normality assumed, so it is valid for the two-valued output of dropout). The interval is
    :math:`s^2 \pm z\,\sqrt{(\hat\mu_4 - s^4)/n}`; use it with thousands of samples. It
    degenerates when :math:`\mu_4 = \sigma^4`, i.e. for a symmetric two-point law such as the
    output of dropout with :math:`p = 1/2`, whose sample variance fluctuates only at order
    :math:`1/n` (the interval then has width zero; check such cases through the keep count).
    """
    samples = np.asarray(samples, dtype=np.float64).ravel()
    n = samples.size
    if n < 2:
        raise ValueError(f"need at least 2 samples for an interval, but got {n}")
    centred = samples - samples.mean()
    var = float(samples.var(ddof=1))
    mu4 = float(np.mean(centred**4))
    half = z_for_false_failure(1.0 - level) * np.sqrt(max(mu4 - var**2, 0.0) / n)
    return Interval(var, var - half, var + half)
