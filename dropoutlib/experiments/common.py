"""Shared machinery of the experiments: networks, training, seeding, progress, results files.

Every experiment is a grid of *points* ``(seed, setting)``; each point is trained from its own
generator, ``np.random.default_rng([seed, key(setting)])``, so any single point can be re-run
on its own and must reproduce the row stored in the results file.
"""

from __future__ import annotations

import functools
import json
import platform
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from dropoutlib.data import Dataset, load_digits
from dropoutlib.numpy.gaussian import GaussianDropout
from dropoutlib.numpy.nn import Dropout, Linear, Module, ReLU, Sequential
from dropoutlib.numpy.optim import SGD
from dropoutlib.protocol import Split, dead_unit_fraction, relative_distance, validation_split
from dropoutlib.train import evaluate, minibatches, train_step

__all__ = [
    "BASE_CONFIG",
    "PROTOCOL_CONFIG",
    "Checkpointed",
    "Progress",
    "Results",
    "digits",
    "digits_split",
    "load_results",
    "make_mlp",
    "make_optimizer",
    "point_rng",
    "single_thread",
    "train_checkpointed",
    "train_classifier",
]

#: Settings shared by the classification experiments (the ``--quick`` form overrides a few).
BASE_CONFIG: dict[str, Any] = {
    "data": "digits, test_size=0.5 (898 train / 899 test), split seed 0",
    "hidden": 256,
    "layers": 2,
    "lr": 0.01,
    "momentum": 0.9,
    "batch_size": 32,
    "steps": 2000,
    "max_norm": 3.0,
}


#: Settings of the experiments run under the protocol (:mod:`dropoutlib.protocol`): a validation
#: split carved from the training half, SGD for a fixed number of steps with a checkpoint every
#: ``eval_every`` steps, and the checkpoint with the lowest validation error kept.
PROTOCOL_CONFIG: dict[str, Any] = {
    "data": "digits, test_size=0.5 (898 train / 899 test, split seed 0); validation: a "
    "stratified 0.2 of the training half (seed 0), 719 train / 179 validation",
    "validation_fraction": 0.2,
    "split_seed": 0,
    "hidden": 256,
    "layers": 2,
    "momentum": 0.9,
    "batch_size": 32,
    "max_norm": 3.0,
    "steps": 2000,
    "eval_every": 50,
}


