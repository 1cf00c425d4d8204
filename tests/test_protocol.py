"""The experiment protocol: splits, early stopping, pairing, grid search, reporting, diagnostics.

Every check compares with a closed form, scipy, or a brute-force recomputation on a tiny case.
All runs are deterministic (fixed seeds), so no test here can fail by chance.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

import dropoutlib.protocol as protocol
from dropoutlib.data import load_digits, standardize
from dropoutlib.numpy.nn import Linear, Module, ReLU, Sequential
from dropoutlib.numpy.optim import SGD
from dropoutlib.protocol import (
    Arm,
    Budget,
    binomial_se,
    compare,
    dead_unit_fraction,
    evaluate_test,
    format_table,
    grid_search,
    linear_weights,
    mean_se,
    paired_difference,
    paired_runs,
    project_rows,
    relative_distance,
    same_conclusion,
    seed_streams,
    train_run,
    validation_split,
)
from dropoutlib.train import evaluate, mlp


@pytest.fixture(scope="module")
def data():
    return load_digits(n_train=200)


@pytest.fixture
def split(data):
    return validation_split(data, fraction=0.25, rng=np.random.default_rng(0))


def plain_arm(name="plain", lr=0.05, hidden=32, p=0.0, max_norm=None, momentum=0.9):
    def build(init, masks):
        model = mlp(64, (hidden,), 10, rng=init, mask_rng=masks, p_hidden=p)
        return model, SGD(model.parameters(), lr, momentum=momentum)

    return Arm(name, build, max_norm=max_norm, params={"lr": lr, "hidden": hidden})


# --- splits -------------------------------------------------------------------------------------


def test_validation_split_is_stratified_disjoint_and_seeded(data):
    split = validation_split(data, fraction=0.25, rng=np.random.default_rng(0))
    y = data.y_train
    assert len(split.y_train) + len(split.y_val) == len(y)
    for c in range(10):
        n_c = int(np.sum(y == c))
        assert np.sum(split.y_val == c) == round(0.25 * n_c)
        assert np.sum(split.y_train == c) == n_c - round(0.25 * n_c)
    again = validation_split(data, fraction=0.25, rng=np.random.default_rng(0))
    assert np.array_equal(again.x_val, split.x_val) and np.array_equal(again.y_val, split.y_val)
    other = validation_split(data, fraction=0.25, rng=np.random.default_rng(1))
    assert not np.array_equal(other.x_val, split.x_val)


def test_validation_split_standardises_on_the_training_part_only(data):
    rng = np.random.default_rng(3)
    split = validation_split(data, fraction=0.2, rng=rng)
    # Recover which raw rows went where by brute force, then redo the standardisation.
    y = data.y_train
    val_idx = []
    rng = np.random.default_rng(3)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        val_idx.append(rng.permutation(idx)[: round(0.2 * len(idx))])
    val = np.sort(np.concatenate(val_idx))
    train = np.setdiff1d(np.arange(len(y)), val)
    x_tr, x_va, m, s = standardize(data.raw_train[train], data.raw_train[val])
    np.testing.assert_allclose(split.x_train, x_tr.astype(np.float32), rtol=0, atol=0)
    np.testing.assert_allclose(split.x_val, x_va.astype(np.float32), rtol=0, atol=0)
    np.testing.assert_allclose(split._x_test, ((data.raw_test - m) / s).astype(np.float32))
    assert abs(float(split.x_train.mean())) < 1e-5 and abs(float(split.x_train.std()) - 1) < 1e-5
    assert not split.x_train.flags.writeable


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, True])
def test_validation_split_refuses_bad_fractions(data, fraction):
    with pytest.raises(ValueError, match="fraction"):
        validation_split(data, fraction=fraction, rng=np.random.default_rng(0))


# --- seeds and pairing --------------------------------------------------------------------------


def test_seed_streams_are_reproducible_and_distinct():
    a, b = seed_streams(4), seed_streams(4)
    for name in ("init", "order", "masks"):
        assert getattr(a, name).integers(1 << 30) == getattr(b, name).integers(1 << 30)
    c = seed_streams(4)
    draws = [c.init.integers(1 << 62), c.order.integers(1 << 62), c.masks.integers(1 << 62)]
    assert len(set(draws)) == 3
    with pytest.raises(ValueError, match="seed"):
        seed_streams(-1)


def test_mlp_mask_rng_gives_the_plain_network_its_weights():
    plain = mlp(8, (5, 5), 3, rng=np.random.default_rng(0))
    drop = mlp(8, (5, 5), 3, rng=np.random.default_rng(0), p_input=0.2, p_hidden=0.5,
               mask_rng=np.random.default_rng(1))  # fmt: skip
    for w, v in zip(linear_weights(plain), linear_weights(drop), strict=True):
        assert np.array_equal(w, v)


def test_identical_arms_give_identical_runs(split):
    """Treatment = identity: two arms built the same way train bit for bit the same."""
    runs = paired_runs([plain_arm("a"), plain_arm("b")], split, [0, 1], Budget(6, 3))
    for ra, rb in zip(runs["a"], runs["b"], strict=True):
        assert ra.val_loss == rb.val_loss and ra.train_loss == rb.train_loss
        assert ra.test_acc == rb.test_acc
        for w, v in zip(linear_weights(ra.model), linear_weights(rb.model), strict=True):
            assert np.array_equal(w, v)
    d = compare(runs["a"], runs["b"], "test_loss")
    assert d.differences == (0.0, 0.0) and d.verdict == "no detectable difference at this size"
    assert runs["a"][0].val_loss != runs["a"][1].val_loss  # the seed does matter


class _DrawButKeep(Module):
    """Draws a 'mask' from its generator at every training forward pass, and changes nothing."""

    def __init__(self, rng):
        self.rng = rng

    def forward(self, x):
        if self.training:
            self.rng.random(x.shape)
        return x

    def backward(self, grad):
        return grad


def test_arms_share_initialisation_and_data_order_whatever_masks_they_draw(split):
    """An arm that consumes the mask stream trains exactly like the plain arm: its initial
    weights and its mini-batch order do not depend on how many random numbers masks use."""

    def build(init, masks):
        model = Sequential(
            Linear(64, 32, rng=init), ReLU(), _DrawButKeep(masks), Linear(32, 10, rng=init)
        )
        return model, SGD(model.parameters(), 0.05, momentum=0.9)

    def build_plain(init, masks):
        model = mlp(64, (32,), 10, rng=init, mask_rng=masks)
        return model, SGD(model.parameters(), 0.05, momentum=0.9)

    runs = paired_runs([Arm("drawing", build), Arm("plain", build_plain)], split, [2], Budget(5, 5))
    a, b = runs["drawing"][0], runs["plain"][0]
    assert a.val_loss == b.val_loss and a.train_loss == b.train_loss
    for w0, v0 in zip(a.initial_weights, b.initial_weights, strict=True):
        assert np.array_equal(w0, v0)


def test_dropout_arm_starts_from_the_plain_arms_weights(split):
    runs = paired_runs([plain_arm("plain"), plain_arm("drop", p=0.5)], split, [0], Budget(2, 2))
    for w0, v0 in zip(
        runs["plain"][0].initial_weights, runs["drop"][0].initial_weights, strict=True
    ):
        assert np.array_equal(w0, v0)
    assert runs["plain"][0].val_loss[0] == runs["drop"][0].val_loss[0]  # same untrained network


# --- early stopping -----------------------------------------------------------------------------


def test_early_stopping_restores_the_best_epoch(split):
    run = train_run(plain_arm(lr=0.05), split, 0, Budget(200, 4))
    assert run.stopped == "patience"
    best = int(np.argmin(run.val_loss))  # first minimum
    assert run.best_epoch == best and run.epochs_run == best + 4
    assert len(run.val_loss) == len(run.train_loss) == run.epochs_run + 1
    # The restored model is the one of the best epoch: re-evaluating reproduces its numbers.
    loss, acc = evaluate(run.model, split.x_val, split.y_val)
    assert loss == run.val_loss[best] and acc == run.val_acc[best]
    assert run.best_val_loss == min(run.val_loss)


def test_early_stopping_reports_when_the_budget_decided(split):
    run = train_run(plain_arm(lr=0.005), split, 0, Budget(3, 50))
    assert run.stopped == "budget" and run.epochs_run == 3
    assert run.best_epoch == int(np.argmin(run.val_loss))
    assert Budget(3, 50).doubled() == Budget(6, 100)
    with pytest.raises(ValueError, match="patience"):
        Budget(3, 0)


def test_divergence_stops_training(split):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # overflow is expected, reported, and silent
        run = train_run(plain_arm(lr=1e10, momentum=0.0), split, 0, Budget(50, 10))
    assert run.stopped == "diverged" and run.epochs_run == 1
    assert np.isfinite(run.best_val_loss) and run.best_epoch < run.epochs_run


# --- the test set is read once, at the end ------------------------------------------------------


def test_test_set_is_read_only_after_training(split, monkeypatch):
    calls = []
    real = protocol.evaluate

    def spy(model, x, y):
        calls.append("test" if x is split._x_test else "other")
        return real(model, x, y)

    monkeypatch.setattr(protocol, "evaluate", spy)
    arms = [plain_arm("a"), plain_arm("b", lr=0.02)]
    runs = paired_runs(arms, split, [0, 1], Budget(4, 2))
    n = len(arms) * 2
    assert calls.count("test") == n and calls[-n:] == ["test"] * n  # only at the very end
    assert split.test_evaluations == n
    assert all(r.n_test == split.n_test for g in runs.values() for r in g)
    with pytest.raises(RuntimeError, match="already evaluated"):
        evaluate_test(split, runs["a"][0])
    calls.clear()
    grid_search(lambda lr: plain_arm(lr=lr), {"lr": [0.01, 0.05]}, split, [0], Budget(3, 2))
    assert "test" not in calls and split.test_evaluations == n


# --- grid search --------------------------------------------------------------------------------


def test_grid_search_returns_the_whole_grid_and_the_validation_winner(split):
    grid = {"lr": [0.002, 0.05], "hidden": [8, 32]}
    search = grid_search(lambda lr, hidden: plain_arm(lr=lr, hidden=hidden), grid, split,
                         [0, 1], Budget(8, 3))  # fmt: skip
    assert [(r["lr"], r["hidden"]) for r in search.rows] == [
        (0.002, 8), (0.002, 32), (0.05, 8), (0.05, 32)
    ]  # fmt: skip
    i = int(np.argmin([r["val_loss"] for r in search.rows]))
    assert search.best == {"lr": search.rows[i]["lr"], "hidden": search.rows[i]["hidden"]}
    # Brute force: re-train the winner and recompute its mean best validation loss.
    runs = [train_run(plain_arm(**search.best), split, s, Budget(8, 3)) for s in (0, 1)]
    assert search.rows[i]["val_loss"] == pytest.approx(np.mean([r.best_val_loss for r in runs]))
    by_acc = grid_search(lambda lr, hidden: plain_arm(lr=lr, hidden=hidden), grid, split,
                         [0, 1], Budget(8, 3), score="val_acc")  # fmt: skip
    j = int(np.argmax([r["val_acc"] for r in by_acc.rows]))
    assert by_acc.best == {k: by_acc.rows[j][k] for k in grid}
    assert "lr" in format_table(search.rows).splitlines()[0]


# --- reporting ----------------------------------------------------------------------------------


def test_mean_se_matches_scipy():
    x = np.array([0.41, 0.44, 0.43, 0.47, 0.40])
    m = mean_se(x)
    assert m.mean == pytest.approx(x.mean()) and m.se == pytest.approx(stats.sem(x))
    assert str(m) == f"{x.mean():.4f} ± {stats.sem(x):.4f}"
    with pytest.raises(ValueError):
        mean_se([1.0])


@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_paired_interval_matches_scipy(level):
    treated = np.array([0.52, 0.50, 0.55, 0.49, 0.51])
    control = np.array([0.42, 0.47, 0.44, 0.47, 0.43])
    d = paired_difference(treated, control, level=level)
    diff = treated - control
    low, high = stats.t.interval(level, len(diff) - 1, loc=diff.mean(), scale=stats.sem(diff))
    assert d.low == pytest.approx(low) and d.high == pytest.approx(high)
    # The interval excludes zero exactly when the paired t-test rejects at 1 - level.
    pvalue = stats.ttest_rel(treated, control).pvalue
    assert d.excludes_zero == (pvalue < 1 - level)
    assert d.differences == pytest.approx(tuple(diff))


def test_verdicts_follow_the_rule():
    up = paired_difference([2.0, 2.1, 1.9], [1.0, 1.0, 1.0])
    down = paired_difference([0.0, 0.1, -0.1], [1.0, 1.0, 1.0])
    none = paired_difference([1.0, 1.2, 0.8], [1.1, 0.9, 1.0])
    assert (up.sign, up.verdict) == (1, "higher")
    assert (down.sign, down.verdict) == (-1, "lower")
    assert none.sign == 0 and none.verdict == "no detectable difference at this size"
    assert "95% interval" in str(none)
    assert same_conclusion(up, up) and not same_conclusion(up, none)
    assert not same_conclusion(up, down)
    with pytest.raises(ValueError):
        paired_difference([1.0, 2.0], [1.0])


def test_binomial_standard_error_is_the_binomial_law():
    for a, n in ((0.5, 1000), (0.93, 450), (0.0, 10)):
        assert binomial_se(a, n) == pytest.approx(np.sqrt(stats.binom.var(n, a)) / n)
    with pytest.raises(ValueError):
        binomial_se(1.2, 10)
    with pytest.raises(ValueError):
        binomial_se(0.5, 0)


def test_compare_pairs_by_seed_and_needs_test_numbers(split):
    runs = paired_runs([plain_arm("a"), plain_arm("b", lr=0.02)], split, [0, 1], Budget(3, 2))
    d = compare(runs["a"], runs["b"][::-1], "test_acc")
    expected = [runs["a"][i].test_acc - runs["b"][i].test_acc for i in (0, 1)]
    assert d.differences == pytest.approx(tuple(expected))
    untested = paired_runs([plain_arm("a")], split, [0, 1], Budget(2, 2), test=False)
    with pytest.raises(ValueError, match="missing"):
        compare(untested["a"], untested["a"], "test_acc")
    with pytest.raises(ValueError, match="same seeds"):
        compare(runs["a"][:1], runs["b"], "test_acc")


# --- diagnostics --------------------------------------------------------------------------------


def test_dead_unit_fraction_by_brute_force():
    rng = np.random.default_rng(0)
    model = mlp(6, (10, 4), 3, rng=rng, p_hidden=0.5)
    first = linear_weights(model)[0]
    model.layers[0].bias.data[:3] = -1e3  # units 0..2 of layer 1 can never fire
    x = rng.standard_normal((50, 6)).astype(np.float32)
    z1 = x @ first.T + model.layers[0].bias.data
    h1 = np.maximum(z1, 0)
    z2 = h1 @ model.layers[3].weight.data.T + model.layers[3].bias.data
    expected = [float(np.mean(z1.max(axis=0) <= 0)), float(np.mean(z2.max(axis=0) <= 0))]
    model.train()
    assert dead_unit_fraction(model, x) == expected and expected[0] >= 0.3
    assert model.training  # mode restored


def test_relative_distance_closed_form():
    model = mlp(5, (4,), 2, rng=np.random.default_rng(0))
    initial = [w.copy() for w in linear_weights(model)]
    linear_weights(model)[0][...] *= 3  # W - W0 = 2 W0
    assert relative_distance(model, initial) == pytest.approx([2.0, 0.0])
    with pytest.raises(ValueError):
        relative_distance(model, initial[:1])


def test_project_rows_counts_the_rows_it_changes():
    w = np.array([[3.0, 4.0], [0.3, 0.4], [6.0, 8.0]], dtype=np.float32)
    changed, ratio = project_rows(w, 1.0)
    assert changed == 2 and ratio == pytest.approx(10.0)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), [1.0, 0.5, 1.0], rtol=1e-6)


def test_max_norm_in_training_binds_or_not_and_is_counted(split):
    tight = train_run(plain_arm(max_norm=0.5), split, 0, Budget(3, 3))
    assert tight.projections > 0 and tight.largest_norm_ratio > 1
    for w in linear_weights(tight.model):
        assert np.linalg.norm(w, axis=1).max() <= 0.5 * (1 + 1e-6)
    loose = train_run(plain_arm(max_norm=1e3), split, 0, Budget(3, 3))
    assert loose.projections == 0 and loose.largest_norm_ratio < 1
    steps = -(-len(split.y_train) // 32) * loose.epochs_run
    assert loose.row_checks == steps * (32 + 10)
    free = train_run(plain_arm(max_norm=[None, 1e3]), split, 0, Budget(3, 3))
    assert free.row_checks == steps * 10
    # With a radius that never binds, training is identical to no constraint at all.
    none = train_run(plain_arm(), split, 0, Budget(3, 3))
    assert none.val_loss == loose.val_loss
    with pytest.raises(ValueError, match="radii"):
        train_run(plain_arm(max_norm=[1.0]), split, 0, Budget(1, 1))


def test_max_norm_must_be_given_to_the_arm(split):
    def build(init, masks):
        model = mlp(64, (8,), 10, rng=init)
        return model, SGD(model.parameters(), 0.01, max_norm=3.0)

    with pytest.raises(ValueError, match="Arm"):
        train_run(Arm("x", build), split, 0, Budget(1, 1))


def test_early_stopping_on_validation_accuracy(split):
    run = train_run(plain_arm(lr=0.05), split, 0, Budget(200, 4, monitor="val_acc"))
    assert run.stopped == "patience"
    assert run.best_epoch == int(np.argmax(run.val_acc)) and run.epochs_run == run.best_epoch + 4
    assert evaluate(run.model, split.x_val, split.y_val)[1] == max(run.val_acc)
    assert Budget(3, 4, "val_acc").doubled() == Budget(6, 8, "val_acc")
    with pytest.raises(ValueError, match="monitor"):
        Budget(3, 4, "test_acc")
