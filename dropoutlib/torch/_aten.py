r"""ATen's composite dropout, re-written from torch tensor primitives.

This module mirrors ``_dropout_impl<feature, alpha, inplace>`` in PyTorch's
``aten/src/ATen/native/Dropout.cpp`` (torch 2.13) op for op, so that under the same
``torch.manual_seed`` on CPU it draws the same random numbers, rounds the same way and leaves
the generator in the same state. With :math:`q = 1 - p` the keep probability:

.. math::

   \text{noise}_i = \frac{m_i}{q}, \quad m_i \sim \mathrm{Bernoulli}(q), \qquad
   y = x \odot \text{noise},

where the division is carried out *in the input's dtype* (``noise.div_(q)``), so a kept element
is :math:`x_i \cdot \mathrm{fl}(1/\mathrm{fl}(q))`. Alpha dropout replaces the zero of a dropped
element by SELU's negative saturation :math:`\alpha' = -\lambda\alpha` and fixes mean and
variance with the affine map :math:`y = a(x \odot m + \alpha'(1 - m)) + b`:

.. math::

   a = \bigl((\alpha'^2 p + 1)\,q\bigr)^{-1/2}, \qquad b = -a\,\alpha' p
   \quad\text{(ATen writes } b = A a (m - 1) + A a p \text{ with } A = -\alpha'\text{)}.

The public functionals in :mod:`dropoutlib.torch.functional` add torch's Python-level checks
(``ValueError`` for ``p`` outside [0, 1], rank warnings) in front of these ops.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from dropoutlib.numpy.torch_rng import SELU_ALPHA_TIMES_SCALE

__all__ = [
    "SELU_ALPHA_TIMES_SCALE",
    "aten_dropout",
    "dropout_impl",
    "format_double",
    "parse_vf_args",
]


def _tp_name(obj: object) -> str:
    """The type name CPython's ``tp_name`` holds, as torch's argument parser prints it."""
    cls = type(obj)
    if cls.__flags__ & (1 << 9):  # Py_TPFLAGS_HEAPTYPE: classes defined in Python
        return cls.__name__
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"


def _is_double_like(p: object) -> bool:
    """Torch's parser rule for a ``float`` argument: number, NumPy scalar or plain 0-d tensor."""
    if isinstance(p, Tensor):
        return p.dim() == 0 and not p.requires_grad
    return isinstance(p, float | int | np.bool_ | np.number)


def parse_vf_args(op: str, input: object, p: object, train: object) -> float:
    """Check the three arguments as ``torch._VF.<op>`` does and return ``p`` as a double.

    Raises
    ------
    TypeError
        With torch's text, e.g. ``dropout(): argument 'train' (position 3) must be bool, not
        str``. ``input`` must be a tensor, ``p`` a real number (Python, NumPy or a 0-d tensor
        without grad), ``train`` a Python ``bool``; the first bad argument is reported.
    """
    if not isinstance(input, Tensor):
        raise TypeError(
            f"{op}(): argument 'input' (position 1) must be Tensor, not {_tp_name(input)}"
        )
    if not _is_double_like(p):
        raise TypeError(f"{op}(): argument 'p' (position 2) must be float, not {_tp_name(p)}")
    if not isinstance(train, bool):
        raise TypeError(
            f"{op}(): argument 'train' (position 3) must be bool, not {_tp_name(train)}"
        )
    return float(p)  # type: ignore[arg-type]


def format_double(p: float) -> str:
    """``p`` as C++'s ``std::ostream << double`` prints it in ATen's messages (``%g``, ``-nan``)."""
    if p != p and math.copysign(1.0, p) < 0.0:  # glibc prints the sign of a NaN; Python does not
        return "-nan"
    return f"{p:g}"


