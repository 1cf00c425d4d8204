"""dropoutlib.torch.structured vs the real reference code of torchvision 0.28.0 and timm 1.0.31.

The references are the files of the installed wheels, executed by
dropoutlib.torch.references (the torchvision wheel's C extension does not load beside the CPU
torch; see there). Bit for bit where both draw the same random numbers; statistically (stated
false-failure probability) where the NumPy versions draw from NumPy generators.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from dropoutlib.numpy.structured import (
    drop_path as np_drop_path,
)
from dropoutlib.numpy.structured import (
    dropblock_drop_rate,
    dropblock_gamma,
    dropblock_mask,
    linear_drop_rates,
)
from dropoutlib.stats import z_for_false_failure
from dropoutlib.torch import structured as ours
from dropoutlib.torch.references import (
    ReferenceUnavailable,
    load_timm_drop,
    load_torchvision_ops,
    reference_versions,
)

try:
    TV = load_torchvision_ops()
    TIMM = load_timm_drop()
except ReferenceUnavailable as e:  # pragma: no cover - requirements.txt installs both
    if os.environ.get("CI"):  # CI installs requirements.txt: a missing reference is a failure
        raise
    pytest.skip(str(e), allow_module_level=True)

Z9 = z_for_false_failure(1e-9)
DTYPES = [torch.float32, torch.float64, torch.float16]


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bit patterns (so that NaNs compare equal to identical NaNs)."""
    return t.contiguous().view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def _same(seed, f, g):
    """Same output bits and same generator state after, from the same torch seed."""
    torch.manual_seed(seed)
    a = f()
    state_a = torch.get_rng_state()
    torch.manual_seed(seed)
    b = g()
    same_dtype = a.dtype == b.dtype and a.shape == b.shape
    return (
        same_dtype
        and torch.equal(_bits(a), _bits(b))
        and torch.equal(state_a, torch.get_rng_state())
    )


def test_versions_and_files():
    assert TV.version == "0.28.0" and TIMM.__version__ == "1.0.31"
    assert reference_versions()["torchvision"] == "0.28.0"
    assert TV.files[0].endswith("torchvision/ops/stochastic_depth.py")
    assert TIMM.__file__.endswith("timm/layers/drop.py")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["row", "batch"])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_stochastic_depth_bit_exact(dtype, mode, p):
    x = torch.randn(16, 3, 5, dtype=dtype)
    assert _same(
        7, lambda: ours.stochastic_depth(x, p, mode), lambda: TV.stochastic_depth(x, p, mode)
    )
    m_ours, m_ref = ours.StochasticDepth(p, mode), TV.StochasticDepth(p, mode)
    assert _same(8, lambda: m_ours(x), lambda: m_ref(x))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale_by_keep", [True, False])
@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 1.0])
def test_drop_path_bit_exact(dtype, scale_by_keep, p):
    x = torch.randn(32, 4, 3, 3, dtype=dtype)
    assert _same(
        9,
        lambda: ours.drop_path(x, p, True, scale_by_keep),
        lambda: TIMM.drop_path(x, p, True, scale_by_keep),
    )
    a, b = ours.DropPath(p, scale_by_keep), TIMM.DropPath(p, scale_by_keep)
    assert _same(10, lambda: a(x), lambda: b(x))


def test_drop_path_gradients_equal():
    x = torch.randn(8, 5)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.manual_seed(11)
    ours.drop_path(xa, 0.3, True).pow(2).sum().backward()
    torch.manual_seed(11)
    TIMM.drop_path(xb, 0.3, True).pow(2).sum().backward()
    assert torch.equal(xa.grad, xb.grad)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.05, 0.2, 0.5, 0.9, 1.0])
@pytest.mark.parametrize(
    "block_size,hw", [(1, (6, 6)), (3, (9, 9)), (5, (12, 7)), (7, (7, 7)), (9, (9, 12))]
)
def test_drop_block2d_bit_exact_torchvision(dtype, p, block_size, hw):
    x = torch.randn(4, 3, *hw, dtype=dtype)
    assert _same(
        12,
        lambda: ours.drop_block2d(x, p, block_size),
        lambda: TV.drop_block2d(x, p, block_size),
    )
    a, b = ours.DropBlock2d(p, block_size), TV.DropBlock2d(p, block_size)
    assert _same(13, lambda: a(x), lambda: b(x))


def test_drop_block2d_inplace_and_grad_bit_exact_torchvision():
    x = torch.randn(2, 4, 9, 9)
    a, b = x.clone(), x.clone()
    assert _same(
        14,
        lambda: ours.drop_block2d(a, 0.3, 3, inplace=True),
        lambda: TV.drop_block2d(b, 0.3, 3, inplace=True),
    )
    assert torch.equal(a, b)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.manual_seed(15)
    ours.drop_block2d(xa, 0.3, 3).pow(2).sum().backward()
    torch.manual_seed(15)
    TV.drop_block2d(xb, 0.3, 3).pow(2).sum().backward()
    assert torch.equal(xa.grad, xb.grad)


