"""The finite-difference utilities themselves."""

from __future__ import annotations

import numpy as np
import pytest

from dropoutlib.gradcheck import (
    check_module,
    elementwise_relative_error,
    numerical_gradient,
    relative_error,
)
from dropoutlib.numpy.gaussian import GaussianDropout
from dropoutlib.numpy.nn import Dropout, Linear, Module, ReLU, Sequential, stochastic_modules


def test_numerical_gradient_of_known_functions():
    x = np.array([[0.3, -1.2], [2.0, 0.7]])
    g = numerical_gradient(lambda v: float(np.sum(np.sin(v) * v**2)), x)
    np.testing.assert_allclose(g, np.cos(x) * x**2 + 2 * x * np.sin(x), rtol=1e-8)
    np.testing.assert_array_equal(x, [[0.3, -1.2], [2.0, 0.7]])  # restored


def test_relative_error():
    a = np.array([1.0, -2.0])
    assert relative_error(a, a) == 0.0
    assert relative_error(a, -a) == pytest.approx(4 / 4)
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        relative_error(np.zeros(2), np.zeros(3))


def test_check_module_replays_the_masks_and_restores_the_generator():
    rng = np.random.default_rng(0)
    mask_rng = np.random.default_rng(1)
    net = Sequential(Linear(5, 4, rng=rng, dtype=np.float64), Dropout(0.5, rng=mask_rng))
    state = mask_rng.bit_generator.state
    errors = check_module(net, rng.standard_normal((3, 5)), rng=rng)
    assert max(errors.values()) < 1e-7
    assert mask_rng.bit_generator.state == state


def test_check_module_wants_float64():
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match="float64"):
        check_module(Linear(2, 2, rng=rng), np.ones((1, 2)), rng=rng)
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(lambda v: 0.0, np.ones(2, dtype=np.float32))


def test_check_module_replays_gaussian_noise():
    """Regression: only Dropout generators were replayed, so a correct GaussianDropout in
    training saw fresh noise at every evaluation and the check failed (errors of order 1)."""
    rng = np.random.default_rng(4)
    noise_rng = np.random.default_rng(5)
    net = Sequential(
        Linear(5, 6, rng=rng, dtype=np.float64),
        ReLU(),
        GaussianDropout(0.4, rng=noise_rng),
        Linear(6, 3, rng=rng, dtype=np.float64),
    ).train()
    state = noise_rng.bit_generator.state
    errors = check_module(net, rng.standard_normal((4, 5)), rng=rng)
    assert max(errors.values()) < 1e-7, errors
    assert noise_rng.bit_generator.state == state


class _UniformNoise(Module):
    """A stochastic layer the library does not know: y = u * x, u ~ U(0, 2), from ``self.rng``."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.noise = None

    def forward(self, x):
        self.noise = self.rng.uniform(0.0, 2.0, size=x.shape)
        return x * self.noise

    def backward(self, grad):
        return grad * self.noise


def test_check_module_replays_any_layer_that_keeps_its_generator_in_rng():
    rng = np.random.default_rng(6)
    net = Sequential(Linear(4, 5, rng=rng, dtype=np.float64), _UniformNoise(rng))
    assert [type(m) for m in stochastic_modules(net)] == [_UniformNoise]
    errors = check_module(net, rng.standard_normal((3, 4)), rng=rng)
    assert max(errors.values()) < 1e-7, errors


def test_relative_error_is_normwise_and_elementwise_error_sees_small_entries():
    """relative_error divides by the global maximum (documented): a completely wrong entry of
    size 1e-3 next to one of size 1 moves it by only about 1e-3. The element-wise error
    judges that entry on its own scale."""
    exact = np.array([1.0, 1e-3, 0.0])
    wrong_small = np.array([1.0, -1e-3, 0.0])  # the small entry has the wrong sign
    assert relative_error(exact, wrong_small) == pytest.approx(2e-3 / 2.0, rel=1e-12)
    assert elementwise_relative_error(exact, wrong_small) == pytest.approx(1.0, rel=1e-12)
    # near-zero entries are compared absolutely through the floor
    noisy_zero = np.array([1.0, 1e-3, 1e-12])
    assert elementwise_relative_error(exact, noisy_zero) == pytest.approx(1e-4, rel=1e-12)
    assert elementwise_relative_error(exact, noisy_zero, floor=1e-14) == pytest.approx(1.0)
    assert elementwise_relative_error(exact, exact) == 0.0
    assert elementwise_relative_error(np.zeros(0), np.zeros(0)) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        elementwise_relative_error(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="floor must be a finite number > 0"):
        elementwise_relative_error(exact, exact, floor=0.0)
    with pytest.raises(TypeError, match="floor must be a real number"):
        elementwise_relative_error(exact, exact, floor="1e-8")


def test_elementwise_error_is_small_for_a_correct_backward():
    """Central differences of a correct gradient pass the element-wise check too."""
    x = np.random.default_rng(7).standard_normal((3, 4))
    g = numerical_gradient(lambda v: float(np.sum(np.tanh(v) * v)), x)
    exact = np.tanh(x) + x * (1 - np.tanh(x) ** 2)
    assert elementwise_relative_error(exact, g) < 1e-7
