"""Tests of dropoutlib.stats: the intervals every statistical check relies on."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dropoutlib.stats import (
    Interval,
    binomial_acceptance,
    clopper_pearson,
    mean_interval,
    variance_interval,
    z_for_false_failure,
)


@pytest.mark.parametrize(("n", "prob"), [(10, 0.5), (1000, 0.1), (10**6, 0.5), (50, 0.99)])
@pytest.mark.parametrize("alpha", [1e-3, 1e-9])
def test_binomial_acceptance_is_the_tightest_region_with_tails_below_half_alpha(n, prob, alpha):
    low, high = binomial_acceptance(n, prob, false_failure=alpha)
    assert 0 <= low <= high <= n
    assert stats.binom.cdf(low - 1, n, prob) <= alpha / 2
    assert stats.binom.sf(high, n, prob) <= alpha / 2
    # one step tighter on either side would break the bound (unless already at the edge)
    assert low == n or stats.binom.cdf(low, n, prob) > alpha / 2
    assert high == 0 or stats.binom.sf(high - 1, n, prob) > alpha / 2


def test_z_for_false_failure_matches_the_normal_law():
    assert z_for_false_failure(0.05) == pytest.approx(1.959964, abs=1e-6)
    assert 2 * stats.norm.sf(z_for_false_failure(1e-9)) == pytest.approx(1e-9, rel=1e-9)
    with pytest.raises(ValueError, match="false_failure must lie in"):
        z_for_false_failure(0.0)


def test_clopper_pearson_edges_and_known_value():
    assert clopper_pearson(0, 10).low == 0.0
    assert clopper_pearson(10, 10).high == 1.0
    ci = clopper_pearson(50, 100)
    # P(X >= 50 | p = low) = alpha/2 at the lower limit, by construction of the exact interval
    assert stats.binom.sf(49, 100, ci.low) == pytest.approx(0.025, rel=1e-6)
    assert 0.5 in ci and 0.3 not in ci


def test_mean_interval_covers_at_its_nominal_rate():
    """Coverage of 95% intervals over 2000 samples of size 10: count ~ Binomial(2000, 0.95).

    The exact binomial region has false-failure probability <= 1e-9.
    """
    rng = np.random.default_rng(0)
    samples = rng.normal(3.0, 2.0, size=(2000, 10))
    covered = sum(3.0 in mean_interval(row) for row in samples)
    low, high = binomial_acceptance(2000, 0.95, false_failure=1e-9)
    assert low <= covered <= high


def test_interval_formatting_and_errors():
    assert str(Interval(0.5, 0.25, 0.75)) == "0.5 [0.25, 0.75]"
    with pytest.raises(ValueError, match="at least 2 samples"):
        mean_interval(np.array([1.0]))


def test_variance_interval_covers_at_its_nominal_rate_for_two_valued_data():
    """Dropout-like data (0 w.p. 0.3, else 1/0.7): coverage of 95% intervals over
    1000 samples of size 2000 is Binomial(1000, ~0.95); region at false failure 1e-9 with a
    0.01 allowance for the normal approximation of the interval itself.
    """
    rng = np.random.default_rng(1)
    data = (rng.random((1000, 2000)) >= 0.3) / 0.7
    covered = sum(0.3 / 0.7 in variance_interval(row) for row in data)
    low, _ = binomial_acceptance(1000, 0.94, false_failure=1e-9)
    _, high = binomial_acceptance(1000, 0.96, false_failure=1e-9)
    assert low <= covered <= high
