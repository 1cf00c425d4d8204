r"""Element-wise dropout in NumPy: the Bernoulli mask, the forward pass and the backward pass.

Notation (the book's, and PyTorch's): :math:`p` is the **drop** probability and
:math:`q = 1 - p` the keep probability. For an input :math:`x`, a keep mask
:math:`m_i \sim \mathrm{Bernoulli}(1 - p)` drawn independently per element gives

.. math::

   y_i = \frac{m_i\, x_i}{1 - p} \qquad \text{(inverted dropout, training)}, \qquad
   y_i = x_i \qquad \text{(inverted dropout, evaluation)},

so that :math:`\mathbb{E}[y_i] = x_i` and :math:`\operatorname{Var}[y_i] = \frac{p}{1-p}\,x_i^2`.
The paper's *standard* form (Srivastava et al., 2014) trains with :math:`y_i = m_i x_i` and
multiplies by the keep probability :math:`1 - p` at test time instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np

from dropoutlib._validation import check_float_array, check_generator, check_probability

__all__ = [
    "SCALINGS",
    "Scaling",
    "apply_mask",
    "bernoulli_mask",
    "dropout",
    "dropout_backward",
    "inverted_scale",
]

Scaling = Literal["inverted", "standard"]
SCALINGS: tuple[str, ...] = ("inverted", "standard")


def _check_scaling(scaling: object) -> str:
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, but got {scaling!r}")
    return str(scaling)


_BLOCK = 1 << 16  # elements per block: the random words of one block stay in L2 cache
_WORD = 1 << 32


def inverted_scale(p: float, dtype: np.dtype | type) -> np.floating:
    r"""The factor :math:`1/(1-p)` rounded exactly as PyTorch rounds it for ``dtype``.

    PyTorch's CPU dropout divides a noise tensor of ones by the scalar :math:`1-p` in the
    input's dtype, so a kept element is multiplied by :math:`\mathrm{fl}(1 / \mathrm{fl}(1-p))`:
    the rounding of :math:`1-p` to the dtype, then of the quotient (float16 arithmetic is
    done in float32 and rounded, as on PyTorch's CPU). Using the same factor makes our outputs
    and gradients bit-identical to PyTorch's given the same mask; the naive double-precision
    :math:`1/(1-p)` rounded once differs in the last bit for some :math:`p`.
    """
    dtype = np.dtype(dtype)
    if dtype == np.float16:
        with np.errstate(over="ignore"):  # 1/(1-p) beyond 65504 is inf, as in PyTorch
            return np.float16(np.float32(1.0) / np.float32(1.0 - p))
    one_minus_p = dtype.type(1.0 - p)
    return dtype.type(1.0) / one_minus_p


def _scale_kept(y: np.ndarray, mask: np.ndarray, scale: np.floating) -> None:
    """Multiply the kept entries of ``y = x * mask`` by ``scale`` in place, as PyTorch does.

    PyTorch divides the 0/1 noise by :math:`1-p` before multiplying, so a dropped entry is
    ``x * 0`` even when the factor overflows to ``inf`` (float16 with :math:`1-p < 2^{-16}`).
    Scaling ``y`` as a whole would then turn dropped zeros into ``0 * inf = nan``; only in that
    case are the kept entries scaled alone (slower, and only reachable with such extreme p).
    """
    if np.isfinite(scale):
        y *= scale
    else:
        with np.errstate(invalid="ignore"):  # a kept 0 becomes 0 * inf = nan, as in PyTorch
            y[mask] *= scale


def _drop_threshold(p: float) -> np.uint32:
    """The 32-bit threshold ``t`` with ``P(word >= t) = 1 - t / 2**32`` closest to ``1 - p``."""
    return np.uint32(min(round(p * _WORD), _WORD - 1))


def _fill_keep_mask_blocks(mask: np.ndarray, p: float, rng: np.random.Generator) -> Iterator[slice]:
    """Fill the flat boolean array ``mask`` with Bernoulli(1 - p) draws, one block at a time.

    Yields each block's slice right after filling it, so a caller can use the block while its
    data is still in cache.
    """
    threshold = _drop_threshold(p)
    bits = rng.bit_generator
    for start in range(0, mask.size, _BLOCK):
        block = slice(start, min(start + _BLOCK, mask.size))
        count = block.stop - start
        words = bits.random_raw((count + 1) // 2).view(np.uint32)[:count]
        np.greater_equal(words, threshold, out=mask[block])
        yield block


def bernoulli_mask(
    shape: int | tuple[int, ...], p: float, *, rng: np.random.Generator
) -> np.ndarray:
    r"""Draw a keep mask: ``True`` with probability :math:`1 - p`, independently per element.

    Each element consumes one uniformly distributed 32-bit word :math:`w_i` from the
    generator's bit stream (two per 64-bit output of ``rng.bit_generator``, in C order) and is
    kept when :math:`w_i \ge t` with :math:`t = \operatorname{round}(p \cdot 2^{32})`, so

    .. math::

       P(m_i = 1) = 1 - t / 2^{32} = 1 - p + \varepsilon, \qquad |\varepsilon| \le 2^{-33},

    exact for :math:`p \in \{0, \tfrac14, \tfrac12, \tfrac34, 1\}` and any :math:`k/2^{32}`.
    Comparing integers skips the conversion to floating point, which makes the mask cheaper
    than drawing ``rng.random(n, dtype=np.float32)``.

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the mask.
    p : float
        Drop probability, :math:`0 \le p \le 1`.
    rng : numpy.random.Generator
        The source of randomness (required, keyword-only).

    Returns
    -------
    numpy.ndarray of bool
        The keep mask (1 byte per element), C-contiguous. For ``p == 0`` it is all ``True``
        and for ``p == 1`` all ``False``; neither case draws random numbers.
    """
    p = check_probability(p)
    rng = check_generator(rng)
    if p == 0.0:
        return np.ones(shape, dtype=bool)
    if p == 1.0:
        return np.zeros(shape, dtype=bool)
    mask = np.empty(shape, dtype=bool)
    for _ in _fill_keep_mask_blocks(mask.reshape(-1), p, rng):
        pass
    return mask


def dropout(
    x: np.ndarray,
    p: float = 0.5,
    *,
    rng: np.random.Generator | None = None,
    training: bool = True,
    scaling: Scaling = "inverted",
    return_mask: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    r"""Apply dropout to ``x``.

    ========================  ===============================  ===========================
    ``scaling``               training (``training=True``)     evaluation
    ========================  ===============================  ===========================
    ``"inverted"`` (default)  :math:`y = m \odot x / (1 - p)`  :math:`y = x` (same object)
    ``"standard"`` (paper)    :math:`y = m \odot x`            :math:`y = (1 - p)\, x`
    ========================  ===============================  ===========================

    with :math:`m_i \sim \mathrm{Bernoulli}(1 - p)` from :func:`bernoulli_mask`. Both
    conventions give the same expected output at test time: :math:`\mathbb{E}[y] = x` for
    inverted dropout and :math:`\mathbb{E}[y] = (1-p)\,x` in both phases for standard
    dropout.

    Parameters
    ----------
    x : numpy.ndarray
        Input of any shape and a floating dtype (float16, float32 or float64). The output
        has the same dtype.
    p : float, default 0.5
        Drop probability, :math:`0 \le p \le 1`. ``p = 0`` keeps everything (the output
        equals ``x``) and ``p = 1`` drops everything (exact zeros, never NaN). For
        :math:`0 < p < 1` a kept element is multiplied by :func:`inverted_scale` (rounded as
        PyTorch rounds it) and a dropped one by 0, as in PyTorch: a dropped negative value
        becomes ``-0.0`` and a dropped ``inf`` or ``nan`` becomes ``nan``.
    rng : numpy.random.Generator, optional
        Required when ``training`` is true (even for ``p`` of 0 or 1, so that code which works
        at one ``p`` keeps working at another); unused in evaluation.
    training : bool, default True
        Training draws a mask; evaluation is deterministic.
    scaling : {"inverted", "standard"}, default "inverted"
        Where the factor :math:`1 - p` goes: divided out in training (PyTorch) or multiplied
        in at test time (the paper).
    return_mask : bool, default False
        If true, return ``(y, mask)``; ``mask`` is the boolean keep mask (1 byte per
        element) needed by :func:`dropout_backward`, or ``None`` in evaluation.

    Returns
    -------
    numpy.ndarray or tuple
        ``y``, or ``(y, mask)`` when ``return_mask`` is true. ``x`` is never modified. In
        inverted evaluation ``y`` *is* ``x``, as in PyTorch.

    Raises
    ------
    TypeError
        ``x`` is not a floating ndarray, ``p`` is not a real number, or ``rng`` is missing in
        training.
    ValueError
        ``p`` is NaN or outside [0, 1], or ``scaling`` is unknown.

    Examples
    --------
    >>> import numpy as np
    >>> from dropoutlib.numpy import dropout
    >>> x = np.ones(6, dtype=np.float32)
    >>> dropout(x, 0.5, rng=np.random.default_rng(0))
    array([2., 2., 2., 0., 0., 0.], dtype=float32)
    """
    x = check_float_array(x)
    p = check_probability(p)
    scaling = _check_scaling(scaling)
    if not training:
        y = x if scaling == "inverted" else x * (1.0 - p)
        return (y, None) if return_mask else y
    rng = check_generator(rng)

    if p in (0.0, 1.0):
        mask = bernoulli_mask(x.shape, p, rng=rng)
        y = x.copy(order="C") if p == 0.0 else np.zeros_like(x, order="C")
        return (y, mask) if return_mask else y

    # One pass per cache-sized block: draw words, compare, multiply, scale. No temporary
    # array of n elements is allocated beyond the output and the 1-byte mask.
    mask = np.empty(x.shape, dtype=bool)
    y = np.empty(x.shape, dtype=x.dtype)
    x_flat, y_flat, mask_flat = np.ascontiguousarray(x).reshape(-1), y.reshape(-1), mask.reshape(-1)
    scale = inverted_scale(p, x.dtype) if scaling == "inverted" else None
    for block in _fill_keep_mask_blocks(mask_flat, p, rng):
        np.multiply(x_flat[block], mask_flat[block], out=y_flat[block])
        if scale is not None:
            _scale_kept(y_flat[block], mask_flat[block], scale)
    return (y, mask) if return_mask else y


def apply_mask(
    x: np.ndarray, mask: np.ndarray, p: float, *, scaling: Scaling = "inverted"
) -> np.ndarray:
    r"""Apply a given keep mask: :math:`y = c\, m \odot x` with :math:`c = 1/(1-p)` or 1.

    This is the deterministic half of dropout. With the mask of a PyTorch call it reproduces
    PyTorch's output bit for bit (the factor is :func:`inverted_scale`), and because dropout
    is linear in :math:`x` for a fixed mask, the **backward pass is this same function applied
    to the gradient** (see :func:`dropout_backward`).

    Parameters
    ----------
    x : numpy.ndarray
        Floating array; the result has its dtype.
    mask : numpy.ndarray of bool
        Keep mask of the same shape as ``x``.
    p : float
        The drop probability the mask was drawn with.
    scaling : {"inverted", "standard"}, default "inverted"
        Whether kept values are divided by :math:`1-p` (inverted) or left as they are (standard).

    Returns
    -------
    numpy.ndarray
        A new array: ``x * c`` where the mask is true, ``x * 0`` where it is false (exact zeros
        for ``p = 1``).
    """
    x = check_float_array(x)
    p = check_probability(p)
    scaling = _check_scaling(scaling)
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        raise TypeError(
            "mask must be a boolean keep mask (e.g. from dropout(..., return_mask=True)), "
            f"but got {type(mask).__name__}"
            + (f" of dtype {mask.dtype}" if isinstance(mask, np.ndarray) else "")
        )
    if mask.shape != x.shape:
        raise ValueError(
            f"mask has shape {mask.shape} but the array has shape {x.shape}; they must match"
        )
    if p == 1.0:
        return np.zeros_like(x)
    y = np.multiply(x, mask, out=np.empty(x.shape, dtype=x.dtype))  # an array, even 0-d
    if scaling == "inverted" and p != 0.0:
        _scale_kept(y, mask, inverted_scale(p, x.dtype))
    return y


def dropout_backward(
    grad_output: np.ndarray,
    mask: np.ndarray,
    p: float,
    *,
    scaling: Scaling = "inverted",
) -> np.ndarray:
    r"""Gradient of the training-mode dropout with respect to its input.

    The forward pass is linear in :math:`x` for a fixed mask, :math:`y_i = c\, m_i x_i` with
    :math:`c = 1/(1-p)` (inverted) or :math:`c = 1` (standard), so

    .. math::

       \frac{\partial L}{\partial x_i} = c\, m_i \frac{\partial L}{\partial y_i},

    which is :func:`apply_mask` applied to the incoming gradient. The mask **must be the one
    drawn in the forward pass**; a fresh mask would give the gradient of a different function.

    Parameters
    ----------
    grad_output : numpy.ndarray
        :math:`\partial L / \partial y`, a floating array of the mask's shape.
    mask : numpy.ndarray of bool
        The keep mask returned by :func:`dropout` with ``return_mask=True``.
    p : float
        The drop probability used in the forward pass.
    scaling : {"inverted", "standard"}, default "inverted"
        The convention used in the forward pass.

    Returns
    -------
    numpy.ndarray
        :math:`\partial L / \partial x`, with the dtype of ``grad_output``.
    """
    return apply_mask(check_float_array(grad_output, "grad_output"), mask, p, scaling=scaling)
