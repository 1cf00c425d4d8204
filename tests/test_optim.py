"""SGD with momentum and weight decay against torch.optim.SGD; the max-norm constraint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dropoutlib.numpy.nn import Linear, Parameter, Sequential
from dropoutlib.numpy.optim import SGD, max_norm_


@pytest.mark.parametrize(("momentum", "weight_decay"), [(0.0, 0.0), (0.9, 0.0), (0.95, 1e-3)])
def test_sgd_matches_torch(momentum, weight_decay):
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((4, 3))
    p = Parameter(w0.copy())
    wt = torch.tensor(w0.copy(), requires_grad=True)
    opt = SGD([p], lr=0.1, momentum=momentum, weight_decay=weight_decay)
    opt_t = torch.optim.SGD([wt], lr=0.1, momentum=momentum, weight_decay=weight_decay)
    for _ in range(5):
        g = rng.standard_normal(w0.shape)
        opt.zero_grad()
        p.grad += g
        opt.step()
        opt_t.zero_grad()
        wt.grad = torch.tensor(g)
        opt_t.step()
    np.testing.assert_allclose(p.data, wt.detach().numpy(), rtol=1e-13, atol=1e-14)


def test_lr_scale_multiplies_the_step():
    a, b = Parameter(np.zeros(3)), Parameter(np.zeros(3))
    b.lr_scale = 0.25
    opt = SGD([a, b], lr=0.5)
    a.grad[:] = b.grad[:] = 1.0
    opt.step()
    np.testing.assert_array_equal(a.data, -0.5)
    np.testing.assert_array_equal(b.data, -0.125)


def test_sgd_preserves_float32():
    layer = Linear(3, 2, rng=np.random.default_rng(1))
    layer.weight.grad += 1
    SGD(layer.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01, max_norm=0.1).step()
    assert layer.weight.data.dtype == np.float32 and layer.bias.data.dtype == np.float32


def test_max_norm_projects_long_rows_only():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((6, 5))
    w[0] *= 10  # certainly longer than c
    w[1] *= 0.01  # certainly shorter
    before = w.copy()
    c = 1.5
    out = max_norm_(w, c)
    assert out is w
    norms_before = np.linalg.norm(before, axis=1)
    norms = np.linalg.norm(w, axis=1)
    assert np.all(norms <= c * (1 + 1e-12))
    long = norms_before > c
    np.testing.assert_allclose(norms[long], c, rtol=1e-12)
    np.testing.assert_array_equal(w[~long], before[~long])
    # Projection keeps the direction: each long row is a positive multiple of the old one.
    np.testing.assert_allclose(w[long] * (norms_before[long] / c)[:, None], before[long])
    # torch.renorm does the same projection (up to its 1e-7 guard in the denominator).
    expected = torch.renorm(torch.tensor(before), p=2, dim=0, maxnorm=c).numpy()
    np.testing.assert_allclose(w, expected, rtol=1e-6)


def test_sgd_max_norm_constrains_weights_not_biases():
    rng = np.random.default_rng(3)
    layer = Linear(20, 8, rng=rng, dtype=np.float64)
    layer.weight.grad += rng.standard_normal(layer.weight.data.shape) * 100
    layer.bias.grad += 100.0
    SGD(layer.parameters(), lr=1.0, max_norm=0.5).step()
    assert np.linalg.norm(layer.weight.data, axis=1).max() <= 0.5 * (1 + 1e-12)
    np.testing.assert_array_equal(layer.bias.data, -100.0)


def test_bad_optimizer_arguments():
    p = [Parameter(np.zeros(2))]
    with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
        SGD(p, lr=-1)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\)"):
        SGD(p, lr=0.1, momentum=1.0)
    with pytest.raises(TypeError, match="lr must be a real number"):
        SGD(p, lr="0.1")
    with pytest.raises(TypeError, match="non-empty iterable of Parameter"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match="non-empty iterable of Parameter"):
        SGD([np.zeros(2)], lr=0.1)
    with pytest.raises(ValueError, match="max_norm must be > 0"):
        SGD(p, lr=0.1, max_norm=0)
    with pytest.raises(ValueError, match="radius c must be > 0"):
        max_norm_(np.ones((2, 2)), 0.0)
    with pytest.raises(ValueError, match="2-D weight"):
        max_norm_(np.ones(3), 1.0)


def _two_layers(seed: int) -> Sequential:
    rng = np.random.default_rng(seed)
    net = Sequential(
        Linear(12, 8, rng=rng, dtype=np.float64), Linear(8, 4, rng=rng, dtype=np.float64)
    )
    for p in net.parameters():
        p.grad += rng.standard_normal(p.data.shape) * 100
    return net


def _row_norms(net: Sequential) -> list[np.ndarray]:
    return [np.linalg.norm(layer.weight.data, axis=1) for layer in net.layers]


def test_sgd_per_layer_max_norm_radii():
    """Regression: one scalar max_norm could not give layers different radii. A radius per
    weight matrix, or per parameter (None = unconstrained), applies to that layer only."""
    per_matrix, per_param, plain = _two_layers(4), _two_layers(4), _two_layers(4)
    SGD(per_matrix.parameters(), lr=1.0, max_norm=[0.5, None]).step()
    SGD(per_param.parameters(), lr=1.0, max_norm=(0.5, None, None, None)).step()
    SGD(plain.parameters(), lr=1.0).step()
    first, second = _row_norms(per_matrix)
    assert first.max() <= 0.5 * (1 + 1e-12) and np.allclose(first, 0.5, rtol=1e-12)
    np.testing.assert_array_equal(second, _row_norms(plain)[1])  # unconstrained (and > 0.5)
    assert second.max() > 0.5
    for a, b in zip(per_matrix.parameters(), per_param.parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(per_matrix.layers[0].bias.data, plain.layers[0].bias.data)

    two = _two_layers(4)
    opt = SGD(two.parameters(), lr=1.0, max_norm=np.array([0.5, 2.0]))
    assert opt.max_norm == (0.5, None, 2.0, None) and opt.radii == [0.5, None, 2.0, None]
    opt.step()
    for norms, c in zip(_row_norms(two), (0.5, 2.0), strict=True):
        assert norms.max() <= c * (1 + 1e-12)
        assert norms.max() == pytest.approx(c, rel=1e-12)  # the constraint binds in each layer


def test_sgd_scalar_max_norm_is_unchanged_by_the_per_layer_form():
    """A scalar radius is the same as that radius for every weight matrix."""
    scalar, listed = _two_layers(5), _two_layers(5)
    opt = SGD(scalar.parameters(), lr=1.0, max_norm=0.7)
    assert opt.max_norm == 0.7 and opt.radii == [0.7, None, 0.7, None]
    opt.step()
    SGD(listed.parameters(), lr=1.0, max_norm=[0.7, 0.7]).step()
    for a, b in zip(scalar.parameters(), listed.parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data)
    assert SGD(scalar.parameters(), lr=1.0).max_norm is None
    assert SGD(scalar.parameters(), lr=1.0, max_norm=[None, None]).max_norm is None


def test_bad_per_layer_max_norm():
    params = _two_layers(6).parameters()
    with pytest.raises(ValueError, match="3 radii, but there are 2 weight matrices"):
        SGD(params, lr=0.1, max_norm=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"max_norm\[1\] = 1.0 is given for a parameter of shape"):
        SGD(params, lr=0.1, max_norm=[1.0, 1.0, None, None])
    with pytest.raises(ValueError, match=r"max_norm\[2\] must be > 0"):
        SGD(params, lr=0.1, max_norm=[1.0, None, 0.0, None])
    with pytest.raises(ValueError, match=r"max_norm\[0\] must be a finite number >= 0"):
        SGD(params, lr=0.1, max_norm=[-1.0, None])
    with pytest.raises(TypeError, match=r"max_norm\[2\] must be a real number"):
        SGD(params, lr=0.1, max_norm=[1.0, None, "2", None])
    with pytest.raises(TypeError, match="max_norm must be None, a number, or a sequence"):
        SGD(params, lr=0.1, max_norm="3")
    with pytest.raises(TypeError, match="max_norm must be None, a number, or a sequence"):
        SGD(params, lr=0.1, max_norm={0: 1.0})
    with pytest.raises(TypeError, match="max_norm must be a real number"):
        SGD(params, lr=0.1, max_norm=True)
