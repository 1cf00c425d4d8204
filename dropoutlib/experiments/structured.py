r"""The sweeps behind chapter 17, "Structured dropout: connections, paths and blocks" (issue 13).

Three parts, each under the experiment protocol (:mod:`dropoutlib.protocol`: a validation
split carved from the training data, early stopping on validation loss with the best epoch
restored, paired seeds whose arms share initial weights and mini-batch order, the test set
read once per trained network, and every arm re-run with the doubled budget):

**"dropconnect"** (scikit-learn digits, 64-``dc_hidden``-10 ReLU network in NumPy).
Arms: ``plain``; ``weight decay`` (coefficient chosen on validation); ``dropout`` (drop
probability ``p`` on the hidden units, Wan et al.'s comparison); ``dropconnect`` (drop
probability ``p`` on the weights of the hidden layer, one mask per example,
:class:`~dropoutlib.numpy.structured.DropConnectLinear`). ``p`` is chosen on validation for
each arm from ``dc_p_grid``. Early stopping reads the weight-scaled validation loss. Each
trained network is scored on the test set with every inference rule it admits: weight
scaling; the paper's Gaussian moment matching, exact
(:func:`~dropoutlib.numpy.structured.gaussian_relu_mean`) and sampled with ``dc_z`` draws;
and the Monte Carlo average of ``dc_t`` masks.

**"droppath"** (MNIST-1D, a residual MLP in NumPy: ``Linear(40, d)``, ``dp_depth`` blocks
:math:`x + \mathrm{drop\_path}(W_2\,\mathrm{relu}(W_1\,\mathrm{relu}(x)))`, ``ReLU``,
``Linear(d, 10)``).
Arms: ``none``; ``linear`` (Huang et al.'s linear decay, last block dropped with
``dp_p_last`` = 0.5, the paper's :math:`p_L = 0.5`); ``uniform`` (every block dropped with
the mean rate of the linear schedule, so the two drop the same expected number of blocks).

**"dropblock"** (digits as 1x8x8 images, a two-convolution CNN in torch on CPU). Arms:
``none``; ``dropout2d`` (whole channels; chapter 8); ``dropblock`` (``block_size`` 3,
torchvision's algorithm via :func:`dropoutlib.torch.structured.drop_block2d`), each placed
after both convolutions, with ``p`` chosen on validation from ``db_p_grid``.

Run with ``python -m dropoutlib.experiments structured --out
dropoutlib/results/structured.json`` (minutes on one core). Rows: one per (part, arm,
budget, seed), with the test accuracy and NLL of every inference rule as ``acc_<rule>`` and
``nll_<rule>``; ``extras["grid"]`` holds the validation grid.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from dropoutlib.data import load_digits, load_mnist1d
from dropoutlib.ensemble import mc_dropout_proba
from dropoutlib.experiments.common import Progress, Results, single_thread, versions
from dropoutlib.numpy.nn import Dropout, Linear, Module, ReLU, Sequential
from dropoutlib.numpy.optim import SGD
from dropoutlib.numpy.structured import (
    DropConnectLinear,
    ResidualBlock,
    dropconnect_mc_proba,
    linear_drop_rates,
    moment_matching_proba,
)
from dropoutlib.protocol import Arm, Budget, Split, evaluate_test, train_run, validation_split

__all__ = [
    "CONFIG",
    "DEFAULT_SEEDS",
    "QUICK",
    "dropblock_cnn",
    "droppath_rates",
    "make_dc_arm",
    "make_dp_arm",
    "point",
    "run",
    "settings",
    "splits",
]

CONFIG: dict[str, Any] = {
    "val_fraction": 0.2,
    "split_seed": 0,
    "batch_size": 32,
    "momentum": 0.9,
    "grid_seeds": [100, 101],
    # DropConnect vs dropout (digits)
    "dc_hidden": 128,
    "dc_lr": 0.05,
    "dc_max_epochs": 150,
    "dc_patience": 15,
    "dc_p_grid": [0.25, 0.5],
    "dc_wd_grid": [1e-4, 1e-3, 1e-2],
    "dc_z": 100,
    "dc_t": 100,
    # DropPath (MNIST-1D)
    "dp_width": 96,
    "dp_depth": 8,
    "dp_p_last": 0.5,
    "dp_lr": 0.02,
    "dp_max_epochs": 150,
    "dp_patience": 15,
    # DropBlock vs Dropout2d (digits as images)
    "db_channels": 32,
    "db_block": 3,
    "db_p_grid": [0.1, 0.25],
    "db_lr": 0.02,
    "db_max_epochs": 100,
    "db_patience": 10,
}
QUICK: dict[str, Any] = {
    "dc_max_epochs": 2, "dc_patience": 1, "dc_p_grid": [0.5], "dc_wd_grid": [1e-3],
    "dc_z": 5, "dc_t": 5, "dp_max_epochs": 2, "dp_patience": 1, "db_max_epochs": 2,
    "db_patience": 1, "db_p_grid": [0.1], "grid_seeds": [100],
}  # fmt: skip
DEFAULT_SEEDS = [0, 1, 2, 3, 4]
ARMS = {
    "dropconnect": ["plain", "weight decay", "dropout", "dropconnect"],
    "droppath": ["none", "uniform", "linear"],
    "dropblock": ["none", "dropout2d", "dropblock"],
}


def splits(config: dict[str, Any]) -> dict[str, Split]:
    """The digits and MNIST-1D splits (validation carved from the training part, seeded)."""
    out = {}
    for name, data in (("digits", load_digits()), ("mnist1d", load_mnist1d())):
        rng = np.random.default_rng(config["split_seed"])
        out[name] = validation_split(data, fraction=config["val_fraction"], rng=rng)
    return out


# --- DropConnect ------------------------------------------------------------------------------


def make_dc_arm(arm: str, config: dict[str, Any], n_in: int, p: float, wd: float) -> Arm:
    """A 64-hidden-10 network: plain, with weight decay, dropout on the hidden units, or
    DropConnect on the hidden layer's weights. All arms draw the same initial weights."""
    hidden = config["dc_hidden"]

    def build(init: np.random.Generator, masks: np.random.Generator):
        if arm == "dropconnect":
            first: Linear = DropConnectLinear(n_in, hidden, p, rng=init, mask_rng=masks)
        else:
            first = Linear(n_in, hidden, rng=init)
        layers: list[Module] = [first, ReLU()]
        if arm == "dropout":
            layers.append(Dropout(p, rng=masks))
        layers.append(Linear(hidden, 10, rng=init))
        model = Sequential(*layers)
        opt = SGD(model.parameters(), config["dc_lr"], momentum=config["momentum"],
                  weight_decay=wd if arm == "weight decay" else 0.0)  # fmt: skip
        return model, opt

    return Arm(arm, build, batch_size=config["batch_size"], params={"p": p, "wd": wd})


