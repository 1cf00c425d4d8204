r"""The dropout mask of ``torch.compile`` on CPU, reproduced in NumPy bit for bit.

TorchInductor (the default ``torch.compile`` backend) does not call ATen's dropout kernel. Its
decomposition of ``aten.native_dropout`` (``torch/_decomp/decompositions.py``) draws
:math:`u = \operatorname{rand\_like}(x)` and keeps an element when :math:`u > p`; the pass
``torch/_inductor/fx_passes/replace_random.py`` then replaces ``aten.rand`` by Inductor's own
``inductor_prims.random(size, seed, "rand")``, and ``fuse_seed_creation_pass`` draws the seeds
of all random operations of one graph at once, at the start of every call, as

.. math::

   s_j = \operatorname{randint}(-2^{63},\ 2^{63} - 1),

for :math:`j = 0, \dots, K - 1`, from torch's **default CPU generator** (``ir.RandomSeeds`` in
``torch/_inductor/ir.py``: ``aten.randint.low_out(int64 min, int64 max, [K])``). The :math:`j`-th
random operation of the graph uses seed :math:`s_j`. The C++ kernel evaluates, for the element at
linear index :math:`i` (``lowering.py``: ``inductor_random``, ``ops.rand(seed, index)``;
``codegen/cpp.py``: ``normalized_rand_cpu``), the function of ``cpp_prefix.h``; the index counts the
input's elements in its physical order, the axes sorted by decreasing stride (``_rand_like`` in
``torch/_inductor/decomposition.py``): C order for a contiguous input,
memory order for a transposed one.

.. math::

   \begin{aligned}
   w_i &= \text{word 0 of } \operatorname{Philox4x32\text{-}10}(c_i, k), \\
   c_i &= (i, 0, 0, 0), \quad k = (s \bmod 2^{32},\ 0), \\
   u_i &= \operatorname{fl}_{32}\bigl(\operatorname{fl}_{32}(w_i \,\&\, (2^{31} - 1)) \\
       &\qquad {}\cdot 4.6566127342 \times 10^{-10}\bigr),
   \end{aligned}

with counter :math:`c_i` and key :math:`k` (``at::Philox4_32(seed, 0, offset)`` of
``ATen/core/PhiloxRNGEngine.h`` puts the offset in counter words 0-1 and the subsequence 0 in
words 2-3; the ``uint32_t`` parameter keeps the low 32 bits of the int64 seed). The fused
kernel then computes, in float32,

.. math::

   \begin{aligned}
   m_i &= [\,u_i > \operatorname{fl}_{32}(p)\,], \\
   y_i &= \operatorname{fl}_{32}\bigl(\operatorname{fl}_{32}(m_i x_i) \\
       &\qquad {}\cdot \operatorname{fl}_{32}(1/(1-p))\bigr).
   \end{aligned}

Each seed costs the default generator one ``random64`` (two 32-bit MT19937 words):
:math:`s = \bigl((v \bmod (2^{64} - 1)) + (-2^{63})\bigr) \bmod 2^{64}` read as a signed
integer, with :math:`v = 2^{32} w_{2k} + w_{2k+1}` (ATen's ``uniform_int_from_to``). Hence the
whole chain from ``torch.manual_seed`` to the compiled mask can be replayed with
:class:`dropoutlib.numpy.torch_rng.TorchCPUGenerator` and
:func:`dropoutlib.numpy.philox.philox4x32`. This module imports NumPy only.

**On CUDA** the same decomposition and seeds become a Triton kernel
(``codegen/triton.py``: ``TritonOverrides.rand``): the seed is the full int64 (read as a
64-bit Philox key) and the uniform is Triton's ``tl.rand``, word 0 at counter
:math:`(i, 0, 0, 0)`, or, in torch 2.13 for one-dimensional kernels,
``triton_helpers.rand4x``: word :math:`i \bmod 4` at counter :math:`(\lfloor i/4 \rfloor, 0, 0,
0)`. Triton converts a word to a float differently from ``cpp_prefix.h``: read as an int32
:math:`x`, a negative :math:`x` becomes :math:`\lnot x` before the multiplication
(``uint_to_uniform_float`` in ``triton/language/random.py``). :func:`triton_rand` computes
both layouts; the seed of a CUDA graph comes from the CUDA generator, which this module does
not emulate.
"""

from __future__ import annotations

import numbers

import numpy as np

from dropoutlib.numpy.philox import philox4x32
from dropoutlib.numpy.torch_rng import TorchCPUGenerator

__all__ = [
    "INDUCTOR_UNIFORM_SCALE",
    "inductor_dropout",
    "inductor_dropout_mask",
    "inductor_keep_probability",
    "inductor_rand",
    "inductor_seeds",
    "triton_rand",
]

