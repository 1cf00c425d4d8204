"""The CPU-testable parts of benchmarks/cuda_facts.py: argument handling, the no-GPU exit and
the candidate formulas (checked against PyTorch's CPU kernels, whose rounding ATen's source
documents: ``_dropout_impl`` divides the noise in the input's dtype, ``native_dropout_cpu``
multiplies by a double scale)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("cuda_facts", ROOT / "benchmarks" / "cuda_facts.py")
cf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cf)

DTYPES = list(cf.DTYPES.values())


def _x(dtype, n=20_000):
    return cf._positive(n, dtype, seed=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("p", [0.1, 0.42, 0.74, 0.97])
def test_cpu_recipe_is_cpu_dropout(dtype, p):
    x = _x(dtype)
    torch.manual_seed(0)
    y = F.dropout(x, p)
    counts = cf.count_mismatches(y, x, p)
    assert counts["cpu_recipe"] == 0
    assert 0 < int((y != 0).sum()) < x.numel()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("p", [0.1, 0.42, 0.74])
def test_double_scale_is_cpu_native_dropout(dtype, p):
    # native_dropout_cpu multiplies by the double 1/(1-p); a half tensor's multiplication by
    # a scalar rounds that scalar to the tensor's dtype first
    x = _x(dtype)
    torch.manual_seed(0)
    y, _ = torch.native_dropout(x, p, True)
    half = dtype in (torch.float16, torch.bfloat16)
    name = "double_scale_in_dtype" if half else "double_scale"
    assert cf.count_mismatches(y, x, p)[name] == 0


def test_candidates_can_disagree():
    # the check must be able to fail: at p = 0.42 float32's two roundings of 1/q differ
    s = cf.candidate_scales(0.42, torch.float32)
    assert s["cpu_recipe"] == s["acc_scale"] != s["double_scale"]
    x = _x(torch.float32)
    torch.manual_seed(0)
    counts = cf.count_mismatches(F.dropout(x, 0.42), x, 0.42)
    assert counts["cpu_recipe"] == 0 and counts["double_scale"] > 0


def test_half_scale_kept_in_float_differs_from_cpu():
    # float16: fl16(x * s32) (scale kept in float) is not fl16(x * fl16(s32)) everywhere
    x = _x(torch.float16)
    out = cf.candidate_outputs(x, 0.3)
    assert int((out["acc_scale"] != out["cpu_recipe"]).sum()) > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        cf.candidate_scales(1.0, torch.float32)
    with pytest.raises(TypeError, match="floating dtype"):
        cf.accumulate_dtype(torch.int32)
    with pytest.raises(SystemExit) as exc:
        cf.parse_args([])
    assert exc.value.code == 2
    for bad in (["--out", "x.txt"], ["--out", "/no/such/folder/x.json"], ["--out", "/tmp"]):
        with pytest.raises(SystemExit) as exc:
            cf.parse_args(bad)
        assert exc.value.code == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the message for machines without CUDA")
def test_exits_2_without_cuda(tmp_path):
    out = tmp_path / "facts.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.cuda_facts", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "no CUDA device" in proc.stderr
    assert not out.exists()
