r"""Dropout at test time: Monte Carlo predictive distributions, their uncertainty and their scores.

Keeping dropout on at prediction time and averaging :math:`T` stochastic passes (Gal &
Ghahramani, 2016) approximates the predictive distribution of a Bayesian network whose
approximate posterior :math:`q(\omega)` is "the weights, with each unit's outgoing weights kept
with probability :math:`1-p`":

.. math::

   p(y \mid x, \mathcal D) \approx \int p(y \mid x, \omega)\, q(\omega)\, d\omega
   \approx \frac1T \sum_{t=1}^T p(y \mid x, \hat\omega_t), \qquad \hat\omega_t \sim q.

**What is averaged** is the *likelihood* (class probabilities, or the Gaussian density of a
regression output), never the logits or the weights.

Predictions (:func:`mc_outputs`; :func:`~dropoutlib.ensemble.mc_dropout_proba` for class
probabilities) draw all :math:`T` passes in one batched forward pass (the input tiled
:math:`T` times, every row with its own masks), in memory-sized blocks when
:math:`T N \times \text{width}` is large. All masks and Gaussian-dropout noise come from the
explicit ``rng``: the result depends on the model, the input, :math:`T` and the generator's
state only.

Classification, for :math:`T` sampled probability vectors :math:`\pi_t` with mean
:math:`\bar\pi`:

- predictive entropy :math:`\mathbb H[\bar\pi] = -\sum_c \bar\pi_c \log \bar\pi_c`
  (:func:`predictive_entropy`, total uncertainty);
- expected entropy :math:`\frac1T\sum_t \mathbb H[\pi_t]` (:func:`expected_entropy`, the
  aleatoric part);
- mutual information :math:`I = \mathbb H[\bar\pi] - \frac1T \sum_t \mathbb H[\pi_t] \ge 0`
  (:func:`mutual_information`; BALD, Houlsby et al. 2011: the epistemic part, the
  disagreement between the sampled networks).

Regression (:func:`regression_predictive`), with model precision :math:`\tau`:

.. math::

   \operatorname{Var}[y] \approx \tau^{-1}
   + \frac1T \sum_t \hat y_t^2 - \Bigl(\frac1T \sum_t \hat y_t\Bigr)^2 ,

the observation noise :math:`\tau^{-1}` plus the spread of the sampled networks (Gal &
Ghahramani 2016, section 4). Without the :math:`\tau^{-1}` term the variance is only the model's
epistemic part. In the paper :math:`\tau = (1-p)\, l^2 / (2 N \lambda)` (:func:`gal_tau`,
prior length-scale :math:`l`, :math:`N` training points, weight decay :math:`\lambda`); in
practice :math:`\tau` is chosen on validation data (:func:`choose_tau`).

Scores: :func:`nll` and :func:`brier` (scikit-learn's ``log_loss`` and ``brier_score_loss``,
with the label set given explicitly so that a test set missing a class is scored correctly),
:func:`reliability` and :func:`ece` (written here: scikit-learn's ``calibration_curve`` is for
binary problems only and has no expected calibration error), :func:`ood_auroc` (scikit-learn's
``roc_auc_score``), :func:`gaussian_nll` and :func:`mixture_nll` for regression.

Training helpers for the chapter's regression: :func:`squared_error` and :func:`fit_regression`.
:class:`SharedMaskDropout` is a deliberately wrong layer for the chapter's exercise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from dropoutlib._validation import check_generator
from dropoutlib.ensemble import mc_dropout_proba, mc_outputs
from dropoutlib.numpy.nn import Dropout, Module
from dropoutlib.numpy.optim import SGD

__all__ = [
    "RegressionPrediction",
    "Reliability",
    "SharedMaskDropout",
    "brier",
    "choose_tau",
    "ece",
    "entropy",
    "expected_entropy",
    "fit_regression",
    "gal_tau",
    "gaussian_nll",
    "mc_dropout_proba",
    "mc_outputs",
    "mixture_nll",
    "mutual_information",
    "nll",
    "ood_auroc",
    "predictive_entropy",
    "regression_predictive",
    "reliability",
    "squared_error",
]


class SharedMaskDropout(Dropout):
    r"""A **deliberately wrong** :class:`~dropoutlib.numpy.nn.Dropout`: one uniform per pass.

    The bug of drawing a single uniform :math:`u` per forward pass (a scalar where a tensor
    of the input's shape was meant) and comparing it with :math:`p`: every unit of every row
    shares one mask, so a pass keeps everything (scaled by :math:`1/(1-p)`) with probability
    :math:`1-p` or drops everything with probability :math:`p`. Each unit is still kept with
    probability :math:`1-p`, so the mean is right, but the units are perfectly correlated.
    Kept for the chapter's exercise; never use it in a model.
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0:
            return super().forward(x)
        keep = bool(self.rng.random() >= self.p)
        self.mask = np.full(x.shape, keep)
        return x * np.asarray(1.0 / (1.0 - self.p) if keep else 0.0, dtype=x.dtype)

    def __repr__(self) -> str:
        return f"SharedMaskDropout(p={self.p})"


# --- classification: uncertainty from T probability vectors ----------------------------------


def _check_probs(probs: np.ndarray, ndim: int, name: str = "probs") -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != ndim:
        shape = "(T, N, C)" if ndim == 3 else "(N, C)"
        raise ValueError(f"{name} must have shape {shape}, but got shape {probs.shape}")
    if probs.size and (probs.min() < 0 or probs.max() > 1):
        raise ValueError(f"{name} must be probabilities in [0, 1]")
    return probs


def entropy(p: np.ndarray) -> np.ndarray:
    r"""Shannon entropy in nats over the last axis, :math:`-\sum_c p_c \log p_c` (0 log 0 = 0)."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=-1)


def predictive_entropy(probs: np.ndarray) -> np.ndarray:
    r""":math:`\mathbb H[\bar\pi]` of the Monte Carlo mean, per row; ``probs`` is ``(T, N, C)``."""
    return entropy(_check_probs(probs, 3).mean(axis=0))


def expected_entropy(probs: np.ndarray) -> np.ndarray:
    r""":math:`\frac1T \sum_t \mathbb H[\pi_t]`, the mean entropy of the sampled networks."""
    return entropy(_check_probs(probs, 3)).mean(axis=0)


def mutual_information(probs: np.ndarray) -> np.ndarray:
    r"""BALD: :math:`\mathbb H[\bar\pi] - \frac1T\sum_t \mathbb H[\pi_t]`, per row, in nats.

    The mutual information between the prediction and the (sampled) weights. It is
    :math:`\ge 0` because entropy is concave (Jensen); round-off below zero is clipped to 0.
    It is zero when every sampled network predicts the same vector, and at most
    :math:`\log C`.
    """
    probs = _check_probs(probs, 3)
    mi = entropy(probs.mean(axis=0)) - entropy(probs).mean(axis=0)
    return np.maximum(mi, 0.0)


# --- regression -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegressionPrediction:
    """Monte Carlo predictive moments of a scalar regression output.

    Attributes
    ----------
    mean : numpy.ndarray
        :math:`\\frac1T\\sum_t \\hat y_t`, shape ``(N,)``.
    epistemic : numpy.ndarray
        :math:`\\frac1T\\sum_t \\hat y_t^2 - \\text{mean}^2` (the spread of the sampled networks,
        divided by :math:`T`, not :math:`T-1`, as in Gal & Ghahramani, section 4).
    noise : float
        :math:`\\tau^{-1}`, the observation-noise variance (0 if ``tau`` is infinite).
    variance : numpy.ndarray
        ``noise + epistemic``: the predictive variance.
    """

    mean: np.ndarray
    epistemic: np.ndarray
    noise: float
    variance: np.ndarray

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.variance)


def _outputs_2d(outputs: np.ndarray) -> np.ndarray:
    y = np.asarray(outputs, dtype=np.float64)
    if y.ndim == 3 and y.shape[2] == 1:
        y = y[:, :, 0]
    if y.ndim != 2:
        raise ValueError(f"outputs must have shape (T, N) or (T, N, 1), but got {y.shape}")
    return y


def _check_tau(tau: float) -> float:
    tau = float(tau)
    if not tau > 0:
        raise ValueError(f"tau (the model precision) must be positive, but got {tau!r}")
    return tau


def regression_predictive(outputs: np.ndarray, tau: float = np.inf) -> RegressionPrediction:
    r"""Predictive mean and variance from :math:`T` sampled outputs (Gal & Ghahramani, sec. 4).

    .. math::

       \begin{aligned}
       \mathbb E[y] &\approx \frac1T\sum_t \hat y_t, \\
       \operatorname{Var}[y] &\approx \tau^{-1} + \frac1T\sum_t \hat y_t^2
       - \mathbb E[y]^2 .
       \end{aligned}

    Parameters
    ----------
    outputs : numpy.ndarray
        Shape ``(T, N)`` or ``(T, N, 1)`` (as :func:`mc_outputs` returns).
    tau : float, default inf
        Model precision :math:`\tau > 0`; the default leaves out the noise term (epistemic
        variance only).
    """
    y = _outputs_2d(outputs)
    noise = 1.0 / _check_tau(tau)
    mean = y.mean(axis=0)
    epistemic = y.var(axis=0)  # the same quantity, without cancellation when |mean| >> spread
    return RegressionPrediction(mean, epistemic, noise, noise + epistemic)


def gal_tau(length_scale: float, p: float, n: int, weight_decay: float) -> float:
    r"""Gal & Ghahramani's model precision :math:`\tau = (1-p)\, l^2 / (2 N \lambda)`.

    Their section 4 writes it with the *keep* probability (their :math:`p`); here ``p`` is the drop
    probability, as everywhere in the book.
    """
    if not 0 <= p < 1:
        raise ValueError(f"p must lie in [0, 1), but got {p!r}")
    if n < 1 or weight_decay <= 0 or length_scale <= 0:
        raise ValueError("length_scale and weight_decay must be positive and n >= 1")
    return (1.0 - p) * length_scale**2 / (2.0 * n * weight_decay)


def gaussian_nll(y: np.ndarray, mean: np.ndarray, variance: np.ndarray) -> float:
    r"""Mean negative log density :math:`\frac12\log(2\pi\sigma^2) + (y-\mu)^2/(2\sigma^2)`."""
    y, mean, var = (np.asarray(a, dtype=np.float64) for a in (y, mean, variance))
    if np.any(var <= 0):
        raise ValueError("variance must be positive")
    return float(np.mean(0.5 * np.log(2 * np.pi * var) + (y - mean) ** 2 / (2 * var)))


def mixture_nll(y: np.ndarray, outputs: np.ndarray, tau: float) -> float:
    r"""Mean negative log-likelihood of the Monte Carlo *mixture* (Gal & Ghahramani's metric).

    .. math::

       \begin{aligned}
       &-\log \frac1T \sum_{t=1}^T \mathcal N\bigl(y;\, \hat y_t,\, \tau^{-1}\bigr) \\
       &\quad = -\operatorname{logsumexp}_t\Bigl(-\tfrac\tau2 (y-\hat y_t)^2\Bigr) \\
       &\qquad + \log T + \tfrac12 \log 2\pi - \tfrac12\log\tau ,
       \end{aligned}

    averaged over the rows; the mixture, not a Gaussian with the moments of
    :func:`regression_predictive`.
    """
    out = _outputs_2d(outputs)
    tau = _check_tau(tau)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if y.shape[0] != out.shape[1]:
        raise ValueError(f"y has {y.shape[0]} rows but outputs have {out.shape[1]}")
    ll = logsumexp(-0.5 * tau * (y[None, :] - out) ** 2, axis=0) - np.log(out.shape[0])
    ll += 0.5 * np.log(tau) - 0.5 * np.log(2 * np.pi)
    return float(-ll.mean())


def choose_tau(y: np.ndarray, outputs: np.ndarray, grid: np.ndarray | list[float]) -> float:
    """The :math:`\\tau` of ``grid`` with the lowest :func:`mixture_nll` on (validation) data."""
    grid = [float(t) for t in grid]
    if not grid:
        raise ValueError("grid must hold at least one tau")
    scores = [mixture_nll(y, outputs, t) for t in grid]
    return grid[int(np.argmin(scores))]


def squared_error(pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    r"""Mean squared error :math:`\frac1N\sum_i (\hat y_i - y_i)^2` and its gradient
    :math:`2(\hat y - y)/N` with respect to ``pred`` (both of shape ``(N, 1)``)."""
    pred = np.asarray(pred)
    target = np.asarray(target, dtype=pred.dtype).reshape(pred.shape)
    diff = pred - target
    return float(np.mean(diff * diff, dtype=np.float64)), (2.0 / diff.shape[0]) * diff


def fit_regression(
    model: Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    lr: float,
    rng: np.random.Generator,
    batch_size: int = 32,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> list[float]:
    """Train ``model`` on squared error with SGD (mini-batches in an order drawn from ``rng``).

    Returns the mean training loss of every epoch (training mode, dropout on). The model's
    dropout layers draw from their own generators; ``rng`` only orders the mini-batches.
    """
    rng = check_generator(rng)
    x = np.asarray(x)
    y = np.asarray(y, dtype=x.dtype).reshape(-1, 1)
    opt = SGD(model.parameters(), lr, momentum=momentum, weight_decay=weight_decay)
    model.train()
    losses = []
    n = len(y)
    for _ in range(int(epochs)):
        order = rng.permutation(n)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            model.zero_grad()
            loss, grad = squared_error(model(x[idx]), y[idx])
            model.backward(grad)
            opt.step()
            total += loss * len(idx)
        losses.append(total / n)
    return losses


# --- scores -----------------------------------------------------------------------------------


def _check_labels(y: np.ndarray, n: int, classes: int) -> np.ndarray:
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"labels must be integers (class indices), but got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), but got {y.shape}")
    if n and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"labels must lie in [0, {classes})")
    return y


def _normalised_rows(probs: np.ndarray) -> np.ndarray:
    """Rows that must sum to 1 within 1e-3, divided by their sum (float64).

    Averages of float32 softmax outputs sum to 1 only up to float32 round-off, which
    scikit-learn's scores reject with a warning; anything further from 1 is a caller's error.
    """
    probs = _check_probs(probs, 2)
    sums = probs.sum(axis=1, keepdims=True)
    if probs.size and np.max(np.abs(sums - 1.0)) > 1e-3:
        raise ValueError("each row of probs must sum to 1 (within 1e-3)")
    return probs / sums


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    r"""Mean negative log-likelihood :math:`-\frac1N\sum_i \log \pi_{i, y_i}` (in nats).

    scikit-learn's ``log_loss`` with ``labels=range(C)``; it clips probabilities to
    :math:`[\epsilon, 1-\epsilon]` (machine epsilon of the dtype) so a confident mistake costs a
    large finite amount instead of infinity. Rows must sum to 1 within 1e-3 and are divided by
    their sum first (float32 round-off).
    """
    from sklearn.metrics import log_loss

    probs = _normalised_rows(probs)
    y = _check_labels(y, probs.shape[0], probs.shape[1])
    return float(log_loss(y, probs, labels=np.arange(probs.shape[1])))


def brier(probs: np.ndarray, y: np.ndarray) -> float:
    r"""Multi-class Brier score :math:`\frac1N\sum_i \sum_c (\pi_{ic} - [y_i = c])^2`, in [0, 2].

    scikit-learn's ``brier_score_loss`` with ``labels=range(C)`` (which, for more than two
    classes, is this sum over classes, not halved).
    """
    from sklearn.metrics import brier_score_loss

    probs = _normalised_rows(probs)
    y = _check_labels(y, probs.shape[0], probs.shape[1])
    return float(brier_score_loss(y, probs, labels=np.arange(probs.shape[1])))


@dataclass(frozen=True)
class Reliability:
    """Reliability-diagram data: top-label confidence against accuracy in equal-width bins.

    Attributes
    ----------
    edges : numpy.ndarray
        ``numpy.linspace(0, 1, bins + 1)``; bin :math:`b` holds confidences in
        :math:`(e_b, e_{b+1}]` (bin 0 also holds 0).
    counts : numpy.ndarray
        Rows per bin.
    confidence, accuracy : numpy.ndarray
        Mean top-label probability and fraction correct per bin (NaN where a bin is empty).
    """

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def ece(self) -> float:
        r""":math:`\sum_b \frac{n_b}{N} |\mathrm{acc}_b - \mathrm{conf}_b|` over non-empty bins."""
        full = self.counts > 0
        weights = self.counts[full] / self.counts.sum()
        return float(np.sum(weights * np.abs(self.accuracy[full] - self.confidence[full])))


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> Reliability:
    r"""Bin the rows by top-label confidence :math:`\max_c \pi_{ic}` (Guo et al., 2017).

    ``bins`` equal-width bins on [0, 1] (Guo et al. use 15), right-closed. Written here because
    scikit-learn's ``calibration_curve`` handles binary problems only.
    """
    probs = _check_probs(probs, 2)
    y = _check_labels(y, probs.shape[0], probs.shape[1])
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"bins must be a positive integer, but got {bins!r}")
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.searchsorted(edges[1:-1], conf, side="left")  # conf in (e_b, e_{b+1}] -> b
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(which, weights=conf, minlength=bins) / counts
        accuracy = np.bincount(which, weights=correct, minlength=bins) / counts
    return Reliability(edges, counts, confidence, accuracy)


def ece(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top label with ``bins`` equal-width bins."""
    return reliability(probs, y, bins).ece


def ood_auroc(score_in: np.ndarray, score_out: np.ndarray) -> float:
    r"""Area under the ROC curve for telling out-of-distribution rows by a score.

    The probability that a random out-of-distribution row scores higher than a random
    in-distribution one (ties count one half): scikit-learn's ``roc_auc_score`` with label 1
    for ``score_out``. 0.5 is chance; higher scores must mean "more uncertain".
    """
    from sklearn.metrics import roc_auc_score

    a = np.asarray(score_in, dtype=np.float64).reshape(-1)
    b = np.asarray(score_out, dtype=np.float64).reshape(-1)
    if not len(a) or not len(b):
        raise ValueError("need at least one in-distribution and one out-of-distribution score")
    labels = np.r_[np.zeros(len(a)), np.ones(len(b))]
    return float(roc_auc_score(labels, np.r_[a, b]))
