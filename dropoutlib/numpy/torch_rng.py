r"""PyTorch's CPU random stream and CPU dropout, reproduced in NumPy bit for bit.

PyTorch's CPU generator (torch 2.13) is the 32-bit Mersenne Twister MT19937
(Matsumoto & Nishimura, 1998), seeded by ``torch.manual_seed(s)`` with Knuth's
``init_genrand(s mod 2**32)``. ``Tensor.bernoulli_(q)`` draws one double per element from two
consecutive 32-bit words :math:`w_{2k}` (high) and :math:`w_{2k+1}` (low):

.. math::

   \begin{aligned}
   v_k &= \bigl(2^{32} w_{2k} + w_{2k+1}\bigr) \bmod 2^{53}, \\
   u_k &= v_k \cdot 2^{-53} \in [0, 1), \\
   m_k &= [\,u_k < q\,],
   \end{aligned}

with :math:`q = 1 - p` the keep probability, element :math:`k` being the :math:`k`-th element of
the noise tensor **in memory order**. The dropout arithmetic then runs in the input's dtype as
ATen does (``noise.div_(q)``, ``input.mul(noise)``). This module is a from-scratch emulation:

- :func:`mt19937_seed`, :func:`mt19937_twist`, :func:`mt19937_temper` and
  :func:`mt19937_words` implement the generator itself in vectorised NumPy (the reference);
- :class:`TorchCPUGenerator` holds that state in NumPy's own ``MT19937`` bit generator (fast,
  and checked against the reference) and continues the stream across calls, like torch's;
- :func:`torch_dropout` reproduces ``torch.dropout``, ``torch.feature_dropout``,
  ``torch.alpha_dropout`` and ``torch.feature_alpha_dropout`` on CPU for float16, float32 and
  float64.
"""

from __future__ import annotations

import math

import numpy as np

from dropoutlib._validation import check_float_array, check_probability

__all__ = [
    "DEFAULT_SEED",
    "SELU_ALPHA_TIMES_SCALE",
    "TorchCPUGenerator",
    "memory_order_view",
    "mt19937_seed",
    "mt19937_temper",
    "mt19937_twist",
    "mt19937_words",
    "torch_dropout",
]

N, M = 624, 397  # MT19937 state size and middle offset
_MATRIX_A = np.uint32(0x9908B0DF)
_UPPER, _LOWER = np.uint32(0x80000000), np.uint32(0x7FFFFFFF)
_MASK53 = np.uint64((1 << 53) - 1)

#: The seed of torch's default CPU generator before any ``manual_seed`` call.
DEFAULT_SEED = 67280421310721
#: ATen's SELU constant :math:`\lambda\alpha` (``alpha_dropout``'s ``ALPHA``), as a double.
SELU_ALPHA_TIMES_SCALE = 1.7580993408473766
_STATE_BYTES = 5056  # sizeof(CPUGeneratorImplState) in torch 2.13


def mt19937_seed(seed: int) -> np.ndarray:
    r"""Knuth's ``init_genrand``: the 624-word key for ``seed`` (taken modulo :math:`2^{32}`).

    :math:`x_0 = s`, :math:`x_j = 1812433253\,(x_{j-1} \oplus (x_{j-1} \gg 30)) + j \bmod 2^{32}`.
    This is exactly what ``torch.manual_seed(seed)`` does to the CPU generator.
    """
    key = np.empty(N, dtype=np.uint32)
    x = int(seed) & 0xFFFFFFFF
    key[0] = x
    for j in range(1, N):  # a sequential recurrence over the 624-word key, not over data
        x = (1812433253 * (x ^ (x >> 30)) + j) & 0xFFFFFFFF
        key[j] = x
    return key


def mt19937_twist(key: np.ndarray) -> np.ndarray:
    r"""One MT19937 state transition ("twist") of the 624-word key, vectorised.

    :math:`x_i \leftarrow x_{i+M} \oplus ((\text{upper}(x_i) \mid \text{lower}(x_{i+1})) \gg 1)
    \oplus (x_{i+1} \,\&\, 1)\cdot a`, indices mod 624, in place order: entries :math:`i \ge 227`
    read already-updated :math:`x_{i+M-624}`, so the loop runs as three vectorised blocks
    of at most 227 independent entries each.
    """
    x = np.array(key, dtype=np.uint32)
    for lo, hi in ((0, N - M), (N - M, 2 * (N - M)), (2 * (N - M), N)):
        idx = np.arange(lo, hi)
        y = (x[idx] & _UPPER) | (x[(idx + 1) % N] & _LOWER)
        x[idx] = x[(idx + M) % N] ^ (y >> np.uint32(1)) ^ ((y & np.uint32(1)) * _MATRIX_A)
    return x


