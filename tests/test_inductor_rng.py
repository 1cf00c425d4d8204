"""torch.compile's CPU dropout mask, reproduced in NumPy; activation checkpointing's masks.

Compiling is slow (about 16 s the first time on 2 cores), so one module-scoped fixture compiles
every function once; a file lock makes a second pytest-xdist worker wait for the first and then
hit Inductor's on-disk cache instead of compiling the same kernels at the same time.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from filelock import FileLock

from dropoutlib.numpy.torch_rng import TorchCPUGenerator
from dropoutlib.torch.checkpointing import checkpoint_masks
from dropoutlib.torch.inductor_rng import (
    inductor_dropout,
    inductor_dropout_mask,
    inductor_keep_probability,
    inductor_rand,
    inductor_seeds,
    triton_rand,
)

INT64 = torch.iinfo(torch.int64)


def _one(x):
    return F.dropout(x, 0.3, training=True)


def _two(x):
    return F.dropout(F.dropout(x, 0.3, training=True) * 2.0, 0.6, training=True)


@pytest.mark.parametrize("seed", [0, 1, 2014, 2**40 + 7])
def test_seeds_are_torch_randint_over_int64(seed):
    torch.manual_seed(seed)
    expected = torch.randint(INT64.min, INT64.max, [5]).numpy()
    after = torch.randint(INT64.min, INT64.max, [2]).numpy()
    gen = TorchCPUGenerator(seed)
    np.testing.assert_array_equal(inductor_seeds(gen, 5), expected)
    np.testing.assert_array_equal(inductor_seeds(gen, 2), after)  # the stream continues


def test_rand_is_word_zero_of_philox_at_counter_i():
    # the float formula of cpp_prefix.h, evaluated independently in float64 then rounded
    from dropoutlib.numpy.philox import philox4x32

    seed = 0xDEADBEEF12345678  # only the low 32 bits reach the kernel
    word0 = philox4x32((np.arange(50, dtype=np.uint64), 0, 0, 0), seed & 0xFFFFFFFF)[0]
    as_float = (word0 & 0x7FFFFFFF).astype(np.float64).astype(np.float32)
    expected = (as_float * np.float32(4.6566127342e-10)).astype(np.float32)
    np.testing.assert_array_equal(inductor_rand(seed, 50), expected)
    assert inductor_rand(seed, 50).max() < 1.0


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="seed must be an int"):
        inductor_rand(1.5, 3)
    with pytest.raises(ValueError, match="p must be in"):
        inductor_dropout_mask((3,), 1.0, 0)
    with pytest.raises(TypeError, match="float32"):
        inductor_dropout(np.ones(3), 0.5, 0)
    with pytest.raises(TypeError, match="TorchCPUGenerator"):
        inductor_seeds(torch.Generator(), 1)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Compiled functions and what they produced after known ``torch.manual_seed`` calls."""
    import torch._inductor.config as inductor_config

    lock = tmp_path_factory.getbasetemp().parent / "dropoutlib-inductor.lock"
    out = {}
    with FileLock(str(lock)):
        torch._dynamo.reset()
        one, two = torch.compile(_one), torch.compile(_two)
        x = torch.randn(5, 7, generator=torch.Generator().manual_seed(1))  # 35 = 2*16 + 3
        xg = x.clone().requires_grad_(True)
        saved = []
        torch.manual_seed(11)
        with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t.detach().clone()) or t, lambda t: t
        ):
            y = one(xg)
        again = one(xg).detach()  # a second call draws the next seed
        y.backward(torch.ones_like(y))
        out["one"] = (x, y.detach(), again, saved, xg.grad)
        torch.manual_seed(12)
        out["two"] = (x, two(x))
        base = torch.randn(6, 10, 8, generator=torch.Generator().manual_seed(2))
        for name, strided in (
            ("transpose", base.transpose(0, 2)),
            ("permute", base.permute(1, 2, 0)),
            ("slice_t", base[:, :, ::3].transpose(1, 2)),
        ):
            torch.manual_seed(15)
            out[name] = (strided, one(strided))
        with inductor_config.patch(fallback_random=True):
            torch._dynamo.reset()
            fallback = torch.compile(_one)
            torch.manual_seed(14)
            out["fallback"] = (x, fallback(x))
        torch._dynamo.reset()
    return out


def test_compiled_dropout_is_reproduced_bit_for_bit(compiled):
    x, first, second, _, _ = compiled["one"]
    seeds = inductor_seeds(TorchCPUGenerator(11), 2)
    np.testing.assert_array_equal(first.numpy(), inductor_dropout(x.numpy(), 0.3, int(seeds[0])))
    np.testing.assert_array_equal(second.numpy(), inductor_dropout(x.numpy(), 0.3, int(seeds[1])))
    torch.manual_seed(11)
    assert not torch.equal(first, F.dropout(x, 0.3))  # eager draws another mask


