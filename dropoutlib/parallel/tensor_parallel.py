r"""A tensor-parallel MLP block with dropout, on real ``torch.distributed`` (Megatron's layout).

The block is :math:`Y = D_{\text{rep}}\bigl(D_{\text{shard}}(\operatorname{gelu}(X A))\, B\bigr)`
with :math:`A \in \mathbb{R}^{d \times h}` split by **columns** and :math:`B \in
\mathbb{R}^{h \times d}` split by **rows** over :math:`W` ranks (Shoeybi et al., 2019):
rank :math:`r` holds :math:`A_r = A[:, rh/W:(r+1)h/W]` and :math:`B_r = B[rh/W:(r+1)h/W, :]`,
computes its slice :math:`H_r = \operatorname{gelu}(X A_r)` of the hidden activation without
communicating, and the partial products are summed by one all-reduce,
:math:`Z = \sum_r D_{\text{shard}}(H_r) B_r`. The hidden activation is **sharded** (each rank
holds a different slice); :math:`Z` and :math:`Y` are **replicated** (every rank holds all of
it). Dropout must therefore draw

- a **different** mask on every rank for :math:`H_r`, or all slices share one pattern;
- the **same** mask on every rank for :math:`Z`, or the copies of :math:`Y` disagree.

Megatron-LM does this with two generators (``model_parallel_cuda_manual_seed`` in
``megatron/core/tensor_parallel/random.py``): the default one seeded with ``seed`` on every
tensor-parallel rank, and a tracked "model-parallel" one seeded with
``seed + 2718 + tp_rank``, which ``CudaRNGStatesTracker.fork()`` switches in around dropout in
sharded regions. Here the two generators are two seeds of the library's counter-based masks
(:func:`dropoutlib.torch.seeded.seeded_dropout`), so a mask is a pure function of
``(seed, offset, shape)``, and a single process can rebuild every rank's mask.

The all-reduces are Megatron's conjugate pair: :math:`f` (identity forward, all-reduce
backward) where :math:`X` enters the parallel region, :math:`g` (all-reduce forward,
identity backward) where :math:`Z` leaves it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from dropoutlib.numpy.functional import inverted_scale
from dropoutlib.torch.seeded import seeded_dropout, seeded_keep_mask

__all__ = [
    "MEGATRON_TP_SEED_OFFSET",
    "RULES",
    "dot_error_bound",
    "dropout_seeds",
    "gamma",
    "tp_mlp_reference",
    "tp_mlp_worker",
]

#: Megatron-LM's ``offset = seed + 2718`` ("2718 is just for fun and any POSITIVE value will
#: work"): the model-parallel seed of tensor-parallel rank ``r`` is ``seed + 2718 + r``.
MEGATRON_TP_SEED_OFFSET = 2718
#: ``"megatron"`` follows the rule; the other two break it on purpose.
RULES = ("megatron", "same_shard_masks", "rank_replica_masks")


def dropout_seeds(seed: int, tp_rank: int, rule: str = "megatron") -> tuple[int, int]:
    r"""``(sharded_seed, replicated_seed)`` of tensor-parallel rank ``tp_rank``.

    ``"megatron"``: :math:`(s + 2718 + r,\ s)`, Megatron-LM's model-parallel and default
    seeds. ``"same_shard_masks"``: :math:`(s + 2718,\ s)`, every shard draws the same mask
    (wrong). ``"rank_replica_masks"``: :math:`(s + 2718 + r,\ s + r)`, the replicas of one
    tensor draw different masks (wrong).
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, but got {rule!r}")
    sharded = seed + MEGATRON_TP_SEED_OFFSET + (0 if rule == "same_shard_masks" else tp_rank)
    replicated = seed + (tp_rank if rule == "rank_replica_masks" else 0)
    return sharded, replicated


class _CopyToParallelRegion(torch.autograd.Function):
    """Megatron's :math:`f`: identity forward, all-reduce (sum) of the gradient backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class _ReduceFromParallelRegion(torch.autograd.Function):
    """Megatron's :math:`g`: all-reduce (sum) forward, identity backward."""

    @staticmethod
    def forward(ctx: Any, partial: torch.Tensor) -> torch.Tensor:
        total = partial.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


def _shard(world_size: int, rank: int, h: int) -> slice:
    if h % world_size:
        raise ValueError(f"hidden size {h} is not divisible by world size {world_size}")
    width = h // world_size
    return slice(rank * width, (rank + 1) * width)


