r"""Check chapter 19's CUDA statements about attention dropout and write them as one JSON file.

Run from the repository root (``tools/gpu_checks.sh`` does, with ``OUT`` set)::

    OUT=/tmp/out python tools/gpu/sdpa_cuda.py

It writes ``$OUT/transformers_cuda.json`` (``OUT`` defaults to ``/tmp/out``); commit it as
``dropoutlib/results/transformers_cuda.json``, which chapter 19 reads when it exists. Imports
only torch, numpy and this repository. Without CUDA it runs the CPU checks only (a few
seconds) and records ``"cuda": null``. Every check runs in its own ``try``: a failure is
recorded as ``{"error": ...}`` and the others still run.

CUDA checks:

- ``sdpa_eval``: ``F.scaled_dot_product_attention(dropout_p=0.1)`` inside a module in
  ``eval()`` still drops on CUDA (two calls differ; ``dropout_p=0`` calls agree);
- ``default_backend``: which ATen op SDPA dispatches with and without dropout (op log), per
  dtype;
- ``backends``: for each backend forced by ``torch.nn.attention.sdpa_kernel``, whether it
  accepts ``dropout_p > 0``, and the **keep rate it actually uses**: with :math:`q = k = 0` every
  probability is :math:`1/S`, and with :math:`V = I_S` the output *is* the dropped,
  rescaled probability matrix, so zeros are dropped entries. The measured keep fraction over
  :math:`N` entries is compared with FlashAttention-2's byte rule :math:`(t+1)/256`,
  :math:`t = \lfloor \mathrm{fl}_{32}(1-p) \cdot 255 \rfloor`, and with :math:`1-p`, by
  z-scores :math:`(\hat k - k)/\sqrt{k(1-k)/N}`; the mean kept value times :math:`S`
  estimates the scale :math:`1/(1-p)`;
- ``native_dropout``: the mask dtype of ``torch.native_dropout`` on CUDA, and its eval
  behaviour;
- ``mha_eval``: ``nn.MultiheadAttention(dropout=0.1)`` in ``eval()`` is deterministic on CUDA.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from dropoutlib.flash_threshold import flash_threshold
from dropoutlib.torch.attention import recorded_aten_ops

P_VALUES = (0.1, 0.2, 0.5, 0.6)
SEED = 2014
#: Ops that identify the attention path: a fused kernel, or the math path's softmax and mask.
_MARKERS = ("_safe_softmax", "bernoulli_", "native_dropout")
S = 64  # sequence length = head dimension, so that V can be the identity


def _guard(fn, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:  # a failed check is data, not the end of the run
        return {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=3)}


def _attention_ops(ops: list[str]) -> list[str]:
    return [o for o in ops if "attention" in o or o in _MARKERS]


def _sdpa_ops(device: str, dtype: torch.dtype) -> dict[str, list[str]]:
    q = torch.randn(2, 4, S, S, device=device, dtype=dtype)
    out = {}
    for p in (0.0, 0.1):
        ops = recorded_aten_ops(F.scaled_dot_product_attention, q, q, q, dropout_p=p)
        out[f"p={p}"] = _attention_ops(ops)
    return out


def default_backend(device: str) -> dict[str, Any]:
    """The attention ops SDPA dispatches, per dtype, without and with dropout."""
    dtypes = [torch.float32] if device == "cpu" else [torch.float16, torch.bfloat16, torch.float32]
    return {str(d).removeprefix("torch."): _guard(_sdpa_ops, device, d) for d in dtypes}


class _Block(torch.nn.Module):
    """A module that calls SDPA with a fixed ``dropout_p``, as some model code does."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, q, q, dropout_p=self.p)


def sdpa_eval(device: str) -> dict[str, Any]:
    """In eval(), SDPA with dropout_p > 0 still drops; with dropout_p = 0 it is deterministic."""
    dtype = torch.float32 if device == "cpu" else torch.float16
    q = torch.randn(2, 4, S, S, device=device, dtype=dtype)
    out: dict[str, Any] = {"dtype": str(dtype).removeprefix("torch.")}
    for p in (0.1, 0.0):
        block = _Block(p).eval()
        with torch.no_grad():
            a, b = block(q), block(q)
        out[f"p={p}"] = {"training": block.training, "two_calls_equal": bool(torch.equal(a, b))}
    return out