@contextmanager
def single_thread() -> Any:
    """Limit BLAS to one thread: faster for these small matrices and run-to-run deterministic."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def point_rng(seed: int, setting: dict[str, Any]) -> np.random.Generator:
    """The generator of one point: seeded by the seed and a stable hash of the setting."""
    key = zlib.crc32(json.dumps(setting, sort_keys=True).encode())
    return np.random.default_rng([int(seed), key])


def digits() -> Dataset:
    """The digits split used by every experiment (half train, half test)."""
    return load_digits(test_size=0.5, seed=0)


@functools.lru_cache(maxsize=2)
def _digits_split(fraction: float, seed: int) -> Split:
    return validation_split(digits(), fraction=fraction, rng=np.random.default_rng(seed))


def digits_split(config: dict[str, Any]) -> Split:
    """The protocol's split of :func:`digits`: training part, validation part, held-out test.

    Cached: the split is a pure function of ``config["validation_fraction"]`` and
    ``config["split_seed"]``; its arrays are read-only.
    """
    return _digits_split(float(config["validation_fraction"]), int(config["split_seed"]))


@dataclass
class Checkpointed:
    """A network trained by :func:`train_checkpointed`, restored to its best checkpoint.

    Attributes
    ----------
    model : Module
        The network with the weights of the checkpoint of lowest validation error.
    best_step : int
        Number of SGD steps at that checkpoint (0 = the untrained network).
    val_error, val_loss : float
        Validation error and loss there (evaluation mode).
    train_error : float
        Error on the training part there (evaluation mode).
    val_errors : list of float
        Validation error at every checkpoint (steps 0, eval_every, 2 eval_every, ...).
    dead_end, dead_best : list of float
        :func:`~dropoutlib.protocol.dead_unit_fraction` of each ReLU layer on the training
        part, after the last step and at the kept checkpoint.
    distance : list of float
        :func:`~dropoutlib.protocol.relative_distance` of each Linear layer at the checkpoint.
    """

    model: Module
    best_step: int
    val_error: float
    val_loss: float
    train_error: float
    val_errors: list[float]
    dead_end: list[float]
    dead_best: list[float]
    distance: list[float]

    def summary(self) -> dict[str, Any]:
        """The scalar diagnostics as a results row (rounded for the JSON file)."""
        return {
            "best_step": self.best_step,
            "val_error": self.val_error,
            "val_loss": round(self.val_loss, 6),
            "train_error": self.train_error,
            "dead_end": [round(v, 4) for v in self.dead_end],
            "dead_best": [round(v, 4) for v in self.dead_best],
            "distance": [round(v, 4) for v in self.distance],
        }


def train_checkpointed(
    model: Module,
    split: Split,
    config: dict[str, Any],
    *,
    lr: float,
    order: np.random.Generator,
    x_train: np.ndarray | None = None,
    y_train: np.ndarray | None = None,
) -> Checkpointed:
    r"""Train for ``config["steps"]`` SGD steps; keep the checkpoint of lowest validation error.

    SGD with momentum ``config["momentum"]``, learning rate ``lr`` and the max-norm radius
    ``config["max_norm"]``; mini-batches of ``config["batch_size"]`` in an order drawn from
    ``order``. Every ``config["eval_every"]`` steps (and before the first) the network is
    evaluated on the validation part in evaluation mode; with :math:`E_v(t)` and
    :math:`L_v(t)` its error and loss after :math:`t` steps, the kept checkpoint is

    .. math::

       t^\star = \arg\min_t\, \bigl(E_v(t), L_v(t)\bigr) \quad\text{(lexicographic)},

    the validation error deciding and the loss breaking its ties (the error of 179 examples
    moves in steps of 1/179). Selecting on the *error* rather than the loss matters for heavy
    dropout: with a small keep probability the weight-scaled network's loss can rise while its
    error still falls. The test set is not read. ``x_train``/``y_train`` replace the split's
    training part (a subset of it, for the data-size sweep).
    """
    x = split.x_train if x_train is None else x_train
    y = split.y_train if y_train is None else y_train
    opt = SGD(
        model.parameters(), lr=lr, momentum=config["momentum"], max_norm=config.get("max_norm")
    )
    steps, every = int(config["steps"]), int(config["eval_every"])
    batch = min(int(config["batch_size"]), len(y))
    initial = [m.weight.data.copy() for m in model.modules() if isinstance(m, Linear)]

    def check() -> tuple[float, float]:
        loss, acc = evaluate(model, split.x_val, split.y_val)
        return 1.0 - acc, loss

    best = check()
    val_errors = [best[0]]
    best_step, saved = 0, [p.data.copy() for p in model.parameters()]
    done = 0
    with np.errstate(over="ignore", invalid="ignore"):
        while done < steps:
            for idx in minibatches(len(y), batch, rng=order):
                train_step(model, x[idx], y[idx], opt)
                done += 1
                if done % every == 0 or done == steps:
                    score = check()
                    val_errors.append(score[0])
                    if score < best:
                        best, best_step = score, done
                        saved = [p.data.copy() for p in model.parameters()]
                if done == steps:
                    break
    dead_end = dead_unit_fraction(model, x)
    for p, w in zip(model.parameters(), saved, strict=True):
        p.data[...] = w
    return Checkpointed(
        model, best_step, float(best[0]), float(best[1]),
        float(1.0 - evaluate(model, x, y)[1]), [float(v) for v in val_errors],
        dead_end, dead_unit_fraction(model, x), relative_distance(model, initial),
    )  # fmt: skip


def make_mlp(
    n_in: int,
    hidden: Sequence[int],
    n_out: int,
    *,
    p_input: float = 0.0,
    p_hidden: float = 0.0,
    noise: str = "bernoulli",
    rng: np.random.Generator,
) -> Sequential:
    """A ReLU network ``n_in -> hidden... -> n_out`` with dropout on the input and after each
    hidden ReLU (``noise="gaussian"`` uses :class:`~dropoutlib.numpy.gaussian.GaussianDropout`
    with the same ``p``). A dropout layer with ``p = 0`` is left out."""
    if noise not in ("bernoulli", "gaussian"):
        raise ValueError(f"noise must be 'bernoulli' or 'gaussian', but got {noise!r}")
    drop = Dropout if noise == "bernoulli" else GaussianDropout

    layers: list[Module] = []
    if p_input > 0:
        layers.append(drop(p_input, rng=rng))
    width = n_in
    for h in hidden:
        layers += [Linear(width, h, rng=rng), ReLU()]
        if p_hidden > 0:
            layers.append(drop(p_hidden, rng=rng))
        width = h
    layers.append(Linear(width, n_out, rng=rng))
    return Sequential(*layers)


def train_classifier(
    model: Module,
    data: Dataset,
    config: dict[str, Any],
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Train for ``config["steps"]`` mini-batch updates (SGD with momentum and the max-norm
    constraint ``config["max_norm"]``); return the classification errors ``(train, test)`` in
    evaluation mode."""
    opt = make_optimizer(model, config)
    n, steps, done = len(data.y_train), int(config["steps"]), 0
    batch = min(int(config["batch_size"]), n)
    while done < steps:
        for idx in minibatches(n, batch, rng=rng):
            train_step(model, data.x_train[idx], data.y_train[idx], opt)
            done += 1
            if done == steps:
                break
    train_err = 1.0 - evaluate(model, data.x_train, data.y_train)[1]
    test_err = 1.0 - evaluate(model, data.x_test, data.y_test)[1]
    return float(train_err), float(test_err)


