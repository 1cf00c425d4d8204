"""Tests of the NumPy dropout core: dropoutlib.numpy.functional."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dropoutlib.numpy import (
    apply_mask,
    bernoulli_mask,
    dropout,
    dropout_backward,
    inverted_scale,
)
from dropoutlib.stats import binomial_acceptance, z_for_false_failure

FLOATS = [np.float16, np.float32, np.float64]
TORCH_DTYPE = {np.float16: torch.float16, np.float32: torch.float32, np.float64: torch.float64}


def rng_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("p", ["0.5", None, 0.5j, True, np.array([0.5]), [0.5]])
def test_non_numeric_p_is_a_type_error(p):
    x = np.ones(3, dtype=np.float32)
    with pytest.raises(TypeError, match=r"p must be a real number in \[0, 1\]"):
        dropout(x, p, rng=np.random.default_rng(0))


@pytest.mark.parametrize("p", [-0.1, 1.1, math.nan, math.inf, -math.inf, np.float32(2.0)])
def test_out_of_range_p_is_a_value_error_naming_the_value(p):
    x = np.ones(3, dtype=np.float32)
    with pytest.raises(ValueError, match=re.escape(f"between 0 and 1 inclusive, but got {p!r}")):
        dropout(x, p, rng=np.random.default_rng(0))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_, np.complex64])
def test_non_float_arrays_are_refused(dtype):
    with pytest.raises(TypeError, match="floating-point dtype"):
        dropout(np.ones(3, dtype=dtype), 0.5, rng=np.random.default_rng(0))


def test_non_arrays_are_refused():
    with pytest.raises(TypeError, match=r"must be a numpy\.ndarray, but got list"):
        dropout([1.0, 2.0], 0.5, rng=np.random.default_rng(0))


@pytest.mark.parametrize("rng", [None, 0, np.random.RandomState(0), "seed"])
def test_training_needs_an_explicit_generator(rng):
    with pytest.raises(TypeError, match=r"rng must be a numpy\.random\.Generator"):
        dropout(np.ones(3, dtype=np.float32), 0.5, rng=rng)


def test_unknown_scaling_is_a_value_error():
    with pytest.raises(ValueError, match="scaling must be one of"):
        dropout(np.ones(3), 0.5, rng=np.random.default_rng(0), scaling="paper")


def test_errors_mutate_nothing():
    x = np.arange(6, dtype=np.float32)
    rng = np.random.default_rng(0)
    before = rng_state(rng)
    for bad in (1.5, "a", math.nan):
        with pytest.raises((TypeError, ValueError)):
            dropout(x, bad, rng=rng)
    assert rng_state(rng) == before
    np.testing.assert_array_equal(x, np.arange(6, dtype=np.float32))


def test_backward_checks_its_mask():
    g = np.ones(4, dtype=np.float32)
    with pytest.raises(TypeError, match="boolean keep mask"):
        dropout_backward(g, np.ones(4, dtype=np.float32), 0.5)
    with pytest.raises(ValueError, match=r"mask has shape \(3,\) but the array has shape"):
        dropout_backward(g, np.ones(3, dtype=bool), 0.5)


# ---------------------------------------------------------------------------- modes and edge cases


def test_inverted_eval_returns_the_input_object_like_torch():
    x = np.ones(5, dtype=np.float32)
    assert dropout(x, 0.3, training=False) is x
    y, mask = dropout(x, 0.3, training=False, return_mask=True)
    assert y is x and mask is None


@pytest.mark.parametrize("dtype", FLOATS)
def test_standard_eval_scales_by_the_keep_probability(dtype):
    x = np.linspace(-2, 2, 9).astype(dtype)
    y = dropout(x, 0.25, training=False, scaling="standard")
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, x * dtype(0.75))


@pytest.mark.parametrize("dtype", FLOATS)
def test_p_zero_is_the_identity_and_draws_nothing(dtype):
    x = np.linspace(-1, 1, 7).astype(dtype)
    rng = np.random.default_rng(0)
    before = rng_state(rng)
    y, mask = dropout(x, 0.0, rng=rng, return_mask=True)
    assert y is not x and y.dtype == dtype
    np.testing.assert_array_equal(y, x)
    assert mask.all() and rng_state(rng) == before


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("scaling", ["inverted", "standard"])
def test_p_one_multiplies_by_zero_like_torch(dtype, scaling):
    """Regression (issue 10, defect 15): one rule at every p, PyTorch's ``x * 0``.

    Finite inputs give exact zeros (never NaN; -0.0 for negative ones), inf and NaN give NaN,
    bit for bit as ``torch.nn.functional.dropout(x, 1.0)``; no random numbers are drawn.
    """
    x = np.array([-1.5, 2.0, np.inf, -np.inf, np.nan, 0.0, -0.0], dtype=dtype)
    rng = np.random.default_rng(0)
    before = rng_state(rng)
    y, mask = dropout(x, 1.0, rng=rng, scaling=scaling, return_mask=True)
    assert y.dtype == dtype and not mask.any() and rng_state(rng) == before
    expected = torch.nn.functional.dropout(torch.from_numpy(x), 1.0).numpy()
    assert np.array_equal(y.view(np.uint8), expected.view(np.uint8))
    finite = np.isfinite(x)
    assert np.all(y[finite] == 0) and np.isnan(y[~finite]).all()
    assert np.array_equal(np.signbit(y[finite]), np.signbit(x[finite]))
    g = dropout_backward(x, mask, 1.0, scaling=scaling)  # torch's backward at p = 1: grad * 0
    assert np.array_equal(g.view(np.uint8), expected.view(np.uint8))


@pytest.mark.parametrize("p", [0.3, 0.7])
def test_a_dropped_inf_or_nan_is_nan_at_every_p(p):
    """The same rule for 0 < p < 1: every dropped element is x * 0."""
    x = np.tile(np.array([np.inf, -np.inf, np.nan, -2.0], dtype=np.float32), 500)
    y, mask = dropout(x, p, rng=np.random.default_rng(1), return_mask=True)
    assert 0 < mask.sum() < x.size
    dropped = ~mask
    assert np.isnan(y[dropped & ~np.isfinite(x)]).all()
    assert np.all(y[dropped & np.isfinite(x)] == 0) and np.signbit(y[dropped & (x < 0)]).all()


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.7])
def test_outputs_are_zero_or_scaled_input(dtype, p):
    x = np.random.default_rng(1).standard_normal((33, 17)).astype(dtype)
    y, mask = dropout(x, p, rng=np.random.default_rng(2), return_mask=True)
    assert y.dtype == dtype and y.shape == x.shape and mask.dtype == np.bool_
    np.testing.assert_array_equal(y[~mask], 0)
    np.testing.assert_array_equal(y[mask], x[mask] * inverted_scale(p, dtype))
    y_std = dropout(x, p, rng=np.random.default_rng(2), scaling="standard")
    np.testing.assert_array_equal(y_std, np.where(mask, x, 0))


@pytest.mark.parametrize("p", [1 - 1e-16, 1 - 2**-20])
def test_an_overflowing_float16_scale_never_turns_dropped_units_into_nan(p):
    """With 1/(1-p) beyond float16's range PyTorch keeps x * inf and drops to exact x * 0."""
    x = np.array([0.0, 1.0, -2.0, 0.5] * 64, dtype=np.float16)
    assert np.isinf(inverted_scale(p, np.float16))
    mask = np.arange(x.size) % 3 == 0
    y = apply_mask(x, mask, p)
    noise = torch.from_numpy(mask).to(torch.float16).div_(1 - p)
    expected = (torch.from_numpy(x) * noise).numpy()
    assert np.array_equal(y, expected, equal_nan=True)
    assert not np.isnan(y[~mask]).any()
    y2, mask2 = dropout(x, p, rng=np.random.default_rng(0), return_mask=True)
    assert not np.isnan(y2[~mask2]).any()
    assert np.array_equal(dropout_backward(np.ones_like(x), mask, p), np.where(mask, np.inf, 0))


