"""Torch locked, embedding and concrete dropout, the variational GRU, nn.LSTM's dropout, R-Drop.

Parity tests are bit for bit under the same torch seed where torch has the same computation;
gradients are checked with torch.autograd.gradcheck (finite differences, float64).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dropoutlib.numpy import concrete_regularizer, concrete_regularizer_backward
from dropoutlib.stats import binomial_acceptance
from dropoutlib.torch import (
    ConcreteDropout,
    Dropout,
    EmbeddingDropout,
    LockedDropout,
    VariationalGRU,
    concrete_dropout,
    concrete_regularization,
    embedding_dropout,
    locked_dropout,
    r_drop_loss,
    set_dropout_p,
    stacked_lstm,
    symmetric_kl,
)

# --- locked dropout ---------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_locked_dropout_equals_dropout_of_a_broadcast_mask(p):
    """Bit for bit: F.dropout on a (1, B, H) tensor of ones, broadcast over time; and the
    algorithm of AWD-LSTM's LockedDropout (salesforce/awd-lstm-lm, locked_dropout.py:
    ``x.data.new(1, B, H).bernoulli_(1 - p) / (1 - p) * x``), with the same seed."""
    x = torch.randn(7, 4, 6)
    torch.manual_seed(3)
    y = locked_dropout(x, p)
    state = torch.get_rng_state()
    torch.manual_seed(3)
    ref = F.dropout(torch.ones(1, 4, 6), p) * x
    assert torch.equal(y, ref)
    assert torch.equal(torch.get_rng_state(), state)  # same random numbers consumed
    torch.manual_seed(3)
    awd = x.new_empty(1, 4, 6).bernoulli_(1 - p) / (1 - p) * x
    assert torch.equal(y, awd)
    torch.manual_seed(3)
    yb = LockedDropout(p, batch_first=True)(x.transpose(0, 1).contiguous())
    torch.manual_seed(3)
    refb = F.dropout(torch.ones(4, 1, 6), p) * x.transpose(0, 1)
    assert torch.equal(yb, refb)


def test_locked_dropout_modes_and_errors():
    x = torch.randn(3, 2, 4)
    m = LockedDropout(0.5).eval()
    assert m(x) is x
    assert locked_dropout(x, 0.0) is x
    assert torch.all(locked_dropout(x, 1.0) == 0)
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        LockedDropout(1.5)
    with pytest.raises(ValueError, match="3-d"):
        locked_dropout(x[0], 0.5)
    assert repr(LockedDropout(0.25)) == "LockedDropout(p=0.25, batch_first=False)"


def test_locked_dropout_masks_are_shared_over_time_statistically():
    """Zero pattern identical at every step (exact); kept fraction Binomial(B*H, 1-p) within
    bounds of false-failure probability 1e-9."""
    torch.manual_seed(0)
    y = locked_dropout(torch.ones(5, 300, 100), 0.4)
    kept = y != 0
    assert torch.equal(kept, kept[:1].expand_as(kept))
    lo, hi = binomial_acceptance(300 * 100, 0.6, 1e-9)
    assert lo <= int(kept[0].sum()) <= hi


def test_locked_dropout_gradcheck():
    x = torch.randn(3, 2, 4, dtype=torch.float64, requires_grad=True)

    def f(v):
        torch.manual_seed(7)  # the same mask at every evaluation
        return locked_dropout(v, 0.4)

    assert torch.autograd.gradcheck(f, (x,))


# --- the variational GRU and nn.LSTM's dropout --------------------------------------------------


def test_variational_gru_without_dropout_matches_nn_gru():
    torch.manual_seed(0)
    ref = nn.GRU(5, 8)
    ours = VariationalGRU(5, 8, dropout_input=0.3, dropout_hidden=0.3)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(6, 3, 5)
    out_ref, h_ref = ref(x)
    ours.eval()
    out, h = ours(x)
    torch.testing.assert_close(out, out_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(h, h_ref[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("locked", [True, False])
def test_variational_gru_masks_by_reconstruction(locked):
    """The training forward equals the GRU equations with the masks drawn in the documented
    order (input mask first, then the recurrent mask once, or once per step)."""
    torch.manual_seed(1)
    g = VariationalGRU(4, 5, dropout_input=0.3, dropout_hidden=0.4, locked=locked)
    x = torch.randn(5, 3, 4)
    torch.manual_seed(2)
    out, _ = g(x)
    torch.manual_seed(2)
    mx = x.new_empty((1 if locked else 5, 3, 4)).bernoulli_(0.7).div_(0.7)
    masks_h = [x.new_empty(3, 5).bernoulli_(0.6).div_(0.6)]
    if not locked:
        masks_h += [x.new_empty(3, 5).bernoulli_(0.6).div_(0.6) for _ in range(4)]
    cell = nn.GRUCell(4, 5)
    with torch.no_grad():
        cell.weight_ih.copy_(g.weight_ih_l0)
        cell.weight_hh.copy_(g.weight_hh_l0)
        cell.bias_ih.copy_(g.bias_ih_l0)
        cell.bias_hh.copy_(g.bias_hh_l0)
    h = torch.zeros(3, 5)
    for t in range(5):
        xd = x[t] * mx[0 if locked else t]
        hd = h * masks_h[0 if locked else t]
        # GRUCell on the dropped state, then the update uses the undropped state
        gi = F.linear(xd, cell.weight_ih, cell.bias_ih).chunk(3, 1)
        gh = F.linear(hd, cell.weight_hh, cell.bias_hh).chunk(3, 1)
        r, z = torch.sigmoid(gi[0] + gh[0]), torch.sigmoid(gi[1] + gh[1])
        n = torch.tanh(gi[2] + r * gh[2])
        h = (1 - z) * n + z * h
        torch.testing.assert_close(out[t], h, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_stacked_lstm_reproduces_nn_lstm_dropout_bit_for_bit(p):
    """nn.LSTM(num_layers=3, dropout=p) == one-layer LSTMs with dropoutlib's dropout between
    them (not after the last layer, not on the recurrent state), with the same seed."""
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 7, num_layers=3, dropout=p)
    layers = [nn.LSTM(5, 7), nn.LSTM(7, 7), nn.LSTM(7, 7)]
    with torch.no_grad():
        for i, layer in enumerate(layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(layer, f"{name}_l0").copy_(getattr(lstm, f"{name}_l{i}"))
    x = torch.randn(6, 4, 5, requires_grad=True)
    torch.manual_seed(11)
    y, (h, c) = lstm(x)
    state = torch.get_rng_state()
    torch.manual_seed(11)
    y2, (h2, c2) = stacked_lstm(layers, x, p)
    assert torch.equal(y, y2) and torch.equal(h, h2) and torch.equal(c, c2)
    assert torch.equal(torch.get_rng_state(), state)
    (gx,) = torch.autograd.grad(y.sum(), x)
    (gx2,) = torch.autograd.grad(y2.sum(), x)
    torch.testing.assert_close(gx, gx2, rtol=1e-6, atol=1e-7)
    # the last layer's output is not dropped: no exact zeros in it
    assert (y != 0).all()
    # in eval there is no dropout at all
    lstm.eval()
    torch.manual_seed(11)
    y_eval, _ = lstm(x)
    y_eval2, _ = stacked_lstm(layers, x, p, training=False)
    assert torch.equal(y_eval, y_eval2)


def test_nn_lstm_dropout_draws_one_mask_per_element_of_the_layer_output():
    """The random numbers nn.LSTM consumes are exactly those of one dropout over each
    (T, B, H) intermediate output: a fresh mask per time step, unlike locked dropout."""
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, num_layers=2, dropout=0.5)
    x = torch.randn(9, 2, 3)
    torch.manual_seed(5)
    lstm(x)
    after = torch.get_rng_state()
    torch.manual_seed(5)
    torch.empty(9, 2, 4).bernoulli_(0.5)
    assert torch.equal(torch.get_rng_state(), after)


# --- embedding dropout ------------------------------------------------------------------------


def test_embedding_dropout_equals_f_embedding_on_a_row_masked_weight():
    torch.manual_seed(0)
    emb = nn.Embedding(20, 6, padding_idx=0)
    layer = EmbeddingDropout(emb, 0.3)
    idx = torch.randint(0, 20, (4, 9))
    torch.manual_seed(4)
    y = layer(idx)
    torch.manual_seed(4)
    mask = torch.empty(20, 1).bernoulli_(0.7).div_(0.7)  # F.dropout's noise for (V, 1)
    ref = F.embedding(idx, emb.weight * mask, padding_idx=0)
    assert torch.equal(y, ref)
    torch.manual_seed(4)
    assert torch.equal(y, F.embedding(idx, F.dropout(torch.ones(20, 1), 0.3) * emb.weight))
    # whole words: every occurrence of a word is all-zero or all-kept
    dropped = (mask[:, 0] == 0).nonzero().flatten().tolist()
    kept_words = set(idx.flatten().tolist()) - set(dropped)
    for v in dropped:
        assert (y[idx == v] == 0).all()
    for v in kept_words:
        if v != 0:
            assert (y[idx == v] != 0).all()
    layer.eval()
    assert torch.equal(layer(idx), emb(idx))
    assert torch.equal(embedding_dropout(idx, emb.weight, 0.0), emb(idx))
    with pytest.raises(TypeError, match=r"nn\.Embedding"):
        EmbeddingDropout(nn.Linear(2, 2))


def test_embedding_dropout_gradcheck():
    w = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    idx = torch.tensor([[0, 4, 4], [2, 0, 1]])

    def f(v):
        torch.manual_seed(3)
        return embedding_dropout(idx, v, 0.4)

    assert torch.autograd.gradcheck(f, (w,))


# --- concrete dropout -------------------------------------------------------------------------


def test_concrete_dropout_gradcheck_in_x_and_p():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    p = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)

    def f(v, q):
        torch.manual_seed(5)
        return concrete_dropout(v, q, temperature=0.5)

    assert torch.autograd.gradcheck(f, (x, p))


def test_concrete_dropout_module_regularizer_matches_numpy():
    torch.manual_seed(0)
    layer = ConcreteDropout(
        nn.Linear(4, 3).double(), weight_regularizer=0.01, dropout_regularizer=0.02, init_p=0.2
    )
    assert float(layer.p.detach()) == pytest.approx(0.2, rel=1e-6)
    reg = layer.regularization()
    w = layer.layer.weight.detach().numpy()
    kw = {"weight_regularizer": 0.01, "dropout_regularizer": 0.02, "input_dim": 4}
    p = float(layer.p.detach())
    assert reg.item() == pytest.approx(concrete_regularizer(w, p, **kw), rel=1e-12)
    reg.backward()
    gw, gp = concrete_regularizer_backward(w, p, **kw)
    np.testing.assert_allclose(layer.layer.weight.grad.numpy(), gw, rtol=1e-12)
    # d/d rho = dR/dp * p (1 - p)
    assert float(layer.p_logit.grad) == pytest.approx(gp * p * (1 - p), rel=1e-10)
    model = nn.Sequential(layer, nn.ReLU(), ConcreteDropout(nn.Linear(3, 1).double()))
    total = concrete_regularization(model)
    assert total.item() == pytest.approx(reg.item() + model[2].regularization().item())
    with pytest.raises(ValueError, match="no ConcreteDropout"):
        concrete_regularization(nn.Linear(2, 2))
    # evaluation: the plain layer, no noise
    model.eval()
    x = torch.randn(5, 4, dtype=torch.float64)
    assert torch.equal(model(x), model[2].layer(torch.relu(layer.layer(x))))


def test_concrete_dropout_learns_p_downwards_when_the_data_term_wins():
    """A property of the objective, not a statistical claim: with a noiseless linear target,
    a negligible regulariser and the data term's gradient, p falls from 0.3 (deterministic:
    fixed seeds, one thread)."""
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    layer = ConcreteDropout(nn.Linear(4, 1), weight_regularizer=1e-8, dropout_regularizer=1e-6,
                            init_p=0.3)  # fmt: skip
    opt = torch.optim.Adam(layer.parameters(), lr=0.01)
    for _ in range(300):
        opt.zero_grad()
        loss = F.mse_loss(layer(x)[:, 0], y) + layer.regularization()
        loss.backward()
        opt.step()
    assert float(layer.p.detach()) < 0.15


# --- R-Drop and schedules ---------------------------------------------------------------------


def test_symmetric_kl_matches_the_kl_div_form_of_the_authors_code():
    """R-Drop's ``compute_kl_loss`` (dropreg/R-Drop README): kl_div(log_softmax(p),
    softmax(q)) and the reverse, summed, halved; divided here by the batch size."""
    a = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    ref = (
        (
            F.kl_div(F.log_softmax(a, -1), F.softmax(b, -1), reduction="sum")
            + F.kl_div(F.log_softmax(b, -1), F.softmax(a, -1), reduction="sum")
        )
        / 2
        / 8
    )
    torch.testing.assert_close(symmetric_kl(a, b), ref, rtol=1e-12, atol=1e-14)
    assert symmetric_kl(a, a).item() == pytest.approx(0.0, abs=1e-15)
    assert torch.autograd.gradcheck(symmetric_kl, (a, b))
    y = torch.randint(0, 5, (8,))
    loss = r_drop_loss(a, b, y, 2.0)
    ce = (F.cross_entropy(a, y) + F.cross_entropy(b, y)) / 2
    torch.testing.assert_close(loss, ce + 2.0 * ref, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="alpha"):
        r_drop_loss(a, b, y, -1.0)


def test_set_dropout_p_reaches_every_dropout_layer():
    model = nn.Sequential(
        EmbeddingDropout(nn.Embedding(5, 4), 0.1), LockedDropout(0.2), nn.Dropout(0.3),
        Dropout(0.4), VariationalGRU(4, 4, dropout_input=0.1), nn.Linear(4, 2),
    )  # fmt: skip
    assert set_dropout_p(model, 0.0) == 5
    assert model[0].p == model[1].p == model[2].p == model[3].p == 0.0
    assert model[4].dropout_input == model[4].dropout_hidden == 0.0
    with pytest.raises(ValueError):
        set_dropout_p(model, 2.0)


# --- the committed sweeps -----------------------------------------------------------------------

#: Another CPU's BLAS may round differently and flip a few predictions (as in
#: tests/test_experiments.py); on the machine that made the files the re-run is identical.
ACC_TOLERANCE = 0.01


@pytest.mark.parametrize("name", ["recurrent_embedding"])
def test_one_point_of_a_classification_sweep_reproduces(name):
    from dropoutlib.experiments import load_results
    from dropoutlib.experiments.recurrent import point

    res = load_results(name)
    assert res.meta["quick"] is False and len(res.seeds) >= 5
    row = next(r for r in res.rows if r["arm"] == "word dropout" and r["budget"] == "base")
    setting = {k: row[k] for k in ("arm", "p", "budget")}
    again = point(name, row["seed"], setting, res.config)
    assert again["test_acc"] == pytest.approx(row["test_acc"], abs=ACC_TOLERANCE)
    assert again["best_epoch"] == pytest.approx(row["best_epoch"], abs=3)


def test_one_point_of_the_concrete_sweep_reproduces():
    from dropoutlib.experiments import load_results
    from dropoutlib.experiments.recurrent import point

    res = load_results("recurrent_concrete")
    row = res.select(n=10, doubled=False, seed=0)[0]
    again = point("recurrent_concrete", 0, {"n": 10, "doubled": False}, res.config)
    for key in ("p_input", "p_hidden1", "p_hidden2"):
        assert again[key] == pytest.approx(row[key], rel=0.05, abs=0.005)


def test_schedules_file_has_the_codes_arms_and_completing_it_reproduces_the_control(tmp_path):
    """The committed schedules file holds exactly the final settings the code derives from its
    own grid; removing R-Drop's control (two passes, alpha = 0) from a one-seed copy and
    completing it re-trains just those points and puts back the committed rows, in order."""
    import json

    from dropoutlib.experiments import load_results
    from dropoutlib.experiments.recurrent import _finals, complete

    res = load_results("recurrent_schedules")
    assert res.settings == _finals(res.name, res.extras["grid"], res.config)
    control = [st for st in res.settings if st["arm"] == "two passes"]
    assert [st["alpha"] for st in control] == [0.0, 0.0] and all(
        st["p"] == res.select(arm="R-Drop")[0]["p"] for st in control
    )
    data = json.loads(res.to_json())
    data["seeds"] = [0]
    data["settings"] = [st for st in res.settings if st["arm"] != "two passes"]
    data["rows"] = [r for r in res.rows if r["seed"] == 0 and r["arm"] != "two passes"]
    del data["extras"]["curves"]["two passes, seed 0"]
    path = tmp_path / "schedules.json"
    path.write_text(json.dumps(data))
    done = complete(str(path))
    want = [r for r in res.rows if r["seed"] == 0]
    assert [r["arm"] for r in done.rows] == [r["arm"] for r in want]
    assert done.meta["completed"][-1]["added"] == control
    for got, row in zip(done.rows, want, strict=True):
        if row["arm"] != "two passes":
            assert got == row
        else:
            assert got["test_acc"] == pytest.approx(row["test_acc"], abs=ACC_TOLERANCE)
            assert got["best_epoch"] == pytest.approx(row["best_epoch"], abs=3)
