r"""Chapter 18's sweeps: recurrent and learned dropout, in PyTorch, under the protocol.

Four experiments, each a command (``python -m dropoutlib.experiments NAME --out FILE``) and a
committed results file ``dropoutlib/results/NAME.json``:

=======================  ========================================================================
name                     what
=======================  ========================================================================
``recurrent_locked``     digits read row by row (8 steps of 8 pixels) by a
                         :class:`~dropoutlib.torch.VariationalGRU`: no dropout, weight decay,
                         per-step masks and locked masks on the input and recurrent connections
``recurrent_embedding``  a generated token task (Zipf-distributed words, a linear "sentiment"
                         label): no dropout, element-wise dropout of the embeddings, whole-word
                         embedding dropout
``recurrent_schedules``  the digits-by-rows GRU (``nn.GRU``): no dropout, standard dropout,
                         R-Drop, its control (two passes, :math:`\alpha = 0`), early and
                         late dropout
``recurrent_concrete``   concrete dropout's learned :math:`p` against the training-set size
                         :math:`N` (Gal, Hron & Kendall's toy regression,
                         :math:`y = 2x + 8 + \varepsilon`)
=======================  ========================================================================

The classification experiments follow :mod:`dropoutlib.protocol`'s rules with a PyTorch loop:
a validation split chooses every hyper-parameter (on two grid seeds, 100 and 101) and stops
training (lowest validation loss, patience, best weights restored); the test set is read once
per finished run; the final arms are trained on five paired seeds (within a seed the arms share
the initial weights, drawn after ``torch.manual_seed(seed)``, and the mini-batch order, drawn
from ``numpy.random.default_rng([seed, 1])``); and every final comparison is repeated with twice
the budget (cap and patience doubled). Training is single-threaded (``torch.set_num_threads(1)``)
so that a point is reproducible; ``DROPOUTLIB_WORKERS`` processes run points in parallel.
"""

from __future__ import annotations

import copy
import functools
import math
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dropoutlib.data import load_digits
from dropoutlib.experiments.common import Progress, Results, versions
from dropoutlib.numpy.recurrent import dropout_schedule
from dropoutlib.protocol import validation_split
from dropoutlib.torch.recurrent import (
    ConcreteDropout,
    EmbeddingDropout,
    LockedDropout,
    VariationalGRU,
    concrete_regularization,
    r_drop_loss,
    set_dropout_p,
)

__all__ = ["complete", "digits_rows", "fit", "point", "run", "token_task"]

FINAL_SEEDS = [0, 1, 2, 3, 4]

COMMON: dict[str, Any] = {
    "grid_seeds": [100, 101],
    "batch_size": 32,
    "lr": 0.005,
    "budget": {"max_epochs": 120, "patience": 15},
}

CONFIGS: dict[str, dict[str, Any]] = {
    "recurrent_locked": {
        **COMMON,
        "data": "digits rows: load_digits(test_size=0.5, seed=0, n_train=500), validation 0.2 "
        "(stratified, seed 0): 399 train / 101 validation / 899 test; 8 steps of 8 pixels",
        "hidden": 64,
        "p_grid": [0.1, 0.25, 0.4],
        "wd_grid": [1e-4, 1e-3, 1e-2],
    },
    "recurrent_embedding": {
        **COMMON,
        "data": "generated tokens: vocabulary 200 (Zipf exponent 1), 12 tokens a sequence, label "
        "[sum of word weights + N(0, 0.5^2) > 0]; 400 train / 200 validation / 2000 test (seed 0)",
        "vocab": 200,
        "length": 12,
        "embed": 32,
        "hidden": 32,
        "p_grid": [0.1, 0.25, 0.4],
    },
    "recurrent_schedules": {
        **COMMON,
        "data": "digits rows, as recurrent_locked",
        "hidden": 64,
        "p_grid": [0.1, 0.25, 0.4],
        "alpha_grid": [0.3, 1.0, 3.0],
        "cutoff_epoch": 20,
    },
    "recurrent_concrete": {
        "data": "x ~ N(0, 1), y = 2x + 8 + N(0, 1) (Gal, Hron & Kendall's toy); test 1000 points",
        "ns": [10, 30, 100, 300, 1000],
        "hidden": 64,
        "steps": 2000,
        "doubled_seeds": 3,
        "batch_size": 64,
        "lr": 0.003,
        "length_scale": 1e-4,
        "init_p": 0.1,
        "temperature": 0.1,
        "seeds": FINAL_SEEDS,
    },
}

