r"""The sweeps behind Srivastava et al.'s (2014) figures, at laptop scale on scikit-learn's digits.

Each experiment has a ``settings(quick)`` grid, a ``point(seed, setting, config)`` function that
trains one network from its own generator and returns its rows, and a public function that runs
the grid over seeds and returns a :class:`~dropoutlib.experiments.common.Results` table.

=================  ============================================================  ===========
name               what                                                          paper
=================  ============================================================  ===========
``p_effect``       error against the keep probability, width fixed / keep*width  Figure 9
``data_size``      dropout vs none against the number of training examples       Figure 10
data_size_doubled  the same with twice the training steps (budget control)       Figure 10
``autoencoder``    hidden activations (sparsity) and first-layer features        Figures 7, 8
``mc_averaging``   Monte Carlo model averaging over k masks vs weight scaling    Figure 11
``gaussian``       Bernoulli vs Gaussian dropout vs none                         Table 10
=================  ============================================================  ===========
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from dropoutlib.ensemble import mc_error_curve
from dropoutlib.experiments import training
from dropoutlib.experiments.common import (
    BASE_CONFIG,
    PROTOCOL_CONFIG,
    Progress,
    Results,
    digits_split,
    make_optimizer,
    run_grid,
    single_thread,
    train_checkpointed,
    versions,
)
from dropoutlib.numpy.gaussian import GaussianDropout
from dropoutlib.numpy.nn import Dropout, Linear, ReLU, Sequential
from dropoutlib.protocol import Split, Streams, seed_streams
from dropoutlib.train import evaluate, minibatches, mlp

__all__ = ["EXPERIMENTS", "Experiment", "run_experiment", "run_point"]

QUICK = {"steps": 150}


def _config(extra: dict[str, Any], quick: bool) -> dict[str, Any]:
    config = {**BASE_CONFIG, **extra}
    return {**config, **QUICK, "quick": True} if quick else {**config, "quick": False}


# --- the protocol's building blocks -----------------------------------------------------------


def _protocol_config(extra: dict[str, Any], quick: bool) -> dict[str, Any]:
    config = {**PROTOCOL_CONFIG, **extra}
    return {**config, **QUICK, "quick": True} if quick else {**config, "quick": False}


def _read_test(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """The held-out test set, for a network whose settings are already chosen.

    Every read is counted in ``split.test_evaluations`` (as
    :func:`~dropoutlib.protocol.evaluate_test` does), so a test can check that each finished
    network is read once; nothing chosen during training may call this.
    """
    split.test_evaluations += 1
    return split._x_test, split._y_test


def _test_error(model: Any, split: Split) -> float:
    """The one read of the held-out test set, for a network whose settings are already chosen."""
    return float(1.0 - evaluate(model, *_read_test(split))[1])


# --- Figure 9: the effect of the keep probability --------------------------------------------


def _p_effect_settings(quick: bool) -> list[dict[str, Any]]:
    config = EXPERIMENTS["p_effect"].config(quick)
    return [
        {"mode": mode, "keep": q, "lr": lr}
        for mode in ("n_fixed", "pn_fixed")
        for q in config["keeps"]
        for lr in config["lrs"]
    ]


def _p_effect_width(setting: dict[str, Any], config: dict[str, Any]) -> int:
    keep = setting["keep"]
    return config["hidden"] if setting["mode"] == "n_fixed" else round(config["pn"] / keep)


def _p_effect_train(seed: int, setting: dict[str, Any], config: dict[str, Any]):
    keep, width = setting["keep"], _p_effect_width(setting, config)
    split = digits_split(config)
    streams = seed_streams(seed)
    model = mlp(
        split.n_features, [width] * config["layers"], 10, p_hidden=round(1.0 - keep, 10),
        rng=streams.init, mask_rng=streams.masks,
    )  # fmt: skip
    fit = train_checkpointed(model, split, config, lr=setting["lr"], order=streams.order)
    row = {
        "mode": setting["mode"], "keep": keep, "lr": setting["lr"], "seed": seed,
        "p_drop": round(1.0 - keep, 10), "hidden": width, **fit.summary(),
    }  # fmt: skip
    return row, fit.model, split


def _p_effect_point(seed: int, setting: dict[str, Any], config: dict[str, Any]):
    """One network; with ``setting["chosen"]`` (the learning rate picked on validation) its
    test error is measured too, and only then."""
    row, model, split = _p_effect_train(seed, setting, config)
    row["chosen"] = bool(setting.get("chosen", False))
    if row["chosen"]:
        row["test_error"] = _test_error(model, split)
    return [row], {}


def _choose_lr(rows: list[dict[str, Any]]) -> float:
    """The learning rate with the lowest mean validation error over seeds (mean validation loss
    breaks ties)."""
    lrs = sorted({r["lr"] for r in rows})

    def score(lr: float) -> tuple[float, float]:
        sel = [r for r in rows if r["lr"] == lr]
        return float(np.mean([r["val_error"] for r in sel])), float(
            np.mean([r["val_loss"] for r in sel])
        )

    return min(lrs, key=score)


def _p_effect_run(seeds: list[int], quick: bool, progress: bool) -> Results:
    """Per (mode, keep): train every learning rate from every seed (validation only), choose the
    learning rate on mean validation error, then read the test error of the chosen networks."""
    config = EXPERIMENTS["p_effect"].config(quick)
    settings = _p_effect_settings(quick)
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for s in settings:
        groups.setdefault((s["mode"], s["keep"]), []).append(s)
    bar = Progress(len(settings) * len(seeds), "p_effect") if progress else None
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    with single_thread():
        for group in groups.values():
            trained = []
            for s in group:
                for seed in seeds:
                    trained.append(_p_effect_train(seed, s, config))
                    if bar:
                        bar.update()
            lr = _choose_lr([t[0] for t in trained])
            for row, model, split in trained:
                row["chosen"] = row["lr"] == lr
                if row["chosen"]:
                    row["test_error"] = _test_error(model, split)
                rows.append(row)
    meta = {"seconds": round(time.perf_counter() - start, 1), "versions": versions()}
    meta["quick"] = quick
    return Results("p_effect", rows, config, list(seeds), settings, meta, {})


_P_EFFECT = {
    "hidden": 128,
    "pn": 32,
    "keeps": [0.1, 0.2, 0.4, 0.6, 0.8, 1.0],
    "lrs": [0.001, 0.003, 0.01],
    "selection": "per (mode, keep): the lr of lowest mean validation error over the seeds",
}


# --- Figure 10: data set size -----------------------------------------------------------------


def _data_size_settings(quick: bool) -> list[dict[str, Any]]:
    sizes = [100, 719] if quick else [50, 100, 200, 400, 719]
    return [{"n_train": n, "dropout": d} for n in sizes for d in (False, True)]


def _data_size_doubled_settings(quick: bool) -> list[dict[str, Any]]:
    """The protocol's budget control of Figure 10: the same points with twice the steps. A
    point's streams do not depend on the budget, so its first 2000 steps are the base run's."""
    sizes = [100] if quick else [50, 100, 719]
    return [{"n_train": n, "dropout": d} for n in sizes for d in (False, True)]


def _data_size_point(seed: int, setting: dict[str, Any], config: dict[str, Any]):
    """Dropout or none on a random subset of the training part (the same subset, initial
    weights and batch order for both arms of a seed); checkpoint chosen on validation."""
    split = digits_split(config)
    n = setting["n_train"]
    idx = np.sort(np.random.default_rng([seed, 10]).permutation(len(split.y_train))[:n])
    streams = seed_streams(seed)
    p_in, p_hid = (config["p_input"], config["p_hidden"]) if setting["dropout"] else (0.0, 0.0)
    model = mlp(
        split.n_features, [config["hidden"]] * config["layers"], 10,
        p_input=p_in, p_hidden=p_hid, rng=streams.init, mask_rng=streams.masks,
    )  # fmt: skip
    fit = train_checkpointed(
        model, split, config, lr=config["lr"], order=streams.order,
        x_train=split.x_train[idx], y_train=split.y_train[idx],
    )  # fmt: skip
    row = {**setting, "seed": seed, **fit.summary(), "test_error": _test_error(fit.model, split)}
    return [row], {}


# --- Figure 11: Monte Carlo model averaging ---------------------------------------------------


def _mc_settings(quick: bool) -> list[dict[str, Any]]:
    return [{"p": 0.5}]


def _mc_point(seed: int, setting: dict[str, Any], config: dict[str, Any]):
    split = digits_split(config)
    streams = seed_streams(seed)
    model = mlp(
        split.n_features, [config["hidden"]] * config["layers"], 10, p_hidden=setting["p"],
        rng=streams.init, mask_rng=streams.masks,
    )  # fmt: skip
    fit = train_checkpointed(model, split, config, lr=config["lr"], order=streams.order)
    x_test, y_test = _read_test(split)  # one read: weight scaling and every k use it
    ws_err = float(1.0 - evaluate(fit.model, x_test, y_test)[1])
    ks = config["ks"]
    curve = mc_error_curve(fit.model, x_test, y_test, ks, rng=np.random.default_rng([seed, 3]))
    rows = [
        {**setting, "seed": seed, "k": int(k), "test_error": float(e),
         "weight_scaling_test_error": ws_err, "weight_scaling_train_error": fit.train_error,
         "best_step": fit.best_step}
        for k, e in zip(ks, curve, strict=True)
    ]  # fmt: skip
    return rows, {}


# --- Figures 7 and 8: autoencoder features and sparsity -------------------------------------


def _autoencoder_settings(quick: bool) -> list[dict[str, Any]]:
    return [{"arms": "paired"}]


def _mse(pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean squared error over all entries and its gradient with respect to ``pred``."""
    diff = pred - target
    return float(np.mean(diff * diff, dtype=np.float64)), (2.0 / diff.size) * diff


