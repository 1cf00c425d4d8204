r"""Seeded dropout kernels: one Philox4x32-10 call per four elements, no mask in memory.

The forward pass computes :math:`y_i = x_i\, m_i\, c` with :math:`c = 1/(1-p)` and the
backward pass :math:`\partial L/\partial x_i = g_i\, m_i\, c`: the same element-wise map,
so one kernel serves both. The mask :math:`m` is never stored: each program recomputes
its words from ``(seed, offset)``, reading only :math:`x` (or :math:`g`) and writing only
the result, 8 bytes per float32 element, the traffic of a copy.
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

from dropoutlib._validation import check_probability
from dropoutlib.numpy.functional import _drop_threshold, inverted_scale

__all__ = ["DEFAULT_BLOCK", "seeded_dropout_backward", "seeded_dropout_forward", "seeded_keep_mask"]

#: Philox calls per program; each program handles ``4 * DEFAULT_BLOCK`` elements.
DEFAULT_BLOCK = 512
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_MAX_NUMEL = (1 << 31) - 1  # int32 indexing in the kernel


@triton.jit
def _keep_words(seed, offset, pid, BLOCK: tl.constexpr):
    """The 4 * BLOCK random words of program ``pid``, in element order."""
    groups = pid * BLOCK + tl.arange(0, BLOCK)
    counter = groups.to(tl.uint64) | (offset.to(tl.uint64) << 32)  # (c0, c1) = (group, offset)
    r0, r1, r2, r3 = tl.randint4x(seed, counter)
    # element 4g + j gets word j of counter g: all 128 bits of every call are used
    return tl.interleave(tl.interleave(r0, r2), tl.interleave(r1, r3))


@triton.jit
def _seeded_dropout_kernel(
    src_ptr, out_ptr, n, seed, offset, threshold, scale, BLOCK: tl.constexpr
):
    pid = tl.program_id(0)
    words = _keep_words(seed, offset, pid, BLOCK)
    index = pid * (4 * BLOCK) + tl.arange(0, 4 * BLOCK)
    inside = index < n
    src = tl.load(src_ptr + index, mask=inside).to(tl.float32)
    keep = (words >= threshold.to(tl.uint32)).to(tl.float32)
    out = src * keep * scale  # (x * m) * c, as torch and dropoutlib.numpy compute it
    tl.store(out_ptr + index, out.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _keep_mask_kernel(mask_ptr, n, seed, offset, threshold, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    words = _keep_words(seed, offset, pid, BLOCK)
    index = pid * (4 * BLOCK) + tl.arange(0, 4 * BLOCK)
    keep = (words >= threshold.to(tl.uint32)).to(tl.int8)
    tl.store(mask_ptr + index, keep, mask=index < n)


def _check_interpreter(t: torch.Tensor) -> None:
    if t.device.type == "cpu" and type(tl.randint4x).__name__ != "InterpretedFunction":
        raise RuntimeError(
            "the Triton kernels run on CPU tensors only under Triton's interpreter: set "
            "TRITON_INTERPRET=1 before triton is first imported (or pass CUDA tensors)"
        )


def _check_seed(seed: int, offset: int) -> None:
    if not 0 <= seed < 1 << 64:
        raise ValueError(f"seed must be an integer in [0, 2**64), but got {seed!r}")
    if not 0 <= offset < 1 << 32:
        raise ValueError(f"offset must be an integer in [0, 2**32), but got {offset!r}")


def _launch(src: torch.Tensor, p: float, seed: int, offset: int, block: int) -> torch.Tensor:
    p = check_probability(p)
    _check_seed(seed, offset)
    if src.dtype not in _DTYPES:
        raise TypeError(f"expected float32, float16 or bfloat16, but got {src.dtype}")
    if src.numel() > _MAX_NUMEL:
        raise ValueError(f"at most 2**31 - 1 elements are supported, got {src.numel()}")
    if p == 1.0:
        return torch.zeros_like(src, memory_format=torch.contiguous_format)
    if p == 0.0:
        return src.clone(memory_format=torch.contiguous_format)
    _check_interpreter(src)
    src = src.contiguous()
    out = torch.empty_like(src)
    n = src.numel()
    grid = (triton.cdiv(n, 4 * block),)
    threshold = int(_drop_threshold(p))
    scale = float(inverted_scale(p, np.float32))  # fl(1 / fl(1 - p)), as torch rounds it
    _seeded_dropout_kernel[grid](src, out, n, seed, offset, threshold, scale, block)
    return out


def seeded_dropout_forward(
    x: torch.Tensor, p: float, seed: int, offset: int = 0, *, block: int = DEFAULT_BLOCK
) -> torch.Tensor:
    r"""Inverted dropout :math:`y = x \odot m / (1-p)` with the mask of ``(seed, offset)``.

    Parameters
    ----------
    x : torch.Tensor
        float32, float16 or bfloat16, any shape (made contiguous), CUDA or, under the
        interpreter, CPU. The product is computed in float32 and rounded to ``x.dtype``.
    p : float
        Drop probability.
    seed : int
        Philox key, :math:`0 \le \text{seed} < 2^{64}`.
    offset : int, default 0
        Stream, :math:`0 \le \text{offset} < 2^{32}`; one per tensor of a step.
    block : int, default DEFAULT_BLOCK
        Philox calls per program (a power of two). The mask does not depend on it.
    """
    return _launch(x, p, seed, offset, block)


def seeded_dropout_backward(
    grad_output: torch.Tensor, p: float, seed: int, offset: int = 0, *, block: int = DEFAULT_BLOCK
) -> torch.Tensor:
    r"""Gradient :math:`g \odot m / (1-p)` of :func:`seeded_dropout_forward`, mask regenerated."""
    return _launch(grad_output, p, seed, offset, block)


def seeded_keep_mask(
    n: int,
    p: float,
    seed: int,
    offset: int = 0,
    *,
    device: str | torch.device = "cuda",
    block: int = DEFAULT_BLOCK,
) -> torch.Tensor:
    """The bool keep mask of ``(seed, offset)`` for ``n`` elements (for checks and stored modes)."""
    p = check_probability(p)
    _check_seed(seed, offset)
    mask = torch.empty(n, dtype=torch.int8, device=device)
    if p in (0.0, 1.0):
        return mask.fill_(int(p == 0.0)).bool()
    _check_interpreter(mask)
    grid = (triton.cdiv(n, 4 * block),)
    _keep_mask_kernel[grid](mask, n, seed, offset, int(_drop_threshold(p)), block)
    return mask.bool()
