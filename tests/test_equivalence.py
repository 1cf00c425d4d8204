"""Standard and inverted dropout trained from matching initialisations give the same network."""

from __future__ import annotations

import numpy as np
import pytest

from dropoutlib.data import load_digits
from dropoutlib.numpy.equivalence import to_inverted
from dropoutlib.numpy.nn import Dropout, Linear, ReLU, Sequential
from dropoutlib.numpy.optim import SGD
from dropoutlib.train import fit, mlp, predict_proba


def test_twin_weights_lr_scales_and_masks():
    rng = np.random.default_rng(0)
    std = mlp(5, (4,), 3, rng=rng, p_input=0.2, p_hidden=0.5, scaling="standard", dtype=np.float64)
    inv = to_inverted(std)
    assert [type(m) for m in inv.layers] == [type(m) for m in std.layers]
    np.testing.assert_allclose(inv[1].weight.data, 0.8 * std[1].weight.data, rtol=1e-15)
    np.testing.assert_allclose(inv[4].weight.data, 0.5 * std[4].weight.data, rtol=1e-15)
    np.testing.assert_array_equal(inv[1].bias.data, std[1].bias.data)
    assert inv[1].weight.lr_scale == pytest.approx(0.64) and inv[1].bias.lr_scale == 1.0
    assert inv[4].weight.lr_scale == pytest.approx(0.25)
    assert all(m.scaling == "inverted" for m in inv.layers if isinstance(m, Dropout))
    x = np.random.default_rng(9).standard_normal((6, 5))  # not from rng: the masks' stream
    np.testing.assert_allclose(inv(x), std(x), rtol=1e-13, atol=1e-14)  # same masks, same output
    np.testing.assert_allclose(inv.eval()(x), std.eval()(x), rtol=1e-13, atol=1e-14)


def test_training_trajectories_coincide():
    data = load_digits(n_train=120, dtype=np.float64)
    rng = np.random.default_rng(1)
    std = mlp(
        64, (32, 32), 10, rng=rng, p_input=0.2, p_hidden=0.5, scaling="standard", dtype=np.float64
    )
    inv = to_inverted(std)
    h_std = fit(
        std,
        data,
        SGD(std.parameters(), 0.05, momentum=0.9),
        epochs=3,
        batch_size=16,
        rng=np.random.default_rng(2),
    )
    h_inv = fit(
        inv,
        data,
        SGD(inv.parameters(), 0.05, momentum=0.9),
        epochs=3,
        batch_size=16,
        rng=np.random.default_rng(2),
    )
    np.testing.assert_allclose(h_inv.test_loss, h_std.test_loss, rtol=1e-10)
    np.testing.assert_allclose(
        predict_proba(inv, data.x_test), predict_proba(std, data.x_test), atol=1e-10
    )
    np.testing.assert_allclose(inv[4].weight.data, 0.5 * std[4].weight.data, atol=1e-10)
    # Without the learning-rate rescaling the trajectories separate.
    naive = to_inverted(
        mlp(
            64,
            (32, 32),
            10,
            rng=np.random.default_rng(1),
            p_input=0.2,
            p_hidden=0.5,
            scaling="standard",
            dtype=np.float64,
        )
    )
    for p in naive.parameters():
        p.lr_scale = 1.0
    fit(
        naive,
        data,
        SGD(naive.parameters(), 0.05, momentum=0.9),
        epochs=3,
        batch_size=16,
        rng=np.random.default_rng(2),
    )
    gap = np.abs(predict_proba(naive, data.x_test) - predict_proba(std, data.x_test)).max()
    assert gap > 1e-3


def test_to_inverted_refuses_what_it_cannot_convert():
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match="standard-scaling"):
        to_inverted(Sequential(Dropout(0.5, rng=rng), Linear(2, 2, rng=rng)))
    with pytest.raises(ValueError, match="followed by a Linear"):
        to_inverted(Sequential(Linear(2, 2, rng=rng), Dropout(0.5, rng=rng, scaling="standard")))
    with pytest.raises(TypeError, match="Sequential"):
        to_inverted(Linear(2, 2, rng=rng))
    with pytest.raises(ValueError, match="in a row"):
        to_inverted(
            Sequential(
                Dropout(0.5, rng=rng, scaling="standard"),
                Dropout(0.5, rng=rng, scaling="standard"),
                Linear(2, 2, rng=rng),
            )
        )
    assert isinstance(to_inverted(Sequential(Linear(2, 2, rng=rng), ReLU()))[1], ReLU)
