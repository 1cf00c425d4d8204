"""The byte-first Bernoulli mask: exactness, the documented byte order, every NumPy bit generator.

The mask keeps element i when its uniform 32-bit word w_i >= t = round(p 2**32), reading the
word one byte at a time, most significant first, only as far as needed
(``dropoutlib.numpy.functional.bernoulli_mask``). These tests check

- the rule is exact: on small word widths, for every threshold, every word and every tie path
  enumerated, the lazy digit-first comparison keeps exactly the words w >= t (so the keep
  probability is exactly P(w >= t) = 1 - t/base**k);
- the vectorised kernel agrees element for element with the plain-loop reference, and with the
  obvious 32-bit comparison ``w >= t`` when the bytes are served in the documented order;
- every bit generator NumPy ships gives the right keep rate on even and odd elements alike
  (issue 10, defect 1: MT19937 used to drop every odd element);
- the number of random bits drawn per element, counted from the generator's own counter.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest

from dropoutlib.numpy import bernoulli_mask, dropout
from dropoutlib.numpy.functional import (
    _BLOCK,
    _byte_first_fill,
    _drop_threshold,
    _reference_fill,
    _threshold_bytes,
    random_bytes,
    reference_byte_first_mask,
    reference_dropout,
)
from dropoutlib.stats import binomial_acceptance, z_for_false_failure

BIT_GENERATORS = [np.random.PCG64, np.random.PCG64DXSM, np.random.Philox, np.random.SFC64]
BIT_GENERATORS.append(np.random.MT19937)
IDS = [bg.__name__ for bg in BIT_GENERATORS]


class ScriptedBits:
    """A stand-in bit generator that serves the digits of given words in the documented order.

    It is not one of the 64-bit generators, so ``random_bytes`` reads the low 4 bytes of each
    raw output: four digits per output. Round ``r`` serves digit ``r`` (most significant
    first) of every word whose first ``r`` digits equal the threshold's, in index order: the
    spec's definition of "still tied", computed here independently of the kernel.
    """

    def __init__(self, words: np.ndarray, t_digits: tuple[int, ...]) -> None:
        self.rounds: list[np.ndarray] = []
        for r in range(len(t_digits)):
            tied = (words[:, :r] == np.array(t_digits[:r], dtype=words.dtype)).all(axis=1)
            if not tied.any():
                break
            self.rounds.append(words[tied, r])
        self.calls = 0

    def random_raw(self, n: int) -> np.ndarray:
        digits = self.rounds[self.calls]
        self.calls += 1
        assert n == -(-len(digits) // 4), "the kernel asked for a different number of bytes"
        padded = np.zeros(4 * n, dtype=np.uint64)
        padded[: len(digits)] = digits
        return (padded.reshape(n, 4) << np.array([0, 8, 16, 24], dtype=np.uint64)).sum(axis=1)


def _kernel_on_words(words, t_digits, kernel=_byte_first_fill) -> np.ndarray:
    words = np.asarray(words, dtype=np.int64)
    mask = np.empty(len(words), dtype=bool)
    bits = ScriptedBits(words, t_digits)
    kernel(mask, tuple(np.uint8(d) for d in t_digits), bits)
    assert bits.calls == len(bits.rounds), "a tie round was skipped or added"
    return mask


# ------------------------------------------------------------------------ exactness, enumerated


@pytest.mark.parametrize(
    ("base", "k", "kernel"),
    [
        (4, 4, _byte_first_fill),
        (16, 3, _byte_first_fill),
        (2, 6, _byte_first_fill),
        (4, 4, _reference_fill),
        (2, 6, _reference_fill),
    ],
    ids=["fast-8=4x2", "fast-12=3x4", "fast-6=6x1", "loop-8=4x2", "loop-6=6x1"],
)
def test_digit_first_keeps_exactly_the_words_at_or_above_t_for_every_threshold(base, k, kernel):
    """Every word of k base-``base`` digits, every threshold: kept <=> w >= t.

    Each word is fed to the library's kernel digit by digit in the documented order, so the
    kernel's decision for every word (and every tie path, as the words cover all of them) is
    compared with the full-width comparison. Since the digits of a uniform word are
    independent and uniform, P(keep) = #{w >= t} / base**k = 1 - t / base**k exactly.
    """
    # most significant digit first
    words = np.array(list(itertools.product(range(base), repeat=k)), dtype=np.int64)
    values = np.array([_value(w, base) for w in words])
    for t in range(base**k):
        t_digits = _digits(t, base, k)
        mask = _kernel_on_words(words, t_digits, kernel)
        np.testing.assert_array_equal(mask, values >= t)
        assert Fraction(int(mask.sum()), base**k) == 1 - Fraction(t, base**k)


def _value(word: tuple[int, ...], base: int) -> int:
    value = 0
    for d in word:
        value = value * base + d
    return value


def _digits(t: int, base: int, k: int) -> tuple[int, ...]:
    return tuple((t // base**i) % base for i in reversed(range(k)))


@pytest.mark.parametrize(("base", "k"), [(4, 4), (16, 3), (256, 2)])
def test_tie_paths_carry_exactly_the_keep_probability(base, k):
    """Sum over the decision paths (prefixes read until decided) of base**-length.

    Walks the lazy comparison as a tree: at depth r a digit above t_r keeps, below drops, and
    equal descends. The kept paths' probabilities sum to 1 - t/base**k, for every t, in exact
    rational arithmetic; all paths sum to 1.
    """
    for t in range(0, base**k, max(1, base**k // 4096)):
        t_digits = _digits(t, base, k)
        keep, total, tie = Fraction(0), Fraction(0), Fraction(1)
        for t_r in t_digits:
            step = tie / base
            keep += step * (base - 1 - t_r)  # digits above t_r
            total += step * (base - 1)  # every digit but the tie decides here
            tie = step
        keep += tie  # w == t is kept
        total += tie
        assert total == 1 and keep == 1 - Fraction(t, base**k)


# ------------------------------------------------------------------ the kernel on 32-bit words


def _word_bytes(words: np.ndarray) -> np.ndarray:
    return np.stack([(words >> np.uint64(s)) & np.uint64(0xFF) for s in (24, 16, 8, 0)], axis=1)


@pytest.mark.parametrize(
    "t",
    [1, 0x80000000, 0xFFFFFFFF, 0x12345678, 0x12FF00FF, 0xAB000000, 0xABFFFFFF, 0x00FF00FF],
)
def test_kernel_is_the_32_bit_comparison_on_words_full_of_ties(t):
    """Words near t (sharing 1, 2, 3 or 4 leading bytes with it) are decided as w >= t."""
    rng = np.random.default_rng(t)
    near = (t + rng.integers(-300, 300, 3000)) % 2**32
    shares = [(t & ~((1 << s) - 1)) | rng.integers(0, 1 << s, 500) for s in (8, 16, 24)]
    extra = [t, t - 1, t + 1]
    words = np.unique(np.concatenate([near, *shares, extra, rng.integers(0, 2**32, 500)]))
    words = words[(words >= 0) & (words < 2**32)].astype(np.uint64)
    rng.shuffle(words)
    t_digits = tuple(t >> s & 0xFF for s in (24, 16, 8, 0))
    for kernel in (_byte_first_fill, _reference_fill):
        mask = _kernel_on_words(_word_bytes(words), t_digits, kernel)
        np.testing.assert_array_equal(mask, words >= t)


P_VALUES = [
    1e-12,  # t = 0: every word is kept, still through the byte path
    2**-32,
    2**-24 + 2**-32,
    0.001,
    0.1,
    0.3,
    0.5,
    0.7,
    1 - 1e-3,
    1 - 2**-32,  # t = 2**32 - 1: bytes ff ff ff ff
    0x12FF00FF / 2**32,  # low bytes 0 and 255
    0xAB000000 / 2**32,
    0xABFFFF00 / 2**32,
]


@pytest.mark.parametrize("bit_generator", BIT_GENERATORS, ids=IDS)
@pytest.mark.parametrize(("seed", "p"), list(enumerate(P_VALUES)))
def test_fast_kernel_matches_the_loop_reference_element_for_element(bit_generator, seed, p):
    n = 2 * _BLOCK + 12345  # three blocks, the last one short
    fast = bernoulli_mask(n, p, rng=np.random.Generator(bit_generator(seed)))
    loop = reference_byte_first_mask(n, p, rng=np.random.Generator(bit_generator(seed)))
    np.testing.assert_array_equal(fast, loop)


def test_threshold_bytes_are_most_significant_first():
    assert [int(b) for b in _threshold_bytes(0x12FF00FF / 2**32)] == [0x12, 0xFF, 0x00, 0xFF]
    assert int(_drop_threshold(1 - 2**-40)) == 2**32 - 1


# ---------------------------------------------------------------------------- the byte stream


def test_random_bytes_reads_64_bit_outputs_least_significant_byte_first():
    raw = np.random.PCG64(3).random_raw(2)
    expected = [int(w) >> (8 * i) & 0xFF for w in raw for i in range(8)][:13]
    assert random_bytes(np.random.PCG64(3), 13).tolist() == expected


def test_random_bytes_reads_the_low_four_bytes_of_mt19937_outputs():
    raw = np.random.MT19937(3).random_raw(4)
    assert int(raw.max()) < 2**32  # MT19937's raw outputs are 32-bit words
    expected = [int(w) >> (8 * i) & 0xFF for w in raw for i in range(4)][:14]
    assert random_bytes(np.random.MT19937(3), 14).tolist() == expected


@pytest.mark.parametrize("bit_generator", BIT_GENERATORS, ids=IDS)
def test_bytes_are_uniform(bit_generator):
    """Counts of each byte value over 2**22 bytes: a chi-square test with 255 degrees of freedom.

    The statistic's threshold 400 has P(chi2_255 > 400) about 2e-8 (Wilson-Hilferty), the
    false-failure probability per generator.
    """
    counts = np.bincount(random_bytes(bit_generator(11), 1 << 22), minlength=256)
    expected = (1 << 22) / 256
    assert ((counts - expected) ** 2 / expected).sum() < 400


# ---------------------------------------------------------------- every bit generator NumPy ships


@pytest.mark.parametrize("bit_generator", BIT_GENERATORS, ids=IDS)
@pytest.mark.parametrize("p", [0.5, 0.3])
def test_keep_rate_on_even_and_odd_elements_for_every_bit_generator(bit_generator, p):
    """Regression (issue 10, defect 1): MT19937 used to leave every odd element dropped.

    Kept counts among the 500,000 even and the 500,000 odd elements are each
    Binomial(500000, 1 - p); each must lie in its exact binomial acceptance region with
    false-failure probability 1e-9 (so at most 2e-9 per case).
    """
    mask = bernoulli_mask(1_000_000, p, rng=np.random.Generator(bit_generator(2024)))
    low, high = binomial_acceptance(500_000, 1 - p, false_failure=1e-9)
    for part in (mask[0::2], mask[1::2]):
        assert low <= int(part.sum()) <= high


@pytest.mark.parametrize("bit_generator", BIT_GENERATORS, ids=IDS)
def test_dropout_through_every_bit_generator(bit_generator):
    """The fused forward uses the same kernel: its mask is bernoulli_mask's, for each generator."""
    x = np.ones(70_001, dtype=np.float32)
    y, mask = dropout(x, 0.4, rng=np.random.Generator(bit_generator(5)), return_mask=True)
    expected = bernoulli_mask(x.size, 0.4, rng=np.random.Generator(bit_generator(5)))
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(y, np.where(mask, np.float32(1) / np.float32(0.6), 0))