def _scores(probs: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Test accuracy and mean negative log-likelihood of ``(N, C)`` probabilities."""
    nll = -np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-300, None)))
    return float(np.mean(probs.argmax(axis=1) == y)), float(nll)


def _dc_test(run, split: Split, arm: str, config: dict[str, Any], seed: int) -> dict[str, float]:
    evaluate_test(split, run)  # weight scaling, counted as the one read of the test set
    out = {"acc_weight_scaling": run.test_acc, "nll_weight_scaling": run.test_loss}
    x, y = split._x_test, split._y_test  # the same read: further rules for the same network
    model = run.model
    rng = np.random.default_rng([seed, 17])
    if arm == "dropconnect":
        probs = {
            "gaussian_exact": moment_matching_proba(model, x),
            "gaussian_sampled": moment_matching_proba(model, x, samples=config["dc_z"], rng=rng),
            "mc": dropconnect_mc_proba(model, x, config["dc_t"], rng=rng).mean(axis=0),
        }
    elif arm == "dropout":
        probs = {"mc": mc_dropout_proba(model, x, config["dc_t"], rng=rng).mean(axis=0)}
    else:
        probs = {}
    for rule, pr in probs.items():
        out[f"acc_{rule}"], out[f"nll_{rule}"] = _scores(pr, y)
    return out


# --- DropPath ---------------------------------------------------------------------------------


def droppath_rates(arm: str, config: dict[str, Any]) -> list[float]:
    """Per-block drop probabilities: zero, Huang's linear decay, or its mean everywhere."""
    depth = config["dp_depth"]
    linear = linear_drop_rates(depth, config["dp_p_last"])
    if arm == "none":
        return [0.0] * depth
    if arm == "linear":
        return linear
    if arm == "uniform":
        return [float(np.mean(linear))] * depth
    raise ValueError(f"unknown DropPath arm {arm!r}")


def make_dp_arm(arm: str, config: dict[str, Any], n_in: int) -> Arm:
    """A residual MLP: stem, ``dp_depth`` residual blocks with DropPath, ReLU, head.

    The second layer of every branch starts at :math:`1/\\sqrt{\\text{depth}}` of its He
    initialisation, so that the sum of the branches keeps the activations' scale at the
    start (the same for every arm)."""
    width, depth = config["dp_width"], config["dp_depth"]
    rates = droppath_rates(arm, config)

    def build(init: np.random.Generator, masks: np.random.Generator):
        layers: list[Module] = [Linear(n_in, width, rng=init)]
        for rate in rates:
            second = Linear(width, width, rng=init)
            second.weight.data *= np.float32(1.0 / np.sqrt(depth))
            branch = Sequential(ReLU(), Linear(width, width, rng=init), ReLU(), second)
            layers.append(ResidualBlock(branch, rate, rng=masks))
        layers += [ReLU(), Linear(width, 10, rng=init)]
        model = Sequential(*layers)
        return model, SGD(model.parameters(), config["dp_lr"], momentum=config["momentum"])

    return Arm(arm, build, batch_size=config["batch_size"], params={"rates": rates})


# --- DropBlock (torch) ------------------------------------------------------------------------


def dropblock_cnn(arm: str, p: float, config: dict[str, Any]):
    """conv(1->C, 3x3) ReLU [reg] conv(C->C, 3x3) ReLU [reg] maxpool(2) linear(C*16 -> 10)."""
    import torch
    from torch import nn

    from dropoutlib.torch import Dropout2d
    from dropoutlib.torch.structured import DropBlock2d

    c = config["db_channels"]

    def reg() -> nn.Module:
        if arm == "none":
            return nn.Identity()
        if arm == "dropout2d":
            return Dropout2d(p)
        if arm == "dropblock":
            return DropBlock2d(p, config["db_block"])
        raise ValueError(f"unknown DropBlock arm {arm!r}")

    return nn.Sequential(
        nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), reg(),
        nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), reg(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(c * 16, 10),
    ).to(torch.float32)  # fmt: skip


