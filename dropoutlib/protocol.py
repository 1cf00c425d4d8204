r"""The experiment protocol: how a chapter trains networks so that a skeptic would agree.

Every training experiment in the book follows the same rules, implemented once here:

1. **Validation decides, test reports.** :func:`validation_split` carves a stratified, seeded
   validation set out of the training data. Early stopping (:func:`train_run`) and
   hyper-parameter search (:func:`grid_search`) look only at it. The test set sits inside the
   :class:`Split` and is read only by :func:`evaluate_test`, once per finished run, after
   training.
2. **The budget must not decide the result.** :func:`train_run` stops on validation loss
   (patience, best weights restored) and reports the epochs used and whether the cap was hit;
   :meth:`Budget.doubled` and :func:`same_conclusion` re-run a comparison with twice the budget
   and check that its verdict stands.
3. **Paired seeds.** :func:`seed_streams` gives each seed three independent generators
   (initial weights, data order, dropout masks). :func:`paired_runs` trains every arm of an
   experiment from the same streams, so that within a seed the arms share initialisation and
   mini-batch order and differ only in the treatment.
4. **Calling an effect.** :func:`paired_difference` gives the per-seed differences, their mean,
   standard error and Student-t interval; :attr:`PairedDifference.verdict` calls an effect only
   when the interval excludes zero, and otherwise says "no detectable difference at this size".
   The interval covers the randomness of training on one fixed test set: the test-set sampling
   error of a difference (from the examples on which two arms disagree) is not in it, and its
   95% holds for one comparison, not for a family of them.
   :func:`mean_se` and :func:`binomial_se` give the other error bars.
5. **Diagnose by measurement.** :func:`dead_unit_fraction`, :func:`relative_distance` (how far
   each weight moved from its initial value) and the loss curves stored in every :class:`Run`;
   the max-norm constraint applied by :func:`train_run` counts the rows it actually changed.

API (stable):

- :func:`validation_split` ``(data, *, fraction=0.2, rng)`` -> :class:`Split`
- :class:`Budget` ``(max_epochs, patience)``, ``.doubled()``
- :func:`seed_streams` ``(seed)`` -> :class:`Streams` ``(init, order, masks)``
- :class:`Arm` ``(name, build, max_norm=None, batch_size=32)``; ``build(init, masks)`` returns
  ``(model, optimizer)``
- :func:`train_run` ``(arm, split, seed, budget)`` -> :class:`Run` (never touches the test set)
- :func:`evaluate_test` ``(split, run)``: the test loss and accuracy of a finished run, once
- :func:`paired_runs` ``(arms, split, seeds, budget, *, test=True)`` -> ``{name: [Run, ...]}``
- :func:`grid_search` ``(make_arm, grid, split, seeds, budget, *, score="val_loss")`` ->
  :class:`GridSearch` (every grid point's validation scores, and the winner)
- :func:`mean_se`, :func:`paired_difference`, :func:`compare`, :func:`binomial_se`,
  :func:`same_conclusion`
- :func:`dead_unit_fraction`, :func:`linear_weights`, :func:`relative_distance`,
  :func:`project_rows`
- :func:`format_table` ``(rows, columns=None)``: a list of dicts as an aligned text table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any, Literal

import numpy as np
from scipy import stats as _st

from dropoutlib._validation import check_generator
from dropoutlib.data import Dataset, standardize
from dropoutlib.numpy.nn import Linear, Module, ReLU
from dropoutlib.numpy.optim import SGD, max_norm_
from dropoutlib.train import blas_threads, evaluate, minibatches, train_step

__all__ = [
    "Arm",
    "Budget",
    "GridSearch",
    "MeanSE",
    "PairedDifference",
    "Run",
    "Split",
    "Streams",
    "binomial_se",
    "compare",
    "dead_unit_fraction",
    "evaluate_test",
    "format_table",
    "grid_search",
    "linear_weights",
    "mean_se",
    "paired_difference",
    "paired_runs",
    "project_rows",
    "relative_distance",
    "same_conclusion",
    "seed_streams",
    "train_run",
    "validation_split",
]


# --- 1. splits ----------------------------------------------------------------------------


@dataclass(eq=False)
class Split:
    """Training, validation and (held-out) test data of one experiment.

    Attributes
    ----------
    x_train, y_train : numpy.ndarray
        The examples the networks are trained on.
    x_val, y_val : numpy.ndarray
        The validation examples: early stopping and hyper-parameter choices look only at them.
    n_classes : int
    name : str
    test_evaluations : int
        How many times :func:`evaluate_test` has read the test set (once per finished run).

    The test arrays are kept private (``_x_test``, ``_y_test``): only :func:`evaluate_test`
    reads them, so nothing chosen during training can depend on the test set.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    n_classes: int
    name: str
    _x_test: np.ndarray = field(repr=False)
    _y_test: np.ndarray = field(repr=False)
    test_evaluations: int = 0

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_test(self) -> int:
        return len(self._y_test)

    def __repr__(self) -> str:
        return (
            f"Split({self.name!r}: {len(self.y_train)} train, {len(self.y_val)} validation, "
            f"{self.n_test} test, {self.n_features} features, {self.n_classes} classes)"
        )


