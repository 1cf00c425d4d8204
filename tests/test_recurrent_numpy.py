"""NumPy locked, embedding and concrete dropout and the early/late schedule.

Statistical tests state their false-failure probability; gradients are checked by central
finite differences (float64) and against torch.autograd.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dropoutlib.gradcheck import numerical_gradient
from dropoutlib.numpy import (
    bernoulli_mask,
    concrete_drop_mask,
    concrete_dropout,
    concrete_dropout_backward,
    concrete_regularizer,
    concrete_regularizer_backward,
    dropout_schedule,
    embedding_dropout,
    embedding_dropout_backward,
    locked_dropout,
    locked_dropout_backward,
)
from dropoutlib.numpy.recurrent import locked_mask_shape
from dropoutlib.stats import binomial_acceptance


def rng(seed=0):
    return np.random.default_rng(seed)


# --- locked dropout ---------------------------------------------------------------------------


def test_locked_mask_shape():
    assert locked_mask_shape((5, 3, 4)) == (1, 3, 4)
    assert locked_mask_shape((3, 5, 4), batch_first=True) == (3, 1, 4)
    assert locked_mask_shape((5, 3, 4, 2)) == (1, 3, 4, 2)
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        locked_mask_shape((5, 3))


@pytest.mark.parametrize("batch_first", [False, True])
def test_locked_dropout_is_dropout_with_one_mask_broadcast_over_time(batch_first):
    x = rng(1).standard_normal((6, 4, 5)).astype(np.float32)
    y, mask = locked_dropout(x, 0.3, rng=rng(2), batch_first=batch_first, return_mask=True)
    expected_shape = (6, 1, 5) if batch_first else (1, 4, 5)
    assert mask.shape == expected_shape
    # the same draw as bernoulli_mask of the locked shape, broadcast over time
    np.testing.assert_array_equal(mask, bernoulli_mask(expected_shape, 0.3, rng=rng(2)))
    scale = np.float32(1) / np.float32(0.7)
    np.testing.assert_array_equal(y, np.where(mask, x * scale, x * np.float32(0)))
    # every time step has the same zero pattern
    zeros = y == 0
    t_axis = 1 if batch_first else 0
    assert (zeros == np.take(zeros, [0], axis=t_axis)).all()


def test_locked_dropout_edge_cases_and_errors():
    x = rng().standard_normal((3, 2, 4))
    assert locked_dropout(x, 0.5, training=False) is x
    y = locked_dropout(x, 0.0, rng=rng())
    assert y is not x and np.array_equal(y, x)
    assert np.all(locked_dropout(x, 1.0, rng=rng()) == 0)
    with pytest.raises(TypeError, match="Generator"):
        locked_dropout(x, 0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        locked_dropout(x, 1.5, rng=rng())
    with pytest.raises(ValueError, match="at least 3"):
        locked_dropout(x[0], 0.5, rng=rng())
    with pytest.raises(TypeError, match="floating"):
        locked_dropout(np.ones((2, 2, 2), dtype=int), 0.5, rng=rng())


def test_locked_dropout_keep_rate_and_sharing_statistics():
    """The fraction of kept (sequence, feature) pairs is Binomial(n, 1 - p): accepted within
    bounds of false-failure probability 1e-9; and the kept set is identical at every step."""
    n_b, n_h, p = 200, 100, 0.3
    x = np.ones((7, n_b, n_h))
    y, mask = locked_dropout(x, p, rng=rng(3), return_mask=True)
    lo, hi = binomial_acceptance(n_b * n_h, 1 - p, 1e-9)
    assert lo <= mask.sum() <= hi
    assert ((y != 0) == mask).all()  # broadcast: step t is kept iff the locked mask keeps it


def test_locked_dropout_backward_finite_differences_and_autograd():
    x = rng(4).standard_normal((4, 3, 5))
    g = rng(5).standard_normal((4, 3, 5))
    _, mask = locked_dropout(x, 0.4, rng=rng(6), return_mask=True)
    grad = locked_dropout_backward(g, mask, 0.4)
    # finite differences with the mask fixed (the same generator state each evaluation)
    num = numerical_gradient(lambda v: float(np.sum(g * locked_dropout(v, 0.4, rng=rng(6)))), x)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-8)
    xt = torch.tensor(x, requires_grad=True)
    noise = torch.tensor(mask, dtype=torch.float64) / (1 - 0.4)
    (xt * noise * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-15, atol=0)
    np.testing.assert_array_equal(locked_dropout_backward(g, None, 0.0), g)
    assert np.all(locked_dropout_backward(g, None, 1.0) == 0)
    with pytest.raises(ValueError, match="broadcast"):
        locked_dropout_backward(g, np.ones((1, 2, 5), bool), 0.4)


# --- embedding dropout ------------------------------------------------------------------------


def test_embedding_dropout_drops_whole_words():
    w = rng(7).standard_normal((10, 4)).astype(np.float32)
    idx = np.array([[1, 2, 1, 9], [3, 1, 0, 2]])
    y, mask = embedding_dropout(w, idx, 0.5, rng=rng(8), return_mask=True)
    assert mask.shape == (10, 1)
    assert y.shape == (2, 4, 4)
    scale = np.float32(1) / np.float32(0.5)
    for pos, v in np.ndenumerate(idx):
        expected = w[v] * scale if mask[v, 0] else w[v] * np.float32(0)
        np.testing.assert_array_equal(y[pos], expected)
    # every occurrence of a word reads the same row
    np.testing.assert_array_equal(y[0, 0], y[0, 2])
    np.testing.assert_array_equal(y[0, 0], y[1, 1])
    assert not mask.all() and mask.any()  # this seed drops some words and keeps some
    np.testing.assert_array_equal(embedding_dropout(w, idx, 0.5, training=False), w[idx])
    with pytest.raises(IndexError, match="indices"):
        embedding_dropout(w, np.array([10]), 0.5, rng=rng())
    with pytest.raises(TypeError, match="integer"):
        embedding_dropout(w, np.array([1.0]), 0.5, rng=rng())


def test_embedding_dropout_backward_finite_differences_and_autograd():
    w = rng(9).standard_normal((6, 3))
    idx = np.array([[0, 5, 5], [2, 0, 1]])
    g = rng(10).standard_normal((2, 3, 3))
    _, mask = embedding_dropout(w, idx, 0.4, rng=rng(11), return_mask=True)
    grad = embedding_dropout_backward(g, idx, mask, 0.4, 6)
    num = numerical_gradient(
        lambda v: float(np.sum(g * embedding_dropout(v, idx, 0.4, rng=rng(11)))), w
    )
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-8)
    wt = torch.tensor(w, requires_grad=True)
    noise = torch.tensor(mask, dtype=torch.float64) / (1 - 0.4)
    out = torch.nn.functional.embedding(torch.tensor(idx), wt * noise)
    (out * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(grad, wt.grad.numpy(), rtol=1e-14, atol=1e-15)
    # rows never looked up get no gradient; dropped rows get none either
    assert np.all(grad[[3, 4]] == 0)
    assert np.all(grad[~mask[:, 0]] == 0)


# --- concrete dropout -------------------------------------------------------------------------


def test_concrete_mask_tends_to_the_bernoulli_indicator():
    """At small temperature z~ -> [u > 1 - p] (a Bernoulli(p) drop); the sign of the logit
    decides it exactly at every temperature."""
    u = rng(12).random(100_000)
    p = 0.3
    hard = u > 1 - p
    for t in (0.1, 0.01):
        z = concrete_drop_mask(u, p, t)
        np.testing.assert_array_equal(z > 0.5, hard)
    z = concrete_drop_mask(u, p, 0.001)
    assert np.mean(np.abs(z - hard)) < 1e-3
    # at t = 0.1 the mean relaxed drop rate is within 0.02 of p; the relaxation's bias at
    # this temperature is deterministic given u (the Monte Carlo error is ~0.0015)
    assert abs(concrete_drop_mask(u, p, 0.1).mean() - p) < 0.02


def test_concrete_dropout_backward_finite_differences_and_autograd():
    x = rng(13).standard_normal((5, 4))
    g = rng(14).standard_normal((5, 4))
    p, t = 0.3, 0.5  # a moderate temperature keeps the finite differences well conditioned
    y, u = concrete_dropout(x, p, rng=rng(15), temperature=t, return_noise=True)
    gx, gp = concrete_dropout_backward(g, x, p, u, t)
    num_x = numerical_gradient(
        lambda v: float(np.sum(g * concrete_dropout(v, p, rng=rng(15), temperature=t))), x
    )
    np.testing.assert_allclose(gx, num_x, rtol=1e-6, atol=1e-8)
    num_p = numerical_gradient(
        lambda q: float(np.sum(g * concrete_dropout(x, float(q[0]), rng=rng(15), temperature=t))),
        np.array([p]),
    )
    np.testing.assert_allclose(gp, num_p[0], rtol=1e-6)
    # torch.autograd through the same formula, on the same noise
    xt = torch.tensor(x, requires_grad=True)
    pt = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    eps = 1e-7
    ut = torch.tensor(u)
    a = (torch.log(pt + eps) - torch.log(1 - pt + eps) + torch.log(ut + eps)
         - torch.log(1 - ut + eps)) / t  # fmt: skip
    yt = xt * (1 - torch.sigmoid(a)) / (1 - pt)
    np.testing.assert_allclose(yt.detach().numpy(), y, rtol=1e-14)
    (yt * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(gp, float(pt.grad), rtol=1e-12)


def test_concrete_regularizer_value_and_gradients():
    w = rng(16).standard_normal((3, 4))
    kw = {"weight_regularizer": 0.01, "dropout_regularizer": 0.02, "input_dim": 4}
    p = 0.2
    value = concrete_regularizer(w, p, **kw)
    entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    assert value == pytest.approx(0.01 * np.sum(w**2) / 0.8 - 0.02 * 4 * entropy, rel=1e-14)
    gw, gp = concrete_regularizer_backward(w, p, **kw)
    np.testing.assert_allclose(
        gw, numerical_gradient(lambda v: concrete_regularizer(v, p, **kw), w), rtol=1e-7
    )
    num_p = numerical_gradient(lambda q: concrete_regularizer(w, float(q[0]), **kw), np.array([p]))
    assert gp == pytest.approx(num_p[0], rel=1e-7)
    # the entropy term alone is minimised at p = 1/2
    no_w = {**kw, "weight_regularizer": 0.0}
    assert concrete_regularizer_backward(w, 0.5, **no_w)[1] == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="0 < p < 1"):
        concrete_regularizer(w, 0.0, **kw)


# --- schedules --------------------------------------------------------------------------------


def test_dropout_schedule_modes():
    np.testing.assert_array_equal(dropout_schedule(0.1, 3, 2), np.full(6, 0.1))
    np.testing.assert_array_equal(
        dropout_schedule(0.1, 3, 2, mode="early", cutoff_epoch=1), [0.1, 0.1, 0, 0, 0, 0]
    )
    np.testing.assert_array_equal(
        dropout_schedule(0.1, 3, 2, mode="late", cutoff_epoch=1), [0, 0, 0.1, 0.1, 0.1, 0.1]
    )
    np.testing.assert_allclose(
        dropout_schedule(0.3, 2, 2, mode="early", cutoff_epoch=2, schedule="linear"),
        [0.3, 0.2, 0.1, 0.0],
    )
    with pytest.raises(ValueError, match="mode"):
        dropout_schedule(0.1, 3, 2, mode="middle")
    with pytest.raises(ValueError, match="schedule"):
        dropout_schedule(0.1, 3, 2, mode="late", schedule="linear")
    with pytest.raises(ValueError, match="cutoff_epoch"):
        dropout_schedule(0.1, 3, 2, mode="early", cutoff_epoch=4)
