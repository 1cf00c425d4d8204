r"""Element-wise dropout in NumPy: the Bernoulli mask, the forward pass and the backward pass.

Notation (the book's, and PyTorch's): :math:`p` is the **drop** probability and
:math:`q = 1 - p` the keep probability. For an input :math:`x`, a keep mask
:math:`m_i \sim \mathrm{Bernoulli}(1 - p)` drawn independently per element gives inverted
dropout,

.. math::

   \begin{aligned}
   \text{training:}\quad y_i &= \frac{m_i\, x_i}{1 - p}, \\
   \text{evaluation:}\quad y_i &= x_i,
   \end{aligned}

so that :math:`\mathbb{E}[y_i] = x_i` and :math:`\operatorname{Var}[y_i] = \frac{p}{1-p}\,x_i^2`.
The paper's *standard* form (Srivastava et al., 2014) trains with :math:`y_i = m_i x_i` and
multiplies by the keep probability :math:`1 - p` at test time instead.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from dropoutlib._validation import (
    check_float_array,
    check_generator,
    check_probability,
    check_training,
)

__all__ = [
    "SCALINGS",
    "Scaling",
    "apply_mask",
    "bernoulli_mask",
    "dropout",
    "dropout_backward",
    "inverted_scale",
    "random_bytes",
    "reference_byte_first_mask",
    "reference_dropout",
]

Scaling = Literal["inverted", "standard"]
SCALINGS: tuple[str, ...] = ("inverted", "standard")


def _check_scaling(scaling: object) -> str:
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, but got {scaling!r}")
    return str(scaling)


_BLOCK = 1 << 17  # elements per block (a multiple of 8): a block's bytes and mask stay in cache
_WORD = 1 << 32

#: Bit generators whose ``random_raw`` outputs are uniform 64-bit words (8 bytes each); every
#: other bit generator (MT19937 and any third-party one) contributes the low 4 bytes of each
#: raw output, which is uniform whenever the outputs are at least 32-bit words.
_WIDE_BIT_GENERATORS = (np.random.PCG64, np.random.PCG64DXSM, np.random.Philox, np.random.SFC64)


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


def _threshold_bytes(p: float) -> tuple[np.uint8, np.uint8, np.uint8, np.uint8]:
    """The four bytes of :func:`_drop_threshold`, most significant first."""
    t = int(_drop_threshold(p))
    return tuple(np.uint8((t >> shift) & 0xFF) for shift in (24, 16, 8, 0))  # type: ignore[return-value]


def random_bytes(bit_generator: np.random.BitGenerator, count: int) -> np.ndarray:
    r"""The next ``count`` bytes of a bit generator's **byte stream**, as the masks read it.

    The stream is the generator's raw outputs (``bit_generator.random_raw``) cut into bytes,
    least significant byte first: 8 bytes per output for the 64-bit generators NumPy ships
    (PCG64, PCG64DXSM, Philox, SFC64), 4 bytes per output for every other bit generator
    (MT19937's raw outputs are 32-bit words, so only their low 4 bytes are random). A call
    draws :math:`\lceil \text{count} / 8 \rceil` (or :math:`\lceil \text{count} / 4 \rceil`)
    raw outputs and discards the unused bytes of the last one, so the result of a call depends
    only on the generator's state and ``count``, on any machine (the byte order is fixed, not
    the platform's).

    Parameters
    ----------
    bit_generator : numpy.random.BitGenerator
        For example ``rng.bit_generator``; it advances by the outputs drawn.
    count : int
        Number of bytes, :math:`\ge 0`.

    Returns
    -------
    numpy.ndarray of uint8, shape (count,)
    """
    if isinstance(bit_generator, _WIDE_BIT_GENERATORS):
        raw = bit_generator.random_raw(-(-count // 8))
        return raw.astype("<u8", copy=False).view(np.uint8)[:count]
    raw = bit_generator.random_raw(-(-count // 4))
    return raw.astype("<u4").view(np.uint8)[:count]


def _first_bytes(
    mask: np.ndarray,
    start: int,
    digit: np.uint8,
    bit_generator: np.random.BitGenerator,
    tie_buffer: np.ndarray | None = None,
) -> np.ndarray:
    """Round 0 for one block: ``mask = byte > digit``; return the tied indices (plus ``start``).

    Blocks of :data:`_BLOCK` elements (a multiple of 8 bytes) read consecutive stretches of
    the byte stream, exactly as one request for all the call's first bytes would.
    ``tie_buffer`` (boolean, at least ``mask.size`` long) is scratch space reused across blocks.
    """
    drawn = random_bytes(bit_generator, mask.size)
    np.greater(drawn, digit, out=mask)
    ties = np.empty(mask.size, dtype=bool) if tie_buffer is None else tie_buffer[: mask.size]
    tied = np.equal(drawn, digit, out=ties).nonzero()[0]
    if start:
        tied += start
    return tied


def _first_pass(
    x: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray | None,
    digit: np.uint8,
    scale: np.floating | None,
    bit_generator: np.random.BitGenerator,
    tied: list[np.ndarray],
    tied_x: list[np.ndarray],
) -> None:
    """The block pass of :func:`_dropout_flat`; appends each block's ties and their inputs.

    Per block: the keep bytes are compared into a boolean mask (``mask``'s block, or one
    scratch buffer reused by every block), the ties are found through a second reused buffer,
    their inputs are saved (before ``y``, which may be ``x``, is written), and ``y = x * m``
    is scaled in place while the block is still in cache.
    """
    size = min(_BLOCK, x.size)
    keep_buffer = np.empty(size, dtype=bool) if mask is None else None
    tie_buffer = np.empty(size, dtype=bool)
    # A finite factor is folded into the mask: x * (m * c) is (x * m) * c bit for bit, since
    # m * c is exactly c or 0 and x * 0 is +-0 or NaN either way (10% faster than two passes).
    fused = scale is not None and np.isfinite(scale)
    factor_buffer = np.empty(size, dtype=x.dtype) if fused else None
    for start in range(0, x.size, _BLOCK):
        stop = min(start + _BLOCK, x.size)
        m = mask[start:stop] if keep_buffer is None else keep_buffer[: stop - start]
        t = _first_bytes(m, start, digit, bit_generator, tie_buffer)
        tied.append(t)
        tied_x.append(x[t])
        if fused:
            factor = factor_buffer[: stop - start]
            np.copyto(factor, m)
            np.multiply(factor, scale, out=factor)
            np.multiply(x[start:stop], factor, out=y[start:stop])
            continue
        yb = np.multiply(x[start:stop], m, out=y[start:stop])
        if scale is not None:
            _scale_kept(yb, m, scale)


def _refine_ties(
    tied: np.ndarray, digits: tuple[np.uint8, ...], bit_generator: np.random.BitGenerator
) -> np.ndarray:
    """Rounds 1, 2, 3 for the elements tied on the first byte; return which of them are kept.

    Round :math:`k` draws one byte for each element still tied, in index order, and compares it
    with byte :math:`k` of the threshold; a round is skipped when nothing is tied. The result
    is a boolean array aligned with ``tied``.
    """
    keep = np.zeros(tied.size, dtype=bool)
    pending = np.arange(tied.size)
    for digit in digits[1:]:
        if pending.size == 0:
            break
        drawn = random_bytes(bit_generator, pending.size)
        keep[pending[drawn > digit]] = True
        pending = pending[drawn == digit]
    keep[pending] = True  # every byte equal: the word equals t, and w >= t is kept
    return keep


def _byte_first_fill(
    mask: np.ndarray, digits: tuple[np.uint8, ...], bit_generator: np.random.BitGenerator
) -> None:
    """Fill the flat boolean ``mask`` by the byte-first rule (the vectorised kernel)."""
    tie_buffer = np.empty(min(_BLOCK, mask.size), dtype=bool)
    tied = [
        _first_bytes(mask[start : start + _BLOCK], start, digits[0], bit_generator, tie_buffer)
        for start in range(0, mask.size, _BLOCK)
    ]
    if tied:
        tied_all = np.concatenate(tied)
        mask[tied_all[_refine_ties(tied_all, digits, bit_generator)]] = True


def _dropout_flat(
    x: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray | None,
    p: float,
    scaling: str,
    bit_generator: np.random.BitGenerator,
) -> None:
    """``y = c * m * x`` on flat contiguous arrays, with ``m`` drawn by the byte-first rule.

    One pass over the data in cache-sized blocks: draw the first bytes, compare, multiply and
    scale (tied elements are provisionally dropped). Then the few tied elements (about
    :math:`n/256`) are refined and the kept ones set to ``c * x``, the value the block pass gives
    a kept element (their inputs are saved first, so ``y`` may be ``x`` itself). ``mask`` is the
    full keep mask to fill, or ``None`` to use one block-sized buffer (nothing of size :math:`n`
    is allocated beyond ``y``). Requires ``0 < p < 1``.
    """
    digits = _threshold_bytes(p)
    scale = inverted_scale(p, x.dtype) if scaling == "inverted" else None
    tied, tied_x = [], []
    with np.errstate(invalid="ignore"):  # a dropped inf is 0 * inf = nan, as in PyTorch
        _first_pass(x, y, mask, digits[0], scale, bit_generator, tied, tied_x)
    if not tied:
        return
    tied_all = np.concatenate(tied)
    keep = _refine_ties(tied_all, digits, bit_generator)
    kept, values = tied_all[keep], np.concatenate(tied_x)[keep]  # x * 1, as in the block pass
    if mask is not None:
        mask[kept] = True
    if scale is not None:
        _scale_kept(values, np.ones(values.shape, dtype=bool), scale)
    y[kept] = values


def reference_byte_first_mask(
    shape: int | tuple[int, ...], p: float, *, rng: np.random.Generator
) -> np.ndarray:
    """The byte-first rule of :func:`bernoulli_mask` written as a plain loop (the test oracle).

    Slow (one Python step per element and byte) and obviously correct: each element compares
    the bytes of its word with the bytes of :math:`t`, most significant first, until one
    differs. It consumes the byte stream in the same documented order as the fast kernel, so
    the two agree element for element.
    """
    p = check_probability(p)
    rng = check_generator(rng)
    mask = np.zeros(shape, dtype=bool)
    if p == 0.0:
        mask[...] = True
    if p in (0.0, 1.0):
        return mask
    _reference_fill(mask.reshape(-1), _threshold_bytes(p), rng.bit_generator)
    return mask


def _reference_fill(
    mask: np.ndarray, t_bytes: tuple[np.uint8, ...], bit_generator: np.random.BitGenerator
) -> None:
    """The loop of :func:`reference_byte_first_mask` on a flat mask, element by element."""
    undecided = list(range(mask.size))
    for t_byte in t_bytes:  # most significant byte first
        if not undecided:
            return
        drawn = random_bytes(bit_generator, len(undecided))
        still_tied = []
        for i, byte in zip(undecided, drawn, strict=True):
            if byte == t_byte:
                still_tied.append(i)
            else:
                mask[i] = byte > t_byte
        undecided = still_tied
    for i in undecided:  # every byte equal: w == t, kept because w >= t
        mask[i] = True


def reference_dropout(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    r"""Inverted dropout in two lines of NumPy: the obvious version, kept as a test oracle.

    A uniform :math:`u_i \in [0, 1)` per element, kept when :math:`u_i \ge p`, so
    :math:`P(\text{keep}) = 1 - p`; kept values are divided by :math:`1 - p`. It draws its
    randomness differently from :func:`dropout` (a 53-bit float per element instead of the
    byte-first comparison), so the two agree in distribution, not mask for mask; ``p`` must be
    below 1.
    """
    mask = rng.random(x.shape) >= p
    return x * mask / (1 - p)


def bernoulli_mask(
    shape: int | tuple[int, ...], p: float, *, rng: np.random.Generator
) -> np.ndarray:
    r"""Draw a keep mask: ``True`` with probability :math:`1 - p`, independently per element.

    **The rule.** Element :math:`i` is kept when a uniform 32-bit word :math:`w_i` satisfies
    :math:`w_i \ge t` with :math:`t = \operatorname{round}(p \cdot 2^{32})` (at most
    :math:`2^{32} - 1`), so

    .. math::

       \begin{aligned}
       P(m_i = 1) &= 1 - t / 2^{32} \\
         &= 1 - p + \varepsilon, \\
       |\varepsilon| &\le 2^{-33},
       \end{aligned}

    exact for :math:`p \in \{0, \tfrac14, \tfrac12, \tfrac34, 1\}` and any :math:`k/2^{32}`.
    The bound holds for :math:`p \le 1 - 2^{-33}`; above that the cap :math:`t \le 2^{32} - 1`
    keeps :math:`P(m_i = 1) = 2^{-32}`, so :math:`|\varepsilon| < 2^{-32}` (and :math:`p = 1`
    itself draws nothing and drops everything).

    **Byte first.** The word is never drawn whole. Write :math:`w = (b_3 b_2 b_1 b_0)` and
    :math:`t = (t_3 t_2 t_1 t_0)` in base 256, most significant byte first. Comparing
    lexicographically, :math:`w \ge t` is decided by the first byte that differs: keep if
    :math:`b_k > t_k`, drop if :math:`b_k < t_k`, and only on a tie :math:`b_k = t_k`
    (probability :math:`1/256`) draw the next byte; four ties mean :math:`w = t`, kept. Each
    byte is uniform and independent, so the result has exactly the law of the 32-bit
    comparison, from :math:`8 \cdot (1 + 1/256 + 1/256^2 + 1/256^3) \approx 8.03` random bits
    per element on average instead of 32.

    **Order of consumption** (stable, part of the contract). A call for :math:`n` elements
    (in C order) first reads :math:`n` bytes, the most significant byte :math:`b_3` of every
    element in index order; then one byte for each element still tied, in index order
    (:math:`b_2`); then the same for :math:`b_1` and :math:`b_0`, a round being skipped when
    nothing is tied. Each of these (at most four) requests reads the generator's byte stream
    through :func:`random_bytes`: 8 bytes per raw output of PCG64, PCG64DXSM, Philox and SFC64,
    the low 4 bytes of each output of MT19937 and other generators, the unused bytes of a
    request's last output discarded. (The first request is served in blocks of :math:`2^{17}`
    elements that stay in cache, which reads the same bytes.) So a mask depends only on
    :math:`p`, :math:`n` and the generator's state; two calls for :math:`n_1` and :math:`n_2`
    elements do not give the mask of one call for :math:`n_1 + n_2`.
    :func:`reference_byte_first_mask` is the same rule as a plain loop, and the tests check
    the two agree element for element.

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the mask.
    p : float
        Drop probability, :math:`0 \le p \le 1`.
    rng : numpy.random.Generator
        The source of randomness (required, keyword-only), with any of NumPy's bit generators.

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
    _byte_first_fill(mask.reshape(-1), _threshold_bytes(p), rng.bit_generator)
    return mask


