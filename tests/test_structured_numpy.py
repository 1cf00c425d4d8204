"""Tests of dropoutlib.numpy.structured: DropConnect, DropPath and DropBlock in NumPy.

Gradients are checked twice for each variant: against central differences (float64) and
against torch.autograd applied to the same computation with the same mask. Statistical tests
state their false-failure probability (all use fixed seeds).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from dropoutlib.gradcheck import check_module, numerical_gradient, relative_error
from dropoutlib.numpy import dropout2d
from dropoutlib.numpy.functional import bernoulli_mask
from dropoutlib.numpy.nn import Linear, ReLU, Sequential
from dropoutlib.numpy.structured import (
    DropConnectLinear,
    ResidualBlock,
    block_coverage,
    drop_block,
    drop_block_backward,
    drop_path,
    drop_path_backward,
    dropblock_drop_rate,
    dropblock_exact_gamma,
    dropblock_gamma,
    dropblock_mask,
    dropconnect_linear,
    dropconnect_linear_backward,
    dropconnect_mc_proba,
    dropconnect_moments,
    gaussian_relu_mean,
    gaussian_relu_sampled,
    linear_drop_rates,
    moment_matching_proba,
)
from dropoutlib.stats import binomial_acceptance, z_for_false_failure

Z9 = z_for_false_failure(1e-9)  # two-sided, false-failure probability 1e-9 per check


def _data(seed=0, n=4, d_in=5, d_out=3):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((n, d_in)),
        rng.standard_normal((d_out, d_in)),
        rng.standard_normal(d_out),
    )


# --- DropConnect ------------------------------------------------------------------------------


@pytest.mark.parametrize("per_sample", [True, False])
def test_dropconnect_forward_is_masked_weights(per_sample):
    x, w, b = _data()
    u, m = dropconnect_linear(
        x, w, b, 0.4, rng=np.random.default_rng(1), per_sample=per_sample, return_mask=True
    )
    masks = m if per_sample else np.broadcast_to(m, (len(x), *w.shape))
    expect = np.stack([(mk * w / 0.6) @ xi + b for mk, xi in zip(masks, x, strict=True)])
    np.testing.assert_allclose(u, expect, rtol=1e-12, atol=1e-12)
    assert m.shape == ((len(x), *w.shape) if per_sample else w.shape)


@pytest.mark.parametrize("per_sample", [True, False])
def test_dropconnect_backward_finite_differences_and_autograd(per_sample):
    x, w, b = _data(2)
    p = 0.3
    _, mask = dropconnect_linear(
        x, w, b, p, rng=np.random.default_rng(3), per_sample=per_sample, return_mask=True
    )
    g = np.random.default_rng(4).standard_normal((len(x), len(b)))
    gx, gw, gb = dropconnect_linear_backward(g, x, w, mask, p)

    def f(_):  # the same mask in every evaluation
        masks = mask if per_sample else mask[None]
        wt = masks * w / (1 - p)
        return float(
            np.sum(g * (np.einsum("noi,ni->no", np.broadcast_to(wt, (len(x), *w.shape)), x) + b))
        )

    for ours, arr in ((gx, x), (gw, w), (gb, b)):
        assert relative_error(ours, numerical_gradient(f, arr)) < 1e-7
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    tm = torch.tensor(mask if per_sample else mask[None], dtype=torch.float64)
    u = torch.einsum("noi,ni->no", (tm * tw / (1 - p)).expand(len(x), *w.shape), tx) + tb
    u.backward(torch.tensor(g))
    for ours, t in ((gx, tx), (gw, tw), (gb, tb)):
        np.testing.assert_allclose(ours, t.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_dropconnect_linear_module_gradcheck():
    rng = np.random.default_rng(5)
    layer = DropConnectLinear(
        6, 4, 0.5, rng=rng, mask_rng=np.random.default_rng(6), dtype=np.float64
    )
    model = Sequential(layer, ReLU(), Linear(4, 3, rng=rng, dtype=np.float64))
    x = rng.standard_normal((5, 6))
    errors = check_module(model, x, rng=np.random.default_rng(7))
    assert max(errors.values()) < 1e-6, errors
    model.eval()
    np.testing.assert_allclose(layer(x), x @ layer.weight.data.T + layer.bias.data)


def test_dropconnect_moments_match_monte_carlo():
    """Sample mean and variance of u over 20000 masks vs the formula; each checked with a
    normal bound (z for false-failure 1e-9 per unit, 4 units, two statistics)."""
    x, w, b = _data(8, n=1, d_in=6, d_out=4)
    p, n = 0.35, 20000
    u = dropconnect_linear(
        np.repeat(x, n, axis=0), w, b, p, rng=np.random.default_rng(9), per_sample=True
    )
    mean, var = dropconnect_moments(x, w, b, p)
    se_mean = np.sqrt(var[0] / n)
    assert np.all(np.abs(u.mean(axis=0) - mean[0]) < Z9 * se_mean)
    # Var of the sample variance ~ (mu4 - sigma^4)/n; mu4 estimated from the sample.
    centred = u - u.mean(axis=0)
    se_var = np.sqrt((np.mean(centred**4, axis=0) - var[0] ** 2) / n)
    assert np.all(np.abs(u.var(axis=0) - var[0]) < Z9 * se_var)


@pytest.mark.parametrize("mu,var", [(0.7, 0.5), (-1.2, 2.0), (0.0, 1.0), (0.3, 0.0)])
def test_gaussian_relu_mean_is_the_integral(mu, var):
    if var == 0:
        expect = max(mu, 0.0)
    else:
        sd = np.sqrt(var)
        expect = integrate.quad(lambda u: u * stats.norm.pdf(u, mu, sd), 0, np.inf)[0]
    assert gaussian_relu_mean(np.array(mu), np.array(var)) == pytest.approx(expect, abs=1e-10)


def test_gaussian_relu_sampled_converges_to_closed_form():
    """Mean of 4000 samples vs the exact mean; bound z * sd(relu(u)) / sqrt(n), false-failure
    1e-9 per unit (sd(relu(u)) <= sd(u))."""
    mean, var = np.array([[0.5, -0.3, 1.2]]), np.array([[1.0, 0.4, 2.0]])
    s = gaussian_relu_sampled(mean, var, 4000, rng=np.random.default_rng(10))
    assert np.all(np.abs(s - gaussian_relu_mean(mean, var)) < Z9 * np.sqrt(var / 4000))


def test_moment_matching_and_mc_proba():
    rng = np.random.default_rng(11)
    layer = DropConnectLinear(
        6, 8, 0.5, rng=rng, mask_rng=np.random.default_rng(12), dtype=np.float64
    )
    model = Sequential(layer, ReLU(), Linear(8, 3, rng=rng, dtype=np.float64))
    x = rng.standard_normal((4, 6))
    exact = moment_matching_proba(model, x)
    assert exact.shape == (4, 3) and np.allclose(exact.sum(axis=1), 1)
    sampled = moment_matching_proba(model, x, samples=3000, rng=np.random.default_rng(13))
    assert np.abs(sampled - exact).max() < 0.05
    # p -> 0: the variance vanishes and moment matching is the deterministic network.
    layer.p = 0.0
    model.eval()
    from dropoutlib.numpy.nn import softmax

    np.testing.assert_allclose(moment_matching_proba(model, x), softmax(model(x)), atol=1e-12)
    layer.p = 0.5
    state = layer.rng.bit_generator.state
    mc = dropconnect_mc_proba(model, x, 7, rng=np.random.default_rng(14))
    assert mc.shape == (7, 4, 3) and layer.rng.bit_generator.state == state
    assert not model.training and layer.per_sample


def test_dropconnect_errors():
    x, w, b = _data()
    with pytest.raises(TypeError, match="Generator"):
        dropconnect_linear(x, w, b, 0.5)
    with pytest.raises(ValueError, match="same in"):
        dropconnect_linear(x, w.T, b, 0.5, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="between 0 and 1"):
        dropconnect_linear(x, w, b, 1.5, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="p < 1"):
        dropconnect_moments(x, w, b, 1.0)


# --- DropPath ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["row", "batch"])
@pytest.mark.parametrize("scaling", ["inverted", "standard"])
def test_drop_path_forward_backward(mode, scaling):
    rng = np.random.default_rng(15)
    x = rng.standard_normal((6, 3, 2))
    y, m = drop_path(
        x, 0.4, rng=np.random.default_rng(16), mode=mode, scaling=scaling, return_mask=True
    )
    assert m.shape == ((6, 1, 1) if mode == "row" else (1, 1, 1))
    c = 1 / 0.6 if scaling == "inverted" else 1.0
    np.testing.assert_allclose(y, x * m * c)
    g = rng.standard_normal(x.shape)
    ours = drop_path_backward(g, m, 0.4, scaling=scaling)
    num = numerical_gradient(
        lambda a: float(np.sum(g * drop_path_backward(a, m, 0.4, scaling=scaling))), x.copy()
    )
    assert relative_error(ours, num) < 1e-8
    tx = torch.tensor(x, requires_grad=True)
    (tx * torch.tensor(m, dtype=torch.float64) * c).backward(torch.tensor(g))
    np.testing.assert_allclose(ours, tx.grad.numpy(), rtol=1e-15)
    ev = drop_path(x, 0.4, training=False, scaling=scaling)
    np.testing.assert_allclose(ev, x if scaling == "inverted" else 0.6 * x)


def test_drop_path_keep_rate():
    """Kept rows of 20000 ~ Binomial(20000, 0.7) (rule of bernoulli_mask); false-failure 1e-9."""
    x = np.ones((20000, 2))
    _, m = drop_path(x, 0.3, rng=np.random.default_rng(17), return_mask=True)
    lo, hi = binomial_acceptance(20000, 0.7, 1e-9)
    assert lo <= int(m.sum()) <= hi


def test_linear_drop_rates():
    assert linear_drop_rates(4, 0.5) == [0.125, 0.25, 0.375, 0.5]
    assert linear_drop_rates(5, 0.5, convention="timm") == [0.0, 0.125, 0.25, 0.375, 0.5]
    with pytest.raises(ValueError, match="convention"):
        linear_drop_rates(3, 0.5, convention="paper")


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_residual_block_gradcheck(mode):
    rng = np.random.default_rng(18)
    branch = Sequential(
        Linear(5, 5, rng=rng, dtype=np.float64), ReLU(), Linear(5, 5, rng=rng, dtype=np.float64)
    )
    block = ResidualBlock(branch, 0.5, rng=np.random.default_rng(19), mode=mode)
    x = rng.standard_normal((8, 5))
    errors = check_module(block, x, rng=np.random.default_rng(20))
    assert max(errors.values()) < 1e-6, errors
    block.eval()
    np.testing.assert_allclose(block(x), x + branch(x))


def test_residual_block_standard_eval_scales_branch():
    rng = np.random.default_rng(21)
    branch = Linear(3, 3, rng=rng, dtype=np.float64)
    block = ResidualBlock(branch, 0.25, rng=rng, scaling="standard").eval()
    x = rng.standard_normal((2, 3))
    np.testing.assert_allclose(block(x), x + 0.75 * branch(x))
    errors = check_module(block, x, rng=rng)
    assert max(errors.values()) < 1e-6


# --- DropBlock --------------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["valid", "full"])
@pytest.mark.parametrize("k,h,w", [(3, 7, 7), (5, 9, 6), (1, 4, 5)])
def test_block_coverage_total_and_first_order_bound(region, k, h, w):
    c = block_coverage(k, h, w, region)
    seeds = (h - k + 1) * (w - k + 1) if region == "valid" else h * w
    blocks = k * k if region == "valid" else None
    if region == "valid":
        assert c.sum() == seeds * blocks  # every valid block lies inside the map
    else:  # clipped blocks: the sum of their clipped areas
        rows = [min(i + k // 2, h - 1) - max(i - k // 2, 0) + 1 for i in range(h)]
        cols = [min(j + k // 2, w - 1) - max(j - k // 2, 0) + 1 for j in range(w)]
        assert c.sum() == sum(rows) * sum(cols)
    g = dropblock_gamma(0.2, k, h, w)
    rate = dropblock_drop_rate(min(g, 1.0), k, h, w, region)
    if region == "valid":
        assert rate <= 0.2 + 1e-12  # overlaps only lower it
        assert dropblock_drop_rate(dropblock_exact_gamma(0.2, k, h, w), k, h, w) == pytest.approx(
            0.2, abs=1e-12
        )


def _brute_force_mask(fired, k, h, w, region):
    n, c = fired.shape[:2]
    keep = np.ones((n, c, h, w), dtype=bool)
    for idx in zip(*np.nonzero(fired), strict=True):
        a, b = idx[2], idx[3]
        if region == "valid":
            keep[idx[0], idx[1], a : a + k, b : b + k] = False
        else:
            keep[
                idx[0],
                idx[1],
                max(a - k // 2, 0) : a + k // 2 + 1,
                max(b - k // 2, 0) : b + k // 2 + 1,
            ] = False
    return keep


@pytest.mark.parametrize("region", ["valid", "full"])
@pytest.mark.parametrize("share", [False, True])
def test_dropblock_mask_is_union_of_blocks(region, share):
    h, w, k = 9, 8, 3
    shape = (3, 4, h, w)
    g = dropblock_gamma(0.3, k, h, w)
    mask = dropblock_mask(
        shape, 0.3, k, rng=np.random.default_rng(22), seed_region=region, share_channels=share
    )
    rows, cols = (h - k + 1, w - k + 1) if region == "valid" else (h, w)
    fired = ~bernoulli_mask((3, 1 if share else 4, rows, cols), g, rng=np.random.default_rng(22))
    np.testing.assert_array_equal(mask, _brute_force_mask(fired, k, h, w, region))


@pytest.mark.parametrize("region", ["valid", "full"])
def test_dropblock_drop_rate_statistical(region):
    """Mean dropped fraction of 4000 independent 10x10 maps vs dropblock_drop_rate; bound
    z * sample sd / sqrt(4000) with z for false-failure 1e-9 (CLT over independent maps)."""
    mask = dropblock_mask(
        (4000, 1, 10, 10), 0.25, 3, rng=np.random.default_rng(23), seed_region=region
    )
    frac = 1 - mask.mean(axis=(1, 2, 3))
    expect = dropblock_drop_rate(dropblock_gamma(0.25, 3, 10, 10), 3, 10, 10, region)
    assert abs(frac.mean() - expect) < Z9 * frac.std(ddof=1) / np.sqrt(len(frac))


def test_dropblock_with_map_sized_block_is_dropout2d():
    """Chapter 8's spatial dropout is DropBlock with block_size = feature map (valid seeds):
    one seed per channel with gamma = p, the same keep mask for the same generator state."""
    x = np.random.default_rng(24).standard_normal((6, 5, 7, 7))
    _, (mask, scale) = drop_block(x, 0.3, 7, rng=np.random.default_rng(25), return_mask=True)
    _, channel = dropout2d(x, 0.3, rng=np.random.default_rng(25), return_mask=True)
    np.testing.assert_array_equal(mask, np.broadcast_to(channel, x.shape))
    assert scale == mask.size / (1e-6 + np.count_nonzero(mask))  # the observed rescaling


def test_drop_block_backward_finite_differences_and_autograd():
    rng = np.random.default_rng(26)
    x = rng.standard_normal((2, 3, 6, 6))
    y, (mask, scale) = drop_block(x, 0.3, 3, rng=np.random.default_rng(27), return_mask=True)
    np.testing.assert_array_equal(y, x * mask * scale)
    g = rng.standard_normal(x.shape)
    ours = drop_block_backward(g, mask, scale)
    num = numerical_gradient(
        lambda a: float(np.sum(g * drop_block_backward(a, mask, scale))), x.copy()
    )
    assert relative_error(ours, num) < 1e-8
    tx = torch.tensor(x, requires_grad=True)
    (tx * torch.tensor(mask, dtype=torch.float64) * scale).backward(torch.tensor(g))
    np.testing.assert_allclose(ours, tx.grad.numpy(), rtol=1e-15)


def test_drop_block_eval_and_errors():
    x = np.ones((1, 1, 5, 5))
    assert drop_block(x, 0.5, 3, training=False) is x
    with pytest.raises(ValueError, match="4 dimensional"):
        drop_block(np.ones((2, 5, 5)), 0.5, 3, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="does not fit"):
        dropblock_gamma(0.1, 7, 5, 5)
    with pytest.raises(ValueError, match="seed_region"):
        block_coverage(3, 5, 5, "middle")
    with pytest.raises(TypeError, match="Generator"):
        drop_block(x, 0.5, 3)


# --- the committed experiment -----------------------------------------------------------------


def test_structured_experiment_point_reproduces_committed_value():
    """Re-run one point of dropoutlib/results/structured.json (DropConnect arm, seed 0, base
    budget: training, early stopping and all four inference rules) with the file's own
    configuration; every recorded number must come out identical."""
    from dropoutlib.experiments import load_results, run_point

    results = load_results("structured")
    assert not results.meta["quick"] and results.seeds == [0, 1, 2, 3, 4]
    setting = {"part": "dropconnect", "arm": "dropconnect", "budget": "base"}
    (row,) = run_point(results, 0, setting)
    (committed,) = results.select(seed=0, **setting)
    assert row == committed


def test_structured_replication_reruns_one_point():
    """The second seed set of chapter 17 (DropPath and DropBlock parts, seeds 5-9) uses the
    committed configuration, and one of its points (no DropPath, seed 6, base budget) comes
    out identical when re-run."""
    from dropoutlib.experiments import load_results, run_point

    base, rep = load_results("structured"), load_results("structured_replication")
    assert rep.config == base.config and rep.seeds == [5, 6, 7, 8, 9]
    assert not rep.meta["quick"]
    assert {r["part"] for r in rep.rows} == {"droppath", "dropblock"}
    assert len(rep.rows) == len(rep.seeds) * len(rep.settings)
    setting = {"part": "droppath", "arm": "none", "budget": "base"}
    (row,) = run_point(rep, 6, setting)
    (committed,) = rep.select(seed=6, **setting)
    assert row == committed
