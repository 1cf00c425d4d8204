"""Tests of dropoutlib.uncertainty: every estimator against a closed form or brute force."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dropoutlib.ensemble import exact_mask_ensemble
from dropoutlib.numpy.gaussian import GaussianDropout
from dropoutlib.numpy.nn import Dropout, Linear, ReLU, Sequential
from dropoutlib.uncertainty import (
    brier,
    choose_tau,
    ece,
    entropy,
    expected_entropy,
    fit_regression,
    gal_tau,
    gaussian_nll,
    mc_dropout_proba,
    mc_outputs,
    mixture_nll,
    mutual_information,
    nll,
    ood_auroc,
    predictive_entropy,
    regression_predictive,
    reliability,
    squared_error,
)


def _net(rng, *, gaussian=False, p=0.3, d=3, h=6, out=1):
    drop = GaussianDropout if gaussian else Dropout
    return Sequential(
        Linear(d, h, rng=rng, dtype=np.float64), ReLU(), drop(p, rng=rng),
        Linear(h, h, rng=rng, dtype=np.float64), ReLU(), drop(p, rng=rng),
        Linear(h, out, rng=rng, dtype=np.float64),
    )  # fmt: skip


# --- entropy, mutual information ---------------------------------------------------------------


def test_entropy_closed_forms():
    assert entropy(np.array([0.5, 0.5])) == pytest.approx(np.log(2))
    assert entropy(np.array([1.0, 0.0, 0.0])) == 0.0
    assert entropy(np.full(7, 1 / 7)) == pytest.approx(np.log(7))
    p = np.random.default_rng(0).dirichlet(np.ones(4), size=5)
    np.testing.assert_allclose(entropy(p), stats.entropy(p, axis=1), rtol=1e-12)


def test_mutual_information_closed_forms():
    # two confident networks that disagree: H[mean] = log 2, E[H] = 0, so I = log 2
    probs = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert mutual_information(probs)[0] == pytest.approx(np.log(2))
    assert predictive_entropy(probs)[0] == pytest.approx(np.log(2))
    assert expected_entropy(probs)[0] == 0.0
    # networks that agree: no epistemic part, however uncertain each one is
    same = np.tile(np.array([[[0.2, 0.3, 0.5]]]), (5, 1, 1))
    assert mutual_information(same)[0] == 0.0
    assert predictive_entropy(same)[0] == pytest.approx(entropy(np.array([0.2, 0.3, 0.5])))


def test_mutual_information_brute_force():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3) * 0.5, size=(6, 4))  # (T, N, C)
    for i in range(4):
        mean = probs[:, i].mean(axis=0)
        h = -sum(m * np.log(m) for m in mean)
        eh = np.mean([-sum(q * np.log(q) for q in probs[t, i]) for t in range(6)])
        assert mutual_information(probs)[i] == pytest.approx(h - eh, rel=1e-12)
        assert 0 <= mutual_information(probs)[i] <= np.log(3)


def test_probability_shapes_are_checked():
    with pytest.raises(ValueError, match=r"\(T, N, C\)"):
        mutual_information(np.ones((3, 2)) / 2)
    with pytest.raises(ValueError, match="probabilities"):
        predictive_entropy(np.full((2, 2, 2), 1.5))


# --- Monte Carlo passes ------------------------------------------------------------------------


@pytest.mark.parametrize("gaussian", [False, True])
def test_mc_outputs_reproducible_from_the_generator_only(gaussian):
    model = _net(np.random.default_rng(0), gaussian=gaussian)
    layer_states = [m.rng.bit_generator.state for m in model.layers if hasattr(m, "rng")]
    x = np.random.default_rng(1).standard_normal((5, 3))
    a = mc_outputs(model, x, 7, rng=np.random.default_rng(42))
    b = mc_outputs(model, x, 7, rng=np.random.default_rng(42))
    c = mc_outputs(model, x, 7, rng=np.random.default_rng(43))
    assert a.shape == (7, 5, 1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # the layers' own generators were neither used nor advanced; the model is back in eval
    assert [m.rng.bit_generator.state for m in model.layers if hasattr(m, "rng")] == layer_states
    model.eval()
    mc_outputs(model, x, 2, rng=np.random.default_rng(0))
    assert not any(m.training for m in model.modules())


def test_mc_dropout_proba_is_the_softmax_of_mc_outputs():
    """One sampling loop serves both: the class probabilities are the softmax of the raw
    outputs drawn from the same generator state (memory blocks: tests/test_ensemble.py)."""
    import dropoutlib.ensemble as ensemble
    import dropoutlib.uncertainty as u
    from dropoutlib.numpy.nn import softmax

    assert u.mc_outputs is ensemble.mc_outputs
    rng = np.random.default_rng(0)
    model = Sequential(
        Linear(3, 6, rng=rng, dtype=np.float64), ReLU(), Dropout(0.3, rng=rng),
        Linear(6, 4, rng=rng, dtype=np.float64),
    )  # fmt: skip
    x = np.random.default_rng(1).standard_normal((5, 3))
    raw = mc_outputs(model, x, 6, rng=np.random.default_rng(5))
    proba = mc_dropout_proba(model, x, 6, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(proba, softmax(raw))


def test_mc_outputs_rejects_bad_input():
    model = _net(np.random.default_rng(0))
    with pytest.raises(ValueError, match="samples must be a positive integer"):
        mc_outputs(model, np.zeros((2, 3)), 0, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        mc_outputs(model, np.zeros(3), 2, rng=np.random.default_rng(0))
    with pytest.raises(TypeError):
        mc_outputs(model, np.zeros((2, 3)), 2, rng=0)


def test_mc_variance_of_a_linear_model_matches_its_closed_form():
    """y = w . (m * x) / (1-p): E y = w . x and Var y = p/(1-p) sum_i w_i^2 x_i^2.

    The standard errors of the sample mean and variance of T draws are sqrt(Var/T) and
    Var sqrt((kappa - 1)/T), kappa the kurtosis, computed here exactly from the 16 masks. At 7
    standard errors (normal approximation, T = 40000) each of the 4 checks fails falsely with
    probability about 2.6e-12.
    """
    p, w, t = 0.4, np.array([[1.0, -2.0, 0.5, 3.0]]), 40000
    lin = Linear(4, 1, rng=np.random.default_rng(0), dtype=np.float64)
    lin.weight.data[...] = w
    model = Sequential(Dropout(p, rng=np.random.default_rng(0)), lin)
    x = np.array([[1.0, 0.5, -2.0, 0.25], [0.3, 0.3, 0.3, 0.3]])
    out = mc_outputs(model, x, t, rng=np.random.default_rng(7))
    pred = regression_predictive(out, tau=4.0)
    var = p / (1 - p) * (w**2 * x**2).sum(axis=1)
    mean = (w * x).sum(axis=1)
    masks = ((np.arange(16)[:, None] >> np.arange(4)) & 1).astype(float)
    prob = np.prod(np.where(masks == 1, 1 - p, p), axis=1)
    values = (masks[:, None, :] * x[None] * w).sum(axis=2) / (1 - p) + lin.bias.data  # (16, N)
    np.testing.assert_allclose(prob @ values, mean + lin.bias.data, rtol=1e-12)
    np.testing.assert_allclose(prob @ (values - prob @ values) ** 2, var, rtol=1e-12)
    kappa = (prob @ (values - prob @ values) ** 4) / var**2
    assert np.all(np.abs(pred.mean - mean - lin.bias.data) <= 7 * np.sqrt(var / t))
    assert np.all(np.abs(pred.epistemic - var) <= 7 * var * np.sqrt((kappa - 1) / t))
    np.testing.assert_allclose(pred.variance - pred.epistemic, 0.25)


def test_mc_mean_converges_to_the_exact_mask_average():
    """Hoeffding: each of the 3 x 3 averaged probabilities misses its expectation by more than
    0.03 with probability <= 2 exp(-2 T 0.03^2) = 2 exp(-36); union bound < 1e-14."""
    rng = np.random.default_rng(3)
    model = Sequential(
        Linear(4, 5, rng=rng, dtype=np.float64), ReLU(), Dropout(0.5, rng=rng),
        Linear(5, 3, rng=rng, dtype=np.float64),
    )  # fmt: skip
    x = rng.standard_normal((3, 4))
    exact = exact_mask_ensemble(model, x).arithmetic
    probs = mc_dropout_proba(model, x, 20000, rng=np.random.default_rng(11))
    np.testing.assert_allclose(probs.mean(axis=0), exact, atol=0.03)


# --- regression ---------------------------------------------------------------------------------


def test_regression_predictive_brute_force():
    rng = np.random.default_rng(2)
    out = rng.standard_normal((9, 4, 1))
    pred = regression_predictive(out, tau=2.0)
    for i in range(4):
        ys = out[:, i, 0]
        m = sum(ys) / 9
        assert pred.mean[i] == pytest.approx(m)
        assert pred.epistemic[i] == pytest.approx(sum(v * v for v in ys) / 9 - m * m)
        assert pred.variance[i] == pytest.approx(0.5 + np.var(ys))
    assert regression_predictive(out).noise == 0.0
    with pytest.raises(ValueError, match="tau"):
        regression_predictive(out, tau=0.0)


def test_gal_tau_and_gaussian_nll():
    assert gal_tau(2.0, 0.25, 10, 0.01) == pytest.approx(0.75 * 4 / (2 * 10 * 0.01))
    y, mu, var = np.array([0.1, 2.0]), np.array([0.0, 1.0]), np.array([1.0, 4.0])
    expected = -stats.norm.logpdf(y, mu, np.sqrt(var)).mean()
    assert gaussian_nll(y, mu, var) == pytest.approx(expected, rel=1e-12)


def test_mixture_nll_brute_force():
    rng = np.random.default_rng(4)
    out, y, tau = rng.standard_normal((5, 3)), rng.standard_normal(3), 3.0
    dens = [
        np.mean([stats.norm.pdf(y[i], out[t, i], tau**-0.5) for t in range(5)]) for i in range(3)
    ]
    assert mixture_nll(y, out, tau) == pytest.approx(-np.mean(np.log(dens)), rel=1e-12)
    # choose_tau picks the grid point with the smallest mixture NLL
    grid = [0.1, 1.0, 3.0, 30.0]
    best = min(grid, key=lambda t: mixture_nll(y, out, t))
    assert choose_tau(y, out, grid) == best


def test_squared_error_gradient_and_fit_regression_learns_a_line():
    pred, target = np.array([[1.0], [3.0]]), np.array([0.0, 1.0])
    loss, grad = squared_error(pred, target)
    assert loss == pytest.approx((1 + 4) / 2)
    np.testing.assert_allclose(grad, [[1.0], [2.0]])
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (64, 1))
    model = Sequential(Linear(1, 1, rng=rng, dtype=np.float64))
    losses = fit_regression(model, x, 2 * x[:, 0] - 1, epochs=200, lr=0.05, rng=rng)
    assert losses[-1] < 1e-6
    assert model[0].weight.data[0, 0] == pytest.approx(2.0, abs=1e-3)


# --- classification scores ---------------------------------------------------------------------


def _probs_labels(seed=0, n=50, c=4):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(c), size=n), rng.integers(0, c, n)


def test_nll_and_brier_brute_force():
    probs, y = _probs_labels()
    assert nll(probs, y) == pytest.approx(-np.mean([np.log(probs[i, y[i]]) for i in range(50)]))
    onehot = np.eye(4)[y]
    assert brier(probs, y) == pytest.approx(((probs - onehot) ** 2).sum(axis=1).mean())
    # a test set that misses a class is still scored over all C classes
    assert nll(probs[y != 3], y[y != 3]) == pytest.approx(
        -np.mean(np.log(probs[y != 3][np.arange((y != 3).sum()), y[y != 3]]))
    )
    with pytest.raises(TypeError, match="integers"):
        nll(probs, y.astype(float))


def test_reliability_brute_force_and_ece():
    probs, y = _probs_labels(1, n=300, c=3)
    rel = reliability(probs, y, bins=10)
    conf, correct = probs.max(axis=1), probs.argmax(axis=1) == y
    edges = np.linspace(0, 1, 11)
    total = 0.0
    for b in range(10):
        inside = (conf > edges[b]) & (conf <= edges[b + 1])
        assert rel.counts[b] == inside.sum()
        if inside.any():
            assert rel.confidence[b] == pytest.approx(conf[inside].mean())
            assert rel.accuracy[b] == pytest.approx(correct[inside].mean())
            total += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
        else:
            assert np.isnan(rel.accuracy[b])
    assert ece(probs, y, bins=10) == pytest.approx(total)


def test_ece_closed_forms():
    # every row predicts class 0 with 0.8 and 80% are right: perfectly calibrated
    probs = np.tile([0.8, 0.2], (10, 1))
    y = np.array([0] * 8 + [1] * 2)
    assert ece(probs, y) == pytest.approx(0.0, abs=1e-12)
    # always certain, half wrong: ECE = |0.5 - 1| = 0.5
    assert ece(np.tile([1.0, 0.0], (4, 1)), np.array([0, 1, 0, 1])) == pytest.approx(0.5)
    # a confidence exactly on an edge falls in the bin it closes
    rel = reliability(np.array([[0.6, 0.4]]), np.array([0]), bins=5)
    assert rel.counts.tolist() == [0, 0, 1, 0, 0]


def test_ood_auroc_closed_forms():
    assert ood_auroc([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert ood_auroc([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert ood_auroc([1.0, 1.0], [1.0]) == 0.5  # ties count one half
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(30), rng.standard_normal(20) + 0.5
    pairs = np.mean([(bj > ai) + 0.5 * (bj == ai) for ai in a for bj in b])
    assert ood_auroc(a, b) == pytest.approx(pairs)


def test_scores_accept_float32_round_off_and_refuse_non_probabilities():
    probs, y = _probs_labels(2, n=20, c=3)
    nearly = (probs * (1 + 1e-6)).astype(np.float32)  # rows sum to 1 + 1e-6
    assert nll(nearly, y) == pytest.approx(nll(probs, y), rel=1e-5)
    assert brier(nearly, y) == pytest.approx(brier(probs, y), rel=1e-5)
    with pytest.raises(ValueError, match="sum to 1"):
        nll(probs * 0.5, y)


def test_shared_mask_dropout_keeps_all_or_nothing_with_the_right_rate():
    """One uniform per pass: each pass keeps every unit or none. Over 4000 passes the share of
    all-dropped passes is Binomial(4000, 0.3)/4000; the acceptance region of
    binomial_acceptance has false-failure probability 1e-9."""
    from dropoutlib.stats import binomial_acceptance
    from dropoutlib.uncertainty import SharedMaskDropout

    layer = SharedMaskDropout(0.3, rng=np.random.default_rng(9))
    x = np.ones((3, 5))
    outs = np.stack([layer(x) for _ in range(4000)])
    per_pass = outs.reshape(4000, -1)
    assert np.all((per_pass == 0).all(axis=1) | (per_pass == 1 / 0.7).all(axis=1))
    low, high = binomial_acceptance(4000, 0.3, 1e-9)
    assert low <= int((per_pass == 0).all(axis=1).sum()) <= high
    layer.eval()
    np.testing.assert_array_equal(layer(x), x)


def test_committed_uncertainty_sweep_reruns_one_point():
    """Re-run the classification point of seed 0 with the committed configuration.

    On the machine that wrote the file the rows agree exactly; another CPU's BLAS rounds float32
    sums differently, which over hundreds of SGD steps can flip a few of the 451 test digits,
    hence the tolerances (about 4 digits for the error and the AUROC)."""
    from dropoutlib.experiments import load_results, run_point

    results = load_results("uncertainty")
    assert results.config["p_chosen"] in results.config["p_grid"]
    stored = results.select(part="ood", seed=0)
    fresh = run_point(results, 0, {"part": "ood"})
    assert [(r["method"], r.get("T")) for r in fresh] == [(r["method"], r.get("T")) for r in stored]
    for new, old in zip(fresh, stored, strict=True):
        for key, tol in (("error", 0.01), ("auroc_entropy", 0.01), ("nll", 0.02), ("brier", 0.01)):
            assert abs(new[key] - old[key]) <= tol, (new["method"], key, new[key], old[key])


def test_regression_variance_keeps_its_precision_far_from_zero():
    """Review finding: E[y^2] - E[y]^2 lost the variance when |mean| >> spread."""
    offsets = np.array([-1.0, 1.0, -1.0, 1.0])[:, None]  # variance exactly 1 at any mean
    for mean in (0.0, 1e4, 1e7):
        pred = regression_predictive(mean + offsets)
        np.testing.assert_allclose(pred.epistemic, [1.0], rtol=1e-9)
