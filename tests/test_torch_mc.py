"""dropoutlib.torch.mc: switch on the dropout modules alone (MC dropout), restore modes.

Every test is deterministic (fixed seeds, or exact comparisons); none is statistical except
``test_switched_dropout_drops``, whose false-failure probability is stated there.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dropoutlib.torch as D
from dropoutlib.torch.mc import (
    DROPOUT_MODULE_TYPES,
    FunctionalDropoutWarning,
    dropout_modules,
    enable_mc_dropout,
    functional_dropout_sites,
    mc_dropout,
    mc_forward,
)


class FunctionalBlock(nn.Module):
    """A nested block that applies dropout functionally (always on: training defaults True)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(self.lin(x), 0.5)


class Net(nn.Module):
    def __init__(self, functional: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(5, 8),
            nn.BatchNorm1d(8),
            nn.ReLU(),
            nn.Sequential(nn.Dropout(0.3), nn.Linear(8, 8), D.Dropout(0.2)),
            D.GaussianDropout(0.25),
        )
        self.extra = FunctionalBlock() if functional else nn.Identity()
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.extra(self.body(x)))


def _trained_bn(net: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(32, 5) * 3 + 1)
    return net


ALL_TORCH = [
    nn.Dropout(0.5),
    nn.Dropout1d(0.5),
    nn.Dropout2d(0.5),
    nn.Dropout3d(0.5),
    nn.AlphaDropout(0.5),
    nn.FeatureAlphaDropout(0.5),
]
ALL_OURS = [
    D.Dropout(0.5),
    D.Dropout1d(0.5),
    D.Dropout2d(0.5),
    D.Dropout3d(0.5),
    D.AlphaDropout(0.5),
    D.FeatureAlphaDropout(0.5),
    D.GaussianDropout(0.5),
]


@pytest.mark.parametrize(
    "layer", ALL_TORCH + ALL_OURS, ids=lambda m: type(m).__module__ + type(m).__name__
)
def test_every_dropout_class_is_switched(layer):
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), layer)
    assert isinstance(layer, DROPOUT_MODULE_TYPES)
    assert enable_mc_dropout(net) == ["2"]
    assert [m.training for m in net] == [False, False, True]
    assert net.training is False


def test_batchnorm_and_everything_else_stay_in_eval():
    net = _trained_bn(Net())
    names = enable_mc_dropout(net)
    assert names == ["body.3.0", "body.3.2", "body.4"]
    for name, m in net.named_modules():
        assert m.training is (name in names), name


def test_running_statistics_are_used_and_not_updated():
    net = _trained_bn(Net())
    bn = net.body[1]
    mean, var, count = bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked)
    x = torch.randn(16, 5) * 3 + 1
    with mc_dropout(net):
        net(x)
    assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
    assert int(bn.num_batches_tracked) == count
    # Running statistics make each example's output independent of its batch-mates: with the
    # dropout modules removed (p = 0 everywhere) one row alone equals the same row in a batch.
    for m in net.modules():
        if isinstance(m, DROPOUT_MODULE_TYPES):
            m.p = 0.0
    with mc_dropout(net), torch.no_grad():
        alone_eval, batch_eval = net(x[:1]), net(x)[:1]
    # ... whereas model.train() normalises by the batch: the same row changes by O(1).
    net.train()
    with torch.no_grad():
        alone_train, batch_train = net(x[:2])[:1], net(x)[:1]
    # Equal up to float32 round-off (a matmul's summation order may depend on the batch size).
    assert torch.allclose(alone_eval, batch_eval, rtol=0, atol=1e-5)
    assert (alone_train - batch_train).abs().max() > 1e-2


def test_switched_dropout_drops():
    """After enable_mc_dropout the masks are live: two passes differ.

    With nn.Dropout(0.3) on 8 units x 16 rows the probability that two passes have the same
    mask everywhere is below 0.58**128 < 1e-30, so this test fails falsely with probability
    below 1e-30 (the seed is fixed anyway).
    """
    net = _trained_bn(Net())
    enable_mc_dropout(net)
    torch.manual_seed(1)
    x = torch.randn(16, 5)
    with torch.no_grad():
        assert not torch.equal(net(x), net(x))
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


@pytest.mark.parametrize("start", ["train", "eval", "mixed"])
def test_context_manager_restores_every_mode(start):
    net = _trained_bn(Net())
    if start == "eval":
        net.eval()
    elif start == "mixed":
        net.eval()
        net.body[1].train()
        net.body[3][0].eval()
        net.head.train()
    before = {n: m.training for n, m in net.named_modules()}
    with mc_dropout(net) as names:
        assert names == ["body.3.0", "body.3.2", "body.4"]
        assert net.body[1].training is False
    assert {n: m.training for n, m in net.named_modules()} == before
    with pytest.raises(ZeroDivisionError), mc_dropout(net):
        raise ZeroDivisionError
    assert {n: m.training for n, m in net.named_modules()} == before


def test_functional_dropout_is_detected_and_warned():
    net = _trained_bn(Net(functional=True))
    assert functional_dropout_sites(net) == ["extra"]
    with pytest.warns(FunctionalDropoutWarning, match=r"'extra'.*training` defaults to True"):
        enable_mc_dropout(net)
    # The warning is true: the functional dropout drops in eval mode too.
    net.eval()
    torch.manual_seed(2)
    x = torch.randn(4, 5)
    with torch.no_grad():
        assert not torch.equal(net(x), net(x))


