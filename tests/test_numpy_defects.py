"""Regression tests for the NumPy-side library defects of issue 10 and the ``out=`` parameter.

- defect 1: every bit generator NumPy ships gives correct masks in every variant (the core
  kernel is tested in ``test_byte_first.py``; here the feature, alpha and network paths);
- defect 7: the ``training`` flag must be a bool;
- defect 8: 0-d input gives a 0-d array, never a NumPy scalar;
- defect 15: one rule for dropped inf/NaN at every p, PyTorch's ``x * 0``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dropoutlib.numpy import (
    alpha_dropout,
    alpha_dropout_backward,
    apply_mask,
    dropout,
    dropout1d,
    dropout2d,
    dropout3d,
    dropout_backward,
    feature_alpha_dropout,
    feature_dropout,
    feature_dropout_backward,
    gaussian_dropout,
    gaussian_dropout_backward,
)
from dropoutlib.numpy.nn import Dropout
from dropoutlib.stats import binomial_acceptance

SHAPES = {
    dropout: (4, 3),
    feature_dropout: (2, 3, 4),
    dropout1d: (2, 3, 4),
    dropout2d: (2, 3, 4, 4),
    dropout3d: (2, 3, 2, 2, 2),
    alpha_dropout: (4, 3),
    feature_alpha_dropout: (2, 3, 4),
    gaussian_dropout: (4, 3),
}
FUNCTIONS = list(SHAPES)
NAMES = [f.__name__ for f in FUNCTIONS]


# ------------------------------------------------------------------------- defect 7: training


@pytest.mark.parametrize("bad", ["False", "True", None, 0, 1, 1.0, np.array(True)])
@pytest.mark.parametrize("fn", FUNCTIONS, ids=NAMES)
def test_training_must_be_a_bool(fn, bad):
    """torch: ``dropout(): argument 'train' (position 3) must be bool, not str``."""
    x = np.ones(SHAPES[fn])
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    with pytest.raises(TypeError, match=r"training must be a bool .* but got .* of type"):
        fn(x, 0.5, rng=rng, training=bad)
    assert rng.bit_generator.state == before


@pytest.mark.parametrize("fn", FUNCTIONS, ids=NAMES)
def test_numpy_bools_are_bools(fn):
    x = np.ones(SHAPES[fn])
    assert fn(x, 0.5, training=np.bool_(False)) is x
    y = fn(x, 0.5, rng=np.random.default_rng(0), training=np.bool_(True))
    assert y is not x and y.shape == x.shape


# ------------------------------------------------------------------------ defect 8: 0-d inputs


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_zero_dimensional_input_gives_zero_dimensional_arrays(dtype):
    x = np.array(1.5, dtype=dtype)
    rng = np.random.default_rng(0)
    results = {
        "dropout standard eval": dropout(x, 0.3, training=False, scaling="standard"),
        "dropout train": dropout(x, 0.3, rng=rng),
        "dropout p=1": dropout(x, 1.0, rng=rng),
        "alpha train": alpha_dropout(x, 0.3, rng=rng),
        "alpha p=1": alpha_dropout(x, 1.0, rng=rng),
        "gaussian train": gaussian_dropout(x, 0.3, rng=rng),
    }
    _, mask = alpha_dropout(x, 0.3, rng=rng, return_mask=True)
    results["alpha backward"] = alpha_dropout_backward(x, mask, 0.3)
    results["alpha backward p=1"] = alpha_dropout_backward(x, None, 1.0)
    _, noise = gaussian_dropout(x, 0.3, rng=rng, return_noise=True)
    results["gaussian backward"] = gaussian_dropout_backward(x, noise)
    _, mask = dropout(x, 0.3, rng=rng, return_mask=True)
    results["dropout backward"] = dropout_backward(x, mask, 0.3)
    results["dropout backward p=1"] = dropout_backward(x, np.array(False), 1.0)
    results["apply_mask"] = apply_mask(x, np.array(True), 0.3, scaling="standard")
    for name, y in results.items():
        assert type(y) is np.ndarray and y.shape == () and y.dtype == dtype, name
    assert results["dropout standard eval"] == x * dtype(0.7)


# --------------------------------------------------------------- defect 15: inf and NaN at p = 1

SPECIAL = [-1.5, 2.0, np.inf, -np.inf, np.nan, 0.0, -0.0, 3.0]


def _bitwise_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_p_one_is_x_times_zero_like_torch_in_every_variant(dtype):
    """torch returns ``x * 0`` at p = 1 in dropout, feature dropout and both alpha dropouts."""
    x = np.array(SPECIAL * 3, dtype=dtype).reshape(2, 3, 4)
    xt = torch.from_numpy(x)
    rng = np.random.default_rng(0)
    cases = [
        (dropout(x, 1.0, rng=rng), F.dropout(xt, 1.0)),
        (feature_dropout(x, 1.0, rng=rng), F.dropout1d(xt, 1.0)),
        (dropout1d(x, 1.0, rng=rng), F.dropout1d(xt, 1.0)),
        (alpha_dropout(x, 1.0, rng=rng), F.alpha_dropout(xt, 1.0, training=True)),
        (feature_alpha_dropout(x, 1.0, rng=rng), F.feature_alpha_dropout(xt, 1.0, True)),
    ]
    for ours, theirs in cases:
        assert _bitwise_equal(ours, theirs.numpy())
    finite = np.isfinite(x)
    assert np.all(cases[0][0][finite] == 0)  # finite input never becomes NaN
    assert np.isnan(cases[0][0][~finite]).all()
    # backward at p = 1: grad * 0 (torch's scale is 0 there)
    with np.errstate(invalid="ignore"):
        times_zero = x * dtype(0)
    assert _bitwise_equal(feature_dropout_backward(x, None, 1.0), times_zero)
    assert _bitwise_equal(alpha_dropout_backward(x, None, 1.0), times_zero)


def test_a_dropped_channel_of_infs_is_nan_as_at_p_one():
    x = np.full((64, 8, 3), np.inf, dtype=np.float32)
    y, mask = feature_dropout(x, 0.5, rng=np.random.default_rng(1), return_mask=True)
    assert 0 < mask.sum() < mask.size
    assert np.isnan(y[~mask[..., 0]]).all() and np.isinf(y[mask[..., 0]]).all()


# -------------------------------------------------------------- defect 1: MT19937 in every path


@pytest.mark.parametrize(
    "draw",
    [
        lambda x, rng: feature_dropout(x, 0.5, rng=rng, return_mask=True)[1],
        lambda x, rng: feature_alpha_dropout(x, 0.5, rng=rng, return_mask=True)[1],
        lambda x, rng: alpha_dropout(x, 0.5, rng=rng, return_mask=True)[1],
        lambda x, rng: Dropout(0.5, rng=rng)(x) != 0,
    ],
    ids=["feature", "feature_alpha", "alpha", "nn.Dropout"],
)
def test_mt19937_keeps_odd_elements_too(draw):
    """Regression: with MT19937 every odd element used to be dropped (keep rate 1/4 at p = 1/2).

    Kept counts of the even and of the odd mask entries (200,000 each) must each lie in the
    exact Binomial(200000, 1/2) acceptance region; false-failure probability 1e-9 per count.
    """
    x = np.ones((400, 1000, 1), dtype=np.float32)
    mask = np.asarray(draw(x, np.random.Generator(np.random.MT19937(7)))).reshape(-1)
    low, high = binomial_acceptance(200_000, 0.5, false_failure=1e-9)
    for part in (mask[0::2], mask[1::2]):
        assert low <= int(part.sum()) <= high


# --------------------------------------------------------------------------------- out=


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("scaling", ["inverted", "standard"])
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_out_gives_the_allocated_result(dtype, scaling, p):
    x = np.random.default_rng(0).standard_normal((300, 700)).astype(dtype)
    expected, mask = dropout(x, p, rng=np.random.default_rng(1), scaling=scaling, return_mask=True)
    out = np.full_like(x, 7.0)
    y, mask2 = dropout(
        x, p, rng=np.random.default_rng(1), scaling=scaling, return_mask=True, out=out
    )
    assert y is out and _bitwise_equal(y, expected)
    np.testing.assert_array_equal(mask, mask2)


@pytest.mark.parametrize("p", [0.3, 1.0])
def test_out_may_be_the_input_itself(p):
    """In-place dropout: the tied elements' inputs are saved before the block pass writes."""
    x = np.random.default_rng(0).standard_normal(300_001).astype(np.float32)
    expected = dropout(x, p, rng=np.random.default_rng(2))
    y = dropout(x, p, rng=np.random.default_rng(2), out=x)
    assert y is x and _bitwise_equal(x, expected)