def validation_split(data: Dataset, *, fraction: float = 0.2, rng: np.random.Generator) -> Split:
    r"""Carve a stratified validation set out of ``data``'s training set.

    For every class :math:`c` with :math:`n_c` training examples, a uniformly random
    :math:`\operatorname{round}(f\, n_c)` of them (drawn from ``rng``) go to validation, so each
    class keeps its share in both parts. The features are re-standardised (one scalar mean and
    standard deviation, as :func:`dropoutlib.data.standardize`) on the **remaining training
    part only**, and the same transformation is applied to the validation and test sets, so
    neither of them informs any fitted quantity.

    Parameters
    ----------
    data : Dataset
        Training and test sets (the test set is kept, untouched, for :func:`evaluate_test`).
    fraction : float, default 0.2
        Share :math:`f \in (0, 1)` of each class moved to validation.
    rng : numpy.random.Generator
        Chooses the validation examples (fix its seed: the split is part of the experiment).

    Returns
    -------
    Split
    """
    rng = check_generator(rng)
    if isinstance(fraction, bool) or not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"fraction must lie in (0, 1), but got {fraction!r}")
    y = np.asarray(data.y_train)
    val_parts = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = round(float(fraction) * len(idx))
        val_parts.append(rng.permutation(idx)[:k])
    val = np.sort(np.concatenate(val_parts))
    if len(val) == 0 or len(val) == len(y):
        raise ValueError(f"fraction={fraction} leaves an empty training or validation part")
    train = np.setdiff1d(np.arange(len(y)), val)
    dtype = data.x_train.dtype
    x_train, x_val, mean, std = standardize(data.raw_train[train], data.raw_train[val])
    x_test = (data.raw_test - mean) / std
    arrays = [np.ascontiguousarray(a, dtype=dtype) for a in (x_train, x_val, x_test)]
    for a in arrays:
        a.flags.writeable = False
    return Split(
        arrays[0], y[train], arrays[1], y[val], data.n_classes,
        f"{data.name}, validation {fraction:g}", arrays[2], np.asarray(data.y_test),
    )  # fmt: skip


