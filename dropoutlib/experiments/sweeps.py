r"""The sweeps behind Srivastava et al.'s (2014) figures, at laptop scale on scikit-learn's digits.

Each experiment has a ``settings(quick)`` grid, a ``point(seed, setting, config)`` function that
trains one network from its own generator and returns its rows, and a public function that runs
the grid over seeds and returns a :class:`~dropoutlib.experiments.common.Results` table.

=================  ============================================================  ===========
name               what                                                          paper
=================  ============================================================  ===========
``p_effect``       error against the keep probability, width fixed / keep*width  Figure 9
``data_size``      dropout vs none against the number of training examples       Figure 10
``autoencoder``    hidden activations (sparsity) and first-layer features        Figures 7, 8
``mc_averaging``   Monte Carlo model averaging over k masks vs weight scaling    Figure 11
``gaussian``       Bernoulli vs Gaussian dropout vs none                         Table 10
=================  ============================================================  ===========
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from dropoutlib.ensemble import mc_error_curve
from dropoutlib.experiments import training
from dropoutlib.experiments.common import (
    BASE_CONFIG,
    Results,
    digits,
    make_mlp,
    make_optimizer,
    point_rng,
    run_grid,
    train_classifier,
)
from dropoutlib.numpy.nn import Dropout, Linear, ReLU, Sequential
from dropoutlib.train import minibatches

__all__ = ["EXPERIMENTS", "Experiment", "run_experiment", "run_point"]

QUICK = {"steps": 150}


def _config(extra: dict[str, Any], quick: bool) -> dict[str, Any]:
    config = {**BASE_CONFIG, **extra}
    return {**config, **QUICK, "quick": True} if quick else {**config, "quick": False}


# --- Figure 9: the effect of the keep probability --------------------------------------------


def _p_effect_settings(quick: bool) -> list[dict[str, Any]]:
    keeps = [0.2, 0.5, 1.0] if quick else [round(0.1 * i, 1) for i in range(1, 11)]
    return [{"mode": mode, "keep": q} for mode in ("n_fixed", "pn_fixed") for q in keeps]


def _p_effect_point(seed: int, setting: dict[str, Any], config: dict[str, Any]):
    keep = setting["keep"]
    width = config["hidden"] if setting["mode"] == "n_fixed" else round(config["pn"] / keep)
    rng = point_rng(seed, setting)
    data = digits()
    model = make_mlp(data.n_features, [width] * config["layers"], 10, p_hidden=1.0 - keep, rng=rng)
    train_err, test_err = train_classifier(model, data, config, rng)
    row = {**setting, "seed": seed, "p_drop": round(1.0 - keep, 10), "hidden": width}
    return [{**row, "train_error": train_err, "test_error": test_err}], {}


# --- Figure 10: data set size -----------------------------------------------------------------


def _data_size_settings(quick: bool) -> list[dict[str, Any]]:
    sizes = [100, 898] if quick else [50, 100, 200, 400, 898]
    return [{"n_train": n, "dropout": d} for n in sizes for d in (False, True)]


def _data_size_point(seed: int, setting: dict[str, Any], config: dict[str, Any]):
    rng = point_rng(seed, setting)
    data = digits()
    if setting["n_train"] < len(data.y_train):
        data = data.subset(setting["n_train"], rng=np.random.default_rng([seed, 10]))
    p_in, p_hid = (config["p_input"], config["p_hidden"]) if setting["dropout"] else (0.0, 0.0)
    model = make_mlp(
        data.n_features, [config["hidden"]] * config["layers"], 10,
        p_input=p_in, p_hidden=p_hid, rng=rng,
    )  # fmt: skip
    train_err, test_err = train_classifier(model, data, config, rng)
    return [{**setting, "seed": seed, "train_error": train_err, "test_error": test_err}], {}


# --- Figure 11: Monte Carlo model averaging ---------------------------------------------------


def _mc_settings(quick: bool) -> list[dict[str, Any]]:
    return [{"p": 0.5}]


def _mc_point(seed: int, setting: dict[str, Any], config: dict[str, Any]):
    rng = point_rng(seed, setting)
    data = digits()
    model = make_mlp(
        data.n_features, [config["hidden"]] * config["layers"], 10, p_hidden=setting["p"], rng=rng
    )
    train_err, ws_err = train_classifier(model, data, config, rng)
    ks = config["ks"]
    curve = mc_error_curve(model, data.x_test, data.y_test, ks, rng=rng)
    rows = [
        {**setting, "seed": seed, "k": int(k), "test_error": float(e),
         "weight_scaling_test_error": ws_err, "weight_scaling_train_error": train_err}
        for k, e in zip(ks, curve, strict=True)
    ]  # fmt: skip
    return rows, {}


# --- Figures 7 and 8: autoencoder features and sparsity -------------------------------------


def _autoencoder_settings(quick: bool) -> list[dict[str, Any]]:
    return [{"dropout": False}, {"dropout": True}]


def _mse(pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean squared error over all entries and its gradient with respect to ``pred``."""
    diff = pred - target
    return float(np.mean(diff * diff, dtype=np.float64)), (2.0 / diff.size) * diff


