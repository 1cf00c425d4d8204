r"""Chapter 19's sweep: when does dropout pay? One pass over abundant data vs many epochs on little.

Large-model pretraining sees each token about once; fine-tuning revisits a small data set for
many epochs. This sweep reproduces the two regimes at laptop scale on **generated** data, so that
"abundant" really is unlimited and the best achievable accuracy is known.

Data (:func:`teacher_dataset`): :math:`x \sim \mathcal N(0, I_d)`; a fixed random teacher
network gives logits :math:`z = \tanh(x W_1) W_2 / T` and the label is **sampled** from
:math:`\operatorname{softmax}(z)`, so the Bayes-optimal classifier (the teacher itself) has a
known accuracy below 1 (:func:`bayes_scores`) and a network can overfit label noise.

Regimes (one validation split each, 20% of the pool, carved by
:func:`dropoutlib.protocol.validation_split`):

- ``one_pass``: a pool of ``n_pool`` examples, trained for exactly **one epoch** (every example
  seen once, as in pretraining); its budget control doubles the **stream** (twice the pool, still
  one pass), because a second epoch would change the regime;
- ``many_epochs``: a pool of 500 examples, early-stopped on validation loss; its budget control
  is :meth:`dropoutlib.protocol.Budget.doubled` (twice the cap and the patience).

In every regime and budget, the drop probability (hidden layers) and the weight decay are chosen
on validation (:func:`dropoutlib.protocol.grid_search` over ``grid_seeds``, disjoint from the
evaluation seeds; the dropout grid also holds :math:`p = 0`, to show where the plain network
sits, and the dropout arm takes the best :math:`p > 0`); then plain, dropout and weight-decay
networks are trained from the same seed streams (:func:`dropoutlib.protocol.train_run`) and
tested once.

Run it with ``python -m dropoutlib.experiments transformers --out
dropoutlib/results/transformers.json`` (a few minutes on one core).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from dropoutlib.data import Dataset, _make
from dropoutlib.experiments.common import Progress, Results, single_thread, versions
from dropoutlib.numpy.optim import SGD
from dropoutlib.protocol import (
    Arm,
    Budget,
    Split,
    evaluate_test,
    grid_search,
    train_run,
    validation_split,
)
from dropoutlib.train import mlp

__all__ = [
    "CONFIG",
    "DEFAULT_SEEDS",
    "QUICK",
    "bayes_scores",
    "make_arm",
    "point",
    "regime_split",
    "run",
    "settings",
    "teacher_dataset",
    "teacher_logits",
]

CONFIG: dict[str, Any] = {
    "d": 16,
    "teacher_hidden": 32,
    "classes": 4,
    "temperature": 0.1,
    "teacher_seed": 7,
    "data_seed": 2026,
    "n_test": 10000,
    "regimes": {
        "one_pass": {"n_pool": 25000, "max_epochs": 1, "patience": 1},
        "many_epochs": {"n_pool": 500, "max_epochs": 300, "patience": 30},
    },
    "widths": [128, 128],
    "lr": 0.01,
    "momentum": 0.9,
    "batch_size": 32,
    "p_grid": [0.05, 0.1, 0.2, 0.3, 0.5, 0.7],
    "wd_grid": [1e-4, 1e-3, 1e-2, 3e-2, 0.1],
    # eight grid seeds: with two, the many-epochs choice of p moved between 0.5 and 0.2 with
    # the grid seeds (100-101 vs 102-103), and the dropout effect with it
    "grid_seeds": [100, 101, 102, 103, 104, 105, 106, 107],
    "val_fraction": 0.2,
}
QUICK: dict[str, Any] = {
    "regimes": {
        "one_pass": {"n_pool": 2000, "max_epochs": 1, "patience": 1},
        "many_epochs": {"n_pool": 200, "max_epochs": 4, "patience": 2},
    },
    "p_grid": [0.3],
    "wd_grid": [1e-3],
    "grid_seeds": [100],
}
DEFAULT_SEEDS = [0, 1, 2, 3, 4, 5, 6, 7]
ARMS = ("plain", "dropout", "weight decay")


def _teacher(config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(config["teacher_seed"])
    d, h, k = config["d"], config["teacher_hidden"], config["classes"]
    w1 = rng.standard_normal((d, h)) / np.sqrt(d)
    w2 = rng.standard_normal((h, k)) / np.sqrt(h)
    return w1, w2


def teacher_logits(x: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    r"""The teacher's logits :math:`z = \tanh(x W_1) W_2 / T` (float64)."""
    w1, w2 = _teacher(config)
    return np.tanh(np.asarray(x, dtype=np.float64) @ w1) @ w2 / config["temperature"]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sample(n: int, config: dict[str, Any], rng: np.random.Generator):
    x = rng.standard_normal((n, config["d"]))
    prob = _softmax(teacher_logits(x, config))
    u = rng.random(n)[:, None]
    y = np.minimum((u > np.cumsum(prob, axis=1)).sum(axis=1), config["classes"] - 1)
    return x, y


