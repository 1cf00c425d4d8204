"""The Triton seeded-dropout kernels, run on CPU under Triton's interpreter.

The interpreter must be switched on before Triton is first imported in the process, so this
module sets ``TRITON_INTERPRET=1`` before importing anything that imports Triton. Sizes are
small: the interpreter executes every program in Python.
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"

import numpy as np
import pytest
import torch

from dropoutlib.numpy.functional import _drop_threshold, inverted_scale
from dropoutlib.numpy.philox import philox_keep_words
from dropoutlib.stats import binomial_acceptance
from dropoutlib.triton import seeded_dropout_backward, seeded_dropout_forward, seeded_keep_mask


@pytest.fixture(autouse=True, scope="module")
def _interpreter_active():
    import triton.language as tl

    assert type(tl.randint4x).__name__ == "InterpretedFunction", (
        "Triton was imported before TRITON_INTERPRET=1 was set in this process; run this "
        "file in its own process (pytest -p no:xdist tests/test_triton_dropout.py)"
    )


def _reference(x: torch.Tensor, p: float, seed: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep mask from the NumPy Philox4x32 reference, and (x * m) * c in float32."""
    mask = philox_keep_words(x.numel(), seed, offset) >= _drop_threshold(p)
    y = x.float().numpy().reshape(-1) * mask
    y *= inverted_scale(p, np.float32)
    return mask, y


@pytest.mark.parametrize("n", [1, 5, 64, 1000, 4 * 64 * 3 + 3])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.85])
def test_kernel_mask_and_output_match_the_philox_reference(n, p):
    x = torch.randn(n, generator=torch.Generator().manual_seed(n))
    y = seeded_dropout_forward(x, p, seed=2014, offset=7, block=64)
    mask, ref = _reference(x, p, 2014, 7)
    np.testing.assert_array_equal(y.numpy().view(np.uint32), ref.view(np.uint32))
    km = seeded_keep_mask(n, p, 2014, 7, device="cpu", block=16)
    np.testing.assert_array_equal(km.numpy(), mask)


def test_mask_does_not_depend_on_block_size_or_shape():
    x = torch.randn(12, 100, generator=torch.Generator().manual_seed(1))
    ys = [seeded_dropout_forward(x, 0.4, seed=5, offset=1, block=b) for b in (16, 64, 256)]
    assert all(torch.equal(ys[0], y) for y in ys[1:])
    assert ys[0].shape == x.shape
    flat = seeded_dropout_forward(x.reshape(-1), 0.4, seed=5, offset=1, block=32)
    assert torch.equal(flat, ys[0].reshape(-1))


def test_backward_regenerates_the_forward_mask_bit_for_bit():
    gen = torch.Generator().manual_seed(2)
    x, g = torch.randn(2, 777, generator=gen)
    y = seeded_dropout_forward(x, 0.3, seed=99, offset=4, block=32)
    dx = seeded_dropout_backward(g, 0.3, seed=99, offset=4, block=128)
    mask = seeded_keep_mask(777, 0.3, 99, 4, device="cpu", block=64)
    assert torch.equal(y != 0, mask & (x != 0))
    expected = g * mask * float(inverted_scale(0.3, np.float32))
    assert torch.equal(dx, expected)  # torch's own (g * m) * c, bit for bit


def test_half_precision():
    x = torch.randn(999, generator=torch.Generator().manual_seed(3))
    mask, _ = _reference(x, 0.5, 17, 0)
    # float16: computed in float32 and rounded to nearest, like torch
    y16 = seeded_dropout_forward(x.half(), 0.5, seed=17, block=32)
    assert torch.equal(y16, torch.from_numpy(_reference(x.half(), 0.5, 17, 0)[1]).half())
    # bfloat16 with p = 0.5: (x * m) * 2 is exact, so the output is bit-exact
    xb = x.bfloat16()
    yb = seeded_dropout_forward(xb, 0.5, seed=17, block=32)
    assert yb.dtype == torch.bfloat16
    assert torch.equal(yb, xb * torch.from_numpy(mask) * 2)
    # bfloat16, p = 0.3: same mask; the interpreter's float32 -> bfloat16 cast truncates
    # (the GPU rounds to nearest), so values agree to one bfloat16 unit in the last place
    yb3 = seeded_dropout_forward(xb, 0.3, seed=17, block=32)
    m3, ref3 = _reference(xb, 0.3, 17, 0)
    assert np.array_equal((yb3 != 0).numpy(), m3 & (xb != 0).numpy())
    ulp = torch.finfo(torch.bfloat16).eps * torch.from_numpy(ref3).abs()
    assert torch.all((yb3.float() - torch.from_numpy(ref3)).abs() <= ulp)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_kernel_keep_rate_and_independent_offsets(p):
    """Binomial regions at false-failure 1e-9: keep count per stream, joint count per pair.

    Three streams give 3 keep-rate checks and 3 pairwise checks: < 6e-9 per parameter.
    """
    n = 1 << 15
    masks = [seeded_keep_mask(n, p, 123, off, device="cpu", block=512).numpy() for off in (0, 1)]
    masks.append(seeded_keep_mask(n, p, 124, 0, device="cpu", block=512).numpy())
    low, high = binomial_acceptance(n, 1 - p, 1e-9)
    assert all(low <= int(m.sum()) <= high for m in masks)
    low2, high2 = binomial_acceptance(n, (1 - p) ** 2, 1e-9)
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert low2 <= int(np.count_nonzero(masks[a] & masks[b])) <= high2


def test_edge_cases_and_errors():
    x = torch.randn(10)
    assert torch.equal(seeded_dropout_forward(x, 0.0, seed=1), x)
    assert torch.equal(seeded_dropout_forward(x, 1.0, seed=1), torch.zeros(10))
    assert seeded_keep_mask(5, 1.0, 1, device="cpu").sum() == 0
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        seeded_dropout_forward(x.double(), 0.5, seed=1)
    with pytest.raises(ValueError, match="offset"):
        seeded_dropout_forward(x, 0.5, seed=1, offset=1 << 32)
    with pytest.raises(ValueError, match="seed"):
        seeded_dropout_forward(x, 0.5, seed=-1)


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
