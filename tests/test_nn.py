"""The from-scratch network: forward values, backward against finite differences and against
torch.autograd (float64, same dropout masks), modes, parameters and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dropoutlib.gradcheck import check_module
from dropoutlib.numpy.nn import (
    Dropout,
    FreshMaskDropout,
    Linear,
    Module,
    Parameter,
    ReLU,
    Sequential,
    log_softmax,
    softmax,
    softmax_cross_entropy,
)

GRADCHECK_TOL = 1e-7  # central differences in float64 with eps = 1e-6 reach about 1e-9


def make_net(rng: np.random.Generator, *, scaling: str = "inverted", dtype=np.float64):
    return Sequential(
        Dropout(0.2, rng=rng, scaling=scaling),
        Linear(7, 6, rng=rng, dtype=dtype),
        ReLU(),
        Dropout(0.5, rng=rng, scaling=scaling),
        Linear(6, 5, rng=rng, dtype=dtype),
        ReLU(),
        Dropout(0.5, rng=rng, scaling=scaling),
        Linear(5, 3, rng=rng, dtype=dtype),
    )


# --------------------------------------------------------------------------- finite differences


@pytest.mark.parametrize(
    "layer",
    [
        lambda rng: Linear(4, 3, rng=rng, dtype=np.float64),
        lambda rng: ReLU(),
        lambda rng: Dropout(0.3, rng=rng),
        lambda rng: Dropout(0.3, rng=rng, scaling="standard"),
    ],
    ids=["linear", "relu", "dropout-inverted", "dropout-standard"],
)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_layer_backward_matches_finite_differences(layer, training):
    rng = np.random.default_rng(1)
    module = layer(rng).train(training)
    x = rng.standard_normal((5, 4))
    x[np.abs(x) < 1e-3] = 0.5  # keep ReLU inputs away from the kink at 0
    errors = check_module(module, x, rng=rng)
    assert max(errors.values()) < GRADCHECK_TOL, errors


@pytest.mark.parametrize("scaling", ["inverted", "standard"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_network_backward_matches_finite_differences(scaling, training):
    rng = np.random.default_rng(2)
    net = make_net(rng, scaling=scaling).train(training)
    # Biases away from 0: a unit whose inputs are all dropped has pre-activation = its bias, and
    # a zero bias would sit on ReLU's kink, where central differences are wrong.
    for name, param in net.named_parameters():
        if name.endswith("bias"):
            param.data += rng.uniform(0.1, 0.5, param.data.shape)
    errors = check_module(net, rng.standard_normal((4, 7)), rng=rng)
    assert set(errors) == {"input"} | {n for n, _ in net.named_parameters()}
    assert max(errors.values()) < GRADCHECK_TOL, errors


@pytest.mark.parametrize("scaling", ["inverted", "standard"])
def test_gradcheck_detects_a_fresh_mask_in_backward(scaling):
    rng = np.random.default_rng(3)
    net = Sequential(
        Linear(6, 8, rng=rng, dtype=np.float64), FreshMaskDropout(0.5, rng=rng, scaling=scaling)
    )
    errors = check_module(net, rng.standard_normal((4, 6)), rng=rng)
    assert errors["input"] > 0.1 and errors["0.weight"] > 0.1, errors


@pytest.mark.parametrize("scaling", ["inverted", "standard"])
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_fresh_mask_dropout_differs_from_dropout_only_in_the_mask(scaling, p):
    """Regression: the wrong layer ignored ``scaling`` (always 1/(1-p)). If its generator is
    rewound so that the "fresh" mask is the forward mask again, its backward must be exactly the
    correct layer's, for both scalings; in eval mode it is the correct layer."""
    x = np.random.default_rng(0).standard_normal((5, 7))
    g = np.random.default_rng(1).standard_normal((5, 7))
    good = Dropout(p, rng=np.random.default_rng(2), scaling=scaling)
    bad = FreshMaskDropout(p, rng=np.random.default_rng(2), scaling=scaling)
    state = bad.rng.bit_generator.state
    np.testing.assert_array_equal(bad(x), good(x))
    bad.rng.bit_generator.state = state  # the fresh mask is drawn from the forward's state
    np.testing.assert_array_equal(bad.backward(g), good.backward(g))
    bad.eval(), good.eval()
    np.testing.assert_array_equal(bad(x), good(x))
    np.testing.assert_array_equal(bad.backward(g), good.backward(g))
    assert repr(bad) == f"FreshMaskDropout(p={p}, scaling={scaling!r})"


