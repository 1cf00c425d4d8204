"""dropoutlib.numpy.torch_rng: torch's CPU random stream and CPU dropout, reproduced in NumPy.

Bit-exact checks against torch 2.13 on CPU: the MT19937 words (from-scratch reference vs
NumPy's bit generator vs NumPy's legacy seeding), the doubles torch draws, the generator state
after a call (parsed from ``torch.get_rng_state()``), and the four dropout variants in float16,
float32 and float64 for every memory layout, continuing the stream across calls.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dropoutlib.numpy.torch_rng import (
    DEFAULT_SEED,
    SELU_ALPHA_TIMES_SCALE,
    TorchCPUGenerator,
    memory_order_view,
    mt19937_words,
    torch_dropout,
)
from dropoutlib.stats import binomial_acceptance

SEEDS = [0, 1, 2014, 2**32 - 1, 2**32 + 5, 2**40 + 3]
TORCH_OPS = {
    (False, False): torch.dropout,
    (True, False): torch.feature_dropout,
    (False, True): torch.alpha_dropout,
    (True, True): torch.feature_alpha_dropout,
}
PS = [1e-10, 0.1, 0.2, 0.3, 0.42, 0.5, 0.7, 0.9, 0.97, 1.0 - 1e-9, 0.0, 1.0]


def torch_state() -> tuple[np.ndarray, int]:
    return TorchCPUGenerator.from_torch_state(torch.get_rng_state()).mt_state()


def assert_same_state(gen: TorchCPUGenerator) -> None:
    key, pos = torch_state()
    ours_key, ours_pos = gen.mt_state()
    assert pos == ours_pos and np.array_equal(key, ours_key)


@pytest.mark.parametrize("seed", SEEDS)
def test_words_three_ways(seed):
    """From-scratch MT19937 == NumPy's MT19937 with our key == NumPy's legacy seeding."""
    n = 1500  # crosses two twists
    ref = mt19937_words(seed, n)
    assert np.array_equal(TorchCPUGenerator(seed).random_words(n), ref)
    legacy = np.random.RandomState(seed & 0xFFFFFFFF).randint(0, 2**32, n, dtype=np.uint32)
    assert np.array_equal(ref, legacy)


@pytest.mark.parametrize("seed", SEEDS)
def test_uniforms_match_torch_rand(seed):
    """float64 rand uses random64 and 53 bits; float32 rand uses one word and 24 bits."""
    gen = TorchCPUGenerator(seed)
    torch.manual_seed(seed)
    assert np.array_equal(torch.rand(1000, dtype=torch.float64).numpy(), gen.uniform53(1000))
    expected32 = (gen.random_words(700) & np.uint32(2**24 - 1)).astype(np.float32) * 2.0**-24
    assert np.array_equal(torch.rand(700).numpy(), expected32.astype(np.float32))
    assert_same_state(gen)
    assert gen.initial_seed() == torch.initial_seed()


def test_default_seed_and_negative_seed():
    assert TorchCPUGenerator().initial_seed() == DEFAULT_SEED
    torch.manual_seed(-1)
    gen = TorchCPUGenerator(-1)
    assert gen.initial_seed() == torch.initial_seed() == 2**64 - 1
    assert np.array_equal(gen.uniform53(5), torch.rand(5, dtype=torch.float64).numpy())


def test_state_round_trip_through_torch():
    """to_torch_state() is accepted by torch.set_rng_state and continues the same stream."""
    gen = TorchCPUGenerator(77)
    gen.random_words(1001)
    torch.set_rng_state(torch.from_numpy(gen.to_torch_state()))
    assert np.array_equal(torch.rand(900, dtype=torch.float64).numpy(), gen.uniform53(900))
    assert_same_state(gen)
    with pytest.raises(ValueError, match="5056-byte"):
        TorchCPUGenerator.from_torch_state(np.zeros(10, dtype=np.uint8))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize(("feature", "alpha"), list(TORCH_OPS), ids=str)
def test_dropout_bit_exact_and_state(feature, alpha, dtype, p):
    """Output bits and generator state equal torch's, over two calls continuing one stream."""
    for seed in (0, 2**32 + 5):
        x = np.random.default_rng(seed).standard_normal((3, 4, 5)).astype(dtype) * 3
        x.reshape(-1)[:4] = [np.inf, -np.inf, np.nan, -1.0]
        torch.manual_seed(seed)
        gen = TorchCPUGenerator(seed)
        for _ in range(2):
            expected = TORCH_OPS[feature, alpha](torch.from_numpy(x), p, True).numpy()
            got = torch_dropout(x, p, generator=gen, feature=feature, alpha=alpha)
            assert got.dtype == x.dtype
            assert np.array_equal(got.view(np.uint8), expected.view(np.uint8))
            assert_same_state(gen)