def _keep_rate(device: str, backend: Any, p: float, batch_heads: int) -> dict[str, Any]:
    from torch.nn.attention import sdpa_kernel

    dtype = torch.float16
    q = torch.zeros(batch_heads, 1, S, S, device=device, dtype=dtype)
    v = torch.eye(S, device=device, dtype=dtype).expand(batch_heads, 1, S, S).contiguous()
    torch.manual_seed(SEED)
    with sdpa_kernel([backend]):
        ops = recorded_aten_ops(F.scaled_dot_product_attention, q, q, v, dropout_p=p)
        out = F.scaled_dot_product_attention(q, q, v, dropout_p=p)
    kept = out != 0
    n = kept.numel()
    k_hat = kept.float().mean().item()
    mean_kept = (out[kept].float().mean().item() * S) if kept.any() else float("nan")
    flash_k = (flash_threshold(p) + 1) / 256

    def z(k: float) -> float:
        return (k_hat - k) / math.sqrt(k * (1 - k) / n)

    return {
        "ops": _attention_ops(ops),
        "n": n,
        "keep_rate": k_hat,
        "flash_byte_rule": flash_k,
        "one_minus_p": 1 - p,
        "z_vs_flash_byte_rule": z(flash_k),
        "z_vs_one_minus_p": z(1 - p),
        "mean_kept_value_times_S": mean_kept,
        "one_over_one_minus_p": 1 / (1 - p),
    }


def backends(device: str) -> dict[str, Any]:
    """Each SDPA backend forced in turn with dropout: accepted? which keep rate?"""
    from torch.nn.attention import SDPBackend

    batch_heads = 4096 if device == "cuda" else 8
    names = ["FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"]
    if device == "cpu":
        names = ["MATH"]
    result: dict[str, Any] = {}
    for name in names:
        backend = getattr(SDPBackend, name, None)
        if backend is None:
            result[name] = {"error": "not in this torch"}
            continue
        result[name] = {
            f"p={p}": _guard(_keep_rate, device, backend, p, batch_heads) for p in P_VALUES
        }
    return result


def native_dropout(device: str) -> dict[str, Any]:
    """``torch.native_dropout``'s outputs: mask dtype, keep rate, eval behaviour."""
    x = torch.ones(1 << 20, device=device)
    torch.manual_seed(SEED)
    y, mask = torch.native_dropout(x, 0.1, True)
    y_eval, mask_eval = torch.native_dropout(x, 0.1, False)
    return {
        "mask_dtype": str(mask.dtype).removeprefix("torch."),
        "keep_rate_p0.1": mask.float().mean().item(),
        "kept_value": y[mask].unique().tolist()[:4],
        "eval_mask_all_true": bool(mask_eval.all().item()),
        "eval_output_equals_input": bool(torch.equal(y_eval, x)),
        "f_dropout_ops": recorded_aten_ops(F.dropout, x, 0.1, True),
    }


def mha_eval(device: str) -> dict[str, Any]:
    """nn.MultiheadAttention(dropout=0.1): random in train(), deterministic in eval()."""
    torch.manual_seed(SEED)
    mha = torch.nn.MultiheadAttention(64, 4, dropout=0.1, batch_first=True).to(device)
    x = torch.randn(2, 16, 64, device=device)
    out = {}
    for mode in ("train", "eval"):
        mha.train(mode == "train")
        a, _ = mha(x, x, x, need_weights=False)
        b, _ = mha(x, x, x, need_weights=False)
        out[mode] = {"two_calls_equal": bool(torch.equal(a, b))}
    return out


def main() -> int:
    start = time.perf_counter()
    out_dir = Path(os.environ.get("OUT", "/tmp/out"))
    out_dir.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    env = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "device": torch.cuda.get_device_name(0) if cuda else None,
        "capability": list(torch.cuda.get_device_capability(0)) if cuda else None,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    checks = ("sdpa_eval", "default_backend", "backends", "native_dropout", "mha_eval")
    fns = {"sdpa_eval": sdpa_eval, "default_backend": default_backend, "backends": backends,
           "native_dropout": native_dropout, "mha_eval": mha_eval}  # fmt: skip
    result: dict[str, Any] = {"env": env, "cpu": {}, "cuda": None}
    for name in checks:
        result["cpu"][name] = _guard(fns[name], "cpu")
    if cuda:
        result["cuda"] = {name: _guard(fns[name], "cuda") for name in checks}
    result["seconds"] = round(time.perf_counter() - start, 1)
    path = out_dir / "transformers_cuda.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path} in {result['seconds']} s (cuda: {cuda})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