def _eval_mse(model: Sequential, x: np.ndarray) -> float:
    was = model.training
    model.eval()
    try:
        return _mse(model(x), x)[0]
    finally:
        model.train(was)


def _hidden(model: Sequential, x: np.ndarray) -> np.ndarray:
    return np.maximum(x @ model[0].weight.data.T + model[0].bias.data, 0)


def _train_autoencoder(
    seed: int, dropout: bool, config: dict[str, Any], target: float | None = None
) -> dict[str, Any]:
    r"""Train one autoencoder from the seed's streams; keep the checkpoint of lowest validation
    MSE (checked every ``eval_every`` steps), and, if ``target`` is given, also the first
    checkpoint whose validation MSE is :math:`\le` ``target`` (the matched checkpoint)."""
    split = digits_split(config)
    streams = seed_streams(seed)
    d, h = split.n_features, config["ae_hidden"]
    layers = [Linear(d, h, rng=streams.init), ReLU()]
    if dropout:
        layers.append(Dropout(config["ae_p"], rng=streams.masks))
    layers.append(Linear(h, d, rng=streams.init))
    model = Sequential(*layers)
    w0 = model[0].weight.data.copy()
    opt = make_optimizer(model, config)
    x, done, every = split.x_train, 0, config["eval_every"]
    snap = lambda: [p.data.copy() for p in model.parameters()]  # noqa: E731
    best = (_eval_mse(model, split.x_val), 0, snap())
    matched = None
    curve = [best[0]]
    while done < config["ae_steps"]:
        for idx in minibatches(len(x), config["batch_size"], rng=streams.order):
            opt.zero_grad()
            _, grad = _mse(model(x[idx]), x[idx])
            model.backward(grad)
            opt.step()
            done += 1
            if done % every == 0:
                v = _eval_mse(model, split.x_val)
                curve.append(v)
                if v < best[0]:
                    best = (v, done, snap())
                if target is not None and matched is None and v <= target:
                    matched = (v, done, snap())
            if done == config["ae_steps"]:
                break
    out = {}
    for name, chk in (("best", best), ("matched", matched)):
        if chk is None:
            continue
        for p, w in zip(model.parameters(), chk[2], strict=True):
            p.data[...] = w
        hidden = _hidden(model, split.x_val)
        out[name] = {
            "val_mse": chk[0], "step": chk[1],
            "train_mse": _eval_mse(model, split.x_train),
            "distance": float(np.linalg.norm(model[0].weight.data - w0) / np.linalg.norm(w0)),
            "hidden": hidden, "w": model[0].weight.data.copy(), "w0": w0,
        }  # fmt: skip
    out["curve"] = curve
    return out


