r"""Measuring co-adaptation by single-unit ablation, under the experiment protocol.

Chapter 1 asks whether a network trained without dropout depends more on its individual
hidden units than one trained with dropout. The measurement is the rise of the validation loss
when one unit of the last hidden layer is silenced (:func:`ablation_rises`). A fair comparison
needs three things that a single training run does not give:

- **whole trajectories**: :func:`train_trajectory` trains an :class:`~dropoutlib.protocol.Arm`
  exactly as :func:`~dropoutlib.protocol.train_run` does (same seed streams, same batches,
  same evaluation), but keeps the weights of every epoch, so that one run yields the network
  early-stopped under a budget (:func:`early_stop`, the protocol's rule), under the doubled
  budget, and at any other epoch;
- **a matched-loss control**: :func:`matched_epoch` finds the epoch at which a network's
  validation loss first falls to a target (another network's), so that two networks are
  compared at the same loss level rather than one over-trained and one not;
- **statistics that see both tails**: :func:`ablation_summary` reports the mean rise, the mean
  absolute rise, an upper quantile of the absolute rise and the share of units whose removal
  *lowers* the loss (a negative rise), which a plain mean lets cancel.

API (stable):

- :func:`early_stop` ``(val_loss, budget)`` -> ``(best_epoch, epochs_run, stopped)``
- :func:`train_trajectory` ``(arm, split, seed, *, budget, min_epochs=0)`` -> :class:`Trajectory`
- :func:`matched_epoch` ``(val_loss, target, *, until=None)`` -> int or None
- :func:`last_hidden` ``(model)``, :func:`ablation_rises` ``(model, x, y)``,
  :func:`ablation_summary` ``(rises, *, quantile=0.95)``
- :func:`evaluate_test_model` ``(split, model)``: test loss and accuracy, counted on the split
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dropoutlib.numpy.nn import Linear, Module, Sequential
from dropoutlib.protocol import Arm, Budget, Split, seed_streams
from dropoutlib.train import blas_threads, evaluate, minibatches, train_step, unit_ablation

__all__ = [
    "Trajectory",
    "ablation_rises",
    "ablation_summary",
    "early_stop",
    "evaluate_test_model",
    "last_hidden",
    "matched_epoch",
    "train_trajectory",
]


def early_stop(val_loss: list[float] | np.ndarray, budget: Budget) -> tuple[int, int, str]:
    r"""The protocol's stopping rule applied to a recorded validation-loss curve.

    With :math:`L_v(e)` the loss after epoch :math:`e` (entry 0: the untrained network) and
    :math:`e^\star(e)` the first epoch of the lowest loss up to :math:`e`, training stops at
    the first :math:`e \ge 1` with :math:`e - e^\star(e) \ge` ``patience``, or
    :math:`e =` ``max_epochs``, or a non-finite :math:`L_v(e)`: exactly
    :func:`~dropoutlib.protocol.train_run`'s rule.

    Returns
    -------
    (best_epoch, epochs_run, stopped)
        :math:`e^\star` at the stop, the stop epoch and ``"patience"``, ``"budget"`` or
        ``"diverged"``.

    Raises
    ------
    ValueError
        If the curve ends before the rule stops (the trajectory was too short).
    """
    v = np.asarray(val_loss, dtype=np.float64)
    best = 0
    for epoch in range(1, len(v)):
        if not np.isfinite(v[epoch]):
            return best, epoch, "diverged"
        if v[epoch] < v[best]:
            best = epoch
        elif epoch - best >= budget.patience:
            return best, epoch, "patience"
        if epoch == budget.max_epochs:
            return best, epoch, "budget"
    raise ValueError(f"the curve ({len(v) - 1} epochs) ends before {budget} stops")


@dataclass(eq=False)
class Trajectory:
    """One training run with the weights of every epoch.

    Attributes
    ----------
    arm, seed : str, int
    model : Sequential
        The network; :meth:`at` loads an epoch's weights into it.
    train_loss, val_loss, val_acc : list of float
        Per epoch, entry 0 the untrained network, measured in evaluation mode.
    snapshots : list of list of numpy.ndarray
        ``snapshots[e]``: copies of every parameter after epoch ``e``.
    """

    arm: str
    seed: int
    model: Sequential
    train_loss: list[float]
    val_loss: list[float]
    val_acc: list[float]
    snapshots: list[list[np.ndarray]]

    @property
    def epochs(self) -> int:
        return len(self.val_loss) - 1

    def at(self, epoch: int) -> Sequential:
        """Load the weights of ``epoch`` into ``model`` and return it."""
        if not 0 <= epoch <= self.epochs:
            raise ValueError(f"epoch must lie in [0, {self.epochs}], but got {epoch}")
        for p, saved in zip(self.model.parameters(), self.snapshots[epoch], strict=True):
            p.data[...] = saved
        return self.model

    def stop(self, budget: Budget) -> tuple[int, int, str]:
        """:func:`early_stop` on this trajectory's validation curve."""
        return early_stop(self.val_loss, budget)


