r"""Chapter 1's sweep: single-unit ablation of plain and dropout networks under the protocol.

One stratified validation split of MNIST-1D (seed ``split_seed``). For every seed, with the
seed's streams shared by all arms (:func:`dropoutlib.protocol.seed_streams`):

- **plain**: a 256-256 ReLU network, SGD with momentum; one trajectory gives the network
  early-stopped on validation loss and the network after ``over_epochs`` epochs (the
  over-trained network of the chapter's first section);
- **weight decay**: the same with the weight decay chosen on validation from ``wd_grid``
  (:func:`dropoutlib.protocol.grid_search` over ``grid_seeds``, disjoint from the evaluation
  seeds), early-stopped;
- **dropout**: drop 0.5 after each hidden layer, early-stopped, and the same trajectory at the
  **matched** epoch where its validation loss first comes down to the early-stopped plain
  network's (:func:`dropoutlib.coadaptation.matched_epoch`).

Every network's last hidden layer is ablated unit by unit on the validation set
(:func:`dropoutlib.coadaptation.ablation_rises`); the rows hold the summaries of
:func:`dropoutlib.coadaptation.ablation_summary`, the epoch, validation and test loss and
accuracy. Early-stopped networks appear once for the base budget and once for the doubled one
(``budget`` column), from the same trajectory. ``extras["rises"]`` holds the per-unit rises of
the base-budget networks.

Run it with ``python -m dropoutlib.experiments coadaptation --out
dropoutlib/results/coadaptation.json`` (a few minutes on one core).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from dropoutlib.coadaptation import (
    Trajectory,
    ablation_rises,
    ablation_summary,
    evaluate_test_model,
    matched_epoch,
    train_trajectory,
)
from dropoutlib.data import load_mnist1d
from dropoutlib.experiments.common import Progress, Results, single_thread, versions
from dropoutlib.numpy.optim import SGD
from dropoutlib.protocol import Arm, Budget, Split, grid_search, validation_split
from dropoutlib.train import mlp

__all__ = ["CONFIG", "QUICK", "make_arm", "make_split", "networks", "point", "run", "settings"]

CONFIG: dict[str, Any] = {
    "widths": [256, 256],
    "lr": 0.05,
    "momentum": 0.9,
    "batch_size": 64,
    "p_hidden": 0.5,
    "max_epochs": 150,
    "patience": 10,
    "over_epochs": 25,
    "wd_grid": [1e-4, 1e-3, 1e-2],
    "grid_seeds": [100, 101],
    "split_seed": 2014,
    "val_fraction": 0.2,
    "quantile": 0.95,
}
QUICK: dict[str, Any] = {"max_epochs": 4, "patience": 2, "over_epochs": 3, "wd_grid": [1e-3]}
DEFAULT_SEEDS = [0, 1, 2, 3, 4]


def make_split(config: dict[str, Any]) -> Split:
    """The experiment's validation split of MNIST-1D."""
    rng = np.random.default_rng(config["split_seed"])
    return validation_split(load_mnist1d(), fraction=config["val_fraction"], rng=rng)


def make_arm(name: str, config: dict[str, Any], *, p: float = 0.0, wd: float = 0.0) -> Arm:
    """A 40 -> widths -> 10 network with drop probability ``p`` and weight decay ``wd``."""

    def build(init: np.random.Generator, masks: np.random.Generator) -> tuple[Any, SGD]:
        model = mlp(40, tuple(config["widths"]), 10, rng=init, p_hidden=p, mask_rng=masks)
        opt = SGD(model.parameters(), config["lr"], momentum=config["momentum"], weight_decay=wd)
        return model, opt

    return Arm(name, build, batch_size=config["batch_size"], params={"p": p, "wd": wd})


def networks(
    trajectories: dict[str, Trajectory], budget: Budget, over_epochs: int
) -> dict[str, int]:
    """The epoch of each compared network: ``{network name: epoch}`` for one budget.

    ``plain``, ``weight decay`` and ``dropout`` are early-stopped under ``budget``;
    ``plain, over-trained`` is the plain trajectory after ``over_epochs`` epochs; ``dropout,
    matched`` is the dropout trajectory (up to its own early stop) at the epoch whose
    validation loss first comes down to the early-stopped plain network's.
    """
    best = {name: t.stop(budget)[0] for name, t in trajectories.items()}
    target = trajectories["plain"].val_loss[best["plain"]]
    matched = matched_epoch(trajectories["dropout"].val_loss, target, until=best["dropout"])
    if matched is None:  # the dropout network never got down to the plain network's loss
        matched = best["dropout"]
    return {
        "plain, over-trained": over_epochs,
        "plain": best["plain"],
        "weight decay": best["weight decay"],
        "dropout": best["dropout"],
        "dropout, matched": matched,
    }


