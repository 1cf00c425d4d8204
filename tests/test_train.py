"""Mini-batches, the training loop, evaluation modes and unit ablation."""

from __future__ import annotations

import numpy as np
import pytest

from dropoutlib.data import load_digits
from dropoutlib.numpy.nn import Dropout, Linear, ReLU, Sequential
from dropoutlib.numpy.optim import SGD
from dropoutlib.train import (
    blas_threads,
    evaluate,
    fit,
    minibatches,
    predict_proba,
    seed_sweep,
    unit_ablation,
)
from dropoutlib.train import mlp as mlp_builder


def mlp(rng, hidden=64, p=0.0):
    return Sequential(
        Linear(64, hidden, rng=rng), ReLU(), Dropout(p, rng=rng), Linear(hidden, 10, rng=rng)
    )


def test_minibatches_cover_every_example_once():
    batches = list(minibatches(10, 4, rng=np.random.default_rng(0)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    unshuffled = list(minibatches(5, 2, rng=np.random.default_rng(0), shuffle=False))
    assert np.concatenate(unshuffled).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="batch_size"):
        list(minibatches(5, 0, rng=np.random.default_rng(0)))
    with pytest.raises(TypeError, match=r"numpy\.random\.Generator"):
        list(minibatches(5, 2, rng=None))


def test_fit_memorises_a_small_training_set():
    """A 64-256-10 network must fit 100 digits perfectly; the test set stays clearly worse."""
    data = load_digits(n_train=100)
    rng = np.random.default_rng(1)
    model = mlp(rng, hidden=256)
    history = fit(
        model, data, SGD(model.parameters(), 0.05, momentum=0.9), epochs=60, batch_size=20, rng=rng
    )
    assert len(history.epoch) == 61 and history.epoch[-1] == 60
    assert history.train_acc[-1] == 1.0
    assert history.train_loss[-1] < 0.05 < history.test_loss[-1]
    assert history.train_loss[-1] < history.train_loss[0]
    assert 0.7 < history.test_acc[-1] < 1.0
    arrays = history.as_arrays()
    assert arrays["test_acc"].shape == (61,) and np.isnan(arrays["batch_loss"][0])


def test_fit_is_reproducible_and_leaves_training_mode():
    data = load_digits(n_train=200)

    def run():
        rng = np.random.default_rng(2)
        model = mlp(rng, p=0.5)
        h = fit(model, data, SGD(model.parameters(), 0.05), epochs=2, batch_size=50, rng=rng)
        return model, h

    (m1, h1), (_, h2) = run(), run()
    assert h1.test_loss == h2.test_loss and h1.batch_loss[1:] == h2.batch_loss[1:]
    assert all(m.training for m in m1.modules())


def test_evaluate_uses_eval_mode_and_restores_the_mode():
    data = load_digits(n_train=200)
    rng = np.random.default_rng(3)
    model = mlp(rng, p=0.5)
    a = evaluate(model, data.x_test, data.y_test)
    b = evaluate(model, data.x_test, data.y_test)
    assert a == b  # deterministic: no dropout in evaluation
    assert model.training
    proba = predict_proba(model.eval(), data.x_test)
    assert not model.training
    assert proba.shape == (450, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)


def test_on_epoch_end_can_schedule_the_learning_rate():
    data = load_digits(n_train=50)
    rng = np.random.default_rng(4)
    model = mlp(rng)
    opt = SGD(model.parameters(), 0.1)
    seen = []

    def decay(epoch, model, optimizer):
        seen.append(epoch)
        optimizer.lr *= 0.5

    fit(model, data, opt, epochs=3, batch_size=25, rng=rng, on_epoch_end=decay)
    assert seen == [1, 2, 3] and opt.lr == pytest.approx(0.0125)


def test_unit_ablation_matches_zeroing_the_unit():
    data = load_digits(n_train=200, dtype=np.float64)
    rng = np.random.default_rng(5)
    model = Sequential(
        Linear(64, 8, rng=rng, dtype=np.float64),
        ReLU(),
        Linear(8, 10, rng=rng, dtype=np.float64),
    )
    before = model[2].weight.data.copy()
    losses = unit_ablation(model, 0, data.x_test, data.y_test)
    np.testing.assert_array_equal(model[2].weight.data, before)
    # Unit 3 removed by hand: zero its activation.
    h = np.maximum(data.x_test @ model[0].weight.data.T + model[0].bias.data, 0)
    h[:, 3] = 0
    logits = h @ model[2].weight.data.T + model[2].bias.data
    from dropoutlib.numpy.nn import softmax_cross_entropy

    assert losses[3] == pytest.approx(softmax_cross_entropy(logits, data.y_test)[0], rel=1e-12)
    with pytest.raises(TypeError, match="must be a Linear layer"):
        unit_ablation(model, 1, data.x_test, data.y_test)
    with pytest.raises(ValueError, match="no Linear layer follows"):
        unit_ablation(model, 2, data.x_test, data.y_test)


def test_bad_fit_arguments():
    data = load_digits(n_train=50)
    rng = np.random.default_rng(6)
    model = mlp(rng)
    opt = SGD(model.parameters(), 0.1)
    with pytest.raises(ValueError, match="epochs"):
        fit(model, data, opt, epochs=-1, batch_size=10, rng=rng)
    with pytest.raises(TypeError, match=r"numpy\.random\.Generator"):
        fit(model, data, opt, epochs=1, batch_size=10, rng=42)


def test_mlp_layout_and_seed_sweep_reproducibility():
    rng = np.random.default_rng(7)
    net = mlp_builder(10, (8, 6), 3, rng=rng, p_input=0.2, p_hidden=0.5)
    kinds = [type(m).__name__ for m in net.layers]
    assert kinds == ["Dropout", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    plain = mlp_builder(10, (8,), 3, rng=rng, dtype=np.float64)
    assert [type(m).__name__ for m in plain.layers] == ["Linear", "ReLU", "Linear"]
    assert plain[0].weight.data.dtype == np.float64
    data = load_digits(n_train=60)
    a = seed_sweep(data, seeds=(0, 1), widths=(16,), p_hidden=0.5, epochs=2, batch_size=20)
    b = seed_sweep(data, seeds=(0, 1), widths=(16,), p_hidden=0.5, epochs=2, batch_size=20)
    assert [h.test_loss for h in a] == [h.test_loss for h in b]
    assert a[0].test_loss != a[1].test_loss


def test_blas_threads_limits_and_restores():
    from threadpoolctl import threadpool_info

    before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    with blas_threads(1):
        inside = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert all(n == 1 for n in inside) and after == before