#: ``uint32_to_uniform_float``'s scale in ``cpp_prefix.h``: the largest float with
#: :math:`(2^{31} - 1) \cdot \text{scale} < 1` after float rounding.
INDUCTOR_UNIFORM_SCALE = np.float32(4.6566127342e-10)
_INT64_MIN = -(1 << 63)
_RANGE = np.uint64((1 << 64) - 1)  # int64 max - int64 min: randint's (high - low)


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool | np.bool_) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, but got {seed!r} of type {type(seed).__name__}")
    seed = int(seed)
    if not _INT64_MIN <= seed < 1 << 64:
        raise ValueError(f"seed must be an int64 or uint64 value, but got {seed}")
    return seed


def inductor_seeds(generator: TorchCPUGenerator, count: int) -> np.ndarray:
    r"""The ``count`` int64 seeds a compiled graph draws from the default CPU generator.

    Reproduces ``aten.randint.low_out(-2**63, 2**63 - 1, [count])`` on CPU: per seed one
    ``random64`` draw :math:`v`, then :math:`s = (v \bmod (2^{64} - 1)) - 2^{63}`, wrapped to
    int64. The generator advances by :math:`2\,\text{count}` words, as torch's does.

    Parameters
    ----------
    generator : TorchCPUGenerator
        The NumPy twin of torch's default CPU generator, in the state the compiled function
        finds it (e.g. ``TorchCPUGenerator(s)`` right after ``torch.manual_seed(s)``).
    count : int
        Number of random operations in the compiled graph.

    Returns
    -------
    numpy.ndarray of int64, shape (count,)
    """
    if not isinstance(generator, TorchCPUGenerator):
        raise TypeError(
            f"generator must be a TorchCPUGenerator, but got {type(generator).__name__}"
        )
    v = generator.random64(int(count)) % _RANGE
    return (v + np.uint64(1 << 63)).view(np.int64)  # uint64 wrap-around, read as int64


def inductor_rand(seed: int, n: int) -> np.ndarray:
    r"""Inductor's CPU ``rand``: :math:`u_i` for linear indices :math:`i = 0, \dots, n - 1`.

    :math:`u_i = \operatorname{fl}_{32}(\operatorname{fl}_{32}(w_i \,\&\, (2^{31}-1)) \cdot
    4.6566127342\times 10^{-10})` with :math:`w_i` word 0 of Philox4x32-10 at counter
    :math:`(i, 0, 0, 0)` and key :math:`(s \bmod 2^{32}, 0)` (``normalized_rand_cpu``).

    Parameters
    ----------
    seed : int
        The int64 seed of the random operation (only its low 32 bits matter).
    n : int
        Number of elements, :math:`0 \le n \le 2^{31}` (the kernel's index is an int32).

    Returns
    -------
    numpy.ndarray of float32, shape (n,), values in [0, 1)
    """
    seed = _check_seed(seed)
    if not 0 <= n <= 1 << 31:
        raise ValueError(f"n must be an integer in [0, 2**31], but got {n!r}")
    counters = np.arange(n, dtype=np.uint64)
    word0 = philox4x32((counters, 0, 0, 0), seed & 0xFFFFFFFF)[0]
    return (word0 & np.uint32(0x7FFFFFFF)).astype(np.float32) * INDUCTOR_UNIFORM_SCALE


def _physical_order(shape: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
    """The axes of ``shape`` sorted by decreasing stride (ties keep their logical order)."""
    if len(strides) != len(shape):
        raise ValueError(f"strides {strides!r} do not match shape {shape!r}")
    if any(size > 1 and stride <= 0 for size, stride in zip(shape, strides, strict=True)):
        raise ValueError(
            f"strides must be positive on every axis longer than 1, but got {strides!r}"
        )
    return np.argsort(-np.asarray(strides, dtype=np.int64), kind="stable")


def inductor_dropout_mask(
    shape: tuple[int, ...],
    p: float,
    seed: int,
    strides: tuple[int, ...] | None = None,
) -> np.ndarray:
    r"""The keep mask :math:`u_i > \operatorname{fl}_{32}(p)` of a compiled ``F.dropout``.

    Inductor's ``rand_like`` draws its uniforms in the input's **physical** order
    (``_rand_like`` in ``torch/_inductor/decomposition.py``: the axes sorted by decreasing
    stride, then permuted back), so :math:`u_i` goes to the element that is :math:`i`-th in
    that order: C order for a contiguous input, memory order for a transposed or permuted one.

    Parameters
    ----------
    shape : tuple of int
        The shape of the input.
    p : float
        Drop probability, :math:`0 < p < 1` (Inductor's decomposition draws nothing for
        :math:`p = 0` and returns zeros for :math:`p = 1`).
    seed : int
        The seed of this dropout in the graph (:func:`inductor_seeds`).
    strides : tuple of int, optional
        The input's strides (in any unit, e.g. ``tensor.stride()`` or ``array.strides``);
        ``None`` means contiguous (C order).

    Returns
    -------
    numpy.ndarray of bool, shape ``shape``
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1) for a random mask, but got {p!r}")
    shape = tuple(int(s) for s in shape)
    n = int(np.prod(shape, dtype=np.int64))
    if strides is None:
        return (inductor_rand(seed, n) > np.float32(p)).reshape(shape)
    order = _physical_order(shape, tuple(strides))
    physical = (inductor_rand(seed, n) > np.float32(p)).reshape([shape[a] for a in order])
    return physical.transpose(np.argsort(order))


def _uniform_of(k: int) -> np.float32:
    return np.float32(np.float32(k) * INDUCTOR_UNIFORM_SCALE)


def inductor_keep_probability(p: float) -> float:
    r"""The exact keep probability :math:`P(u > \operatorname{fl}_{32}(p))` of the CPU mask.

    :math:`u = \operatorname{fl}_{32}(\operatorname{fl}_{32}(k) \cdot 4.6566127342\times
    10^{-10})` with :math:`k = w \,\&\, (2^{31}-1)` uniform on :math:`\{0, \dots, 2^{31}-1\}`
    (Philox words are uniform), and :math:`u` is non-decreasing in :math:`k` (both roundings
    are monotone). So the mask keeps exactly the :math:`k \ge k^*`, where :math:`k^*` is the
    smallest :math:`k` with :math:`u(k) > \operatorname{fl}_{32}(p)`, found by bisection:
    :math:`P(\text{keep}) = (2^{31} - k^*) / 2^{31}`.

    Parameters
    ----------
    p : float
        Drop probability, :math:`0 < p < 1`.

    Returns
    -------
    float
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1) for a random mask, but got {p!r}")
    threshold = np.float32(p)
    low, high = 0, 1 << 31  # u(low) <= threshold < u(high) (u(2**31) >= 1 > threshold)
    while high - low > 1:
        mid = (low + high) // 2
        if _uniform_of(mid) > threshold:
            high = mid
        else:
            low = mid
    return ((1 << 31) - high) / float(1 << 31)


