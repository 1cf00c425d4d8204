r"""Drop-in replacements for ``torch.nn.functional``'s six dropout functions (torch 2.13).

Each function repeats torch's Python layer (``__torch_function__`` dispatch, the ``ValueError``
for :math:`p \notin [0, 1]`, the rank checks and warnings, the unsqueeze of unbatched inputs)
and then runs :func:`dropoutlib.torch._aten.aten_dropout`, the op-for-op copy of ATen's CPU
recipe. With the same ``torch.manual_seed`` the outputs, gradients and generator state are
bit-identical to torch's on CPU.

**Fast path.** The common call (a plain ``torch.Tensor``, a Python ``float`` ``p`` in [0, 1], a
``bool`` ``training``, and a rank that needs no warning or unsqueeze) goes straight to
:func:`~dropoutlib.torch._aten.dropout_impl`: every check it skips is one that such a call
passes, so results, errors and warnings are those of the full path, which any other call takes.
``dropout1d/2d/3d`` in training spell out ``dropout_impl``'s four feature ops for their one rank
(a function call and a generic shape cost 3-4 % of a 4096-element call); the tests hold every
fast path bit-identical, RNG state included, to the full one and to torch.

**torch.compile.** The warnings are issued by :func:`_warn`, which ``torch.compile`` runs while
tracing (as it runs torch's own functionals), so ``fullgraph=True`` compiles where they warn.

``p`` is the **drop** probability; a kept element is scaled by :math:`1/(1-p)`, so
:math:`\mathbb{E}[y] = x`. ``alpha_dropout`` and ``feature_alpha_dropout`` default to
``training=False``, exactly as torch's do: called with defaults they are the identity.
"""

from __future__ import annotations

import warnings

from torch import Tensor
from torch.overrides import handle_torch_function, has_torch_function_unary

from dropoutlib._torch_messages import (
    DROPOUT1D_RANK_ERROR,
    DROPOUT2D_3D_INPUT_WARNING,
    DROPOUT2D_RANK_WARNING,
    DROPOUT3D_RANK_WARNING,
)
from dropoutlib.torch._aten import aten_dropout, dropout_impl, parse_vf_args

__all__ = [
    "alpha_dropout",
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "feature_alpha_dropout",
]


def _warn(message: str) -> None:
    """``warnings.warn(message)`` attributed to the caller of the public functional.

    Marked as ``torch.compiler.assume_constant_result`` marks a function (without importing
    ``torch._dynamo``, 1.4 s): Dynamo then calls it once while tracing instead of breaking the
    graph, which is when torch's own functionals warn under ``torch.compile``.
    """
    warnings.warn(message, stacklevel=3)


_warn._dynamo_marked_constant = True  # type: ignore[attr-defined]


