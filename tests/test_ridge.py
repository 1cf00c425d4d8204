"""Dropout in linear regression: closed form against enumeration, Monte Carlo and SGD."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dropoutlib.ridge import (
    dropout_loss_samples,
    dropout_ridge_solution,
    dropout_sgd,
    expected_dropout_loss,
    gamma_squared,
    ridge_solution,
)
from dropoutlib.stats import z_for_false_failure

SCALINGS = ["inverted", "standard"]


def _problem(seed: int, n: int = 6, d: int = 3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * np.array([0.5, 1.0, 3.0])[:d]
    return X, rng.standard_normal(n), rng.standard_normal(d)


@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 0.8])
def test_closed_form_equals_exhaustive_expectation(scaling, p):
    """Exact: average the loss over all 2^(N*D) masks with their probabilities (N=2, D=3)."""
    X, y, w = _problem(0, n=2, d=3)
    c = 1 / (1 - p) if scaling == "inverted" else 1.0
    total = 0.0
    for bits in itertools.product([0, 1], repeat=X.size):
        mask = np.array(bits, dtype=float).reshape(X.shape)
        prob = np.prod(np.where(mask == 1, 1 - p, p))
        total += prob * np.sum((y - c * (mask * X) @ w) ** 2)
    assert expected_dropout_loss(X, y, w, p, scaling=scaling) == pytest.approx(total, rel=1e-12)


@pytest.mark.parametrize("scaling", SCALINGS)
def test_closed_form_against_monte_carlo(scaling):
    """Mean of 100,000 sampled dropout losses within z(1e-9) standard errors of the formula.

    The sample mean of i.i.d. losses with finite variance is normal to within the CLT error
    at this size, so a correct formula fails with probability about 1e-9.
    """
    X, y, w = _problem(1)
    losses = dropout_loss_samples(
        X, y, w, 0.3, samples=100_000, rng=np.random.default_rng(7), scaling=scaling
    )
    se = losses.std(ddof=1) / np.sqrt(losses.size)
    expected = expected_dropout_loss(X, y, w, 0.3, scaling=scaling)
    assert abs(losses.mean() - expected) <= z_for_false_failure(1e-9) * se


def test_minimiser_is_stationary_and_conventions_agree():
    X, y, _ = _problem(2, n=20, d=3)
    p = 0.4
    w_inv = dropout_ridge_solution(X, y, p)
    w_std = dropout_ridge_solution(X, y, p, scaling="standard")
    np.testing.assert_allclose(X @ w_inv, (1 - p) * X @ w_std, rtol=1e-12)
    for w, scaling in ((w_inv, "inverted"), (w_std, "standard")):
        f0 = expected_dropout_loss(X, y, w, p, scaling=scaling)
        eps = 1e-5
        for e in np.eye(3):
            grad = (
                expected_dropout_loss(X, y, w + eps * e, p, scaling=scaling)
                - expected_dropout_loss(X, y, w - eps * e, p, scaling=scaling)
            ) / (2 * eps)
            assert abs(grad) < 1e-6 * max(1.0, f0)


def test_p0_is_least_squares_and_uniform_columns_give_plain_ridge():
    X, y, _ = _problem(3, n=30, d=3)
    np.testing.assert_allclose(
        dropout_ridge_solution(X, y, 0.0), np.linalg.lstsq(X, y, rcond=None)[0], rtol=1e-10
    )
    Xn = X / np.sqrt(gamma_squared(X))  # unit column norms: Gamma = I
    np.testing.assert_allclose(
        dropout_ridge_solution(Xn, y, 0.5), ridge_solution(Xn, y, 1.0), rtol=1e-12
    )


def test_predictions_are_invariant_to_column_scaling():
    """Gamma-weighted penalty: rescaling a feature rescales its weight, predictions unchanged."""
    X, y, _ = _problem(4, n=30, d=3)
    scale = np.array([10.0, 0.1, 1.0])
    w = dropout_ridge_solution(X, y, 0.5)
    w_scaled = dropout_ridge_solution(X * scale, y, 0.5)
    np.testing.assert_allclose((X * scale) @ w_scaled, X @ w, rtol=1e-10)


def test_sgd_with_dropout_converges_to_closed_form():
    X, noise, w_true = _problem(5, n=200, d=3)
    X /= X.std(axis=0)
    y = X @ w_true + 0.5 * noise
    w_star = dropout_ridge_solution(X, y, 0.5)
    result = dropout_sgd(X, y, 0.5, rng=np.random.default_rng(8), lr=0.01, epochs=150)
    rel = np.linalg.norm(result.w - w_star) / np.linalg.norm(w_star)
    assert rel < 0.05
    assert result.path.shape == (150, 3)
    # and not to least squares, which is far away at p = 0.5
    w_ls = dropout_ridge_solution(X, y, 0.0)
    assert np.linalg.norm(result.w - w_ls) > 5 * np.linalg.norm(result.w - w_star)


def test_bad_input():
    X, y, w = _problem(6)
    with pytest.raises(ValueError, match="p = 1"):
        dropout_ridge_solution(X, y, 1.0)
    with pytest.raises(ValueError, match="but got X"):
        expected_dropout_loss(X, y[:-1], w, 0.5)
    with pytest.raises(TypeError, match="rng"):
        dropout_loss_samples(X, y, w, 0.5, samples=3, rng=None)
