"""Mask storage modes (bool, bit-packed, seeded) in NumPy and torch, and the Philox reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from dropoutlib.numpy import dropout, dropout_backward
from dropoutlib.numpy.functional import inverted_scale
from dropoutlib.numpy.memory import (
    STORAGES,
    BoolMask,
    PackedMask,
    SeededMask,
    dropout_backward_saved,
    dropout_forward,
    philox_generator,
)
from dropoutlib.numpy.philox import philox4x32, philox_keep_words
from dropoutlib.stats import binomial_acceptance
from dropoutlib.torch.seeded import (
    SeededDropoutFunction,
    pack_bits,
    seeded_dropout,
    seeded_keep_mask,
    stored_dropout,
    unpack_bits,
)

SHAPES = [(1,), (7,), (3, 5), (2, 3, 11), (70_001,)]  # 70_001 spans two 2**16 blocks
PROBS = [0.0, 0.1, 0.5, 0.9, 1.0]


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.dtype(f"u{a.dtype.itemsize}"))


def _forward_all(x, p, seed, offset, scaling="inverted"):
    out = {}
    for storage in STORAGES:
        if storage == "seeded":
            out[storage] = dropout_forward(
                x, p, storage="seeded", seed=seed, offset=offset, scaling=scaling
            )
        else:
            rng = philox_generator(seed, offset)
            out[storage] = dropout_forward(x, p, storage=storage, rng=rng, scaling=scaling)
    return out


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", PROBS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_three_storages_give_identical_outputs_and_gradients(shape, p, dtype):
    data = np.random.default_rng(1).standard_normal((2, *shape)).astype(dtype)
    x, g = data[0], data[1]
    results = _forward_all(x, p, seed=2014, offset=3)
    y_ref, _ = results["bool"]
    # the bool mode is exactly dropoutlib.numpy.dropout with the seeded generator
    np.testing.assert_array_equal(_bits(y_ref), _bits(dropout(x, p, rng=philox_generator(2014, 3))))
    grads = {s: dropout_backward_saved(g, saved) for s, (_, saved) in results.items()}
    for storage, (y, _) in results.items():
        np.testing.assert_array_equal(_bits(y), _bits(y_ref), err_msg=storage)
        np.testing.assert_array_equal(_bits(grads[storage]), _bits(grads["bool"]), err_msg=storage)
        assert y.dtype == x.dtype and grads[storage].dtype == g.dtype


@pytest.mark.parametrize("scaling", ["inverted", "standard"])
def test_seeded_backward_equals_stored_mask_backward_bit_for_bit(scaling):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 301)).astype(np.float32)
    g = rng.standard_normal((300, 301)).astype(np.float32)
    _, saved = dropout_forward(x, 0.3, storage="seeded", seed=9, offset=1, scaling=scaling)
    _, mask = dropout(x, 0.3, rng=philox_generator(9, 1), scaling=scaling, return_mask=True)
    stored = dropout_backward(g, mask, 0.3, scaling=scaling)
    np.testing.assert_array_equal(_bits(dropout_backward_saved(g, saved)), _bits(stored))
    np.testing.assert_array_equal(saved.keep_mask(), mask)


def test_saved_bytes_per_mode():
    x = np.ones((1001, 3), dtype=np.float32)
    results = _forward_all(x, 0.5, seed=1, offset=0)
    assert isinstance(results["bool"][1], BoolMask) and results["bool"][1].nbytes == 3003
    assert isinstance(results["packed"][1], PackedMask) and results["packed"][1].nbytes == 376
    assert isinstance(results["seeded"][1], SeededMask) and results["seeded"][1].nbytes == 16


def test_seeded_mask_is_regenerated_identically():
    saved = SeededMask(seed=123, offset=4, shape=(513, 129), p=0.25)
    np.testing.assert_array_equal(saved.keep_mask(), saved.keep_mask())
    other_seed = SeededMask(seed=124, offset=4, shape=(513, 129), p=0.25)
    assert not np.array_equal(saved.keep_mask(), other_seed.keep_mask())


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_seeded_keep_rate(p):
    """Kept count within the exact binomial region; false-failure probability < 1e-9 per p."""
    n = 1 << 20
    kept = int(SeededMask(seed=77, offset=0, shape=(n,), p=p).keep_mask().sum())
    low, high = binomial_acceptance(n, 1.0 - p, 1e-9)
    assert low <= kept <= high


def test_masks_of_different_offsets_and_seeds_are_independent():
    """Pairwise joint keep counts follow Binomial(n, q**2) for independent masks.

    Eight streams (offsets 0..5 of seed 11, and offset 0 of seeds 12 and 13) give 28 pairs,
    each tested at false-failure probability 1e-9: at most 2.8e-8 for the whole test. Two
    tensors sharing a mask would give a joint count near n*q, far outside the region.
    """
    n, p = 1 << 18, 0.5
    q = 1.0 - p
    keys = [(11, o) for o in range(6)] + [(12, 0), (13, 0)]
    masks = [SeededMask(s, o, (n,), p).keep_mask() for s, o in keys]
    low, high = binomial_acceptance(n, q * q, 1e-9)
    for a, b in itertools.combinations(range(len(masks)), 2):
        joint = int(np.count_nonzero(masks[a] & masks[b]))
        assert low <= joint <= high, (keys[a], keys[b], joint)


def test_argument_errors():
    x = np.ones(4, dtype=np.float32)
    with pytest.raises(ValueError, match="storage must be one of"):
        dropout_forward(x, 0.5, storage="sparse", rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="needs seed"):
        dropout_forward(x, 0.5, storage="seeded")
    with pytest.raises(TypeError, match="do not pass rng"):
        dropout_forward(x, 0.5, storage="seeded", seed=1, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="only for 'seeded'"):
        dropout_forward(x, 0.5, storage="bool", seed=1, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match=r"numpy\.random\.Generator"):
        dropout_forward(x, 0.5, storage="packed")
    with pytest.raises(ValueError, match="offset must lie"):
        dropout_forward(x, 0.5, storage="seeded", seed=1, offset=-1)
    with pytest.raises(ValueError, match="drop probability"):
        dropout_forward(x, 1.5, storage="seeded", seed=1)
    _, saved = dropout_forward(x, 0.5, storage="seeded", seed=1)
    with pytest.raises(ValueError, match="must match"):
        dropout_backward_saved(np.ones(5, dtype=np.float32), saved)


# --- Philox4x32-10 reference (the Triton kernels' generator) ---------------------------------


@pytest.mark.parametrize(
    ("counter", "key", "expected"),
    [  # known-answer vectors of the Random123 distribution (kat_vectors, philox4x32 10 rounds)
        ((0, 0, 0, 0), 0, (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (1 << 64) - 1, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            0x299F31D0A4093822,
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ],
)
def test_philox4x32_known_answers(counter, key, expected):
    words = philox4x32(tuple(np.uint64(c) for c in counter), key)
    assert tuple(int(w) for w in words) == expected


def test_philox_keep_words_layout():
    words = philox_keep_words(10, seed=5, offset=2)
    g = np.arange(3, dtype=np.uint64)
    ref = np.stack(philox4x32((g, np.uint64(2), np.uint64(0), np.uint64(0)), 5), axis=1)
    np.testing.assert_array_equal(words, ref.reshape(-1)[:10])


# --- torch: autograd function without a saved mask --------------------------------------------


def _saved_tensors(fn):
    packed = []

    def pack(t):
        packed.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn()
    return y, packed


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_seeded_matches_numpy_seeded_mode(dtype):
    x = torch.randn(37, 41, dtype=dtype, generator=torch.Generator().manual_seed(0))
    y = seeded_dropout(x, 0.3, seed=21, offset=2)
    ref, _ = dropout_forward(x.numpy(), 0.3, storage="seeded", seed=21, offset=2)
    np.testing.assert_array_equal(_bits(y.numpy()), _bits(ref))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 1.0])
def test_torch_storage_modes_agree_and_seeded_saves_nothing(dtype, p):
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(1000, 3, generator=gen).to(dtype)
    g = torch.randn(1000, 3, generator=gen).to(dtype)
    outs, grads, saved = {}, {}, {}
    for mode in STORAGES:
        x = x0.clone().requires_grad_()

        def run(x=x, mode=mode):
            if mode == "seeded":
                return seeded_dropout(x, p, seed=8, offset=5)
            return stored_dropout(x, p, seed=8, offset=5, storage=mode)

        outs[mode], saved[mode] = _saved_tensors(run)
        outs[mode].backward(g)
        grads[mode] = x.grad
    for mode in STORAGES:
        assert torch.equal(outs[mode], outs["seeded"]), mode
        assert torch.equal(grads[mode], grads["seeded"]), mode
        assert outs[mode].dtype == dtype
    assert saved["seeded"] == []
    assert [(t.dtype, t.numel()) for t in saved["bool"]] == [(torch.bool, 3000)]
    assert [(t.dtype, t.numel()) for t in saved["packed"]] == [(torch.uint8, 375)]
    mask = seeded_keep_mask((1000, 3), p, seed=8, offset=5)
    compute = torch.float32 if dtype == torch.bfloat16 else dtype
    scale = (
        float(inverted_scale(p, np.dtype(str(compute).removeprefix("torch.")))) if p < 1 else 0.0
    )
    expected = (x0.to(compute) * mask * scale).to(dtype)
    assert torch.equal(outs["seeded"], expected)


def test_torch_gradcheck():
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    for p in (0.0, 0.3, 0.7):
        assert torch.autograd.gradcheck(
            lambda t, p=p: SeededDropoutFunction.apply(t, p, 3, 1), (x,), eps=1e-6, atol=1e-7
        )
    assert torch.autograd.gradgradcheck(lambda t: seeded_dropout(t, 0.4, seed=3), (x,))


def test_torch_eval_mode_and_errors():
    x = torch.randn(4)
    assert seeded_dropout(x, 0.5, seed=1, training=False) is x
    with pytest.raises(ValueError, match="between 0 and 1"):
        seeded_dropout(x, 1.2, seed=1)
    with pytest.raises(TypeError, match="floating-point"):
        seeded_dropout(torch.ones(3, dtype=torch.int64), 0.5, seed=1)
    with pytest.raises(ValueError, match="storage must be"):
        stored_dropout(x, 0.5, seed=1, storage="seeded")


@pytest.mark.parametrize("n", [1, 8, 13, 1000])
def test_pack_bits_round_trip_and_numpy_layout(n):
    mask = torch.from_numpy(np.random.default_rng(n).random(n) < 0.5)
    bits = pack_bits(mask)
    np.testing.assert_array_equal(bits.numpy(), np.packbits(mask.numpy(), bitorder="little"))
    assert torch.equal(unpack_bits(bits, (n,)), mask)


def test_rewound_generator_reproduces_a_fresh_philox_stream():
    from dropoutlib.numpy.memory import _rewound_generator

    for seed, offset in [(0, 0), (5, 3), ((1 << 64) - 1, (1 << 64) - 1)]:
        fresh = philox_generator(seed, offset).bit_generator.random_raw(9)
        _rewound_generator(7, 7).bit_generator.random_raw(5)  # leave the shared object dirty
        np.testing.assert_array_equal(
            _rewound_generator(seed, offset).bit_generator.random_raw(9), fresh
        )
