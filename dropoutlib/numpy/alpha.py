r"""SELU and alpha dropout in NumPy (Klambauer et al., 2017), forward and backward.

SELU, with :math:`\lambda \approx 1.0507` and :math:`\alpha \approx 1.6733`,

.. math::

   \operatorname{selu}(x) = \lambda \begin{cases} x & x > 0 \\ \alpha (e^x - 1) & x \le 0,
   \end{cases}

maps a standard normal input to an output of mean 0 and variance 1. Ordinary dropout would
destroy that: zero is not SELU's resting value. Alpha dropout instead sets a dropped unit to
SELU's negative saturation :math:`\alpha' = -\lambda\alpha` and repairs the first two moments
with an affine map. With keep probability :math:`q = 1 - p` and keep mask
:math:`d \sim \mathrm{Bernoulli}(q)`,

.. math::

   \begin{aligned}
   y &= a\,\bigl(x d + \alpha' (1 - d)\bigr) + b, \\
   a &= \bigl(q + \alpha'^2 q (1 - q)\bigr)^{-1/2}, \\
   b &= -a (1 - q)\, \alpha',
   \end{aligned}

which keeps mean 0 and variance 1 for any input of mean 0 and variance 1.
"""

from __future__ import annotations

import math

import numpy as np

from dropoutlib._validation import (
    check_float_array,
    check_generator,
    check_probability,
    check_training,
)
from dropoutlib.numpy.feature import _check_broadcast_mask, feature_mask_shape
from dropoutlib.numpy.functional import _times_zero, bernoulli_mask

__all__ = [
    "ALPHA_PRIME",
    "SELU_ALPHA",
    "SELU_SCALE",
    "alpha_affine",
    "alpha_dropout",
    "alpha_dropout_backward",
    "alpha_noise",
    "feature_alpha_dropout",
    "selu",
    "selu_backward",
]

#: SELU's :math:`\alpha`, from the authors' ``selu.py`` (Klambauer et al., 2017).
SELU_ALPHA = 1.6732632423543772848170429916717
#: SELU's scale :math:`\lambda`.
SELU_SCALE = 1.0507009873554804934193349852946
#: The value of a dropped unit before the affine correction: :math:`\alpha' = -\lambda\alpha`.
ALPHA_PRIME = -SELU_SCALE * SELU_ALPHA


def selu(x: np.ndarray) -> np.ndarray:
    r"""Scaled exponential linear unit, :math:`\lambda x` for :math:`x > 0` and
    :math:`\lambda\alpha(e^x - 1)` otherwise; the dtype of ``x`` is preserved."""
    x = check_float_array(x)
    dt = x.dtype.type
    negative = dt(SELU_SCALE * SELU_ALPHA) * np.expm1(np.minimum(x, dt(0)))
    return np.where(x > 0, dt(SELU_SCALE) * x, negative).astype(x.dtype, copy=False)


def selu_backward(grad_output: np.ndarray, x: np.ndarray) -> np.ndarray:
    r"""Gradient of :func:`selu`: :math:`g \lambda` for :math:`x > 0`, else
    :math:`g \lambda\alpha e^{x}` (the left derivative at 0, as PyTorch uses)."""
    grad_output = check_float_array(grad_output, "grad_output")
    x = check_float_array(x)
    dt = grad_output.dtype.type
    slope = np.where(x > 0, dt(SELU_SCALE), dt(SELU_SCALE * SELU_ALPHA) * np.exp(np.minimum(x, 0)))
    return (grad_output * slope).astype(grad_output.dtype, copy=False)


def alpha_affine(
    p: float, *, mean: float = 0.0, var: float = 1.0, alpha_prime: float = ALPHA_PRIME
) -> tuple[float, float]:
    r"""The affine correction :math:`(a, b)` that keeps mean ``mean`` and variance ``var``.

    For an input with mean :math:`\mu` and variance :math:`\nu`, the dropped-and-reset
    :math:`z = x d + \alpha'(1 - d)` has :math:`\mathbb{E}[z] = q\mu + (1-q)\alpha'` and
    :math:`\operatorname{Var}[z] = q\nu + q(1-q)(\alpha' - \mu)^2`. Solving
    :math:`\mathbb{E}[az + b] = \mu` and :math:`\operatorname{Var}[az + b] = \nu` gives

    .. math::

       \begin{aligned}
       a &= \sqrt{\frac{\nu}{q\,\bigl((1-q)(\alpha' - \mu)^2 + \nu\bigr)}}, \\
       b &= \mu - a\,\bigl(q\mu + (1-q)\alpha'\bigr).
       \end{aligned}

    Parameters
    ----------
    p : float
        Drop probability, :math:`0 \le p < 1` (:math:`q = 1 - p`).
    mean, var : float
        The fixed point :math:`(\mu, \nu)` to preserve; SELU's is (0, 1).
    alpha_prime : float
        The value a dropped unit is set to before the correction.
    """
    p = check_probability(p)
    if p == 1.0:
        raise ValueError("alpha_affine needs p < 1: with every unit dropped no a, b exist")
    q = 1.0 - p
    a = math.sqrt(var / (q * ((1.0 - q) * (alpha_prime - mean) ** 2 + var)))
    b = mean - a * (q * mean + (1.0 - q) * alpha_prime)
    return a, b


