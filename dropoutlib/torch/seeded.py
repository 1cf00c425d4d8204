r"""Dropout whose backward pass regenerates the mask instead of keeping it.

:class:`SeededDropoutFunction` is a :class:`torch.autograd.Function` that saves **no tensor**
for the backward pass: only the drop probability and the pair ``(seed, offset)``. Both passes
compute :math:`t \mapsto t \odot m / (1-p)` with the mask :math:`m` drawn from a
counter-based generator at ``(seed, offset)``:

- CPU tensors: NumPy's Philox4x64-10, exactly the mask of
  :func:`dropoutlib.numpy.memory.dropout_forward` with ``storage="seeded"``;
- CUDA tensors: the Triton kernels of :mod:`dropoutlib.triton` (Philox4x32-10, the GPU
  counterpart; a different stream from the CPU one, but equally a function of
  ``(seed, offset)`` alone).

:func:`stored_dropout` is the same computation with the mask kept, as a bool tensor
(1 byte per element) or bit-packed (1 bit per element), for comparison.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch

from dropoutlib.numpy.functional import inverted_scale
from dropoutlib.numpy.memory import SeededMask, _apply_seeded
from dropoutlib.numpy.philox import check_seed_offset

__all__ = [
    "SeededDropoutFunction",
    "pack_bits",
    "seeded_dropout",
    "seeded_keep_mask",
    "stored_dropout",
    "unpack_bits",
]

_BIT_WEIGHTS = 1 << torch.arange(8, dtype=torch.uint8)


def _apply(t: torch.Tensor, p: float, seed: int, offset: int) -> torch.Tensor:
    """``t * m / (1 - p)`` with the mask of ``(seed, offset)`` on ``t``'s device."""
    if t.device.type == "cuda":
        from dropoutlib.triton import seeded_dropout_forward

        return seeded_dropout_forward(t, p, seed, offset)
    if t.device.type != "cpu":
        raise NotImplementedError(f"seeded dropout runs on CPU and CUDA, not {t.device.type}")
    work = t.detach()
    if work.dtype == torch.bfloat16:  # NumPy has no bfloat16: compute in float32, round once
        return _apply(work.float(), p, seed, offset).to(torch.bfloat16)
    saved = SeededMask(seed, offset, tuple(work.shape), p)
    return torch.from_numpy(_apply_seeded(work.numpy(), saved))