def teacher_dataset(n_train: int, config: dict[str, Any]) -> Dataset:
    """``n_train`` training and ``config["n_test"]`` test examples from the teacher.

    The test set is drawn from ``default_rng([data_seed, 0])`` whatever ``n_train`` is, and the
    training pool from ``default_rng([data_seed, n_train])``: every regime is tested on the same
    examples.
    """
    x_test, y_test = _sample(
        config["n_test"], config, np.random.default_rng([config["data_seed"], 0])
    )
    rng = np.random.default_rng([config["data_seed"], int(n_train)])
    x_train, y_train = _sample(int(n_train), config, rng)
    name = f"teacher (d={config['d']}, {config['classes']} classes)"
    return _make(x_train, y_train, x_test, y_test, name, config["classes"], np.float32)


def bayes_scores(config: dict[str, Any]) -> dict[str, float]:
    """Accuracy and cross-entropy of the teacher itself on the test set (the best possible).

    The Bayes classifier predicts the teacher's most likely class; its expected accuracy is
    the mean of the largest teacher probability and its expected loss the mean entropy. Both
    are also measured on the sampled test labels.
    """
    x, y = _sample(config["n_test"], config, np.random.default_rng([config["data_seed"], 0]))
    prob = _softmax(teacher_logits(x, config))
    rows = np.arange(len(y))
    return {
        "expected_acc": float(prob.max(axis=1).mean()),
        "expected_loss": float(-(prob * np.log(prob)).sum(axis=1).mean()),
        "test_acc": float((prob.argmax(axis=1) == y).mean()),
        "test_loss": float(-np.log(prob[rows, y]).mean()),
    }


def regime_split(regime: str, budget: str, config: dict[str, Any]) -> Split:
    """The validation split of a regime; the ``one_pass`` doubled budget doubles the pool."""
    r = config["regimes"][regime]
    n_pool = r["n_pool"] * (2 if (regime == "one_pass" and budget == "doubled") else 1)
    data = teacher_dataset(n_pool, config)
    rng = np.random.default_rng([config["data_seed"], n_pool, 1])
    return validation_split(data, fraction=config["val_fraction"], rng=rng)


def _budget(regime: str, budget: str, config: dict[str, Any]) -> Budget:
    r = config["regimes"][regime]
    base = Budget(r["max_epochs"], r["patience"])
    return base.doubled() if (budget == "doubled" and regime != "one_pass") else base


