"""Tests of channel-wise (feature) dropout: dropoutlib.numpy.feature."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _forced_mask import ForcedBernoulli, bits
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dropoutlib.numpy import (
    dropout1d,
    dropout2d,
    dropout3d,
    feature_dropout,
    feature_dropout_backward,
    inverted_scale,
)
from dropoutlib.stats import binomial_acceptance

OURS = {"dropout1d": dropout1d, "dropout2d": dropout2d, "dropout3d": dropout3d}
TORCH = {"dropout1d": F.dropout1d, "dropout2d": F.dropout2d, "dropout3d": F.dropout3d}
FLOATS = [np.float16, np.float32, np.float64]

# (layer, input shape, torch's noise shape, whether torch warns) -- section 4 of the spec.
CASES = [
    ("dropout1d", (3, 4, 5), (3, 4, 1), False),
    ("dropout1d", (4, 5), (1, 4, 1), False),  # unbatched (C, L)
    ("dropout2d", (2, 3, 4, 5), (2, 3, 1, 1), False),
    ("dropout2d", (3, 4, 5), (3, 4, 1), True),  # the quirk: read as (N, C, L)
    ("dropout2d", (4, 5), (4, 5), True),  # 2-d: element-wise
    ("dropout2d", (2, 3, 2, 2, 2), (2, 3, 1, 1, 1), True),
    ("dropout3d", (2, 3, 2, 3, 4), (2, 3, 1, 1, 1), False),
    ("dropout3d", (3, 2, 3, 4), (1, 3, 1, 1, 1), False),  # unbatched (C, D, H, W)
    ("dropout3d", (3, 4, 5), (1, 3, 1, 1), True),  # the quirk: axis 0 is the channel
    ("dropout3d", (4, 5), (1, 4, 1), True),
]


def _call(fn, *args, warns: bool, **kwargs):
    """Call ``fn``, checking that it warns exactly when PyTorch warns; return (result, texts)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    texts = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert bool(texts) == warns, texts
    return out, texts


# 0.15 and 0.88: fl32(1 / (1 - p)) differs from torch's 1f / fl32(1 - p) in the last bit.
@pytest.mark.parametrize("p", [0.15, 0.5, 0.88])
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("name", "shape", "noise_shape", "warns"), CASES)
def test_bit_exact_with_torch_given_the_same_mask(name, shape, noise_shape, warns, dtype, p):
    """Forward and backward equal PyTorch's bit for bit when torch is fed our mask."""
    rng = np.random.default_rng(hash((name, shape, p)) % 2**32)
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    (y, mask), our_warnings = _call(OURS[name], x, p, rng=rng, return_mask=True, warns=warns)
    assert mask.ndim == x.ndim and mask.dtype == np.bool_
    grad = feature_dropout_backward(g, mask, p)

    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    forced = ForcedBernoulli(mask)
    with forced:
        yt, torch_warnings = _call(TORCH[name], xt, p, training=True, warns=warns)
    yt.backward(torch.from_numpy(g))
    assert forced.noise_shapes == [noise_shape]
    assert our_warnings == torch_warnings
    np.testing.assert_array_equal(bits(y), bits(yt.detach().numpy()))
    np.testing.assert_array_equal(bits(grad), bits(xt.grad.numpy()))
    assert y.dtype == grad.dtype == dtype and y.shape == grad.shape == shape


