"""Every pitfall of chapter 16 (book/16-pitfalls.ipynb), checked on the installed torch (2.13).

A PyTorch release that changes one of these behaviours fails here, and the chapter's text has
to change with it. Tests are deterministic (fixed seeds); the one statistical assertion,
``test_variance_shift_matches_the_derivation``, states its tolerance and why it holds.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from dropoutlib.torch import FunctionalDropoutWarning, enable_mc_dropout, mc_dropout

ROOT = Path(__file__).resolve().parents[1]


class _Functional(nn.Module):
    def __init__(self, fixed: bool) -> None:
        super().__init__()
        self.fixed = fixed

    def forward(self, x):
        if self.fixed:
            return F.dropout(x, 0.5, training=self.training)
        return F.dropout(x, 0.5)


def test_functional_dropout_ignores_eval_and_training_flag_fixes_it():
    torch.manual_seed(0)
    x = torch.randn(4, 8)
    bug, fixed = _Functional(False).eval(), _Functional(True).eval()
    assert not torch.equal(bug(x), bug(x))
    assert torch.equal(fixed(x), x)
    assert inspect.signature(F.dropout).parameters["training"].default is True


def test_sdpa_drops_whenever_dropout_p_is_positive():
    torch.manual_seed(0)
    q = torch.randn(2, 4, 5, 8)
    with pytest.raises(TypeError):  # there is no training= argument to pass
        F.scaled_dot_product_attention(q, q, q, dropout_p=0.3, training=False)
    with torch.no_grad():
        assert not torch.equal(
            F.scaled_dot_product_attention(q, q, q, dropout_p=0.3),
            F.scaled_dot_product_attention(q, q, q, dropout_p=0.3),
        )
        a = F.scaled_dot_product_attention(q, q, q, dropout_p=0.0)
        assert torch.equal(a, F.scaled_dot_product_attention(q, q, q, dropout_p=0.0))


def test_helper_warns_about_functional_dropout():
    model = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Dropout(0.2), _Functional(False))
    with pytest.warns(FunctionalDropoutWarning, match="'3'"):
        assert enable_mc_dropout(model) == ["2"]


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_no_grad_is_not_eval(context):
    torch.manual_seed(0)
    x = torch.randn(4, 8)
    net = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.BatchNorm1d(8)).train()
    bn = net[2]
    with context():
        assert not torch.equal(net(x), net(x))
    assert int(bn.num_batches_tracked) == 2  # BatchNorm updated its statistics too
    net.eval()
    with context():
        assert torch.equal(net(x), net(x))


@pytest.mark.parametrize(
    ("producer", "breaks"),
    [
        (torch.relu, True),
        (torch.sigmoid, True),
        (torch.tanh, True),
        (lambda t: torch.softmax(t, 0), True),
        (F.gelu, False),
        (F.leaky_relu, False),
        (lambda t: t * 2, False),
    ],
)
def test_inplace_dropout_breaks_when_the_producer_saved_its_output(producer, breaks):
    w = torch.randn(8, requires_grad=True)
    torch.manual_seed(1)
    y = F.dropout(producer(w), 0.5, inplace=True)
    if breaks:
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.sum().backward()
    else:
        (g,) = torch.autograd.grad(y.sum(), w)
        torch.manual_seed(1)
        (ref,) = torch.autograd.grad(F.dropout(producer(w), 0.5).sum(), w)
        assert torch.equal(g, ref)


def test_dropout2d_on_3d_input_warns_and_is_dropout1d():
    x = torch.ones(2, 3, 4)
    torch.manual_seed(3)
    with pytest.warns(UserWarning, match=r"Received a 3D input to dropout2d.*dropout1d instead"):
        out2d = nn.Dropout2d(0.5)(x)
    torch.manual_seed(3)
    assert torch.equal(out2d, nn.Dropout1d(0.5)(x))
    assert (out2d == out2d[..., :1]).all()


def test_a_framework_eval_undoes_train_and_mc_dropout_inside_the_step_survives():
    torch.manual_seed(0)
    x = torch.randn(4, 8)
    net = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5))
    net.train()
    net.eval()  # what the framework's loop does before calling the step
    with torch.no_grad():
        assert torch.stack([net(x) for _ in range(4)]).std(0).max() == 0
        with mc_dropout(net):
            assert net[1].training is False
            assert torch.stack([net(x) for _ in range(4)]).std(0).max() > 0
    assert net.training is False and net[3].training is False


def test_functional_dropout_has_no_generator_and_bernoulli_rebuilds_it():
    x = torch.randn(4, 8)
    with pytest.raises(TypeError, match="unexpected keyword argument 'generator'"):
        F.dropout(x, 0.5, generator=torch.Generator())
    for p in (0.1, 0.3, 0.5):
        torch.manual_seed(7)
        expected = F.dropout(x, p)
        g = torch.Generator().manual_seed(7)
        noise = torch.empty_like(x).bernoulli_(1 - p, generator=g)
        assert torch.equal(x * noise.div_(1 - p), expected)


def test_fork_rng_restores_the_global_state():
    torch.manual_seed(11)
    before = torch.get_rng_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        F.dropout(torch.ones(10), 0.5)
    assert torch.equal(torch.get_rng_state(), before)


def _checkpoint_run(block, masks, x, use_checkpoint, preserve=True):
    masks.clear()
    torch.manual_seed(5)
    xg = x.clone().requires_grad_()
    if use_checkpoint:
        y = checkpoint(block, xg, use_reentrant=False, preserve_rng_state=preserve)
    else:
        y = block(xg)
    y.square().sum().backward()
    return xg.grad, [m.clone() for m in masks]


def test_checkpoint_replays_masks_only_with_preserve_rng_state():
    torch.manual_seed(0)
    x = torch.randn(4, 8)
    block = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 8))
    masks: list[torch.Tensor] = []
    block[1].register_forward_hook(lambda m, i, out: masks.append(out == 0))
    g_plain, (m_plain,) = _checkpoint_run(block, masks, x, False)
    g_ckpt, (m_fwd, m_re) = _checkpoint_run(block, masks, x, True, True)
    assert torch.equal(m_fwd, m_plain) and torch.equal(m_re, m_plain)
    assert torch.equal(g_ckpt, g_plain)
    g_bad, (b_fwd, b_re) = _checkpoint_run(block, masks, x, True, False)
    assert torch.equal(b_fwd, m_plain) and not torch.equal(b_re, b_fwd)
    assert not torch.equal(g_bad, g_plain)


def test_manual_seed_seeds_every_device():
    impl = inspect.getsource(torch.random._manual_seed_impl)
    for call in (
        "torch.cuda.manual_seed_all(seed)",
        "torch.mps.manual_seed(seed)",
        "torch.xpu.manual_seed_all(seed)",
        "torch.mtia.manual_seed_all(seed)",
    ):
        assert call in impl
    assert "all devices" in inspect.getdoc(torch.manual_seed)


def test_cuda_facts_show_unrelated_cpu_and_cuda_masks():
    facts = json.loads((ROOT / "benchmarks/results/cuda_facts.json").read_text())
    same = facts["checks"]["masks"]["cpu_vs_cuda_same_seed"]
    assert not same["identical"] and abs(same["fraction_of_elements_equal"] - 0.5) < 0.01
    if torch.cuda.is_available():  # checked live where a GPU exists
        torch.manual_seed(0)
        cpu = F.dropout(torch.ones(65536), 0.5) == 0
        torch.manual_seed(0)
        gpu = F.dropout(torch.ones(65536, device="cuda"), 0.5).cpu() == 0
        assert not torch.equal(cpu, gpu)


def test_variance_shift_matches_the_derivation():
    r"""BatchNorm's running_var after dropout equals Var(u) + p/(1-p) sum_k W^2 E[a^2].

    Weights are random (the identity holds for any weights). running_var is the average of
    40 unbiased batch variances of 256 rows each; the relative standard error of such an
    estimate is about sqrt(2 / 10240) = 1.4 % per unit (more for heavy-tailed units), so
    the median ratio over 32 units within 3 % of 1 and every unit within 12 % are many
    standard errors wide; the seed is fixed.
    """
    torch.manual_seed(0)
    p = 0.5
    a = torch.relu(torch.randn(2048, 16) * 1.5 + 0.5)
    lin, bn = nn.Linear(16, 32), nn.BatchNorm1d(32, momentum=None)
    u = lin(a).detach()
    derived = u.var(0) + p / (1 - p) * (lin.weight.detach() ** 2) @ (a**2).mean(0)
    model = nn.Sequential(nn.Dropout(p), lin, bn).train()
    with torch.no_grad():
        for _ in range(5):
            for idx in torch.randperm(len(a)).split(256):
                model(a[idx])
    ratio = bn.running_var / derived
    assert abs(ratio.median().item() - 1) < 0.03
    assert ((ratio - 1).abs() < 0.12).all()
    # The shift: at test time the units' variance is a fraction of what BN divides by.
    assert (u.var(0) / bn.running_var < 0.9).all()