def _sfc64_outputs(bits: np.random.SFC64) -> int:
    return int(bits.state["state"]["state"][3])  # SFC64's counter word: +1 per 64-bit output


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_random_bits_per_element_counted_from_the_generator(p):
    """About 8.03 bits per element (8 per byte, 1/256 of the elements need a second byte).

    Counted from SFC64's own output counter. The extra bytes are the ties, Binomial(n, 1/256)
    per round (plus at most 7 discarded bytes per request); 8.1 bits would need 13,107 extra
    bytes against a mean of about 4,112, over 140 standard deviations: the false-failure
    probability is below 1e-100.
    """
    n = 1 << 20
    bits = np.random.SFC64(1)
    before = _sfc64_outputs(bits)
    bernoulli_mask(n, p, rng=np.random.Generator(bits))
    per_element = 64 * (_sfc64_outputs(bits) - before) / n
    assert 8.0 < per_element <= 8.1


# ------------------------------------------------------------------ the obvious version (oracle)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_reference_dropout_is_inverted_dropout(p):
    x = np.random.default_rng(0).standard_normal(200_000)
    y = reference_dropout(x, p, np.random.default_rng(1))
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-15)
    low, high = binomial_acceptance(x.size, 1 - p, false_failure=1e-9)
    assert low <= int(kept.sum()) <= high


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_fast_dropout_and_the_two_line_reference_agree_in_distribution(p):
    """Keep counts of the two implementations on 400,000 elements: a two-sample z test.

    Both are Binomial(n, 1 - p) (to within 2**-33 in p); their difference has standard deviation
    sqrt(2 n p (1-p)); |z| <= z_for_false_failure(1e-9) fails with probability 1e-9.
    """
    n = 400_000
    x = np.ones(n)
    a = int((dropout(x, p, rng=np.random.default_rng(2)) != 0).sum())
    b = int((reference_dropout(x, p, np.random.default_rng(3)) != 0).sum())
    assert abs(a - b) <= z_for_false_failure(1e-9) * np.sqrt(2 * n * p * (1 - p))