def _fused_kernel_acceptable(input: Tensor, p: float) -> bool:
    """ATen's ``is_fused_kernel_acceptable``: GPU-like device, 0 < p < 1, non-empty."""
    fused_devices = ("cuda", "xpu", "lazy", torch._C._get_privateuse1_backend_name())
    return input.device.type in fused_devices and 0.0 < p < 1.0 and input.numel() > 0


def dropout_impl(
    input: Tensor, p: float, train: bool, feature: bool, alpha: bool, inplace: bool
) -> Tensor:
    """The body of ``_dropout_impl<feature, alpha, inplace>`` for a ``p`` already in [0, 1].

    The ops themselves, without argument checks: :func:`aten_dropout` (eager) and the
    TorchScript forwards of :mod:`dropoutlib.torch.modules` check ``p`` and then call this, so
    eager, scripted and compiled code run one recipe. Written in the TorchScript subset.
    """
    if p == 0.0 or not train or input.numel() == 0:
        return input
    if p == 1.0:  # x * 0: keeps -0.0 and NaN semantics, uses no random numbers
        zero = torch.zeros((), dtype=input.dtype, device=input.device)
        return input.mul_(zero) if inplace else input.mul(zero)
    if feature:  # make_feature_noise: one draw per (sample, channel), (N, C, 1, ..., 1)
        sizes = input.shape
        if len(sizes) < 2:  # FEATURE_RANK_ERROR; TorchScript cannot read a global str
            raise RuntimeError("Feature dropout requires at least 2 dimensions in the input")
        noise = input.new_empty([sizes[0], sizes[1]] + [1] * (len(sizes) - 2))
    else:
        noise = torch.empty_like(input)
    q = 1.0 - p
    noise.bernoulli_(q)  # keep probability; two MT19937 words per element on CPU
    if alpha:
        selu = 1.7580993408473766  # SELU_ALPHA_TIMES_SCALE (TorchScript cannot read a global)
        a = 1.0 / math.sqrt((selu**2 * p + 1.0) * q)
        scaled = selu * a
        b = noise.add(-1).mul_(scaled).add_(scaled * p)
        noise.mul_(a)
        return input.mul_(noise).add_(b) if inplace else input.mul(noise).add_(b)
    noise.div_(q)
    return input.mul_(noise) if inplace else input.mul(noise)


def aten_dropout(
    input: Tensor, p: float, train: bool, *, feature: bool, alpha: bool, inplace: bool
) -> Tensor:
    """``_dropout_impl<feature, alpha, inplace>``: the CPU dropout family, op for op.

    Parameters
    ----------
    input : Tensor
        Any shape (rank >= 2 for the feature variants once a mask is needed).
    p : float
        Drop probability, already a Python float.
    train : bool
        ``False`` returns ``input`` itself.
    feature, alpha, inplace : bool
        Select the variant: one draw per channel, SELU-preserving affine correction, mutate
        ``input``.

    Notes
    -----
    Like ATen's ``dropout``, the out-of-place element-wise variant hands nested tensors, and
    training calls with :math:`0 < p < 1` on CUDA-like devices, to ``torch.native_dropout``
    (the fused kernel); dense CPU tensors never take that path.

    Returns
    -------
    Tensor
        ``input`` itself when nothing is dropped (``p == 0``, eval, empty) or when ``inplace``;
        otherwise a new tensor.

    Raises
    ------
    RuntimeError
        ``p`` outside [0, 1] or NaN, with ATen's text (a negative NaN prints as ``-nan``).
    """
    plain = not (feature or alpha or inplace)  # ATen's ``dropout``, the only op with a fused path
    if plain and (input.is_nested or (train and _fused_kernel_acceptable(input, p))):
        return torch.native_dropout(input, p, train)[0]  # never taken for dense CPU tensors
    if not (0.0 <= p <= 1.0):  # NaN fails too; the Python layer catches the rest first
        raise RuntimeError(
            f"dropout probability has to be between 0 and 1, but got {format_double(p)}"
        )
    return dropout_impl(input, p, train, feature, alpha, inplace)
