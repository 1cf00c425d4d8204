r"""Structured dropout in PyTorch: DropPath / stochastic depth, DropBlock and weight dropout.

Written from the papers and checked against the libraries practitioners use (chapter 17;
:mod:`dropoutlib.torch.references` loads those):

- :func:`stochastic_depth` / :class:`StochasticDepth` have the signature and errors of
  ``torchvision.ops.stochastic_depth`` (torchvision 0.28.0), :func:`drop_path` /
  :class:`DropPath` those of ``timm.layers.drop_path`` (timm 1.0.31). Under the same torch
  seed their outputs are bit-identical to the references' (the tests check it), because they
  draw the same random numbers: one ``bernoulli_(1 - p)`` call on a noise tensor of shape
  :math:`(N, 1, \dots, 1)` ("row") or :math:`(1, \dots, 1)` ("batch") in the input's dtype.
- :func:`drop_block2d` / :class:`DropBlock2d` follow Ghiasi et al. (2018), with the two
  choices on which the libraries differ as arguments: where block centres may fall
  (``seed_region="valid"``, torchvision's, or ``"full"``, timm's) and whether the channels
  share one mask (``share_channels``, timm's default ``couple_channels=True``). With
  torchvision's defaults the output is bit-identical to ``torchvision.ops.drop_block2d``; with
  ``seed_region="full", share_channels=True, eps=1e-7`` to timm's ``drop_block_2d`` for
  float32 inputs (timm computes the rescaling factor in float32 for every input dtype).
- :class:`WeightDrop` drops an arbitrary weight of any module (DropConnect on the weights,
  Wan et al. 2013; AWD-LSTM's ``WeightDrop``, Merity et al. 2018, for the hidden-to-hidden
  matrices of an LSTM).

Everything uses the **inverted** convention (kept values scaled up in training, identity at
test time). Huang et al. (2016) scale at test time instead; see
:func:`dropoutlib.numpy.structured.drop_path` for the conversion.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call
from torch.nn import Module

from dropoutlib.numpy.structured import dropblock_gamma
from dropoutlib.torch.functional import dropout as _dropout

__all__ = [
    "DropBlock2d",
    "DropPath",
    "StochasticDepth",
    "WeightDrop",
    "drop_block2d",
    "drop_path",
    "stochastic_depth",
]


def _path_noise(x: Tensor, keep: float, per_sample: bool, scale: bool) -> Tensor:
    """One Bernoulli(keep) per sample (or one for the batch), divided by ``keep`` if ``scale``."""
    shape = [x.shape[0]] + [1] * (x.ndim - 1) if per_sample else [1] * x.ndim
    noise = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
    if scale and keep > 0.0:
        noise.div_(keep)  # a division (not a product with 1/keep), so that values are exact
    return noise


def stochastic_depth(input: Tensor, p: float, mode: str, training: bool = True) -> Tensor:
    r"""Zero whole samples ("row") or the whole batch ("batch") with probability ``p``.

    Drop-in for ``torchvision.ops.stochastic_depth`` (same arguments, errors and random
    numbers). With :math:`b \sim \mathrm{Bernoulli}(1-p)` per sample (or one :math:`b` for
    the batch),

    .. math::

       \begin{aligned}
       y &= \frac{b}{1 - p}\, x \quad (p < 1), \\
       y &= 0 \cdot x \quad (p = 1).
       \end{aligned}

    In a residual block :math:`x + \mathrm{stochastic\_depth}(f(x))` it removes the branch
    :math:`f` for the dropped samples (Huang et al., 2016).

    Args:
        input: tensor of shape :math:`(N, \dots)`.
        p: drop probability in :math:`[0, 1]`.
        mode: ``"row"`` (one draw per sample) or ``"batch"`` (one draw for the batch).
        training: apply it if ``True``; otherwise return ``input`` itself.

    Raises:
        ValueError: ``p`` outside :math:`[0, 1]` or an unknown ``mode`` (torchvision's texts).
    """
    if p < 0.0 or p > 1.0:
        raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
    if mode not in ("batch", "row"):
        raise ValueError(f"mode has to be either 'batch' or 'row', but got {mode}")
    if not training or p == 0.0:
        return input
    return input * _path_noise(input, 1.0 - p, mode == "row", scale=True)


class StochasticDepth(Module):
    """Module form of :func:`stochastic_depth` (torchvision's ``StochasticDepth``)."""

    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        self.p = p
        self.mode = mode

    def forward(self, input: Tensor) -> Tensor:
        return stochastic_depth(input, self.p, self.mode, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


def drop_path(
    x: Tensor, drop_prob: float = 0.0, training: bool = False, scale_by_keep: bool = True
) -> Tensor:
    r"""Drop the residual branch of each sample with probability ``drop_prob`` (timm's API).

    Drop-in for ``timm.layers.drop_path``: :math:`y_n = b_n x_n / (1 - p)` with
    :math:`b_n \sim \mathrm{Bernoulli}(1 - p)` per sample, or :math:`y_n = b_n x_n` with
    ``scale_by_keep=False`` (then :math:`\mathbb{E}[y] = (1-p)\,x` and the test-time network
    must be scaled instead, as in Huang et al., 2016). Note timm's default
    ``training=False``: called with its defaults it is the identity.
    """
    if drop_prob == 0.0 or not training:
        return x
    return x * _path_noise(x, 1.0 - drop_prob, True, scale=scale_by_keep)


class DropPath(Module):
    """Module form of :func:`drop_path` (timm's ``DropPath``)."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.drop_prob, self.training, self.scale_by_keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


def _block_size(block_size: int, height: int, width: int, seed_region: str) -> tuple[int, int]:
    if seed_region == "valid":  # torchvision: one square block, clipped to the smaller side
        k = min(block_size, width, height)
        kh = kw = k
    elif seed_region == "full":  # timm: each side clipped separately
        kh, kw = min(block_size, height), min(block_size, width)
    else:
        raise ValueError(f"seed_region must be 'valid' or 'full', but got {seed_region!r}")
    for k in (kh, kw):
        if k % 2 == 0:
            raise ValueError(f"block size should be odd. Got {k} which is even.")
    return kh, kw


def drop_block2d(
    input: Tensor,
    p: float,
    block_size: int,
    inplace: bool = False,
    eps: float = 1e-06,
    training: bool = True,
    *,
    seed_region: str = "valid",
    share_channels: bool = False,
) -> Tensor:
    r"""DropBlock (Ghiasi et al., 2018): zero contiguous ``block_size`` squares of a feature map.

    Block **centres** are drawn as independent Bernoulli(:math:`\gamma`) seeds, every seed is
    grown into a :math:`k \times k` block of zeros (a max-pool of the seed map), and the kept
    values are rescaled by the **observed** fraction kept, as in the paper's algorithm 1 and
    torchvision:

    .. math::

       y = x \odot M \cdot \frac{\mathrm{numel}(M)}{\varepsilon + \sum M},

    where :math:`M` is the keep mask of the whole batch tensor (so the factor depends on the
    draw, not only on :math:`p`). :math:`\gamma` is
    :func:`~dropoutlib.numpy.structured.dropblock_gamma`, the paper's first-order choice for an
    expected drop rate :math:`p`.

    Args:
        input: :math:`(N, C, H, W)`.
        p: target fraction of dropped activations, in :math:`[0, 1]`.
        block_size: side :math:`k` (odd; clipped to the feature map).
        inplace: multiply ``input`` in place.
        eps: added to :math:`\sum M` (torchvision 1e-6, timm 1e-7).
        training: apply it if ``True``; otherwise return ``input`` itself.
        seed_region: ``"valid"``: centres only where the whole block fits,
            :math:`(H-k+1)(W-k+1)` seeds, torchvision's choice; ``"full"``: a seed at every
            position and blocks clipped at the border (timm's).
        share_channels: one mask for all channels (timm's ``couple_channels=True``) or one
            per channel (torchvision).

    Raises:
        ValueError: ``p`` outside :math:`[0, 1]`, input not 4-d, an even (clipped) block size
            (torchvision's texts), or an unknown ``seed_region``.
    """
    if p < 0.0 or p > 1.0:
        raise ValueError(f"drop probability has to be between 0 and 1, but got {p}.")
    if input.ndim != 4:
        raise ValueError(f"input should be 4 dimensional. Got {input.ndim} dimensions.")
    if not training or p == 0.0:
        return input
    n, c, h, w = input.shape
    kh, kw = _block_size(block_size, h, w, seed_region)
    gamma = dropblock_gamma(p, (kh, kw), h, w)
    channels = 1 if share_channels else c
    rows, cols = (h - kh + 1, w - kw + 1) if seed_region == "valid" else (h, w)
    with torch.no_grad():
        seeds = torch.empty((n, channels, rows, cols), dtype=input.dtype, device=input.device)
        seeds.bernoulli_(gamma)
        if seed_region == "valid":  # zero rows and columns where no block centre may lie
            seeds = F.pad(seeds, [kw // 2, kw // 2, kh // 2, kh // 2])
        # Grow every seed into a block: position (i, j) is dropped if a seed lies within k // 2.
        dropped = F.max_pool2d(seeds, (kh, kw), stride=1, padding=(kh // 2, kw // 2))
        keep = 1 - dropped
        # numel / tensor is computed by torch as reciprocal(tensor) * numel (Tensor.__rdiv__).
        scale = keep.numel() / (eps + keep.sum())
    if inplace:
        return input.mul_(keep).mul_(scale)
    return input * keep * scale


class DropBlock2d(Module):
    """Module form of :func:`drop_block2d` (torchvision's ``DropBlock2d``, or timm's with
    ``seed_region="full", share_channels=True, eps=1e-7``)."""

    def __init__(
        self,
        p: float,
        block_size: int,
        inplace: bool = False,
        eps: float = 1e-06,
        *,
        seed_region: str = "valid",
        share_channels: bool = False,
    ) -> None:
        super().__init__()
        self.p, self.block_size, self.inplace, self.eps = p, block_size, inplace, eps
        self.seed_region, self.share_channels = seed_region, share_channels

    def forward(self, input: Tensor) -> Tensor:
        return drop_block2d(
            input, self.p, self.block_size, self.inplace, self.eps, self.training,
            seed_region=self.seed_region, share_channels=self.share_channels,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"p={self.p}, block_size={self.block_size}, seed_region={self.seed_region!r}, "
            f"share_channels={self.share_channels}"
        )


_RNN_CHUNK_WARNING = "RNN module weights are not part of single contiguous chunk of memory"


class WeightDrop(Module):
    r"""Dropout on named weights of any module: DropConnect (Wan et al., 2013) as AWD-LSTM does.

    On every training forward call each named weight :math:`W` is replaced, for that call
    only, by :math:`M \odot W / (1 - p)` with a fresh mask :math:`M` (one mask per call,
    shared by the whole batch and, for a recurrent module, by every time step: Merity et al.,
    2018, drop the hidden-to-hidden matrices ``weight_hh_l0`` of an LSTM this way). The mask
    is drawn by :func:`dropoutlib.torch.dropout` (torch's generator and recipe), and the
    gradient reaches the raw weight through the mask: :math:`\partial L/\partial W =
    M \odot G / (1-p)`. In evaluation the module runs with its raw weights (weight scaling is
    the identity in the inverted convention).

    The raw weight stays registered under its own name in the wrapped module (its state dict
    is unchanged); the dropped copy is passed with :func:`torch.func.functional_call`, so no
    attribute is deleted or re-assigned. For an ``nn.LSTM``/``nn.GRU`` on CUDA the dropped
    weights are new tensors outside cuDNN's flattened weight buffer; ``RNNBase.forward``
    notices the swap (``_weights_have_changed``) and re-flattens every weight into a fresh
    contiguous buffer (``flatten_parameters``), one copy of the weights per training call and
    no warning (seen on a GPU with torch 2.11). PyTorch's "RNN module weights are not part of
    single contiguous chunk of memory" warning is what a module without that re-flattening
    would raise; that warning, and only that one, is filtered inside this forward as a guard.
    (On CPU there is no such buffer and no warning; the CPU tests cannot exercise the filter.)

    Args:
        module: the module to wrap (``nn.Linear``, ``nn.LSTM``, ``nn.GRU``, ...).
        weights: name (or names) of parameters of ``module``, e.g. ``"weight"`` or
            ``["weight_hh_l0"]``; dotted names reach sub-modules.
        p: drop probability in :math:`[0, 1]`.

    Raises:
        ValueError: ``p`` outside :math:`[0, 1]`, no names, or a name that is not a
            parameter of ``module``.
    """

    def __init__(self, module: Module, weights: str | Sequence[str], p: float = 0.5) -> None:
        super().__init__()
        if p < 0.0 or p > 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        names = [weights] if isinstance(weights, str) else list(weights)
        if not names:
            raise ValueError("weights must name at least one parameter of the module")
        available = dict(module.named_parameters())
        for name in names:
            if name not in available:
                raise ValueError(
                    f"{type(module).__name__} has no parameter {name!r}; "
                    f"its parameters are {sorted(available)}"
                )
        self.module, self.weights, self.p = module, names, float(p)

    def dropped_weights(self) -> dict[str, Tensor]:
        """A fresh dropped copy of each named weight (what one training call uses)."""
        return {
            n: _dropout(self.module.get_parameter(n), self.p, True, False) for n in self.weights
        }

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self.training or self.p == 0.0:
            return self.module(*args, **kwargs)
        dropped = self.dropped_weights()
        if isinstance(self.module, torch.nn.RNNBase):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_RNN_CHUNK_WARNING, category=UserWarning)
                return functional_call(self.module, dropped, args, kwargs)
        return functional_call(self.module, dropped, args, kwargs)

    def extra_repr(self) -> str:
        return f"weights={self.weights}, p={self.p}"