def test_the_mask_takes_one_byte_per_element():
    _, mask = dropout(
        np.ones((64, 32), np.float32), 0.5, rng=np.random.default_rng(0), return_mask=True
    )
    assert mask.dtype == np.bool_ and mask.nbytes == mask.size


def test_non_contiguous_input_matches_its_contiguous_copy():
    base = np.random.default_rng(3).standard_normal((40, 30)).astype(np.float32)
    x = base.T  # Fortran-ordered view
    y = dropout(x, 0.4, rng=np.random.default_rng(4))
    y_ref = dropout(np.ascontiguousarray(x), 0.4, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(base, x.T)  # input untouched


@pytest.mark.parametrize("n", [1, 2, 3, 65535, 65536, 65537, 200_003])
def test_dropout_mask_is_bernoulli_mask_with_the_same_stream(n):
    """The fused, blocked forward draws the words bernoulli_mask draws (odd sizes, block edges)."""
    _, mask = dropout(np.ones(n, np.float32), 0.3, rng=np.random.default_rng(5), return_mask=True)
    np.testing.assert_array_equal(mask, bernoulli_mask(n, 0.3, rng=np.random.default_rng(5)))


def test_successive_calls_draw_fresh_masks_and_seeds_reproduce():
    rng = np.random.default_rng(6)
    a = bernoulli_mask(1000, 0.5, rng=rng)
    b = bernoulli_mask(1000, 0.5, rng=rng)
    # P(a == b) = 2**-1000 for a correct sampler.
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, bernoulli_mask(1000, 0.5, rng=np.random.default_rng(6)))


