r"""Chapter 5's sweep: training with dropout under the experiment protocol.

Two stages, both with :mod:`dropoutlib.protocol`:

1. **Grid search on validation.** For every arm (a network and a treatment) on every data set,
   each point of its hyper-parameter grid (learning rate, and weight decay for the
   weight-decay baseline, and the max-norm radius for the paper's recipe) is trained from the
   grid seeds with early stopping on validation loss. The mean best validation loss picks the
   arm's setting. The test set is not read.
2. **Paired final runs.** Every arm, at its chosen setting, is trained from each evaluation
   seed (the arms of a seed share initial weights where their shapes agree, and always the
   mini-batch order), once with the base budget and once with the doubled budget, and each
   early-stopped network is evaluated on the test set once.

The paper's recipe (Srivastava et al., 2014, Appendix A: drop 0.2 on the inputs and 0.5 on
hidden units, width :math:`n/q`, momentum 0.95, max-norm radius :math:`c`) is stated for
*standard* dropout. It is converted to our inverted dropout with chapter 3's rule before use:
the network is built with standard scaling and :func:`~dropoutlib.numpy.equivalence.to_inverted`
multiplies the initial weights reading a dropout layer by :math:`q` and their learning rate by
:math:`q^2`; :func:`~dropoutlib.numpy.equivalence.inverted_max_norm_radii` gives the radius
:math:`q\,c` of those layers.

The grids extend past every edge at which an earlier, smaller grid chose its setting (that
grid's weight-decay baseline sat at its corner, so it was not tuned), every arm but the recipe
searches the same learning rates, and the grid seeds are disjoint from the evaluation seeds, so
no run that enters a comparison was selected for its validation loss.

Run it with ``python -m dropoutlib.experiments training --out dropoutlib/results/training.json``
(``meta["seconds"]`` records the wall time). The environment variable ``DROPOUTLIB_WORKERS``
(default 1) trains that many points at once in separate processes; each point is seeded on its
own, so the results do not depend on it (``meta["workers"]`` records it). Rows are the final
runs; ``extras["grid"]`` holds the whole searched grid and ``extras["curves"]`` the loss curves of
the first seed.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import time
from itertools import product
from typing import Any

import numpy as np

from dropoutlib.data import load_digits, load_mnist1d
from dropoutlib.experiments.common import Progress, Results, single_thread, versions
from dropoutlib.numpy.equivalence import inverted_max_norm_radii, to_inverted
from dropoutlib.numpy.optim import SGD
from dropoutlib.protocol import (
    Arm,
    Budget,
    Split,
    dead_unit_fraction,
    evaluate_test,
    relative_distance,
    train_run,
    validation_split,
)
from dropoutlib.train import evaluate, mlp

__all__ = ["ARMS", "CONFIG", "make_arm", "point", "run", "settings", "split_for"]

#: The arms of each data set. ``recipe`` arms are built with standard scaling and converted.
ARMS: dict[str, dict[str, dict[str, Any]]] = {
    "mnist1d": {
        "plain 100": {"widths": [100, 100]},
        "plain 100 + weight decay": {"widths": [100, 100], "tune_weight_decay": True},
        "plain 100, stopped on accuracy": {"widths": [100, 100], "monitor": "val_acc"},
        "plain 200": {"widths": [200, 200]},
        "drop 0.5, width 100": {"widths": [100, 100], "p_hidden": 0.5},
        "drop 0.5, width 200": {"widths": [200, 200], "p_hidden": 0.5},
    },
    "digits": {
        "plain 256": {"widths": [256, 256]},
        "plain 256 + weight decay": {"widths": [256, 256], "tune_weight_decay": True},
        "drop 0.5, width 256": {"widths": [256, 256], "p_hidden": 0.5},
        "recipe": {
            "widths": [512, 512], "p_input": 0.2, "p_hidden": 0.5, "momentum": 0.95,
            "recipe": True, "tune_max_norm": True,
        },
    },
}  # fmt: skip

#: Settings of the full sweep (``--quick`` shrinks grids and budgets).
CONFIG: dict[str, Any] = {
    "data": {
        "mnist1d": "MNIST-1D, n_train=1000 (subset seed 0), validation 0.2 (split seed 0)",
        "digits": "digits, n_train=500 (split seed 0), validation 0.2 (split seed 0)",
    },
    "validation_fraction": 0.2,
    "split_seed": 0,
    "batch_size": 32,
    "momentum": 0.9,
    "lr_grid": [0.001, 0.003, 0.01, 0.03, 0.05, 0.1, 0.3],
    "recipe_lr_grid": [0.01, 0.03, 0.05, 0.1, 0.3, 1.0],
    "weight_decay_grid": [1e-5, 1e-4, 1e-3, 1e-2, 2e-2, 3e-2, 1e-1],
    "max_norm_grid": [3.0, None],
    "recipe_max_norm": 3.0,
    "large_lr": 1.0,
    "budget": {"max_epochs": 400, "patience": 50},
    "grid_seeds": [100, 101],
    "arms": ARMS,
}

QUICK: dict[str, Any] = {
    "lr_grid": [0.03],
    "recipe_lr_grid": [0.1],
    "weight_decay_grid": [1e-3],
    "max_norm_grid": [3.0],
    "budget": {"max_epochs": 3, "patience": 2},
    "grid_seeds": [100],
}


def config_for(quick: bool) -> dict[str, Any]:
    """The sweep's configuration (a JSON-serialisable dict)."""
    return {**CONFIG, **QUICK, "quick": True} if quick else {**CONFIG, "quick": False}


