"""Tests of SELU and alpha dropout: dropoutlib.numpy.alpha."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _forced_mask import ForcedBernoulli, bits
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import integrate

from dropoutlib.numpy import (
    ALPHA_PRIME,
    alpha_affine,
    alpha_dropout,
    alpha_dropout_backward,
    feature_alpha_dropout,
    selu,
    selu_backward,
)
from dropoutlib.stats import z_for_false_failure

FLOATS = [np.float16, np.float32, np.float64]
CASES = [  # (ours, torch's, input shape, torch's noise shape)
    (alpha_dropout, F.alpha_dropout, (50,), (50,)),
    (alpha_dropout, F.alpha_dropout, (), ()),
    (alpha_dropout, F.alpha_dropout, (3, 4, 5), (3, 4, 5)),
    (feature_alpha_dropout, F.feature_alpha_dropout, (3, 4, 5), (3, 4, 1)),
    (feature_alpha_dropout, F.feature_alpha_dropout, (2, 3, 2, 2), (2, 3, 1, 1)),
    (feature_alpha_dropout, F.feature_alpha_dropout, (6, 5), (6, 5)),  # 2-d: element-wise
]


# p = 0.7 and 0.9: in float16 the shift's scalar must be rounded to float16 first (spec 6.3).
@pytest.mark.parametrize("p", [0.2, 0.5, 0.7, 0.9])
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("ours", "theirs", "shape", "noise_shape"), CASES)
def test_bit_exact_with_torch_given_the_same_mask(ours, theirs, shape, noise_shape, dtype, p):
    rng = np.random.default_rng(round(p * 100) + len(shape))
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    y, mask = ours(x, p, rng=rng, return_mask=True)
    grad = alpha_dropout_backward(g, mask, p)

    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    forced = ForcedBernoulli(mask)
    with forced:
        yt = theirs(xt, p, training=True)
    yt.backward(torch.from_numpy(g))
    assert forced.noise_shapes == [noise_shape]
    np.testing.assert_array_equal(bits(y), bits(yt.detach().numpy()))
    np.testing.assert_array_equal(bits(grad), bits(xt.grad.numpy()))
    assert y.dtype == grad.dtype == dtype and y.shape == shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_selu_and_its_gradient_match_torch(dtype):
    x = np.concatenate([np.linspace(-6, 6, 201), [0.0, -0.0, -30.0, 30.0]]).astype(dtype)
    g = np.random.default_rng(0).standard_normal(x.shape).astype(dtype)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = F.selu(xt)
    yt.backward(torch.from_numpy(g))
    tol = {"rtol": 4 * np.finfo(dtype).eps, "atol": 4 * np.finfo(dtype).tiny}
    np.testing.assert_allclose(selu(x), yt.detach().numpy(), **tol)
    np.testing.assert_allclose(selu_backward(g, x), xt.grad.numpy(), **tol)
    assert selu(x).dtype == dtype


def _selu_moment(k: int) -> float:
    """E[selu(Z)^k] for Z ~ N(0, 1), by numerical integration."""

    def integrand(z):
        return float(selu(np.array(z))) ** k * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

    return sum(integrate.quad(integrand, lo, hi, epsabs=1e-13)[0] for lo, hi in [(-40, 0), (0, 40)])


def test_selu_fixed_point_is_mean_zero_variance_one():
    """SELU's constants make selu(Z) have mean 0 and second moment 1 for Z ~ N(0, 1)."""
    assert abs(_selu_moment(1)) < 1e-9
    assert abs(_selu_moment(2) - 1.0) < 1e-9


