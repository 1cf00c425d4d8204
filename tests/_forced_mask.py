"""Run a PyTorch dropout with a mask we choose, to compare with ours given the same mask.

PyTorch's CPU dropouts draw their noise with ``Tensor.bernoulli_(1 - p)`` (ATen
``_dropout_impl``). A dispatch mode intercepts that one call and fills the noise tensor with a
given keep mask instead, and records the noise shape, so a test sees both torch's own
arithmetic on an identical mask and the shape of the noise torch asked for.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode


class ForcedBernoulli(TorchDispatchMode):
    """Replace the result of every ``bernoulli_(float)`` with ``keep`` (reshaped to the noise)."""

    def __init__(self, keep: np.ndarray) -> None:
        super().__init__()
        self.keep = keep
        self.noise_shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten.bernoulli_.float:
            noise = args[0]
            self.noise_shapes.append(tuple(noise.shape))
            if noise.numel() != self.keep.size:
                raise AssertionError(f"torch noise {tuple(noise.shape)} vs mask {self.keep.shape}")
            noise.copy_(torch.from_numpy(np.ascontiguousarray(self.keep)).reshape(noise.shape))
            return noise
        return func(*args, **kwargs)


def bits(a: np.ndarray) -> np.ndarray:
    """The raw bits of a float array, so -0.0 differs from 0.0 and NaNs compare equal."""
    return np.ascontiguousarray(a).view(f"u{a.dtype.itemsize}")