def mt19937_temper(y: np.ndarray) -> np.ndarray:
    """MT19937's output tempering: four shift-xor steps applied to raw key words."""
    y = np.asarray(y, dtype=np.uint32)
    y = y ^ (y >> np.uint32(11))
    y = y ^ ((y << np.uint32(7)) & np.uint32(0x9D2C5680))
    y = y ^ ((y << np.uint32(15)) & np.uint32(0xEFC60000))
    return y ^ (y >> np.uint32(18))


def mt19937_words(seed: int, n: int) -> np.ndarray:
    """The first ``n`` 32-bit words after ``torch.manual_seed(seed)`` (from-scratch reference)."""
    key, out = mt19937_seed(seed), []
    for _ in range(-(-n // N)):
        key = mt19937_twist(key)
        out.append(mt19937_temper(key))
    return np.concatenate(out)[:n] if out else np.empty(0, dtype=np.uint32)


class TorchCPUGenerator:
    """A NumPy twin of torch's default CPU generator: same seed, same words, same position.

    The state is held in :class:`numpy.random.MT19937`, whose key is set to
    :func:`mt19937_seed` (NumPy's own seeding differs); its words equal :func:`mt19937_words`.
    Every draw advances the stream, so consecutive calls continue it exactly as consecutive
    torch calls do.

    Parameters
    ----------
    seed : int, default :data:`DEFAULT_SEED`
        As in ``torch.manual_seed(seed)``; only ``seed mod 2**32`` matters.
    """

    def __init__(self, seed: int = DEFAULT_SEED) -> None:
        self._bits = np.random.MT19937()
        self.manual_seed(seed)

    def manual_seed(self, seed: int) -> TorchCPUGenerator:
        """Re-seed like ``torch.manual_seed`` and return ``self``."""
        self._initial_seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self.set_mt_state(mt19937_seed(seed), N)
        return self

    def initial_seed(self) -> int:
        """The seed last passed to :meth:`manual_seed` (as an unsigned 64-bit integer)."""
        return self._initial_seed

    def mt_state(self) -> tuple[np.ndarray, int]:
        """``(key, pos)``: the 624-word key and how many of its words have been used (624: all)."""
        state = self._bits.state["state"]
        return np.array(state["key"], dtype=np.uint32), int(state["pos"])

    def set_mt_state(self, key: np.ndarray, pos: int) -> None:
        """Set the key and position (as returned by :meth:`mt_state`)."""
        self._bits.state = {
            "bit_generator": "MT19937",
            "state": {"key": np.asarray(key, dtype=np.uint32), "pos": int(pos)},
        }

    @classmethod
    def from_torch_state(cls, state: object) -> TorchCPUGenerator:
        """Build a generator from ``torch.get_rng_state()`` (bytes, uint8 array or tensor).

        The layout is ATen's ``CPUGeneratorImplState``: initial seed (u64), ``left`` (i32),
        ``seeded`` (i32), ``next`` (u64), the key as 624 u64, then normal-sampler caches.
        """
        raw = np.frombuffer(bytes(np.asarray(state, dtype=np.uint8)), dtype=np.uint8)
        if raw.size != _STATE_BYTES:
            raise ValueError(f"expected a {_STATE_BYTES}-byte torch CPU state, got {raw.size}")
        gen = cls.__new__(cls)
        gen._bits = np.random.MT19937()
        gen._initial_seed = int(raw[:8].view(np.uint64)[0])
        left = int(raw[8:12].view(np.int32)[0])
        nxt = int(raw[16:24].view(np.uint64)[0])
        key = raw[24 : 24 + 8 * N].view(np.uint64).astype(np.uint32)
        gen.set_mt_state(key, N if left == 1 else nxt)  # left == 1: the next call twists
        return gen

    def to_torch_state(self) -> np.ndarray:
        """The state as a ``uint8`` array that ``torch.set_rng_state`` accepts."""
        key, pos = self.mt_state()
        raw = np.zeros(_STATE_BYTES, dtype=np.uint8)
        raw[:8].view(np.uint64)[0] = self._initial_seed
        raw[8:16].view(np.int32)[:] = (N + 1 - pos if pos < N else 1, 1)  # left, seeded
        raw[16:24].view(np.uint64)[0] = pos
        raw[24 : 24 + 8 * N].view(np.uint64)[:] = key
        return raw

    def random_words(self, n: int) -> np.ndarray:
        """The next ``n`` 32-bit words of the stream (torch's ``random()``)."""
        return self._bits.random_raw(int(n)).astype(np.uint32)

    def random64(self, n: int) -> np.ndarray:
        """The next ``n`` 64-bit draws ``(hi << 32) | lo`` from word pairs (``random64``)."""
        w = self._bits.random_raw(2 * int(n))
        return (w[0::2] << np.uint64(32)) | w[1::2]

    def uniform53(self, n: int) -> np.ndarray:
        r"""The next ``n`` doubles :math:`u = (v \bmod 2^{53})\, 2^{-53}` in [0, 1).

        This is torch's ``uniform_real<double>`` applied to :meth:`random64`.
        """
        return (self.random64(n) & _MASK53).astype(np.float64) * 2.0**-53

    def bernoulli(self, shape: int | tuple[int, ...], keep: float) -> np.ndarray:
        """A C-ordered boolean array, ``True`` where ``uniform53 < keep`` (``bernoulli_(keep)``)."""
        shape = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
        return (self.uniform53(math.prod(shape)) < keep).reshape(shape)


def memory_order_view(flat: np.ndarray, like: np.ndarray) -> np.ndarray:
    """View ``flat`` with ``like``'s shape, ``flat[k]`` at the noise tensor's memory offset ``k``.

    Mirrors ``torch.empty_like`` (``memory_format=torch.preserve_format``): a dense,
    non-overlapping ``like`` (any permutation of its axes contiguous, e.g. transposed or
    channels-last) gives noise with the same strides; any other strided input gets the dense
    strides ``infer_dense_strides`` derives, which keep the order of ``like``'s axes by stride.
    """
    strides = _noise_strides(like.shape, tuple(s // like.itemsize for s in like.strides))
    byte_strides = tuple(s * flat.itemsize for s in strides)
    return np.lib.stride_tricks.as_strided(flat, like.shape, byte_strides, writeable=False)


def _noise_strides(shape: tuple[int, ...], strides: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides of ``empty_like`` for an input of this shape and these strides."""
    if _is_non_overlapping_and_dense(shape, strides):
        return strides
    return _infer_dense_strides(shape, strides)


def _is_non_overlapping_and_dense(shape: tuple[int, ...], strides: tuple[int, ...]) -> bool:
    """ATen's ``compute_non_overlapping_and_dense``: some axis order is exactly contiguous."""
    expected = 1
    for stride, size in sorted((s, n) for s, n in zip(strides, shape, strict=True) if n > 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _infer_dense_strides(shape: tuple[int, ...], strides: tuple[int, ...]) -> tuple[int, ...]:
    """ATen's ``infer_dense_strides``: dense strides that keep the input's axis order.

    A stable insertion sort of the axes, innermost first, by stride (ties: smaller size first;
    a zero stride never moves), then contiguous strides in that order.
    """

    def should_swap(d0: int, d1: int) -> int:
        s0, s1 = strides[d0], strides[d1]
        if s0 == 0 or s1 == 0:
            return 0
        if s0 != s1:
            return -1 if s0 < s1 else 1
        return 1 if shape[d0] > shape[d1] else 0

    ndim = len(shape)
    perm = list(range(ndim - 1, -1, -1))
    for i in range(1, ndim):  # loops over axes (ndim <= a few), never over elements
        d1 = i
        for d0 in range(i - 1, -1, -1):
            cmp = should_swap(perm[d0], perm[d1])
            if cmp > 0:
                perm[d0], perm[d1] = perm[d1], perm[d0]
                d1 = d0
            elif cmp < 0:
                break
    out, current = [0] * ndim, 1
    for axis in perm:
        out[axis] = current
        current *= max(shape[axis], 1)
    return tuple(out)


def _check_generator(generator: object) -> TorchCPUGenerator:
    if not isinstance(generator, TorchCPUGenerator):
        raise TypeError(
            "generator must be a TorchCPUGenerator (e.g. TorchCPUGenerator(seed)), "
            f"but got {generator!r}"
        )
    return generator


def torch_dropout(
    x: np.ndarray,
    p: float,
    train: bool = True,
    *,
    generator: TorchCPUGenerator,
    feature: bool = False,
    alpha: bool = False,
) -> np.ndarray:
    r"""Torch's CPU dropout family in NumPy, bit for bit (float16, float32, float64).

    ``feature=False, alpha=False`` is ``torch.dropout(x, p, train)`` (what ``F.dropout``
    runs); ``feature=True`` is ``torch.feature_dropout`` (``F.dropout2d`` on 4-d input: one
    draw per ``(sample, channel)``); ``alpha=True`` gives ``torch.alpha_dropout`` and with both
    ``torch.feature_alpha_dropout``. Steps, as in ATen's ``_dropout_impl``:

    1. ``p == 0``, not ``train``, or an empty ``x``: return ``x`` itself; no draws.
    2. ``p == 1``: return ``x * 0`` (``-0.0`` for negative and NaN for non-finite ``x``); no draws.
    3. keep mask :math:`m` from :meth:`TorchCPUGenerator.bernoulli` with :math:`q = 1-p`, in
       ``x``'s memory order (or of shape ``(N, C, 1, ...)`` for ``feature``).
    4. ``noise = m / q`` in ``x``'s dtype, ``y = x * noise``; for alpha, with
       :math:`A = \lambda\alpha` and :math:`a = ((A^2p+1)q)^{-1/2}`:
       ``b = (m - 1) * (A a) + A a p``, ``y = x * (m a) + b``.

    float16 rounds after every operation from a float32 intermediate, as torch's CPU kernels
    do; scalars enter multiplications and divisions as float32 and additions as float16.

    Parameters
    ----------
    x : numpy.ndarray
        float16, float32 or float64 input; rank >= 2 for ``feature`` when a mask is drawn.
    p : float
        Drop probability in [0, 1].
    train : bool, default True
        ``False`` returns ``x``.
    generator : TorchCPUGenerator
        The stream to draw from (advanced by two words per noise element).
    feature, alpha : bool, default False
        Select the variant.

    Returns
    -------
    numpy.ndarray
        A new array (or ``x`` itself in case 1).
    """
    x = check_float_array(x)
    p = check_probability(p)
    generator = _check_generator(generator)
    if p == 0.0 or not train or x.size == 0:
        return x
    dt = x.dtype.type
    if p == 1.0:
        with np.errstate(invalid="ignore"):
            return np.asarray(x * dt(0))  # an array even for 0-d x (NumPy gives a scalar)
    q = 1.0 - p
    if feature:
        if x.ndim < 2:
            raise ValueError("feature dropout needs at least 2 dimensions (N, C, ...) in the input")
        keep = generator.bernoulli(x.shape[:2] + (1,) * (x.ndim - 2), q)
    else:
        keep = memory_order_view(generator.bernoulli(x.size, q), x)
    with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 is NaN, as in torch
        return np.asarray(_arithmetic(x, keep, p, alpha))  # an array even for 0-d x


def _arithmetic(x: np.ndarray, keep: np.ndarray, p: float, alpha: bool) -> np.ndarray:
    """ATen's op sequence on the mask, rounding to ``x``'s dtype after every op."""
    dt = x.dtype.type
    ct = np.float32 if dt is np.float16 else dt  # compute type: half math runs in float
    q = 1.0 - p
    if not alpha:
        noise = (keep.astype(ct) / ct(q)).astype(dt)
        return (x.astype(ct) * noise.astype(ct)).astype(dt)
    a = 1.0 / math.sqrt((SELU_ALPHA_TIMES_SCALE**2 * p + 1.0) * q)
    scaled = SELU_ALPHA_TIMES_SCALE * a
    b = (keep.astype(ct) + ct(-1)).astype(dt)
    b = (b.astype(ct) * ct(scaled)).astype(dt)
    b = (b.astype(ct) + ct(dt(scaled * p))).astype(dt)
    noise = (keep.astype(ct) * ct(a)).astype(dt)
    y = (x.astype(ct) * noise.astype(ct)).astype(dt)
    return (y.astype(ct) + b.astype(ct)).astype(dt)
