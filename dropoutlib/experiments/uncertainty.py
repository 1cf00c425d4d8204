r"""The sweeps behind the chapter "Dropout at test time: uncertainty" (issue 12).

**Part "ood" (classification under distribution shift).** scikit-learn's digits, stratified
half/half train/test split (seed 0); the networks see only the digits 0-4, with a stratified
0.2 of their training half as validation (:func:`dropoutlib.protocol.validation_split`, seed
``split_seed``). The test images of 0-4 are the in-distribution test set, those of 5-9 the
out-of-distribution set, both standardised with the training part's constants. Networks are
64-128-128-5 ReLU MLPs trained with SGD + momentum, early-stopped on validation loss
(:func:`dropoutlib.protocol.train_run`).

- The drop probability (after each hidden layer) is chosen on validation from ``p_grid``: the
  lowest Monte Carlo (``t_select`` samples) validation NLL, averaged over ``grid_seeds``
  (disjoint from the evaluation seeds).
- Per evaluation seed :math:`s`: the dropout network (seed :math:`s`'s streams), and five plain
  networks (seeds :math:`s + 1000 k`, :math:`k = 0..4`; member 0 shares the dropout network's
  initial weights and batch order). Scored once on the test sets: MC averages of the first
  :math:`T` of ``t_max`` passes for every :math:`T` in ``ts`` (NLL, Brier, ECE with 15 bins,
  error; OOD AUROC by predictive entropy and by mutual information), weight scaling, the
  single plain network and the deep ensemble of the five (Lakshminarayanan et al., 2017).

**Part "data" (does the spread shrink with more data? Osband, 2016).** 1-D regression
:math:`y = \sin(x) + 0.1\,\varepsilon` on :math:`x \in [-4,-1] \cup [1,4]` with
:math:`n` points; 1-64-64-1 networks, dropout ``reg_p`` after each hidden layer, a fixed
number of SGD steps (and twice as many for the dropout network, the budget control), inputs
scaled by ``reg_scale`` (a fixed first layer :class:`Scale`); the mean epistemic standard
deviation over the data region, the gap :math:`|x| < 0.5` and outside :math:`|x| \in [5, 6]`,
for MC dropout, a deep ensemble of 5 plain networks and a Gaussian process
(``sklearn.gaussian_process.GaussianProcessRegressor``, RBF + white noise, fitted by maximum
marginal likelihood).

Run with ``python -m dropoutlib.experiments uncertainty --out
dropoutlib/results/uncertainty.json`` (a few minutes on one core).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from dropoutlib.data import _make, load_digits
from dropoutlib.experiments.common import Progress, Results, single_thread, versions
from dropoutlib.numpy.nn import Module, Sequential, softmax
from dropoutlib.numpy.optim import SGD
from dropoutlib.protocol import Arm, Budget, Split, train_run, validation_split
from dropoutlib.train import mlp
from dropoutlib.uncertainty import (
    brier,
    ece,
    entropy,
    fit_regression,
    mc_dropout_proba,
    mc_outputs,
    mutual_information,
    nll,
    ood_auroc,
)

__all__ = [
    "CONFIG",
    "GRID",
    "QUICK",
    "Scale",
    "classification_point",
    "gp_predict",
    "make_arm",
    "make_splits",
    "regression_data",
    "regression_nets",
    "run",
    "scores",
    "settings",
]

CONFIG: dict[str, Any] = {
    "widths": [128, 128],
    "lr": 0.05,
    "momentum": 0.9,
    "batch_size": 32,
    "max_epochs": 200,
    "patience": 15,
    "p_grid": [0.1, 0.25, 0.5],
    "grid_seeds": [100, 101],
    "t_select": 50,
    "ts": [1, 2, 5, 10, 20, 50, 100, 200],
    "t_max": 200,
    "members": 5,
    "bins": 15,
    "split_seed": 0,
    "val_fraction": 0.2,
    "reg_widths": [64, 64],
    "reg_p": 0.2,
    "reg_lr": 0.01,
    "reg_wd": 1e-4,
    "reg_noise": 0.1,
    "reg_ns": [20, 80, 320, 1280],
    "reg_steps": 3000,
    "reg_scale": 0.25,
    "reg_t": 200,
}
QUICK: dict[str, Any] = {
    "max_epochs": 3, "patience": 2, "p_grid": [0.25], "grid_seeds": [100], "members": 2,
    "ts": [1, 5], "t_max": 5, "t_select": 5, "reg_ns": [20], "reg_steps": 30, "reg_t": 5,
}  # fmt: skip
DEFAULT_SEEDS = [0, 1, 2, 3, 4]
IN_CLASSES = 5


# --- classification ---------------------------------------------------------------------------


def make_splits(config: dict[str, Any]) -> tuple[Split, Split]:
    """The in-distribution split (digits 0-4) and a twin whose test set holds the 5-9 images.

    Both come from :func:`validation_split` with the same generator seed on the same training
    images, so the validation examples and the standardisation constants are identical; only
    the test set differs.
    """
    d = load_digits(test_size=0.5, seed=0)
    tr, te = d.y_train < IN_CLASSES, d.y_test < IN_CLASSES
    parts = []
    for name, test in (("digits 0-4", te), ("digits 5-9 (out of distribution)", ~te)):
        data = _make(
            d.raw_train[tr], d.y_train[tr], d.raw_test[test], d.y_test[test] % IN_CLASSES, name,
            IN_CLASSES, d.x_train.dtype,
        )  # fmt: skip
        rng = np.random.default_rng(config["split_seed"])
        parts.append(validation_split(data, fraction=config["val_fraction"], rng=rng))
    return parts[0], parts[1]


def make_arm(name: str, config: dict[str, Any], p: float) -> Arm:
    """A 64 -> widths -> 5 ReLU network with drop probability ``p`` after each hidden layer."""

    def build(init: np.random.Generator, masks: np.random.Generator) -> tuple[Module, SGD]:
        model = mlp(64, tuple(config["widths"]), IN_CLASSES, rng=init, p_hidden=p, mask_rng=masks)
        return model, SGD(model.parameters(), config["lr"], momentum=config["momentum"])

    return Arm(name, build, batch_size=config["batch_size"], params={"p": p})


def _eval_proba(model: Module, x: np.ndarray) -> np.ndarray:
    was = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        return softmax(model(x)).astype(np.float64)
    finally:
        for m, mode in was:
            m.training = mode


def scores(
    probs_in: np.ndarray, y_in: np.ndarray, probs_out: np.ndarray, bins: int
) -> dict[str, float]:
    """NLL, Brier, ECE and error of ``(N, C)`` probabilities, and AUROC by their entropy."""
    return {
        "nll": nll(probs_in, y_in),
        "brier": brier(probs_in, y_in),
        "ece": ece(probs_in, y_in, bins),
        "error": float(np.mean(probs_in.argmax(axis=1) != y_in)),
        "auroc_entropy": ood_auroc(entropy(probs_in), entropy(probs_out)),
    }


def _select_p(split: Split, config: dict[str, Any]) -> tuple[float, list[dict[str, Any]]]:
    budget = Budget(config["max_epochs"], config["patience"])
    rows = []
    for p in config["p_grid"]:
        for seed in config["grid_seeds"]:
            run = train_run(make_arm("dropout", config, p), split, seed, budget)
            rng = np.random.default_rng([seed, 7])
            probs = mc_dropout_proba(run.model, split.x_val, config["t_select"], rng=rng)
            rows.append(
                {"p": p, "seed": seed, "val_mc_nll": nll(probs.mean(axis=0), split.y_val),
                 "epochs": run.epochs_run, "stopped": run.stopped}
            )  # fmt: skip
    means = {p: np.mean([r["val_mc_nll"] for r in rows if r["p"] == p]) for p in config["p_grid"]}
    return float(min(means, key=means.get)), rows


def classification_point(
    seed: int, split: Split, ood: Split, config: dict[str, Any], p: float
) -> list[dict[str, Any]]:
    """All rows of one evaluation seed (the test sets are read once per trained network)."""
    budget = Budget(config["max_epochs"], config["patience"])
    x_in, y_in, x_out = split._x_test, split._y_test, ood._x_test
    rows: list[dict[str, Any]] = []
    base = {"part": "ood", "seed": seed}
    drop = train_run(make_arm("dropout", config, p), split, seed, budget)
    fit = {"p": p, "epochs": drop.epochs_run, "stopped": drop.stopped}
    rng = np.random.default_rng([seed, 99])
    both = mc_dropout_proba(drop.model, np.concatenate([x_in, x_out]), config["t_max"], rng=rng)
    run_in = np.cumsum(both[:, : len(y_in)], axis=0)
    run_out = np.cumsum(both[:, len(y_in) :], axis=0)
    for t in config["ts"]:
        pin, pout = run_in[t - 1] / t, run_out[t - 1] / t
        row = {
            **base,
            "method": "MC dropout",
            "T": t,
            **fit,
            **scores(pin, y_in, pout, config["bins"]),
        }
        if t > 1:
            mi_in = mutual_information(both[:t, : len(y_in)])
            mi_out = mutual_information(both[:t, len(y_in) :])
            row["auroc_mi"] = ood_auroc(mi_in, mi_out)
        rows.append(row)
    ws_in, ws_out = _eval_proba(drop.model, x_in), _eval_proba(drop.model, x_out)
    rows.append(
        {**base, "method": "weight scaling", **fit, **scores(ws_in, y_in, ws_out, config["bins"])}
    )
    members = [
        train_run(make_arm("plain", config, 0.0), split, seed + 1000 * k, budget)
        for k in range(config["members"])
    ]
    pin = np.stack([_eval_proba(m.model, x_in) for m in members])
    pout = np.stack([_eval_proba(m.model, x_out) for m in members])
    epochs = {"epochs": members[0].epochs_run, "stopped": members[0].stopped}
    rows.append(
        {
            **base,
            "method": "plain",
            "p": 0.0,
            **epochs,
            **scores(pin[0], y_in, pout[0], config["bins"]),
        }
    )
    rows.append(
        {**base, "method": "deep ensemble", "p": 0.0,
         "epochs": float(np.mean([m.epochs_run for m in members])),
         "stopped": ",".join(sorted({m.stopped for m in members})),
         **scores(pin.mean(axis=0), y_in, pout.mean(axis=0), config["bins"]),
         "auroc_mi": ood_auroc(mutual_information(pin), mutual_information(pout))}
    )  # fmt: skip
    return rows


# --- regression -------------------------------------------------------------------------------


def regression_data(
    n: int, *, rng: np.random.Generator, noise: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    r"""``n`` points, :math:`x` uniform on :math:`[-4,-1] \cup [1,4]`, :math:`y = \sin x + \sigma
    \varepsilon`; float32 arrays of shapes ``(n, 1)`` and ``(n,)``."""
    side = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    x = side * rng.uniform(1.0, 4.0, n)
    y = np.sin(x) + noise * rng.standard_normal(n)
    return x[:, None].astype(np.float32), y.astype(np.float32)


def regression_nets(
    x: np.ndarray, y: np.ndarray, seed: int, config: dict[str, Any], *, steps: int | None = None
) -> tuple[Module, list[Module]]:
    """The MC-dropout network and the ``members`` plain networks of one seed.

    Network :math:`k` draws its weights from ``default_rng([seed, k, 0])`` and its batch order
    from ``default_rng([seed, k, 1])``; the dropout network is member 0's twin (same weights,
    same order) with masks from ``default_rng([seed, 0, 2])``. Every network sees about the same
    number of examples, ``steps * 32``, whatever ``n``: it trains for ``ceil(steps * 32 / n)``
    epochs of batch 32, so it takes ``steps`` SGD steps when ``n`` is a multiple of 32 and more
    otherwise (4800 at ``n = 20``, 3600 at ``n = 80`` for ``steps = 3000``).
    """
    steps = config["reg_steps"] if steps is None else steps
    epochs = max(1, math.ceil(steps * 32 / len(y)))

    def train(k: int, p: float) -> Module:
        init, order, masks = (np.random.default_rng([seed, k, j]) for j in range(3))
        net = mlp(1, tuple(config["reg_widths"]), 1, rng=init, p_hidden=p, mask_rng=masks)
        model = Sequential(Scale(config["reg_scale"]), *net.layers)
        fit_regression(
            model, x, y, epochs=epochs, lr=config["reg_lr"], rng=order,
            weight_decay=config["reg_wd"],
        )  # fmt: skip
        return model

    return train(0, config["reg_p"]), [train(k, 0.0) for k in range(config["members"])]


class Scale(Module):
    """A fixed (not trained) input scaling :math:`y = c x`; backward :math:`c g`."""

    def __init__(self, c: float) -> None:
        self.c = float(c)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x * np.asarray(self.c, dtype=x.dtype)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return grad * np.asarray(self.c, dtype=grad.dtype)

    def __repr__(self) -> str:
        return f"Scale({self.c})"


def gp_predict(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and standard deviation of the latent function of a fitted GP.

    Kernel ``ConstantKernel * RBF + WhiteKernel``, hyper-parameters by maximum marginal
    likelihood (scikit-learn's default optimiser, ``random_state=0``); the fitted white-noise
    variance is subtracted, so the standard deviation is the epistemic part only.
    """
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    kernel = ConstantKernel(1.0) * RBF(1.0) + WhiteKernel(0.01)
    gp = GaussianProcessRegressor(kernel, normalize_y=False, random_state=0)
    gp.fit(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    noise = gp.kernel_.k2.noise_level
    mean, std = gp.predict(np.asarray(grid, dtype=np.float64), return_std=True)
    return mean, np.sqrt(np.maximum(std**2 - noise, 0.0))


#: The evaluation grid of the regression part.
GRID = np.linspace(-6, 6, 241, dtype=np.float32)[:, None]

REGIONS = {
    "data": lambda g: (np.abs(g) >= 1) & (np.abs(g) <= 4),
    "gap": lambda g: np.abs(g) < 0.5,
    "outside": lambda g: (np.abs(g) >= 5) & (np.abs(g) <= 6),
}


def _regression_point(
    seed: int, n: int, config: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of one (seed, n), and the curves on :data:`GRID` (mean and epistemic std)."""
    x, y = regression_data(n, rng=np.random.default_rng([seed, n]), noise=config["reg_noise"])
    grid = GRID
    rows, curves = [], {"x": x[:, 0].tolist(), "y": y.tolist()}
    for budget, steps in (("base", config["reg_steps"]), ("doubled", 2 * config["reg_steps"])):
        # the budget control re-trains the dropout network only (members=0: no ensemble)
        members_k = config["members"] if budget == "base" else 0
        drop, members = regression_nets(x, y, seed, {**config, "members": members_k}, steps=steps)
        rng = np.random.default_rng([seed, n, 3])
        out = mc_outputs(drop, grid, config["reg_t"], rng=rng)[:, :, 0].astype(np.float64)
        pred = {"MC dropout": (out.mean(axis=0), out.std(axis=0))}
        if budget == "base":
            ens = np.stack([_eval_out(m, grid) for m in members])
            pred["deep ensemble"] = (ens.mean(axis=0), ens.std(axis=0))
            pred["GP"] = gp_predict(x, y, grid)
        for method, (mean, s) in pred.items():
            rows.append(
                {"part": "data", "seed": seed, "n": n, "method": method, "budget": budget,
                 **{f"std_{r}": float(s[f(grid[:, 0])].mean()) for r, f in REGIONS.items()}}
            )  # fmt: skip
            if budget == "base":
                curves[method] = {
                    "mean": [round(float(v), 6) for v in mean],
                    "std": [round(float(v), 6) for v in s],
                }
    return rows, curves


def _eval_out(model: Module, x: np.ndarray) -> np.ndarray:
    was = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        return model(x)[:, 0].astype(np.float64)
    finally:
        for m, mode in was:
            m.training = mode


# --- the sweep --------------------------------------------------------------------------------


def settings(quick: bool) -> list[dict[str, Any]]:
    """The classification (in/out-of-distribution) setting, then one regression setting per size.

    ``{"part": "ood"}`` first, then ``{"part": "data", "n": n}`` for each ``n`` in the
    configuration's ``reg_ns`` (:data:`QUICK`'s with ``quick=True``).
    """
    config = {**CONFIG, **(QUICK if quick else {})}
    return [{"part": "ood"}] + [{"part": "data", "n": n} for n in config["reg_ns"]]


def point(
    seed: int, setting: dict[str, Any], config: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Re-run one setting of one seed with a results file's configuration (``p_chosen``)."""
    with single_thread():
        if setting["part"] == "ood":
            split, ood = make_splits(config)
            return classification_point(seed, split, ood, config, config["p_chosen"]), {}
        return _regression_point(seed, setting["n"], config)


def run(seeds: list[int], quick: bool, progress: bool) -> Results:
    """The whole sweep; ``quick`` shrinks everything (the code runs, no effect)."""
    config = {**CONFIG, **(QUICK if quick else {}), "quick": quick}
    start = time.perf_counter()
    todo = settings(quick)
    bar = Progress(1 + len(seeds) * len(todo), "uncertainty") if progress else None
    with single_thread():
        split, ood = make_splits(config)
        p, grid = _select_p(split, config)
        config["p_chosen"] = p
        if bar:
            bar.update()
        rows: list[dict[str, Any]] = []
        curves: dict[str, Any] = {}
        for seed in seeds:
            for setting in todo:
                new_rows, extra = point(seed, setting, config)
                rows += new_rows
                if seed == seeds[0] and setting["part"] == "data":
                    curves[str(setting["n"])] = extra
                if bar:
                    bar.update()
    meta = {
        "versions": versions(),
        "seconds": round(time.perf_counter() - start, 1),
        "quick": quick,
        "split": repr(split),
        "ood": repr(ood),
    }
    extras = {"grid": grid, "curves": curves, "curves_seed": seeds[0]}
    return Results("uncertainty", rows, config, list(seeds), todo, meta, extras)
