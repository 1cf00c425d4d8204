r"""FlashAttention-2's 8-bit dropout threshold: its keep probability, its bias and its bits.

FlashAttention-2 (Dao, 2023; ``csrc/flash_attn/flash_api.cpp`` and ``src/dropout.h`` in
Dao-AILab/flash-attention, vendored by PyTorch under
``aten/src/ATen/native/transformers/cuda/flash_attn/``) does not draw one uniform number per
attention probability. It cuts each 128-bit Philox output into 16 random **bytes**
:math:`b \in \{0, \dots, 255\}`, one per element, and keeps an element when

.. math::

   b \le t, \qquad t = \bigl\lfloor \mathrm{fl}_{32}(1 - p) \cdot 255 \bigr\rfloor

(``params.p_dropout = 1.f - p_dropout``, ``p_dropout_in_uint8_t =
uint8_t(std::floor(params.p_dropout * 255.0))``, ``rnd_8[i] <= p_dropout_in_uint8_t``). A kept
element is scaled by ``rp_dropout = 1.f / params.p_dropout``, i.e. by :math:`1/(1-p)` in float32.

Since :math:`b` is uniform on 256 values, :math:`P(\text{keep}) = (t+1)/256` and

.. math::

   \frac{\mathbb{E}[y]}{x} = \frac{t + 1}{256\,(1-p)} .

With :math:`q = 1 - p` computed exactly: :math:`255q - 1 < t \le 255q`, so the ratio lies in
:math:`(255/256,\ (255q+1)/(256q)]`; it equals 1 exactly when :math:`t + 1 = 256q`, i.e. when
:math:`q = m/256` for an integer :math:`m` (then :math:`t = \lfloor m - m/256 \rfloor = m - 1`),
as for :math:`p = 0.5`. The kernel computes :math:`q` in float32, which can move :math:`t` by
one where :math:`255q` is an integer: at :math:`p = 0.6`, :math:`\mathrm{fl}_{32}(0.4) \cdot 255
= 101.99\ldots`, so :math:`t = 101`, not 102, and the ratio is :math:`255/256` (likewise
:math:`t = 50` at :math:`p = 0.8`). The library's exact rule
(:func:`dropoutlib.numpy.bernoulli_mask`) compares whole 32-bit words, byte by byte, and keeps
with probability
:math:`1 - \operatorname{round}(p\,2^{32})/2^{32}`, within :math:`2^{-33}` of :math:`1-p`, at
a cost of :math:`8(1 + 2^{-8} + 2^{-16} + 2^{-24})` random bits per element on average.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from dropoutlib._validation import check_probability
from dropoutlib.numpy.functional import _threshold_bytes

__all__ = [
    "FLASH_BITS_PER_ELEMENT",
    "byte_first_bits_per_element",
    "byte_first_keep_probability",
    "flash_expected_ratio",
    "flash_keep_mask",
    "flash_keep_probability",
    "flash_ratio_by_enumeration",
    "flash_threshold",
]

#: Random bits FlashAttention-2 spends per element: one byte (16 elements per Philox call).
FLASH_BITS_PER_ELEMENT = 8


def _check_flash_p(p: float) -> float:
    p = check_probability(p)
    if p == 1.0:  # flash_api.cpp: TORCH_CHECK(p_dropout < 1.f)
        raise ValueError("FlashAttention requires p < 1 (flash_api.cpp checks p_dropout < 1)")
    return p


def flash_threshold(p: float) -> int:
    r"""The byte threshold :math:`t = \lfloor \mathrm{fl}_{32}(1-p) \cdot 255 \rfloor`.

    Computed as ``flash_api.cpp`` does: ``p`` is a C++ ``float``, ``1.f - p`` is rounded to
    float32, then multiplied by the double ``255.0`` and floored.

    Parameters
    ----------
    p : float
        Drop probability in [0, 1).

    Returns
    -------
    int
        :math:`t \in \{0, \dots, 255\}`; an element is kept when its byte is :math:`\le t`.
    """
    p = _check_flash_p(p)
    keep32 = np.float32(1.0) - np.float32(p)
    return math.floor(float(keep32) * 255.0)


def flash_keep_mask(random_bytes: np.ndarray, p: float) -> np.ndarray:
    """FlashAttention-2's keep decision for each byte: ``byte <= flash_threshold(p)``.

    Parameters
    ----------
    random_bytes : numpy.ndarray of uint8
        One random byte per element.
    p : float
        Drop probability in [0, 1).
    """
    b = np.asarray(random_bytes)
    if b.dtype != np.uint8:
        raise TypeError(f"random_bytes must be a uint8 array, but got dtype {b.dtype}")
    return b <= np.uint8(flash_threshold(p))


def flash_keep_probability(p: float) -> Fraction:
    r""":math:`P(\text{keep}) = (t+1)/256` for a uniform byte, as an exact fraction."""
    return Fraction(flash_threshold(p) + 1, 256)


def flash_expected_ratio(p: float, *, float32_scale: bool = False) -> float:
    r""":math:`\mathbb{E}[y]/x = P(\text{keep}) \cdot s`: the multiplicative bias of the kernel.

    Parameters
    ----------
    p : float
        Drop probability in [0, 1).
    float32_scale : bool, default False
        ``False``: :math:`s = 1/(1-p)` exactly (the formula
        :math:`(t+1)/(256(1-p))`); ``True``: :math:`s` = ``1.f / (1.f - p)`` rounded to float32
        as the kernel's ``rp_dropout`` (differs from the former by a relative :math:`< 2^{-23}`).
    """
    keep = flash_keep_probability(p)
    if float32_scale:
        scale = Fraction(float(np.float32(1.0) / (np.float32(1.0) - np.float32(p))))
    else:
        scale = 1 / (1 - Fraction(p))
    return float(keep * scale)


def flash_ratio_by_enumeration(p: float) -> Fraction:
    r"""The same ratio by brute force: average of ``keep(b) / (1 - p)`` over all 256 bytes.

    Every byte value is equally likely, so the mean over ``b = 0..255`` of the kernel's output
    for ``x = 1`` *is* the expectation; computed with exact fractions (no Monte Carlo error).
    """
    keep = flash_keep_mask(np.arange(256, dtype=np.uint8), p)
    return Fraction(int(keep.sum()), 256) / (1 - Fraction(p))


def byte_first_keep_probability(p: float) -> Fraction:
    r"""Keep probability of the library's exact byte-first rule, by enumerating its bytes.

    For :math:`p < 1` (at :math:`p = 1` the mask is all ``False`` and no byte is read).

    The rule keeps an element when its 32-bit word :math:`w \ge T`,
    :math:`T = \min(\operatorname{round}(p\,2^{32}), 2^{32}-1)`, deciding on the most
    significant byte first. With :math:`d_0, \dots, d_3` the bytes of :math:`T`, round
    :math:`k` keeps on the :math:`255 - d_k` bytes above :math:`d_k`, drops on the
    :math:`d_k` below, and goes on to the next byte on the one tie; a tie on all four bytes
    means :math:`w = T`, kept. So

    .. math::

       \begin{aligned}
       P &= \sum_{k=0}^{3} \frac{255 - d_k}{256^{k+1}} + \frac{1}{256^4} \\
         &= 1 - \frac{T}{2^{32}} .
       \end{aligned}

    Returns the sum over the enumerated byte outcomes (a :class:`fractions.Fraction`).
    """
    digits = [int(d) for d in _threshold_bytes(check_probability(p))]  # the library's own
    total, weight = Fraction(0), Fraction(1)
    for d in digits:
        weight /= 256
        total += weight * sum(1 for b in range(256) if b > d)  # bytes that decide "keep"
    return total + weight  # all four bytes tied: w == T, kept


def byte_first_bits_per_element() -> Fraction:
    r"""Expected random bits per element of the byte-first rule: :math:`8\sum_{k=0}^{3}256^{-k}`.

    Round :math:`k` is reached only after :math:`k` ties, each of probability :math:`1/256`,
    whatever :math:`p` is.
    """
    return sum((Fraction(8, 256**k) for k in range(4)), Fraction(0))
