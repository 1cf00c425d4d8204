r"""Dropout as an ensemble: Monte Carlo model averaging, weight scaling, and exact enumeration.

A network with :math:`n` droppable units defines :math:`2^n` *thinned* networks that share
weights; mask :math:`m` has probability :math:`P(m) = \prod_i (1-p)^{m_i} p^{1-m_i}`. Three
ways to predict with the ensemble:

- **weight scaling** (the paper's test-time rule): one deterministic pass with every unit
  present, the network in evaluation mode (:func:`weight_scaling_proba`);
- **Monte Carlo averaging**: average the class probabilities of :math:`k` sampled thinned
  networks, :math:`\frac1k \sum_{s=1}^k \mathrm{softmax}(f_{m_s}(x))`
  (:func:`mc_dropout_proba`), all :math:`k` passes batched into one;
- **exact enumeration** over all :math:`2^n` masks of one dropout layer, giving the
  arithmetic mean :math:`\sum_m P(m)\,\pi_m` and the normalised geometric mean
  :math:`\prod_m \pi_m^{P(m)} / Z` of the thinned networks' probabilities
  (:func:`exact_mask_ensemble`). For a single softmax layer after the dropout, the normalised
  geometric mean equals the weight-scaled prediction exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from dropoutlib._validation import check_generator
from dropoutlib.numpy.nn import (
    Dropout,
    Module,
    Sequential,
    log_softmax,
    softmax,
    stochastic_modules,
)

__all__ = [
    "MaskEnsemble",
    "enumerate_masks",
    "exact_mask_ensemble",
    "mc_dropout_proba",
    "mc_error_curve",
    "mc_outputs",
    "weight_scaling_proba",
]

#: Largest number of activations (samples x rows x widest layer) one batched pass may hold.
_MAX_ELEMENTS = 1 << 23


@contextmanager
def _mode(model: Module, training: bool, rng: np.random.Generator | None = None) -> Iterator[None]:
    """Temporarily set the mode (and the generator of every stochastic layer); restore both."""
    saved_modes = [(m, m.training) for m in model.modules()]
    stochastic = stochastic_modules(model)
    saved_rngs = [m.rng for m in stochastic]
    try:
        model.train(training)
        if rng is not None:
            for m in stochastic:
                m.rng = rng
        yield
    finally:
        for m, mode in saved_modes:
            m.training = mode
        for m, r in zip(stochastic, saved_rngs, strict=True):
            m.rng = r


def weight_scaling_proba(model: Module, x: np.ndarray) -> np.ndarray:
    """Class probabilities of the deterministic network (evaluation mode), shape ``(N, C)``."""
    with _mode(model, training=False):
        return softmax(model(x))


def _widest(model: Module, n_features: int) -> int:
    widths = [n_features]
    for m in model.modules():
        out = getattr(m, "out_features", None)
        if out is not None:
            widths.append(int(out))
    return max(widths)


def _check_samples(samples: object) -> int:
    if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 1:
        raise ValueError(f"samples must be a positive integer, but got {samples!r}")
    return int(samples)


def mc_outputs(
    model: Module, x: np.ndarray, samples: int, *, rng: np.random.Generator
) -> np.ndarray:
    r"""Raw outputs of ``samples`` stochastic passes, shape ``(samples, N, out)``.

    The regression counterpart of :func:`mc_dropout_proba` (which
    applies the softmax): the input is tiled ``samples`` times, :math:`(T N, D)`, and the
    network runs once in training mode, so row block :math:`t` is the output of the sampled
    network :math:`\hat\omega_t`. Only memory-sized blocks of samples are looped over.

    Parameters
    ----------
    model : Module
        A network with stochastic layers (Bernoulli or Gaussian dropout, any layer keeping its
        generator in ``rng``); its mode and those layers' generators are restored on return.
    x : numpy.ndarray
        Inputs of shape ``(N, D)``.
    samples : int
        :math:`T \ge 1`.
    rng : numpy.random.Generator
        Draws every mask and every noise value (it temporarily replaces the layers' own
        generators, which are neither used nor advanced).
    """
    rng = check_generator(rng)
    samples = _check_samples(samples)
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (N, D), but got shape {x.shape}")
    n = x.shape[0]
    block = max(1, _MAX_ELEMENTS // max(1, n * _widest(model, x.shape[1])))
    out = []
    with _mode(model, training=True, rng=rng):
        for start in range(0, samples, block):
            count = min(block, samples - start)
            out.append(model(np.tile(x, (count, 1))).reshape(count, n, -1))
    return np.concatenate(out, axis=0)


def mc_dropout_proba(
    model: Module, x: np.ndarray, samples: int, *, rng: np.random.Generator
) -> np.ndarray:
    r"""Class probabilities of ``samples`` thinned networks, shape ``(samples, N, C)``.

    The input is tiled ``samples`` times along the batch axis, :math:`(k \cdot N, D)`, and the
    network runs once in training mode: every row gets its own independent masks, so row block
    :math:`s` is the prediction of thinned network :math:`m_s`. There is no Python loop over
    the samples (only over memory-sized blocks of them when :math:`k N \times` width is large).
    The mean over axis 0 is the Monte Carlo model average; use ``np.cumsum`` over axis 0 for
    the average of the first :math:`k` samples for every :math:`k` at once. It is
    :func:`mc_outputs` followed by a row-wise softmax.

    Parameters
    ----------
    model : Module
        A network with stochastic layers (:class:`~dropoutlib.numpy.nn.Dropout`,
        :class:`~dropoutlib.numpy.gaussian.GaussianDropout`, or any layer that keeps its
        generator in ``rng``, see :func:`~dropoutlib.numpy.nn.stochastic_modules`); its mode
        and those layers' generators are restored on return.
    x : numpy.ndarray
        Inputs of shape ``(N, D)``.
    samples : int
        Number :math:`k \ge 1` of sampled thinned networks.
    rng : numpy.random.Generator
        Draws all masks and noise: it temporarily replaces the generator of every stochastic
        layer, so the result depends only on ``model``, ``x``, ``samples`` and the state of
        ``rng`` (the layers' own generators are neither used nor advanced).
    """
    return softmax(mc_outputs(model, x, samples, rng=rng))


def mc_error_curve(
    model: Module,
    x: np.ndarray,
    y: np.ndarray,
    ks: list[int] | np.ndarray,
    *,
    rng: np.random.Generator,
) -> np.ndarray:
    r"""Classification error of the Monte Carlo average of the first :math:`k` samples, per k.

    One set of :math:`\max k` thinned networks is drawn; the error for :math:`k` uses the
    running mean of the first :math:`k` (so the curve is one realisation, as in the paper's
    Figure 11). Returns a float array aligned with ``ks``.
    """
    ks = np.asarray(ks, dtype=int)
    probs = mc_dropout_proba(model, x, int(ks.max()), rng=rng)
    running = np.cumsum(probs, axis=0)[ks - 1]  # (len(ks), N, C); scaling by 1/k is irrelevant
    return (running.argmax(axis=-1) != np.asarray(y)[None, :]).mean(axis=1)


def enumerate_masks(n: int) -> np.ndarray:
    """All :math:`2^n` keep masks of ``n`` units as a boolean array of shape ``(2**n, n)``.

    Examples
    --------
    >>> enumerate_masks(2).astype(int).tolist()
    [[0, 0], [0, 1], [1, 0], [1, 1]]
    """
    if not 0 <= n <= 20:
        raise ValueError(f"n must be in [0, 20] to enumerate 2**n masks, but got {n}")
    codes = np.arange(2**n)[:, None]
    return ((codes >> np.arange(n - 1, -1, -1)) & 1).astype(bool)


@dataclass(frozen=True)
class MaskEnsemble:
    """Exact ensemble predictions over all masks of one dropout layer.

    Attributes
    ----------
    arithmetic : numpy.ndarray
        :math:`\\sum_m P(m)\\, \\pi_m(x)`, shape ``(N, C)``.
    geometric : numpy.ndarray
        :math:`\\prod_m \\pi_m(x)^{P(m)}` renormalised over classes, shape ``(N, C)``.
    n_masks : int
        :math:`2^n`, the number of masks enumerated (those with :math:`P(m) = 0` included).
    """

    arithmetic: np.ndarray
    geometric: np.ndarray
    n_masks: int


def exact_mask_ensemble(model: Sequential, x: np.ndarray) -> MaskEnsemble:
    r"""Average the predictions of all :math:`2^n` thinned networks of ``model``, weighted by P(m).

    ``model`` must be a :class:`~dropoutlib.numpy.nn.Sequential` with exactly one
    :class:`~dropoutlib.numpy.nn.Dropout` layer of width :math:`n \le 20`. The layers before
    it run once (deterministically); the layers after it run on all :math:`2^n` masked copies
    in one batch. In log space the normalised geometric mean is

    .. math::

       \begin{aligned}
       & \log G_c = \sum_m P(m)\, \log \pi_{m,c}, \\
       & \mathrm{NGM}_c = \frac{G_c}{\sum_{c'} G_{c'}} \\
       & \quad = \mathrm{softmax}_c\Bigl(\sum_m P(m)\, \log \pi_{m}\Bigr).
       \end{aligned}

    Masks with :math:`P(m) = 0` are members of neither mean and are not evaluated. They exist
    only for :math:`p \in \{0, 1\}`: with :math:`p = 0` the one member is the full network, and
    with :math:`p = 1` (the scale :math:`1/(1-p)` is then undefined, but no unit survives to be
    scaled) it is the network whose dropout layer outputs zeros, which is also what every
    training-mode pass computes.
    """
    layers = model.layers
    where = [i for i, layer in enumerate(layers) if isinstance(layer, Dropout)]
    if len(where) != 1:
        raise ValueError(f"model must contain exactly one Dropout layer, but has {len(where)}")
    drop = layers[where[0]]
    before, after = Sequential(*layers[: where[0]]), Sequential(*layers[where[0] + 1 :])
    with _mode(model, training=False):
        h = before(x) if len(before) else x
        n_rows, n = h.shape
        all_masks = enumerate_masks(n)
        keep = 1.0 - drop.p
        prob = np.prod(np.where(all_masks, keep, drop.p), axis=1)  # P(m), sums to 1
        members = prob > 0  # every mask, except for p in {0, 1}: then the one mask of P = 1
        masks, prob = all_masks[members], prob[members]
        scale = 1.0 / keep if drop.scaling == "inverted" and keep > 0 else 1.0
        thinned = (masks[:, None, :] * h[None, :, :] * scale).astype(h.dtype)
        logits = after(thinned.reshape(-1, n)).reshape(len(masks), n_rows, -1)
    logp = log_softmax(logits.astype(np.float64))
    arithmetic = np.einsum("m,mnc->nc", prob, np.exp(logp))
    geometric = softmax(np.einsum("m,mnc->nc", prob, logp))
    return MaskEnsemble(arithmetic=arithmetic, geometric=geometric, n_masks=len(all_masks))