def inductor_dropout(x: np.ndarray, p: float, seed: int) -> np.ndarray:
    r"""The output of a compiled ``F.dropout(x, p)`` on CPU for a float32 ``x``.

    :math:`y = \operatorname{fl}_{32}(\operatorname{fl}_{32}(m \cdot x) \cdot
    \operatorname{fl}_{32}(1/(1-p)))` with the mask of :func:`inductor_dropout_mask`, in the
    order of the generated kernel (``tmp9 * tmp10``, then ``* static_cast<float>(1/(1-p))``).
    The mask follows the memory layout of ``x`` (its strides), as the compiled kernel's does
    for a tensor whose ``.numpy()`` view ``x`` is.

    Parameters
    ----------
    x : numpy.ndarray of float32
    p : float
        Drop probability, :math:`0 < p < 1`.
    seed : int
        The seed of this dropout in the graph.

    Returns
    -------
    numpy.ndarray of float32
    """
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise TypeError(f"x must be float32 (the dtype this emulation covers), got {x.dtype}")
    mask = inductor_dropout_mask(x.shape, p, seed, x.strides).astype(np.float32)
    return (mask * x) * np.float32(1.0 / (1.0 - p))


def triton_rand(seed: int, n: int, layout: str = "rand") -> np.ndarray:
    r"""Inductor's CUDA uniforms for linear indices :math:`0, \dots, n - 1` (Triton's Philox).

    Parameters
    ----------
    seed : int
        The int64 seed of the random operation (all 64 bits form the Philox key:
        :math:`k_0` the low, :math:`k_1` the high half).
    n : int
        Number of elements, :math:`0 \le n \le 2^{32}`.
    layout : {"rand", "rand4x"}, default "rand"
        ``"rand"``: ``tl.rand(seed, i)``, word 0 of counter :math:`(i, 0, 0, 0)`.
        ``"rand4x"``: ``triton_helpers.rand4x``, word :math:`i \bmod 4` of counter
        :math:`(\lfloor i/4 \rfloor, 0, 0, 0)`.

    Returns
    -------
    numpy.ndarray of float32, shape (n,)
        :math:`\operatorname{fl}_{32}(\operatorname{fl}_{32}(v) \cdot c)`, where
        :math:`c = 4.6566127342\times 10^{-10}`, with :math:`v = x` for :math:`x \ge 0` and
        :math:`v = \lnot x = -x - 1` for :math:`x < 0`, :math:`x` the word read as an int32.
    """
    seed = _check_seed(seed) & 0xFFFFFFFFFFFFFFFF
    if not 0 <= n <= 1 << 32:
        raise ValueError(f"n must be an integer in [0, 2**32], but got {n!r}")
    if layout == "rand":
        words = philox4x32((np.arange(n, dtype=np.uint64), 0, 0, 0), seed)[0]
    elif layout == "rand4x":
        calls = philox4x32((np.arange((n + 3) // 4, dtype=np.uint64), 0, 0, 0), seed)
        words = np.stack(calls, axis=1).reshape(-1)[:n]
    else:
        raise ValueError(f"layout must be 'rand' or 'rand4x', but got {layout!r}")
    x = words.view(np.int32)
    x = np.where(x < 0, ~x, x)
    return x.astype(np.float32) * INDUCTOR_UNIFORM_SCALE
