"""Chapter 5's sweep: the paper's max-norm converted exactly, and the committed results file."""

from __future__ import annotations

import numpy as np
import pytest

from dropoutlib.data import load_digits
from dropoutlib.experiments import load_results, run_point
from dropoutlib.experiments.training import final_settings
from dropoutlib.numpy.equivalence import inverted_max_norm_radii, to_inverted
from dropoutlib.numpy.optim import SGD
from dropoutlib.protocol import linear_weights, project_rows
from dropoutlib.train import minibatches, mlp, train_step

#: Same tolerance as tests/test_experiments.py: another CPU's BLAS may flip a few predictions.
ERROR_TOLERANCE = 0.01


def test_inverted_radii_are_q_times_c_for_layers_reading_dropout():
    model = mlp(6, (4, 4), 3, rng=np.random.default_rng(0), p_input=0.2, p_hidden=0.5,
                scaling="standard")  # fmt: skip
    assert inverted_max_norm_radii(model, 3.0) == pytest.approx([2.4, 1.5, 1.5])
    plain = mlp(6, (4,), 3, rng=np.random.default_rng(0))
    assert inverted_max_norm_radii(plain, 2.0) == [2.0, 2.0]
    with pytest.raises(ValueError, match="radius"):
        inverted_max_norm_radii(model, 0.0)


def test_converted_max_norm_keeps_the_twins_identical_while_it_binds():
    """Standard dropout with radius c and its inverted twin with radii q c follow the same
    trajectory (W' = q W at every step), in float64, with the constraint binding often."""
    data = load_digits(n_train=120, dtype=np.float64)
    std = mlp(64, (32, 32), 10, rng=np.random.default_rng(1), p_input=0.2, p_hidden=0.5,
              scaling="standard", dtype=np.float64)  # fmt: skip
    c = 0.8
    radii = inverted_max_norm_radii(std, c)
    inv = to_inverted(std)
    opt_s = SGD(std.parameters(), 0.2, momentum=0.9)
    opt_i = SGD(inv.parameters(), 0.2, momentum=0.9)
    changed = 0
    for model, opt, rs in ((std, opt_s, [c] * 3), (inv, opt_i, radii)):
        order = np.random.default_rng(2)
        for _ in range(2):
            for idx in minibatches(len(data.y_train), 16, rng=order):
                train_step(model, data.x_train[idx], data.y_train[idx], opt)
                for w, r in zip(linear_weights(model), rs, strict=True):
                    changed += project_rows(w, r)[0]
    assert changed > 100  # the constraint did bind
    for w_s, w_i, q in zip(linear_weights(std), linear_weights(inv), (0.8, 0.5, 0.5), strict=True):
        np.testing.assert_allclose(w_i, q * w_s, rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def results():
    return load_results("training")


def test_committed_results_record_both_stages(results):
    assert results.meta["quick"] is False
    assert results.meta["command"] == (
        "python -m dropoutlib.experiments training --out dropoutlib/results/training.json"
    )
    grid = results.extras["grid"]
    assert grid and all("test_acc" not in row and "test_loss" not in row for row in grid)
    # The final arms are exactly those the validation grid chooses (recomputed here).
    assert final_settings(grid, results.config) == results.settings
    for row in results.rows:
        assert row["n_test"] in (450, 1000) and 0 <= row["test_acc"] <= 1
    seeds = sorted({r["seed"] for r in results.rows})
    assert seeds == results.seeds and len(seeds) >= 5


def test_committed_file_matches_the_code(results):
    """Re-run one final point (digits, the plain network, seed 0, base budget) and compare."""
    (stored,) = [
        r for r in results.rows
        if r["seed"] == 0 and r["data"] == "digits" and r["arm"] == "plain 256"
        and r["budget"] == "base"
    ]  # fmt: skip
    keys = ("stage", "budget", "data", "arm", "lr", "weight_decay", "max_norm", "control")
    (fresh,) = run_point(results, 0, {k: stored[k] for k in keys})
    for key in ("test_acc", "best_val_acc"):
        assert abs(fresh[key] - stored[key]) <= ERROR_TOLERANCE, key
    assert fresh["best_epoch"] == pytest.approx(stored["best_epoch"], abs=5)


def test_grid_seeds_are_disjoint_from_the_evaluation_seeds(results):
    """No run that enters a comparison was selected for its validation loss (review-05, 9)."""
    assert not set(results.config["grid_seeds"]) & set(results.seeds)


def test_workers_do_not_change_the_points(monkeypatch):
    """Two worker processes give the same rows and curves, in the same order, as one."""
    from dropoutlib.experiments import training

    config = training.config_for(quick=True)
    settings = training.settings(quick=True)
    tasks = [(0, settings[0]), (1, settings[0]), (0, settings[-1])]
    serial = training._run_all(tasks, config, 1, None)
    parallel = training._run_all(tasks, config, 2, None)
    assert parallel == serial
    assert [rows[0]["seed"] for rows, _ in parallel] == [0, 1, 0]
    monkeypatch.setenv("DROPOUTLIB_WORKERS", "2")
    assert training._workers() == 2


@pytest.mark.parametrize("text", ["0", "-1", "two"])
def test_bad_worker_count_is_a_clear_error(monkeypatch, text):
    from dropoutlib.experiments import training

    monkeypatch.setenv("DROPOUTLIB_WORKERS", text)
    with pytest.raises(ValueError, match="DROPOUTLIB_WORKERS must be a positive integer"):
        training._workers()