def _check_p(p: float) -> None:
    """The Python-level check every torch dropout functional runs first (even in eval)."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _vf(
    name: str, input: Tensor, p: float, training: bool, inplace: bool, *, alpha: bool = False
) -> Tensor:
    """``torch._VF.<name>[_]``: parse the arguments like torch, then run the ATen recipe."""
    feature = name.startswith("feature")
    op = f"{name}_" if inplace else name
    p_double = parse_vf_args(op, input, p, training)
    return aten_dropout(input, p_double, training, feature=feature, alpha=alpha, inplace=inplace)


def _feature_nd(input: Tensor, p: float, training: bool, inplace: bool, batched: bool) -> Tensor:
    """Channel dropout of a batched input, or of an unbatched one seen as a batch of one."""
    if not batched:
        input = input.unsqueeze_(0) if inplace else input.unsqueeze(0)
    result = _vf("feature_dropout", input, p, training, inplace)
    if not batched:
        result = result.squeeze_(0) if inplace else result.squeeze(0)
    return result


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    r"""Zero each element with probability ``p`` and scale the rest by :math:`1/(1-p)`.

    Drop-in for :func:`torch.nn.functional.dropout`.

    Args:
        input: a floating-point tensor of any shape (0-d included).
        p: probability of an element to be zeroed. Default: 0.5
        training: apply dropout if ``True``. Default: ``True`` (``model.eval()`` does not
            reach a functional call: pass ``training=self.training``).
        inplace: if ``True``, mutate and return ``input``. Default: ``False``

    Returns:
        ``input`` itself if ``p == 0``, ``training`` is false or ``input`` is empty;
        otherwise ``input * noise`` with ``noise = bernoulli(1 - p) / (1 - p)`` in
        ``input``'s dtype, drawn in ``input``'s memory order.
    """
    if has_torch_function_unary(input):
        return handle_torch_function(
            dropout, (input,), input, p=p, training=training, inplace=inplace
        )
    if type(p) is float and type(training) is bool and type(input) is Tensor and 0.0 <= p <= 1.0:
        if inplace or not (input.is_nested or (training and not input.is_cpu)):  # no fused kernel
            return dropout_impl(input, p, training, False, False, inplace)
    _check_p(p)
    return _vf("dropout", input, p, training, inplace)


def alpha_dropout(
    input: Tensor, p: float = 0.5, training: bool = False, inplace: bool = False
) -> Tensor:
    r"""Alpha dropout: dropped units take SELU's saturation, then an affine map restores moments.

    Drop-in for :func:`torch.nn.functional.alpha_dropout`; note ``training`` defaults to
    ``False``. In training, with :math:`A = \lambda\alpha \approx 1.7581` and
    :math:`a = ((A^2 p + 1)(1-p))^{-1/2}`, a kept element becomes :math:`a x + A a p` and a
    dropped one :math:`-A a (1-p)`, which keeps mean 0 and variance 1 of a standardised
    input. ``p == 1`` gives ``x * 0`` (zeros), as in torch.
    """
    if has_torch_function_unary(input):
        return handle_torch_function(
            alpha_dropout, (input,), input, p=p, training=training, inplace=inplace
        )
    if type(p) is float and type(training) is bool and type(input) is Tensor and 0.0 <= p <= 1.0:
        return dropout_impl(input, p, training, False, True, inplace)
    _check_p(p)
    return _vf("alpha_dropout", input, p, training, inplace, alpha=True)


def dropout1d(
    input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
) -> Tensor:
    r"""Zero whole channels of a ``(N, C, L)`` or unbatched ``(C, L)`` input.

    Drop-in for :func:`torch.nn.functional.dropout1d`. One Bernoulli draw per ``[n, c]``
    channel (noise shape ``(N, C, 1)``); an unbatched input is treated as ``N = 1``. Any other
    rank raises ``RuntimeError``, even in eval.
    """
    if has_torch_function_unary(input):
        return handle_torch_function(
            dropout1d, (input,), input, p=p, training=training, inplace=inplace
        )
    if (
        type(p) is float
        and type(training) is bool
        and type(input) is Tensor
        and 0.0 <= p <= 1.0
        and input.dim() == 3
    ):
        if training and 0.0 < p < 1.0 and input.numel():  # dropout_impl's feature branch
            sizes, q = input.shape, 1.0 - p
            noise = input.new_empty((sizes[0], sizes[1], 1))
            noise.bernoulli_(q)
            noise.div_(q)
            return input.mul_(noise) if inplace else input.mul(noise)
        return dropout_impl(input, p, training, True, False, inplace)
    _check_p(p)
    inp_dim = input.dim()
    if inp_dim not in (2, 3):
        raise RuntimeError(DROPOUT1D_RANK_ERROR.format(k=inp_dim))
    return _feature_nd(input, p, training, inplace, batched=inp_dim == 3)


def dropout2d(
    input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
) -> Tensor:
    r"""Zero whole channels of a ``(N, C, H, W)`` input.

    Drop-in for :func:`torch.nn.functional.dropout2d`, including its quirks: a 3-D input is
    read as ``(N, C, L)`` (not as an unbatched ``(C, H, W)``) with a ``UserWarning``
    (pytorch#77081), and other ranks warn that they are deprecated; the noise has shape
    ``(size(0), size(1), 1, ..., 1)`` whatever the rank.
    """
    if has_torch_function_unary(input):
        return handle_torch_function(
            dropout2d, (input,), input, p=p, training=training, inplace=inplace
        )
    if (
        type(p) is float
        and type(training) is bool
        and type(input) is Tensor
        and 0.0 <= p <= 1.0
        and input.dim() == 4
    ):
        if training and 0.0 < p < 1.0 and input.numel():  # dropout_impl's feature branch
            sizes, q = input.shape, 1.0 - p
            noise = input.new_empty((sizes[0], sizes[1], 1, 1))
            noise.bernoulli_(q)
            noise.div_(q)
            return input.mul_(noise) if inplace else input.mul(noise)
        return dropout_impl(input, p, training, True, False, inplace)
    _check_p(p)
    inp_dim = input.dim()
    if inp_dim not in (3, 4):
        _warn(DROPOUT2D_RANK_WARNING.format(k=inp_dim))
    if inp_dim == 3:
        _warn(DROPOUT2D_3D_INPUT_WARNING)
    return _vf("feature_dropout", input, p, training, inplace)


def dropout3d(
    input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
) -> Tensor:
    r"""Zero whole channels of a ``(N, C, D, H, W)`` or unbatched ``(C, D, H, W)`` input.

    Drop-in for :func:`torch.nn.functional.dropout3d`. Other ranks warn, and are still
    unsqueezed as if unbatched (only a 5-D input counts as batched), so for a 3-D input
    dim 0 is the channel.
    """
    if has_torch_function_unary(input):
        return handle_torch_function(
            dropout3d, (input,), input, p=p, training=training, inplace=inplace
        )
    if (
        type(p) is float
        and type(training) is bool
        and type(input) is Tensor
        and 0.0 <= p <= 1.0
        and input.dim() == 5
    ):
        if training and 0.0 < p < 1.0 and input.numel():  # dropout_impl's feature branch
            sizes, q = input.shape, 1.0 - p
            noise = input.new_empty((sizes[0], sizes[1], 1, 1, 1))
            noise.bernoulli_(q)
            noise.div_(q)
            return input.mul_(noise) if inplace else input.mul(noise)
        return dropout_impl(input, p, training, True, False, inplace)
    _check_p(p)
    inp_dim = input.dim()
    if inp_dim not in (4, 5):
        _warn(DROPOUT3D_RANK_WARNING.format(k=inp_dim))
    return _feature_nd(input, p, training, inplace, batched=inp_dim == 5)


def feature_alpha_dropout(
    input: Tensor, p: float = 0.5, training: bool = False, inplace: bool = False
) -> Tensor:
    r"""Alpha dropout of whole channels (noise shape ``(N, C, 1, ..., 1)``).

    Drop-in for :func:`torch.nn.functional.feature_alpha_dropout`; ``training`` defaults to
    ``False``. There is no unbatched handling: dims 0 and 1 are always ``N`` and ``C``.
    """
    if has_torch_function_unary(input):
        return handle_torch_function(
            feature_alpha_dropout, (input,), input, p=p, training=training, inplace=inplace
        )
    if type(p) is float and type(training) is bool and type(input) is Tensor and 0.0 <= p <= 1.0:
        return dropout_impl(input, p, training, True, True, inplace)
    _check_p(p)
    return _vf("feature_alpha_dropout", input, p, training, inplace, alpha=True)
