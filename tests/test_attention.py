"""Attention dropout: SDPA and nn.MultiheadAttention reproduced bit for bit on CPU; LoRA.

Under the same ``torch.manual_seed``, ``dropoutlib.torch.attention`` (torch primitives plus the
library's ``dropout_impl``) must give torch 2.13's CPU output bit for bit (compared through
integer views), leave the generator in the same state, and propagate the same gradients.
The mask itself is predicted in NumPy by the library's MT19937 emulation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dropoutlib.numpy.torch_rng import TorchCPUGenerator
from dropoutlib.torch.attention import (
    attention_probabilities,
    multi_head_attention,
    recorded_aten_ops,
    scaled_dot_product_attention,
    sdpa_math,
)
from dropoutlib.torch.lora import LoRALinear

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
INT_VIEW = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    view = INT_VIEW[a.element_size()]
    return torch.equal(a.contiguous().view(view), b.contiguous().view(view))


def _qkv(dtype: torch.dtype, seed: int, lq: int = 5, lk: int = 7, hq: int = 3, hk: int = 3):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, hq, lq, 8, generator=g).to(dtype)
    k = torch.randn(2, hk, lk, 8, generator=g).to(dtype)
    v = torch.randn(2, hk, lk, 4, generator=g).to(dtype)
    return q, k, v


def _both(f_torch, f_ours, *args, seed: int = 11, **kwargs):
    torch.manual_seed(seed)
    a = f_torch(*args, **kwargs)
    state_a = torch.get_rng_state()
    torch.manual_seed(seed)
    b = f_ours(*args, **kwargs)
    state_b = torch.get_rng_state()
    return a, b, torch.equal(state_a, state_b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize(
    "kw",
    [{}, {"is_causal": True}, {"scale": 0.3}, {"scale": -0.5}],
    ids=["plain", "causal", "s", "neg"],
)
def test_sdpa_bit_for_bit(dtype: torch.dtype, p: float, kw: dict) -> None:
    q, k, v = _qkv(dtype, 1, lk=5 if kw.get("is_causal") else 7)
    a, b, same_state = _both(
        F.scaled_dot_product_attention, scaled_dot_product_attention, q, k, v, dropout_p=p, **kw
    )
    assert _bits_equal(a, b) and same_state


@pytest.mark.parametrize("mask_kind", ["bool", "float", "gqa"])
def test_sdpa_masks_and_gqa(mask_kind: str) -> None:
    q, k, v = _qkv(torch.float32, 2, hq=6 if mask_kind == "gqa" else 3)
    g = torch.Generator().manual_seed(3)
    kw: dict = {"dropout_p": 0.2}
    if mask_kind == "bool":
        kw["attn_mask"] = torch.rand(5, 7, generator=g) > 0.3
    elif mask_kind == "float":
        kw["attn_mask"] = torch.randn(2, 1, 5, 7, generator=g)
    else:
        kw["enable_gqa"] = True
    a, b, same_state = _both(
        F.scaled_dot_product_attention, scaled_dot_product_attention, q, k, v, **kw
    )
    assert _bits_equal(a, b) and same_state


def test_sdpa_gradients_bit_for_bit() -> None:
    grads = []
    for f in (F.scaled_dot_product_attention, scaled_dot_product_attention):
        q, k, v = (t.requires_grad_() for t in _qkv(torch.float64, 4))
        torch.manual_seed(5)
        f(q, k, v, dropout_p=0.3).pow(2).sum().backward()
        grads.append([q.grad, k.grad, v.grad])
    assert all(_bits_equal(x, y) for x, y in zip(*grads, strict=True))


def test_sdpa_without_dropout_is_the_flash_kernel_to_round_off() -> None:
    """p = 0: torch's CPU runs its flash kernel, we run the math path: equal to round-off.

    (The CPU flash kernel needs one head size for q, k and v: ``check_head_dim_size_cpp``.)
    """
    q, k, _ = _qkv(torch.float64, 6)
    v = k.clone()
    assert recorded_aten_ops(F.scaled_dot_product_attention, q, k, v) == [
        "_scaled_dot_product_flash_attention_for_cpu"
    ]
    ops = recorded_aten_ops(F.scaled_dot_product_attention, q, k, v, dropout_p=0.1)
    assert "bernoulli_" in ops and "_safe_softmax" in ops and not any("flash" in o for o in ops)
    torch.testing.assert_close(
        scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v)
    )


def test_sdpa_drops_in_eval_and_rows_stop_summing_to_one() -> None:
    """SDPA has no training flag: a module's eval() cannot reach it; dropped rows != 1."""
    q, k, v = _qkv(torch.float32, 7)
    torch.manual_seed(0)
    a = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    torch.manual_seed(1)
    b = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    assert not torch.equal(a, b)  # random in any mode: nothing but dropout_p=0 switches it off
    torch.manual_seed(0)
    probs = attention_probabilities(q, k, dropout_p=0.5)
    sums = probs.sum(-1)
    assert (probs == 0).any() and not torch.allclose(sums, torch.ones_like(sums))
    clean = attention_probabilities(q, k)
    torch.testing.assert_close(clean.sum(-1), torch.ones_like(sums))


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_sdpa_mask_predicted_in_numpy(p: float) -> None:
    """SDPA's kept entries = the MT19937 emulation's bernoulli(1 - p) over (N, H, L, S)."""
    q, k, _ = _qkv(torch.float32, 8)
    torch.manual_seed(2024)
    probs = attention_probabilities(q, k, dropout_p=p)
    clean = attention_probabilities(q, k)
    keep = TorchCPUGenerator(2024).bernoulli(tuple(probs.shape), 1.0 - p)
    assert np.array_equal(probs.numpy() != 0, keep & (clean.numpy() != 0))
    # and the output SDPA returned is the one this mask gives
    q, k, v = _qkv(torch.float32, 8)
    torch.manual_seed(2024)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
    noise = torch.from_numpy(keep).to(torch.float32).div_(1.0 - p)
    assert _bits_equal(out, torch.matmul(clean.mul(noise), v))