QUICK: dict[str, Any] = {
    "grid_seeds": [100],
    "budget": {"max_epochs": 3, "patience": 2},
    "p_grid": [0.25],
    "wd_grid": [1e-3],
    "alpha_grid": [1.0],
    "cutoff_epoch": 1,
    "ns": [10, 100],
    "steps": 50,
    "doubled_seeds": 1,
}


# --- data -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def digits_rows() -> dict[str, np.ndarray]:
    """Digits as sequences: arrays ``(n, 8, 8)`` (example, row, column), standardised on the
    training part; train / validation / test as in the configuration."""
    split = validation_split(
        load_digits(test_size=0.5, seed=0, n_train=500), fraction=0.2,
        rng=np.random.default_rng(0),
    )  # fmt: skip
    x_test, y_test = split._x_test, split._y_test  # read once per run, after training
    return {
        "x_train": split.x_train.reshape(-1, 8, 8), "y_train": split.y_train,
        "x_val": split.x_val.reshape(-1, 8, 8), "y_val": split.y_val,
        "x_test": x_test.reshape(-1, 8, 8), "y_test": y_test,
    }  # fmt: skip


@functools.lru_cache(maxsize=1)
def token_task(vocab: int = 200, length: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    r"""The generated token task: word :math:`v` has frequency :math:`\propto 1/(v+1)` and a
    weight :math:`s_v \sim N(0, 1)`; a sequence of ``length`` words has label
    :math:`[\sum_i s_{w_i} + \epsilon > 0]`, :math:`\epsilon \sim N(0, 0.5^2)`. Rare words are
    seen a few times in training, so a network can memorise them."""
    rng = np.random.default_rng([seed, 7])
    freq = 1.0 / np.arange(1, vocab + 1)
    freq /= freq.sum()
    weights = rng.standard_normal(vocab)
    sizes = {"train": 400, "val": 200, "test": 2000}
    out: dict[str, np.ndarray] = {}
    for name, n in sizes.items():
        words = rng.choice(vocab, size=(n, length), p=freq)
        score = weights[words].sum(axis=1) + 0.5 * rng.standard_normal(n)
        out[f"x_{name}"], out[f"y_{name}"] = words.astype(np.int64), (score > 0).astype(np.int64)
    return out


# --- models ---------------------------------------------------------------------------------


class RowsVariational(nn.Module):
    """Digits rows -> :class:`VariationalGRU` (input and recurrent dropout) -> linear."""

    def __init__(self, hidden: int, p: float, locked: bool) -> None:
        super().__init__()
        self.gru = VariationalGRU(8, hidden, dropout_input=p, dropout_hidden=p, locked=locked)
        self.out = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(x.transpose(0, 1))
        return self.out(h)


class RowsGRU(nn.Module):
    """Digits rows -> locked input dropout -> ``nn.GRU`` -> dropout -> linear."""

    def __init__(self, hidden: int, p: float) -> None:
        super().__init__()
        self.drop_in = LockedDropout(p)
        self.gru = nn.GRU(8, hidden)
        self.drop_out = nn.Dropout(p)
        self.out = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(self.drop_in(x.transpose(0, 1)))
        return self.out(self.drop_out(h[0]))


class TokenGRU(nn.Module):
    """Words -> embedding (whole-word or element-wise dropout, or none) -> ``nn.GRU`` -> linear."""

    def __init__(self, vocab: int, embed: int, hidden: int, kind: str, p: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.words = EmbeddingDropout(self.embedding, p if kind == "words" else 0.0)
        self.elements = nn.Dropout(p if kind == "elements" else 0.0)
        self.gru = nn.GRU(embed, hidden)
        self.out = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.elements(self.words(x.transpose(0, 1)))
        _, h = self.gru(e)
        return self.out(h[0])


# --- training under the protocol ------------------------------------------------------------


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x)
        return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


def fit(
    model: nn.Module,
    data: dict[str, np.ndarray],
    *,
    seed: int,
    budget: dict[str, int],
    lr: float,
    batch_size: int,
    weight_decay: float = 0.0,
    alpha: float | None = None,
    p_by_epoch: np.ndarray | None = None,
) -> dict[str, Any]:
    """Train with Adam, stop on validation loss (patience), restore the best weights, then read
    the test set once. ``alpha`` switches to the R-Drop loss; ``p_by_epoch`` sets every
    dropout layer's rate at the start of each epoch (early / late dropout)."""
    t = {k: torch.tensor(v) for k, v in data.items()}  # copies (the arrays are read-only)
    n = len(t["y_train"])
    order = np.random.default_rng([seed, 1])
    torch.manual_seed(int(seed) * 1000 + 1)  # the dropout masks' stream
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    best, best_state, best_epoch, since, stopped = math.inf, None, 0, 0, "budget"
    curve = []
    for epoch in range(budget["max_epochs"]):
        if p_by_epoch is not None:
            set_dropout_p(model, float(p_by_epoch[epoch]))
        model.train()
        perm = order.permutation(n)
        for start in range(0, n, batch_size):
            idx = torch.as_tensor(perm[start : start + batch_size])
            xb, yb = t["x_train"][idx], t["y_train"][idx]
            opt.zero_grad()
            if alpha is None:
                loss = F.cross_entropy(model(xb), yb)
            else:
                loss = r_drop_loss(model(xb), model(xb), yb, alpha)
            loss.backward()
            opt.step()
        val_loss, val_acc = _evaluate(model, t["x_val"], t["y_val"])
        curve.append(round(val_loss, 5))
        if not math.isfinite(val_loss):
            stopped = "diverged"
            break
        if val_loss < best:
            best, best_epoch, since = val_loss, epoch + 1, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since += 1
            if since >= budget["patience"]:
                stopped = "patience"
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    val_loss, val_acc = _evaluate(model, t["x_val"], t["y_val"])
    test_loss, test_acc = _evaluate(model, t["x_test"], t["y_test"])
    return {
        "val_loss": val_loss, "val_acc": val_acc, "test_loss": test_loss, "test_acc": test_acc,
        "best_epoch": best_epoch, "epochs": len(curve), "stopped": stopped, "curve": curve,
    }  # fmt: skip


_MEASURED = {"seed", "val_loss", "val_acc", "test_loss", "test_acc", "best_epoch", "epochs",
             "stopped"}  # fmt: skip


def _budget(config: dict[str, Any], which: str) -> dict[str, int]:
    b = dict(config["budget"])
    if which == "doubled":
        b = {"max_epochs": 2 * b["max_epochs"], "patience": 2 * b["patience"]}
    return b


def _build(name: str, setting: dict[str, Any], config: dict[str, Any], seed: int) -> nn.Module:
    torch.manual_seed(int(seed))  # the same initial weights for every arm of a seed
    p = float(setting.get("p", 0.0))
    if name == "recurrent_locked":
        return RowsVariational(config["hidden"], p, locked=setting["arm"] != "per-step")
    if name == "recurrent_embedding":
        kind = {"none": "none", "element dropout": "elements", "word dropout": "words"}
        return TokenGRU(config["vocab"], config["embed"], config["hidden"],
                        kind[setting["arm"]], p)  # fmt: skip
    if name == "recurrent_schedules":
        return RowsGRU(config["hidden"], p)
    raise ValueError(f"unknown experiment {name!r}")


def _classification_point(
    name: str, seed: int, setting: dict[str, Any], config: dict[str, Any]
) -> dict[str, Any]:
    data = token_task(config["vocab"], config["length"]) if name == "recurrent_embedding" else (
        digits_rows()
    )  # fmt: skip
    model = _build(name, setting, config, seed)
    budget = _budget(config, setting.get("budget", "base"))
    p_by_epoch = None
    arm = setting["arm"]
    if arm in ("early", "late"):
        p_by_epoch = dropout_schedule(
            setting["p"], budget["max_epochs"], 1, mode=arm,
            cutoff_epoch=config["cutoff_epoch"] * (2 if setting.get("budget") == "doubled" else 1),
        )  # fmt: skip
    result = fit(
        model, data, seed=seed, budget=budget, lr=config["lr"],
        batch_size=config["batch_size"], weight_decay=setting.get("wd", 0.0),
        alpha=setting.get("alpha"), p_by_epoch=p_by_epoch,
    )  # fmt: skip
    return {**setting, "seed": seed, **result}


# --- concrete dropout against N ---------------------------------------------------------------


def _toy(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = rng.standard_normal((n, 1))
    y = 2.0 * x + 8.0 + rng.standard_normal((n, 1))
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)


def _concrete_point(seed: int, setting: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    r"""One network at one :math:`N`: three :class:`ConcreteDropout` linear layers, Adam on
    the mean squared error plus the regulariser with :math:`\lambda_w = l^2/N`,
    :math:`\lambda_p = 2/N` (the authors' choice for noise precision 1)."""
    n, steps = int(setting["n"]), int(config["steps"]) * (2 if setting.get("doubled") else 1)
    rng = np.random.default_rng([seed, n])
    x, y = _toy(n, rng)
    x_test, y_test = _toy(1000, np.random.default_rng([10**6, 0]))
    torch.manual_seed(int(seed))
    h = config["hidden"]
    kw = {
        "weight_regularizer": config["length_scale"] ** 2 / n,
        "dropout_regularizer": 2.0 / n,
        "init_p": config["init_p"],
        "temperature": config["temperature"],
    }
    layers = [ConcreteDropout(nn.Linear(a, b), **kw) for a, b in ((1, h), (h, h), (h, 1))]
    model = nn.Sequential(layers[0], nn.ReLU(), layers[1], nn.ReLU(), layers[2])
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    order = np.random.default_rng([seed, n, 1])
    bs = min(n, config["batch_size"])
    model.train()
    for _ in range(steps):
        idx = torch.as_tensor(order.choice(n, size=bs, replace=False))
        opt.zero_grad()
        loss = F.mse_loss(model(x[idx]), y[idx]) + concrete_regularization(model)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        test_mse = float(F.mse_loss(model(x_test), y_test))
    ps = [float(layer.p.detach()) for layer in layers]
    return {**setting, "seed": seed, "p_input": ps[0], "p_hidden1": ps[1], "p_hidden2": ps[2],
            "test_mse": test_mse}  # fmt: skip


# --- sweeps ---------------------------------------------------------------------------------


def point(name: str, seed: int, setting: dict[str, Any], config: dict[str, Any]) -> dict:
    """Re-run one point (one network) of experiment ``name``; returns its row."""
    torch.set_num_threads(1)
    if name == "recurrent_concrete":
        return _concrete_point(seed, setting, config)
    return _classification_point(name, seed, setting, config)


def _task(job: tuple[str, int, dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    return point(*job)


def _indexed(item: tuple[int, Any]) -> tuple[int, dict[str, Any]]:
    return item[0], _task(item[1])


def _workers() -> int:
    text = os.environ.get("DROPOUTLIB_WORKERS", "1")
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"DROPOUTLIB_WORKERS must be a positive integer, got {text!r}")
    return int(text)


def _run_jobs(jobs: list[tuple], bar: Progress | None) -> list[dict[str, Any]]:
    out: list[Any] = [None] * len(jobs)
    workers = _workers()
    if workers == 1:
        for i, job in enumerate(jobs):
            out[i] = _task(job)
            if bar:
                bar.update()
        return out
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for i, row in pool.imap_unordered(_indexed, list(enumerate(jobs)), chunksize=1):
            out[i] = row
            if bar:
                bar.update()
    return out


def _grid(name: str, config: dict[str, Any]) -> list[dict[str, Any]]:
    """The validation grid of each tuned arm."""
    if name == "recurrent_locked":
        return (
            [{"arm": a, "p": p} for a in ("per-step", "locked") for p in config["p_grid"]]
            + [{"arm": "weight decay", "wd": wd} for wd in config["wd_grid"]]
        )  # fmt: skip
    if name == "recurrent_embedding":
        return [{"arm": a, "p": p} for a in ("element dropout", "word dropout")
                for p in config["p_grid"]]  # fmt: skip
    return [{"arm": "dropout", "p": p} for p in config["p_grid"]]


def _best(grid_rows: list[dict[str, Any]], arm: str, key: str) -> Any:
    """The grid value of ``key`` with the lowest mean validation loss for ``arm``."""
    values = sorted({r[key] for r in grid_rows if r["arm"] == arm})
    means = [np.mean([r["val_loss"] for r in grid_rows if r["arm"] == arm and r[key] == v])
             for v in values]  # fmt: skip
    return values[int(np.argmin(means))]


def _finals(name: str, grid_rows: list[dict[str, Any]], config: dict[str, Any]) -> list[dict]:
    if name == "recurrent_locked":
        arms = [{"arm": "none"},
                {"arm": "weight decay", "wd": _best(grid_rows, "weight decay", "wd")},
                {"arm": "per-step", "p": _best(grid_rows, "per-step", "p")},
                {"arm": "locked", "p": _best(grid_rows, "locked", "p")}]  # fmt: skip
    elif name == "recurrent_embedding":
        arms = [{"arm": "none"},
                {"arm": "element dropout", "p": _best(grid_rows, "element dropout", "p")},
                {"arm": "word dropout", "p": _best(grid_rows, "word dropout", "p")}]  # fmt: skip
    else:
        p = _best(grid_rows, "dropout", "p")
        alpha_rows = [r for r in grid_rows if r["arm"] == "R-Drop"]
        alpha = _best(alpha_rows, "R-Drop", "alpha")
        arms = [{"arm": "none"}, {"arm": "dropout", "p": p},
                {"arm": "R-Drop", "p": p, "alpha": alpha},
                {"arm": "two passes", "p": p, "alpha": 0.0},  # R-Drop's control: no KL term
                {"arm": "early", "p": p}, {"arm": "late", "p": p}]  # fmt: skip
    return [{**a, "budget": b} for b in ("base", "doubled") for a in arms]


def run(name: str, seeds: list[int], quick: bool, progress: bool) -> Results:
    """Grid on the validation split (grid seeds), then the chosen arms on the paired seeds."""
    config = {**CONFIGS[name], **({k: v for k, v in QUICK.items() if k in CONFIGS[name]}
                                  if quick else {})}  # fmt: skip
    start = time.perf_counter()
    extras: dict[str, Any] = {}
    if name == "recurrent_concrete":
        settings = [{"n": n, "doubled": d} for d in (False, True) for n in config["ns"]]
        few = seeds[: config["doubled_seeds"]]
        jobs = [(name, s, st, config) for st in settings
                for s in (few if st["doubled"] else seeds)]  # fmt: skip
        bar = Progress(len(jobs), name) if progress else None
        rows = _run_jobs(jobs, bar)
    else:
        grid = _grid(name, config)
        jobs = [(name, s, st, config) for st in grid for s in config["grid_seeds"]]
        bar = Progress(len(jobs), f"{name} (grid)") if progress else None
        grid_rows = _run_jobs(jobs, bar)
        if name == "recurrent_schedules":
            p = _best(grid_rows, "dropout", "p")
            jobs = [(name, s, {"arm": "R-Drop", "p": p, "alpha": a}, config)
                    for a in config["alpha_grid"] for s in config["grid_seeds"]]  # fmt: skip
            bar = Progress(len(jobs), f"{name} (alpha grid)") if progress else None
            grid_rows += _run_jobs(jobs, bar)
        extras["grid"] = [{k: v for k, v in r.items() if k != "curve"} for r in grid_rows]
        settings = _finals(name, grid_rows, config)
        jobs = [(name, s, st, config) for s in seeds for st in settings]
        bar = Progress(len(jobs), f"{name} (final)") if progress else None
        rows = _run_jobs(jobs, bar)
        extras["curves"] = {f"{r['arm']}, seed {r['seed']}": r["curve"] for r in rows
                            if r["budget"] == "base" and r["seed"] == seeds[0]}  # fmt: skip
        rows = [{k: v for k, v in r.items() if k != "curve"} for r in rows]
    meta = {
        "seconds": round(time.perf_counter() - start, 1),
        "workers": _workers(),
        "versions": {**versions(), "torch": torch.__version__},
        "quick": quick,
    }
    return Results(name, rows, config, list(seeds), settings, meta, extras)


def complete(path: str, progress: bool = False) -> Results:
    """Add to the results file ``path`` the final points the code now has and the file lacks
    (an arm added after the sweep ran), and write the file back.

    The final settings are derived again from the file's own validation grid (so the added arm
    gets the chosen :math:`p`); every setting already in the file must be among them. Only the
    missing (seed, setting) points are trained; a point depends on its seed, setting and
    configuration alone, so the added rows are the rows a full re-run would give, and the
    stored rows are kept unchanged. Rows, settings and curves are merged in a full run's
    order; ``meta["completed"]`` records the call, the settings added, time and versions.
    """
    res = Results.from_json(Path(path).read_text())
    if res.meta.get("quick") or res.name == "recurrent_concrete":
        raise ValueError(f"complete() takes a full classification sweep, got {res.name!r}")
    start = time.perf_counter()
    settings = _finals(res.name, res.extras["grid"], res.config)
    if any(st not in settings for st in res.settings):
        raise ValueError("the file's settings are not the code's: re-run the whole sweep")
    missing = [st for st in settings if st not in res.settings]
    jobs = [(res.name, s, st, res.config) for s in res.seeds for st in missing]
    bar = Progress(len(jobs), f"{res.name} (added)") if progress else None
    fresh = _run_jobs(jobs, bar)

    def stored(seed: int, st: dict[str, Any]) -> dict[str, Any]:
        (row,) = [r for r in res.rows if r["seed"] == seed
                  and {k: v for k, v in r.items() if k not in _MEASURED} == st]  # fmt: skip
        return row

    new = iter(fresh)
    rows = [dict(next(new)) if st in missing else stored(s, st)
            for s in res.seeds for st in settings]  # fmt: skip
    curves = {}
    for r in rows:
        if r["budget"] == "base" and r["seed"] == res.seeds[0]:
            key = f"{r['arm']}, seed {r['seed']}"
            curves[key] = r.pop("curve") if "curve" in r else res.extras["curves"][key]
    res.rows = [{k: v for k, v in r.items() if k != "curve"} for r in rows]
    res.settings = settings
    res.extras["curves"] = curves
    res.meta.setdefault("completed", []).append({
        "call": f"dropoutlib.experiments.recurrent.complete({str(path)!r})",
        "added": missing, "seconds": round(time.perf_counter() - start, 1),
        "workers": _workers(), "versions": {**versions(), "torch": torch.__version__},
    })  # fmt: skip
    res.save(path)
    return res
