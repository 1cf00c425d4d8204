"""Dropout as an ensemble: exact enumeration, the geometric-mean theorem, Monte Carlo averaging."""

from __future__ import annotations

import numpy as np
import pytest

from dropoutlib.ensemble import (
    enumerate_masks,
    exact_mask_ensemble,
    mc_dropout_proba,
    mc_error_curve,
    weight_scaling_proba,
)
from dropoutlib.numpy.gaussian import GaussianDropout
from dropoutlib.numpy.nn import Dropout, Linear, ReLU, Sequential, softmax
from dropoutlib.stats import z_for_false_failure

F64 = np.float64


def _softmax_layer(p, scaling, seed=0, n=8, classes=3):
    rng = np.random.default_rng(seed)
    return Sequential(Dropout(p, rng=rng, scaling=scaling), Linear(n, classes, rng=rng, dtype=F64))


def _deep(p, scaling, seed=0):
    rng = np.random.default_rng(seed)
    return Sequential(
        Linear(4, 8, rng=rng, dtype=F64),
        ReLU(),
        Dropout(p, rng=rng, scaling=scaling),
        Linear(8, 8, rng=rng, dtype=F64),
        ReLU(),
        Linear(8, 3, rng=rng, dtype=F64),
    )


def test_enumerate_masks_is_every_mask_once():
    masks = enumerate_masks(5)
    assert masks.shape == (32, 5)
    assert len({m.tobytes() for m in masks}) == 32


@pytest.mark.parametrize("scaling", ["inverted", "standard"])
@pytest.mark.parametrize("p", [0.2, 0.5, 0.7])
def test_geometric_mean_equals_weight_scaling_for_one_softmax_layer(scaling, p):
    model = _softmax_layer(p, scaling)
    x = np.random.default_rng(1).standard_normal((6, 8))
    ens = exact_mask_ensemble(model, x)
    assert ens.n_masks == 256
    np.testing.assert_allclose(ens.geometric, weight_scaling_proba(model, x), atol=1e-13)
    # ... while the arithmetic mean is a different (and here visibly different) prediction
    assert np.abs(ens.arithmetic - weight_scaling_proba(model, x)).max() > 1e-3


def test_geometric_mean_is_only_approximate_for_deeper_networks():
    model = _deep(0.5, "inverted")
    x = np.random.default_rng(2).standard_normal((6, 4))
    ens = exact_mask_ensemble(model, x)
    assert np.abs(ens.geometric - weight_scaling_proba(model, x)).max() > 1e-3


def test_one_sample_is_one_training_mode_pass():
    model = _deep(0.5, "inverted")
    x = np.random.default_rng(3).standard_normal((5, 4))
    probs = mc_dropout_proba(model, x, 1, rng=np.random.default_rng(9))
    model.layers[2].rng = np.random.default_rng(9)
    expected = softmax(model.train()(x))
    np.testing.assert_array_equal(probs[0], expected)


def test_mode_and_generators_are_restored():
    model = _deep(0.5, "inverted").eval()
    own = model.layers[2].rng
    mc_dropout_proba(model, np.ones((2, 4)), 3, rng=np.random.default_rng(0))
    assert not any(m.training for m in model.modules())
    assert model.layers[2].rng is own


def test_monte_carlo_mean_converges_to_the_exact_arithmetic_mean():
    """Each of the 15 averaged probabilities lies within z standard errors of the exact mean.

    z = z_for_false_failure(1e-9 / 15) with the sample standard deviation of 40,000 draws;
    by the union bound (and the CLT for these bounded variables) the false-failure probability
    is about 1e-9.
    """
    model = _deep(0.5, "inverted")
    x = np.random.default_rng(4).standard_normal((5, 4))
    exact = exact_mask_ensemble(model, x).arithmetic
    probs = mc_dropout_proba(model, x, 40_000, rng=np.random.default_rng(5))
    se = probs.std(axis=0, ddof=1) / np.sqrt(probs.shape[0])
    assert np.all(np.abs(probs.mean(axis=0) - exact) <= z_for_false_failure(1e-9 / 15) * se)