@functools.lru_cache(maxsize=4)
def _split(data: str, fraction: float, seed: int) -> Split:
    if data == "mnist1d":
        full = load_mnist1d(n_train=1000)
    elif data == "digits":
        full = load_digits(n_train=500)
    else:
        raise ValueError(f"unknown data set {data!r}")
    return validation_split(full, fraction=fraction, rng=np.random.default_rng(seed))


def split_for(data: str, config: dict[str, Any]) -> Split:
    """The (cached) split of one data set; its test-evaluation counter is reset per call."""
    split = _split(data, config["validation_fraction"], config["split_seed"])
    split.test_evaluations = 0
    return split


def make_arm(data: str, arm: str, setting: dict[str, Any], config: dict[str, Any]) -> Arm:
    """The :class:`~dropoutlib.protocol.Arm` of one arm at one hyper-parameter setting."""
    spec = config["arms"][data][arm]
    split = split_for(data, config)
    lr, decay = setting["lr"], setting.get("weight_decay", 0.0)
    momentum = spec.get("momentum", config["momentum"])
    radius = setting.get("max_norm")
    recipe = bool(spec.get("recipe"))

    def network(init: np.random.Generator, masks: np.random.Generator):
        return mlp(
            split.n_features, tuple(spec["widths"]), split.n_classes, rng=init, mask_rng=masks,
            p_input=spec.get("p_input", 0.0), p_hidden=spec.get("p_hidden", 0.0),
            scaling="standard" if recipe else "inverted",
        )  # fmt: skip

    radii: float | list[float] | None = radius
    if recipe and radius is not None:  # the paper's radius c, converted layer by layer to q c
        template = network(np.random.default_rng(0), np.random.default_rng(0))
        radii = inverted_max_norm_radii(template, radius)

    def build(init: np.random.Generator, masks: np.random.Generator):
        model = network(init, masks)
        if recipe:  # chapter 3's conversion: weights x q, learning rates x q^2
            model = to_inverted(model)
        return model, SGD(model.parameters(), lr, momentum=momentum, weight_decay=decay)

    return Arm(arm, build, max_norm=radii, batch_size=config["batch_size"], params=dict(setting))


def _grid(data: str, arm: str, config: dict[str, Any]) -> list[dict[str, Any]]:
    spec = config["arms"][data][arm]
    lrs = config["recipe_lr_grid"] if spec.get("recipe") else config["lr_grid"]
    decays = config["weight_decay_grid"] if spec.get("tune_weight_decay") else [0.0]
    radii = config["max_norm_grid"] if spec.get("tune_max_norm") else [None]
    return [
        {"lr": lr, "weight_decay": wd, "max_norm": c} for lr, wd, c in product(lrs, decays, radii)
    ]