def _mha_case(batch_first: bool, need_weights: bool, mask: str, kind: str, training: bool):
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(16, 4, dropout=0.25, batch_first=batch_first)
    mha.train(training)
    g = torch.Generator().manual_seed(9)
    x, y = torch.randn(5, 5, 16, generator=g), torch.randn(5, 5, 16, generator=g)
    if kind == "self":
        args = (x, x, x)
    elif kind == "kv":
        args = (x, y, y)
    else:
        args = (x, y, torch.randn(5, 5, 16, generator=g))
    attn_mask = {
        "none": None,
        "bool": torch.rand(5, 5, generator=g) > 0.7,
        "float": torch.randn(5, 5, generator=g),
    }[mask]
    kw = {"need_weights": need_weights, "attn_mask": attn_mask}
    return mha, args, kw


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("mask", ["none", "bool", "float"])
@pytest.mark.parametrize("kind", ["self", "kv", "qkv"])
def test_mha_bit_for_bit(batch_first: bool, need_weights: bool, mask: str, kind: str) -> None:
    mha, args, kw = _mha_case(batch_first, need_weights, mask, kind, training=True)
    torch.manual_seed(7)
    out_t, w_t = mha(*args, **kw)
    state_t = torch.get_rng_state()
    torch.manual_seed(7)
    out_o, w_o = multi_head_attention(mha, *args, **kw)
    assert _bits_equal(out_t, out_o) and torch.equal(state_t, torch.get_rng_state())
    assert (w_t is None and w_o is None) or _bits_equal(w_t, w_o)


def test_mha_eval_switches_dropout_off() -> None:
    """The module passes training=self.training; in eval no random number is drawn."""
    mha, args, kw = _mha_case(True, True, "none", "self", training=False)
    torch.manual_seed(7)
    out_t, w_t = mha(*args, **kw)
    state = torch.get_rng_state()
    torch.manual_seed(7)
    out_o, w_o = multi_head_attention(mha, *args, **kw)
    assert _bits_equal(out_t, out_o) and _bits_equal(w_t, w_o)
    assert torch.equal(state, torch.get_rng_state())
    torch.manual_seed(7)
    assert torch.equal(torch.get_rng_state(), state)  # nothing drawn: still the seeded state
    torch.testing.assert_close(w_t.sum(-1), torch.ones(5, 5))


def test_mha_unsupported_and_sdpa_errors() -> None:
    mha = torch.nn.MultiheadAttention(8, 2, add_zero_attn=True)
    x = torch.randn(3, 2, 8)
    with pytest.raises(NotImplementedError):
        multi_head_attention(mha, x, x, x)
    q = torch.randn(1, 1, 2, 4)
    with pytest.raises(RuntimeError) as ours:
        scaled_dot_product_attention(q, q.double(), q)
    with pytest.raises(RuntimeError) as theirs:
        F.scaled_dot_product_attention(q, q.double(), q)
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(RuntimeError, match="is_causal"):
        sdpa_math(q, q, q, torch.zeros(2, 2), 0.1, True)


