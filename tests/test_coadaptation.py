"""Tests of dropoutlib.coadaptation and chapter 1's sweep (dropoutlib.experiments.coadaptation)."""

from __future__ import annotations

import numpy as np
import pytest

from dropoutlib.coadaptation import (
    ablation_rises,
    ablation_summary,
    early_stop,
    evaluate_test_model,
    last_hidden,
    matched_epoch,
    train_trajectory,
)
from dropoutlib.data import load_digits
from dropoutlib.experiments import coadaptation as sweep
from dropoutlib.experiments.common import load_results
from dropoutlib.numpy.optim import SGD
from dropoutlib.protocol import Arm, Budget, train_run, validation_split
from dropoutlib.train import evaluate, mlp, unit_ablation


@pytest.fixture(scope="module")
def split():
    data = load_digits(n_train=300)
    return validation_split(data, rng=np.random.default_rng(7))


def _arm(p: float) -> Arm:
    def build(init, masks):
        model = mlp(64, (32,), 10, rng=init, p_hidden=p, mask_rng=masks)
        return model, SGD(model.parameters(), 0.05, momentum=0.9)

    return Arm(f"p={p}", build, batch_size=32)


# --- the stopping rule ----------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.0, 0.5])
@pytest.mark.parametrize("budget", [Budget(6, 2), Budget(30, 3)])
def test_trajectory_reproduces_train_run(split, p, budget):
    """Same streams, same batches: the early-stopped epoch and its weights equal train_run's."""
    run = train_run(_arm(p), split, 3, budget)
    traj = train_trajectory(_arm(p), split, 3, budget=budget)
    best, epochs_run, stopped = traj.stop(budget)
    assert (best, epochs_run, stopped) == (run.best_epoch, run.epochs_run, run.stopped)
    assert traj.val_loss[: epochs_run + 1] == run.val_loss
    assert traj.train_loss[: epochs_run + 1] == run.train_loss
    model = traj.at(best)
    for a, b in zip(model.parameters(), run.model.parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data)


def test_trajectory_min_epochs_and_longer_budget(split):
    budget = Budget(4, 1)
    traj = train_trajectory(_arm(0.0), split, 0, budget=budget.doubled(), min_epochs=9)
    assert traj.epochs >= 9
    # the base budget's stop lies inside the doubled budget's trajectory
    assert traj.stop(budget)[1] <= traj.stop(budget.doubled())[1] <= traj.epochs


def test_trajectory_rejects_max_norm(split):
    arm = Arm("mn", _arm(0.0).build, max_norm=3.0)
    with pytest.raises(ValueError, match="max-norm"):
        train_trajectory(arm, split, 0, budget=Budget(2, 1))


def test_early_stop_rule_by_hand():
    assert early_stop([3, 2, 1, 1.5, 1.2, 0.9, 1], Budget(100, 2)) == (2, 4, "patience")
    assert early_stop([3, 2, 2.5, 1], Budget(3, 5)) == (3, 3, "budget")
    assert early_stop([3, 2, np.nan, 1], Budget(10, 5)) == (1, 2, "diverged")
    # ties do not count as improvements (the first minimum is kept)
    assert early_stop([3, 1, 1, 1], Budget(10, 2)) == (1, 3, "patience")
    with pytest.raises(ValueError, match="ends before"):
        early_stop([3, 2, 1], Budget(10, 2))


def test_matched_epoch():
    v = [3.0, 2.0, 1.5, 1.2, 1.0, 0.9]
    assert matched_epoch(v, 1.45) == 2  # first at or below 1.45 is 1.2 (epoch 3); 1.5 is closer
    assert matched_epoch(v, 1.25) == 3  # 1.2 is closer than 1.5
    assert matched_epoch(v, 1.0) == 4
    assert matched_epoch(v, 0.5) is None
    assert matched_epoch(v, 1.0, until=3) is None
    assert matched_epoch(v, 5.0) == 0


# --- ablation ---------------------------------------------------------------------------------


def test_ablation_rises_and_summary(split):
    traj = train_trajectory(_arm(0.0), split, 1, budget=Budget(3, 3))
    model = traj.at(3)
    assert last_hidden(model) == 0
    rises = ablation_rises(model, split.x_val, split.y_val)
    base = evaluate(model, split.x_val, split.y_val)[0]
    np.testing.assert_array_equal(rises, unit_ablation(model, 0, split.x_val, split.y_val) - base)
    s = ablation_summary(np.array([-2.0, -1.0, 0.0, 1.0, 4.0]), quantile=0.5)
    assert s == {
        "mean": 0.4,
        "mean_abs": 1.6,
        "q_abs": 1.0,
        "max": 4.0,
        "min": -2.0,
        "frac_negative": 0.4,
        "neg_sum": -3.0,
    }
    with pytest.raises(ValueError, match="quantile"):
        ablation_summary(rises, quantile=1.0)
    with pytest.raises(ValueError, match="non-empty"):
        ablation_summary(np.array([]))


def test_last_hidden_needs_a_hidden_layer():
    model = mlp(4, (), 2, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="hidden"):
        last_hidden(model)


def test_evaluate_test_model_counts(split):
    traj = train_trajectory(_arm(0.0), split, 1, budget=Budget(1, 1))
    before = split.test_evaluations
    loss, acc = evaluate_test_model(split, traj.at(1))
    assert split.test_evaluations == before + 1
    assert np.isfinite(loss) and 0.0 <= acc <= 1.0


# --- the committed sweep ----------------------------------------------------------------------


def test_committed_sweep_reruns():
    """Re-run the cheapest point of the committed file: the plain network of seed 0.

    Same code, same seeds: on the machine that wrote the file the numbers are identical; the
    tolerance (1e-3 relative) only allows a different BLAS to round float32 products
    differently over the 25 epochs.
    """
    results = load_results("coadaptation")
    config = results.config
    assert results.meta["quick"] is False and len(results.seeds) >= 3
    row = results.select(seed=results.seeds[0], budget="base", network="plain, over-trained")[0]
    split = sweep.make_split(config)
    n = config["over_epochs"]
    traj = train_trajectory(
        sweep.make_arm("plain", config), split, results.seeds[0], budget=Budget(n, n)
    )
    model = traj.at(n)
    assert traj.val_loss[n] == pytest.approx(row["val_loss"], rel=1e-3)
    summary = ablation_summary(ablation_rises(model, split.x_val, split.y_val))
    for key in ("mean_abs", "q_abs", "frac_negative"):
        assert summary[key] == pytest.approx(row[key], rel=1e-3, abs=1e-6), key
    # every seed has all five networks under both budgets
    for seed in results.seeds:
        for budget in ("base", "doubled"):
            names = {r["network"] for r in results.select(seed=seed, budget=budget)}
            assert names == set(sweep.NETWORKS)
