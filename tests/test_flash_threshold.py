"""FlashAttention-2's 8-bit dropout threshold, checked by exact enumeration over the 256 bytes.

The kernel keeps an element when its random byte is <= t = floor(fl32(1 - p) * 255) and scales
by 1/(1 - p) (Dao-AILab/flash-attention ``csrc/flash_attn/flash_api.cpp``, ``src/dropout.h``).
Every byte is equally likely, so averaging over the 256 byte values gives the expectation
exactly: no Monte Carlo, no false-failure probability.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from dropoutlib.flash_threshold import (
    FLASH_BITS_PER_ELEMENT,
    byte_first_bits_per_element,
    byte_first_keep_probability,
    flash_expected_ratio,
    flash_keep_mask,
    flash_keep_probability,
    flash_ratio_by_enumeration,
    flash_threshold,
)

P_GRID = [i / 100 for i in range(100)]


def test_issue_numbers() -> None:
    """The numbers the issue states: 0.99826 at p = 0.1, 1.00098 at p = 0.2, exact at 0.5."""
    assert flash_threshold(0.1) == 229 and flash_threshold(0.2) == 204
    assert flash_threshold(0.5) == 127
    assert round(flash_expected_ratio(0.1), 5) == 0.99826
    assert round(flash_expected_ratio(0.2), 5) == 1.00098
    assert flash_expected_ratio(0.5) == 1.0
    assert flash_ratio_by_enumeration(0.5) == 1


@pytest.mark.parametrize("p", P_GRID)
def test_enumeration_equals_formula(p: float) -> None:
    """Mean over all 256 bytes of keep(b)/(1-p) equals (t+1)/(256(1-p)), exactly."""
    t = flash_threshold(p)
    assert flash_ratio_by_enumeration(p) == Fraction(t + 1, 256) / (1 - Fraction(p))
    assert flash_keep_probability(p) == Fraction(t + 1, 256)
    assert math.isclose(flash_expected_ratio(p), float(flash_ratio_by_enumeration(p)))
    # the kernel's float32 scale 1.f / (1.f - p): three roundings of relative size 2^-24 each,
    # the first (of p) amplified by p / (1 - p) in 1 - p
    rel = abs(flash_expected_ratio(p, float32_scale=True) / flash_expected_ratio(p) - 1)
    assert rel <= 2.0**-24 * (3 + p / (1 - p))


@pytest.mark.parametrize("p", P_GRID)
def test_ratio_bounds(p: float) -> None:
    """With q32 = fl32(1 - p): 255 q32 - 1 < t <= 255 q32 bounds the ratio (t + 1)/(256 q)."""
    q = 1 - Fraction(p)
    q32 = Fraction(float(np.float32(1.0) - np.float32(p)))
    r = flash_ratio_by_enumeration(p)
    assert 255 * q32 / (256 * q) < r <= (255 * q32 + 1) / (256 * q)


def test_float32_rounding_moves_the_threshold() -> None:
    """On the 0.01 grid, fl32(1 - p) moves t below floor(255 (1 - p)) (decimal p) at 0.6 and 0.8."""
    moved = [p for p in P_GRID if flash_threshold(p) != math.floor(255 * (1 - Fraction(str(p))))]
    assert moved == [0.6, 0.8]
    assert flash_threshold(0.6) == 101  # 255 * 0.4 = 102 in exact arithmetic
    assert flash_threshold(0.8) == 50  # 255 * 0.2 = 51


def test_exact_only_on_multiples_of_1_256() -> None:
    """The ratio is exactly 1 at q = m/256, and at no p of the 0.01 grid except 0, 0.5, 0.75."""
    for m in range(1, 257):
        assert flash_ratio_by_enumeration(1 - m / 256) == 1
    exact = [p for p in P_GRID if flash_ratio_by_enumeration(p) == 1]
    assert exact == [0.0, 0.25, 0.5, 0.75]


def test_comparison_is_inclusive() -> None:
    """byte == t is kept (``<=``), byte == t + 1 is dropped; the threshold byte range is 0..255."""
    for p in (0.1, 0.2, 0.5, 0.9):
        t = flash_threshold(p)
        b = np.array([t, t + 1] if t < 255 else [t], dtype=np.uint8)
        assert flash_keep_mask(b, p).tolist() == [True, False][: b.size]
    assert flash_threshold(0.0) == 255 and flash_keep_mask(np.arange(256, dtype=np.uint8), 0).all()
    with pytest.raises(ValueError, match="p < 1"):
        flash_threshold(1.0)
    with pytest.raises(TypeError, match="uint8"):
        flash_keep_mask(np.arange(3), 0.1)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.2, 0.3, 0.5, 0.9, 1 / 3, 0.999])
def test_byte_first_rule_exact(p: float) -> None:
    """The library's byte-first rule keeps with probability 1 - T/2^32, within 2^-33 of 1 - p.

    (p = 1 never reads a byte: the mask is all False.)
    """
    t = min(round(p * 2**32), 2**32 - 1)
    keep = byte_first_keep_probability(p)
    assert keep == 1 - Fraction(t, 2**32)
    assert abs(keep - (1 - Fraction(p))) <= Fraction(1, 2**33)


def test_bits_per_element() -> None:
    assert FLASH_BITS_PER_ELEMENT == 8
    assert byte_first_bits_per_element() == 8 + Fraction(8, 256) + Fraction(8, 256**2) + Fraction(
        8, 256**3
    )
    assert round(float(byte_first_bits_per_element()), 4) == 8.0314