def test_mask_follows_the_inputs_memory_layout(compiled):
    # Inductor's rand_like draws in the input's physical (stride) order: a transposed,
    # permuted or sliced input gets its uniforms in memory order, not in C order
    for name in ("transpose", "permute", "slice_t"):
        x, y = compiled[name]
        (seed,) = inductor_seeds(TorchCPUGenerator(15), 1)
        np.testing.assert_array_equal(y.numpy(), inductor_dropout(x.numpy(), 0.3, int(seed)))
        mask = inductor_dropout_mask(tuple(x.shape), 0.3, int(seed), tuple(x.stride()))
        np.testing.assert_array_equal(y.numpy() != 0, mask)
        assert not np.array_equal(mask, inductor_dropout_mask(tuple(x.shape), 0.3, int(seed)))
    with pytest.raises(ValueError, match="strides must be positive"):
        inductor_dropout_mask((2, 3), 0.3, 0, (0, 1))


def test_two_dropouts_in_one_graph_take_seeds_in_graph_order(compiled):
    x, y = compiled["two"]
    s = inductor_seeds(TorchCPUGenerator(12), 2)
    first = inductor_dropout(x.numpy(), 0.3, int(s[0])) * np.float32(2.0)
    np.testing.assert_array_equal(y.numpy(), inductor_dropout(first, 0.6, int(s[1])))


def test_backward_saves_the_bool_mask(compiled):
    x, y, _, saved, grad = compiled["one"]
    seed = inductor_seeds(TorchCPUGenerator(11), 1)[0]
    mask = inductor_dropout_mask(tuple(x.shape), 0.3, int(seed))
    assert [t.dtype for t in saved] == [torch.bool]
    np.testing.assert_array_equal(saved[0].numpy(), mask)
    np.testing.assert_array_equal(y.numpy(), inductor_dropout(x.numpy(), 0.3, int(seed)))
    np.testing.assert_array_equal(grad.numpy() != 0, mask)


def test_fallback_random_restores_eager_masks(compiled):
    x, y = compiled["fallback"]
    torch.manual_seed(14)
    assert torch.equal(y, F.dropout(x, 0.3))


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_checkpoint_replays_masks_only_with_preserved_rng_state(use_reentrant):
    x = torch.randn(2000, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    (fwd, again), grad = checkpoint_masks(x, 0.5, use_reentrant=use_reentrant)
    assert torch.equal(fwd, again)
    assert torch.equal(grad != 0, fwd)
    torch.manual_seed(0)
    (fwd2, again2), grad2 = checkpoint_masks(
        x, 0.5, preserve_rng_state=False, use_reentrant=use_reentrant
    )
    assert torch.equal(fwd, fwd2)  # the same forward mask ...
    assert not torch.equal(fwd2, again2)  # ... but a new one in the recomputation
    assert torch.equal(grad2 != 0, again2)  # and the gradient follows the new one
    (s_fwd, s_again), _ = checkpoint_masks(x, 0.5, preserve_rng_state=False, seed=5)
    assert torch.equal(s_fwd, s_again)  # seeded: no generator state needed


def test_triton_rand_layouts_match_triton():
    triton = pytest.importorskip("triton")
    import triton.language as tl

    @triton.jit
    def kernel(out, out4, seed, N: tl.constexpr):
        offs = tl.arange(0, N)
        tl.store(out + offs, tl.rand(seed, offs.to(tl.uint32)))
        r0, r1, r2, r3 = tl.rand4x(seed, tl.arange(0, N // 4).to(tl.uint32))
        # triton_helpers._random_4x_to_block of torch 2.13
        tl.store(out4 + offs, tl.reshape(tl.join(tl.join(r0, r2), tl.join(r1, r3)), [N]))

    device = "cuda" if os.environ.get("DROPOUTLIB_TRITON_DEVICE") == "cuda" else "cpu"
    for seed in (-3213213213213213213, 5, 2**40 + 1):
        out, out4 = torch.empty(64, device=device), torch.empty(64, device=device)
        kernel[(1,)](out, out4, seed, 64)
        np.testing.assert_array_equal(out.cpu().numpy(), triton_rand(seed, 64))
        np.testing.assert_array_equal(out4.cpu().numpy(), triton_rand(seed, 64, "rand4x"))
    with pytest.raises(ValueError, match="layout"):
        triton_rand(0, 4, "rand8x")


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_keep_probability_is_the_threshold_of_the_float_map(p):
    keep = inductor_keep_probability(p)
    k_star = round((1 - keep) * 2**31)  # smallest kept k
    scale = np.float32(4.6566127342e-10)
    below = np.float32(np.float32(k_star - 1) * scale)
    at = np.float32(np.float32(k_star) * scale)
    assert below <= np.float32(p) < at
    assert abs(keep - (1 - p)) < 1e-7  # the float grid moves it by less than 2**-23