# --- 2. budgets, seeds and arms --------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """The training budget of an early-stopped run.

    Attributes
    ----------
    max_epochs : int
        Cap on the number of epochs.
    patience : int
        Stop after this many epochs without a new best validation score.
    monitor : {"val_loss", "val_acc"}, default "val_loss"
        The score: the lowest validation loss (the protocol's default), or the highest
        validation accuracy (a control for networks whose loss and accuracy disagree).
    """

    max_epochs: int
    patience: int
    monitor: Literal["val_loss", "val_acc"] = "val_loss"

    def __post_init__(self) -> None:
        for name in ("max_epochs", "patience"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise ValueError(f"{name} must be a positive integer, but got {v!r}")
        if self.monitor not in ("val_loss", "val_acc"):
            raise ValueError(f"monitor must be 'val_loss' or 'val_acc', got {self.monitor!r}")

    def doubled(self) -> Budget:
        """Twice the cap and twice the patience: the control that the budget did not decide."""
        return Budget(2 * self.max_epochs, 2 * self.patience, self.monitor)


@dataclass(frozen=True)
class Streams:
    """The three independent random streams of one seed."""

    init: np.random.Generator
    order: np.random.Generator
    masks: np.random.Generator


def seed_streams(seed: int) -> Streams:
    """Fresh generators for one seed: ``default_rng([seed, k])`` for k = 0, 1, 2.

    ``init`` draws the initial weights, ``order`` the mini-batch order of every epoch and
    ``masks`` the dropout masks. Because they are separate, an arm that draws no masks (a plain
    network) still sees the same initial weights and the same batches as a dropout arm.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, but got {seed!r}")
    init, order, masks = (np.random.default_rng([int(seed), k]) for k in range(3))
    return Streams(init, order, masks)


Radii = float | Sequence[float | None] | None


@dataclass(frozen=True)
class Arm:
    """One treatment of an experiment.

    Attributes
    ----------
    name : str
    build : callable
        ``build(init, masks) -> (model, optimizer)``: draw the initial weights from ``init``
        and give the dropout layers ``masks`` (e.g. ``mlp(..., rng=init, mask_rng=masks)``).
        The optimiser must not carry a ``max_norm`` itself: give the radii here instead, so
        that the projections are counted.
    max_norm : float, sequence or None
        Max-norm radius :math:`c` of every Linear layer's incoming weight rows (a float), or
        one radius per Linear layer in order (``None`` leaves a layer free), or no constraint.
    batch_size : int, default 32
    params : dict
        Hyper-parameters to report with the arm (e.g. the grid point).
    """

    name: str
    build: Callable[[np.random.Generator, np.random.Generator], tuple[Module, SGD]]
    max_norm: Radii = None
    batch_size: int = 32
    params: Mapping[str, Any] = field(default_factory=dict)


# --- 3. training with early stopping ------------------------------------------------------


@dataclass(eq=False)
class Run:
    """One trained network of one arm and one seed, with its curves and diagnostics.

    Curves have one entry per epoch, entry 0 being the untrained network; losses and
    accuracies are measured in evaluation mode on the whole set.

    Attributes
    ----------
    arm, seed : str, int
    model : Module
        The network with the weights of ``best_epoch`` restored.
    initial_weights : list of numpy.ndarray
        Copies of the Linear weights before training (for :func:`relative_distance`).
    train_loss, val_loss, val_acc : list of float
    best_epoch : int
        Epoch of the lowest validation loss, or of the highest validation accuracy with
        ``budget.monitor == "val_acc"`` (0 = the untrained network).
    epochs_run : int
    budget : Budget
    stopped : {"patience", "budget", "diverged"}
        Why training ended; ``"budget"`` means the cap, not the validation loss, decided.
    projections, row_checks : int
        Max-norm: rows that a projection actually changed, out of rows checked (rows x steps).
    largest_norm_ratio : float
        Largest :math:`\\|w_i\\| / c` seen before any projection (max-norm only; > 1 binds).
    test_loss, test_acc : float or None
        Filled in by :func:`evaluate_test`.
    """

    arm: str
    seed: int
    model: Module
    initial_weights: list[np.ndarray]
    train_loss: list[float]
    val_loss: list[float]
    val_acc: list[float]
    best_epoch: int
    epochs_run: int
    budget: Budget
    stopped: str
    projections: int = 0
    row_checks: int = 0
    largest_norm_ratio: float = float("nan")
    params: Mapping[str, Any] = field(default_factory=dict)
    test_loss: float | None = None
    test_acc: float | None = None
    n_test: int = 0

    @property
    def best_val_loss(self) -> float:
        return self.val_loss[self.best_epoch]

    @property
    def best_val_acc(self) -> float:
        return self.val_acc[self.best_epoch]


def linear_weights(model: Module) -> list[np.ndarray]:
    """The weight arrays of the model's Linear layers, in order (views, not copies)."""
    return [m.weight.data for m in model.modules() if isinstance(m, Linear)]


def project_rows(weight: np.ndarray, c: float) -> tuple[int, float]:
    r"""Apply :func:`~dropoutlib.numpy.optim.max_norm_` and count what it did.

    Returns ``(changed, ratio)``: the number of rows with :math:`\|w_i\|_2 > c` (exactly the
    rows the projection rescales) and :math:`\max_i \|w_i\|_2 / c` before projecting.
    """
    norms = np.sqrt(np.einsum("ij,ij->i", weight, weight, dtype=np.float64))
    changed = int(np.count_nonzero(norms > c))
    max_norm_(weight, c)
    return changed, float(norms.max() / c)


def _radii(max_norm: Radii, n_linear: int) -> list[float | None]:
    if max_norm is None:
        return [None] * n_linear
    if isinstance(max_norm, int | float | np.floating | np.integer):
        return [float(max_norm)] * n_linear
    radii = list(max_norm)
    if len(radii) != n_linear:
        raise ValueError(f"max_norm gives {len(radii)} radii for {n_linear} Linear layers")
    return radii


def train_run(arm: Arm, split: Split, seed: int, budget: Budget) -> Run:
    r"""Train one arm from one seed's streams, early-stopped on validation loss.

    Each epoch visits the training part in an order drawn from the seed's ``order`` stream,
    one SGD step per mini-batch, then applies the arm's max-norm radii (counting changed rows).
    After each epoch the training and validation losses are measured in evaluation mode.
    With :math:`L_v(e)` the validation loss after epoch :math:`e` and
    :math:`e^\star = \arg\min_{e' \le e} L_v(e')` (the first minimum), training stops when

    .. math::

       \begin{aligned}
       & e - e^\star \ge \text{patience} \\
       \text{or}\quad & e = \text{max\_epochs} \\
       \text{or}\quad & L_v(e)\ \text{is not finite},
       \end{aligned}

    (with ``budget.monitor == "val_acc"``, :math:`e^\star` is the first epoch of highest
    validation accuracy instead), and the weights of epoch :math:`e^\star` are restored (a
    diverged run is thus returned at its last finite epoch, with ``stopped="diverged"``). The
    test set is not read.
    """
    streams = seed_streams(seed)
    model, optimizer = arm.build(streams.init, streams.masks)
    if getattr(optimizer, "max_norm", None) is not None:
        raise ValueError(f"arm {arm.name!r}: give max_norm to the Arm, not to the optimiser")
    layers = [m for m in model.modules() if isinstance(m, Linear)]
    radii = _radii(arm.max_norm, len(layers))
    initial = [w.copy() for w in linear_weights(model)]
    params = model.parameters()
    x, y = split.x_train, split.y_train

    def measure() -> tuple[float, float, float]:
        tr = evaluate(model, x, y)[0]
        vl, va = evaluate(model, split.x_val, split.y_val)
        return tr, vl, va

    tr, vl, va = measure()
    train_loss, val_loss, val_acc = [tr], [vl], [va]

    def improved(epoch: int, best: int) -> bool:
        if budget.monitor == "val_acc":
            return val_acc[epoch] > val_acc[best]
        return val_loss[epoch] < val_loss[best]

    best_epoch, best = 0, [p.data.copy() for p in params]
    projections = row_checks = 0
    ratio = float("nan")
    stopped = "budget"
    # A diverging run overflows to inf/NaN; that is detected and reported as "diverged".
    with blas_threads(1), np.errstate(over="ignore", invalid="ignore"):
        for epoch in range(1, budget.max_epochs + 1):
            model.train()
            for idx in minibatches(len(y), arm.batch_size, rng=streams.order):
                train_step(model, x[idx], y[idx], optimizer)
                for layer, c in zip(layers, radii, strict=True):
                    if c is not None:
                        changed, r = project_rows(layer.weight.data, c)
                        projections += changed
                        row_checks += layer.out_features
                        ratio = r if np.isnan(ratio) else max(ratio, r)
            tr, vl, va = measure()
            train_loss.append(tr)
            val_loss.append(vl)
            val_acc.append(va)
            if not np.isfinite(vl):
                stopped = "diverged"
                break
            if improved(epoch, best_epoch):
                best_epoch, best = epoch, [p.data.copy() for p in params]
            elif epoch - best_epoch >= budget.patience:
                stopped = "patience"
                break
    for p, saved in zip(params, best, strict=True):
        p.data[...] = saved
    model.train()
    return Run(
        arm.name, int(seed), model, initial, train_loss, val_loss, val_acc, best_epoch,
        len(val_loss) - 1, budget, stopped, projections, row_checks, ratio, dict(arm.params),
    )  # fmt: skip


def evaluate_test(split: Split, run: Run) -> Run:
    """Measure a finished run on the test set (once): fills ``test_loss``, ``test_acc``.

    Raises ``RuntimeError`` if the run was already tested: a second look at the test set
    after changing something would turn the test set into a validation set.
    """
    if run.test_loss is not None:
        raise RuntimeError(f"run {run.arm!r} seed {run.seed} was already evaluated on the test set")
    with blas_threads(1):
        run.test_loss, run.test_acc = evaluate(run.model, split._x_test, split._y_test)
    run.n_test = split.n_test
    split.test_evaluations += 1
    return run


def paired_runs(
    arms: Sequence[Arm], split: Split, seeds: Sequence[int], budget: Budget, *, test: bool = True
) -> dict[str, list[Run]]:
    """Train every arm from every seed; within a seed the arms share all random streams.

    Returns ``{arm name: [Run for each seed]}``. With ``test`` (the default) every finished,
    early-stopped run is evaluated on the test set, once, after all training is done.
    """
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"arm names must be distinct, but got {names}")
    runs = {a.name: [train_run(a, split, s, budget) for s in seeds] for a in arms}
    if test:
        for group in runs.values():
            for run in group:
                evaluate_test(split, run)
    return runs


