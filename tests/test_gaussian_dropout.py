"""Gaussian dropout: NumPy forward/backward, the torch functional and module, moments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dropoutlib.numpy import gaussian_dropout, gaussian_dropout_backward
from dropoutlib.numpy.gaussian import gaussian_noise_std
from dropoutlib.stats import z_for_false_failure
from dropoutlib.torch.gaussian import GaussianDropout
from dropoutlib.torch.gaussian import gaussian_dropout as torch_gaussian_dropout

FALSE_FAILURE = 1e-9


def test_noise_std_matches_bernoulli_variance():
    for p in (0.0, 0.1, 0.5, 0.8):
        assert gaussian_noise_std(p) ** 2 == pytest.approx(p / (1 - p), rel=1e-15)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_mean_and_variance_match_inverted_dropout(p):
    """Sample mean and variance of the noise against 1 and p/(1-p).

    The mean of n = 200,000 normal draws is tested at z = z(1e-9 / 2) standard errors; the
    sample variance of a normal sample has standard error sigma^2 sqrt(2/(n-1)), also tested at
    that z (the law of s^2 is close to normal at this n). Each check fails with probability
    about 5e-10, so the test with both checks has false-failure probability below 1e-9.
    """
    n = 200_000
    x = np.ones(n)
    y = gaussian_dropout(x, p, rng=np.random.default_rng(11))
    var = p / (1 - p)
    z = z_for_false_failure(FALSE_FAILURE / 2)
    assert abs(y.mean() - 1.0) <= z * np.sqrt(var / n)
    assert abs(y.var(ddof=1) - var) <= z * var * np.sqrt(2 / (n - 1))


def test_eval_is_identity_and_p0_is_exact():
    x = np.linspace(-1, 1, 7)
    assert gaussian_dropout(x, 0.5, training=False) is x
    y = gaussian_dropout(x, 0.0, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(y, x)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple),
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
    p=st.floats(0.0, 0.95),
)
def test_shapes_dtypes_and_backward(shape, dtype, p):
    x = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    y, noise = gaussian_dropout(x, p, rng=np.random.default_rng(2), return_noise=True)
    assert y.shape == x.shape and y.dtype == x.dtype and noise.dtype == x.dtype
    np.testing.assert_array_equal(y, x * noise)
    g = np.ones_like(x)
    np.testing.assert_array_equal(gaussian_dropout_backward(g, noise), noise)


def test_backward_is_the_autograd_gradient():
    """Given the same noise, the NumPy backward equals torch.autograd's gradient of x * r."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6))
    g = rng.standard_normal((4, 6))
    _, noise = gaussian_dropout(x, 0.3, rng=rng, return_noise=True)
    xt = torch.tensor(x, requires_grad=True)
    (xt * torch.tensor(noise)).backward(torch.tensor(g))
    np.testing.assert_array_equal(gaussian_dropout_backward(g, noise), xt.grad.numpy())


def test_numerical_gradient():
    rng = np.random.default_rng(4)
    x = rng.standard_normal(5)
    _, noise = gaussian_dropout(x, 0.5, rng=rng, return_noise=True)
    w = rng.standard_normal(5)  # loss = sum(w * y)
    eps = 1e-6
    numeric = np.array(
        [(w @ ((x + eps * e) * noise) - w @ ((x - eps * e) * noise)) / (2 * eps) for e in np.eye(5)]
    )
    np.testing.assert_allclose(gaussian_dropout_backward(w, noise), numeric, rtol=1e-7)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((np.ones(2), 1.0), ValueError),
        ((np.ones(2), -0.1), ValueError),
        ((np.ones(2, dtype=int), 0.5), TypeError),
        ((np.ones(2), "0.5"), TypeError),
    ],
)
def test_bad_input(args, error):
    with pytest.raises(error):
        gaussian_dropout(*args, rng=np.random.default_rng(0))


def test_missing_rng_in_training():
    with pytest.raises(TypeError, match="rng"):
        gaussian_dropout(np.ones(2), 0.5)


def test_backward_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        gaussian_dropout_backward(np.ones(3), np.ones(2))


def test_torch_functional_with_generator_is_reproducible_and_differentiable():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y1 = torch_gaussian_dropout(x, 0.4, generator=torch.Generator().manual_seed(5))
    y2 = torch_gaussian_dropout(x, 0.4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(y1, y2)
    noise = (y1 / x).detach()
    y1.sum().backward()
    torch.testing.assert_close(x.grad, noise)


def test_torch_matches_numpy_moments():
    """torch's noise has mean 1 and variance p/(1-p) (same z-bounds as the NumPy test, < 1e-9)."""
    n, p = 200_000, 0.5
    y = torch_gaussian_dropout(
        torch.ones(n, dtype=torch.float64), p, generator=torch.Generator().manual_seed(6)
    ).numpy()
    z = z_for_false_failure(FALSE_FAILURE / 2)
    assert abs(y.mean() - 1.0) <= z * np.sqrt(1.0 / n)
    assert abs(y.var(ddof=1) - 1.0) <= z * np.sqrt(2 / (n - 1))


def test_torch_module_modes_and_errors():
    m = GaussianDropout(0.3)
    assert repr(m) == "GaussianDropout(p=0.3)"
    x = torch.randn(8)
    assert not torch.equal(m(x), x)
    assert m.eval()(x) is x
    with pytest.raises(ValueError, match="probability"):
        GaussianDropout(1.0)
    with pytest.raises(RuntimeError, match="floating"):
        torch_gaussian_dropout(torch.ones(3, dtype=torch.int64), 0.5)


def test_numpy_layer_gradient_matches_finite_differences():
    from dropoutlib.numpy.gaussian import GaussianDropout as Layer
    from dropoutlib.numpy.nn import Linear, Sequential, softmax_cross_entropy

    rng = np.random.default_rng(12)
    layer = Layer(0.3, rng=np.random.default_rng(13))
    model = Sequential(
        Linear(4, 5, rng=rng, dtype=np.float64), layer, Linear(5, 3, rng=rng, dtype=np.float64)
    )
    x, labels = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
    model.zero_grad()
    _, grad = softmax_cross_entropy(model(x), labels)
    model.backward(grad)
    noise = layer.noise.copy()
    w = model[0].weight
    analytic = w.grad.copy()
    eps, numeric = 1e-6, np.zeros_like(w.data)
    for idx in np.ndindex(w.data.shape):
        for sign in (1, -1):
            w.data[idx] += sign * eps
            h = model[0](x) * noise  # the same noise as the forward pass
            numeric[idx] += sign * softmax_cross_entropy(model[2](h), labels)[0] / (2 * eps)
            w.data[idx] -= sign * eps
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)
    model.eval()
    h = model[0](x)
    assert layer(h) is h and layer.backward(h) is h
    assert repr(layer) == "GaussianDropout(p=0.3)"
