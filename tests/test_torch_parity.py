"""Bit-exact parity of dropoutlib.torch with torch 2.13 on CPU under the same manual_seed.

For every functional x dtype x p x shape (batched, unbatched, odd ranks, empty, transposed,
sliced, channels-last) x in-place flag x seed, both implementations run from the same seed on
the same input, and we compare bit for bit: the output (values via integer views, so -0.0
and NaN payloads count), its strides, whether it *is* the input object, the mutated input,
the gradient, the grad_fn type, the generator state afterwards and the warnings emitted.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import dropoutlib.torch as D

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
PS = [0.0, 1e-10, 0.1, 0.5, 0.9, 1.0 - 1e-7, 1.0]
SEEDS = [0, 2014, 2**32 + 5]  # out of place: the first and last; in place: the middle one
INT_VIEW = {2: torch.int16, 4: torch.int32, 8: torch.int64}

FUNCS: dict[str, tuple[Callable, Callable]] = {
    "dropout": (F.dropout, D.dropout),
    "alpha_dropout": (F.alpha_dropout, D.alpha_dropout),
    "dropout1d": (F.dropout1d, D.dropout1d),
    "dropout2d": (F.dropout2d, D.dropout2d),
    "dropout3d": (F.dropout3d, D.dropout3d),
    "feature_alpha_dropout": (F.feature_alpha_dropout, D.feature_alpha_dropout),
}


def _cl(x: torch.Tensor) -> torch.Tensor:
    fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    return x.contiguous(memory_format=fmt)


# layout name -> (base shape, transform applied to the base tensor)
LAYOUTS: dict[str, tuple[tuple[int, ...], Callable]] = {
    "0d": ((), lambda x: x),
    "1d": ((7,), lambda x: x),
    "2d": ((3, 5), lambda x: x),
    "2d-t": ((5, 3), lambda x: x.t()),
    "3d": ((2, 3, 5), lambda x: x),
    "3d-sliced": ((2, 3, 10), lambda x: x[..., ::2]),
    "4d": ((2, 3, 4, 5), lambda x: x),
    "4d-cl": ((2, 3, 4, 5), _cl),
    "4d-sliced": ((2, 3, 4, 10), lambda x: x[..., ::2]),
    "5d": ((2, 3, 2, 3, 2), lambda x: x),
    "5d-cl": ((2, 3, 2, 3, 2), _cl),
    "6d": ((2, 2, 2, 1, 2, 2), lambda x: x),
    "empty": ((0, 3, 4), lambda x: x),
    "expanded": ((1, 5), lambda x: x.expand(3, 5)),
}
# which layouts each function accepts without an error in training with 0 < p < 1
VALID = {
    "dropout": list(LAYOUTS),
    "alpha_dropout": list(LAYOUTS),
    "dropout1d": ["2d", "2d-t", "3d", "3d-sliced", "empty"],
    "dropout2d": ["2d", "2d-t", "3d", "3d-sliced", "4d", "4d-cl", "4d-sliced", "5d", "empty"],
    "dropout3d": ["2d", "3d", "4d", "4d-cl", "5d", "5d-cl", "6d", "empty"],
    "feature_alpha_dropout": ["2d", "3d", "4d", "4d-cl", "5d-cl", "6d", "empty"],
}
CASES = [(f, lay) for f, lays in VALID.items() for lay in lays]


def _base(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Deterministic input (its own generator) with negatives, +-inf, NaN and -0.0."""
    gen = torch.Generator().manual_seed(12345)
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * 3
    flat = x.view(-1)
    specials = torch.tensor([-0.0, float("inf"), float("-inf"), float("nan"), -1.5])
    if flat.numel() >= 10:
        flat[3 : 3 + len(specials)] = specials.double()
    return x.to(dtype)


def bits(t: torch.Tensor) -> torch.Tensor:
    """An integer view of ``t``: equal bits, equal views (so -0.0 != 0.0 and NaN == NaN)."""
    return t.detach().view(INT_VIEW[t.element_size()])