# --- 4. grid search on validation ------------------------------------------------------------


@dataclass(frozen=True)
class GridSearch:
    """Every point of a searched grid with its validation scores, and the winner.

    ``rows`` holds one dict per grid point: the parameters, ``val_loss`` and ``val_acc`` (mean
    over seeds at each run's best epoch), ``best_epoch`` (mean) and ``capped`` (how many runs
    hit the cap or diverged). ``best`` is the parameters of the row with the lowest mean
    validation loss (or highest accuracy, with ``score="val_acc"``).
    """

    rows: list[dict[str, Any]]
    best: dict[str, Any]
    score: str


def grid_search(
    make_arm: Callable[..., Arm],
    grid: Mapping[str, Sequence[Any]],
    split: Split,
    seeds: Sequence[int],
    budget: Budget,
    *,
    score: Literal["val_loss", "val_acc"] = "val_loss",
) -> GridSearch:
    """Train ``make_arm(**point)`` for every point of the product grid; choose on validation.

    The test set is never read. Returns the whole grid (for display) and the winning point.
    """
    if score not in ("val_loss", "val_acc"):
        raise ValueError(f"score must be 'val_loss' or 'val_acc', but got {score!r}")
    keys = list(grid)
    rows = []
    for values in product(*(grid[k] for k in keys)):
        point = dict(zip(keys, values, strict=True))
        runs = [train_run(make_arm(**point), split, s, budget) for s in seeds]
        rows.append(
            {
                **point,
                "val_loss": float(np.mean([r.best_val_loss for r in runs])),
                "val_acc": float(np.mean([r.best_val_acc for r in runs])),
                "best_epoch": float(np.mean([r.best_epoch for r in runs])),
                "capped": sum(r.stopped != "patience" for r in runs),
            }
        )
    scores = np.array([r[score] for r in rows])
    scores = np.where(np.isfinite(scores), scores, np.inf if score == "val_loss" else -np.inf)
    i = int(np.argmin(scores) if score == "val_loss" else np.argmax(scores))
    return GridSearch(rows, {k: rows[i][k] for k in keys}, score)


