r"""Gaussian dropout for PyTorch: a functional and a module (torch has neither).

Multiplies each element by :math:`r \sim \mathcal N(1, p/(1-p))` in training, the Gaussian
with the mean and variance of inverted Bernoulli dropout with drop probability :math:`p`
(Srivastava et al., 2014, section 10). Evaluation is the identity. The backward pass is
torch's autograd through ``input * noise``, i.e. :math:`\partial L/\partial x = r\,\partial
L/\partial y`; :func:`dropoutlib.numpy.gaussian.gaussian_dropout_backward` computes the same.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["GaussianDropout", "gaussian_dropout"]


def _check_p(p: float) -> float:
    """``ValueError`` unless :math:`0 \\le p < 1`; NaN fails too (it compares false to both)."""
    if not (0 <= p < 1):
        raise ValueError(
            f"Gaussian dropout probability has to be in [0, 1) (the noise variance p/(1-p) "
            f"is infinite at p = 1), but got {p}"
        )
    return float(p)


def gaussian_dropout(
    input: Tensor,
    p: float = 0.5,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Gaussian dropout: ``input * r`` with :math:`r \sim \mathcal N(1, p/(1-p))` in training.

    Args:
        input: a floating-point tensor of any shape.
        p: drop probability of the Bernoulli dropout being matched, :math:`0 \le p < 1`.
        training: apply noise if ``True`` (default, like ``F.dropout``); identity otherwise.
        generator: optional ``torch.Generator`` for the noise; the global one if ``None``.

    Returns:
        A tensor of the input's shape and dtype; ``input`` itself when not training or ``p = 0``.

    Example:
        >>> x = torch.ones(4)
        >>> gaussian_dropout(x, 0.5, training=False) is x
        True
    """
    p = _check_p(p)
    if not training or p == 0.0:
        return input
    if not input.is_floating_point():
        raise RuntimeError(f"gaussian_dropout expects a floating-point input, got {input.dtype}")
    noise = torch.empty_like(input).normal_(1.0, math.sqrt(p / (1.0 - p)), generator=generator)
    return input * noise


class GaussianDropout(nn.Module):
    r"""Multiplicative Gaussian noise with the first two moments of ``nn.Dropout(p)``.

    In training, :math:`y = x \odot r` with :math:`r_i \sim \mathcal N(1, p/(1-p))` drawn
    independently; in evaluation :math:`y = x`. Since :math:`\mathbb E[r_i] = 1`, no rescaling
    is needed at test time.

    Args:
        p: drop probability of the matched Bernoulli dropout, :math:`0 \le p < 1`. Default 0.5.

    Shape:
        - Input: :math:`(*)`. Output: :math:`(*)`, the same shape.

    Example:
        >>> m = GaussianDropout(p=0.2).eval()
        >>> x = torch.randn(3)
        >>> torch.equal(m(x), x)
        True
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = _check_p(p)

    def forward(self, input: Tensor) -> Tensor:
        return gaussian_dropout(input, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
