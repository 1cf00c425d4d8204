"""Training loop for the NumPy networks: mini-batches, a step, evaluation and a history.

API (stable):

- :func:`minibatches` ``(n, batch_size, *, rng, shuffle=True)``: index arrays of one epoch.
- :func:`train_step` ``(model, x, y, optimizer)``: one forward, backward and update; the loss.
- :func:`evaluate` ``(model, x, y)``: ``(mean loss, accuracy)`` in **evaluation mode**.
- :func:`predict_proba` ``(model, x)``: softmax probabilities in evaluation mode.
- :func:`fit` ``(model, data, optimizer, *, epochs, batch_size, rng, on_epoch_end=None)``:
  returns a :class:`History` (per-epoch train/test loss and accuracy, evaluated in
  evaluation mode after each epoch; entry 0 is before training). It never prints.
- :func:`unit_ablation` ``(model, layer, x, y)``: the loss after silencing each hidden unit.
- :func:`mlp` ``(n_in, widths, n_out, *, rng, p_input=0, p_hidden=0, ..., mask_rng=None)``: a
  ReLU network with dropout on the inputs and after every hidden layer.
- :func:`seed_sweep` ``(data, *, seeds, widths, p_input, p_hidden, lr, momentum, max_norm,
  epochs, batch_size)``: train one fresh network per seed; a list of :class:`History`.
- :func:`blas_threads` ``(n)``: context manager limiting the BLAS library to ``n`` threads.

The model is left in training mode after :func:`fit`; :func:`evaluate` and
:func:`predict_proba` restore whatever mode the model was in.

:func:`fit` and :func:`unit_ablation` run the BLAS on **one thread** by default: the book's
matrices are small (a mini-batch of 32 to 128 rows times a few hundred units), so splitting
each product across threads costs more than it saves, and on a busy machine a multi-threaded
BLAS can be ten times slower than a single thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from dropoutlib._validation import check_generator
from dropoutlib.data import Dataset
from dropoutlib.numpy.functional import Scaling
from dropoutlib.numpy.nn import (
    Dropout,
    Linear,
    Module,
    ReLU,
    Sequential,
    softmax,
    softmax_cross_entropy,
)
from dropoutlib.numpy.optim import SGD

__all__ = [
    "History",
    "blas_threads",
    "evaluate",
    "fit",
    "minibatches",
    "mlp",
    "predict_proba",
    "seed_sweep",
    "train_step",
    "unit_ablation",
]


def blas_threads(n: int | None = 1) -> contextlib.AbstractContextManager:
    """Context manager: limit the BLAS (matrix products) to ``n`` threads inside the block.

    ``None`` leaves the setting alone. Uses ``threadpoolctl`` (a scikit-learn dependency);
    without it, this does nothing.
    """
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def minibatches(
    n: int, batch_size: int, *, rng: np.random.Generator, shuffle: bool = True
) -> Iterator[np.ndarray]:
    """Yield the index arrays of one epoch over ``n`` examples.

    With ``shuffle`` (the default) the order is a fresh permutation drawn from ``rng``; the
    last batch holds the remaining ``n mod batch_size`` examples if that is not zero.
    """
    rng = check_generator(rng)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, but got {batch_size!r}")
    order = rng.permutation(n) if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def train_step(model: Module, x: np.ndarray, y: np.ndarray, optimizer: SGD) -> float:
    """One step of mini-batch SGD on ``(x, y)``; returns the batch loss before the update."""
    optimizer.zero_grad()
    loss, grad = softmax_cross_entropy(model.forward(x), y)
    model.backward(grad)
    optimizer.step()
    return loss


class _EvalMode:
    """Context manager: evaluation mode inside, the previous mode of every module after."""

    def __init__(self, model: Module) -> None:
        self.model = model

    def __enter__(self) -> Module:
        self.modes = [(m, m.training) for m in self.model.modules()]
        return self.model.eval()

    def __exit__(self, *exc: object) -> None:
        for m, mode in self.modes:
            m.training = mode


def evaluate(model: Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``, in evaluation mode.

    The model's previous mode is restored afterwards.
    """
    with _EvalMode(model):
        logits = model.forward(x)
    loss, _ = softmax_cross_entropy(logits, y)
    return loss, float(np.mean(logits.argmax(axis=1) == y))


def predict_proba(model: Module, x: np.ndarray) -> np.ndarray:
    """Class probabilities (softmax of the logits) in evaluation mode."""
    with _EvalMode(model):
        return softmax(model.forward(x))


@dataclass
class History:
    """Per-epoch record of a training run; index 0 is the untrained model.

    Every metric is evaluated in evaluation mode on the full training and test sets after each
    epoch (``train_loss`` is therefore *not* the average of the noisy mini-batch losses, which
    are in ``batch_loss``, one per epoch).
    """

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    batch_loss: list[float] = field(default_factory=list)

    def record(self, epoch: int, model: Module, data: Dataset, batch_loss: float) -> None:
        tr_loss, tr_acc = evaluate(model, data.x_train, data.y_train)
        te_loss, te_acc = evaluate(model, data.x_test, data.y_test)
        self.epoch.append(epoch)
        self.train_loss.append(tr_loss)
        self.train_acc.append(tr_acc)
        self.test_loss.append(te_loss)
        self.test_acc.append(te_acc)
        self.batch_loss.append(batch_loss)

    def as_arrays(self) -> dict[str, np.ndarray]:
        """The history as a dict of float arrays (one entry per recorded epoch)."""
        return {k: np.asarray(v, dtype=float) for k, v in self.__dict__.items()}