# --- 5. reporting -----------------------------------------------------------------------


@dataclass(frozen=True)
class MeanSE:
    r"""Mean and standard error :math:`s/\sqrt n` of ``n`` values (one per seed)."""

    mean: float
    se: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.se:.4f}"


def mean_se(values: Sequence[float] | np.ndarray) -> MeanSE:
    r"""Mean :math:`\bar x` and standard error :math:`s/\sqrt n` (sample sd, ``ddof=1``)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"need a 1-d sequence of at least 2 values, but got shape {x.shape}")
    return MeanSE(float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))), len(x))


def binomial_se(accuracy: float, n: int) -> float:
    r"""Binomial standard error of an accuracy measured on ``n`` test examples.

    If each of :math:`n` examples is classified correctly with probability :math:`a`
    independently, the accuracy is a binomial count over :math:`n`, with standard error
    :math:`\sqrt{a(1-a)/n}` (evaluated at the measured accuracy).
    """
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must lie in [0, 1], but got {accuracy!r}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive integer, but got {n!r}")
    return float(np.sqrt(accuracy * (1.0 - accuracy) / n))


@dataclass(frozen=True)
class PairedDifference:
    r"""Per-seed differences ``treated - control`` and their Student-t interval.

    :math:`d_s = t_s - c_s` for each seed :math:`s`, :math:`\bar d`, standard error
    :math:`s_d/\sqrt n` and the interval :math:`\bar d \pm t_{n-1,\,(1+\text{level})/2}\,
    s_d/\sqrt n` (exact if the :math:`d_s` are i.i.d. normal).
    """

    differences: tuple[float, ...]
    mean: float
    se: float
    low: float
    high: float
    level: float

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    @property
    def sign(self) -> int:
        """+1 or -1 if an effect is called (its direction), 0 if not."""
        return 0 if not self.excludes_zero else (1 if self.mean > 0 else -1)

    @property
    def verdict(self) -> str:
        """The protocol's rule in words: an effect only if the interval excludes zero."""
        if not self.excludes_zero:
            return "no detectable difference at this size"
        return "higher" if self.mean > 0 else "lower"

    def __str__(self) -> str:
        pct = f"{100 * self.level:g}%"
        return (
            f"{self.mean:+.4f} ± {self.se:.4f} ({pct} interval [{self.low:+.4f}, "
            f"{self.high:+.4f}], n = {self.n}): {self.verdict}"
        )