def make_arm(name: str, config: dict[str, Any], *, p: float = 0.0, wd: float = 0.0) -> Arm:
    """A ``d -> widths -> classes`` ReLU network, drop probability ``p`` after each hidden layer,
    SGD with momentum and weight decay ``wd``."""

    def build(init: np.random.Generator, masks: np.random.Generator) -> tuple[Any, SGD]:
        model = mlp(
            config["d"], tuple(config["widths"]), config["classes"], rng=init, p_hidden=p,
            mask_rng=masks,
        )  # fmt: skip
        opt = SGD(model.parameters(), config["lr"], momentum=config["momentum"], weight_decay=wd)
        return model, opt

    return Arm(name, build, batch_size=config["batch_size"], params={"p": p, "wd": wd})


def settings(quick: bool) -> list[dict[str, Any]]:
    """The (regime, budget) cells of the sweep."""
    return [
        {"regime": regime, "budget": budget}
        for regime in ("one_pass", "many_epochs")
        for budget in ("base", "doubled")
    ]


def point(seed: int, setting: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Train and test one arm: ``setting`` = regime, budget, arm, p, wd. Returns its row."""
    split = regime_split(setting["regime"], setting["budget"], config)
    budget = _budget(setting["regime"], setting["budget"], config)
    arm = make_arm(setting["arm"], config, p=setting["p"], wd=setting["wd"])
    with single_thread():
        run_ = evaluate_test(split, train_run(arm, split, seed, budget))
    return {
        **setting,
        "seed": int(seed),
        "n_train": len(split.y_train),
        "best_epoch": run_.best_epoch,
        "epochs_run": run_.epochs_run,
        "stopped": run_.stopped,
        "train_loss": run_.train_loss[run_.best_epoch],
        "val_loss": run_.best_val_loss,
        "val_acc": run_.best_val_acc,
        "test_loss": run_.test_loss,
        "test_acc": run_.test_acc,
    }


def _choose(split: Split, budget: Budget, config: dict[str, Any]) -> tuple[float, float, list]:
    seeds = config["grid_seeds"]
    # p = 0 is in the grid to show where the plain network sits; the dropout arm takes the
    # best p > 0 (the comparison is then plain vs the best dropout validation can find)
    gp = grid_search(
        lambda p: make_arm("dropout", config, p=p), {"p": [0.0, *config["p_grid"]]}, split,
        seeds, budget,
    )  # fmt: skip
    best_p = min((r for r in gp.rows if r["p"] > 0), key=lambda r: r["val_loss"])["p"]
    gw = grid_search(
        lambda wd: make_arm("weight decay", config, wd=wd), {"wd": config["wd_grid"]}, split,
        seeds, budget,
    )  # fmt: skip
    return float(best_p), float(gw.best["wd"]), gp.rows + gw.rows


def run(seeds: list[int], quick: bool, progress: bool) -> Results:
    """The whole sweep; ``quick`` shrinks pools, budgets and grids (the code runs, no effect)."""
    config = {**CONFIG, **(QUICK if quick else {}), "quick": quick}
    cells = settings(quick)
    start = time.perf_counter()
    bar = Progress(len(cells) * (1 + len(seeds)), "transformers") if progress else None
    rows: list[dict[str, Any]] = []
    grids: dict[str, Any] = {}
    with single_thread():
        for cell in cells:
            split = regime_split(cell["regime"], cell["budget"], config)
            budget = _budget(cell["regime"], cell["budget"], config)
            p, wd, grid = _choose(split, budget, config)
            grids[f"{cell['regime']}/{cell['budget']}"] = {"p": p, "wd": wd, "rows": grid}
            if bar:
                bar.update()
            for seed in seeds:
                for arm, (pp, ww) in zip(ARMS, [(0.0, 0.0), (p, 0.0), (0.0, wd)], strict=True):
                    rows.append(point(seed, {**cell, "arm": arm, "p": pp, "wd": ww}, config))
                if bar:
                    bar.update()
    meta = {
        "versions": versions(),
        "seconds": round(time.perf_counter() - start, 1),
        "quick": quick,
        "bayes": bayes_scores(config),
    }
    return Results("transformers", rows, config, list(seeds), cells, meta, {"grids": grids})