def _autoencoder_point(seed: int, setting: dict[str, Any], config: dict[str, Any]):
    """Both arms of one seed (same initial weights and batch order): the dropout autoencoder
    and the plain one at its best checkpoint, and the plain one at the first checkpoint whose
    validation MSE reaches the dropout autoencoder's best (matched reconstruction). Activations
    are measured on the validation part; the test set is not used."""
    drop = _train_autoencoder(seed, True, config)
    plain = _train_autoencoder(seed, False, config, target=drop["best"]["val_mse"])
    arms = [("dropout", "best", drop), ("plain", "best", plain), ("plain", "matched", plain)]
    rows, extras = [], {}
    top = max(float(a[2][a[1]]["hidden"].max()) for a in arms if a[1] in a[2])
    bins = np.linspace(0.0, max(top, config["hist_max"]) * 1.0001, 49)
    for arm, which, res in arms:
        if which not in res:
            continue
        r = res[which]
        hidden = r["hidden"]
        rows.append({
            **setting, "seed": seed, "arm": arm, "checkpoint": which, "step": r["step"],
            "val_mse": r["val_mse"], "train_mse": r["train_mse"], "distance": r["distance"],
            "mean_activation": float(hidden.mean()),
            "fraction_active": float(np.mean(hidden > 0)),
            "fraction_above_1": float(np.mean(hidden > 1.0)),
            "max_activation": float(hidden.max()),
        })  # fmt: skip
        k = config["ae_features"]
        extras[f"{arm}/{which}"] = {
            "bins": bins.tolist(),
            "activation_counts": np.histogram(hidden, bins=bins)[0].tolist(),
            "unit_mean_counts": np.histogram(hidden.mean(axis=0), bins=bins)[0].tolist(),
            "features": np.round(r["w"][:k], 4).tolist(),
            "features_moved": np.round((r["w"] - r["w0"])[:k], 4).tolist(),
        }
    extras["curves"] = {"dropout": drop["curve"], "plain": plain["curve"]}
    return rows, extras


