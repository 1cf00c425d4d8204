r"""Philox4x32-10, the counter-based generator of GPU dropout, written out in NumPy.

Philox (Salmon et al., 2011) maps a 128-bit **counter** :math:`c = (c_0, c_1, c_2, c_3)` and a
64-bit **key** :math:`k = (k_0, k_1)` to four 32-bit words through ten rounds of

.. math::

   \begin{aligned}
   c_0' &= \operatorname{hi}(B c_2) \oplus c_1 \oplus k_0, &
   c_1' &= \operatorname{lo}(B c_2), \\
   c_2' &= \operatorname{hi}(A c_0) \oplus c_3 \oplus k_1, &
   c_3' &= \operatorname{lo}(A c_0),
   \end{aligned}
   \qquad k_0 \mathrel{+}= W_0,\; k_1 \mathrel{+}= W_1 \pmod{2^{32}},

where :math:`\operatorname{hi}` and :math:`\operatorname{lo}` are the upper and lower 32 bits of
the 64-bit product. There is no state to carry: word :math:`j` of counter :math:`c` can be
computed by anyone, in any order, which is what lets a kernel regenerate its dropout mask in
the backward pass. This module is the reference that the Triton kernels in
:mod:`dropoutlib.triton` are tested against (Triton's ``tl.randint4x`` computes the same
function), so it follows Triton's conventions: the key is the seed split into its low and
high 32-bit halves.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PHILOX_ROUNDS", "philox4x32", "philox_keep_words"]

PHILOX_ROUNDS = 10
_ROUND_A = np.uint64(0xD2511F53)
_ROUND_B = np.uint64(0xCD9E8D57)
_KEY_A = 0x9E3779B9
_KEY_B = 0xBB67AE85
_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)


def philox4x32(
    counters: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    seed: int,
    rounds: int = PHILOX_ROUNDS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""Apply Philox4x32 to many counters at once (vectorised over the arrays).

    Parameters
    ----------
    counters : tuple of four arrays
        The counter words :math:`(c_0, c_1, c_2, c_3)`, unsigned integers below :math:`2^{32}`,
        broadcastable to a common shape.
    seed : int
        The key, :math:`0 \le \text{seed} < 2^{64}`: :math:`k_0` is its low 32 bits and
        :math:`k_1` its high 32 bits.
    rounds : int, default 10
        Number of rounds (10 is the standard Philox4x32-10).

    Returns
    -------
    tuple of four numpy.ndarray of uint32
        The four output words for every counter.
    """
    if not 0 <= seed < 1 << 64:
        raise ValueError(f"seed must be an integer in [0, 2**64), but got {seed!r}")
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in np.broadcast_arrays(*counters))
    k0, k1 = seed & 0xFFFFFFFF, seed >> 32
    for _ in range(rounds):
        prod_b = _ROUND_B * c2  # exact: both factors are below 2**32
        prod_a = _ROUND_A * c0
        c0, c1, c2, c3 = (
            (prod_b >> _SHIFT) ^ c1 ^ np.uint64(k0),
            prod_b & _LOW32,
            (prod_a >> _SHIFT) ^ c3 ^ np.uint64(k1),
            prod_a & _LOW32,
        )
        k0, k1 = (k0 + _KEY_A) & 0xFFFFFFFF, (k1 + _KEY_B) & 0xFFFFFFFF
    return tuple(c.astype(np.uint32) for c in (c0, c1, c2, c3))  # type: ignore[return-value]


def philox_keep_words(n: int, seed: int, offset: int) -> np.ndarray:
    r"""The 32-bit random word of each of ``n`` elements, as the Triton dropout kernels draw them.

    Element :math:`i` gets word :math:`i \bmod 4` of the Philox call on counter
    :math:`(\lfloor i/4 \rfloor,\ \text{offset},\ 0,\ 0)`: every call serves four
    consecutive elements and none of its 128 bits is wasted. The mapping does not depend on
    any kernel block size, so the mask of ``(seed, offset)`` is a property of the pair alone.

    Parameters
    ----------
    n : int
        Number of elements.
    seed : int
        Philox key, :math:`0 \le \text{seed} < 2^{64}`.
    offset : int
        Stream offset, :math:`0 \le \text{offset} < 2^{32}` (the second counter word).

    Returns
    -------
    numpy.ndarray of uint32, shape (n,)
    """
    groups = np.arange((n + 3) // 4, dtype=np.uint64)
    words = philox4x32((groups, np.uint64(offset), np.uint64(0), np.uint64(0)), seed)
    return np.stack(words, axis=1).reshape(-1)[:n]
