"""The torch drop-ins under torch.fx, TorchScript and torch.compile, and the fast path.

Regression tests for issue 10, section 4: items 4 (fx keeps the layers as leaves, so ``.eval()``
on a traced graph switches dropout off), 9 (``GaussianDropout(nan)``), 12 (``fullgraph=True``
compiles where the functionals warn), 13 (``torch.jit.script`` of every layer, bit-identical to
eager) and 14 (a negative NaN ``p`` prints ``-nan``, as ATen does).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import dropoutlib.torch as D
from dropoutlib._torch_messages import FEATURE_RANK_ERROR
from dropoutlib.numpy.torch_rng import SELU_ALPHA_TIMES_SCALE
from dropoutlib.torch._aten import format_double
from dropoutlib.torch.gaussian import gaussian_dropout

# Each layer with an input of the rank it expects.
LAYERS = [
    ("Dropout", (2, 3, 4)),
    ("Dropout1d", (2, 3, 4)),
    ("Dropout2d", (2, 3, 4, 5)),
    ("Dropout3d", (2, 3, 4, 5, 2)),
    ("AlphaDropout", (2, 3, 4)),
    ("FeatureAlphaDropout", (2, 3, 4, 5)),
]
FUNC_NAMES = [
    "dropout",
    "alpha_dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "feature_alpha_dropout",
]
NEG_NAN = -float("nan")
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().reshape(-1).view(torch.uint8)


# --- item 4: torch.fx ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "shape"), LAYERS)
def test_fx_trace_keeps_layer_as_leaf(name, shape):
    """Traced like torch's layer: one call_module node, and .eval() turns dropout off."""
    ours = nn.Sequential(nn.Identity(), getattr(D, name)(0.5))
    ref = nn.Sequential(nn.Identity(), getattr(nn, name)(0.5))
    g_ours, g_ref = torch.fx.symbolic_trace(ours), torch.fx.symbolic_trace(ref)
    assert [(n.op, n.target) for n in g_ours.graph.nodes] == [
        (n.op, n.target) for n in g_ref.graph.nodes
    ]
    x = torch.randn(shape)
    torch.manual_seed(5)
    y_eager = ours(x)
    torch.manual_seed(5)
    y_traced = g_ours(x)
    assert torch.equal(_bits(y_traced), _bits(y_eager))
    assert not torch.equal(y_traced, x)  # training: something was dropped
    g_ours.eval()
    assert torch.equal(g_ours(x), x)


# --- item 13: TorchScript ------------------------------------------------------------------


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize(("name", "shape"), LAYERS)
def test_jit_script_bit_identical_to_eager(name, shape, inplace):
    layer = getattr(D, name)(0.4, inplace)
    scripted = torch.jit.script(layer)
    x = torch.randn(shape)
    torch.manual_seed(11)
    a = layer(x.clone())
    state_a = torch.get_rng_state()
    torch.manual_seed(11)
    b = scripted(x.clone())
    assert torch.equal(_bits(a), _bits(b)) and torch.equal(state_a, torch.get_rng_state())
    scripted.eval()
    assert scripted(x) is not None and torch.equal(scripted(x), x)


@pytest.mark.parametrize("name", ["Dropout", "Dropout1d", "Dropout2d", "Dropout3d"])
def test_jit_script_matches_torch_scripted(name):
    """Unbatched inputs, warnings and p checks of the scripted layer agree with torch's."""
    shapes = {"Dropout": (3, 4), "Dropout1d": (3, 4), "Dropout2d": (2, 3, 4)}
    shapes["Dropout3d"] = (3, 2, 2, 2)
    x = torch.randn(shapes[name])
    results = []
    for ns in (nn, D):
        scripted = torch.jit.script(getattr(ns, name)(0.5))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.manual_seed(2)
            y = scripted(x)
        results.append((y, [str(w.message) for w in caught]))
    (ya, wa), (yb, wb) = results
    assert torch.equal(_bits(ya), _bits(yb)) and wa == wb
    errors = []
    for ns in (nn, D):
        layer = getattr(ns, name)(0.5)
        layer.p = 2.0
        with pytest.raises(torch.jit.Error) as info:
            torch.jit.script(layer)(x)
        errors.append(str(info.value).splitlines()[-1])
    assert errors[0] == errors[1]
    assert (
        errors[0]
        == "builtins.ValueError: dropout probability has to be between 0 and 1, but got 2."
    )


def test_jit_script_rank_error_dropout1d():
    results = []
    for ns in (nn, D):
        with pytest.raises(Exception) as info:  # torch.jit.Error for both
            torch.jit.script(ns.Dropout1d(0.5))(torch.ones(2, 3, 4, 5))
        results.append((type(info.value), str(info.value).splitlines()[-1]))
    assert results[0] == results[1]


def test_scripted_selu_constant_is_the_library_constant():
    """``dropout_impl`` spells the SELU constant out for TorchScript; it must be the same."""
    x = torch.zeros(4000, dtype=torch.float64)
    y = D.alpha_dropout(x, 0.2, True)
    a = 1.0 / np.sqrt((SELU_ALPHA_TIMES_SCALE**2 * 0.2 + 1.0) * 0.8)
    assert set(y.unique().tolist()) == {
        SELU_ALPHA_TIMES_SCALE * a * 0.2,
        -SELU_ALPHA_TIMES_SCALE * a * 0.8,
    }