def test_no_warning_for_a_model_with_dropout_modules_only():
    net = Net()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enable_mc_dropout(net)
    enable_mc_dropout(Net(functional=True), warn=False)  # silenced on request


def test_scaled_dot_product_attention_in_forward_is_detected():
    class Attn(nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v, dropout_p=0.1)

    net = nn.Sequential(nn.Linear(2, 2), Attn())
    assert functional_dropout_sites(net) == ["1"]
    with pytest.warns(FunctionalDropoutWarning, match="scaled_dot_product_attention"):
        enable_mc_dropout(net)


def test_a_comment_is_not_a_call():
    class Commented(nn.Module):
        def forward(self, x):
            return x  # not F.dropout(x) any more

    assert functional_dropout_sites(Commented()) == []


def test_no_dropout_at_all_warns():
    with pytest.warns(UserWarning, match="no dropout module"):
        assert enable_mc_dropout(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))) == []


def test_multihead_attention_and_transformer_layers():
    layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, dropout=0.5)
    layer.add_module("norm_bn", nn.BatchNorm1d(8))  # a BatchNorm to leave in eval
    names = enable_mc_dropout(layer)
    assert set(names) == {"self_attn", "dropout", "dropout1", "dropout2"}
    assert layer.training is False and layer.norm_bn.training is False
    assert layer.self_attn.out_proj.training is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enable_mc_dropout(layer)  # attention is switched: nothing left to warn about
    with pytest.warns(FunctionalDropoutWarning, match="'self_attn'"):
        names = enable_mc_dropout(layer, attention=False)
    assert "self_attn" not in names and layer.self_attn.training is False
    # The switched attention module really drops its attention weights: with the other
    # dropout modules at p = 0, two passes differ only through attention dropout.
    for m in (layer.dropout, layer.dropout1, layer.dropout2):
        m.p = 0.0
    enable_mc_dropout(layer)
    torch.manual_seed(3)
    x = torch.randn(5, 2, 8)
    with torch.no_grad():
        assert not torch.equal(layer(x), layer(x))
        enable_mc_dropout(layer, attention=False, warn=False)
        assert torch.equal(layer(x), layer(x))


def test_dropout_modules_lists_names_in_order():
    assert [n for n, _ in dropout_modules(Net())] == ["body.3.0", "body.3.2", "body.4"]
    root = nn.Dropout(0.1)
    assert dropout_modules(root) == [("", root)]


def test_mc_forward_is_reproducible_from_a_seed_and_a_generator():
    net = _trained_bn(Net())
    x = torch.randn(6, 5)
    a = mc_forward(net, x, 4, seed=7)
    assert a.shape == (4, 6, 3)
    assert torch.equal(a, mc_forward(net, x, 4, seed=7))
    assert not torch.equal(a[0], a[1])  # distinct masks per pass
    assert not torch.equal(a, mc_forward(net, x, 4, seed=8))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(mc_forward(net, x, 3, generator=g1), mc_forward(net, x, 3, generator=g2))
    assert torch.equal(g1.get_state(), g2.get_state())


def test_mc_forward_equals_manual_seed_then_passes_and_leaves_global_state():
    """The passes are exactly those of manual_seed(seed) followed by T forwards in MC mode."""
    net = _trained_bn(Net())
    x = torch.randn(6, 5)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    out = mc_forward(net, x, 3, seed=11)
    assert torch.equal(torch.get_rng_state(), state)  # fork_rng: caller's stream untouched
    was = {n: m.training for n, m in net.named_modules()}
    torch.manual_seed(11)
    enable_mc_dropout(net)
    with torch.no_grad():
        manual = torch.stack([net(x) for _ in range(3)])
    assert torch.equal(out, manual)
    assert all(was.values())  # mc_forward restored the train mode _trained_bn left


def test_bad_input():
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        enable_mc_dropout(object())
    with pytest.raises(ValueError, match="exactly one"):
        mc_forward(Net(), torch.randn(2, 5), 2)
    with pytest.raises(ValueError, match="exactly one"):
        mc_forward(Net(), torch.randn(2, 5), 2, seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="positive integer"):
        mc_forward(Net(), torch.randn(2, 5), 0, seed=1)


def test_mc_forward_seeds_only_the_generators_it_restores(monkeypatch):
    """Review 15: torch.manual_seed also reseeds every CUDA device, which fork_rng(devices=[])
    does not restore; mc_forward on a CPU input must leave the CUDA generators alone."""
    calls = []
    for name in ("manual_seed_all", "manual_seed"):
        monkeypatch.setattr(torch.cuda, name, lambda seed, name=name: calls.append(name))
    net = Net()
    x = torch.randn(6, 5)
    out = mc_forward(net, x, 3, seed=11)
    assert calls == []
    torch.manual_seed(11)  # the CPU passes are unchanged: those of manual_seed(11)
    enable_mc_dropout(net)
    with torch.no_grad():
        assert torch.equal(out, torch.stack([net(x) for _ in range(3)]))