@pytest.mark.parametrize("p", [0.05, 0.2, 0.5, 0.8])
def test_affine_correction_matches_torch_constants(p):
    """a and b from the general formula agree with ATen's a = 1/sqrt((A^2 p + 1)(1 - p))
    and shift A a p (spec section 3) to round-off."""
    big_a = 1.7580993408473766
    a, b = alpha_affine(p)
    assert math.isclose(a, 1.0 / math.sqrt((big_a * big_a * p + 1.0) * (1.0 - p)), rel_tol=1e-15)
    assert math.isclose(b, big_a * a * p, rel_tol=1e-15)
    assert math.isclose(ALPHA_PRIME, -big_a, rel_tol=0, abs_tol=0)


@pytest.mark.parametrize(("mean", "var"), [(0.0, 1.0), (0.3, 2.0), (-1.0, 0.25)])
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_affine_correction_preserves_any_fixed_point_exactly(mean, var, p):
    """For x = mean +- sqrt(var) (equally likely) the output takes three values; its exact
    mean and variance, by enumeration, are the input's."""
    a, b = alpha_affine(p, mean=mean, var=var)
    q = 1.0 - p
    values = [a * (mean + math.sqrt(var)) + b, a * (mean - math.sqrt(var)) + b, a * ALPHA_PRIME + b]
    probs = [q / 2, q / 2, p]
    m1 = sum(w * v for w, v in zip(probs, values, strict=True))
    m2 = sum(w * (v - m1) ** 2 for w, v in zip(probs, values, strict=True))
    assert math.isclose(m1, mean, abs_tol=1e-12) and math.isclose(m2, var, rel_tol=1e-12)


def _moment_bounds(p: float, moments: list[float], n: int, false_failure: float):
    """Expected mean and mean square of the outputs, and half-widths for their sample
    estimates over n i.i.d. outputs (normal law, CLT).

    ``moments`` are E[x^k], k = 1..4, of the input. Output y = a x + b (kept) or c (dropped),
    so E[y^k] follows exactly; Var(mean) <= E[y^2]/n and Var(mean square) =
    (E[y^4] - E[y^2]^2)/n. Each check has false-failure probability ``false_failure``.
    """
    a, b = alpha_affine(p)
    c, q = a * ALPHA_PRIME + b, 1.0 - p
    m = [1.0, *moments]

    def out_moment(k):
        kept = sum(math.comb(k, j) * a**j * m[j] * b ** (k - j) for j in range(k + 1))
        return q * kept + p * c**k

    z = z_for_false_failure(false_failure)
    e1, e2, e4 = out_moment(1), out_moment(2), out_moment(4)
    return e1, e2, z * math.sqrt(e2 / n), z * math.sqrt((e4 - e2 * e2) / n)


@pytest.mark.parametrize("source", ["normal", "selu"])
@pytest.mark.parametrize("p", [0.05, 0.2, 0.5, 0.8])
def test_alpha_dropout_keeps_mean_zero_and_variance_one(source, p):
    """Standard-normal or SELU(N(0,1)) inputs: the output's sample mean and mean square lie
    within z(1e-9) standard errors of 0 and 1 (false-failure probability 2e-9 per case)."""
    n = 200_000
    data = np.random.default_rng(round(p * 100))
    x = data.standard_normal(n)
    if source == "selu":
        x = selu(x)
        moments = [_selu_moment(k) for k in (1, 2, 3, 4)]
    else:
        moments = [0.0, 1.0, 0.0, 3.0]
    y = alpha_dropout(x, p, rng=data)
    e1, e2, mean_bound, square_bound = _moment_bounds(p, moments, n, 1e-9)
    assert abs(e1) < 1e-9 and abs(e2 - 1.0) < 1e-9  # the fixed point (0, 1) is preserved
    assert abs(y.mean() - e1) <= mean_bound
    assert abs(np.mean(y * y) - e2) <= square_bound


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_feature_alpha_dropout_keeps_mean_zero_and_variance_one(p):
    """Channels are independent, so one element per channel gives i.i.d. outputs; bounds as
    above, false-failure probability 2e-9 per case."""
    data = np.random.default_rng(7)
    x = data.standard_normal((4000, 50, 3))
    y, mask = feature_alpha_dropout(x, p, rng=data, return_mask=True)
    first = y[:, :, 0].ravel()
    e1, e2, mean_bound, square_bound = _moment_bounds(p, [0.0, 1.0, 0.0, 3.0], first.size, 1e-9)
    assert abs(first.mean() - e1) <= mean_bound and abs(np.mean(first**2) - e2) <= square_bound
    a, b = alpha_affine(p)
    dropped = np.broadcast_to(~mask, x.shape)
    np.testing.assert_allclose(y[dropped], a * ALPHA_PRIME + b, rtol=1e-14)


