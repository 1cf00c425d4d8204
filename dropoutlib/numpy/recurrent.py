r"""Recurrent and learned dropout in NumPy: locked, embedding and concrete dropout, schedules.

**Locked (variational) dropout** (Gal & Ghahramani, 2016). For a sequence
:math:`x` of shape :math:`(T, B, H)` (time first) one keep decision is drawn per sequence and
feature, :math:`m_{bh} \sim \mathrm{Bernoulli}(1 - p)`, and **reused at every time step**:

.. math::

   \begin{aligned}
   y_{tbh} &= \frac{m_{bh}}{1 - p}\, x_{tbh}, \\
   \frac{\partial L}{\partial x_{tbh}} &= \frac{m_{bh}}{1 - p}\,
   \frac{\partial L}{\partial y_{tbh}}.
   \end{aligned}

**Embedding dropout** (Gal & Ghahramani, 2016, section 4.2; Merity et al., 2018) drops whole
rows of the embedding matrix :math:`W \in \mathbb{R}^{V \times D}`: word :math:`v` is dropped
with probability :math:`p` for the whole batch, wherever it occurs,
:math:`y_{i} = (m_{w_i} / (1 - p))\, W_{w_i}`.

**Concrete dropout** (Gal, Hron & Kendall, 2017) replaces the Bernoulli drop mask by its
continuous relaxation (Maddison et al., 2017; Jang et al., 2017) so that :math:`p` can be
learned by gradient descent: with :math:`u \sim U(0, 1)` and
:math:`\operatorname{logit} q = \log q - \log(1-q)`,

.. math::

   \begin{aligned}
   \tilde z &= \sigma\big((\operatorname{logit} p + \operatorname{logit} u)/t\big), \\
   y &= x\, \frac{1 - \tilde z}{1 - p},
   \end{aligned}

with temperature :math:`t = 0.1` (and :math:`\varepsilon = 10^{-7}` inside every logarithm,
as the authors' code). Its regulariser is
:math:`\lambda_w \lVert W\rVert^2 / (1 - p) + \lambda_p K\, (p\log p + (1-p)\log(1-p))`.

**Early / late dropout** (Liu et al., 2023): :func:`dropout_schedule` gives the drop rate of
every training step.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy.special import expit

from dropoutlib._validation import (
    check_float_array,
    check_generator,
    check_probability,
    check_training,
)
from dropoutlib.numpy.functional import _times_zero, apply_mask, bernoulli_mask

__all__ = [
    "CONCRETE_EPS",
    "CONCRETE_TEMPERATURE",
    "concrete_drop_mask",
    "concrete_dropout",
    "concrete_dropout_backward",
    "concrete_regularizer",
    "concrete_regularizer_backward",
    "dropout_schedule",
    "embedding_dropout",
    "embedding_dropout_backward",
    "locked_dropout",
    "locked_dropout_backward",
    "locked_mask_shape",
]

#: Temperature of the relaxed Bernoulli in Gal, Hron & Kendall's code (``temp = 0.1``).
CONCRETE_TEMPERATURE = 0.1
#: The :math:`\varepsilon` added inside every logarithm (Keras' ``K.epsilon()``, their code's).
CONCRETE_EPS = 1e-7


# --- locked (variational) dropout -----------------------------------------------------------


def locked_mask_shape(shape: tuple[int, ...], *, batch_first: bool = False) -> tuple[int, ...]:
    r"""Shape of the locked mask for a sequence batch of ``shape``.

    Time-first :math:`(T, B, H)` gives :math:`(1, B, H)`; with ``batch_first`` the input is
    :math:`(B, T, H)` and the mask :math:`(B, 1, H)`. Any trailing axes beyond the third are
    feature axes and keep their size (one draw per sequence and feature).

    Raises
    ------
    ValueError
        If the input has fewer than 3 dimensions.
    """
    if len(shape) < 3:
        raise ValueError(
            "locked dropout expects a sequence batch of at least 3 dimensions "
            f"((T, B, H), or (B, T, H) with batch_first=True), but got shape {tuple(shape)}"
        )
    t_axis = 1 if batch_first else 0
    return tuple(1 if i == t_axis else n for i, n in enumerate(shape))


def locked_dropout(
    x: np.ndarray,
    p: float = 0.5,
    *,
    rng: np.random.Generator | None = None,
    training: bool = True,
    batch_first: bool = False,
    return_mask: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    r"""Locked (variational) dropout: one mask per sequence, shared by every time step.

    :math:`y_{tbh} = x_{tbh}\, m_{bh} / (1 - p)` with
    :math:`m_{bh} \sim \mathrm{Bernoulli}(1-p)` drawn once (:func:`locked_mask_shape`) by
    :func:`~dropoutlib.numpy.bernoulli_mask` and broadcast over the time axis. Per time step
    it is ordinary inverted dropout, so :math:`\mathbb{E}[y] = x`; what changes is that a
    dropped unit stays dropped for the whole sequence (Gal & Ghahramani, 2016).

    Parameters
    ----------
    x : numpy.ndarray
        Floating sequence batch, :math:`(T, B, H, \dots)` or :math:`(B, T, H, \dots)`.
    p : float, default 0.5
        Drop probability.
    rng : numpy.random.Generator
        Required in training.
    training : bool, default True
        In evaluation the input object itself is returned.
    batch_first : bool, default False
        Whether the batch axis comes first (then time is axis 1).
    return_mask : bool, default False
        Also return the boolean keep mask of the locked shape (``None`` when no mask was
        drawn: evaluation, ``p = 0`` or ``p = 1``), for :func:`locked_dropout_backward`.

    Returns
    -------
    numpy.ndarray or tuple
        ``y`` (dtype and shape of ``x``), and the mask if requested.
    """
    x = check_float_array(x)
    p = check_probability(p)
    shape = locked_mask_shape(x.shape, batch_first=batch_first)
    if not check_training(training):
        return (x, None) if return_mask else x
    rng = check_generator(rng)
    if p == 0.0 or x.size == 0:
        y = x.copy()
        return (y, None) if return_mask else y
    if p == 1.0:
        y = _times_zero(x, np.empty(x.shape, dtype=x.dtype))
        return (y, None) if return_mask else y
    mask = bernoulli_mask(shape, p, rng=rng)
    y = apply_mask(x, np.broadcast_to(mask, x.shape), p)
    return (y, mask) if return_mask else y


def locked_dropout_backward(
    grad_output: np.ndarray, mask: np.ndarray | None, p: float
) -> np.ndarray:
    r"""Gradient of locked dropout: :math:`\partial L/\partial x_{tbh} = g_{tbh}\, m_{bh}/(1-p)`.

    ``mask`` is the one returned by :func:`locked_dropout` (``None``: nothing was dropped,
    except at ``p = 1`` where everything was).
    """
    grad_output = check_float_array(grad_output, "grad_output")
    p = check_probability(p)
    if mask is None:
        if p == 1.0:
            return _times_zero(grad_output, np.empty_like(grad_output))
        return grad_output.copy()
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        raise TypeError(f"mask must be a boolean numpy.ndarray, but got {mask!r}")
    try:
        full = np.broadcast_to(mask, grad_output.shape)
    except ValueError:
        raise ValueError(
            f"mask of shape {mask.shape} does not broadcast to grad_output's {grad_output.shape}"
        ) from None
    return apply_mask(grad_output, full, p)


# --- embedding dropout ----------------------------------------------------------------------


def _check_indices(indices: object, num_embeddings: int) -> np.ndarray:
    if not isinstance(indices, np.ndarray) or not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"indices must be an integer numpy.ndarray, but got {indices!r}")
    if indices.size and (indices.min() < 0 or indices.max() >= num_embeddings):
        raise IndexError(
            f"indices must lie in [0, {num_embeddings}), but got values in "
            f"[{indices.min()}, {indices.max()}]"
        )
    return indices


def embedding_dropout(
    weight: np.ndarray,
    indices: np.ndarray,
    p: float = 0.1,
    *,
    rng: np.random.Generator | None = None,
    training: bool = True,
    return_mask: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    r"""Look up ``indices`` in ``weight`` with whole words (rows) dropped.

    One keep decision per row of :math:`W \in \mathbb{R}^{V \times D}`,
    :math:`m_v \sim \mathrm{Bernoulli}(1-p)`, drawn for the whole call (the batch), then

    .. math::

       y_{i} = \frac{m_{w_i}}{1 - p}\, W_{w_i}, \qquad
       \mathbb{E}[y_i] = W_{w_i},

    so every occurrence of a dropped word in the batch reads a zero vector (Gal & Ghahramani,
    2016, section 4.2, word embeddings dropout). It is the look-up in the row-masked matrix
    :math:`\operatorname{diag}(m/(1-p))\, W`: inverted dropout with one keep decision per
    row, then the look-up.

    Parameters
    ----------
    weight : numpy.ndarray
        Floating matrix :math:`(V, D)`.
    indices : numpy.ndarray of int
        Word indices of any shape, values in :math:`[0, V)`.
    p : float, default 0.1
        Drop probability of a word.
    rng : numpy.random.Generator
        Required in training.
    training : bool, default True
        In evaluation this is the plain look-up ``weight[indices]``.
    return_mask : bool, default False
        Also return the boolean row mask of shape :math:`(V, 1)` (``None`` when none was
        drawn), for :func:`embedding_dropout_backward`.

    Returns
    -------
    numpy.ndarray or tuple
        ``y`` of shape ``indices.shape + (D,)``, and the mask if requested.
    """
    weight = check_float_array(weight, "weight")
    if weight.ndim != 2:
        raise ValueError(f"weight must be a 2-d (V, D) matrix, but got shape {weight.shape}")
    indices = _check_indices(indices, weight.shape[0])
    p = check_probability(p)
    if not check_training(training) or p == 0.0:
        if training:
            check_generator(rng)
        y = weight[indices]
        return (y, None) if return_mask else y
    rng = check_generator(rng)
    if p == 1.0:
        y = _times_zero(weight[indices], np.empty(indices.shape + weight.shape[1:], weight.dtype))
        return (y, None) if return_mask else y
    mask = bernoulli_mask((weight.shape[0], 1), p, rng=rng)
    masked = apply_mask(weight, np.broadcast_to(mask, weight.shape), p)
    y = masked[indices]
    return (y, mask) if return_mask else y


def embedding_dropout_backward(
    grad_output: np.ndarray,
    indices: np.ndarray,
    mask: np.ndarray | None,
    p: float,
    num_embeddings: int,
) -> np.ndarray:
    r"""Gradient of :func:`embedding_dropout` with respect to the matrix :math:`W`.

    Every occurrence of word :math:`v` adds its output gradient to row :math:`v` (a
    scatter-add), and the row is scaled by its mask:

    .. math::

       \frac{\partial L}{\partial W_v} = \frac{m_v}{1 - p}
       \sum_{i:\, w_i = v} \frac{\partial L}{\partial y_i}.

    Parameters
    ----------
    grad_output : numpy.ndarray
        :math:`\partial L / \partial y`, shape ``indices.shape + (D,)``.
    indices : numpy.ndarray of int
        The indices of the forward pass.
    mask : numpy.ndarray of bool or None
        The :math:`(V, 1)` mask of the forward pass (``None``: nothing was dropped, except at
        ``p = 1`` where everything was).
    p : float
        The forward pass's drop probability.
    num_embeddings : int
        :math:`V`.

    Returns
    -------
    numpy.ndarray
        :math:`\partial L / \partial W`, shape :math:`(V, D)`, dtype of ``grad_output``.
    """
    grad_output = check_float_array(grad_output, "grad_output")
    p = check_probability(p)
    if isinstance(num_embeddings, bool) or not isinstance(num_embeddings, numbers.Integral):
        raise TypeError(f"num_embeddings must be an int, but got {num_embeddings!r}")
    indices = _check_indices(indices, int(num_embeddings))
    if grad_output.shape[:-1] != indices.shape:
        raise ValueError(
            f"grad_output of shape {grad_output.shape} does not match indices of shape "
            f"{indices.shape} plus one embedding axis"
        )
    d = grad_output.shape[-1]
    grad = np.zeros((int(num_embeddings), d), dtype=grad_output.dtype)
    np.add.at(grad, indices.reshape(-1), grad_output.reshape(-1, d))
    if mask is None:
        return _times_zero(grad, np.empty_like(grad)) if p == 1.0 else grad
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != (len(grad), 1):
        raise ValueError(f"mask must be a boolean ({len(grad)}, 1) array, but got {mask!r}")
    return apply_mask(grad, np.broadcast_to(mask, grad.shape), p)


# --- concrete dropout -----------------------------------------------------------------------


def _check_open_p(p: object) -> float:
    p = check_probability(p)
    if not 0.0 < p < 1.0:
        raise ValueError(f"concrete dropout needs 0 < p < 1 (it takes log p and log(1-p)), got {p}")
    return p


def _check_positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{name} must be a positive real number, but got {value!r}")
    return float(value)


def concrete_drop_mask(
    u: np.ndarray,
    p: float,
    temperature: float = CONCRETE_TEMPERATURE,
    eps: float = CONCRETE_EPS,
) -> np.ndarray:
    r"""The relaxed (concrete) **drop** mask :math:`\tilde z` for uniform noise ``u``.

    .. math::

       \begin{aligned}
       \tilde z &= \sigma(a), \\
       a &= \big(\ell(p) + \ell(u)\big)/t, \\
       \ell(q) &= \log(q+\varepsilon) - \log(1-q+\varepsilon),
       \end{aligned}

    where :math:`\ell` is the logit with :math:`\varepsilon` inside each logarithm.

    As :math:`t \to 0`, :math:`\tilde z \to [u > 1 - p]` (up to :math:`\varepsilon`), a
    Bernoulli(:math:`p`) drop indicator: :math:`a > 0` exactly when
    :math:`u/(1-u) > (1-p)/p`. At :math:`t = 0.1` most values are within a few percent of 0
    or 1.
    """
    u = check_float_array(u, "u")
    p = _check_open_p(p)
    t = _check_positive(temperature, "temperature")
    a = (np.log(p + eps) - np.log(1 - p + eps) + np.log(u + eps) - np.log(1 - u + eps)) / t
    return expit(a).astype(u.dtype, copy=False)  # 1 / (1 + exp(-a)), without overflow


def concrete_dropout(
    x: np.ndarray,
    p: float,
    *,
    rng: np.random.Generator,
    temperature: float = CONCRETE_TEMPERATURE,
    eps: float = CONCRETE_EPS,
    return_noise: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    r"""Concrete dropout of ``x``: :math:`y = x\,(1 - \tilde z)/(1 - p)`, differentiable in p.

    The uniform noise :math:`u` (one value per element, drawn from ``rng`` in ``x``'s dtype)
    goes through :func:`concrete_drop_mask`. Return ``(y, u)`` with ``return_noise`` for
    :func:`concrete_dropout_backward`. Training only: at test time the layer is the identity
    (or Monte Carlo with the hard Bernoulli mask of the learned :math:`p`).
    """
    x = check_float_array(x)
    p = _check_open_p(p)
    rng = check_generator(rng)
    u = rng.random(x.shape, dtype=np.float64).astype(x.dtype)
    z = concrete_drop_mask(u, p, temperature, eps)
    y = (x * ((1 - z) / (1 - p))).astype(x.dtype, copy=False)
    return (y, u) if return_noise else y


def concrete_dropout_backward(
    grad_output: np.ndarray,
    x: np.ndarray,
    p: float,
    u: np.ndarray,
    temperature: float = CONCRETE_TEMPERATURE,
    eps: float = CONCRETE_EPS,
) -> tuple[np.ndarray, float]:
    r"""Gradients of :func:`concrete_dropout` with respect to ``x`` and to ``p``.

    With :math:`\tilde z = \sigma(a)` as in :func:`concrete_drop_mask`,
    :math:`\sigma' = \tilde z(1 - \tilde z)` and
    :math:`\partial a/\partial p = \big(1/(p+\varepsilon) + 1/(1-p+\varepsilon)\big)/t`:

    .. math::

       \begin{aligned}
       \frac{\partial L}{\partial x} &= g\, \frac{1 - \tilde z}{1 - p}, \\
       \frac{\partial L}{\partial p} &= \sum g\, x \Big(
         \frac{1 - \tilde z}{(1-p)^2} \\
       &\qquad - \frac{\tilde z (1 - \tilde z)}{1 - p}\,\frac{\partial a}{\partial p}\Big).
       \end{aligned}

    Returns
    -------
    tuple
        ``(grad_x, grad_p)``; ``grad_p`` is a Python float (a sum over all elements).
    """
    grad_output = check_float_array(grad_output, "grad_output")
    x = check_float_array(x)
    p = _check_open_p(p)
    t = _check_positive(temperature, "temperature")
    if not grad_output.shape == x.shape == u.shape:
        raise ValueError(
            f"grad_output, x and u must have one shape, got {grad_output.shape}, {x.shape}, "
            f"{u.shape}"
        )
    z = concrete_drop_mask(u, p, t, eps).astype(np.float64)
    g, xx = grad_output.astype(np.float64), x.astype(np.float64)
    grad_x = (g * (1 - z) / (1 - p)).astype(grad_output.dtype)
    da_dp = (1.0 / (p + eps) + 1.0 / (1 - p + eps)) / t
    dy_dp = xx * ((1 - z) / (1 - p) ** 2 - z * (1 - z) * da_dp / (1 - p))
    return grad_x, float(np.sum(g * dy_dp))


def concrete_regularizer(
    weight: np.ndarray,
    p: float,
    *,
    weight_regularizer: float,
    dropout_regularizer: float,
    input_dim: int,
) -> float:
    r"""Concrete dropout's regulariser for one layer (Gal, Hron & Kendall, 2017, eq. 3-4).

    .. math::

       \begin{aligned}
       R &= \lambda_w \frac{\lVert W \rVert^2}{1 - p} - \lambda_p K\, \mathcal H(p), \\
       \mathcal H(p) &= -p \log p - (1 - p)\log(1 - p),
       \end{aligned}

    the KL divergence of the approximate posterior from the prior up to constants: the first
    term is weight decay scaled by the keep rate, the second is :math:`-K` times the entropy
    :math:`\mathcal H(p)` of a Bernoulli(:math:`p`), which pushes :math:`p` towards
    :math:`1/2`. The authors set
    :math:`\lambda_w = l^2/N` (prior length-scale :math:`l`) and :math:`\lambda_p = 2/N` for
    regression (:math:`2/(\tau N)` with precision :math:`\tau`), where :math:`N` is the number
    of training examples, so both terms fade as the data set grows; :math:`K` is the
    dimension of the layer's (dropped) input. Their code applies the first term to the
    kernel only, not the bias, which is what ``weight`` should be.
    """
    weight = check_float_array(weight, "weight")
    p = _check_open_p(p)
    wr = float(weight_regularizer)
    dr = float(dropout_regularizer)
    k = int(input_dim)
    sq = float(np.sum(weight.astype(np.float64) ** 2))
    return wr * sq / (1 - p) + dr * k * (p * np.log(p) + (1 - p) * np.log(1 - p))


def concrete_regularizer_backward(
    weight: np.ndarray,
    p: float,
    *,
    weight_regularizer: float,
    dropout_regularizer: float,
    input_dim: int,
) -> tuple[np.ndarray, float]:
    r"""Gradients of :func:`concrete_regularizer`:

    .. math::

       \begin{aligned}
       \frac{\partial R}{\partial W} &= \frac{2 \lambda_w W}{1 - p}, \\
       \frac{\partial R}{\partial p} &= \frac{\lambda_w \lVert W\rVert^2}{(1-p)^2}
         + \lambda_p K \log\frac{p}{1 - p}.
       \end{aligned}
    """
    weight = check_float_array(weight, "weight")
    p = _check_open_p(p)
    wr = float(weight_regularizer)
    sq = float(np.sum(weight.astype(np.float64) ** 2))
    grad_w = (2.0 * wr * weight / (1 - p)).astype(weight.dtype)
    grad_p = wr * sq / (1 - p) ** 2 + float(dropout_regularizer) * int(input_dim) * np.log(
        p / (1 - p)
    )
    return grad_w, float(grad_p)


# --- schedules ----------------------------------------------------------------------------


def dropout_schedule(
    p: float,
    epochs: int,
    steps_per_epoch: int,
    *,
    mode: str = "standard",
    cutoff_epoch: int = 0,
    schedule: str = "constant",
) -> np.ndarray:
    r"""Drop rate of every training step: standard, early or late dropout (Liu et al., 2023).

    With :math:`E` epochs of :math:`S` steps and a cutoff epoch :math:`c`, the rate at step
    :math:`s` (0-based, :math:`s < ES`) is

    - ``"standard"``: :math:`p` throughout;
    - ``"early"``: :math:`p` for :math:`s < cS`, then 0 (``schedule="constant"``), or
      :math:`p` falling linearly to 0 over the first :math:`cS` steps, then 0
      (``schedule="linear"``);
    - ``"late"``: 0 for :math:`s < cS`, then :math:`p` (constant only).

    The same rule as ``drop_scheduler`` in the authors' repository
    (facebookresearch/dropout, ``drop_scheduler.py``); the linear ramp is
    ``numpy.linspace(p, 0, c*S)``, which reaches 0 on the last early step.

    Returns
    -------
    numpy.ndarray
        float64 array of length :math:`E S`.
    """
    p = check_probability(p)
    for name, v in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name} must be a positive integer, but got {v!r}")
    if mode not in ("standard", "early", "late"):
        raise ValueError(f"mode must be 'standard', 'early' or 'late', but got {mode!r}")
    allowed = ("constant", "linear") if mode == "early" else ("constant",)
    if schedule not in allowed:
        raise ValueError(f"schedule must be one of {allowed} in mode {mode!r}, got {schedule!r}")
    total = int(epochs) * int(steps_per_epoch)
    if mode == "standard":
        return np.full(total, p)
    if isinstance(cutoff_epoch, bool) or not isinstance(cutoff_epoch, numbers.Integral):
        raise ValueError(f"cutoff_epoch must be an integer, but got {cutoff_epoch!r}")
    if not 0 <= cutoff_epoch <= epochs:
        raise ValueError(f"cutoff_epoch must lie in [0, {epochs}], but got {cutoff_epoch}")
    n_early = int(cutoff_epoch) * int(steps_per_epoch)
    if mode == "early":
        head = np.linspace(p, 0.0, n_early) if schedule == "linear" else np.full(n_early, p)
        return np.concatenate([head, np.zeros(total - n_early)])
    return np.concatenate([np.zeros(n_early), np.full(total - n_early, p)])