@pytest.mark.parametrize(("name", "shape"), [(c[0], c[1]) for c in CASES])
def test_whole_channels_are_dropped_together(name, shape):
    x = np.random.default_rng(1).uniform(1.0, 2.0, size=shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        y, mask = OURS[name](x, 0.5, rng=np.random.default_rng(2), return_mask=True)
    full = np.broadcast_to(mask, x.shape)
    np.testing.assert_array_equal(y != 0, full)
    np.testing.assert_array_equal(y[full], x[full] * inverted_scale(0.5, x.dtype))


@settings(max_examples=40, deadline=None)
@given(
    x=hnp.arrays(
        st.sampled_from(FLOATS),
        hnp.array_shapes(min_dims=2, max_dims=5, min_side=0, max_side=4),
        elements=st.floats(-100, 100, width=16),
    ),
    p=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_shape_dtype_and_channels(x, p, seed):
    """For any shape, dtype and p: shape and dtype kept, every channel all kept or all zero."""
    y, mask = feature_dropout(x, p, rng=np.random.default_rng(seed), return_mask=True)
    assert y.shape == x.shape and y.dtype == x.dtype and y is not x
    if mask is None:  # nothing drawn: p in {0, 1} or an empty input
        expected = np.zeros_like(x) if p == 1.0 and x.size else x
        np.testing.assert_array_equal(y, expected)
        return
    assert mask.shape == x.shape[:2] + (1,) * (x.ndim - 2)
    full = np.broadcast_to(mask, x.shape)
    np.testing.assert_array_equal(y[~full], 0)
    np.testing.assert_array_equal(y[full], x[full] * inverted_scale(p, x.dtype))
    grad = feature_dropout_backward(np.ones_like(x), mask, p)
    np.testing.assert_array_equal(grad, np.where(full, inverted_scale(p, x.dtype), 0))


@pytest.mark.parametrize("name", ["dropout1d", "dropout3d"])
def test_unbatched_equals_a_batch_of_one_with_the_same_generator(name):
    shape = (4, 6) if name == "dropout1d" else (4, 2, 3, 2)
    x = np.random.default_rng(3).standard_normal(shape)
    y = OURS[name](x, 0.5, rng=np.random.default_rng(9))
    y_batched = OURS[name](x[None], 0.5, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(y, y_batched[0])


@pytest.mark.parametrize("name", ["dropout1d", "dropout2d", "dropout3d"])
def test_backward_matches_central_differences_in_float64(name):
    """The loss L(x) = sum(w * y) with a fixed mask (same seed) is linear in x."""
    shape = {"dropout1d": (2, 3, 4), "dropout2d": (2, 3, 2, 2), "dropout3d": (2, 3, 2, 1, 2)}[name]
    data = np.random.default_rng(4)
    x, w = data.standard_normal(shape), data.standard_normal(shape)

    def loss(z):
        return float(np.sum(w * OURS[name](z, 0.4, rng=np.random.default_rng(5))))

    _, mask = OURS[name](x, 0.4, rng=np.random.default_rng(5), return_mask=True)
    grad = feature_dropout_backward(w, mask, 0.4)
    h = 1e-6
    numeric = np.zeros_like(x)
    for i in np.ndindex(shape):
        e = np.zeros_like(x)
        e[i] = h
        numeric[i] = (loss(x + e) - loss(x - e)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_channel_keep_rate_is_binomial(p):
    """The number of kept channels among N*C is Binomial(N*C, q) with q the mask's exact keep
    probability 1 - round(p * 2**32) / 2**32; false-failure probability 1e-9 per p."""
    n, c = 2000, 50
    x = np.ones((n, c, 3), dtype=np.float32)
    _, mask = dropout1d(x, p, rng=np.random.default_rng(int(p * 1000)), return_mask=True)
    q = 1.0 - round(p * 2**32) / 2**32
    low, high = binomial_acceptance(n * c, q, 1e-9)
    assert low <= int(mask.sum()) <= high


def test_channels_of_one_sample_are_independent():
    """Pairs of channels (c, c+1) of the same sample are both kept with probability q**2:
    Binomial(N*C/2, 1/4) at p = 0.5, false-failure probability 1e-9."""
    _, mask = dropout2d(
        np.ones((4000, 20, 2, 2)), 0.5, rng=np.random.default_rng(6), return_mask=True
    )
    both = mask[:, 0::2, 0, 0] & mask[:, 1::2, 0, 0]
    low, high = binomial_acceptance(both.size, 0.25, 1e-9)
    assert low <= int(both.sum()) <= high


# ---------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("name", ["dropout1d", "dropout2d", "dropout3d"])
def test_eval_returns_the_input_and_p0_a_copy(name):
    x = np.ones((2, 3, 2, 2), dtype=np.float32) if name != "dropout1d" else np.ones((2, 3, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert OURS[name](x, 0.5, training=False) is x
        y = OURS[name](x, 0.0, rng=np.random.default_rng(0))
        z = OURS[name](x, 1.0, rng=np.random.default_rng(0))
    assert y is not x and np.array_equal(y, x)
    assert np.array_equal(z, np.zeros_like(x)) and z.dtype == x.dtype


def test_empty_input_passes_through():
    x = np.ones((0, 3, 4), dtype=np.float32)
    y = dropout1d(x, 0.5, rng=np.random.default_rng(0))
    assert y.shape == x.shape and y.dtype == x.dtype


@pytest.mark.parametrize("rank", [0, 1, 4, 5])
def test_dropout1d_bad_rank_is_torchs_runtime_error(rank):
    x = np.ones((2,) * rank, dtype=np.float32)
    with pytest.raises(RuntimeError) as torch_error:
        F.dropout1d(torch.from_numpy(x), 0.5, training=False)
    with pytest.raises(RuntimeError, match=re.escape(str(torch_error.value))):
        dropout1d(x, 0.5, training=False)


@pytest.mark.parametrize(("name", "rank"), [("dropout2d", 1), ("dropout2d", 0), ("dropout3d", 0)])
def test_rank_below_two_warns_then_fails_only_when_a_mask_is_drawn(name, rank):
    x = np.ones((3,) * rank)
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="at least 2 dimensions"):
        OURS[name](x, 0.5, rng=np.random.default_rng(0))
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="at least 2 dimensions"):
        TORCH[name](torch.from_numpy(x), 0.5)
    with pytest.warns(UserWarning):
        assert OURS[name](x, 0.5, training=False) is x


def test_bad_arguments_are_refused():
    x = np.ones((2, 3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="between 0 and 1"):
        dropout1d(x, 1.5, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="floating-point dtype"):
        dropout1d(x.astype(int), 0.5, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match=r"numpy\.random\.Generator"):
        dropout1d(x, 0.5)
    with pytest.raises(ValueError, match="does not broadcast"):
        feature_dropout_backward(x, np.ones((2, 4, 1), dtype=bool), 0.5)
    with pytest.raises(TypeError, match="boolean keep mask"):
        feature_dropout_backward(x, np.ones((2, 3, 1)), 0.5)
