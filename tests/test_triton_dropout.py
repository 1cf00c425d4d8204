"""The Triton seeded-dropout kernels against the NumPy Philox4x32 reference, word for word.

By default the kernels run on CPU tensors under Triton's interpreter, which must be switched on
before Triton is first imported in the process, so this module sets ``TRITON_INTERPRET=1``
before importing anything that imports Triton; sizes are small because the interpreter runs
every program in Python. With ``DROPOUTLIB_TRITON_DEVICE=cuda`` the same tests run the
**compiled** kernels on the GPU (``tools/gpu_checks.sh`` does that); they are skipped when no
CUDA device is present.
"""
# ruff: noqa: E402  (the interpreter switch must run before Triton is imported)

from __future__ import annotations

import os

DEVICE = os.environ.get("DROPOUTLIB_TRITON_DEVICE", "cpu")
if DEVICE == "cpu":
    os.environ["TRITON_INTERPRET"] = "1"

import numpy as np
import pytest
import torch
import triton
import triton.language as tl

from dropoutlib.numpy.functional import _drop_threshold, inverted_scale
from dropoutlib.numpy.philox import (
    RANK_BYTES,
    RANK_GROUP,
    philox4x32,
    philox_bytes_consumed,
    philox_dropout_bytes,
    philox_dropout_words,
    philox_keep_mask,
    philox_ranked_words,
)
from dropoutlib.triton import seeded_dropout_backward, seeded_dropout_forward, seeded_keep_mask
from dropoutlib.triton.dropout import LAYOUTS, _launch, _levels, _philox_words

pytestmark = pytest.mark.skipif(
    DEVICE != "cpu" and not torch.cuda.is_available(),
    reason="DROPOUTLIB_TRITON_DEVICE asks for a GPU, but no CUDA device is present",
)


@pytest.fixture(autouse=True, scope="module")
def _interpreter_active():
    if DEVICE == "cpu":
        assert type(tl.randint4x).__name__ == "InterpretedFunction", (
            "Triton was imported before TRITON_INTERPRET=1 was set in this process; run this "
            "file in its own process (pytest -p no:xdist tests/test_triton_dropout.py)"
        )


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(DEVICE)