def dropout(
    x: np.ndarray,
    p: float = 0.5,
    *,
    rng: np.random.Generator | None = None,
    training: bool = True,
    scaling: Scaling = "inverted",
    return_mask: bool = False,
    out: np.ndarray | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    r"""Apply dropout to ``x``.

    ========================  ===============================  ===========================
    ``scaling``               training (``training=True``)     evaluation
    ========================  ===============================  ===========================
    ``"inverted"`` (default)  :math:`y = m \odot x / (1 - p)`  :math:`y = x` (same object)
    ``"standard"`` (paper)    :math:`y = m \odot x`            :math:`y = (1 - p)\, x`
    ========================  ===============================  ===========================

    with :math:`m_i \sim \mathrm{Bernoulli}(1 - p)` from :func:`bernoulli_mask`. In both
    conventions the evaluation output is the expected training output:
    :math:`\mathbb{E}[y_\text{train}] = x = y_\text{eval}` for inverted dropout and
    :math:`\mathbb{E}[y_\text{train}] = (1-p)\,x = y_\text{eval}` for standard dropout. The two
    conventions differ by the constant factor :math:`1 - p` in both phases.

    Parameters
    ----------
    x : numpy.ndarray
        Input of any shape and a floating dtype (float16, float32 or float64). The output
        has the same dtype.
    p : float, default 0.5
        Drop probability, :math:`0 \le p \le 1`. ``p = 0`` keeps everything (the output
        equals ``x``). A kept element is multiplied by :func:`inverted_scale` (rounded as
        PyTorch rounds it; 1 for standard scaling) and a dropped one by 0, **at every p
        including p = 1**, as in PyTorch: a dropped finite value becomes an exact zero
        (``-0.0`` if it was negative), never NaN, and a dropped ``inf`` or ``nan`` becomes
        ``nan`` (``0 * inf``).
    rng : numpy.random.Generator, optional
        Required when ``training`` is true (even for ``p`` of 0 or 1, so that code which works
        at one ``p`` keeps working at another); unused in evaluation.
    training : bool, default True
        Training draws a mask; evaluation is deterministic. Must be a ``bool`` (a string
        such as ``"False"`` or ``None`` is refused, as PyTorch refuses it).
    scaling : {"inverted", "standard"}, default "inverted"
        Where the factor :math:`1 - p` goes: divided out in training (PyTorch) or multiplied
        in at test time (the paper).
    return_mask : bool, default False
        If true, return ``(y, mask)``; ``mask`` is the boolean keep mask (1 byte per
        element) needed by :func:`dropout_backward`, or ``None`` in evaluation.
    out : numpy.ndarray, optional
        Where to write ``y``: a C-contiguous, writeable array of the shape and dtype of
        ``x``, which may be ``x`` itself (in-place dropout) but must not otherwise overlap it.
        ``y`` is then ``out`` (also in inverted evaluation, where ``x`` is copied into it).
        Saves the allocation of the output on repeated calls.

    Returns
    -------
    numpy.ndarray or tuple
        ``y``, or ``(y, mask)`` when ``return_mask`` is true; always an array, 0-d for 0-d
        input. ``x`` is never modified unless it is ``out``. In inverted evaluation without
        ``out``, ``y`` *is* ``x``, as in PyTorch.

    Raises
    ------
    TypeError
        ``x`` is not a floating ndarray, ``p`` is not a real number, ``training`` is not a
        bool, ``rng`` is missing in training, or ``out`` is not an ndarray of ``x``'s dtype.
    ValueError
        ``p`` is NaN or outside [0, 1], ``scaling`` is unknown, or ``out`` has the wrong
        shape, is not C-contiguous and writeable, or partly overlaps ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> from dropoutlib.numpy import dropout
    >>> x = np.ones(6, dtype=np.float32)
    >>> dropout(x, 0.5, rng=np.random.default_rng(0))
    array([0., 2., 2., 2., 2., 2.], dtype=float32)
    """
    x = check_float_array(x)
    p = check_probability(p)
    training = check_training(training)
    scaling = _check_scaling(scaling)
    if out is not None:
        _check_out(out, x)
    if not training:
        if scaling == "inverted":
            y = x if out is None else _copy_into(out, x)
        else:
            y = np.multiply(x, x.dtype.type(1.0 - p), out=_output(x, out))
        return (y, None) if return_mask else y
    rng = check_generator(rng)

    if p in (0.0, 1.0):
        mask = bernoulli_mask(x.shape, p, rng=rng)
        if p == 0.0:
            y = x.copy() if out is None else _copy_into(out, x)
        else:
            y = _times_zero(x, _output(x, out))
        return (y, mask) if return_mask else y

    # One pass per cache-sized block: draw bytes, compare, multiply, scale. No temporary
    # array of n elements is allocated beyond the output (and the 1-byte mask if asked for).
    y = _output(x, out)
    mask = np.empty(x.shape, dtype=bool) if return_mask else None
    _dropout_flat(
        x.reshape(-1) if x.flags.c_contiguous else np.ascontiguousarray(x).reshape(-1),
        y.reshape(-1),
        None if mask is None else mask.reshape(-1),
        p,
        scaling,
        rng.bit_generator,
    )
    return (y, mask) if return_mask else y


def _times_zero(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``x * 0`` into ``out``, as PyTorch drops at p = 1: -0.0 for negative x, NaN for inf/NaN."""
    with np.errstate(invalid="ignore"):  # 0 * inf = nan is the documented result
        return np.multiply(x, x.dtype.type(0.0), out=out)


def _output(x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """``out``, or a new C-contiguous array like ``x``."""
    return np.empty(x.shape, dtype=x.dtype) if out is None else out


def _copy_into(out: np.ndarray, x: np.ndarray) -> np.ndarray:
    if out is not x:
        np.copyto(out, x)
    return out


def _check_out(out: object, x: np.ndarray) -> None:
    """Refuse an ``out=`` array that the blocked kernel cannot write ``y`` into."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, but got {type(out).__name__}")
    if out.dtype != x.dtype:
        raise TypeError(
            f"out has dtype {out.dtype} but the input has dtype {x.dtype}; they must match"
        )
    if out.shape != x.shape:
        raise ValueError(
            f"out has shape {out.shape} but the input has shape {x.shape}; they must match"
        )
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ValueError("out must be a C-contiguous, writeable array")
    same = out.__array_interface__["data"][0] == x.__array_interface__["data"][0]
    if np.may_share_memory(out, x) and not (same and x.flags.c_contiguous):
        raise ValueError("out overlaps the input without being the input itself")


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
        return _times_zero(x, np.empty(x.shape, dtype=x.dtype))
    with np.errstate(invalid="ignore"):  # a dropped inf is 0 * inf = nan, as in PyTorch
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
