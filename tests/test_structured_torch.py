"""Tests of dropoutlib.torch.structured that need no reference package (WeightDrop, errors)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from dropoutlib.torch import dropout
from dropoutlib.torch.structured import (
    DropBlock2d,
    DropPath,
    StochasticDepth,
    WeightDrop,
    drop_block2d,
    drop_path,
    stochastic_depth,
)


def _linear():
    torch.manual_seed(0)
    return nn.Linear(5, 3), torch.randn(4, 5)


def test_weight_drop_linear_is_dropconnect():
    lin, x = _linear()
    wd = WeightDrop(lin, "weight", 0.4)
    torch.manual_seed(1)
    out = wd(x)
    torch.manual_seed(1)
    w = dropout(lin.weight, 0.4, True)
    assert torch.equal(out, nn.functional.linear(x, w, lin.bias))
    out.sum().backward()
    # d/dW of sum(x W~^T) with W~ = M W / 0.6: M / 0.6 * sum over batch of x.
    keep = (w != 0).to(x.dtype)
    expect = keep / 0.6 * x.sum(0).expand(3, 5)
    torch.testing.assert_close(lin.weight.grad, expect)
    wd.eval()
    assert torch.equal(wd(x), lin(x))
    assert list(wd.state_dict()) == ["module.weight", "module.bias"]


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_weight_drop_recurrent_hidden_to_hidden(cls):
    torch.manual_seed(2)
    rnn = cls(3, 4, num_layers=2)
    ref = cls(3, 4, num_layers=2)
    ref.load_state_dict(rnn.state_dict())
    wd = WeightDrop(rnn, ["weight_hh_l0", "weight_hh_l1"], 0.5)
    x = torch.randn(6, 2, 3)
    torch.manual_seed(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, _ = wd(x)
    torch.manual_seed(3)
    with torch.no_grad():
        for name in ("weight_hh_l0", "weight_hh_l1"):
            getattr(ref, name).copy_(dropout(getattr(rnn, name), 0.5, True))
    expect, _ = ref(x)
    torch.testing.assert_close(out, expect, rtol=0, atol=0)
    out.sum().backward()
    assert rnn.weight_hh_l0.grad is not None and rnn.weight_ih_l0.grad is not None
    # the raw weights are untouched and evaluation uses them
    wd.eval()
    ref.load_state_dict(rnn.state_dict())
    assert torch.equal(wd(x)[0], ref(x)[0])


def test_weight_drop_errors():
    lin, _ = _linear()
    with pytest.raises(ValueError, match="no parameter 'weight_hh'"):
        WeightDrop(lin, "weight_hh", 0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        WeightDrop(lin, "weight", 1.5)
    with pytest.raises(ValueError, match="at least one"):
        WeightDrop(lin, [], 0.5)


def test_drop_path_and_stochastic_depth_errors_and_eval():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="drop probability has to be between 0 and 1"):
        stochastic_depth(x, 1.2, "row")
    with pytest.raises(ValueError, match="mode has to be either 'batch' or 'row'"):
        stochastic_depth(x, 0.2, "column")
    assert stochastic_depth(x, 0.5, "row", training=False) is x
    assert drop_path(x, 0.5) is x  # timm's default training=False
    assert torch.equal(stochastic_depth(x, 1.0, "batch"), x * 0)
    m = StochasticDepth(0.5, "row").eval()
    assert m(x) is x
    assert DropPath(0.5).eval()(x) is x
    assert "drop_prob=0.500" in repr(DropPath(0.5))


def test_drop_path_rows_are_zero_or_scaled():
    x = torch.randn(1000, 3)
    torch.manual_seed(4)
    y = drop_path(x, 0.25, True)
    ratio = y / x
    kept = ratio[:, 0] != 0
    assert torch.all((ratio[kept] - 1 / 0.75).abs() < 1e-6)
    assert torch.all(ratio[~kept] == 0)


def test_drop_block2d_errors_eval_and_inplace():
    x = torch.randn(2, 3, 7, 7)
    with pytest.raises(ValueError, match="input should be 4 dimensional"):
        drop_block2d(x[0], 0.1, 3)
    with pytest.raises(ValueError, match="block size should be odd"):
        drop_block2d(x, 0.1, 4)
    with pytest.raises(ValueError, match="seed_region"):
        drop_block2d(x, 0.1, 3, seed_region="middle")
    assert drop_block2d(x, 0.3, 3, training=False) is x
    assert DropBlock2d(0.3, 3).eval()(x) is x
    torch.manual_seed(5)
    out = drop_block2d(x, 0.3, 3)
    y = x.clone()
    torch.manual_seed(5)
    assert drop_block2d(y, 0.3, 3, inplace=True) is y
    assert torch.equal(y, out)


def test_drop_block2d_map_sized_block_is_channel_dropout():
    """block_size = map size: whole channels dropped, each channel all zero or all kept."""
    x = torch.ones(50, 8, 5, 5)
    torch.manual_seed(6)
    y = drop_block2d(x, 0.4, 5)
    per_channel = y.flatten(2)
    assert torch.all(per_channel.amin(-1) == per_channel.amax(-1))