def test_gamma_equals_both_references_formulas():
    """Our gamma is the same double as torchvision's and timm's expressions (as written in
    their files) on a grid of cases, so the Bernoulli draws are the same comparisons."""
    for p in (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.9):
        for k, h, w in ((1, 5, 5), (3, 9, 9), (3, 8, 11), (5, 12, 7), (7, 7, 7), (7, 14, 14)):
            tv = (p * h * w) / ((k**2) * ((h - k + 1) * (w - k + 1)))
            timm = float(p * h * w) / float(k * k) / float((h - k + 1) * (w - k + 1))
            g = dropblock_gamma(p, k, h, w)
            assert g == tv
            assert g == pytest.approx(timm, rel=4e-16)


@pytest.mark.parametrize("p", [0.05, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("block_size,hw", [(1, (6, 6)), (3, (9, 9)), (5, (12, 7)), (7, (7, 7))])
def test_drop_block2d_bit_exact_timm_float32(p, block_size, hw):
    x = torch.randn(4, 3, *hw)
    kw = {"eps": 1e-7, "seed_region": "full", "share_channels": True}
    assert _same(
        16,
        lambda: ours.drop_block2d(x, p, block_size, **kw),
        lambda: TIMM.drop_block_2d(x, p, block_size),
    )
    a, b = ours.DropBlock2d(p, block_size, **kw), TIMM.DropBlock2d(p, block_size)
    assert _same(17, lambda: a(x), lambda: b(x))


def test_drop_block2d_timm_float64_differs_only_by_float32_scale():
    """timm computes the rescaling factor in float32 for every dtype: on float64 input our
    factor (float64) and timm's differ by at most float32 rounding (relative 2**-24)."""
    x = torch.randn(4, 3, 9, 9, dtype=torch.float64)
    kw = {"eps": 1e-7, "seed_region": "full", "share_channels": True}
    torch.manual_seed(18)
    a = ours.drop_block2d(x, 0.3, 3, **kw)
    torch.manual_seed(18)
    b = TIMM.drop_block_2d(x, 0.3, 3)
    assert torch.equal(a == 0, b == 0)
    torch.testing.assert_close(a, b, rtol=2.0**-24, atol=0)


def test_timm_drop_path_rates_are_the_timm_convention():
    for depth in (1, 4, 12):
        ref = TIMM.calculate_drop_path_rates(0.3, depth)
        assert np.allclose(
            linear_drop_rates(depth, 0.3, convention="timm"), ref, rtol=1e-6, atol=1e-7
        )


@pytest.mark.parametrize("region", ["valid", "full"])
def test_numpy_dropblock_matches_reference_drop_rate(region):
    """Different generators, same law: the fraction of zeros per 10x10 map of the reference
    (torchvision for valid seeds, timm for full) and of our NumPy mask both agree with
    dropblock_drop_rate. Each check: |mean - rate| < z sd/sqrt(n) over 3000 independent maps,
    z for false-failure 1e-9 (two checks, 2e-9 in all)."""
    n, p, k = 3000, 0.25, 3
    expect = dropblock_drop_rate(dropblock_gamma(p, k, 10, 10), k, 10, 10, region)
    torch.manual_seed(19)
    ones = torch.ones(n, 1, 10, 10, dtype=torch.float64)
    ref = TV.drop_block2d(ones, p, k) if region == "valid" else TIMM.drop_block_2d(ones, p, k)
    ref_frac = (ref == 0).double().mean(dim=(1, 2, 3)).numpy()
    np_frac = 1 - dropblock_mask(
        (n, 1, 10, 10), p, k, rng=np.random.default_rng(20), seed_region=region
    ).mean(axis=(1, 2, 3))
    for frac in (ref_frac, np_frac):
        assert abs(frac.mean() - expect) < Z9 * frac.std(ddof=1) / np.sqrt(n)


def test_numpy_drop_path_matches_reference_keep_rate():
    """Kept rows: timm (torch generator) and ours (NumPy) vs Binomial(n, 1 - p), two-sample
    normal test of equal proportions, false-failure 1e-9."""
    n, p = 40000, 0.3
    torch.manual_seed(21)
    ref = (TIMM.drop_path(torch.ones(n, 1), p, True) != 0).double().mean().item()
    _, m = np_drop_path(np.ones((n, 1)), p, rng=np.random.default_rng(22), return_mask=True)
    mine = m.mean()
    se = np.sqrt(2 * p * (1 - p) / n)
    assert abs(ref - mine) < Z9 * se
