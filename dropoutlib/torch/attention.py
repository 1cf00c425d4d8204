r"""Attention dropout: ``F.scaled_dot_product_attention`` and ``nn.MultiheadAttention`` on CPU.

Attention dropout drops entries of the attention-probability matrix
:math:`A = \operatorname{softmax}(QK^\top/\sqrt{d})`, row by row a probability vector, and
rescales the survivors:

.. math::

   \begin{aligned}
   \tilde A_{ij} &= \frac{m_{ij}}{1-p} A_{ij}, \\
   m_{ij} &\sim \mathrm{Bernoulli}(1-p), \\
   \text{out} &= \tilde A V,
   \end{aligned}

so :math:`\mathbb{E}[\tilde A] = A` but a row of :math:`\tilde A` no longer sums to 1.

**Which kernel torch 2.13 runs on CPU.** ``F.scaled_dot_product_attention`` asks
``select_sdp_backend_cpp`` (``aten/src/ATen/native/transformers/sdp_utils_cpp.cpp``) for a
backend: CPU knows two, its flash kernel and the math fallback, and the flash kernel's gate list
includes ``check_for_dropout``, which refuses any ``dropout_p > 0``. So with dropout, CPU always
runs ``_scaled_dot_product_attention_math`` (``aten/src/ATen/native/transformers/attention.cpp``),
a composite of ordinary ops; its mask comes from ``at::dropout(attn, dropout_p, true)``, the same
``bernoulli_`` recipe as ``F.dropout`` (:mod:`dropoutlib.torch._aten`), drawn from the default
CPU generator in the memory order of the ``(N, ..., L, S)`` probability tensor. With
``dropout_p == 0`` CPU runs its flash kernel (``_scaled_dot_product_flash_attention_for_cpu``),
whose blocked arithmetic agrees with the math path only to round-off.

:func:`scaled_dot_product_attention` re-writes the math path op for op from torch primitives and
the library's :func:`~dropoutlib.torch._aten.dropout_impl`, so on CPU with ``dropout_p > 0`` it
is bit-identical to torch's and leaves the generator in the same state.
:func:`multi_head_attention` does the same for ``nn.MultiheadAttention``'s Python forward
(``torch/nn/functional.py``, ``multi_head_attention_forward``): with ``need_weights=True`` (the
module's default) it applies ``F.dropout`` to the ``(N * heads, L, S)`` weights itself, with
``need_weights=False`` it calls SDPA. The module passes ``training=self.training`` and the
functional sets ``dropout_p = 0`` when not training; SDPA has no training flag at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from dropoutlib.torch._aten import dropout_impl

__all__ = [
    "attention_probabilities",
    "multi_head_attention",
    "recorded_aten_ops",
    "scaled_dot_product_attention",
    "sdpa_math",
]


def _check_sdpa_inputs(query: Tensor, key: Tensor, value: Tensor, dropout_p: float) -> None:
    """The checks of ``validate_sdpa_input`` that matter here, with torch's messages."""
    if not (query.dtype == key.dtype == value.dtype):
        raise RuntimeError(
            "Expected query, key, and value to have the same dtype, but got query.dtype: "
            f"{_dtype_name(query)} key.dtype: {_dtype_name(key)} and value.dtype: "
            f"{_dtype_name(value)} instead."
        )
    if not (query.device == key.device == value.device):
        raise RuntimeError(
            "Expected query, key, and value to have the same device type, but got query.device: "
            f"{query.device} key.device: {key.device} and value.device: {value.device} instead."
        )
    if query.dim() < 2 or key.dim() < 2 or value.dim() < 2:
        raise RuntimeError(
            "Expected query, key, and value to all be  at least 2 dimensional, but got "
            f"query.dim: {query.dim()} key.dim: {key.dim()} and value.dim: {value.dim()} instead."
        )
    if not isinstance(dropout_p, float | int) or isinstance(dropout_p, bool):
        raise TypeError(
            "scaled_dot_product_attention(): argument 'dropout_p' (position 5) must be float, "
            f"not {type(dropout_p).__name__}"
        )