# --- LoRA ----------------------------------------------------------------------------------


def test_lora_starts_as_base_and_freezes_it() -> None:
    torch.manual_seed(0)
    layer = LoRALinear(torch.nn.Linear(6, 4), r=2, lora_alpha=4.0, lora_dropout=0.3)
    x = torch.randn(10, 6)
    assert torch.equal(layer(x), layer.base(x))  # B = 0, in training mode too
    assert not any(p.requires_grad for p in layer.base.parameters())
    trainable = {n for n, p in layer.named_parameters() if p.requires_grad}
    assert trainable == {"lora_A.weight", "lora_B.weight"}
    assert layer.scaling == 2.0


def test_lora_dropout_hits_only_the_adapter_input() -> None:
    torch.manual_seed(0)
    layer = LoRALinear(torch.nn.Linear(6, 4), r=2, lora_alpha=4.0, lora_dropout=0.3)
    torch.nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(10, 6)
    torch.manual_seed(3)
    y = layer(x)
    torch.manual_seed(3)
    dropped = F.dropout(x, 0.3)  # the same mask, drawn by torch itself
    expected = layer.base(x) + layer.lora_B(layer.lora_A(dropped)) * layer.scaling
    assert torch.equal(y, expected)
    # eval: no dropout, and the merged weight gives the same map (to round-off)
    layer.eval()
    merged = F.linear(x, layer.merged_weight(), layer.base.bias)
    torch.testing.assert_close(layer(x), merged)
    # gradients: columns of A that see a dropped input get none of that example's signal
    layer.train()
    torch.manual_seed(4)
    layer(x[:1]).sum().backward()
    torch.manual_seed(4)
    kept = F.dropout(torch.ones(1, 6), 0.3) != 0
    assert torch.all(layer.lora_A.weight.grad[:, ~kept[0]] == 0)


def test_lora_expectation_is_the_merged_layer() -> None:
    """Linear in the mask: averaging over all 2^d masks gives the eval output exactly."""
    torch.manual_seed(0)
    d, p = 4, 0.25
    layer = LoRALinear(torch.nn.Linear(d, 3).double(), r=2, lora_dropout=p)
    torch.nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(1, d, dtype=torch.float64)
    total = torch.zeros(1, 3, dtype=torch.float64)
    for bits in range(2**d):
        m = torch.tensor([(bits >> i) & 1 for i in range(d)], dtype=torch.float64)
        prob = math.prod(1 - p if b else p for b in m.tolist())
        xa = x * m / (1 - p)
        total += prob * (layer.base(x) + layer.lora_B(layer.lora_A(xa)) * layer.scaling)
    layer.eval()
    torch.testing.assert_close(total, layer(x), rtol=1e-12, atol=1e-12)


def test_lora_errors() -> None:
    with pytest.raises(ValueError, match="positive integer"):
        LoRALinear(torch.nn.Linear(3, 3), r=0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        LoRALinear(torch.nn.Linear(3, 3), r=1, lora_dropout=1.5)
    with pytest.raises(TypeError, match=r"nn\.Linear"):
        LoRALinear(torch.nn.Conv1d(3, 3, 1), r=1)  # type: ignore[arg-type]
    assert isinstance(LoRALinear(torch.nn.Linear(3, 3), r=1).lora_dropout, torch.nn.Identity)


def test_gpu_script_runs_on_cpu(tmp_path, monkeypatch) -> None:
    """tools/gpu/sdpa_cuda.py (run by the lead on a GPU) also runs here, CUDA checks skipped."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "gpu" / "sdpa_cuda.py"
    spec = importlib.util.spec_from_file_location("sdpa_cuda", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    monkeypatch.setenv("OUT", str(tmp_path))
    assert module.main() == 0
    data = json.loads((tmp_path / "transformers_cuda.json").read_text())
    cpu = data["cpu"]
    assert not any("error" in v for v in cpu.values() if isinstance(v, dict))
    assert cpu["sdpa_eval"]["p=0.1"] == {"training": False, "two_calls_equal": False}
    assert cpu["default_backend"]["float32"]["p=0.0"] == [
        "_scaled_dot_product_flash_attention_for_cpu"
    ]
    assert cpu["native_dropout"]["mask_dtype"] == "bool"
    if not torch.cuda.is_available():
        assert data["cuda"] is None
