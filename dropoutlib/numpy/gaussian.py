r"""Gaussian dropout in NumPy: multiplicative noise with the mean and variance of dropout.

Inverted Bernoulli dropout multiplies each input by :math:`b_i / (1 - p)` with
:math:`b_i \sim \mathrm{Bernoulli}(1 - p)`, a factor with mean 1 and variance
:math:`p / (1 - p)`. Gaussian dropout (Srivastava et al., 2014, section 10) replaces that
factor by a Gaussian with the same two moments,

.. math::

   \begin{aligned}
   y_i &= r_i\, x_i, \qquad r_i \sim \mathcal N\!\left(1,\ \sigma^2\right), \\
   \sigma^2 &= \frac{p}{1 - p},
   \end{aligned}

so that :math:`\mathbb E[y_i] = x_i` and :math:`\operatorname{Var}[y_i] = \frac{p}{1-p}\,x_i^2`,
exactly as for inverted dropout. At test time the layer is the identity. Here :math:`p` is
the **drop** probability (the paper writes :math:`\sigma^2 = (1 - p)/p` with its keep
probability :math:`p`).
"""

from __future__ import annotations

import numpy as np

from dropoutlib._validation import (
    check_float_array,
    check_generator,
    check_probability,
    check_training,
)
from dropoutlib.numpy.nn import Module

__all__ = ["GaussianDropout", "gaussian_dropout", "gaussian_dropout_backward", "gaussian_noise_std"]


def gaussian_noise_std(p: float) -> float:
    r"""Standard deviation :math:`\sigma = \sqrt{p / (1 - p)}` of the multiplicative noise.

    Parameters
    ----------
    p : float
        Drop probability of the Bernoulli dropout being matched, :math:`0 \le p < 1`.

    Returns
    -------
    float
        :math:`\sqrt{p/(1-p)}`; 1.0 for ``p = 0.5``.

    Raises
    ------
    ValueError
        If ``p`` is outside [0, 1) (at ``p = 1`` the variance is infinite).

    Examples
    --------
    >>> gaussian_noise_std(0.5)
    1.0
    """
    p = check_probability(p)
    if p == 1.0:
        raise ValueError(
            "Gaussian dropout needs p < 1: the matching noise variance p/(1-p) is infinite at p = 1"
        )
    return float(np.sqrt(p / (1.0 - p)))


def gaussian_dropout(
    x: np.ndarray,
    p: float = 0.5,
    *,
    rng: np.random.Generator | None = None,
    training: bool = True,
    return_noise: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    r"""Multiply ``x`` by Gaussian noise :math:`r \sim \mathcal N(1, p/(1-p))` in training.

    Parameters
    ----------
    x : numpy.ndarray
        Input of any shape and a floating dtype; the output has the same dtype.
    p : float, default 0.5
        Drop probability of the Bernoulli dropout whose mean and variance are matched,
        :math:`0 \le p < 1`. ``p = 0`` gives :math:`\sigma = 0`: the output equals ``x``.
    rng : numpy.random.Generator, optional
        Required in training; unused in evaluation.
    training : bool, default True
        Must be a ``bool`` (``TypeError`` otherwise, as in PyTorch). Evaluation returns
        ``x`` itself (the expectation is unchanged, nothing to rescale).
    return_noise : bool, default False
        If true, return ``(y, r)`` with the noise ``r`` needed by
        :func:`gaussian_dropout_backward` (``None`` in evaluation).

    Returns
    -------
    numpy.ndarray or tuple
        ``y`` or ``(y, r)``. ``x`` is never modified.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.ones(3)
    >>> gaussian_dropout(x, 0.5, training=False) is x
    True
    >>> y, r = gaussian_dropout(x, 0.5, rng=np.random.default_rng(0), return_noise=True)
    >>> bool(np.all(y == r * x))
    True
    """
    x = check_float_array(x)
    sigma = gaussian_noise_std(p)
    if not check_training(training):
        return (x, None) if return_noise else x
    rng = check_generator(rng)
    # Draw in float64 then round once to x's dtype, so float16/float32 noise keeps mean 1.
    noise = rng.standard_normal(x.shape)
    noise *= sigma
    noise += 1.0
    noise = noise.astype(x.dtype, copy=False)
    y = np.multiply(x, noise, out=np.empty(x.shape, dtype=x.dtype))  # an array, even 0-d
    return (y, noise) if return_noise else y


def gaussian_dropout_backward(grad_output: np.ndarray, noise: np.ndarray) -> np.ndarray:
    r"""Backward pass: :math:`\partial L/\partial x_i = r_i\, \partial L/\partial y_i`.

    Parameters
    ----------
    grad_output : numpy.ndarray
        :math:`\partial L / \partial y`.
    noise : numpy.ndarray
        The noise ``r`` drawn in the forward pass (``return_noise=True``).

    Returns
    -------
    numpy.ndarray
        :math:`\partial L / \partial x` with the dtype of ``grad_output``.
    """
    grad_output = check_float_array(grad_output, "grad_output")
    noise = check_float_array(noise, "noise")
    if noise.shape != grad_output.shape:
        raise ValueError(
            f"noise has shape {noise.shape} but grad_output has shape {grad_output.shape}; "
            "they must match"
        )
    out = np.empty(grad_output.shape, dtype=grad_output.dtype)  # an array, even 0-d
    return np.multiply(grad_output, noise, out=out, casting="same_kind")


class GaussianDropout(Module):
    r"""Gaussian dropout layer for :mod:`dropoutlib.numpy.nn` networks.

    The drop-in counterpart of :class:`~dropoutlib.numpy.nn.Dropout`: in training mode the
    forward pass draws :math:`r \sim \mathcal N(1, p/(1-p))` from the layer's generator,
    stores it and returns :math:`r \odot x`; the backward pass returns :math:`r \odot g` with
    the stored noise. In evaluation mode the layer is the identity.

    Parameters
    ----------
    p : float, default 0.5
        Drop probability of the Bernoulli dropout whose mean and variance are matched.
    rng : numpy.random.Generator
        Source of the noise (required, keyword-only).
    """

    def __init__(self, p: float = 0.5, *, rng: np.random.Generator) -> None:
        gaussian_noise_std(p)  # validates 0 <= p < 1
        self.p = float(p)
        self.rng = check_generator(rng)
        self.noise: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        y, self.noise = gaussian_dropout(
            x, self.p, rng=self.rng, training=self.training, return_noise=True
        )
        return y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        if self.noise is None:
            return grad
        return gaussian_dropout_backward(grad, self.noise)

    def __repr__(self) -> str:
        return f"GaussianDropout(p={self.p})"