def settings(quick: bool) -> list[dict[str, Any]]:
    """Every grid point of every arm (stage 1), as ``{"stage": "grid", ...}`` settings."""
    config = config_for(quick)
    return [
        {"stage": "grid", "data": data, "arm": arm, **hp}
        for data, arms in config["arms"].items()
        for arm in arms
        for hp in _grid(data, arm, config)
    ]


def point(seed: int, setting: dict[str, Any], config: dict[str, Any]):
    """Train one arm at one setting from one seed; evaluate on test only in the final stage.

    Returns ``(rows, extras)`` as every experiment's point function: one row, and the run's
    loss curves.
    """
    data, arm_name = setting["data"], setting["arm"]
    hp = {k: setting[k] for k in ("lr", "weight_decay", "max_norm")}
    monitor = config["arms"][data][arm_name].get("monitor", "val_loss")
    budget = Budget(**config["budget"], monitor=monitor)
    if setting.get("budget") == "doubled":
        budget = budget.doubled()
    split = split_for(data, config)
    arm = make_arm(data, arm_name, hp, config)
    run = train_run(arm, split, seed, budget)
    row: dict[str, Any] = {
        **setting, "seed": int(seed),
        "best_val_loss": run.best_val_loss, "best_val_acc": run.best_val_acc,
        "best_epoch": run.best_epoch, "epochs_run": run.epochs_run, "stopped": run.stopped,
        "projections": run.projections, "row_checks": run.row_checks,
        "largest_norm_ratio": None if np.isnan(run.largest_norm_ratio)
        else run.largest_norm_ratio,
    }  # fmt: skip
    if setting["stage"] == "final":
        evaluate_test(split, run)
        train_loss, train_acc = evaluate(run.model, split.x_train, split.y_train)
        row.update(
            test_loss=run.test_loss, test_acc=run.test_acc, n_test=run.n_test,
            train_loss=train_loss, train_acc=train_acc,
            dead_fraction=dead_unit_fraction(run.model, split.x_train),
            distance_from_init=relative_distance(run.model, run.initial_weights),
        )  # fmt: skip
    curves = {
        "train_loss": [round(v, 5) for v in run.train_loss],
        "val_loss": [round(v, 5) for v in run.val_loss],
        "val_acc": [round(v, 5) for v in run.val_acc],
    }
    return [row], curves


def _choose(grid_rows: list[dict], data: str, arm: str, radius: Any, config: dict) -> dict:
    """The setting with the lowest mean best validation loss (over the grid seeds); for an arm
    stopped on validation accuracy, the highest mean best validation accuracy."""
    rows = [r for r in grid_rows if r["data"] == data and r["arm"] == arm]
    if radius is not None:  # the recipe is defined with max-norm: choose among those rows
        rows = [r for r in rows if r["max_norm"] == radius] or rows
    if config["arms"][data][arm].get("monitor") == "val_acc":  # stopped on accuracy: chosen so
        best = max(rows, key=lambda r: r["val_acc"])
    else:
        best = min(rows, key=lambda r: r["val_loss"] if np.isfinite(r["val_loss"]) else np.inf)
    return {k: best[k] for k in ("lr", "weight_decay", "max_norm")}


def final_settings(grid_rows: list[dict[str, Any]], config: dict[str, Any]) -> list[dict]:
    """The paired final arms: each arm at its validation-chosen setting, plus two pre-declared
    max-norm controls on digits (the recipe without max-norm at its chosen rate, and the recipe
    with and without max-norm at the large rate ``config["large_lr"]``)."""
    finals = []
    for data, arms in config["arms"].items():
        for arm, spec in arms.items():
            radius = config["recipe_max_norm"] if spec.get("tune_max_norm") else None
            hp = _choose(grid_rows, data, arm, radius, config)
            finals.append({"data": data, "arm": arm, **hp})
            if spec.get("recipe"):
                finals.append({"data": data, "arm": arm, "control": "no max-norm",
                               **hp, "max_norm": None})  # fmt: skip
                for c in (config["recipe_max_norm"], None):
                    finals.append({"data": data, "arm": arm, "control": "large lr",
                                   **hp, "lr": config["large_lr"], "max_norm": c})  # fmt: skip
    return [
        {"stage": "final", "budget": b, **f, "control": f.get("control", "")}
        for b in ("base", "doubled")
        for f in finals
    ]