def _autoencoder_point(seed: int, setting: dict[str, Any], config: dict[str, Any]):
    rng = point_rng(seed, setting)
    data = digits()
    d, h = data.n_features, config["ae_hidden"]
    layers = [Linear(d, h, rng=rng), ReLU()]
    if setting["dropout"]:
        layers.append(Dropout(config["ae_p"], rng=rng))
    layers.append(Linear(h, d, rng=rng))
    model = Sequential(*layers)
    opt = make_optimizer(model, config)
    x, done = data.x_train, 0
    while done < config["steps"]:
        for idx in minibatches(len(x), config["batch_size"], rng=rng):
            opt.zero_grad()
            _, grad = _mse(model(x[idx]), x[idx])
            model.backward(grad)
            opt.step()
            done += 1
            if done == config["steps"]:
                break
    model.eval()
    train_mse = _mse(model(data.x_train), data.x_train)[0]
    test_mse = _mse(model(data.x_test), data.x_test)[0]
    hidden = np.maximum(data.x_test @ model[0].weight.data.T + model[0].bias.data, 0)
    unit_means = hidden.mean(axis=0)
    row = {
        **setting, "seed": seed, "train_error": train_mse, "test_error": test_mse,
        "mean_activation": float(hidden.mean()),
        "fraction_active": float(np.mean(hidden > 0)),
        "fraction_above_1": float(np.mean(hidden > 1.0)),
    }  # fmt: skip
    bins = np.linspace(0.0, config["hist_max"], 41)
    extras = {
        "bins": bins.tolist(),
        "activation_counts": np.histogram(hidden, bins=bins)[0].tolist(),
        "activations_beyond": int(np.sum(hidden > bins[-1])),
        "unit_mean_counts": np.histogram(unit_means, bins=bins)[0].tolist(),
        "features": np.round(model[0].weight.data[: config["ae_features"]], 4).tolist(),
    }
    return [row], extras


# --- Table 10: Gaussian against Bernoulli dropout --------------------------------------------


def _gaussian_settings(quick: bool) -> list[dict[str, Any]]:
    return [{"noise": n} for n in ("none", "bernoulli", "gaussian")]


def _gaussian_point(seed: int, setting: dict[str, Any], config: dict[str, Any]):
    rng = point_rng(seed, setting)
    data = digits()
    noise = setting["noise"]
    p_in, p_hid = (0.0, 0.0) if noise == "none" else (config["p_input"], config["p_hidden"])
    model = make_mlp(
        data.n_features, [config["hidden"]] * config["layers"], 10,
        p_input=p_in, p_hidden=p_hid, noise="bernoulli" if noise == "none" else noise, rng=rng,
    )  # fmt: skip
    train_err, test_err = train_classifier(model, data, config, rng)
    return [{**setting, "seed": seed, "train_error": train_err, "test_error": test_err}], {}


# --- registry ---------------------------------------------------------------------------------


class Experiment:
    """One named sweep: its grid, its point function and its configuration."""

    def __init__(self, name, doc, settings, point, extra_config, seeds, runner=None) -> None:
        self.name, self.doc, self.settings, self.point = name, doc, settings, point
        self.extra_config, self.default_seeds = extra_config, seeds
        #: ``runner(seeds, quick, progress) -> Results`` for a sweep with stages (optional).
        self.runner = runner

    def config(self, quick: bool) -> dict[str, Any]:
        return _config(self.extra_config, quick)


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in [
        Experiment(
            "p_effect", "Figure 9: error against keep probability (n fixed; keep*n fixed)",
            _p_effect_settings, _p_effect_point, {"pn": 64}, [0, 1, 2],
        ),
        Experiment(
            "data_size", "Figure 10: dropout vs none against training-set size",
            _data_size_settings, _data_size_point, {"p_input": 0.2, "p_hidden": 0.5},
            [0, 1, 2, 3, 4],
        ),
        Experiment(
            "autoencoder", "Figures 7-8: autoencoder features and hidden-unit sparsity",
            _autoencoder_settings, _autoencoder_point,
            {"ae_hidden": 256, "ae_p": 0.5, "hist_max": 4.0, "ae_features": 24}, [0, 1, 2],
        ),
        Experiment(
            "mc_averaging", "Figure 11: Monte Carlo averaging over k masks vs weight scaling",
            _mc_settings, _mc_point, {"ks": [1, 2, 3, 5, 10, 20, 50, 100, 200]}, [0, 1, 2],
        ),
        Experiment(
            "gaussian", "Table 10: Bernoulli vs Gaussian dropout vs none",
            _gaussian_settings, _gaussian_point, {"p_input": 0.2, "p_hidden": 0.5},
            [0, 1, 2, 3, 4],
        ),
    ]
}  # fmt: skip


EXPERIMENTS["training"] = Experiment(
    "training", "Chapter 5: training under the protocol (validation grid, paired final runs)",
    training.settings, training.point, {}, [0, 1, 2, 3, 4], runner=training.run,
)  # fmt: skip


def run_experiment(
    name: str, *, seeds: Iterable[int] | None = None, quick: bool = False, progress: bool = False
) -> Results:
    """Run the sweep ``name`` over ``seeds`` (its default seeds if None) and return its table.

    ``quick`` shrinks the grid and the training (150 steps) so that a sweep takes seconds; its
    numbers only show that the code runs, not the effect.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)}")
    exp = EXPERIMENTS[name]
    if exp.runner is not None:
        chosen = exp.default_seeds[:1] if (seeds is None and quick) else seeds
        return exp.runner(list(exp.default_seeds if chosen is None else chosen), quick, progress)
    config = exp.config(quick)
    if quick and name == "mc_averaging":
        config["ks"] = [1, 5, 20]
    seeds = exp.default_seeds[:1] if (seeds is None and quick) else seeds
    seeds = list(exp.default_seeds if seeds is None else seeds)
    results = run_grid(name, exp.point, exp.settings(quick), seeds, config, progress=progress)
    results.meta["quick"] = quick
    return results


def run_point(results: Results, seed: int, setting: dict[str, Any]) -> list[dict[str, Any]]:
    """Re-run one point of a results file with the file's own configuration; return its rows."""
    from dropoutlib.experiments.common import single_thread

    with single_thread():
        rows, _ = EXPERIMENTS[results.name].point(seed, setting, results.config)
    return rows
