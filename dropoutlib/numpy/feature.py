r"""Channel-wise (feature) dropout in NumPy: ``dropout1d``, ``dropout2d``, ``dropout3d``.

For a feature map :math:`x` of shape :math:`(N, C, S_1, \dots, S_k)` one keep decision is drawn
per sample and channel, :math:`m_{nc} \sim \mathrm{Bernoulli}(1 - p)`, and shared by every
spatial position of that channel (Tompson et al., 2015, "SpatialDropout"):

.. math::

   \begin{aligned}
   y_{nc\,s} &= \frac{m_{nc}}{1 - p}\, x_{nc\,s}, \\
   \frac{\partial L}{\partial x_{nc\,s}} &= \frac{m_{nc}}{1 - p}\,
   \frac{\partial L}{\partial y_{nc\,s}}.
   \end{aligned}

The accepted ranks follow PyTorch 2.13 exactly (``torch.nn.functional.dropout1d/2d/3d``),
including its warnings and the quirks of ``dropout2d`` on 3-d input (treated as
:math:`(N, C, L)`) and ``dropout3d`` on ranks other than 5 (a batch axis is prepended, so the
first axis is the channel axis).
"""

from __future__ import annotations

import warnings

import numpy as np

from dropoutlib._torch_messages import (
    DROPOUT1D_RANK_ERROR,
    DROPOUT2D_3D_INPUT_WARNING,
    DROPOUT2D_RANK_WARNING,
    DROPOUT3D_RANK_WARNING,
    FEATURE_RANK_ERROR,
)
from dropoutlib._validation import (
    check_float_array,
    check_generator,
    check_probability,
    check_training,
)
from dropoutlib.numpy.functional import _times_zero, apply_mask, bernoulli_mask

__all__ = [
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "feature_dropout",
    "feature_dropout_backward",
    "feature_mask_shape",
]


def feature_mask_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    r"""Shape of the channel mask for an input of ``shape`` :math:`(N, C, S_1, \dots)`.

    One draw per (sample, channel): :math:`(N, C, 1, \dots, 1)`, of the input's rank, so that it
    broadcasts over the spatial axes.

    Raises
    ------
    RuntimeError
        If the input has fewer than 2 dimensions (PyTorch's error and message).
    """
    if len(shape) < 2:
        raise RuntimeError(FEATURE_RANK_ERROR)
    return (shape[0], shape[1]) + (1,) * (len(shape) - 2)


