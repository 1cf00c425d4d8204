r"""What dropout keeps for its backward pass: a bool mask, a bit-packed mask, or only a seed.

The backward pass of dropout needs the forward pass's keep mask :math:`m`
(:func:`dropoutlib.numpy.dropout_backward`). There are three ways to have it there:

==========  ======================================  =====================================
storage     kept between forward and backward       bytes per element
==========  ======================================  =====================================
``bool``    the mask, one ``bool`` per element       1
``packed``  the mask, eight elements per byte        1/8 (plus at most 7 bits of padding)
``seeded``  only ``(seed, offset)``                  0 (16 bytes per tensor)
==========  ======================================  =====================================

A seeded mask is regenerated in the backward pass from a **counter-based** generator: NumPy's
:class:`numpy.random.Philox` with key ``seed`` and its counter started at
``(0, offset, 0, 0)``. Its output is a pure function of (key, counter), so forward and backward
draw the bit-identical mask, and two tensors with different offsets draw from disjoint
counter ranges (the first counter word would have to run through :math:`2^{64}` values before
streams could meet). All three modes give the same outputs and gradients for the same random
words: ``storage="bool"`` with ``rng=philox_generator(seed, offset)`` *is* the seeded mode
with the mask kept.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Literal

import numpy as np

from dropoutlib._validation import check_float_array, check_generator, check_probability
from dropoutlib.numpy.functional import (
    Scaling,
    _byte_first_fill,
    _check_scaling,
    _dropout_flat,
    _threshold_bytes,
    _times_zero,
    dropout,
    dropout_backward,
)

__all__ = [
    "STORAGES",
    "BoolMask",
    "MaskStorage",
    "PackedMask",
    "SavedMask",
    "SeededMask",
    "dropout_backward_saved",
    "dropout_forward",
    "pack_mask",
    "philox_generator",
]

MaskStorage = Literal["bool", "packed", "seeded"]
STORAGES: tuple[str, ...] = ("bool", "packed", "seeded")
_U64 = 1 << 64


def philox_generator(seed: int, offset: int) -> np.random.Generator:
    r"""The generator of the seeded mask ``(seed, offset)``: Philox4x64-10 at a fixed counter.

    Parameters
    ----------
    seed : int
        The Philox key, :math:`0 \le \text{seed} < 2^{64}`.
    offset : int
        Which stream, :math:`0 \le \text{offset} < 2^{64}`: the counter starts at
        :math:`(0, \text{offset}, 0, 0)`. Give every tensor of a training step its own offset.

    Returns
    -------
    numpy.random.Generator
        A fresh generator; two calls with the same arguments produce identical streams.
    """
    for name, value in (("seed", seed), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"{name} must be an integer, but got {type(value).__name__}")
        if not 0 <= value < _U64:
            raise ValueError(f"{name} must lie in [0, 2**64), but got {value}")
    counter = np.array([0, offset, 0, 0], dtype=np.uint64)
    return np.random.Generator(np.random.Philox(counter=counter, key=int(seed)))


_local = threading.local()


def _rewound_generator(seed: int, offset: int) -> np.random.Generator:
    """The stream of :func:`philox_generator` ``(seed, offset)`` on a reused, per-thread object.

    Constructing a ``Philox`` costs about 12 microseconds, setting its state about half a
    microsecond; the regeneration in :func:`_apply_seeded` uses the generator at once and
    never hands it out, so one object per thread is enough.
    """
    rng = getattr(_local, "rng", None)
    if rng is None:
        rng = _local.rng = np.random.Generator(np.random.Philox(0))
    rng.bit_generator.state = {
        "bit_generator": "Philox",
        "state": {
            "counter": np.array([0, offset, 0, 0], dtype=np.uint64),
            "key": np.array([seed, 0], dtype=np.uint64),
        },
        "buffer": np.zeros(4, dtype=np.uint64),
        "buffer_pos": 4,  # empty: the next output is computed from the counter
        "has_uint32": 0,
        "uinteger": 0,
    }
    return rng


@dataclass(frozen=True)
class BoolMask:
    """The keep mask itself, one byte per element."""

    mask: np.ndarray
    p: float
    scaling: Scaling = "inverted"

    @property
    def nbytes(self) -> int:
        return int(self.mask.nbytes)

    def keep_mask(self) -> np.ndarray:
        return self.mask


@dataclass(frozen=True)
class PackedMask:
    """The keep mask packed eight elements to a byte (``np.packbits``, little bit order)."""

    bits: np.ndarray
    shape: tuple[int, ...]
    p: float
    scaling: Scaling = "inverted"

    @property
    def nbytes(self) -> int:
        return int(self.bits.nbytes)

    def keep_mask(self) -> np.ndarray:
        size = math.prod(self.shape)
        flat = np.unpackbits(self.bits, count=size, bitorder="little")
        return flat.view(np.bool_).reshape(self.shape)


@dataclass(frozen=True)
class SeededMask:
    """Only the seed and the offset: the mask is regenerated when it is needed."""

    seed: int
    offset: int
    shape: tuple[int, ...]
    p: float
    scaling: Scaling = "inverted"

    @property
    def nbytes(self) -> int:
        return 16  # two 64-bit integers, whatever the size of the tensor

    def keep_mask(self) -> np.ndarray:
        mask = np.empty(self.shape, dtype=bool)
        if self.p in (0.0, 1.0):
            mask.fill(self.p == 0.0)
            return mask
        _byte_first_fill(mask.reshape(-1), _threshold_bytes(self.p), self._rng().bit_generator)
        return mask

    def _rng(self) -> np.random.Generator:
        return _rewound_generator(self.seed, self.offset)


SavedMask = BoolMask | PackedMask | SeededMask


def pack_mask(mask: np.ndarray, p: float, scaling: Scaling = "inverted") -> PackedMask:
    """Pack a boolean keep mask to one bit per element."""
    return PackedMask(np.packbits(mask, axis=None, bitorder="little"), mask.shape, p, scaling)


def _apply_seeded(src: np.ndarray, saved: SeededMask) -> np.ndarray:
    """``src * m * c`` for the regenerated mask ``m``, one cache-sized block at a time.

    Runs the very kernel of :func:`dropoutlib.numpy.dropout` (multiply by the bool mask, then by
    the scale) on the same random bytes, so the result is bit for bit the stored-mask result;
    only a block-sized mask buffer is ever allocated.
    """
    p = saved.p
    if p == 1.0:  # x * 0, as dropout() and PyTorch: -0.0 for negative, nan for inf/nan
        return _times_zero(src, np.empty(src.shape, dtype=src.dtype))
    if p == 0.0:
        return src.copy(order="C")
    out = np.empty(src.shape, dtype=src.dtype)
    src_flat = np.ascontiguousarray(src).reshape(-1)
    _dropout_flat(src_flat, out.reshape(-1), None, p, saved.scaling, saved._rng().bit_generator)
    return out


def dropout_forward(
    x: np.ndarray,
    p: float = 0.5,
    *,
    storage: MaskStorage = "bool",
    rng: np.random.Generator | None = None,
    seed: int | None = None,
    offset: int = 0,
    scaling: Scaling = "inverted",
) -> tuple[np.ndarray, SavedMask]:
    r"""Training-mode dropout that returns what the backward pass needs, stored as asked.

    The output is :math:`y = c\, m \odot x` exactly as in :func:`dropoutlib.numpy.dropout`
    (:math:`c = 1/(1-p)` for inverted scaling, 1 for standard). Only the record of :math:`m`
    differs between storage modes.

    Parameters
    ----------
    x : numpy.ndarray
        Floating input of any shape.
    p : float, default 0.5
        Drop probability.
    storage : {"bool", "packed", "seeded"}, default "bool"
        How the mask is kept: 1 byte per element, 1 bit per element, or not at all.
    rng : numpy.random.Generator, optional
        The source of the mask for ``"bool"`` and ``"packed"`` (required there, refused with
        ``"seeded"``).
    seed, offset : int
        For ``"seeded"`` only: the mask is drawn from :func:`philox_generator` ``(seed, offset)``.
        ``seed`` is required; use a different ``offset`` for every tensor of a step.
    scaling : {"inverted", "standard"}, default "inverted"
        As in :func:`dropoutlib.numpy.dropout`.

    Returns
    -------
    (numpy.ndarray, SavedMask)
        The output and the record to hand to :func:`dropout_backward_saved`; its ``nbytes``
        is the memory kept alive between the passes.
    """
    x = check_float_array(x)
    p = check_probability(p)
    scaling = _check_scaling(scaling)  # type: ignore[assignment]
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, but got {storage!r}")
    if storage == "seeded":
        if rng is not None:
            raise TypeError("storage='seeded' draws from (seed, offset); do not pass rng")
        if seed is None:
            raise TypeError("storage='seeded' needs seed= (an integer in [0, 2**64))")
        philox_generator(seed, offset)  # validates both before any work
        saved = SeededMask(int(seed), int(offset), x.shape, p, scaling)
        return _apply_seeded(x, saved), saved
    if seed is not None:
        raise TypeError(f"storage={storage!r} draws from rng=; seed= is only for 'seeded'")
    rng = check_generator(rng)
    y, mask = dropout(x, p, rng=rng, scaling=scaling, return_mask=True)
    if storage == "packed":
        return y, pack_mask(mask, p, scaling)
    return y, BoolMask(mask, p, scaling)


def dropout_backward_saved(grad_output: np.ndarray, saved: SavedMask) -> np.ndarray:
    r"""Gradient :math:`c\, m \odot \partial L/\partial y` of dropout, from a saved record.

    ``BoolMask`` and ``PackedMask`` call :func:`dropoutlib.numpy.dropout_backward` with the
    (unpacked) mask; ``SeededMask`` regenerates the mask block by block and performs the same
    two multiplications, so all three give bit-identical gradients.
    """
    grad_output = check_float_array(grad_output, "grad_output")
    if isinstance(saved, SeededMask):
        if grad_output.shape != saved.shape:
            raise ValueError(
                f"grad_output has shape {grad_output.shape} but the forward input had shape "
                f"{saved.shape}; they must match"
            )
        return _apply_seeded(grad_output, saved)
    if not isinstance(saved, BoolMask | PackedMask):
        raise TypeError(
            f"saved must be what dropout_forward returned, but got {type(saved).__name__}"
        )
    return dropout_backward(grad_output, saved.keep_mask(), saved.p, scaling=saved.scaling)