def train_trajectory(
    arm: Arm, split: Split, seed: int, *, budget: Budget, min_epochs: int = 0
) -> Trajectory:
    """Train ``arm`` as :func:`~dropoutlib.protocol.train_run` does, keeping every epoch.

    Training continues until :func:`early_stop` with ``budget`` stops **and** at least
    ``min_epochs`` epochs have run (to see an over-trained network too). Pass the largest
    budget of interest (e.g. ``budget.doubled()``): the stop of any smaller budget with no
    larger patience is then inside the trajectory. Max-norm arms are not supported. The test
    set is not read.
    """
    if arm.max_norm is not None:
        raise ValueError("train_trajectory does not apply max-norm; use protocol.train_run")
    streams = seed_streams(seed)
    model, optimizer = arm.build(streams.init, streams.masks)
    if getattr(optimizer, "max_norm", None) is not None:
        raise ValueError(f"arm {arm.name!r}: train_trajectory does not apply max-norm")
    if not isinstance(model, Sequential):
        raise TypeError(f"arm {arm.name!r} must build a Sequential, but built {model!r}")
    params = model.parameters()
    x, y = split.x_train, split.y_train
    train_loss, val_loss, val_acc, snapshots = [], [], [], []

    def record() -> None:
        train_loss.append(evaluate(model, x, y)[0])
        vl, va = evaluate(model, split.x_val, split.y_val)
        val_loss.append(vl)
        val_acc.append(va)
        snapshots.append([p.data.copy() for p in params])

    with blas_threads(1), np.errstate(over="ignore", invalid="ignore"):
        record()
        for epoch in range(1, 2**31):
            model.train()
            for idx in minibatches(len(y), arm.batch_size, rng=streams.order):
                train_step(model, x[idx], y[idx], optimizer)
            record()
            if epoch < min_epochs:
                continue
            try:
                early_stop(val_loss, budget)
            except ValueError:
                continue
            break
    model.train()
    return Trajectory(arm.name, int(seed), model, train_loss, val_loss, val_acc, snapshots)


def matched_epoch(
    val_loss: list[float] | np.ndarray, target: float, *, until: int | None = None
) -> int | None:
    r"""The epoch at which a validation curve first comes down to ``target``.

    Let :math:`e` be the first epoch (up to ``until``) with :math:`L_v(e) \le` ``target``.
    Returns whichever of :math:`e - 1` and :math:`e` has the loss closer to ``target``
    (:math:`e` on a tie), or ``None`` if the curve never comes down to it.
    """
    v = np.asarray(val_loss, dtype=np.float64)
    last = len(v) - 1 if until is None else min(int(until), len(v) - 1)
    below = np.flatnonzero(v[: last + 1] <= target)
    if len(below) == 0:
        return None
    e = int(below[0])
    if e > 0 and abs(v[e - 1] - target) < abs(v[e] - target):
        return e - 1
    return e


def last_hidden(model: Sequential) -> int:
    """Index in ``model.layers`` of the last hidden Linear layer (the one before the output)."""
    linear = [i for i, m in enumerate(model.layers) if isinstance(m, Linear)]
    if len(linear) < 2:
        raise ValueError("the model needs at least one hidden Linear layer")
    return linear[-2]


def ablation_rises(model: Sequential, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    r"""Rise of the loss on ``(x, y)`` when each unit of the last hidden layer is silenced.

    :math:`\Delta_j = L_{-j} - L`, with :math:`L_{-j}` from
    :func:`~dropoutlib.train.unit_ablation` and :math:`L` the intact network's loss (both in
    evaluation mode). A negative :math:`\Delta_j` means that removing unit :math:`j` helps.
    """
    base = evaluate(model, x, y)[0]
    return unit_ablation(model, last_hidden(model), x, y) - base


def ablation_summary(rises: np.ndarray, *, quantile: float = 0.95) -> dict[str, float]:
    r"""Statistics of the ablation rises :math:`\Delta_j` of one network.

    ``mean`` :math:`\bar\Delta`, ``mean_abs`` :math:`\overline{|\Delta|}`, ``q_abs`` the
    ``quantile`` of :math:`|\Delta|` (linear interpolation), ``max`` and ``min``
    :math:`\Delta`, ``frac_negative`` the share of units with :math:`\Delta_j < 0` and
    ``neg_sum`` :math:`\sum_j \min(\Delta_j, 0)`, what the negative tail removes from a sum.
    """
    d = np.asarray(rises, dtype=np.float64)
    if d.ndim != 1 or len(d) == 0:
        raise ValueError(f"rises must be a non-empty 1-d array, but got shape {d.shape}")
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must lie in (0, 1), but got {quantile!r}")
    return {
        "mean": float(d.mean()),
        "mean_abs": float(np.abs(d).mean()),
        "q_abs": float(np.quantile(np.abs(d), quantile)),
        "max": float(d.max()),
        "min": float(d.min()),
        "frac_negative": float(np.mean(d < 0)),
        "neg_sum": float(np.minimum(d, 0.0).sum()),
    }


def evaluate_test_model(split: Split, model: Module) -> tuple[float, float]:
    """Test loss and accuracy of a finished network, counted in ``split.test_evaluations``.

    The counterpart of :func:`~dropoutlib.protocol.evaluate_test` for a network taken from a
    :class:`Trajectory`: call it once per reported network, after every choice is made.
    """
    with blas_threads(1):
        loss, acc = evaluate(model, split._x_test, split._y_test)
    split.test_evaluations += 1
    return loss, acc
