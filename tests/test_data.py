"""Offline loaders: seeded stratified splits, standardisation fitted on the training split only."""

from __future__ import annotations

import numpy as np
import pytest

from dropoutlib.data import load_digits, load_mnist1d, standardize


def test_digits_split_sizes_dtypes_and_stratification():
    d = load_digits()
    assert d.x_train.shape == (1347, 64) and d.x_test.shape == (450, 64)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert d.n_classes == 10 and d.n_features == 64
    # Stratified: every class keeps its share in both parts (within one example).
    counts_all = np.bincount(np.concatenate([d.y_train, d.y_test]), minlength=10)
    counts_test = np.bincount(d.y_test, minlength=10)
    assert np.all(np.abs(counts_test - counts_all * 0.25) <= 1)
    assert load_digits(dtype=np.float64).x_train.dtype == np.float64


def test_digits_split_is_seeded():
    a, b, c = load_digits(seed=0), load_digits(seed=0), load_digits(seed=1)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.raw_train, c.raw_train)


def test_standardisation_is_fitted_on_the_training_split_only():
    d = load_digits(dtype=np.float64)
    mean, std = d.raw_train.mean(), d.raw_train.std()
    assert d.x_train.mean() == pytest.approx(0, abs=1e-12)
    assert d.x_train.std() == pytest.approx(1, rel=1e-12)
    np.testing.assert_allclose(d.x_test, (d.raw_test - mean) / std, rtol=1e-12)
    # The test split's own statistics differ: it was not used for fitting.
    assert abs(d.x_test.mean()) > 1e-4 and abs(d.x_test.std() - 1) > 1e-4
    # Inked-once pixels are not blown up (per-pixel scaling would give values near sqrt(n)).
    assert np.abs(d.x_train).max() < 5


def test_standardize_constant_input():
    x_train = np.array([[1.0, 3.0], [1.0, 3.0]])
    xt, xs, mean, std = standardize(x_train, np.array([[2.0, 6.0]]))
    assert (mean, std) == (2.0, 1.0)
    np.testing.assert_array_equal(xt, [[-1.0, 1.0], [-1.0, 1.0]])
    np.testing.assert_array_equal(xs, [[0.0, 4.0]])


def test_subset_refits_standardisation_and_keeps_test_examples():
    d = load_digits()
    s = d.subset(100, rng=np.random.default_rng(0))
    assert len(s.y_train) == 100 and len(s.y_test) == 450
    np.testing.assert_array_equal(s.raw_test, d.raw_test)
    assert s.x_train.mean() == pytest.approx(0, abs=1e-5)
    assert load_digits(n_train=100).x_train.shape == (100, 64)
    with pytest.raises(ValueError, match=r"n must be in \[1, 1347\]"):
        d.subset(2000, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match=r"numpy\.random\.Generator"):
        d.subset(10, rng=0)


def test_mnist1d_generated_offline_and_cached():
    d = load_mnist1d()
    assert d.x_train.shape == (4000, 40) and d.x_test.shape == (1000, 40)
    assert set(np.unique(d.y_train)) == set(range(10))
    again = load_mnist1d()
    assert np.shares_memory(again.raw_train, d.raw_train) or np.array_equal(
        again.raw_train, d.raw_train
    )
    from dropoutlib.data import _mnist1d_arrays

    assert _mnist1d_arrays.cache_info().hits >= 1
    small = load_mnist1d(n_train=500, seed=3)
    assert small.x_train.shape == (500, 40)


def test_bad_loader_arguments():
    with pytest.raises(ValueError, match="test_size"):
        load_digits(test_size=1.5)
    with pytest.raises(TypeError, match="floating type"):
        load_digits(dtype=np.int32)
    d = load_digits()
    with pytest.raises(ValueError, match="read-only"):
        d.x_train[0, 0] = 1.0


def test_standardize_uses_one_scalar_for_every_feature_as_documented():
    """Regression for the docs: the module claimed per-feature standardisation, but
    :func:`standardize` fits one scalar mean and std over all training entries."""
    import dropoutlib.data

    rng = np.random.default_rng(0)
    x_train = rng.standard_normal((50, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, -5.0]
    xt, _, mean, std = standardize(x_train, x_train[:4])
    assert isinstance(mean, float) and isinstance(std, float)
    assert (mean, std) == (float(x_train.mean()), float(x_train.std()))
    np.testing.assert_array_equal(xt, (x_train - mean) / std)
    # features keep their relative scales (per-feature scaling would make every column std 1)
    assert xt[:, 2].std() / xt[:, 0].std() > 50
    assert "per-feature standardisation" not in dropoutlib.data.__doc__
    assert "one scalar" in dropoutlib.data.__doc__