# --- Table 10: Gaussian against Bernoulli dropout --------------------------------------------


def _gaussian_settings(quick: bool) -> list[dict[str, Any]]:
    return [{"noise": n} for n in ("none", "bernoulli", "gaussian")]


def _gaussian_model(n_in: int, config: dict[str, Any], noise: str, streams: Streams) -> Sequential:
    """The network of one arm of one seed: ``n_in -> hidden x layers -> 10`` (ReLU), with the
    noise layer ``noise`` (drop ``p_input`` on the input, ``p_hidden`` after each hidden ReLU;
    none for ``"none"``). The weights come from the seed's ``init`` stream, in the same order
    in every arm, so the three arms of a seed start from identical weights; the noise layers
    draw from its ``masks`` stream."""
    drop = {"none": None, "bernoulli": Dropout, "gaussian": GaussianDropout}[noise]
    layers: list[Any] = []
    if drop is not None:
        layers.append(drop(config["p_input"], rng=streams.masks))
    width = n_in
    for _ in range(config["layers"]):
        layers += [Linear(width, config["hidden"], rng=streams.init), ReLU()]
        if drop is not None:
            layers.append(drop(config["p_hidden"], rng=streams.masks))
        width = config["hidden"]
    layers.append(Linear(width, 10, rng=streams.init))
    return Sequential(*layers)


