r"""Philox4x32-10, the counter-based generator of GPU dropout, written out in NumPy.

Philox (Salmon et al., 2011) maps a 128-bit **counter** :math:`c = (c_0, c_1, c_2, c_3)` and a
64-bit **key** :math:`k = (k_0, k_1)` to four 32-bit words through ten rounds of

.. math::

   \begin{aligned}
   c_0' &= \operatorname{hi}(B c_2) \oplus c_1 \oplus k_0, \\
   c_1' &= \operatorname{lo}(B c_2), \\
   c_2' &= \operatorname{hi}(A c_0) \oplus c_3 \oplus k_1, \\
   c_3' &= \operatorname{lo}(A c_0), \\
   k_0 &\mathrel{+}= W_0,\quad k_1 \mathrel{+}= W_1 \pmod{2^{32}},
   \end{aligned}

where :math:`\operatorname{hi}` and :math:`\operatorname{lo}` are the upper and lower 32 bits of
the 64-bit product. There is no state to carry: word :math:`j` of counter :math:`c` can be
computed by anyone, in any order, which is what lets a kernel regenerate its dropout mask in
the backward pass. This module is the reference that the Triton kernels in
:mod:`dropoutlib.triton` are tested against (Triton's ``tl.randint4x`` computes the same
function), so it follows Triton's conventions: the key is the seed split into its low and
high 32-bit halves.

**The byte-first dropout stream** (:func:`philox_dropout_bytes`, :func:`philox_dropout_words`,
:func:`philox_keep_mask`) is what the Triton kernels draw. Element :math:`i = 16g + 4j + b`
(group :math:`g`, word :math:`j`, byte :math:`b`) reads byte :math:`b` (least significant
first) of word :math:`j` of the Philox call on counter :math:`(g, \text{offset}, \ell, 0)` at
**level** :math:`\ell \in \{0, 1, 2, 3\}`. Its uniform 32-bit word is the four levels' bytes,
level 0 most significant:

.. math::

   \begin{aligned}
   W_i &= B_i^{(0)} 2^{24} + B_i^{(1)} 2^{16} \\
     &\quad + B_i^{(2)} 2^{8} + B_i^{(3)}, \\
   \text{keep}_i &\iff W_i \ge t = \operatorname{round}(p\, 2^{32}).
   \end{aligned}

A kernel reads level 0 for every element (16 elements per Philox call) and a deeper level only
for the elements whose bytes so far equal the threshold's (probability :math:`2^{-8}` per level):
comparing most significant bytes first decides :math:`W_i \ge t` exactly, so
:math:`P(\text{keep}) = 1 - t/2^{32}` although about :math:`8 \cdot 256/255 \approx 8.03` bits
are read per element. The level lives in counter word :math:`c_2`, so the four levels'
counter ranges are disjoint, and disjoint from every ``offset``'s (:math:`c_1`). Groups
:math:`g < 2^{32}` allow up to :math:`2^{36}` elements per ``(seed, offset)``.

**The ranked rule** (:func:`philox_ranked_words`, ``philox_keep_mask(..., rule="ranked")``)
draws the refinement bytes differently, so that a kernel needs far less than a Philox call per
16 elements for them. Elements are cut into **refinement groups** of
:math:`G = 1024` (``RANK_GROUP``) consecutive indices, :math:`q = \lfloor i / G \rfloor`.
Element :math:`i` **ties** when :math:`B_i^{(0)}` equals the top byte of :math:`t`; let
:math:`K_q` be the number of ties among all :math:`G` indices of group :math:`q` (indices at or
beyond :math:`n` included, so that it is a property of the stream), and :math:`r_i` the number
of ties before :math:`i` in its group (its rank). If :math:`K_q \le R = 16` (``RANK_BYTES``),
a tied element's bytes of levels :math:`\ell = 1, 2, 3` are byte :math:`r_i` of the **rank
stream** of its group: byte :math:`b` of word :math:`j` at position :math:`4j + b` of the
Philox call on counter :math:`(q, \text{offset}, 4 + \ell, 0)`. Otherwise (probability
:math:`P(\text{Bin}(1024, 2^{-8}) > 16) \approx 10^{-6}` per group) and for untied elements
the bytes are those of the level rule above. Counter word :math:`c_2 \ge 5` keeps the rank
streams disjoint from the level rule's counters. Given the level-0 bytes, every tied element
reads its own bytes, used by no other element, of counters no level-0 byte came from, so
:math:`W_i` is uniform and :math:`P(\text{keep}) = 1 - t/2^{32}` exactly, as before; the mask
differs from the level rule's only at tied elements (about 1 in 256), and only through those
elements' lower bytes.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "DROPOUT_LEVELS",
    "PHILOX_ROUNDS",
    "RANK_BYTES",
    "RANK_GROUP",
    "check_seed_offset",
    "philox4x32",
    "philox_bytes_consumed",
    "philox_dropout_bytes",
    "philox_dropout_words",
    "philox_keep_mask",
    "philox_keep_words",
    "philox_ranked_words",
]

PHILOX_ROUNDS = 10
#: Bytes of the uniform word of an element: one Philox counter level each.
DROPOUT_LEVELS = 4
#: Elements per refinement group of the ranked rule (part of the mask's definition).
RANK_GROUP = 1024
#: Rank-stream bytes per group and level: one Philox4x32 call.
RANK_BYTES = 16
_ROUND_A = np.uint64(0xD2511F53)
_ROUND_B = np.uint64(0xCD9E8D57)
_KEY_A = 0x9E3779B9
_KEY_B = 0xBB67AE85
_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)


def check_seed_offset(seed: object, offset: object, *, offset_bits: int = 64) -> tuple[int, int]:
    r"""Check the key and stream of a seeded mask; return them as Python ints.

    Parameters
    ----------
    seed : int
        :math:`0 \le \text{seed} < 2^{64}`.
    offset : int
        :math:`0 \le \text{offset} < 2^{\text{offset\_bits}}`.
    offset_bits : int, default 64
        64 for the CPU stream (NumPy's Philox4x64), 32 for the GPU kernels (Philox4x32).

    Raises
    ------
    TypeError
        If either is not an integer (``bool``, ``float`` such as ``1.5`` or NaN, ``str``): a
        value is never truncated.
    ValueError
        If either is out of range.
    """
    checked = []
    for name, value, bits in (("seed", seed, 64), ("offset", offset, offset_bits)):
        if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
            raise TypeError(
                f"{name} must be an int, but got {value!r} of type {type(value).__name__}"
            )
        value = int(value)
        if not 0 <= value < 1 << bits:
            raise ValueError(f"{name} must be an integer in [0, 2**{bits}), but got {value}")
        checked.append(value)
    return checked[0], checked[1]


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
    r"""One 32-bit word per element, four elements per Philox call (the earlier kernels' layout).

    The current Triton kernels read a byte per element instead (:func:`philox_dropout_words`);
    this layout is kept for the chapter that introduces counter-based generators.

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


def _check_stream(n: int, offset: int) -> None:
    if not 0 <= n <= 16 << 32:
        raise ValueError(f"n must be an integer in [0, 2**36], but got {n!r}")
    if not 0 <= offset < 1 << 32:
        raise ValueError(f"offset must be an integer in [0, 2**32), but got {offset!r}")


def philox_dropout_bytes(n: int, seed: int, offset: int, level: int) -> np.ndarray:
    r"""Byte :math:`B_i^{(\ell)}` of each of ``n`` elements at one level of the dropout stream.

    Element :math:`16g + 4j + b` gets byte :math:`b` (bits :math:`8b \ldots 8b+7`) of word
    :math:`j` of the Philox4x32-10 call on counter :math:`(g, \text{offset}, \ell, 0)`: one
    call serves 16 consecutive elements.

    Parameters
    ----------
    n : int
        Number of elements, :math:`0 \le n \le 2^{36}`.
    seed : int
        Philox key, :math:`0 \le \text{seed} < 2^{64}`.
    offset : int
        Stream, :math:`0 \le \text{offset} < 2^{32}` (counter word :math:`c_1`).
    level : int
        :math:`0 \le \ell < 4` (counter word :math:`c_2`); level 0 is the most significant byte.

    Returns
    -------
    numpy.ndarray of uint8, shape (n,)
    """
    _check_stream(n, offset)
    if not 0 <= level < DROPOUT_LEVELS:
        raise ValueError(f"level must be 0, 1, 2 or 3, but got {level!r}")
    groups = np.arange((n + 15) // 16, dtype=np.uint64)
    words = np.stack(philox4x32((groups, offset, level, 0), seed), axis=1)  # (groups, 4)
    shifts = np.arange(0, 32, 8, dtype=np.uint32)
    return ((words[:, :, None] >> shifts) & 0xFF).astype(np.uint8).reshape(-1)[:n]


def philox_dropout_words(n: int, seed: int, offset: int) -> np.ndarray:
    r"""The uniform word :math:`W_i` of each element: its four levels' bytes, level 0 on top.

    A kernel that decides :math:`W_i \ge t` byte by byte, most significant first, reaches the
    same decision as comparing these words (see the module docstring). Parameters as in
    :func:`philox_dropout_bytes`.

    Returns
    -------
    numpy.ndarray of uint32, shape (n,)
    """
    words = np.zeros(n, dtype=np.uint32)
    for level in range(DROPOUT_LEVELS):
        level_bytes = philox_dropout_bytes(n, seed, offset, level).astype(np.uint32)
        words |= level_bytes << np.uint32(24 - 8 * level)
    return words


def philox_ranked_words(n: int, threshold: int, seed: int, offset: int) -> np.ndarray:
    r"""The uniform word :math:`W_i` of each element under the ranked rule (module docstring).

    Untied elements, and every element of a group with more than ``RANK_BYTES`` ties, have the
    words of :func:`philox_dropout_words`; a tied element of a group with at most
    ``RANK_BYTES`` ties keeps its level-0 byte on top and takes its three lower bytes from
    byte :math:`r_i` (its rank among the group's ties) of the rank streams
    :math:`(q, \text{offset}, 4 + \ell, 0)`, :math:`\ell = 1, 2, 3`.

    Parameters
    ----------
    n, seed, offset : int
        As in :func:`philox_dropout_bytes`.
    threshold : int
        :math:`t`, :math:`0 \le t < 2^{32}`: its top byte decides which elements tie.

    Returns
    -------
    numpy.ndarray of uint32, shape (n,)
    """
    _check_threshold(threshold)
    _check_stream(n, offset)
    n_groups = -(-n // RANK_GROUP)
    words = philox_dropout_words(n_groups * RANK_GROUP, seed, offset).reshape(n_groups, -1)
    tie = (words >> np.uint32(24)) == np.uint32(threshold >> 24)
    rank = np.cumsum(tie, axis=1) - tie  # ties before each element, in its group
    ranked = tie & (tie.sum(axis=1) <= RANK_BYTES)[:, None]
    lower = np.zeros(words.shape, dtype=np.uint32)
    shifts = np.arange(0, 32, 8, dtype=np.uint32)
    for level in range(1, DROPOUT_LEVELS):
        calls = np.stack(philox4x32((np.arange(n_groups), offset, 4 + level, 0), seed), axis=1)
        stream = ((calls[:, :, None] >> shifts) & 0xFF).reshape(n_groups, RANK_BYTES)
        level_bytes = np.take_along_axis(stream, np.minimum(rank, RANK_BYTES - 1), axis=1)
        lower |= level_bytes << np.uint32(24 - 8 * level)
    ranked_words = (words & np.uint32(0xFF000000)) | lower
    return np.where(ranked, ranked_words, words).reshape(-1)[:n]


def _check_threshold(threshold: int) -> None:
    if not 0 <= threshold < 1 << 32:
        raise ValueError(f"threshold must be an integer in [0, 2**32), but got {threshold!r}")


def philox_keep_mask(
    n: int, threshold: int, seed: int, offset: int, *, rule: str = "levels"
) -> np.ndarray:
    r"""The keep mask :math:`W_i \ge t` of the Triton kernels, for threshold :math:`t`.

    Parameters
    ----------
    n, seed, offset : int
        As in :func:`philox_dropout_bytes`.
    threshold : int
        :math:`t`, :math:`0 \le t < 2^{32}`; dropout with drop probability :math:`p` uses
        :math:`t = \operatorname{round}(p\,2^{32})`, so that :math:`P(\text{keep}) = 1 - t/2^{32}`.
    rule : {"levels", "ranked"}, default "levels"
        Where a tied element's lower bytes come from: :func:`philox_dropout_words` (the
        ``"eager"`` and ``"lazy"`` kernels) or :func:`philox_ranked_words` (``"ranked"``).

    Returns
    -------
    numpy.ndarray of bool, shape (n,)
    """
    _check_threshold(threshold)
    if rule == "levels":
        words = philox_dropout_words(n, seed, offset)
    elif rule == "ranked":
        words = philox_ranked_words(n, threshold, seed, offset)
    else:
        raise ValueError(f"rule must be 'levels' or 'ranked', but got {rule!r}")
    return words >= np.uint32(threshold)


def philox_bytes_consumed(words: np.ndarray, threshold: int) -> np.ndarray:
    r"""Bytes the byte-first rule reads to decide :math:`W_i \ge t`, per element (1 to 4).

    The rule reads level :math:`\ell + 1` only while the bytes of levels :math:`0..\ell`
    equal the threshold's and the threshold's remaining bytes are not all zero (if they are,
    :math:`W_i \ge t` whatever follows). The mean over uniform words is
    :math:`\sum_{\ell=0}^{3} 2^{-8\ell} \approx 1.004` bytes, about 8.03 bits.

    Parameters
    ----------
    words : numpy.ndarray of uint32
        :math:`W_i`, for example from :func:`philox_dropout_words`.
    threshold : int
        :math:`t`, :math:`0 \le t < 2^{32}`.

    Returns
    -------
    numpy.ndarray of uint8, same shape as ``words``
    """
    words = np.asarray(words, dtype=np.uint32)
    consumed = np.ones(words.shape, dtype=np.uint8)
    undecided = np.ones(words.shape, dtype=bool)
    for level in range(1, DROPOUT_LEVELS):
        shift = 32 - 8 * level  # the bits below the first `level` bytes
        undecided &= (words >> np.uint32(shift)) == (threshold >> shift)
        if threshold & ((1 << shift) - 1) == 0:
            break
        consumed += undecided
    return consumed
