"""Argument checks of the torch seeded and stored-mask dropout (issue 10, defects 3 and 5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dropoutlib.numpy.functional import inverted_scale
from dropoutlib.torch.seeded import seeded_dropout, seeded_keep_mask, stored_dropout

X = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
RANGE = "dropout probability has to be between 0 and 1, but got "


def _calls():
    """Every public entry point, as ``f(p=..., seed=..., offset=...)``."""
    return {
        "seeded_dropout": lambda **kw: seeded_dropout(X, **kw),
        "stored_dropout bool": lambda **kw: stored_dropout(X, **kw),
        "stored_dropout packed": lambda **kw: stored_dropout(X, storage="packed", **kw),
        "seeded_keep_mask": lambda **kw: seeded_keep_mask((4, 5), **kw),
    }


@pytest.mark.parametrize("name", list(_calls()))
@pytest.mark.parametrize(
    ("p", "error", "message"),
    [
        ("0.5", TypeError, "must be a real number, but got '0.5' of type str"),
        (True, TypeError, "must be a real number, but got True of type bool"),
        (None, TypeError, "of type NoneType"),
        (1.5, ValueError, RANGE + "1.5"),
        (-0.1, ValueError, RANGE + "-0.1"),
        (float("nan"), ValueError, RANGE + "nan"),
        (float("inf"), ValueError, RANGE + "inf"),
    ],
)
def test_bad_p_is_refused_with_pytorch_wording(name, p, error, message):
    with pytest.raises(error) as info:
        _calls()[name](p=p, seed=1, offset=0)
    assert message in str(info.value)


@pytest.mark.parametrize("name", list(_calls()))
@pytest.mark.parametrize(
    ("seed", "offset", "error", "message"),
    [
        (1.5, 0, TypeError, "seed must be an int, but got 1.5 of type float"),
        (1, 2.7, TypeError, "offset must be an int, but got 2.7 of type float"),
        (float("nan"), 0, TypeError, "seed must be an int, but got nan of type float"),
        (1, float("nan"), TypeError, "offset must be an int"),
        ("3", 0, TypeError, "seed must be an int"),
        (True, 0, TypeError, "seed must be an int, but got True of type bool"),
        (1, torch.tensor(2), TypeError, "offset must be an int"),
        (-1, 0, ValueError, "seed must be an integer in [0, 2**64), but got -1"),
        (2**64, 0, ValueError, "seed must be an integer in [0, 2**64)"),
        (1, -3, ValueError, "offset must be an integer in [0, 2**64), but got -3"),
    ],
)
def test_bad_seed_or_offset_is_refused_not_truncated(name, seed, offset, error, message):
    with pytest.raises(error) as info:
        _calls()[name](p=0.5, seed=seed, offset=offset)
    assert message in str(info.value)


def test_numpy_integers_are_accepted_and_equal_python_ints():
    a = seeded_dropout(X, np.float32(0.25), seed=np.uint64(7), offset=np.int32(3))
    b = seeded_dropout(X, 0.25, seed=7, offset=3)
    assert torch.equal(a, b)
    assert torch.equal(seeded_keep_mask((4, 5), 0.25, seed=np.int64(7), offset=3), b != 0)


def test_a_bad_p_is_refused_even_in_evaluation():
    with pytest.raises(ValueError, match="between 0 and 1"):
        seeded_dropout(X, 1.5, seed=1, training=False)


@pytest.mark.parametrize("storage", ["bool", "packed"])
def test_stored_float16_with_an_overflowing_scale_drops_to_zero_not_nan(storage):
    """Defect 3: 1/(1-p) = 2**17 overflows float16; torch's dropped units are 0, kept ones inf."""
    p = 1 - 2**-17
    assert np.isinf(inverted_scale(p, np.float16))
    x = torch.tensor([0.0, 1.0, -2.0, 0.5] * 64, dtype=torch.float16, requires_grad=True)
    mask = seeded_keep_mask((256,), p, seed=3)
    y = stored_dropout(x, p, seed=3, storage=storage)
    assert not y[~mask].isnan().any()
    assert torch.equal(y[~mask], torch.zeros_like(y[~mask]))
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad[~mask], torch.zeros_like(x.grad[~mask]))
    # the same output as the seeded mode, NaN for NaN (a kept 0 * inf)
    assert torch.equal(y.isnan(), seeded_dropout(x, p, seed=3).isnan())
    # a p whose mask keeps something: kept entries are x * inf, as torch's noise gives
    p2 = 1 - 2**-16.5
    assert np.isinf(inverted_scale(p2, np.float16))
    mask2 = seeded_keep_mask((1 << 20,), p2, seed=11)  # about 12 kept
    assert 0 < int(mask2.sum()) < 100  # (a check of the fixed seed, not a test)
    x2 = torch.ones(1 << 20, dtype=torch.float16)
    y2 = stored_dropout(x2, p2, seed=11, storage=storage)
    assert torch.equal(y2.isinf(), mask2)
    assert not y2.isnan().any()