def test_blocks_are_successive_runs_on_the_same_generator(monkeypatch):
    """Memory-sized blocks of samples are drawn one after another from ``rng``, in order.

    (A mask call's random bytes depend on its size, as tie refinement is per call, so a blocked
    run is not the unblocked one; it equals the blocks run by hand in sequence.)
    """
    import dropoutlib.ensemble as ensemble

    model = _deep(0.3, "inverted")
    x = np.random.default_rng(6).standard_normal((7, 4))
    rng = np.random.default_rng(1)
    by_hand = np.concatenate([mc_dropout_proba(model, x, k, rng=rng) for k in (3, 3, 3, 1)])
    monkeypatch.setattr(ensemble, "_MAX_ELEMENTS", 7 * 8 * 3)  # 3 samples per block
    blocked = mc_dropout_proba(model, x, 10, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(blocked, by_hand)


def test_error_curve_uses_running_means():
    model = _deep(0.5, "inverted")
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((20, 4)), rng.integers(0, 3, 20)
    ks = [1, 2, 5, 10]
    curve = mc_error_curve(model, x, y, ks, rng=np.random.default_rng(2))
    probs = mc_dropout_proba(model, x, 10, rng=np.random.default_rng(2))
    manual = [(probs[:k].mean(axis=0).argmax(axis=1) != y).mean() for k in ks]
    np.testing.assert_array_equal(curve, manual)


def test_bad_input():
    with pytest.raises(ValueError, match="exactly one Dropout"):
        exact_mask_ensemble(Sequential(Linear(2, 2, rng=np.random.default_rng(0))), np.ones((1, 2)))
    with pytest.raises(ValueError, match="samples"):
        mc_dropout_proba(_deep(0.5, "inverted"), np.ones((1, 4)), 0, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng"):
        mc_dropout_proba(_deep(0.5, "inverted"), np.ones((1, 4)), 2, rng=None)


def _deep_gaussian(seed=0):
    """A network whose only stochastic layer is a GaussianDropout with its own generator."""
    rng = np.random.default_rng(seed)
    return Sequential(
        Linear(4, 8, rng=rng, dtype=F64),
        ReLU(),
        GaussianDropout(0.5, rng=np.random.default_rng(seed + 100)),
        Linear(8, 3, rng=rng, dtype=F64),
    )


def test_monte_carlo_is_reproducible_from_its_rng_with_gaussian_layers():
    """Regression: the Gaussian layers drew from their own generators, so the same ``rng``
    gave different predictions on every call (and the layer's generator advanced)."""
    model = _deep_gaussian()
    own = model.layers[2].rng
    state = own.bit_generator.state
    x = np.random.default_rng(8).standard_normal((5, 4))
    first = mc_dropout_proba(model, x, 4, rng=np.random.default_rng(3))
    again = mc_dropout_proba(model, x, 4, rng=np.random.default_rng(3))
    other = mc_dropout_proba(model, x, 4, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3  # different noise gives different predictions
    assert np.abs(first[0] - first[1]).max() > 1e-3  # the samples are not all the same network
    assert model.layers[2].rng is own and own.bit_generator.state == state


@pytest.mark.parametrize("scaling", ["inverted", "standard"])
def test_exact_ensemble_with_p_one_is_the_network_with_every_unit_dropped(scaling):
    """Regression: Dropout(1.0) raised ZeroDivisionError (1 / keep). With p = 1 the only mask
    of positive probability drops every unit, so the ensemble is that single network: both
    means equal its prediction, which is also what a training-mode pass computes."""
    model = _deep(1.0, scaling)
    x = np.random.default_rng(10).standard_normal((6, 4))
    ens = exact_mask_ensemble(model, x)
    assert ens.n_masks == 256
    all_dropped = softmax(Sequential(*model.layers[3:])(np.zeros((6, 8))))
    np.testing.assert_allclose(ens.arithmetic, all_dropped, rtol=1e-15, atol=0)
    np.testing.assert_allclose(ens.geometric, all_dropped, rtol=1e-14, atol=0)
    sampled = mc_dropout_proba(model, x, 3, rng=np.random.default_rng(0))
    np.testing.assert_allclose(sampled, np.broadcast_to(all_dropped, sampled.shape), rtol=1e-15)