def feature_dropout(
    x: np.ndarray,
    p: float = 0.5,
    *,
    rng: np.random.Generator | None = None,
    training: bool = True,
    return_mask: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    r"""Channel-wise inverted dropout of ``x`` with shape :math:`(N, C, S_1, \dots)`.

    :math:`y = x \odot m / (1 - p)` with the mask :math:`m` of shape
    :func:`feature_mask_shape` broadcast over the spatial axes. This is the batched core that
    :func:`dropout1d`, :func:`dropout2d` and :func:`dropout3d` call.

    Parameters
    ----------
    x : numpy.ndarray
        Floating input with at least 2 dimensions (checked only when a mask is drawn, as in
        PyTorch).
    p : float, default 0.5
        Drop probability of a whole channel, :math:`0 \le p \le 1`.
    rng : numpy.random.Generator
        Required in training.
    training : bool, default True
        Must be a ``bool`` (``TypeError`` otherwise, as in PyTorch). In evaluation the input
        object itself is returned (as in PyTorch); in training
        ``rng`` is required even for ``p = 0`` (which returns a copy) and ``p = 1``.
    return_mask : bool, default False
        If true, return ``(y, mask)``: the boolean keep mask of shape
        :math:`(N, C, 1, \dots, 1)` (``None`` when no mask was drawn: evaluation, ``p = 0``,
        ``p = 1`` or an empty input), to pass to :func:`feature_dropout_backward`.

    Returns
    -------
    numpy.ndarray or tuple
        ``y`` with the dtype and shape of ``x``; ``y is x`` in evaluation. A dropped channel
        is ``x * 0`` at every ``p``, including ``p = 1``, as in PyTorch: exact zeros for
        finite inputs (``-0.0`` for negative ones), ``nan`` for ``inf`` and ``nan``.

    Raises
    ------
    TypeError
        Bad ``x``, ``p`` or missing ``rng``.
    ValueError
        ``p`` outside [0, 1] or NaN.
    RuntimeError
        Fewer than 2 dimensions when a mask has to be drawn.
    """
    x = check_float_array(x)
    p = check_probability(p)
    if not check_training(training):
        return (x, None) if return_mask else x
    rng = check_generator(rng)  # required in training even when no mask is drawn
    if p == 0.0 or x.size == 0:
        y = x.copy()
        return (y, None) if return_mask else y
    if p == 1.0:  # x * 0, as PyTorch (and dropoutlib.numpy.dropout) at p = 1
        y = _times_zero(x, np.empty(x.shape, dtype=x.dtype))
        return (y, None) if return_mask else y
    mask = bernoulli_mask(feature_mask_shape(x.shape), p, rng=rng)
    y = apply_mask(x, np.broadcast_to(mask, x.shape), p)
    return (y, mask) if return_mask else y


def feature_dropout_backward(
    grad_output: np.ndarray, mask: np.ndarray | None, p: float
) -> np.ndarray:
    r"""Gradient of channel-wise dropout: :math:`\partial L/\partial x = g \odot m/(1-p)`.

    Parameters
    ----------
    grad_output : numpy.ndarray
        :math:`g = \partial L / \partial y`, of the input's shape.
    mask : numpy.ndarray of bool or None
        The mask returned by the forward pass with ``return_mask=True`` (it broadcasts
        against ``grad_output``). ``None`` means nothing was dropped, except at ``p = 1``
        where everything was.
    p : float
        The drop probability of the forward pass.

    Returns
    -------
    numpy.ndarray
        :math:`\partial L / \partial x` with the dtype of ``grad_output``.
    """
    grad_output = check_float_array(grad_output, "grad_output")
    p = check_probability(p)
    if mask is None:  # at p = 1, grad * 0 as PyTorch's backward
        return (
            _times_zero(grad_output, np.empty_like(grad_output)) if p == 1.0 else grad_output.copy()
        )
    _check_broadcast_mask(mask, grad_output.shape)
    return apply_mask(grad_output, np.broadcast_to(mask, grad_output.shape), p)


def _check_broadcast_mask(mask: object, shape: tuple[int, ...]) -> None:
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        raise TypeError(
            "mask must be the boolean keep mask returned by the forward pass with "
            f"return_mask=True, but got {type(mask).__name__}"
        )
    if mask.ndim != len(shape) or any(
        m not in (1, s) for m, s in zip(mask.shape, shape, strict=True)
    ):
        raise ValueError(
            f"mask of shape {mask.shape} does not broadcast to grad_output of shape {shape}; "
            "pass the mask from the same forward call"
        )


def _unbatched(
    x: np.ndarray, p: float, rng: np.random.Generator | None, training: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Feature dropout of ``x[None]`` with the batch axis removed again from output and mask."""
    batch = x[None]
    y, mask = feature_dropout(batch, p, rng=rng, training=training, return_mask=True)
    # Evaluation: return the input itself rather than a view of it.
    return (x if y is batch else y[0]), (None if mask is None else mask[0])


def _finish(y: np.ndarray, mask: np.ndarray | None, return_mask: bool):
    return (y, mask) if return_mask else y


def dropout1d(
    x: np.ndarray,
    p: float = 0.5,
    *,
    rng: np.random.Generator | None = None,
    training: bool = True,
    return_mask: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    r"""Channel-wise dropout for 1-d feature maps :math:`(N, C, L)` or unbatched :math:`(C, L)`.

    Every :math:`x_{nc\,:}` is kept and scaled by :math:`1/(1-p)`, or zeroed, as a whole. An
    unbatched input behaves exactly as a batch of one. See :func:`feature_dropout` for the
    arguments; the returned mask broadcasts against ``x`` (shape :math:`(N, C, 1)` or
    :math:`(C, 1)`).

    Raises
    ------
    RuntimeError
        If ``x`` is not 2-d or 3-d (PyTorch's message), even in evaluation.
    """
    x = check_float_array(x)
    if x.ndim not in (2, 3):
        raise RuntimeError(DROPOUT1D_RANK_ERROR.format(k=x.ndim))
    if x.ndim == 2:
        return _finish(*_unbatched(x, p, rng, training), return_mask)
    return feature_dropout(x, p, rng=rng, training=training, return_mask=return_mask)


def dropout2d(
    x: np.ndarray,
    p: float = 0.5,
    *,
    rng: np.random.Generator | None = None,
    training: bool = True,
    return_mask: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    r"""Channel-wise dropout for 2-d feature maps :math:`(N, C, H, W)`.

    As in PyTorch 2.13, a 3-d input is **not** read as an unbatched :math:`(C, H, W)` image but
    as :math:`(N, C, L)`, with a ``UserWarning``; other ranks warn that they are deprecated and
    use the first two axes as :math:`(N, C)`. See :func:`feature_dropout` for the arguments.
    """
    x = check_float_array(x)
    if x.ndim == 3:
        warnings.warn(DROPOUT2D_3D_INPUT_WARNING, UserWarning, stacklevel=2)
    elif x.ndim != 4:
        warnings.warn(DROPOUT2D_RANK_WARNING.format(k=x.ndim), UserWarning, stacklevel=2)
    return feature_dropout(x, p, rng=rng, training=training, return_mask=return_mask)


def dropout3d(
    x: np.ndarray,
    p: float = 0.5,
    *,
    rng: np.random.Generator | None = None,
    training: bool = True,
    return_mask: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    r"""Channel-wise dropout for 3-d feature maps :math:`(N, C, D, H, W)` or :math:`(C, D, H, W)`.

    Any rank other than 5 is treated as unbatched (a batch axis of one is prepended), as in
    PyTorch 2.13; ranks other than 4 and 5 also warn. So for a 3-d input the **first** axis is
    the channel axis. See :func:`feature_dropout` for the arguments.
    """
    x = check_float_array(x)
    if x.ndim not in (4, 5):
        warnings.warn(DROPOUT3D_RANK_WARNING.format(k=x.ndim), UserWarning, stacklevel=2)
    if x.ndim != 5:
        return _finish(*_unbatched(x, p, rng, training), return_mask)
    return feature_dropout(x, p, rng=rng, training=training, return_mask=return_mask)