def _gaussian_point(seed: int, setting: dict[str, Any], config: dict[str, Any]):
    """One arm of one seed under the protocol: the seed's initial weights, batch order and
    noise stream (shared by the three arms), the checkpoint of lowest validation error kept,
    then the one read of the test set."""
    split = digits_split(config)
    streams = seed_streams(seed)
    model = _gaussian_model(split.n_features, config, setting["noise"], streams)
    fit = train_checkpointed(model, split, config, lr=config["lr"], order=streams.order)
    row = {**setting, "seed": seed, **fit.summary(), "test_error": _test_error(fit.model, split)}
    return [row], {}


# --- registry ---------------------------------------------------------------------------------


class Experiment:
    """One named sweep: its grid, its point function and its configuration.

    ``protocol`` sweeps start from :data:`~dropoutlib.experiments.common.PROTOCOL_CONFIG`
    (validation split, checkpoint chosen on validation), the others from ``BASE_CONFIG``;
    ``quick_config`` overrides the configuration of the ``--quick`` form.
    """

    def __init__(
        self, name, doc, settings, point, extra_config, seeds, runner=None, *,
        protocol=False, quick_config=None,
    ) -> None:  # fmt: skip
        self.name, self.doc, self.settings, self.point = name, doc, settings, point
        self.extra_config, self.default_seeds = extra_config, seeds
        #: ``runner(seeds, quick, progress) -> Results`` for a sweep with stages (optional).
        self.runner = runner
        self.protocol, self.quick_config = protocol, dict(quick_config or {})

    def config(self, quick: bool) -> dict[str, Any]:
        extra = {**self.extra_config, **(self.quick_config if quick else {})}
        return _protocol_config(extra, quick) if self.protocol else _config(extra, quick)


_AE = {
    "lr": 0.05, "ae_hidden": 256, "ae_p": 0.5, "ae_steps": 12000, "eval_every": 100,
    "hist_max": 4.0, "ae_features": 24,
}  # fmt: skip

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in [
        Experiment(
            "p_effect", "Figure 9: error against keep probability (n fixed; keep*n fixed)",
            _p_effect_settings, _p_effect_point, _P_EFFECT, [0, 1, 2],
            runner=lambda seeds, quick, progress: _p_effect_run(seeds, quick, progress),
            protocol=True, quick_config={"keeps": [0.5, 1.0], "lrs": [0.003, 0.01]},
        ),
        Experiment(
            "data_size", "Figure 10: dropout vs none against training-set size",
            _data_size_settings, _data_size_point,
            {"lr": 0.01, "p_input": 0.2, "p_hidden": 0.5}, [0, 1, 2, 3, 4], protocol=True,
        ),
        Experiment(
            "data_size_doubled",
            "Figure 10's budget control: data_size with twice the steps at 50, 100, 719",
            _data_size_doubled_settings, _data_size_point,
            {"lr": 0.01, "p_input": 0.2, "p_hidden": 0.5, "steps": 4000}, [0, 1, 2, 3, 4],
            protocol=True,
        ),
        Experiment(
            "autoencoder", "Figures 7-8: autoencoder features and hidden-unit sparsity",
            _autoencoder_settings, _autoencoder_point, _AE, [0, 1, 2], protocol=True,
            quick_config={"ae_steps": 300},
        ),
        Experiment(
            "mc_averaging", "Figure 11: Monte Carlo averaging over k masks vs weight scaling",
            _mc_settings, _mc_point, {"lr": 0.01, "ks": [1, 2, 3, 5, 10, 20, 50, 100, 200]},
            [0, 1, 2, 3, 4], protocol=True, quick_config={"ks": [1, 5, 20]},
        ),
        Experiment(
            "gaussian", "Table 10: Bernoulli vs Gaussian dropout vs none (paired seeds)",
            _gaussian_settings, _gaussian_point, {"lr": 0.01, "p_input": 0.2, "p_hidden": 0.5},
            list(range(10)), protocol=True,
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