# --------------------------------------------------------------------------- torch.autograd


def torch_forward(net: Sequential, x: np.ndarray) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """The same network in torch (float64): same weights, and each Dropout layer multiplies by
    the mask our layer stored in its forward pass."""
    xt = torch.tensor(x, requires_grad=True)
    params, h = {}, xt
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Linear):
            w = torch.tensor(layer.weight.data, requires_grad=True)
            b = torch.tensor(layer.bias.data, requires_grad=True)
            params[f"{i}.weight"], params[f"{i}.bias"] = w, b
            h = torch.nn.functional.linear(h, w, b)
        elif isinstance(layer, ReLU):
            h = torch.relu(h)
        elif isinstance(layer, Dropout):
            if not layer.training:
                h = h if layer.scaling == "inverted" else h * (1 - layer.p)
            else:
                scale = 1 / (1 - layer.p) if layer.scaling == "inverted" else 1.0
                h = h * torch.tensor(layer.mask) * scale
    return h, params, xt


@pytest.mark.parametrize("scaling", ["inverted", "standard"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_network_gradients_match_torch_autograd(scaling, training):
    rng = np.random.default_rng(4)
    net = make_net(rng, scaling=scaling).train(training)
    x = rng.standard_normal((9, 7))
    y = rng.integers(0, 3, size=9)
    net.zero_grad()
    logits = net(x)
    loss, grad = softmax_cross_entropy(logits, y)
    grad_x = net.backward(grad)

    logits_t, params_t, x_t = torch_forward(net, x)
    loss_t = torch.nn.functional.cross_entropy(logits_t, torch.tensor(y))
    loss_t.backward()
    np.testing.assert_allclose(logits, logits_t.detach().numpy(), rtol=1e-13, atol=1e-14)
    assert loss == pytest.approx(loss_t.item(), rel=1e-13)
    np.testing.assert_allclose(grad_x, x_t.grad.numpy(), rtol=1e-12, atol=1e-15)
    for name, p in net.named_parameters():
        np.testing.assert_allclose(p.grad, params_t[name].grad.numpy(), rtol=1e-12, atol=1e-15)


def test_softmax_cross_entropy_matches_torch_on_extreme_logits():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((6, 4)) * 300.0  # exp would overflow without the max shift
    y = rng.integers(0, 4, size=6)
    loss, grad = softmax_cross_entropy(logits, y)
    z = torch.tensor(logits, requires_grad=True)
    loss_t = torch.nn.functional.cross_entropy(z, torch.tensor(y))
    loss_t.backward()
    assert np.isfinite(loss) and loss == pytest.approx(loss_t.item(), rel=1e-12)
    np.testing.assert_allclose(grad, z.grad.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        log_softmax(logits), torch.log_softmax(z, 1).detach().numpy(), atol=1e-12
    )


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 8),
    classes=st.integers(2, 6),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_softmax_cross_entropy_properties(n, classes, dtype, seed):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, classes)) * 5).astype(dtype)
    y = rng.integers(0, classes, size=n)
    loss, grad = softmax_cross_entropy(logits, y)
    assert loss >= 0 and grad.dtype == dtype and grad.shape == logits.shape
    np.testing.assert_allclose(grad.sum(axis=1), 0, atol=1e-6)  # softmax minus one-hot
    np.testing.assert_allclose(softmax(logits).sum(axis=1), 1, rtol=1e-5)


# --------------------------------------------------------------------------- layers and modes


def test_linear_initialisation_dtype_and_forward():
    rng = np.random.default_rng(6)
    layer = Linear(400, 300, rng=rng)
    assert layer.weight.data.dtype == np.float32 and layer.bias.data.dtype == np.float32
    assert layer.weight.data.shape == (300, 400) and not layer.bias.data.any()
    # He initialisation: Var = 2 / fan_in; the sample variance of 120000 normals has relative
    # standard error sqrt(2/120000) = 0.41 %, so 3 % is over 7 standard errors (P < 1e-12).
    assert layer.weight.data.var() == pytest.approx(2 / 400, rel=0.03)
    x = rng.standard_normal((3, 400)).astype(np.float32)
    y = layer(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x @ layer.weight.data.T, rtol=1e-5, atol=1e-5)


