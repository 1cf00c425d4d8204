r"""Dropout under data parallelism (DDP on gloo), and what DTensor does with dropout's randomness.

**DDP.** Each of :math:`W` replicas holds the whole model and a micro-batch of :math:`b` rows;
``DistributedDataParallel`` all-reduces the gradients and divides by :math:`W`, so with a
loss that is a mean over the micro-batch the replicas end with

.. math::

   \begin{aligned}
   \bar g &= \frac1W \sum_{r} \frac1b \sum_{k \in \text{batch}_r} \nabla \ell_k \\
          &= \frac1{Wb} \sum_{k=1}^{Wb} \nabla \ell_k,
   \end{aligned}

the gradient of the mean loss over the concatenated batch, **provided** each row's loss
:math:`\ell_k` is computed with the mask that row had on its replica. The replicas draw
different masks (seed :math:`s`, offset :math:`r`: one stream per replica), and the
single-process reference concatenates exactly those masks.

**DTensor.** :func:`dtensor_dropout_worker` applies ``F.dropout`` to a ``DTensor`` (PyTorch's
own tensor-parallel layer, ``torch.distributed.tensor``) sharded or replicated over a CPU
device mesh and returns each rank's local mask, together with whether DTensor installed its
``OffsetBasedRNGTracker``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dropoutlib.numpy.functional import inverted_scale
from dropoutlib.torch.seeded import seeded_dropout, seeded_keep_mask

__all__ = ["SeededDropout", "ddp_reference", "ddp_worker", "dtensor_dropout_worker"]


class SeededDropout(nn.Module):
    """``nn.Dropout`` with a counter-based mask at ``(seed, offset)`` (library seeded mode)."""

    def __init__(self, p: float, seed: int, offset: int = 0) -> None:
        super().__init__()
        self.p, self.seed, self.offset = p, seed, offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return seeded_dropout(x, self.p, seed=self.seed, offset=self.offset, training=self.training)


def _mlp(w1: np.ndarray, w2: np.ndarray, dropout: nn.Module) -> nn.Sequential:
    first, second = nn.Linear(*w1.shape[::-1]), nn.Linear(*w2.shape[::-1])
    with torch.no_grad():
        for layer, w in ((first, w1), (second, w2)):
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.zero_()
    return nn.Sequential(first, nn.GELU(), dropout, second)


def ddp_worker(
    rank: int,
    world_size: int,
    x: np.ndarray,
    t: np.ndarray,
    w1: np.ndarray,
    w2: np.ndarray,
    p: float,
    seed: int,
) -> dict[str, np.ndarray]:
    r"""One DDP training step's gradients on replica ``rank`` (its rows of ``x`` and ``t``).

    The model is ``Linear(d, h) -> GELU -> dropout -> Linear(h, o)`` with weights ``w1`` and
    ``w2`` (biases zero), the loss the mean squared error over the replica's micro-batch, and
    the replica's mask the seeded mask of ``(seed, rank)``.

    Returns
    -------
    dict of numpy.ndarray
        ``mask`` (the replica's keep mask) and the all-reduced gradients by parameter name
        (``0.weight``, ``0.bias``, ``3.weight``, ``3.bias``).
    """
    from torch.nn.parallel import DistributedDataParallel

    rows = np.array_split(np.arange(x.shape[0]), world_size)[rank]
    model = DistributedDataParallel(_mlp(w1, w2, SeededDropout(p, seed, offset=rank)))
    out = model(torch.from_numpy(x[rows]))
    F.mse_loss(out, torch.from_numpy(t[rows])).backward()
    grads = {name: param.grad.numpy() for name, param in model.module.named_parameters()}
    mask = seeded_keep_mask((len(rows), w1.shape[0]), p, seed=seed, offset=rank).numpy()
    return {"mask": mask, **grads}


class _FixedMaskDropout(nn.Module):
    def __init__(self, mask: torch.Tensor, p: float) -> None:
        super().__init__()
        self.mask, self.scale = mask, float(inverted_scale(p, np.dtype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.mask) * self.scale


def ddp_reference(
    world_size: int,
    x: np.ndarray,
    t: np.ndarray,
    w1: np.ndarray,
    w2: np.ndarray,
    p: float,
    seed: int,
) -> dict[str, np.ndarray]:
    r"""One process, the concatenated batch, the replicas' masks concatenated in rank order.

    Returns the gradients by parameter name, and under ``bound/<name>`` an elementwise bound on
    their distance from the DDP gradients: both are float32 sums over the same
    :math:`N = Wb` per-row terms in different orders, so (Higham, 2002, eq. 3.5) they differ by
    at most :math:`2\gamma_N \sum_k |\text{term}_k|`, the sum of absolute per-row terms
    computed in float64 (as in :func:`dropoutlib.parallel.dot_error_bound`).
    """
    from dropoutlib.parallel.tensor_parallel import gamma

    parts = np.array_split(np.arange(x.shape[0]), world_size)
    mask = torch.cat(
        [
            seeded_keep_mask((len(rows), w1.shape[0]), p, seed=seed, offset=rank)
            for rank, rows in enumerate(parts)
        ]
    )
    model = _mlp(w1, w2, _FixedMaskDropout(mask, p))
    x_t = torch.from_numpy(x)
    pre = model[0](x_t)
    pre.retain_grad()
    dropped = model[2](model[1](pre))
    dropped.retain_grad()
    out = model[3](dropped)
    out.retain_grad()
    F.mse_loss(out, torch.from_numpy(t)).backward()
    grads = {name: param.grad.numpy() for name, param in model.named_parameters()}
    n = x.shape[0]
    two_gamma = 2.0 * gamma(n)
    absolute = {
        "0.weight": np.abs(pre.grad.numpy().T, dtype=np.float64) @ np.abs(x, dtype=np.float64),
        "0.bias": np.abs(pre.grad.numpy(), dtype=np.float64).sum(axis=0),
        "3.weight": np.abs(out.grad.numpy().T, dtype=np.float64)
        @ np.abs(dropped.detach().numpy(), dtype=np.float64),
        "3.bias": np.abs(out.grad.numpy(), dtype=np.float64).sum(axis=0),
    }
    bounds = {f"bound/{name}": two_gamma * value for name, value in absolute.items()}
    return {"mask": mask.numpy(), **grads, **bounds}


def dtensor_dropout_worker(
    rank: int, world_size: int, shape: tuple[int, int], p: float, seed: int
) -> dict[str, object]:
    r"""``F.dropout`` on a ``DTensor`` over a CPU mesh: each rank's local keep mask.

    Every rank calls ``torch.manual_seed(seed)`` (what DTensor asks of its users), then drops
    a tensor of ones that is sharded along dimension 1 (``Shard(1)``) and one that is
    replicated (``Replicate()``).

    Returns
    -------
    dict
        ``shard_mask`` and ``replicate_mask`` (the local keep masks), ``rng_supported``
        (``is_rng_supported_mesh`` on this mesh) and ``tracker`` (the class name of DTensor's
        RNG tracker after the calls, or ``None``).
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor
    from torch.distributed.tensor import _random as dtensor_random

    mesh = init_device_mesh("cpu", (world_size,))
    torch.manual_seed(seed)
    ones = torch.ones(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "may not have complete support on cpu device mesh"
        supported = dtensor_random.is_rng_supported_mesh(mesh)
        masks = {}
        for name, placement in (("shard_mask", Shard(1)), ("replicate_mask", Replicate())):
            dropped = F.dropout(distribute_tensor(ones, mesh, [placement]), p, training=True)
            masks[name] = (dropped.to_local() != 0).numpy()
    tracker = dtensor_random._rng_tracker
    return {
        **masks,
        "rng_supported": supported,
        "tracker": None if tracker is None else type(tracker).__name__,
    }