def run(fn, layout, dtype, p, seed, *, inplace=False, training=True, grad=True):
    """Run one call from a fresh seed; return everything that has to match."""
    shape, transform = LAYOUTS[layout]
    leaf = _base(shape, dtype).requires_grad_(grad)
    x = transform(leaf.clone() if inplace else leaf) if grad else transform(leaf)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.manual_seed(seed)
        try:
            y = fn(x, p, training, inplace)
        except RuntimeError as err:  # e.g. in-place on an expanded tensor: same error wanted
            return {"error": (type(err), str(err)), "state": torch.get_rng_state()}
    state = torch.get_rng_state()
    result = {
        "bits": bits(y).clone(),
        "shape": y.shape,
        "stride": y.stride(),
        "dtype": y.dtype,
        "is_input": y is x,
        "input_after": bits(x).clone(),
        "grad_fn": type(y.grad_fn).__name__,
        "state": state,
        "warnings": [(w.category, str(w.message)) for w in caught],
    }
    if grad:
        g = torch.linspace(-2, 2, y.numel(), dtype=torch.float64).reshape(y.shape).to(dtype)
        y.backward(g)
        result["grad"] = bits(leaf.grad)
    return result


def assert_same(expected: dict, actual: dict) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(actual[key], value), key
        else:
            assert actual[key] == value, key


@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize(("name", "layout"), CASES)
def test_training_bit_exact(name, layout, p, inplace):
    """Outputs, strides, aliasing, gradients, grad_fn, RNG state and warnings all match.

    Every dtype (float16, bfloat16, float32, float64) and two seeds out of place, one in place.
    """
    ref, ours = FUNCS[name]
    for dtype in DTYPES:
        for seed in SEEDS[1:2] if inplace else SEEDS[::2]:
            expected = run(ref, layout, dtype, p, seed, inplace=inplace)
            actual = run(ours, layout, dtype, p, seed, inplace=inplace)
            assert_same(expected, actual)


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize(("name", "layout"), CASES)
def test_eval_is_identity_like_torch(name, layout, inplace):
    """training=False: the same object (or the same view) back, no RNG, same warnings."""
    ref, ours = FUNCS[name]
    expected = run(ref, layout, torch.float32, 0.5, 7, inplace=inplace, training=False)
    assert_same(expected, run(ours, layout, torch.float32, 0.5, 7, inplace=inplace, training=False))


def test_stream_continues_across_calls():
    """Three consecutive calls (different layers) from one seed draw the same stream."""
    x = _base((4, 3, 5, 5), torch.float32)
    outs = []
    for mod in (F, D):
        torch.manual_seed(99)
        outs.append([mod.dropout(x, 0.3), mod.dropout2d(x, 0.6), mod.alpha_dropout(x, 0.2, True)])
        outs[-1].append(torch.rand(3))
    for a, b in zip(*outs, strict=True):
        assert torch.equal(bits(a), bits(b))


def test_explicit_generator_not_touched():
    """A private generator elsewhere is untouched: only the default CPU generator is used."""
    gen = torch.Generator().manual_seed(5)
    before = gen.get_state()
    torch.manual_seed(0)
    D.dropout(torch.ones(100), 0.5)
    assert torch.equal(gen.get_state(), before)


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(FUNCS)),
    shape=st.lists(st.integers(0, 4), min_size=0, max_size=5).map(tuple),
    dtype=st.sampled_from(DTYPES),
    p=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
    inplace=st.booleans(),
)
def test_property_any_shape_dtype_p(name, shape, dtype, p, seed, inplace):
    """Any shape, dtype and p: torch and dropoutlib raise the same error or agree bit for bit."""
    ref, ours = FUNCS[name]
    outcomes = []
    for fn in (ref, ours):
        x = _base(shape, dtype)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.manual_seed(seed)
            try:
                y = fn(x, p, True, inplace)
                outcome = ("ok", bits(y).clone(), y.shape, y is x, torch.get_rng_state())
            except RuntimeError as err:
                outcome = ("error", str(err))
        outcomes.append((outcome, [str(w.message) for w in caught]))
    (a, wa), (b, wb) = outcomes
    assert wa == wb
    assert a[0] == b[0]
    for u, v in zip(a[1:], b[1:], strict=True):
        assert torch.equal(u, v) if isinstance(u, torch.Tensor) else u == v