class SeededDropoutFunction(torch.autograd.Function):
    """Inverted dropout with the mask regenerated from ``(seed, offset)`` in backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float, seed: int, offset: int) -> torch.Tensor:
        ctx.p, ctx.seed, ctx.offset = p, seed, offset  # no save_for_backward: no tensor kept
        return _apply(x, p, seed, offset)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        # the backward map is the forward map (linear, symmetric): applying the Function
        # again keeps double backward (gradgradcheck, Hessian-vector products) correct
        grad_input = SeededDropoutFunction.apply(grad_output, ctx.p, ctx.seed, ctx.offset)
        return grad_input, None, None, None


def _check_p(p: object) -> float:
    """``p`` as a float in [0, 1]; never a string, a bool or NaN (PyTorch's range message)."""
    if isinstance(p, bool | np.bool_) or not isinstance(p, numbers.Real):
        raise TypeError(
            f"dropout probability must be a real number, but got {p!r} of type {type(p).__name__}"
        )
    value = float(p)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {value}")
    return value


def _check(x: torch.Tensor, p: object, seed: object, offset: object) -> tuple[float, int, int]:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, but got {type(x).__name__}")
    return (_check_p(p), *check_seed_offset(seed, offset))


def seeded_dropout(
    x: torch.Tensor, p: float = 0.5, *, seed: int, offset: int = 0, training: bool = True
) -> torch.Tensor:
    r"""Inverted dropout that keeps nothing for backward but ``(seed, offset)``.

    Parameters
    ----------
    x : torch.Tensor
        Floating input (CPU or CUDA).
    p : float, default 0.5
        Drop probability.
    seed, offset : int
        The Philox key and stream; give each tensor of a training step its own ``offset``
        (and a new seed or offset range each step).
    training : bool, default True
        In evaluation the input is returned unchanged, as by ``torch.nn.functional.dropout``.
    """
    p, seed, offset = _check(x, p, seed, offset)
    if not training:
        return x
    return SeededDropoutFunction.apply(x, p, seed, offset)


def seeded_keep_mask(
    shape: tuple[int, ...], p: float, *, seed: int, offset: int = 0, device: str = "cpu"
) -> torch.Tensor:
    """The bool keep mask that :func:`seeded_dropout` uses for ``(seed, offset)``."""
    p = _check_p(p)
    seed, offset = check_seed_offset(seed, offset)
    shape = torch.Size(shape)  # TypeError for anything that is not a sequence of ints
    if torch.device(device).type == "cuda":
        from dropoutlib.triton import seeded_keep_mask as triton_mask

        n = int(np.prod(shape, dtype=np.int64))
        return triton_mask(n, p, seed, offset, device=device).reshape(shape)
    return torch.from_numpy(SeededMask(seed, offset, tuple(shape), p).keep_mask())


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """Pack a bool tensor to uint8, eight elements per byte (little bit order, like NumPy)."""
    flat = mask.reshape(-1).to(torch.uint8)
    flat = torch.nn.functional.pad(flat, (0, -flat.numel() % 8))
    return (flat.view(-1, 8) * _BIT_WEIGHTS.to(mask.device)).sum(dim=1, dtype=torch.uint8)


def unpack_bits(bits: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: the bool tensor of ``shape``."""
    n = int(np.prod(shape, dtype=np.int64))
    flat = (bits.view(-1, 1) & _BIT_WEIGHTS.to(bits.device)) != 0
    return flat.reshape(-1)[:n].reshape(shape)


class _StoredMaskFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, mask: torch.Tensor, p: float, packed: bool) -> Any:
        ctx.p, ctx.packed, ctx.shape = p, packed, tuple(mask.shape)
        ctx.save_for_backward(pack_bits(mask) if packed else mask)
        return _masked(x, mask, p)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (kept,) = ctx.saved_tensors
        mask = unpack_bits(kept, ctx.shape) if ctx.packed else kept
        return _masked(grad_output, mask, ctx.p), None, None, None


def _masked(t: torch.Tensor, mask: torch.Tensor, p: float) -> torch.Tensor:
    if p == 1.0:
        return torch.zeros_like(t, memory_format=torch.contiguous_format)
    if t.dtype == torch.bfloat16:  # as the seeded path: float32 arithmetic, one rounding
        return _masked(t.float(), mask, p).to(torch.bfloat16)
    out = t * mask
    if p == 0.0:
        return out
    scale = float(inverted_scale(p, np.dtype(str(t.dtype).removeprefix("torch."))))
    if math.isinf(scale):  # float16, 1/(1-p) > 65504: scale kept entries only (0 * inf is NaN)
        return torch.where(mask, out * scale, out)
    return out * scale


def stored_dropout(
    x: torch.Tensor, p: float = 0.5, *, seed: int, offset: int = 0, storage: str = "bool"
) -> torch.Tensor:
    """Seeded dropout's output with the mask **kept** for backward: ``"bool"`` or ``"packed"``.

    Same mask, same arithmetic, same output and gradient as :func:`seeded_dropout`; only the
    saved state differs (``mask.numel()`` bytes, or a eighth of that).
    """
    p, seed, offset = _check(x, p, seed, offset)
    if storage not in ("bool", "packed"):
        raise ValueError(f"storage must be 'bool' or 'packed', but got {storage!r}")
    mask = seeded_keep_mask(tuple(x.shape), p, seed=seed, offset=offset, device=str(x.device))
    return _StoredMaskFunction.apply(x, mask, p, storage == "packed")