def test_relu_forward_and_dtype():
    x = np.array([[-1.0, 0.0, 2.5]], dtype=np.float32)
    y = ReLU()(x)
    assert y.dtype == np.float32 and y.tolist() == [[0.0, 0.0, 2.5]]


def test_dropout_layer_train_eval_and_stored_mask():
    rng = np.random.default_rng(7)
    layer = Dropout(0.5, rng=rng)
    x = np.ones((50, 40), dtype=np.float32)
    y = layer(x)
    assert set(np.unique(y)) <= {0.0, 2.0} and layer.mask.shape == x.shape
    np.testing.assert_array_equal(y, layer.mask * np.float32(2.0))
    g = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(g, y)  # same mask, same scale
    layer.eval()
    assert layer(x) is x and layer.mask is None
    std = Dropout(0.25, rng=rng, scaling="standard").eval()
    np.testing.assert_array_equal(std(x), np.full_like(x, 0.75))
    np.testing.assert_array_equal(std.backward(x), np.full_like(x, 0.75))


def test_dropout_layer_uses_the_functional_mask_stream():
    """The layer draws exactly the mask dropoutlib.numpy.dropout draws from the same state."""
    from dropoutlib.numpy.functional import dropout

    x = np.arange(1.0, 61.0).reshape(6, 10)
    y_layer = Dropout(0.3, rng=np.random.default_rng(8))(x)
    y_func = dropout(x, 0.3, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(y_layer, y_func)


def test_train_eval_propagate_and_named_parameters():
    rng = np.random.default_rng(9)
    net = make_net(rng, dtype=np.float32)
    assert all(m.training for m in net.modules())
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    names = [n for n, _ in net.named_parameters()]
    assert names == ["1.weight", "1.bias", "4.weight", "4.bias", "7.weight", "7.bias"]
    assert len(net) == 8 and isinstance(net[1], Linear)
    for p in net.parameters():
        p.grad += 1
    net.zero_grad()
    assert all(not p.grad.any() for p in net.parameters())
    assert "Dropout(p=0.2" in repr(net)


def test_backward_accumulates_gradients():
    rng = np.random.default_rng(10)
    layer = Linear(3, 2, rng=rng, dtype=np.float64)
    x, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    layer(x)
    layer.backward(g)
    once = layer.weight.grad.copy()
    layer.backward(g)
    np.testing.assert_allclose(layer.weight.grad, 2 * once)


def test_same_seed_same_training_masks():
    def run(seed):
        net = make_net(np.random.default_rng(seed))
        return net(np.ones((3, 7)))

    np.testing.assert_array_equal(run(11), run(11))
    assert not np.array_equal(run(11), run(12))


# --------------------------------------------------------------------------- bad input


def test_bad_input_errors():
    rng = np.random.default_rng(12)
    with pytest.raises(TypeError, match=r"numpy\.random\.Generator"):
        Dropout(0.5, rng=None)
    with pytest.raises(TypeError, match=r"numpy\.random\.Generator"):
        Linear(2, 3, rng=0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        Dropout(1.5, rng=rng)
    with pytest.raises(ValueError, match="scaling must be one of"):
        Dropout(0.5, rng=rng, scaling="paper")
    with pytest.raises(ValueError, match="positive integer"):
        Linear(0, 3, rng=rng)
    with pytest.raises(TypeError, match="floating type"):
        Linear(2, 3, rng=rng, dtype=np.int32)
    layer = Linear(2, 3, rng=rng)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((1, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"shape \(batch, 2\)"):
        layer(np.ones((4, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="floating-point dtype"):
        layer(np.ones((4, 2), dtype=np.int64))
    with pytest.raises(TypeError, match="Module instances"):
        Sequential(layer, np.tanh)
    with pytest.raises(TypeError, match="floating-point dtype"):
        Parameter(np.zeros(3, dtype=int))
    logits = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        softmax_cross_entropy(logits, np.array([0, 3]))
    with pytest.raises(TypeError, match="labels must be integers"):
        softmax_cross_entropy(logits, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        softmax_cross_entropy(logits, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="shape \\(N, classes\\)"):
        softmax_cross_entropy(np.zeros(3), np.array([0]))
    with pytest.raises(NotImplementedError):
        Module()(np.zeros(1))