def _label(s: dict[str, Any]) -> str:
    if not s.get("control"):
        return s["arm"]
    mn = "no max-norm" if s["max_norm"] is None else f"max-norm {s['max_norm']:g}"
    return f"{s['arm']}, lr {s['lr']:g}, {mn}"


def _workers() -> int:
    """The number of worker processes, from ``DROPOUTLIB_WORKERS`` (default 1)."""
    text = os.environ.get("DROPOUTLIB_WORKERS", "1")
    try:
        workers = int(text)
    except ValueError:
        raise ValueError(f"DROPOUTLIB_WORKERS must be a positive integer, got {text!r}") from None
    if workers < 1:
        raise ValueError(f"DROPOUTLIB_WORKERS must be a positive integer, got {workers}")
    return workers


def _task(task: tuple[int, dict[str, Any], dict[str, Any]]) -> tuple[list[dict], dict]:
    seed, setting, config = task
    with single_thread():
        return point(seed, setting, config)


def _run_all(
    tasks: list[tuple[int, dict[str, Any]]], config: dict[str, Any], workers: int, bar: Any
) -> list[tuple[list[dict], dict]]:
    """:func:`point` for every ``(seed, setting)``, in order; in ``workers`` processes if > 1."""
    jobs = [(seed, setting, config) for seed, setting in tasks]
    out: list[Any] = [None] * len(jobs)
    if workers == 1:
        results = ((i, _task(job)) for i, job in enumerate(jobs))
        for i, result in results:
            out[i] = result
            if bar:
                bar.update()
        return out
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for i, result in pool.imap_unordered(_indexed_task, list(enumerate(jobs)), chunksize=1):
            out[i] = result
            if bar:
                bar.update()
    return out


def _indexed_task(item: tuple[int, Any]) -> tuple[int, tuple[list[dict], dict]]:
    return item[0], _task(item[1])


def run(seeds: list[int], quick: bool, progress: bool) -> Results:
    """Both stages; returns the final rows with the grid and curves in ``extras``."""
    config = config_for(quick)
    grid_settings = settings(quick)
    grid_seeds = config["grid_seeds"]
    n_final_per_seed = 2 * sum(
        1 + 3 * bool(s.get("recipe")) for arms in config["arms"].values() for s in arms.values()
    )
    total = len(grid_settings) * len(grid_seeds) + n_final_per_seed * len(seeds)
    bar = Progress(total, "training") if progress else None
    start = time.perf_counter()
    workers = _workers()
    grid_tasks = [(seed, setting) for setting in grid_settings for seed in grid_seeds]
    grid_runs = [row for rows, _ in _run_all(grid_tasks, config, workers, bar) for row in rows]
    grid_rows = []
    for setting in grid_settings:
        runs = [r for r in grid_runs if all(r[k] == v for k, v in setting.items())]
        grid_rows.append(
            {
                **{k: v for k, v in setting.items() if k != "stage"},
                "val_loss": float(np.mean([r["best_val_loss"] for r in runs])),
                "val_acc": float(np.mean([r["best_val_acc"] for r in runs])),
                "best_epoch": float(np.mean([r["best_epoch"] for r in runs])),
                "diverged": sum(r["stopped"] == "diverged" for r in runs),
                "capped": sum(r["stopped"] == "budget" for r in runs),
                "projections": int(sum(r["projections"] for r in runs)),
                "row_checks": int(sum(r["row_checks"] for r in runs)),
            }
        )
    finals = final_settings(grid_rows, config)
    rows: list[dict[str, Any]] = []
    curves: dict[str, Any] = {}
    final_tasks = [(seed, setting) for seed in seeds for setting in finals]
    for (seed, setting), (new, curve) in zip(
        final_tasks, _run_all(final_tasks, config, workers, bar), strict=True
    ):
        new[0]["label"] = _label(setting)
        rows += new
        if seed == seeds[0] and setting["budget"] == "base":
            curves[f"{setting['data']}: {_label(setting)}"] = curve
    meta = {
        "seconds": round(time.perf_counter() - start, 1),
        "workers": workers,
        "versions": versions(),
        "quick": quick,
    }
    extras = {"grid": grid_rows, "curves": curves}
    return Results("training", rows, config, list(seeds), finals, meta, extras)