# --- item 12: torch.compile(fullgraph=True) -------------------------------------------------

COMPILE_CASES = [
    ("dropout2d", (2, 3, 4)),  # 3-D: warns
    ("dropout2d", (2, 3, 4, 4, 2)),  # 5-D: warns that the rank is deprecated
    ("dropout3d", (3, 4, 2)),  # 3-D: warns, read as unbatched
    ("dropout1d", (3, 4)),  # unbatched: unsqueeze
    ("dropout", (4, 8)),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "shape"), COMPILE_CASES)
def test_compile_fullgraph(name, shape):
    """Dynamo traces our functionals without a graph break; warnings as torch's compile gives.

    ``aot_eager`` runs Dynamo and AOTAutograd (where graph breaks and tracing failures happen)
    and then eager kernels, so the RNG stream, and hence the output, is eager's.
    """
    torch._dynamo.reset()
    x = torch.randn(shape)
    caught_by = []
    for fn in (getattr(F, name), getattr(D, name)):
        compiled = torch.compile(lambda t, fn=fn: fn(t, 0.5), fullgraph=True, backend="aot_eager")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.manual_seed(9)
            y = compiled(x)
        caught_by.append(sorted({str(w.message) for w in caught}))
        torch.manual_seed(9)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            assert torch.equal(_bits(y), _bits(fn(x, 0.5)))
    assert caught_by[0] == caught_by[1]


@pytest.mark.slow
def test_compile_fullgraph_modules_and_inplace():
    torch._dynamo.reset()
    net = nn.Sequential(D.Dropout2d(0.3), D.Dropout(0.5, inplace=True))
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the 3-D dropout2d warning
        torch.manual_seed(1)
        y = compiled(x.clone())
        torch.manual_seed(1)
        assert torch.equal(_bits(y), _bits(net(x.clone())))


# --- item 14: negative NaN ------------------------------------------------------------------


@pytest.mark.parametrize("p", [NEG_NAN, np.float64(NEG_NAN), torch.tensor(NEG_NAN)], ids=repr)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name", FUNC_NAMES)
def test_negative_nan_message(name, training, p):
    x = torch.ones(2, 3, 4)
    errors = []
    for ns in (F, D):
        with pytest.raises(Exception) as info, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # dropout2d/3d's rank warnings
            getattr(ns, name)(x, p, training)
        errors.append((type(info.value), str(info.value)))
    assert errors[0] == errors[1]
    assert errors[0][1].endswith("but got -nan")


def test_format_double_matches_cxx_stream():
    """``%g`` as C++ streams print a double, with glibc's sign for NaN."""
    assert format_double(NEG_NAN) == "-nan" and format_double(float("nan")) == "nan"
    assert format_double(float("-inf")) == "-inf" and format_double(1.0000001) == "1"
    assert format_double(1e-300) == "1e-300" and format_double(0.25) == "0.25"


# --- item 9: GaussianDropout(nan) -----------------------------------------------------------


@pytest.mark.parametrize("p", [float("nan"), NEG_NAN, np.float64("nan")], ids=repr)
def test_gaussian_rejects_nan(p):
    with pytest.raises(ValueError, match=r"has to be in \[0, 1\).*but got nan"):
        D.GaussianDropout(p)
    with pytest.raises(ValueError, match=r"has to be in \[0, 1\)"):
        gaussian_dropout(torch.ones(3), p)


# --- the fast path (issue 15 item 4) --------------------------------------------------------


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("rank", range(1, 7))
@pytest.mark.parametrize("name", FUNC_NAMES)
def test_fast_path_equals_full_path(name, rank, p, training, inplace):
    """A Python float ``p`` (fast path) and a NumPy one (full path) give the same outcome."""
    outcomes = []
    for p_arg in (p, np.float64(p)):
        x = torch.arange(1.0, 1.0 + 2**rank).reshape((2,) * rank)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.manual_seed(7)
            try:
                y = getattr(D, name)(x, p_arg, training, inplace)
                res = ("ok", _bits(y).clone(), y.shape, y is x, torch.get_rng_state())
            except RuntimeError as err:
                res = ("raise", str(err))
        outcomes.append((res, [str(w.message) for w in caught]))
    (a, wa), (b, wb) = outcomes
    assert wa == wb and a[0] == b[0]
    for u, v in zip(a[1:], b[1:], strict=True):
        assert torch.equal(u, v) if isinstance(u, torch.Tensor) else u == v


def test_spelled_out_rank_error_is_the_shared_text():
    """``dropout_impl`` spells FEATURE_RANK_ERROR out for TorchScript; it must be the same."""
    with pytest.raises(RuntimeError) as info:
        D.feature_alpha_dropout(torch.ones(3), 0.5, True)
    assert str(info.value) == FEATURE_RANK_ERROR