def _torch_run(
    arm: str, p: float, split: Split, seed: int, config: dict[str, Any], budget: Budget,
    test: bool,
) -> dict[str, Any]:  # fmt: skip
    """Train one CNN under the protocol's rules (early stopping on validation loss, best
    epoch restored); the arms of a seed share initial weights, batch order and mask seed."""
    import torch
    import torch.nn.functional as F

    from dropoutlib.train import minibatches

    def images(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(x, dtype=np.float32)).reshape(-1, 1, 8, 8)

    xtr, ytr = images(split.x_train), torch.from_numpy(split.y_train.astype(np.int64))
    xva, yva = images(split.x_val), torch.from_numpy(split.y_val.astype(np.int64))
    torch.manual_seed(seed)
    model = dropblock_cnn(arm, p, config)
    torch.manual_seed(10_000 + seed)  # the masks
    order = np.random.default_rng([seed, 1])
    opt = torch.optim.SGD(model.parameters(), lr=config["db_lr"], momentum=config["momentum"])

    def val_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(F.cross_entropy(model(xva), yva))

    losses = [val_loss()]
    best, best_state = 0, {k: v.clone() for k, v in model.state_dict().items()}
    stopped = "budget"
    for epoch in range(1, budget.max_epochs + 1):
        model.train()
        for idx in minibatches(len(ytr), config["batch_size"], rng=order):
            t = torch.from_numpy(idx)
            opt.zero_grad()
            F.cross_entropy(model(xtr[t]), ytr[t]).backward()
            opt.step()
        losses.append(val_loss())
        if losses[-1] < losses[best]:
            best, best_state = epoch, {k: v.clone() for k, v in model.state_dict().items()}
        elif epoch - best >= budget.patience:
            stopped = "patience"
            break
    model.load_state_dict(best_state)
    model.eval()
    out = {"best_epoch": best, "epochs_run": len(losses) - 1, "stopped": stopped,
           "val_loss": losses[best]}  # fmt: skip
    if test:
        with torch.no_grad():
            logp = F.log_softmax(model(images(split._x_test)), dim=1)
        y = torch.from_numpy(split._y_test.astype(np.int64))
        split.test_evaluations += 1
        out["acc_weight_scaling"] = float((logp.argmax(1) == y).double().mean())
        out["nll_weight_scaling"] = float(-logp[torch.arange(len(y)), y].mean())
    return out


# --- the sweep --------------------------------------------------------------------------------


def settings(quick: bool = False) -> list[dict[str, Any]]:
    """Every (part, arm, budget) point of one seed."""
    return [
        {"part": part, "arm": arm, "budget": budget}
        for part, arms in ARMS.items()
        for arm in arms
        for budget in ("base", "doubled")
    ]