def paired_difference(
    treated: Sequence[float] | np.ndarray,
    control: Sequence[float] | np.ndarray,
    *,
    level: float = 0.95,
) -> PairedDifference:
    """Paired comparison of two arms measured on the same seeds (same order)."""
    t = np.asarray(treated, dtype=np.float64)
    c = np.asarray(control, dtype=np.float64)
    if t.shape != c.shape or t.ndim != 1 or len(t) < 2:
        raise ValueError(
            f"need two 1-d sequences of equal length >= 2, but got {t.shape} and {c.shape}"
        )
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), but got {level!r}")
    d = t - c
    m = mean_se(d)
    half = float(_st.t.ppf((1.0 + level) / 2.0, len(d) - 1)) * m.se
    return PairedDifference(tuple(d.tolist()), m.mean, m.se, m.mean - half, m.mean + half, level)


def compare(
    treated: Sequence[Run], control: Sequence[Run], metric: str = "test_acc", *, level: float = 0.95
) -> PairedDifference:
    """:func:`paired_difference` of a :class:`Run` attribute, matching runs by seed."""
    by_seed = {r.seed: r for r in control}
    if sorted(by_seed) != sorted(r.seed for r in treated):
        raise ValueError("the two arms must be run on the same seeds")
    t = [getattr(r, metric) for r in treated]
    c = [getattr(by_seed[r.seed], metric) for r in treated]
    if any(v is None for v in t + c):
        raise ValueError(f"{metric} is missing (evaluate the runs on the test set first)")
    return paired_difference(t, c, level=level)


def same_conclusion(first: PairedDifference, second: PairedDifference) -> bool:
    """Whether two comparisons reach the same verdict (same called direction, or both none)."""
    return first.sign == second.sign


# --- 6. diagnostics ---------------------------------------------------------------------------


def dead_unit_fraction(model: Module, x: np.ndarray) -> list[float]:
    r"""Fraction of each ReLU layer's units that are never active on ``x`` (evaluation mode).

    Unit :math:`j` is dead on the data set when its pre-activation is :math:`\le 0` for every
    row: :math:`\max_i z_{ij} \le 0`. A dead unit passes no gradient to its weights, so
    training cannot revive it through this data.
    """
    relus = [m for m in model.modules() if isinstance(m, ReLU)]
    was = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        model.forward(x)
        return [float(np.mean(~m._positive.any(axis=0))) for m in relus]  # type: ignore[union-attr]
    finally:
        for m, mode in was:
            m.training = mode


def relative_distance(model: Module, initial: Sequence[np.ndarray]) -> list[float]:
    r""":math:`\|W - W_0\|_F / \|W_0\|_F` for each Linear layer (how far training moved it)."""
    weights = linear_weights(model)
    if len(weights) != len(initial):
        raise ValueError(f"{len(initial)} initial weights for {len(weights)} Linear layers")
    return [
        float(np.linalg.norm(w.astype(np.float64) - w0) / np.linalg.norm(w0))
        for w, w0 in zip(weights, initial, strict=True)
    ]


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows of dicts as an aligned text table; floats to 4 significant digits."""
    if not rows:
        return ""
    columns = list(rows[0]) if columns is None else list(columns)

    def fmt(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return f"{v:.4g}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)