def fit(
    model: Module,
    data: Dataset,
    optimizer: SGD,
    *,
    epochs: int,
    batch_size: int,
    rng: np.random.Generator,
    on_epoch_end: Callable[[int, Module, SGD], None] | None = None,
    threads: int | None = 1,
) -> History:
    """Train ``model`` with mini-batch SGD for ``epochs`` passes over ``data.x_train``.

    Parameters
    ----------
    model : Module
        The network (switched to training mode for the updates).
    data : Dataset
        Training and test sets.
    optimizer : SGD
        Optimiser over ``model.parameters()``.
    epochs, batch_size : int
        Number of epochs and mini-batch size.
    rng : numpy.random.Generator
        Shuffles the training set every epoch (dropout masks come from the layers' own
        generators).
    on_epoch_end : callable, optional
        Called as ``on_epoch_end(epoch, model, optimizer)`` after each epoch, e.g. to decay
        the learning rate.
    threads : int or None, default 1
        BLAS threads during training (see :func:`blas_threads`); ``None`` leaves them alone.

    Returns
    -------
    History
        Loss and accuracy on both splits, before training and after every epoch.
    """
    rng = check_generator(rng)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, but got {epochs!r}")
    history = History()
    x, y = data.x_train, data.y_train
    with blas_threads(threads):
        history.record(0, model, data, float("nan"))
        for epoch in range(1, epochs + 1):
            model.train()
            losses = [
                train_step(model, x[idx], y[idx], optimizer)
                for idx in minibatches(len(y), batch_size, rng=rng)
            ]
            history.record(epoch, model, data, float(np.mean(losses)))
            if on_epoch_end is not None:
                on_epoch_end(epoch, model, optimizer)
    model.train()
    return history


def unit_ablation(
    model: Sequential, layer: int, x: np.ndarray, y: np.ndarray, *, threads: int | None = 1
) -> np.ndarray:
    r"""Loss of ``model`` on ``(x, y)`` when each output unit of ``model[layer]`` is silenced.

    ``model[layer]`` must be a :class:`~dropoutlib.numpy.nn.Linear` layer followed (possibly
    after element-wise layers such as ReLU and Dropout) by another Linear layer. Silencing unit
    :math:`j` means forcing its activation to 0, done by zeroing column :math:`j` of the *next*
    Linear layer's weight for one evaluation (ReLU and dropout both map 0 to 0). Evaluated in
    evaluation mode; the weights are restored.

    Returns
    -------
    numpy.ndarray
        ``losses[j]`` = mean cross-entropy with unit :math:`j` removed.
    """
    if not isinstance(model[layer], Linear):
        raise TypeError(f"model[{layer}] must be a Linear layer, but is {model[layer]!r}")
    following = [m for m in model.layers[layer + 1 :] if isinstance(m, Linear)]
    if not following:
        raise ValueError(f"no Linear layer follows model[{layer}]")
    w = following[0].weight.data
    losses = np.empty(w.shape[1])
    with blas_threads(threads):
        for j in range(w.shape[1]):
            saved = w[:, j].copy()
            w[:, j] = 0
            losses[j] = evaluate(model, x, y)[0]
            w[:, j] = saved
    return losses


def mlp(
    n_in: int,
    widths: tuple[int, ...] | list[int],
    n_out: int,
    *,
    rng: np.random.Generator,
    p_input: float = 0.0,
    p_hidden: float = 0.0,
    scaling: Scaling = "inverted",
    dtype: type[np.floating] = np.float32,
    mask_rng: np.random.Generator | None = None,
) -> Sequential:
    """A ReLU network ``n_in -> widths[0] -> ... -> n_out`` with dropout.

    Layout: ``Dropout(p_input)``, then for each hidden width ``Linear, ReLU, Dropout(p_hidden)``,
    then the output ``Linear``. Dropout layers with ``p = 0`` are left out, so ``mlp(...)``
    without dropout is a plain network. All layers draw from ``rng`` (weights, then masks)
    unless ``mask_rng`` is given: then the weights come from ``rng`` and the masks from
    ``mask_rng``, so networks that differ only in their dropout rates start from identical
    weights (the weights are drawn in the same order whatever the rates).
    """
    masks = rng if mask_rng is None else check_generator(mask_rng, "mask_rng")
    layers: list[Module] = []
    if p_input:
        layers.append(Dropout(p_input, rng=masks, scaling=scaling))
    fan_in = n_in
    for width in widths:
        layers += [Linear(fan_in, width, rng=rng, dtype=dtype), ReLU()]
        if p_hidden:
            layers.append(Dropout(p_hidden, rng=masks, scaling=scaling))
        fan_in = width
    layers.append(Linear(fan_in, n_out, rng=rng, dtype=dtype))
    return Sequential(*layers)


def seed_sweep(
    data: Dataset,
    *,
    seeds: tuple[int, ...] | list[int],
    widths: tuple[int, ...] | list[int],
    p_input: float = 0.0,
    p_hidden: float = 0.0,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    max_norm: float | None = None,
    epochs: int = 30,
    batch_size: int = 32,
) -> list[History]:
    """Train one :func:`mlp` per seed on ``data`` with :class:`SGD`; return the histories.

    Seed ``s`` drives everything random in its run (initial weights, masks and batch order)
    through ``np.random.default_rng(s)``, so a sweep is reproducible and runs with different
    seeds differ in all three.
    """
    histories = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        model = mlp(
            data.n_features,
            widths,
            data.n_classes,
            rng=rng,
            p_input=p_input,
            p_hidden=p_hidden,
            dtype=data.x_train.dtype.type,
        )
        opt = SGD(
            model.parameters(),
            lr,
            momentum=momentum,
            weight_decay=weight_decay,
            max_norm=max_norm,
        )
        histories.append(fit(model, data, opt, epochs=epochs, batch_size=batch_size, rng=rng))
    return histories
