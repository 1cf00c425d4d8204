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
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

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


_SHIFT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_BITS = {2: torch.int16, 4: torch.int32, 8: torch.int64}
_SHIFT_ENDS: dict[tuple[float, torch.dtype], tuple[Tensor, Tensor] | None] = {}
_SHIFT_CACHE_SIZE = 256  # distinct (p, dtype) pairs kept; the cache is emptied when full
# lerp's kernel costs more per element than add/mul/add: measured on CPU (one thread, float32)
# 1.7 vs 8.6 us at 256 noise elements, 6.7 vs 9.9 at 8192, 12 vs 11 at 16384, 108 vs 75 at 65536
_SHIFT_MAX_NUMEL = 8192


def _shift_ends(p: float, scaled: float, dtype: torch.dtype) -> tuple[Tensor, Tensor] | None:
    r"""The two values of ATen's alpha shift :math:`b`, or ``None`` where one op cannot give them.

    ATen computes ``b = noise.add(-1).mul_(scaled).add_(scaled * p)`` in ``dtype`` (three
    roundings, with float16/bfloat16 arithmetic carried out in float32). Since ``noise`` holds
    only 0 and 1, :math:`b` takes only two values :math:`b_0, b_1`; they are computed here by
    running those very ops on a tensor of 0s and 1s long enough to take the kernels' vectorised
    body and scalar tail. ``torch.lerp(b0, b1, noise)`` returns :math:`b_0 + 0 \cdot (b_1 - b_0)
    = b_0` at weight 0 and :math:`b_1 - (b_1 - b_0) \cdot 0 = b_1` at weight 1, exactly, as
    long as :math:`b_1 - b_0` is finite; the result is compared bit for bit with ATen's and the
    pair is rejected (``None``: run ATen's three ops) on any difference, e.g. after an overflow
    for ``p`` near 1 in float16.
    """
    with torch.inference_mode(False), torch.no_grad():
        m = torch.tensor([0.0, 1.0], dtype=dtype).repeat(67)  # 134: vector body + scalar tail
        ref = m.add(-1).mul_(scaled).add_(scaled * p)
        ends = (ref[0].clone(), ref[1].clone())
        got = torch.lerp(ends[0], ends[1], m)
    bits = _BITS[dtype.itemsize]
    return ends if torch.equal(got.view(bits), ref.view(bits)) else None


@torch.jit.unused
def _alpha_shift(noise: Tensor, p: float, scaled: float) -> Tensor | None:
    """ATen's alpha shift ``noise.add(-1).mul_(scaled).add_(scaled * p)`` as one ``lerp``.

    Bit-identical (see :func:`_shift_ends`); saves two Python-to-ATen calls, which dominate
    on the small ``(N, C, 1, ..., 1)`` noise of feature alpha dropout. Returns ``None`` (run
    ATen's ops) for noise of more than ``_SHIFT_MAX_NUMEL`` elements (where the three cheap
    kernels beat lerp's), outside plain eager CPU code in the four float dtypes (under
    TorchScript, ``torch.compile``, ``__torch_function__``/``__torch_dispatch__`` modes), and
    where the two values cannot be reproduced exactly.
    """
    if (
        noise.numel() > _SHIFT_MAX_NUMEL
        or noise.device.type != "cpu"
        or noise.dtype not in _SHIFT_DTYPES
        or torch.compiler.is_compiling()
        or torch._C._is_torch_function_mode_enabled()
        or is_in_torch_dispatch_mode()
    ):
        return None
    key = (p, noise.dtype)
    if key in _SHIFT_ENDS:
        ends = _SHIFT_ENDS[key]
    else:
        ends = _shift_ends(p, scaled, noise.dtype)
        if len(_SHIFT_ENDS) >= _SHIFT_CACHE_SIZE:
            _SHIFT_ENDS.clear()
        _SHIFT_ENDS[key] = ends
    if ends is None:
        return None
    return torch.lerp(ends[0], ends[1], noise)


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
        shift: Tensor | None = None
        if not torch.jit.is_scripting():
            shift = _alpha_shift(noise, p, scaled)  # ATen's three ops below as one, bit for bit
        b = noise.add(-1).mul_(scaled).add_(scaled * p) if shift is None else shift
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
