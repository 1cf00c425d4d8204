r"""Drop-in replacements for ``torch.nn``'s six dropout modules (torch 2.13).

Thin stateful layers over :mod:`dropoutlib.torch.functional`, split as torch splits them: one
base class ``_DropoutNd`` validates and stores ``p`` and ``inplace`` (unconverted, so
``Dropout(1)`` prints ``p=1``) and each layer's ``forward`` passes ``self.training`` to its
functional. ``AlphaDropout`` and ``FeatureAlphaDropout`` accept ``inplace`` but, like torch's,
never pass it on: they always return a new tensor.

Two tracers see these layers as they see torch's:

- ``torch.fx.symbolic_trace`` keeps torch's own layers as leaf modules (one ``call_module``
  node), so ``.eval()`` on the traced graph still switches dropout off. Its ``is_leaf_module``
  recognises only classes defined under ``torch.nn``; our ``forward`` therefore emits that
  ``call_module`` node itself when it receives an ``fx.Proxy`` instead of baking
  ``training=True`` into the graph.
- ``torch.jit.script`` compiles ``forward``'s scripting branch, which checks ``p`` as torch's
  scripted functionals do and runs the same ATen recipe
  (:func:`~dropoutlib.torch._aten.dropout_impl`) as eager code.
"""

from __future__ import annotations

import warnings
from typing import ClassVar

from torch import Tensor
from torch.fx import Proxy
from torch.jit import is_scripting
from torch.nn import Module

from dropoutlib._torch_messages import (
    DROPOUT1D_RANK_ERROR,
    DROPOUT2D_3D_INPUT_WARNING,
    DROPOUT2D_RANK_WARNING,
    DROPOUT3D_RANK_WARNING,
)
from dropoutlib.torch import functional as F
from dropoutlib.torch._aten import dropout_impl

__all__ = [
    "AlphaDropout",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "FeatureAlphaDropout",
]


def _fx_leaf(module: Module, input: Proxy) -> Proxy:
    """Record ``module(input)`` as one ``call_module`` node, as fx does for a leaf module."""
    tracer = input.tracer
    return tracer.create_proxy("call_module", tracer.path_of_module(module), (input,), {})


def _script_check_p(p: float) -> None:
    """Torch's two checks of ``p`` in TorchScript: Python's ``ValueError``, ATen's for NaN."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not (p >= 0.0 and p <= 1.0):
        raise RuntimeError(f"dropout probability has to be between 0 and 1, but got {p}")


def _script_feature_nd(
    input: Tensor, p: float, training: bool, inplace: bool, batched: bool
) -> Tensor:
    """TorchScript twin of :func:`dropoutlib.torch.functional._feature_nd`."""
    if not batched:
        input = input.unsqueeze_(0) if inplace else input.unsqueeze(0)
    result = dropout_impl(input, p, training, True, False, inplace)
    if not batched:
        result = result.squeeze_(0) if inplace else result.squeeze(0)
    return result


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
        if is_scripting():
            _script_check_p(self.p)
            return dropout_impl(input, self.p, self.training, False, False, self.inplace)
        if isinstance(input, Proxy):
            return _fx_leaf(self, input)
        return F.dropout(input, self.p, self.training, self.inplace)


class Dropout1d(_DropoutNd):
    """Channel dropout for ``(N, C, L)`` or ``(C, L)`` inputs.

    Drop-in for :class:`torch.nn.Dropout1d`; other ranks raise ``RuntimeError``.
    """

    __constants__: ClassVar[list[str]] = ["p", "inplace", "_rank_message"]
    _rank_message: ClassVar[str] = DROPOUT1D_RANK_ERROR  # TorchScript reads constants, not globals

    def forward(self, input: Tensor) -> Tensor:
        if is_scripting():
            _script_check_p(self.p)
            inp_dim = input.dim()
            if inp_dim != 2 and inp_dim != 3:
                raise RuntimeError(self._rank_message.replace("{k}", str(inp_dim)))
            return _script_feature_nd(input, self.p, self.training, self.inplace, inp_dim == 3)
        if isinstance(input, Proxy):
            return _fx_leaf(self, input)
        return F.dropout1d(input, self.p, self.training, self.inplace)


class Dropout2d(_DropoutNd):
    """Channel dropout for ``(N, C, H, W)`` inputs; drop-in for :class:`torch.nn.Dropout2d`.

    A 3-D input is read as ``(N, C, L)`` with a warning, as torch does (pytorch#77081).
    """

    __constants__: ClassVar[list[str]] = ["p", "inplace", "_rank_message", "_input_3d_message"]
    _rank_message: ClassVar[str] = DROPOUT2D_RANK_WARNING
    _input_3d_message: ClassVar[str] = DROPOUT2D_3D_INPUT_WARNING

    def forward(self, input: Tensor) -> Tensor:
        if is_scripting():
            _script_check_p(self.p)
            inp_dim = input.dim()
            if inp_dim != 3 and inp_dim != 4:
                warnings.warn(self._rank_message.replace("{k}", str(inp_dim)), stacklevel=2)
            if inp_dim == 3:
                warnings.warn(self._input_3d_message, stacklevel=2)
            return dropout_impl(input, self.p, self.training, True, False, self.inplace)
        if isinstance(input, Proxy):
            return _fx_leaf(self, input)
        return F.dropout2d(input, self.p, self.training, self.inplace)


class Dropout3d(_DropoutNd):
    """Channel dropout for ``(N, C, D, H, W)`` or unbatched ``(C, D, H, W)`` inputs.

    Drop-in for :class:`torch.nn.Dropout3d`; other ranks warn and are read as unbatched.
    """

    __constants__: ClassVar[list[str]] = ["p", "inplace", "_rank_message"]
    _rank_message: ClassVar[str] = DROPOUT3D_RANK_WARNING

    def forward(self, input: Tensor) -> Tensor:
        if is_scripting():
            _script_check_p(self.p)
            inp_dim = input.dim()
            if inp_dim != 4 and inp_dim != 5:
                warnings.warn(self._rank_message.replace("{k}", str(inp_dim)), stacklevel=2)
            return _script_feature_nd(input, self.p, self.training, self.inplace, inp_dim == 5)
        if isinstance(input, Proxy):
            return _fx_leaf(self, input)
        return F.dropout3d(input, self.p, self.training, self.inplace)


class AlphaDropout(_DropoutNd):
    """Alpha dropout for SELU networks (Klambauer et al., 2017).

    Drop-in for :class:`torch.nn.AlphaDropout`.

    ``inplace`` is stored and printed but ignored, as in torch.
    """

    def forward(self, input: Tensor) -> Tensor:
        if is_scripting():
            _script_check_p(self.p)
            return dropout_impl(input, self.p, self.training, False, True, False)
        if isinstance(input, Proxy):
            return _fx_leaf(self, input)
        return F.alpha_dropout(input, self.p, self.training)


class FeatureAlphaDropout(_DropoutNd):
    """Channel-wise alpha dropout; drop-in for :class:`torch.nn.FeatureAlphaDropout`.

    Dims 0 and 1 are always read as ``N`` and ``C``; ``inplace`` is ignored, as in torch.
    """

    def forward(self, input: Tensor) -> Tensor:
        if is_scripting():
            _script_check_p(self.p)
            return dropout_impl(input, self.p, self.training, True, True, False)
        if isinstance(input, Proxy):
            return _fx_leaf(self, input)
        return F.feature_alpha_dropout(input, self.p, self.training)