def _budget(part: str, config: dict[str, Any], which: str) -> Budget:
    key = {"dropconnect": "dc", "droppath": "dp", "dropblock": "db"}[part]
    b = Budget(config[f"{key}_max_epochs"], config[f"{key}_patience"])
    return b.doubled() if which == "doubled" else b


def point(seed: int, setting: dict[str, Any], config: dict[str, Any]):
    """Train and test one arm of one part from one seed; returns ``([row], {})``."""
    part, arm = setting["part"], setting["arm"]
    split = splits(config)["mnist1d" if part == "droppath" else "digits"]
    budget = _budget(part, config, setting["budget"])
    row: dict[str, Any] = {**setting, "seed": seed}
    if part == "dropblock":
        p = config["chosen"].get(f"dropblock/{arm}", 0.0)
        row["p"] = p
        row.update(_torch_run(arm, p, split, seed, config, budget, test=True))
        return [row], {}
    if part == "dropconnect":
        p = config["chosen"].get(f"dropconnect/{arm}/p", 0.0)
        wd = config["chosen"].get("dropconnect/weight decay/wd", 0.0)
        a = make_dc_arm(arm, config, split.n_features, p, wd)
        row.update({"p": p, "wd": wd if arm == "weight decay" else 0.0})
    else:
        a = make_dp_arm(arm, config, split.n_features)
        row["rates"] = a.params["rates"]
    with np.errstate(over="ignore"):
        run = train_run(a, split, seed, budget)
    row.update({"best_epoch": run.best_epoch, "epochs_run": run.epochs_run,
                "stopped": run.stopped, "val_loss": run.best_val_loss})  # fmt: skip
    if part == "dropconnect":
        row.update(_dc_test(run, split, arm, config, seed))
    else:
        evaluate_test(split, run)
        row.update({"acc_weight_scaling": run.test_acc, "nll_weight_scaling": run.test_loss})
    return [row], {}


def _select(config: dict[str, Any], bar: Progress | None) -> tuple[dict[str, float], list]:
    """Validation grid (grid seeds, base budget): the setting of lowest mean validation loss."""
    sp = splits(config)
    grid: list[dict[str, Any]] = []
    chosen: dict[str, float] = {}

    def pick(key: str, values: list[float], loss_of) -> None:
        means = {}
        for v in values:
            losses = [loss_of(v, s) for s in config["grid_seeds"]]
            grid.extend({"key": key, "value": v, "seed": s, "val_loss": ls}
                        for s, ls in zip(config["grid_seeds"], losses, strict=True))  # fmt: skip
            means[v] = float(np.mean(losses))
        chosen[key] = min(means, key=means.get)
        if bar:
            bar.update()

    digits, budget = sp["digits"], _budget("dropconnect", config, "base")
    n_in = digits.n_features

    def dc_loss(arm: str, p: float, wd: float, s: int) -> float:
        return train_run(make_dc_arm(arm, config, n_in, p, wd), digits, s, budget).best_val_loss

    pick("dropconnect/weight decay/wd", config["dc_wd_grid"],
         lambda v, s: dc_loss("weight decay", 0.0, v, s))  # fmt: skip
    for arm in ("dropout", "dropconnect"):
        pick(f"dropconnect/{arm}/p", config["dc_p_grid"],
             lambda v, s, arm=arm: dc_loss(arm, v, 0.0, s))  # fmt: skip
    db_budget = _budget("dropblock", config, "base")
    for arm in ("dropout2d", "dropblock"):
        pick(f"dropblock/{arm}", config["db_p_grid"],
             lambda v, s, arm=arm: _torch_run(arm, v, digits, s, config, db_budget, False)[
                 "val_loss"])  # fmt: skip
    return chosen, grid


def run(seeds: list[int], quick: bool, progress: bool) -> Results:
    """The whole sweep: the validation grid, then every point for every seed."""
    import torch

    config = {**CONFIG, **(QUICK if quick else {}), "quick": quick}
    todo = settings(quick)
    start = time.perf_counter()
    bar = Progress(5 + len(seeds) * len(todo), "structured") if progress else None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with single_thread():
            config["chosen"], grid = _select(config, bar)
            rows: list[dict[str, Any]] = []
            for seed in seeds:
                for setting in todo:
                    rows += point(seed, setting, config)[0]
                    if bar:
                        bar.update()
    finally:
        torch.set_num_threads(threads)
    meta = {
        "versions": {**versions(), "torch": torch.__version__},
        "seconds": round(time.perf_counter() - start, 1),
        "quick": quick,
    }
    return Results("structured", rows, config, list(seeds), todo, meta, {"grid": grid})