def test_out_in_evaluation():
    x = np.arange(6, dtype=np.float32)
    out = np.empty_like(x)
    assert dropout(x, 0.5, training=False, out=out) is out
    np.testing.assert_array_equal(out, x)
    assert dropout(x, 0.5, training=False, scaling="standard", out=out) is out
    np.testing.assert_array_equal(out, x * np.float32(0.5))


def test_bad_out_is_refused_with_a_clear_error():
    x = np.ones((4, 5), dtype=np.float32)
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match=r"out must be a numpy\.ndarray, but got list"):
        dropout(x, 0.5, rng=rng, out=[0.0] * 20)
    with pytest.raises(TypeError, match="out has dtype float64 but the input has dtype float32"):
        dropout(x, 0.5, rng=rng, out=np.empty((4, 5)))
    with pytest.raises(ValueError, match=r"out has shape \(5, 4\) but the input has shape"):
        dropout(x, 0.5, rng=rng, out=np.empty((5, 4), np.float32))
    with pytest.raises(ValueError, match="C-contiguous, writeable"):
        dropout(x, 0.5, rng=rng, out=np.empty((5, 4), np.float32).T)
    read_only = np.empty_like(x)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="C-contiguous, writeable"):
        dropout(x, 0.5, rng=rng, out=read_only)
    big = np.ones(21, dtype=np.float32)
    with pytest.raises(ValueError, match="overlaps the input"):
        dropout(big[:20], 0.5, rng=rng, out=big[1:])