def make_optimizer(model: Module, config: dict[str, Any]) -> SGD:
    """SGD with momentum and max-norm as in the paper's recipe, from the configuration."""
    return SGD(
        model.parameters(),
        lr=config["lr"],
        momentum=config["momentum"],
        max_norm=config.get("max_norm"),
    )


class Progress:
    """A minimal progress bar on stderr: ``name [#####.....] 12/54  31 s``."""

    def __init__(self, total: int, name: str, stream: TextIO | None = None, width: int = 30):
        self.total, self.name, self.width = max(total, 1), name, width
        self.stream = sys.stderr if stream is None else stream
        self.done, self.start = 0, time.perf_counter()
        self._draw()

    def _draw(self) -> None:
        filled = int(self.width * self.done / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.perf_counter() - self.start
        end = "\n" if self.done >= self.total else ""
        self.stream.write(f"\r{self.name} [{bar}] {self.done}/{self.total} {elapsed:5.0f} s{end}")
        self.stream.flush()

    def update(self, n: int = 1) -> None:
        self.done += n
        self._draw()


@dataclass
class Results:
    """A tidy table of one experiment: one dict per row, plus how it was produced.

    Attributes
    ----------
    name : str
        The experiment's name (as given on the command line).
    rows : list of dict
        One row per (seed, setting[, k]): the setting's fields, ``seed`` and the measured
        errors (``train_error``, ``test_error`` or the experiment's own columns).
    config : dict
        The configuration used (steps, widths, learning rate, ...).
    seeds : list of int
    settings : list of dict
    meta : dict
        ``command``, ``versions``, ``quick``, ``seconds``.
    extras : dict
        Arrays that are not rows (histograms, feature images), as nested lists.
    """

    name: str
    rows: list[dict[str, Any]]
    config: dict[str, Any]
    seeds: list[int]
    settings: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    def column(self, key: str, **where: Any) -> np.ndarray:
        """Values of ``key`` in the rows matching every ``field=value`` in ``where``."""
        return np.array([r[key] for r in self.select(**where)])

    def select(self, **where: Any) -> list[dict[str, Any]]:
        """The rows whose fields equal the given values."""
        return [r for r in self.rows if all(r.get(k) == v for k, v in where.items())]

    def to_json(self) -> str:
        payload = {
            "name": self.name,
            "meta": self.meta,
            "config": self.config,
            "seeds": self.seeds,
            "settings": self.settings,
            "rows": self.rows,
            "extras": self.extras,
        }
        return json.dumps(payload, indent=1, sort_keys=False) + "\n"

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def from_json(cls, text: str) -> Results:
        d = json.loads(text)
        return cls(
            d["name"], d["rows"], d["config"], d["seeds"], d["settings"], d["meta"], d["extras"]
        )


def load_results(name_or_path: str | Path) -> Results:
    """Load a results file: a path, or the name of a file committed in ``dropoutlib/results``."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.exists():
        return Results.from_json(path.read_text())
    text = resources.files("dropoutlib").joinpath("results", f"{name_or_path}.json").read_text()
    return Results.from_json(text)


def versions() -> dict[str, str]:
    import dropoutlib

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "dropoutlib": dropoutlib.__version__,
        "machine": platform.machine(),
    }


def run_grid(
    name: str,
    point: Callable[[int, dict[str, Any], dict[str, Any]], tuple[list[dict], dict]],
    settings: list[dict[str, Any]],
    seeds: Iterable[int],
    config: dict[str, Any],
    *,
    progress: bool,
    extras_seed: int | None = None,
) -> Results:
    """Run ``point(seed, setting, config)`` for every seed and setting; collect the rows.

    ``point`` returns ``(rows, extras)``; the extras of ``extras_seed`` (default: the first
    seed) are kept under the key ``f"{index of setting}"``.
    """
    seeds = [int(s) for s in seeds]
    extras_seed = seeds[0] if extras_seed is None else extras_seed
    bar = Progress(len(seeds) * len(settings), name) if progress else None
    rows: list[dict[str, Any]] = []
    extras: dict[str, Any] = {}
    start = time.perf_counter()
    with single_thread():
        for seed in seeds:
            for i, setting in enumerate(settings):
                new_rows, new_extras = point(seed, setting, config)
                rows += new_rows
                if seed == extras_seed and new_extras:
                    extras[str(i)] = new_extras
                if bar:
                    bar.update()
    meta = {"seconds": round(time.perf_counter() - start, 1), "versions": versions()}
    return Results(name, rows, dict(config), seeds, settings, meta, extras)