def _dtype_name(t: Tensor) -> str:
    """A dtype as ATen prints it (``float``, ``double``, ``c10::Half``, ``c10::BFloat16``)."""
    names = {
        torch.float16: "c10::Half",
        torch.bfloat16: "c10::BFloat16",
        torch.float32: "float",
        torch.float64: "double",
    }
    return names.get(t.dtype, str(t.dtype).removeprefix("torch."))


def _bool_to_additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """``convert_boolean_attn_mask``: True takes part (0), False is masked (``-inf``)."""
    return torch.zeros_like(mask, dtype=dtype).masked_fill_(mask.logical_not(), -math.inf)


def sdpa_math(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> tuple[Tensor, Tensor]:
    r"""ATen's ``_scaled_dot_product_attention_math``, op for op: ``(output, probabilities)``.

    With :math:`s` = ``scale`` or :math:`1/\sqrt{E}` (:math:`E` = ``query.size(-1)``), both
    :math:`Q` and :math:`K` are multiplied by :math:`\sqrt{s}` before the product (in double
    precision for the scalar, as ATen's ``calculate_scale(...).sqrt()``), giving
    :math:`Q_s = \sqrt{s}\,Q` and :math:`K_s = \sqrt{s}\,K`:

    .. math::

       \begin{aligned}
       A &= \operatorname{softmax}\bigl(Q_s K_s^\top + M\bigr), \\
       \text{out} &= \operatorname{dropout}_p(A)\, V,
       \end{aligned}

    with :math:`M` the additive mask (a boolean mask becomes 0 where ``True`` and
    :math:`-\infty` where ``False``; ``is_causal`` is a lower-triangular boolean mask), a
    row masked everywhere giving zeros (``_safe_softmax``), and the dropout drawn by
    :func:`~dropoutlib.torch._aten.dropout_impl` (``at::dropout(attn, p, true)``). float16 and
    bfloat16 inputs are computed in float32 and cast back, unless
    ``torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(True)`` was set.

    Returns
    -------
    (Tensor, Tensor)
        The output and the attention probabilities **after** dropout (zeros and scaled
        survivors), both in the inputs' dtype.
    """
    origin = query.dtype
    low = (torch.float16, torch.bfloat16)
    upcast = not torch._C._get_math_sdp_allow_fp16_bf16_reduction()
    q_acc = query.float() if upcast and query.dtype in low else query
    k_acc = key.float() if upcast and key.dtype in low else key
    v_acc = value.float() if upcast and value.dtype in low else value
    negative = scale is not None and scale < 0.0
    softmax_scale = abs(scale) if negative else scale  # type: ignore[arg-type]
    if softmax_scale is None:
        softmax_scale = 1.0 / math.sqrt(q_acc.size(-1))
    factor = math.sqrt(softmax_scale)
    q = q_acc * (0.0 - factor if negative else factor)
    if is_causal:
        if attn_mask is not None:
            raise RuntimeError(
                "_scaled_dot_product_attention: Explicit attn_mask should not be set when "
                "is_causal=True"
            )
        causal = torch.ones(q.size(-2), k_acc.size(-2), dtype=torch.bool).tril()
        attn_mask = _bool_to_additive(causal, q.dtype)
    if enable_gqa:  # pre_process_group_query_attention_input
        groups = q.size(-3) // k_acc.size(-3)
        k_acc = k_acc.repeat_interleave(groups, -3)
        v_acc = v_acc.repeat_interleave(groups, -3)
    attn = torch.matmul(q, k_acc.transpose(-2, -1) * factor)
    if attn_mask is not None:
        attn.add_(attn_mask)
    attn = torch.ops.aten._safe_softmax(attn, -1)
    if dropout_p > 0.0:
        attn = dropout_impl(attn, float(dropout_p), True, False, False, False)
    return torch.matmul(attn, v_acc).to(origin), attn.to(origin)


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    r"""``F.scaled_dot_product_attention`` as torch 2.13 computes it on CPU when it drops.

    Same signature and semantics as :func:`torch.nn.functional.scaled_dot_product_attention`:
    ``query`` :math:`(N, \dots, L, E)`, ``key`` :math:`(N, \dots, S, E)`, ``value``
    :math:`(N, \dots, S, E_v)`; a boolean ``attn_mask`` marks the entries that **take part**;
    ``dropout_p`` is applied whenever it is positive: **there is no training flag**, a caller
    must pass 0 in evaluation. Runs :func:`sdpa_math` (ATen's math backend, which CPU always
    picks when ``dropout_p > 0``), so under the same ``torch.manual_seed`` the output is
    bit-identical to torch's on CPU and the generator ends in the same state.

    With ``dropout_p == 0`` torch's CPU runs its flash kernel instead; this function still
    runs the math path, equal to torch's output to floating-point round-off only.
    """
    _check_sdpa_inputs(query, key, value, dropout_p)
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask = _bool_to_additive(attn_mask, query.dtype)
    return sdpa_math(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)[0]


def attention_probabilities(
    query: Tensor, key: Tensor, dropout_p: float = 0.0, scale: float | None = None
) -> Tensor:
    """The (dropped) attention probabilities that :func:`sdpa_math` multiplies with ``value``.

    Draws exactly the random numbers SDPA draws (one ``bernoulli_`` over the
    :math:`(N, \\dots, L, S)` tensor), so under the same seed it shows SDPA's own mask.
    """
    value = torch.zeros(*key.shape[:-1], 1, dtype=key.dtype)
    return sdpa_math(query, key, value, None, dropout_p, False, scale)[1]


def multi_head_attention(
    module: torch.nn.MultiheadAttention,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    *,
    need_weights: bool = True,
    attn_mask: Tensor | None = None,
    average_attn_weights: bool = True,
) -> tuple[Tensor, Tensor | None]:
    r"""``module(query, key, value, ...)`` for an ``nn.MultiheadAttention``, op for op on CPU.

    Re-writes the slow path of ``F.multi_head_attention_forward`` (torch 2.13) for a module
    with a packed input projection and no ``bias_k``/``bias_v``/``add_zero_attn``:

    1. in-projection :math:`[Q; K; V] = X W_{in}^\top + b_{in}` (one ``linear`` for
       self-attention, as ``_in_projection_packed``), split into :math:`h` heads of size
       :math:`d = E/h`;
    2. ``need_weights=True``: :math:`A = \operatorname{softmax}((Q/\sqrt{d}) K^\top + M)`,
       ``F.dropout(A, p)`` on the :math:`(N h, L, S)` weights when training, then
       :math:`AV`; the returned weights are the **dropped** ones, averaged over heads when
       ``average_attn_weights``;
       ``need_weights=False``: :func:`scaled_dot_product_attention` with ``dropout_p = p``
       when training and 0 otherwise (the module, unlike SDPA, knows ``self.training``);
    3. out-projection.

    ``attn_mask``: ``None`` or an :math:`(L, S)` mask with MHA's convention (``True`` =
    **not** allowed, float = added). Inputs are ``(L, N, E)``, or ``(N, L, E)`` when
    ``module.batch_first``. The mask draw uses the library's dropout, so under the same seed
    the result is bit-identical to the module's in training mode (and in eval with autograd
    recording, where the module takes this same slow path).

    Raises
    ------
    NotImplementedError
        For the module options this re-write does not cover.
    """
    m = module
    if not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn:
        raise NotImplementedError(
            "multi_head_attention covers packed projections without bias_k/bias_v/add_zero_attn"
        )
    if query.dim() != 3:
        raise NotImplementedError("multi_head_attention covers batched (3-D) inputs only")
    if m.batch_first:  # as the module does: keep the ``is`` identities that pick the GEMMs
        if key is value:
            if query is key:
                query = key = value = query.transpose(1, 0)
            else:
                query = query.transpose(1, 0)
                key = value = key.transpose(1, 0)
        else:
            query, key, value = (t.transpose(1, 0) for t in (query, key, value))
    tgt_len, bsz, embed_dim = query.shape
    heads = m.num_heads
    head_dim = embed_dim // heads
    mask = attn_mask
    if mask is not None:
        if mask.dim() != 2:
            raise NotImplementedError("multi_head_attention covers a 2-D (L, S) attn_mask only")
        if mask.dtype == torch.bool:  # _canonical_mask: True is masked out
            mask = torch.zeros_like(mask, dtype=query.dtype).masked_fill_(mask, -math.inf)
    q, k, v = _in_projection_packed(query, key, value, m.in_proj_weight, m.in_proj_bias)
    q = q.view(tgt_len, bsz * heads, head_dim).transpose(0, 1)
    k = k.view(k.shape[0], bsz * heads, head_dim).transpose(0, 1)
    v = v.view(v.shape[0], bsz * heads, head_dim).transpose(0, 1)
    src_len = k.size(1)
    p = m.dropout if m.training else 0.0
    weights: Tensor | None = None
    if need_weights:
        q_scaled = q * math.sqrt(1.0 / float(head_dim))
        if mask is not None:
            w = torch.baddbmm(mask.unsqueeze(0), q_scaled, k.transpose(-2, -1))
        else:
            w = torch.bmm(q_scaled, k.transpose(-2, -1))
        w = torch.softmax(w, dim=-1)
        if p > 0.0:
            w = dropout_impl(w, float(p), True, False, False, False)
        out = torch.bmm(w, v)
        out = out.transpose(0, 1).reshape(tgt_len * bsz, embed_dim)
        weights = w.view(bsz, heads, tgt_len, src_len)
        if average_attn_weights:
            weights = weights.mean(dim=1)
    else:
        sdpa_mask = None if mask is None else mask.unsqueeze(0).unsqueeze(0)
        q = q.view(bsz, heads, tgt_len, head_dim)
        k = k.view(bsz, heads, src_len, head_dim)
        v = v.view(bsz, heads, src_len, head_dim)
        out = scaled_dot_product_attention(q, k, v, sdpa_mask, float(p), False)
        out = out.permute(2, 0, 1, 3).reshape(bsz * tgt_len, embed_dim)
    out = torch.nn.functional.linear(out, m.out_proj.weight, m.out_proj.bias)
    out = out.view(tgt_len, bsz, out.size(1))
    if m.batch_first:
        out = out.transpose(1, 0)
    return out, weights


def _in_projection_packed(
    q: Tensor, k: Tensor, v: Tensor, w: Tensor, b: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """``F._in_projection_packed``: one GEMM for self-attention, else the split weights."""
    linear = torch.nn.functional.linear
    e = q.size(-1)
    if k is v and q is k:
        proj = linear(q, w, b).unflatten(-1, (3, e)).unsqueeze(0).transpose(0, -2)
        proj = proj.squeeze(-2).contiguous()
        return proj[0], proj[1], proj[2]
    if k is v:
        w_q, w_kv = w.split([e, e * 2])
        b_q, b_kv = (None, None) if b is None else b.split([e, e * 2])
        kv = linear(k, w_kv, b_kv).unflatten(-1, (2, e)).unsqueeze(0).transpose(0, -2)
        kv = kv.squeeze(-2).contiguous()
        return linear(q, w_q, b_q), kv[0], kv[1]
    w_q, w_k, w_v = w.chunk(3)
    b_q, b_k, b_v = (None, None, None) if b is None else b.chunk(3)
    return linear(q, w_q, b_q), linear(k, w_k, b_k), linear(v, w_v, b_v)


class _OpLog(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.ops.append(str(func.overloadpacket.__name__))
        return func(*args, **(kwargs or {}))


def recorded_aten_ops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[str]:
    """The ATen ops (by name, in call order) that ``fn(*args, **kwargs)`` dispatches.

    Uses a ``TorchDispatchMode``, which sees ops after composite ops have been decomposed:
    ``F.scaled_dot_product_attention`` on CPU shows either one
    ``_scaled_dot_product_flash_attention_for_cpu`` or the math path's ``bmm``,
    ``_safe_softmax``, ``bernoulli_``, ... ops.
    """
    with _OpLog() as log:
        fn(*args, **kwargs)
    return log.ops