def _reference(x: torch.Tensor, p: float, seed: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep mask from the NumPy reference, and (x * m) * c in float32."""
    mask = philox_keep_mask(x.numel(), int(_drop_threshold(p)), seed, offset)
    y = x.float().cpu().numpy().reshape(-1) * mask
    y *= inverted_scale(p, np.float32)
    return mask, y


def _p_for_threshold(t: int) -> float:
    """The drop probability whose threshold round(p 2**32) is exactly ``t``."""
    p = t / 2**32  # exact in float64 for t < 2**32
    assert int(_drop_threshold(p)) == t
    return p


# -- Philox words: uint32 counters, word for word ------------------------------------------


@pytest.mark.parametrize(
    ("seed", "offset", "level"),
    [(0, 0, 0), (2014, 7, 1), (2**40 + 5, 2**31 + 3, 2), (2**64 - 1, 2**32 - 1, 3)],
)
def test_kernel_philox_words_equal_philox4x32_word_for_word(seed, offset, level):
    n_groups = 100
    words = _philox_words(n_groups, seed, offset, level, device=DEVICE)
    expected = np.stack(philox4x32((np.arange(n_groups), offset, level, 0), seed), axis=1)
    np.testing.assert_array_equal(words, expected)


@triton.jit
def _philox_uint64_counters(out_ptr, seed, BLOCK: tl.constexpr):
    """The hazard: the same counters as uint64, which Triton runs as Philox4x64."""
    groups = tl.arange(0, BLOCK).to(tl.uint64)
    r0, _, _, _ = tl.philox(seed, groups, groups * 0 + 7, groups * 0, groups * 0)
    tl.store(out_ptr + tl.arange(0, BLOCK), r0.to(tl.uint32).to(tl.int32, bitcast=True))


def test_the_word_test_catches_uint64_counters():
    """A kernel with uint64 counters gets other words: the test above would fail for it."""
    out = torch.zeros(64, dtype=torch.int32, device=DEVICE)
    _philox_uint64_counters[(1,)](out, 2014, 64)
    wide = out.cpu().numpy().view(np.uint32)
    narrow = philox4x32((np.arange(64), 7, 0, 0), 2014)[0]
    assert np.count_nonzero(wide != narrow) >= 60  # (equal words: chance 2**-32 each)


# -- masks and outputs against the reference -------------------------------------------------


@pytest.mark.parametrize("n", [1, 5, 16, 1000, 16 * 32 * 3 + 3])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.85])
def test_kernel_mask_and_output_match_the_reference(n, p):
    x = _randn(n, seed=n)
    y = seeded_dropout_forward(x, p, seed=2014, offset=7, block=32)
    mask, ref = _reference(x, p, 2014, 7)
    np.testing.assert_array_equal(y.cpu().numpy().view(np.uint32), ref.view(np.uint32))
    km = seeded_keep_mask(n, p, 2014, 7, device=DEVICE, block=16)
    np.testing.assert_array_equal(km.cpu().numpy(), mask)


def _forced_thresholds(words: np.ndarray, k: int) -> list[int]:
    """Thresholds that tie element ``k`` to depth 2, 3 and 4, deciding it either way."""
    w = int(words[k])
    return [
        w,  # four equal bytes: W = t, kept
        (w + 1) % 2**32,  # ties to the last byte, dropped (unless a carry ends it earlier)
        max(w - 1, 1),  # ties to the last byte, kept
        (w & 0xFFFF0000) | 0x8000,  # ties two bytes, decided by the third
        (w & 0xFFFFFF00) | 0x01,  # ties three bytes
        w & 0xFFFF0000 or 1,  # ties two bytes; the threshold's rest is 0: kept, no refinement
    ]


@pytest.mark.parametrize("k", [0, 2047, 2500])
def test_forced_ties_at_every_depth_match_the_reference(k):
    n, seed, offset = 2600, 99, 4
    words = philox_dropout_words(n, seed, offset)
    x = _randn(n, seed=k)
    depths = set()
    for t in _forced_thresholds(words, k):
        p = _p_for_threshold(t)
        depths.add(int(philox_bytes_consumed(words[k : k + 1], t)[0]))
        expected = words >= np.uint32(t)
        assert expected[k] == (int(words[k]) >= t)
        km = seeded_keep_mask(n, p, seed, offset, device=DEVICE, block=64)
        np.testing.assert_array_equal(km.cpu().numpy(), expected, err_msg=f"t={t:#010x}")
        y = seeded_dropout_forward(x, p, seed, offset, block=128)
        np.testing.assert_array_equal((y != 0).cpu().numpy(), expected & (x != 0).cpu().numpy())
    assert {2, 3, 4} <= depths  # the refinement levels were exercised


def test_level_one_ties_are_frequent_in_a_block_and_decided_exactly():
    # p = 0.1: t = 0x1999999A, whose lower bytes are not zero; 1 in 256 elements ties
    n, p = 1 << 13, 0.1
    t = int(_drop_threshold(p))
    ties = philox_dropout_bytes(n, 5, 0, 0) == t >> 24
    assert 10 <= ties.sum() <= 80  # about n / 256 = 32 (a check of the seed, not a test)
    km = seeded_keep_mask(n, p, 5, 0, device=DEVICE, block=128).cpu().numpy()
    np.testing.assert_array_equal(km, philox_keep_mask(n, t, 5, 0))


def test_mask_does_not_depend_on_block_size_shape_or_index_layout():
    x = _randn(12, 100, seed=1)
    ys = [seeded_dropout_forward(x, 0.4, seed=5, offset=1, block=b) for b in (4, 32, 128)]
    assert all(torch.equal(ys[0], y) for y in ys[1:])
    assert ys[0].shape == x.shape
    flat = seeded_dropout_forward(x.reshape(-1), 0.4, seed=5, offset=1, block=32)
    assert torch.equal(flat, ys[0].reshape(-1))
    # variants and layouts: test_every_variant_and_layout_matches_the_reference_at_every_depth


def test_refinement_depth_from_the_threshold():
    # the deepest level whose threshold byte can decide a tie; 0 means no refinement code
    assert [_levels(t) for t in (0, 1 << 31, 3 << 30, 0x40800000, 0x40808000, 0x1999999A)] == [
        0,
        0,
        0,
        1,
        2,
        3,
    ]
    assert _levels(int(_drop_threshold(0.5))) == 0
    assert _levels(int(_drop_threshold(0.1))) == 3


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("variant", ["eager", "lazy"])
def test_every_variant_and_layout_matches_the_reference_at_every_depth(variant, layout):
    """Each kernel configuration the benchmark may choose, word for word, ties forced.

    Thresholds of refinement depth (``_levels``) 0, 2 and 3, with forced ties at element k that
    reach levels 2 and 3; depth 1 and more of 2 (other branch structure, same layout code) for the
    interleave layout only, to bound the compilations when the tests run compiled on a GPU.
    The output is compared bit for bit (x has no zeros, so it also pins the mask).
    """
    n, seed, offset, k = 2600, 99, 4, 1500
    words = philox_dropout_words(n, seed, offset)
    w = int(words[k])
    thresholds = [1 << 31, int(_drop_threshold(0.1))]
    thresholds += [w, (w & 0xFFFF0000) | 0x8000, (w & 0xFFFFFF00) | 0x01]
    depths = {0, 2, 3}
    if layout == "interleave":
        thresholds += [0x40800000, 0x40808000, (w & 0xFFFF0000) | 0x80]
        depths = {0, 1, 2, 3}
    assert {_levels(t) for t in thresholds} == depths
    x = _randn(n, seed=k)
    assert torch.all(x != 0)
    for t in thresholds:
        p = _p_for_threshold(t)
        expected = philox_keep_mask(n, t, seed, offset)
        y = _launch(x, p, seed, offset, 32, variant=variant, layout=layout, num_warps=1)
        ref = x.cpu().numpy() * expected * inverted_scale(p, np.float32)
        np.testing.assert_array_equal(
            y.cpu().numpy().view(np.uint32), ref.view(np.uint32), err_msg=f"t={t:#010x}"
        )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_biased_variant_compares_one_byte_only(layout):
    # FlashAttention's corner, kept to price exactness: keep iff the top byte >= t's top byte
    n, t = 3000, int(_drop_threshold(0.1))
    words = philox_dropout_words(n, 7, 0)
    km = seeded_keep_mask(n, 0.1, 7, 0, device=DEVICE, block=32, variant="biased", layout=layout)
    np.testing.assert_array_equal(km.cpu().numpy(), (words >> 24) >= (t >> 24))
    assert not np.array_equal(km.cpu().numpy(), philox_keep_mask(n, t, 7, 0))  # ties differ


def test_backward_regenerates_the_forward_mask_bit_for_bit():
    x, g = _randn(2, 777, seed=2)
    y = seeded_dropout_forward(x, 0.3, seed=99, offset=4, block=32)
    dx = seeded_dropout_backward(g, 0.3, seed=99, offset=4, block=128)
    mask = seeded_keep_mask(777, 0.3, 99, 4, device=DEVICE, block=64)
    assert torch.equal(y != 0, mask & (x != 0))
    expected = g * mask * float(inverted_scale(0.3, np.float32))
    assert torch.equal(dx, expected)  # torch's own (g * m) * c, bit for bit


def test_half_precision():
    x = _randn(999, seed=3)
    mask, _ = _reference(x, 0.5, 17, 0)
    mask_t = torch.from_numpy(mask).to(DEVICE)
    # float16: computed in float32 and rounded to nearest, like torch
    y16 = seeded_dropout_forward(x.half(), 0.5, seed=17, block=32)
    expected16 = torch.from_numpy(_reference(x.half(), 0.5, 17, 0)[1]).half()
    assert torch.equal(y16.cpu(), expected16)
    # bfloat16 with p = 0.5: (x * m) * 2 is exact, so the output is bit-exact
    xb = x.bfloat16()
    yb = seeded_dropout_forward(xb, 0.5, seed=17, block=32)
    assert yb.dtype == torch.bfloat16
    assert torch.equal(yb, xb * mask_t * 2)
    # bfloat16, p = 0.3: same mask; compiled kernels round float32 -> bfloat16 to nearest
    # like torch; the interpreter's cast truncates, so there values agree to one unit
    yb3 = seeded_dropout_forward(xb, 0.3, seed=17, block=32).cpu()
    m3, ref3 = _reference(xb, 0.3, 17, 0)
    assert np.array_equal((yb3 != 0).numpy(), m3 & (xb != 0).cpu().numpy())
    if DEVICE == "cpu":
        ulp = torch.finfo(torch.bfloat16).eps * torch.from_numpy(ref3).abs()
        assert torch.all((yb3.float() - torch.from_numpy(ref3)).abs() <= ulp)
    else:
        assert torch.equal(yb3, torch.from_numpy(ref3).bfloat16())


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_kernel_keep_rate_and_independent_offsets(p):
    """Binomial regions at false-failure 1e-9: keep count per stream, joint count per pair.

    Three streams give 3 keep-rate checks and 3 pairwise checks: < 6e-9 per parameter.
    """
    try:
        from dropoutlib.stats import binomial_acceptance
    except ImportError:  # SciPy is absent (a bare GPU machine); CI runs this test
        pytest.skip("dropoutlib.stats needs SciPy")
    n = 1 << 15
    masks = [
        seeded_keep_mask(n, p, 123, off, device=DEVICE, block=128).cpu().numpy() for off in (0, 1)
    ]
    masks.append(seeded_keep_mask(n, p, 124, 0, device=DEVICE, block=128).cpu().numpy())
    low, high = binomial_acceptance(n, 1 - p, 1e-9)
    assert all(low <= int(m.sum()) <= high for m in masks)
    low2, high2 = binomial_acceptance(n, (1 - p) ** 2, 1e-9)
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert low2 <= int(np.count_nonzero(masks[a] & masks[b])) <= high2


# -- arguments -------------------------------------------------------------------------------


def test_edge_cases_and_errors():
    x = _randn(10, seed=4)
    assert torch.equal(seeded_dropout_forward(x, 0.0, seed=1), x)
    assert torch.equal(seeded_dropout_forward(x, 1.0, seed=1), torch.zeros_like(x))
    assert seeded_dropout_forward(x[:0], 0.5, seed=1).shape == (0,)
    assert seeded_keep_mask(5, 1.0, 1, device=DEVICE).sum() == 0
    assert seeded_keep_mask(0, 0.5, 1, device=DEVICE).shape == (0,)
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        seeded_dropout_forward(x.double(), 0.5, seed=1)
    with pytest.raises(ValueError, match="offset"):
        seeded_dropout_forward(x, 0.5, seed=1, offset=1 << 32)
    with pytest.raises(ValueError, match="seed"):
        seeded_dropout_forward(x, 0.5, seed=-1)
    with pytest.raises(TypeError, match="seed must be an int"):
        seeded_dropout_forward(x, 0.5, seed=1.5)
    with pytest.raises(TypeError, match="offset must be an int"):
        seeded_keep_mask(5, 0.5, 1, 2.7, device=DEVICE)
    with pytest.raises(ValueError, match="power of two"):
        seeded_dropout_forward(x, 0.5, seed=1, block=48)
    with pytest.raises(ValueError, match="variant must be one of"):
        _launch(x, 0.5, 1, 0, 32, variant="exact")
    with pytest.raises(ValueError, match="layout must be one of"):
        seeded_keep_mask(5, 0.5, 1, device=DEVICE, layout="tiles")
    with pytest.raises(ValueError, match="between 0 and 1"):
        seeded_keep_mask(5, 1.5, 1, device=DEVICE)


def test_cpu_tensors_without_the_interpreter_are_refused_with_an_explanation():
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = (
        "import torch\n"
        "from dropoutlib.triton import seeded_dropout_forward\n"
        "seeded_dropout_forward(torch.ones(8), 0.5, seed=1)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "TRITON_INTERPRET=1 before triton is first imported" in result.stderr


# -- the ranked variant: its own rule, word for word -----------------------------------------


def _overflowing_offset(seed: int, searched: int = 1 << 14) -> tuple[int, int]:
    """The first offset whose refinement group 0 has more than RANK_BYTES equal top bytes.

    Returns ``(offset, byte)``. A group of 1024 has a byte value more than 16 times with
    probability about 3e-4, so some of the ``searched`` offsets has one (checked by the caller).
    """
    calls = RANK_GROUP // 16
    words = philox4x32((np.arange(calls)[None, :], np.arange(searched)[:, None], 0, 0), seed)
    top = np.stack(words, axis=2)[..., None] >> np.arange(0, 32, 8, dtype=np.uint32)
    top = (top & 0xFF).reshape(searched, RANK_GROUP).astype(np.int64)
    counts = np.bincount(
        (np.arange(searched)[:, None] * 256 + top).ravel(), minlength=256 * searched
    )
    counts = counts.reshape(searched, 256)
    offset = int(np.argmax(counts.max(axis=1) > RANK_BYTES))
    return offset, int(np.argmax(counts[offset]))


@pytest.mark.parametrize("layout", ["interleave", "rows"])
def test_ranked_variant_matches_its_reference_forced_ties_and_fallback(layout):
    """Group 0 has more than 16 ties (fallback to the level rule), group 1 and 2 are ranked.

    Thresholds: p = 0.1 and 0.5, depth 1, and ties forced through levels 2 and 3 at a ranked
    element and at a fallback element; blocks of 64 and (at depth 3) 128 Philox calls.
    """
    seed = 31
    offset, byte = _overflowing_offset(seed)
    n = 2 * RANK_GROUP + 600
    top = philox_dropout_words(n, seed, offset) >> 24
    ties = np.flatnonzero(top == byte)
    assert np.count_nonzero(ties < RANK_GROUP) > RANK_BYTES  # the fallback is exercised
    assert np.count_nonzero((ties >= RANK_GROUP) & (ties < 2 * RANK_GROUP)) <= RANK_BYTES
    k_fallback, k_ranked = int(ties[0]), int(ties[ties >= RANK_GROUP][0])
    t_top = byte << 24
    words = philox_ranked_words(n, t_top | 1, seed, offset)  # any t with this top byte
    thresholds = [int(_drop_threshold(0.1)), 1 << 31, 0x40800000, t_top | 0x8000]
    for k in (k_fallback, k_ranked):
        w = int(words[k])
        thresholds += [w, (w & 0xFFFF0000) | 0x8000, (w & 0xFFFFFF00) | 0x01]
    assert {_levels(t) for t in thresholds} == {0, 1, 2, 3}
    x = _randn(n, seed=5)
    assert torch.all(x != 0)
    depths = set()
    for t in thresholds:
        p = _p_for_threshold(t)
        expected = philox_keep_mask(n, t, seed, offset, rule="ranked")
        for k in (k_fallback, k_ranked):
            depths.add(int(philox_bytes_consumed(words[k : k + 1], t)[0]))
        for block in (64, 128) if _levels(t) == 3 else (64,):  # compilations on a GPU
            y = _launch(x, p, seed, offset, block, variant="ranked", layout=layout, num_warps=2)
            ref = x.cpu().numpy() * expected * inverted_scale(p, np.float32)
            np.testing.assert_array_equal(
                y.cpu().numpy().view(np.uint32), ref.view(np.uint32), err_msg=f"t={t:#010x}"
            )
    assert {2, 3, 4} <= depths


@pytest.mark.parametrize("p", [0.1, 0.3, 0.85])
def test_ranked_mask_against_reference_and_the_level_rule(p):
    n, t = 5000, int(_drop_threshold(p))
    km = seeded_keep_mask(n, p, 8, 3, device=DEVICE, block=256, variant="ranked").cpu().numpy()
    np.testing.assert_array_equal(km, philox_keep_mask(n, t, 8, 3, rule="ranked"))
    levels = philox_keep_mask(n, t, 8, 3)
    tie = (philox_dropout_words(n, 8, 3) >> 24) == (t >> 24)
    assert np.array_equal(km[~tie], levels[~tie])  # only tied elements can differ ...
    assert not np.array_equal(km, levels)  # ... and some do (about 1 in 512 elements)


def test_ranked_words_are_the_level_words_except_at_ranked_ties():
    n, t = 3 * RANK_GROUP, 0x80123456
    words, ranked = philox_dropout_words(n, 1, 2), philox_ranked_words(n, t, 1, 2)
    tie = (words >> 24) == (t >> 24)
    assert np.array_equal(ranked[~tie], words[~tie])
    assert np.array_equal(ranked >> 24, words >> 24)
    assert np.count_nonzero(ranked[tie] != words[tie]) >= tie.sum() - 1  # fresh lower bytes


def test_ranked_variant_needs_whole_refinement_groups():
    x = _randn(10, seed=4)
    with pytest.raises(ValueError, match="ranked variant needs block >= 64"):
        _launch(x, 0.1, 1, 0, 32, variant="ranked")
    with pytest.raises(ValueError, match="rule must be"):
        philox_keep_mask(5, 1, 1, 0, rule="ranks")