@settings(max_examples=40, deadline=None)
@given(
    x=hnp.arrays(
        st.sampled_from(FLOATS),
        hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4),
        elements=st.floats(-10, 10, width=16),
    ),
    p=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
    feature=st.booleans(),
)
def test_property_values_shape_and_dtype(x, p, seed, feature):
    """Kept units are a x + b and dropped units a alpha' + b, to the dtype's round-off."""
    if feature and x.ndim < 2:
        x = x.reshape((1, 1, *x.shape))
    fn = feature_alpha_dropout if feature else alpha_dropout
    y, mask = fn(x, p, rng=np.random.default_rng(seed), return_mask=True)
    assert y.shape == x.shape and y.dtype == x.dtype and y is not x
    if mask is None:
        expected = np.zeros_like(x) if p == 1.0 and x.size else x
        np.testing.assert_array_equal(y, expected)
        return
    a, b = alpha_affine(p)
    keep = np.broadcast_to(mask, x.shape)
    expected = np.where(keep, a * x.astype(np.float64) + b, a * ALPHA_PRIME + b)
    eps = float(np.finfo(x.dtype).eps)
    tol = 4 * eps * (np.abs(a * x.astype(np.float64)) + abs(b) + abs(a * ALPHA_PRIME))
    assert np.all(np.abs(y - expected) <= tol)
    grad = alpha_dropout_backward(np.ones_like(x), mask, p)
    assert np.all(np.abs(grad - np.where(keep, a, 0.0)) <= 4 * eps * a)


@pytest.mark.parametrize("fn", [alpha_dropout, feature_alpha_dropout])
def test_backward_matches_central_differences_in_float64(fn):
    data = np.random.default_rng(8)
    x, w = data.standard_normal((3, 4, 2)), data.standard_normal((3, 4, 2))

    def loss(z):
        return float(np.sum(w * fn(z, 0.3, rng=np.random.default_rng(11))))

    _, mask = fn(x, 0.3, rng=np.random.default_rng(11), return_mask=True)
    grad = alpha_dropout_backward(w, mask, 0.3)
    numeric = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = 1e-6
        numeric[i] = (loss(x + e) - loss(x - e)) / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-8)


def test_edge_cases():
    x = np.ones((2, 3), dtype=np.float32)
    assert alpha_dropout(x, 0.5, training=False) is x
    assert np.array_equal(alpha_dropout(x, 0.0, rng=np.random.default_rng(0)), x)
    y = alpha_dropout(x, 1.0, rng=np.random.default_rng(0))  # torch: x * 0, not saturation
    assert np.array_equal(y, F.alpha_dropout(torch.from_numpy(x), 1.0, training=True).numpy())
    with pytest.raises(RuntimeError, match="Feature dropout requires at least 2 dimensions"):
        feature_alpha_dropout(np.ones(4), 0.5, rng=np.random.default_rng(0))
    assert feature_alpha_dropout(np.ones(4), 0.5, training=False).shape == (4,)
    with pytest.raises(ValueError, match="between 0 and 1"):
        alpha_dropout(x, -0.1, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match=r"numpy\.random\.Generator"):
        alpha_dropout(x, 0.5)
    with pytest.raises(ValueError, match="p < 1"):
        alpha_affine(1.0)