def alpha_noise(mask: np.ndarray, p: float, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    r"""Multiplier :math:`a\,d` and shift :math:`b + a\alpha'(1-d)` for the keep mask ``d``.

    Computed in ``dtype`` with PyTorch's order of operations (ATen's ``_dropout_impl``:
    ``b = (d - 1) * (A a) + A a p`` and ``d * a`` with :math:`A = -\alpha'` and
    :math:`a = 1/\sqrt{(A^2 p + 1)(1 - p)}`, the constants of :func:`alpha_affine` at the
    fixed point (0, 1) rearranged), so that outputs agree with PyTorch bit for bit given the
    same mask. float16 works in float32 and rounds after every step, as PyTorch does.
    """
    dtype = np.dtype(dtype)
    big_a = -ALPHA_PRIME
    a = 1.0 / math.sqrt((big_a * big_a * p + 1.0) * (1.0 - p))
    noise = mask.astype(dtype)
    if dtype == np.float16:
        f32, f16 = np.float32, np.float16
        shift = (noise.astype(f32) - f32(1.0)).astype(f16)
        shift = (shift.astype(f32) * f32(big_a * a)).astype(f16)
        shift = (shift.astype(f32) + f32(f16(big_a * a * p))).astype(f16)
        return (noise.astype(f32) * f32(a)).astype(f16), shift
    dt = dtype.type
    shift = (noise + dt(-1.0)) * dt(big_a * a) + dt(big_a * a * p)
    return noise * dt(a), shift


def _alpha(
    x: np.ndarray,
    p: float,
    rng: np.random.Generator | None,
    training: bool,
    return_mask: bool,
    feature: bool,
) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    x = check_float_array(x)
    p = check_probability(p)
    if not check_training(training):
        return (x, None) if return_mask else x
    rng = check_generator(rng)  # required in training even when no mask is drawn
    if p == 0.0 or x.size == 0:
        y = x.copy()
        return (y, None) if return_mask else y
    if p == 1.0:  # PyTorch returns x * 0 here, not the saturation value
        y = _times_zero(x, np.empty(x.shape, dtype=x.dtype))
        return (y, None) if return_mask else y
    shape = feature_mask_shape(x.shape) if feature else x.shape
    mask = bernoulli_mask(shape, p, rng=rng)
    scale, shift = alpha_noise(mask, p, x.dtype)
    y = np.asarray(x * scale + shift)  # an array, also for 0-d input
    return (y, mask) if return_mask else y


def alpha_dropout(
    x: np.ndarray,
    p: float = 0.5,
    *,
    rng: np.random.Generator | None = None,
    training: bool = True,
    return_mask: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    r"""Alpha dropout: :math:`y = a(x d + \alpha'(1 - d)) + b`, one draw per element.

    Kept units become :math:`a x + b`, dropped units the constant :math:`a\alpha' + b`
    (see :func:`alpha_affine`). Any shape, including 0-d.

    Parameters
    ----------
    x : numpy.ndarray
        Floating input; the output has its dtype.
    p : float, default 0.5
        Drop probability. Evaluation returns ``x`` itself and ``p = 0`` a copy;
        ``p = 1`` returns ``x * 0`` as PyTorch does (zeros for finite input, not the
        saturation value; ``nan`` for ``inf`` and ``nan``).
    rng : numpy.random.Generator
        Required in training.
    training : bool, default True
        Must be a ``bool`` (``TypeError`` otherwise, as in PyTorch). Note that
        ``torch.nn.functional.alpha_dropout`` defaults to ``training=False``; this NumPy
        function, like :func:`dropoutlib.numpy.dropout`, defaults to training.
    return_mask : bool, default False
        If true, return ``(y, mask)`` with the boolean keep mask (``None`` if none was drawn).

    Raises
    ------
    TypeError, ValueError
        Bad ``x``, ``p`` or ``rng``, as for :func:`dropoutlib.numpy.dropout`.
    """
    return _alpha(x, p, rng, training, return_mask, feature=False)


def feature_alpha_dropout(
    x: np.ndarray,
    p: float = 0.5,
    *,
    rng: np.random.Generator | None = None,
    training: bool = True,
    return_mask: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    r"""Alpha dropout of whole channels of :math:`x` with shape :math:`(N, C, S_1, \dots)`.

    One keep decision per (sample, channel), mask shape :math:`(N, C, 1, \dots, 1)`. As in
    PyTorch there is no unbatched form: the first two axes are always :math:`(N, C)`, so a
    2-d input is dropped element-wise.

    Raises
    ------
    RuntimeError
        Fewer than 2 dimensions when a mask has to be drawn (PyTorch's message).
    """
    return _alpha(x, p, rng, training, return_mask, feature=True)


def alpha_dropout_backward(
    grad_output: np.ndarray, mask: np.ndarray | None, p: float
) -> np.ndarray:
    r"""Gradient of (feature) alpha dropout: :math:`\partial L/\partial x = a\, d \odot g`.

    The shift does not depend on :math:`x`, so only the multiplier :math:`a d` remains.
    ``mask`` is the one returned by the forward pass (``None`` when none was drawn: then the
    gradient is ``g`` itself, or zeros at ``p = 1``).
    """
    grad_output = check_float_array(grad_output, "grad_output")
    p = check_probability(p)
    if mask is None:  # at p = 1, grad * 0 as PyTorch's backward
        return (
            _times_zero(grad_output, np.empty_like(grad_output)) if p == 1.0 else grad_output.copy()
        )
    _check_broadcast_mask(mask, grad_output.shape)
    return np.asarray(grad_output * alpha_noise(mask, p, grad_output.dtype)[0])  # 0-d stays array