@settings(max_examples=60, deadline=None)
@given(
    x=hnp.arrays(
        dtype=st.sampled_from(FLOATS),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6),
        elements=st.floats(-100, 100, width=16),
    ),
    p=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
    scaling=st.sampled_from(["inverted", "standard"]),
)
def test_property_shape_dtype_and_values(x, p, seed, scaling):
    y, mask = dropout(x, p, rng=np.random.default_rng(seed), scaling=scaling, return_mask=True)
    assert y.shape == x.shape == mask.shape and y.dtype == x.dtype
    assert np.all(y[~mask] == 0)
    factor = inverted_scale(p, x.dtype) if scaling == "inverted" and p < 1 else x.dtype.type(1)
    np.testing.assert_array_equal(y[mask], x[mask] * factor)
    g = dropout_backward(np.ones_like(x), mask, p, scaling=scaling)
    np.testing.assert_array_equal(g, np.where(mask, factor, 0).astype(x.dtype))


# ---------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("p", [0.05, 0.2, 0.5, 0.9, 0.999])
def test_keep_rate_is_one_minus_p(p):
    """Kept count ~ Binomial(n, 1-p). False-failure probability: at most 1e-9 per case."""
    n = 1_000_000
    kept = int(bernoulli_mask(n, p, rng=np.random.default_rng(7)).sum())
    low, high = binomial_acceptance(n, 1.0 - p, false_failure=1e-9)
    assert low <= kept <= high, (kept, low, high)


def test_masks_of_neighbouring_elements_are_uncorrelated():
    """Pairs (m_i, m_{i+1}) of a fair mask: both kept ~ Binomial(n/2, 1/4). P(fail) <= 1e-9."""
    mask = bernoulli_mask(2_000_000, 0.5, rng=np.random.default_rng(8)).reshape(-1, 2)
    both = int(mask.all(axis=1).sum())
    low, high = binomial_acceptance(mask.shape[0], 0.25, false_failure=1e-9)
    assert low <= both <= high


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_expectation_is_preserved_and_variance_matches(p):
    """E[y] = x and Var[y] = p/(1-p) x^2, checked on 400k draws.

    The sample mean is within z * sd / sqrt(n) of x, with z for a two-sided false-failure
    probability of 1e-9 (normal law; n is large). The sample variance of y is
    (x/(1-p))^2 q(1-q) for the observed keep fraction q, so it is checked through the exact
    binomial region of the keep count (false failure <= 1e-9): q(1-q) over that region.
    """
    n, x0 = 400_000, 1.7
    x = np.full(n, x0)
    y = dropout(x, p, rng=np.random.default_rng(9))
    sd = math.sqrt(p / (1 - p)) * x0
    assert abs(y.mean() - x0) <= z_for_false_failure(1e-9) * sd / math.sqrt(n)
    low, high = binomial_acceptance(n, 1 - p, false_failure=1e-9)
    q = np.array([low / n, high / n] + ([0.5] if low <= n / 2 <= high else []))
    var_range = (x0 / (1 - p)) ** 2 * q * (1 - q)
    assert var_range.min() - 1e-9 <= y.var() <= var_range.max() + 1e-9


# ---------------------------------------------------------------------------- backward


@pytest.mark.parametrize("scaling", ["inverted", "standard"])
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_backward_matches_finite_differences(scaling, p):
    """d/dx of L(x) = sum(w * dropout(x)) with the mask fixed by re-seeding the generator."""
    gen = np.random.default_rng(10)
    x = gen.standard_normal((6, 5))
    w = gen.standard_normal((6, 5))

    def loss(v: np.ndarray) -> float:
        return float(np.sum(w * dropout(v, p, rng=np.random.default_rng(11), scaling=scaling)))

    _, mask = dropout(x, p, rng=np.random.default_rng(11), scaling=scaling, return_mask=True)
    grad = dropout_backward(w, mask, p, scaling=scaling)
    eps = 1e-6
    numeric = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = eps
        numeric[i] = (loss(x + step) - loss(x - step)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_forward_and_backward_are_bit_identical_to_torch_given_the_mask(dtype, p):
    """Torch's CPU recipe with our mask as noise: out = x * (mask / (1-p)); grad = g * noise."""
    gen = np.random.default_rng(12)
    x = gen.standard_normal((16, 9)).astype(dtype)
    g = gen.standard_normal((16, 9)).astype(dtype)
    y, mask = dropout(x, p, rng=np.random.default_rng(13), return_mask=True)

    xt = torch.from_numpy(x.copy()).requires_grad_()
    noise = torch.from_numpy(mask).to(TORCH_DTYPE[dtype]).div_(1 - p)
    yt = xt * noise
    yt.backward(torch.from_numpy(g))
    assert np.array_equal(y.view(np.uint8), yt.detach().numpy().view(np.uint8))
    grad = dropout_backward(g, mask, p)
    assert np.array_equal(grad.view(np.uint8), xt.grad.numpy().view(np.uint8))