def tp_mlp_worker(
    rank: int,
    world_size: int,
    x: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    g: np.ndarray,
    p: float,
    seed: int,
    offset: int = 0,
    rule: str = "megatron",
) -> dict[str, np.ndarray]:
    r"""One forward and backward pass of the tensor-parallel block on rank ``rank``.

    Run it with :func:`dropoutlib.parallel.run_workers`. The loss is
    :math:`L = \sum_{ij} Y_{ij} G_{ij}` with a fixed ``g``, so that :math:`\partial L/\partial
    Y = G`.

    Parameters
    ----------
    rank, world_size : int
        Supplied by the launcher; the hidden size must be divisible by ``world_size``.
    x : numpy.ndarray, shape (n, d)
        The replicated input (float32).
    a : numpy.ndarray, shape (d, h)
        The full first weight; the rank keeps its columns.
    b : numpy.ndarray, shape (h, d)
        The full second weight; the rank keeps its rows.
    g : numpy.ndarray, shape (n, d)
        :math:`\partial L / \partial Y`.
    p : float
        Drop probability of both dropouts.
    seed, offset : int
        Base seed and the offset of this layer's masks.
    rule : {"megatron", "same_shard_masks", "rank_replica_masks"}
        How the rank's two dropout seeds are chosen (:func:`dropout_seeds`).

    Returns
    -------
    dict of numpy.ndarray
        ``hidden`` (the rank's dropped slice), ``z`` (the all-reduced sum), ``y``,
        ``grad_a`` and ``grad_b`` (the rank's shards), ``grad_x`` (replicated).
    """
    cols = _shard(world_size, rank, a.shape[1])
    sharded_seed, replicated_seed = dropout_seeds(seed, rank, rule)
    x_t = torch.tensor(x, requires_grad=True)
    a_r = torch.tensor(a[:, cols], requires_grad=True)
    b_r = torch.tensor(b[cols, :], requires_grad=True)
    hidden = seeded_dropout(
        F.gelu(_CopyToParallelRegion.apply(x_t) @ a_r), p, seed=sharded_seed, offset=offset
    )
    z = _ReduceFromParallelRegion.apply(hidden @ b_r)
    y = seeded_dropout(z, p, seed=replicated_seed, offset=offset)
    (y * torch.from_numpy(g)).sum().backward()
    return {
        "hidden": hidden.detach().numpy(),
        "z": z.detach().numpy(),
        "y": y.detach().numpy(),
        "grad_a": a_r.grad.numpy(),
        "grad_b": b_r.grad.numpy(),
        "grad_x": x_t.grad.numpy(),
    }


def _masked(t: torch.Tensor, mask: torch.Tensor, p: float) -> torch.Tensor:
    """``(t * m) * c``: the arithmetic of the library's seeded and stored-mask dropout."""
    return (t * mask) * float(inverted_scale(p, np.dtype(np.float32)))


def tp_mlp_reference(
    world_size: int,
    x: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    g: np.ndarray,
    p: float,
    seed: int,
    offset: int = 0,
) -> dict[str, np.ndarray]:
    r"""The same block in one process, unsharded, with the masks the ranks draw (Megatron rule).

    The hidden mask is the concatenation, along the hidden dimension, of every rank's
    ``seeded_keep_mask((n, h/W), seed=s + 2718 + r, offset)``; the output mask is the one of
    ``(s, offset)``. Apart from the masks nothing knows about ranks: the products are full
    matrix products.

    Returns
    -------
    dict of numpy.ndarray
        As :func:`tp_mlp_worker` (unsharded ``grad_a``, ``grad_b``, full ``hidden``), plus
        ``grad_pre``, :math:`\partial L/\partial (XA)`, needed for the error bound of
        ``grad_x``.
    """
    n, h = x.shape[0], a.shape[1]
    masks = []
    for rank in range(world_size):
        width = _shard(world_size, rank, h).stop - _shard(world_size, rank, h).start
        sharded_seed, _ = dropout_seeds(seed, rank)
        masks.append(seeded_keep_mask((n, width), p, seed=sharded_seed, offset=offset))
    hidden_mask = torch.cat(masks, dim=1)
    out_mask = seeded_keep_mask(tuple(g.shape), p, seed=seed, offset=offset)
    x_t = torch.tensor(x, requires_grad=True)
    a_t = torch.tensor(a, requires_grad=True)
    b_t = torch.tensor(b, requires_grad=True)
    pre = x_t @ a_t
    pre.retain_grad()
    hidden = _masked(F.gelu(pre), hidden_mask, p)
    z = hidden @ b_t
    y = _masked(z, out_mask, p)
    (y * torch.from_numpy(g)).sum().backward()
    return {
        "hidden": hidden.detach().numpy(),
        "z": z.detach().numpy(),
        "y": y.detach().numpy(),
        "grad_a": a_t.grad.numpy(),
        "grad_b": b_t.grad.numpy(),
        "grad_x": x_t.grad.numpy(),
        "grad_pre": pre.grad.numpy(),
        "out_mask": out_mask.numpy(),
    }


def gamma(k: int, unit_roundoff: float = 2.0**-24) -> float:
    r""":math:`\gamma_k = k u / (1 - k u)`, Higham's constant for :math:`k` rounding errors.

    Parameters
    ----------
    k : int
        Number of floating-point operations in a chain (:math:`k u < 1`).
    unit_roundoff : float, default :math:`2^{-24}` (float32)
    """
    ku = k * unit_roundoff
    if not 0 <= ku < 1:
        raise ValueError(f"k * u must be in [0, 1), but got {ku}")
    return ku / (1.0 - ku)


def dot_error_bound(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    r"""Elementwise bound on the difference of two float32 evaluations of ``left @ right``.

    Any evaluation of a dot product of length :math:`k` in floating point, in any summation
    order, with or without fused multiply-adds, satisfies
    :math:`|\widehat{s} - s| \le \gamma_k \sum_l |a_l||b_l|` (Higham, 2002, eq. 3.5). Two
    evaluations with different orders (one matrix product, or :math:`W` shorter products summed
    by an all-reduce, which is again a summation tree over the same :math:`k` products) are
    therefore at most :math:`2\gamma_k\,(|A|\,|B|)` apart, computed here in float64.

    Parameters
    ----------
    left : numpy.ndarray, shape (m, k)
    right : numpy.ndarray, shape (k, n)

    Returns
    -------
    numpy.ndarray of float64, shape (m, n)
    """
    left64, right64 = np.abs(left, dtype=np.float64), np.abs(right, dtype=np.float64)
    return 2.0 * gamma(left.shape[1]) * (left64 @ right64)