LAYOUTS = {
    "transposed": lambda a: a.transpose(3, 1, 2, 0),
    "transposed-sliced": lambda a: a.transpose(3, 1, 2, 0)[::2],
    "channels-last": lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2),
    "sliced": lambda a: a[:, :, :, ::2],
    "size-1 dims": lambda a: a[:, :1].transpose(1, 0, 3, 2),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_memory_order(layout):
    """Noise is drawn in the memory order of torch's ``empty_like(x)`` (dense or inferred)."""
    x = LAYOUTS[layout](np.random.default_rng(0).standard_normal((2, 3, 4, 6)).astype(np.float32))
    torch.manual_seed(5)
    expected = torch.dropout(torch.from_numpy(x), 0.4, True)
    got = torch_dropout(x, 0.4, generator=TorchCPUGenerator(5))
    assert np.array_equal(got, expected.numpy())
    big = [i for i, n in enumerate(x.shape) if n > 1]  # strides of size-1 axes do not matter
    assert [got.strides[i] for i in big] == [expected.numpy().strides[i] for i in big]


def test_memory_order_view_offsets():
    """memory_order_view puts flat[k] at memory offset k of a transposed array."""
    like = np.zeros((3, 4), dtype=np.float64).T
    view = memory_order_view(np.arange(12), like)
    assert np.array_equal(view, np.arange(12).reshape(3, 4).T)


def test_early_returns_and_errors():
    x = np.ones((2, 3), dtype=np.float32)
    gen = TorchCPUGenerator(1)
    before = gen.mt_state()
    assert torch_dropout(x, 0.0, generator=gen) is x
    assert torch_dropout(x, 0.5, False, generator=gen) is x
    assert np.array_equal(gen.mt_state()[0], before[0]) and gen.mt_state()[1] == before[1]
    with pytest.raises(TypeError, match="TorchCPUGenerator"):
        torch_dropout(x, 0.5, generator=np.random.default_rng(0))
    with pytest.raises(TypeError, match="floating"):
        torch_dropout(np.ones(3, dtype=np.int64), 0.5, generator=gen)
    with pytest.raises(ValueError, match="drop probability"):
        torch_dropout(x, float("nan"), generator=gen)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        torch_dropout(np.ones(3), 0.5, generator=gen, feature=True)


def test_keep_rate_binomial():
    """Keep count of 200_000 draws at q = 0.3 lies in the exact binomial region.

    False-failure probability: at most 1e-9 (two-sided, exact binomial law).
    """
    n, q = 200_000, 0.3
    kept = int(TorchCPUGenerator(2014).bernoulli(n, q).sum())
    low, high = binomial_acceptance(n, q, false_failure=1e-9)
    assert low <= kept <= high


def test_alpha_constant_is_selu_product():
    assert SELU_ALPHA_TIMES_SCALE == 1.0507009873554805 * 1.6732632423543772


@settings(max_examples=50, deadline=None)
@given(
    x=hnp.arrays(
        dtype=st.sampled_from([np.float16, np.float32, np.float64]),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
        elements=st.floats(-1e3, 1e3, width=16),
    ),
    p=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
    feature=st.booleans(),
    alpha=st.booleans(),
)
def test_property_shapes_dtypes(x, p, seed, feature, alpha):
    """Any shape, dtype and p: the same bits and state as torch (or the same refusal)."""
    torch.manual_seed(seed)
    gen = TorchCPUGenerator(seed)
    try:
        expected = TORCH_OPS[feature, alpha](torch.from_numpy(x), p, True).numpy()
    except RuntimeError:
        with pytest.raises(ValueError, match="at least 2 dimensions"):
            torch_dropout(x, p, generator=gen, feature=feature, alpha=alpha)
        return
    got = torch_dropout(x, p, generator=gen, feature=feature, alpha=alpha)
    assert np.array_equal(np.atleast_1d(got).view(np.uint8), np.atleast_1d(expected).view(np.uint8))
    assert_same_state(gen)


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("alpha", [False, True])
def test_zero_dimensional_input_gives_a_zero_dimensional_array(p, alpha):
    """Regression (issue 10, defect 8): 0-d input returned a NumPy scalar, not an array."""
    x = np.array(-1.5, dtype=np.float32)
    y = torch_dropout(x, p, generator=TorchCPUGenerator(3), alpha=alpha)
    assert isinstance(y, np.ndarray) and y.shape == () and y.dtype == np.float32
    expected = torch.nn.functional.dropout if not alpha else torch.nn.functional.alpha_dropout
    torch.manual_seed(3)
    want = expected(torch.tensor(-1.5), p, training=True).numpy()
    assert y.tobytes() == want.tobytes()
