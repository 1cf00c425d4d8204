r"""Seeded dropout kernels: a byte per element, 16 elements per Philox4x32-10 call, no mask kept.

The forward pass computes :math:`y_i = x_i\, m_i\, c` with :math:`c = 1/(1-p)` and the
backward pass :math:`\partial L/\partial x_i = g_i\, m_i\, c`: the same element-wise map,
so one kernel serves both. The mask :math:`m` is never stored: each program recomputes it
from ``(seed, offset)``, reading only :math:`x` (or :math:`g`) and writing only the result,
the traffic of a copy.

**The mask, byte first.** Element :math:`i = 16g + 4j + b` compares the byte
:math:`B_i^{(0)}` (byte :math:`b` of word :math:`j` of the Philox call on counter
:math:`(g, \text{offset}, 0, 0)`) with the top byte of :math:`t = \operatorname{round}(p\,2^{32})`.
It is kept if the byte is larger, dropped if smaller; on a tie (probability :math:`2^{-8}`) it
reads its byte of level 1, counter :math:`(g, \text{offset}, 1, 0)`, against the next byte of
:math:`t`, and so on down to level 3; four equal bytes mean :math:`W_i = t`, kept. This decides
:math:`W_i \ge t` for the word :math:`W_i` of
:func:`dropoutlib.numpy.philox.philox_dropout_words`, so :math:`P(\text{keep}) = 1 - t/2^{32}`
exactly. The level is counter word :math:`c_2` and the stream is :math:`c_1`, so no two
(offset, level) pairs share a counter.

**Refinement per program.** Triton computes on whole blocks, and a branch needs a block-wide
reduction (shared memory and barriers), so the refinement is arranged around few branches. The
host passes the deepest level whose threshold byte can matter (``LEVELS``, a compile-time
constant): 0 when the low 24 bits of :math:`t` are zero (:math:`p = 1/2, 1/4, 3/4`), and
then the kernel has no refinement and no reduction at all. Otherwise the ``"eager"`` variant
(default) computes level 1 for every group without asking (a second Philox call per 16
elements; in a program of :math:`16 \cdot 128` elements some element ties at level 0 with
probability :math:`1 - (255/256)^{2048} \approx 1`, so asking would not save it) and
branches once, on a tie after two bytes (probability :math:`\approx 2048/2^{16} \approx 3\%`
per program), for levels 2 and 3; ``"lazy"`` branches before every level. ``"biased"`` stops
after one byte (FlashAttention's corner, for pricing exactness only). Layout, block and warps
change the speed, never the mask; ``"eager"`` and ``"lazy"`` draw the same mask, the level rule
of :func:`dropoutlib.numpy.philox.philox_keep_mask`.

**The ranked variant** (``"ranked"``) draws the *ranked rule* of
:func:`dropoutlib.numpy.philox.philox_ranked_words` instead: the same level-0 bytes, the same
exact :math:`P(\text{keep}) = 1 - t/2^{32}`, but a tied element's lower bytes come from one
Philox call per refinement group of 1024 elements and level (counter :math:`(q, \text{offset},
4 + \ell, 0)`), byte :math:`r` going to the group's tied element of rank :math:`r`
(``tl.cumsum`` of the tie flags, then ``tl.gather``), instead of a call per 16 elements. A
group with more than 16 ties (probability about :math:`10^{-6}`) falls back, behind one
branch, to the level rule's bytes for its tied elements. The refinement groups are fixed
(``RANK_GROUP``), so the mask does not depend on the launch: ``block`` must be a multiple of
64 (a program holds whole groups), any layout and warps. It is exact and tested under Triton's
interpreter, but Triton 3.6's compiler rejects it (``PassManager::run failed`` in the
``TritonGPUOptimizeThreadLocality`` pass, on an H200: ``benchmarks/results/fast_gpu.json``),
so it stays an experiment and ``"eager"`` the default.

**Counters are uint32.** The kernel calls ``tl.philox`` with four explicit uint32 counter words.
Triton picks the Philox variant from the counters' width, and some releases turned a uint64
counter given to ``tl.randint4x`` into Philox4x64: a different, silently wrong mask. A
``tl.static_assert`` and a word-for-word test against :func:`dropoutlib.numpy.philox.philox4x32`
hold the width.
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

from dropoutlib._validation import check_probability
from dropoutlib.numpy.functional import _drop_threshold, inverted_scale
from dropoutlib.numpy.philox import RANK_BYTES, RANK_GROUP, check_seed_offset

__all__ = ["DEFAULT_BLOCK", "seeded_dropout_backward", "seeded_dropout_forward", "seeded_keep_mask"]

#: Philox calls (groups of 16 elements) per program; a program handles ``16 * block`` elements.
DEFAULT_BLOCK = 128
#: Warps per program (Triton's ``num_warps``).
DEFAULT_NUM_WARPS = 4
#: How ties are refined: "eager" computes level 1 for every group with no reduction and
#: reduces once (per program) before levels 2-3; "lazy" reduces before every level;
#: "biased" never refines (FlashAttention's single byte: P(keep) is off by up to 2**-8);
#: "ranked" refines from one Philox call per 1024 elements and level (its own exact mask, the
#: ranked rule; block >= 64). The default stays "eager", whose mask is the level rule that
#: ``philox_keep_mask`` computes by default and the chapters compare with.
DEFAULT_VARIANT = "eager"
#: How flags meet data: "interleave" (flags interleaved from the four words, data loaded
#: from a plain range, one layout conversion), "rows" (a (block, 16) tile: byte ``b`` of word
#: ``j`` selected per column, loads in the same tile, no conversion), "spread" (indices
#: interleaved like the flags: no conversion, but no vectorised loads either).
DEFAULT_LAYOUT = "interleave"
VARIANTS = ("eager", "lazy", "biased", "ranked")
LAYOUTS = ("interleave", "rows", "spread")
_VARIANT_CODE = {"eager": 1, "lazy": 0, "biased": -1, "ranked": 2}
_RANK_CALLS = RANK_GROUP // 16  # Philox calls (level 0) per refinement group
if (RANK_GROUP, RANK_BYTES) != (1024, 16):  # the kernel spells them out (64 calls, 16 bytes)
    raise ImportError("the ranked kernel is written for RANK_GROUP = 1024, RANK_BYTES = 16")
_LAYOUT_CODE = {"interleave": 0, "rows": 1, "spread": 2}
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_MAX_NUMEL = 1 << 35  # groups below 2**31: int32 group arithmetic; uint32 counter word c0
_NOT_SPECIALIZED = [
    "seed",
    "offset",
    "threshold",
]  # no recompilation per value (1, multiples of 16)


@triton.jit
def _spread4(a0, a1, a2, a3):
    """``[a0[0], a1[0], a2[0], a3[0], a0[1], ...]``: four blocks interleaved (thread-local)."""
    return tl.interleave(tl.interleave(a0, a2), tl.interleave(a1, a3))


@triton.jit
def _level_bytes(seed, groups, offset, level, ROWS: tl.constexpr):
    """Byte of level ``level`` of each of the ``16 * len(groups)`` elements.

    Element order (a flat block) when ``ROWS`` is false; a ``(len(groups), 16)`` tile whose
    column ``4j + b`` is byte ``b`` of word ``j`` when ``ROWS`` is true.
    """
    c0 = groups.to(tl.uint32)
    c1 = (c0 * 0 + offset).to(tl.uint32)
    c2 = (c0 * 0 + level).to(tl.uint32)
    c3 = c0 * 0
    tl.static_assert(c0.dtype == tl.uint32, "Philox4x32 needs uint32 counters")
    tl.static_assert(c1.dtype == tl.uint32)
    tl.static_assert(c2.dtype == tl.uint32)
    tl.static_assert(c3.dtype == tl.uint32)
    r0, r1, r2, r3 = tl.philox(seed, c0, c1, c2, c3)
    if ROWS:
        column = tl.arange(0, 16)[None, :]
        word = tl.where(
            column < 8,
            tl.where(column < 4, r0[:, None], r1[:, None]),
            tl.where(column < 12, r2[:, None], r3[:, None]),
        )
        shift = ((column & 3) * 8).to(tl.uint32)
        out = (word >> shift) & 0xFF
    else:
        words = _spread4(r0, r1, r2, r3)  # word j of group g at 4g + j
        out = _spread4(words & 0xFF, (words >> 8) & 0xFF, (words >> 16) & 0xFF, words >> 24)
    return out


@triton.jit
def _any(flags, ROWS: tl.constexpr):
    """Whether any flag of the block is set (one block-wide reduction)."""
    if ROWS:
        count = tl.max(tl.max(flags.to(tl.int32), axis=1), axis=0)
    else:
        count = tl.max(flags.to(tl.int32), axis=0)
    return count > 0


@triton.jit
def _refine(seed, groups, offset, t, keep, tie, level: tl.constexpr, ROWS: tl.constexpr):
    """Decide the elements still tied after ``level - 1`` by their byte of level ``level``."""
    level_bytes = _level_bytes(seed, groups, offset, level, ROWS)
    t_byte = (t >> (24 - 8 * level)) & 0xFF
    return keep | (tie & (level_bytes > t_byte)), tie & (level_bytes == t_byte)


@triton.jit
def _tie_ranks(tie, BLOCK: tl.constexpr):
    """Rank of each tie among its refinement group's ties, and whether the group has too many.

    Both are ``(BLOCK // 64, 1024)`` tiles: row ``k`` is the program's ``k``-th group of 1024
    elements, in element order (``tie`` is a flat block or a ``(BLOCK, 16)`` tile).
    """
    flags = tl.reshape(tie.to(tl.int32), (BLOCK // 64, 1024))
    rank = tl.cumsum(flags, axis=1) - flags  # ties before the element in its group
    count = tl.sum(flags, axis=1)
    over = tl.broadcast_to((count > 16)[:, None], (BLOCK // 64, 1024))
    return tl.minimum(rank, 15), over


@triton.jit
def _refine_ranked(
    seed,
    pid,
    groups,
    offset,
    t,
    keep,
    tie,
    rank,
    over,
    fallback,
    level: tl.constexpr,
    BLOCK: tl.constexpr,
    ROWS: tl.constexpr,
):
    """:func:`_refine` with the ranked rule's bytes: byte ``rank`` of the group's rank stream."""
    refinement_groups = pid * (BLOCK // 64) + tl.arange(0, BLOCK // 64)
    stream = _level_bytes(seed, refinement_groups, offset, 4 + level, True)  # (BLOCK // 64, 16)
    level_bytes = tl.reshape(tl.gather(stream, rank, axis=1), tie.shape)
    if fallback:  # some group has more than 16 ties: the level rule's bytes for its elements
        level_bytes = tl.where(
            tl.reshape(over, tie.shape),
            _level_bytes(seed, groups, offset, level, ROWS),
            level_bytes,
        )
    t_byte = (t >> (24 - 8 * level)) & 0xFF
    return keep | (tie & (level_bytes > t_byte)), tie & (level_bytes == t_byte)


@triton.jit
def _keep_block(
    seed,
    offset,
    threshold,
    pid,
    BLOCK: tl.constexpr,
    LEVELS: tl.constexpr,
    VARIANT: tl.constexpr,
    ROWS: tl.constexpr,
):
    """Keep flags of the ``16 * BLOCK`` elements of program ``pid``: ``W >= t``, byte first.

    ``LEVELS`` (from the host) is the deepest level whose threshold byte can still matter:
    after a tie at level ``LEVELS`` the rest of ``t`` is zero, so the tie is a keep. It is 0
    for ``p = 1/2, 1/4, 3/4``: those kernels contain no refinement and no reduction at all.
    """
    groups = pid * BLOCK + tl.arange(0, BLOCK)
    t = threshold.to(tl.uint32)
    top = _level_bytes(seed, groups, offset, 0, ROWS)
    keep = top > (t >> 24)
    tie = top == (t >> 24)
    if VARIANT == 1:  # eager: level 1 everywhere, no reduction; levels 2-3 behind one
        if LEVELS >= 1:
            keep, tie = _refine(seed, groups, offset, t, keep, tie, 1, ROWS)
        if LEVELS >= 2:
            if _any(tie, ROWS):  # P = 16 BLOCK / 2**16 per program
                keep, tie = _refine(seed, groups, offset, t, keep, tie, 2, ROWS)
                if LEVELS >= 3:
                    keep, tie = _refine(seed, groups, offset, t, keep, tie, 3, ROWS)
    elif VARIANT == 2:  # ranked: one Philox call per 1024 elements and level, by tie rank
        if LEVELS >= 1:
            rank, over = _tie_ranks(tie, BLOCK)
            fallback = _any(over, True)
            keep, tie = _refine_ranked(
                seed, pid, groups, offset, t, keep, tie, rank, over, fallback, 1, BLOCK, ROWS
            )
            if LEVELS >= 2:
                if _any(tie, ROWS):  # P about 4 / 256 per group of 1024
                    keep, tie = _refine_ranked(
                        seed,
                        pid,
                        groups,
                        offset,
                        t,
                        keep,
                        tie,
                        rank,
                        over,
                        fallback,
                        2,
                        BLOCK,
                        ROWS,
                    )
                    if LEVELS >= 3:
                        keep, tie = _refine_ranked(
                            seed,
                            pid,
                            groups,
                            offset,
                            t,
                            keep,
                            tie,
                            rank,
                            over,
                            fallback,
                            3,
                            BLOCK,
                            ROWS,
                        )
    elif VARIANT == 0:  # lazy: a reduction before each level
        if LEVELS >= 1:
            if _any(tie, ROWS):
                keep, tie = _refine(seed, groups, offset, t, keep, tie, 1, ROWS)
                if LEVELS >= 2:
                    if _any(tie, ROWS):
                        keep, tie = _refine(seed, groups, offset, t, keep, tie, 2, ROWS)
                        if LEVELS >= 3:
                            keep, tie = _refine(seed, groups, offset, t, keep, tie, 3, ROWS)
    return keep | tie  # four equal bytes (or an all-zero rest of t): W >= t


@triton.jit
def _element_index(pid, BLOCK: tl.constexpr, LAYOUT: tl.constexpr):
    """Indices of program ``pid``'s elements (int64), laid out like :func:`_keep_block`'s flags."""
    if LAYOUT == 1:  # rows: a (BLOCK, 16) tile, contiguous along the rows
        first = (pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)) * 16
        index = first[:, None] + tl.arange(0, 16)[None, :]
    elif LAYOUT == 2:  # built by the same interleaves as the flags: no layout conversion
        first = (pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)) * 16
        quads = _spread4(first, first + 4, first + 8, first + 12)
        index = _spread4(quads, quads + 1, quads + 2, quads + 3)
    else:  # a plain range: contiguity known to the compiler (vectorised loads)
        index = pid.to(tl.int64) * (16 * BLOCK) + tl.arange(0, 16 * BLOCK)
    return index


@triton.jit(do_not_specialize=_NOT_SPECIALIZED)
def _seeded_dropout_kernel(
    src_ptr,
    out_ptr,
    n,
    seed,
    offset,
    threshold,
    scale,
    BLOCK: tl.constexpr,
    LEVELS: tl.constexpr,
    VARIANT: tl.constexpr,
    LAYOUT: tl.constexpr,
):
    pid = tl.program_id(0)
    keep = _keep_block(seed, offset, threshold, pid, BLOCK, LEVELS, VARIANT, LAYOUT == 1)
    index = _element_index(pid, BLOCK, LAYOUT)
    inside = index < n
    src = tl.load(src_ptr + index, mask=inside).to(tl.float32)
    out = src * keep.to(tl.float32) * scale  # (x * m) * c, as torch and dropoutlib.numpy
    tl.store(out_ptr + index, out.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit(do_not_specialize=_NOT_SPECIALIZED)
def _keep_mask_kernel(
    mask_ptr,
    n,
    seed,
    offset,
    threshold,
    BLOCK: tl.constexpr,
    LEVELS: tl.constexpr,
    VARIANT: tl.constexpr,
    LAYOUT: tl.constexpr,
):
    pid = tl.program_id(0)
    keep = _keep_block(seed, offset, threshold, pid, BLOCK, LEVELS, VARIANT, LAYOUT == 1)
    index = _element_index(pid, BLOCK, LAYOUT)
    tl.store(mask_ptr + index, keep.to(tl.int8), mask=index < n)


@triton.jit(do_not_specialize=_NOT_SPECIALIZED)
def _philox_words_kernel(out_ptr, n_groups, seed, offset, level, BLOCK: tl.constexpr):
    """Raw words of counters ``(g, offset, level, 0)``: row ``g`` of an ``(n_groups, 4)`` array."""
    groups = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    c0 = groups.to(tl.uint32)
    zero = c0 * 0
    r0, r1, r2, r3 = tl.philox(
        seed, c0, (zero + offset).to(tl.uint32), (zero + level).to(tl.uint32), zero
    )
    inside = groups < n_groups
    row = out_ptr + groups.to(tl.int64) * 4
    tl.store(row + 0, r0.to(tl.int32, bitcast=True), mask=inside)
    tl.store(row + 1, r1.to(tl.int32, bitcast=True), mask=inside)
    tl.store(row + 2, r2.to(tl.int32, bitcast=True), mask=inside)
    tl.store(row + 3, r3.to(tl.int32, bitcast=True), mask=inside)


def _check_interpreter(t: torch.Tensor) -> None:
    if t.device.type == "cpu" and type(tl.randint4x).__name__ != "InterpretedFunction":
        raise RuntimeError(
            "the Triton kernels run on CPU tensors only under Triton's interpreter: set "
            "TRITON_INTERPRET=1 before triton is first imported (or pass CUDA tensors)"
        )


def _check_block(block: int) -> None:
    if isinstance(block, bool) or not isinstance(block, int) or block < 1 or block & (block - 1):
        raise ValueError(f"block must be a power of two, but got {block!r}")


def _levels(threshold: int) -> int:
    r"""Deepest refinement level whose threshold byte matters: 0 when ``t``'s low 24 bits are 0.

    After a tie through level :math:`\ell` the element is kept iff the remaining bytes of
    :math:`W` are at least :math:`t \bmod 2^{24 - 8\ell}`; when that rest is 0 every such tie
    is a keep, so level :math:`\ell + 1` is never needed.
    """
    for level, rest in ((3, 0xFF), (2, 0xFFFF), (1, 0xFFFFFF)):
        if threshold & rest:
            return level
    return 0


def _kernel_options(
    block: int, variant: str, layout: str, num_warps: int | None
) -> tuple[int, int, dict[str, int]]:
    _check_block(block)
    if variant not in _VARIANT_CODE:
        raise ValueError(f"variant must be one of {VARIANTS}, but got {variant!r}")
    if variant == "ranked" and block < _RANK_CALLS:
        raise ValueError(
            f"the ranked variant needs block >= {_RANK_CALLS} (whole refinement groups of "
            f"{RANK_GROUP} elements per program), but got {block}"
        )
    if layout not in _LAYOUT_CODE:
        raise ValueError(f"layout must be one of {LAYOUTS}, but got {layout!r}")
    options = {"num_warps": DEFAULT_NUM_WARPS if num_warps is None else num_warps}
    return _VARIANT_CODE[variant], _LAYOUT_CODE[layout], options


def _launch(
    src: torch.Tensor,
    p: float,
    seed: int,
    offset: int,
    block: int,
    *,
    variant: str = DEFAULT_VARIANT,
    layout: str = DEFAULT_LAYOUT,
    num_warps: int | None = None,
) -> torch.Tensor:
    """Launch the dropout kernel; ``variant``, ``layout`` and ``num_warps`` change speed only
    (except ``variant="biased"``, which keeps an element when its top byte is at least
    ``t >> 24``: it drops with probability ``floor(t / 2**24) / 2**8``)."""
    p = check_probability(p)
    seed, offset = check_seed_offset(seed, offset, offset_bits=32)
    variant_code, layout_code, options = _kernel_options(block, variant, layout, num_warps)
    if not isinstance(src, torch.Tensor) or src.dtype not in _DTYPES:
        raise TypeError(f"expected a float32, float16 or bfloat16 tensor, but got {src!r:.60}")
    if src.numel() > _MAX_NUMEL:
        raise ValueError(f"at most 2**35 elements are supported, got {src.numel()}")
    if p == 1.0:
        return torch.zeros_like(src, memory_format=torch.contiguous_format)
    if p == 0.0:
        return src.clone(memory_format=torch.contiguous_format)
    _check_interpreter(src)
    src = src.contiguous()
    out = torch.empty_like(src)
    n = src.numel()
    if n == 0:
        return out
    grid = (triton.cdiv(n, 16 * block),)
    threshold = int(_drop_threshold(p))
    scale = float(inverted_scale(p, np.float32))  # fl(1 / fl(1 - p)), as torch rounds it
    levels = _levels(threshold)
    _seeded_dropout_kernel[grid](
        src,
        out,
        n,
        seed,
        offset,
        threshold,
        scale,
        block,
        levels,
        variant_code,
        layout_code,
        **options,
    )
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
        Drop probability; the keep probability is exactly :math:`1 - t/2^{32}` with
        :math:`t = \operatorname{round}(p\,2^{32})`.
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
    variant: str = DEFAULT_VARIANT,
    layout: str = DEFAULT_LAYOUT,
    num_warps: int | None = None,
) -> torch.Tensor:
    """The bool keep mask of ``(seed, offset)`` for ``n`` elements (for checks and stored modes).

    ``block``, ``variant``, ``layout`` and ``num_warps`` select the kernel configuration; the
    mask does not depend on them, except that ``"ranked"`` draws the ranked rule
    (``philox_keep_mask(..., rule="ranked")``) and ``"biased"`` compares one byte only.
    """
    p = check_probability(p)
    seed, offset = check_seed_offset(seed, offset, offset_bits=32)
    variant_code, layout_code, options = _kernel_options(block, variant, layout, num_warps)
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= _MAX_NUMEL:
        raise ValueError(f"n must be an integer in [0, 2**35], but got {n!r}")
    mask = torch.empty(n, dtype=torch.int8, device=device)
    if p in (0.0, 1.0) or n == 0:
        return mask.fill_(int(p == 0.0)).bool()
    _check_interpreter(mask)
    grid = (triton.cdiv(n, 16 * block),)
    threshold = int(_drop_threshold(p))
    _keep_mask_kernel[grid](
        mask,
        n,
        seed,
        offset,
        threshold,
        block,
        _levels(threshold),
        variant_code,
        layout_code,
        **options,
    )
    return mask.bool()


def _philox_words(
    n_groups: int, seed: int, offset: int, level: int, *, device: str | torch.device = "cuda"
) -> np.ndarray:
    """The kernel's raw Philox words for counters ``(g, offset, level, 0)``, shape (n_groups, 4).

    For tests: compared word for word with :func:`dropoutlib.numpy.philox.philox4x32`.
    """
    seed, offset = check_seed_offset(seed, offset, offset_bits=32)
    out = torch.zeros((n_groups, 4), dtype=torch.int32, device=device)
    _check_interpreter(out)
    block = 64
    _philox_words_kernel[(triton.cdiv(n_groups, block),)](out, n_groups, seed, offset, level, block)
    return out.cpu().numpy().view(np.uint32)