def _point(
    seed: int, split: Split, config: dict[str, Any], wd: float
) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    budget = Budget(config["max_epochs"], config["patience"])
    big = budget.doubled()
    arms = {
        "plain": make_arm("plain", config),
        "weight decay": make_arm("weight decay", config, wd=wd),
        "dropout": make_arm("dropout", config, p=config["p_hidden"]),
    }
    traj = {
        name: train_trajectory(
            arm, split, seed, budget=big, min_epochs=config["over_epochs"] if name == "plain" else 0
        )
        for name, arm in arms.items()
    }
    rows, rises, done = [], {}, {}
    for label, b in (("base", budget), ("doubled", big)):
        for net, epoch in networks(traj, b, config["over_epochs"]).items():
            t = traj["dropout" if net.startswith("dropout") else net.split(",")[0]]
            key = (t.arm, epoch)
            if key not in done:  # each distinct network is ablated and tested once
                model = t.at(epoch)
                r = ablation_rises(model, split.x_val, split.y_val)
                test_loss, test_acc = evaluate_test_model(split, model)
                done[key] = (r, test_loss, test_acc)
            r, test_loss, test_acc = done[key]
            if label == "base":
                rises[net] = [float(f"{v:.6g}") for v in r]
            rows.append(
                {
                    "seed": seed, "budget": label, "network": net, "epoch": epoch,
                    "val_loss": t.val_loss[epoch], "val_acc": t.val_acc[epoch],
                    "train_loss": t.train_loss[epoch], "test_loss": test_loss,
                    "test_acc": test_acc, "n_test": split.n_test,
                    "epochs_run": t.stop(b)[1] if not net.endswith("over-trained") else epoch,
                    **ablation_summary(r, quantile=config["quantile"]),
                }
            )  # fmt: skip
    return rows, rises


NETWORKS = ["plain, over-trained", "plain", "weight decay", "dropout", "dropout, matched"]


def settings(quick: bool) -> list[dict[str, Any]]:
    """One setting per compared network (all are trained together, per seed)."""
    return [{"network": n} for n in NETWORKS]


def point(
    seed: int, setting: dict[str, Any], config: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Re-run one seed with a results file's configuration; the rows of ``setting``'s network.

    Uses the weight decay the file chose (``config["wd_chosen"]``) instead of searching again.
    """
    rows, rises = _point(seed, make_split(config), config, config["wd_chosen"])
    keep = [r for r in rows if r["network"] == setting["network"]]
    return keep, {"rises": rises.get(setting["network"])}


def choose_weight_decay(split: Split, config: dict[str, Any]) -> tuple[float, list[dict]]:
    """Weight decay chosen on validation (grid seeds only); returns it and the whole grid."""
    budget = Budget(config["max_epochs"], config["patience"])
    search = grid_search(
        lambda wd: make_arm("weight decay", config, wd=wd),
        {"wd": config["wd_grid"]}, split, config["grid_seeds"], budget,
    )  # fmt: skip
    return float(search.best["wd"]), search.rows


def run(seeds: list[int], quick: bool, progress: bool) -> Results:
    """The whole sweep; ``quick`` shrinks the budgets and the grid (the code runs, no effect)."""
    config = {**CONFIG, **(QUICK if quick else {}), "quick": quick}
    split = make_split(config)
    start = time.perf_counter()
    bar = Progress(len(seeds) + 1, "coadaptation") if progress else None
    with single_thread():
        wd, grid = choose_weight_decay(split, config)
        if bar:
            bar.update()
        rows, rises = [], {}
        for seed in seeds:
            r, u = _point(seed, split, config, wd)
            rows += r
            rises[str(seed)] = u
            if bar:
                bar.update()
    config["wd_chosen"] = wd
    meta = {
        "versions": versions(),
        "seconds": round(time.perf_counter() - start, 1),
        "quick": quick,
        "split": repr(split),
    }
    return Results(
        "coadaptation", rows, config, list(seeds), settings(quick), meta,
        {"grid": grid, "rises": rises},
    )  # fmt: skip
