r"""Drop-in replacements for ``torch.nn``'s six dropout modules (torch 2.13).

Thin stateful layers over :mod:`dropoutlib.torch.functional`, split as torch splits them: one
base class ``_DropoutNd`` validates and stores ``p`` and ``inplace`` (unconverted, so
``Dropout(1)`` prints ``p=1``) and each layer's ``forward`` passes ``self.training`` to its
functional. ``AlphaDropout`` and ``FeatureAlphaDropout`` accept ``inplace`` but, like torch's,
never pass it on: they always return a new tensor.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor
from torch.nn import Module

from dropoutlib.torch import functional as F

__all__ = [
    "AlphaDropout",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "FeatureAlphaDropout",
]


class _DropoutNd(Module):
    """Common base: checks :math:`0 \\le p \\le 1` and stores ``p`` and ``inplace``."""

    __constants__: ClassVar[list[str]] = ["p", "inplace"]
    p: float
    inplace: bool

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if p < 0 or p > 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    r"""Element-wise dropout, :math:`y = x \odot m / (1-p)` with :math:`m_i \sim B(1-p)`.

    Drop-in for :class:`torch.nn.Dropout` (Srivastava et al., 2014). Identity in eval mode
    (returns the input object itself).

    Shape: any; the output has the input's shape, dtype and memory format.
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, self.training, self.inplace)


class Dropout1d(_DropoutNd):
    """Channel dropout for ``(N, C, L)`` or ``(C, L)`` inputs.

    Drop-in for :class:`torch.nn.Dropout1d`; other ranks raise ``RuntimeError``.
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout1d(input, self.p, self.training, self.inplace)


class Dropout2d(_DropoutNd):
    """Channel dropout for ``(N, C, H, W)`` inputs; drop-in for :class:`torch.nn.Dropout2d`.

    A 3-D input is read as ``(N, C, L)`` with a warning, as torch does (pytorch#77081).
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout2d(input, self.p, self.training, self.inplace)


class Dropout3d(_DropoutNd):
    """Channel dropout for ``(N, C, D, H, W)`` or unbatched ``(C, D, H, W)`` inputs.

    Drop-in for :class:`torch.nn.Dropout3d`; other ranks warn and are read as unbatched.
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout3d(input, self.p, self.training, self.inplace)


class AlphaDropout(_DropoutNd):
    """Alpha dropout for SELU networks (Klambauer et al., 2017).

    Drop-in for :class:`torch.nn.AlphaDropout`.

    ``inplace`` is stored and printed but ignored, as in torch.
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.alpha_dropout(input, self.p, self.training)


class FeatureAlphaDropout(_DropoutNd):
    """Channel-wise alpha dropout; drop-in for :class:`torch.nn.FeatureAlphaDropout`.

    Dims 0 and 1 are always read as ``N`` and ``C``; ``inplace`` is ignored, as in torch.
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.feature_alpha_dropout(input, self.p, self.training)
