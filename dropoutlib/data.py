"""Offline data sets for the book: scikit-learn's digits and MNIST-1D (generated, never downloaded).

API (stable):

- :class:`Dataset`: ``x_train, y_train, x_test, y_test`` (features float32 by default, labels
  int64), ``name``, ``n_classes``, ``n_features``; ``subset(n, rng=...)`` returns a smaller
  training set (test set unchanged, standardisation refitted on the subset).
- :func:`load_digits` ``(*, test_size=0.25, seed=0, n_train=None, dtype=np.float32)``
- :func:`load_mnist1d` ``(*, n_train=None, seed=0, dtype=np.float32)``
- :func:`standardize` ``(x_train, x_test)``: standardisation with **one scalar** mean and
  standard deviation (of all entries of the training split, the same for every feature),
  fitted on the training split only; returns ``(x_train', x_test', mean, std)``.

Both loaders work offline: digits ships inside scikit-learn, and MNIST-1D is *generated* with
the ``mnist1d`` package's own generator and its default arguments (Greydanus & Kobak, 2024),
which never touches the network. Generation takes about 1.6 s, so it is cached in memory
(``functools.lru_cache``) for the lifetime of the process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from dropoutlib._validation import check_generator

__all__ = ["Dataset", "load_digits", "load_mnist1d", "standardize"]


@dataclass(frozen=True)
class Dataset:
    """A classification data set split into training and test parts.

    Attributes
    ----------
    x_train, x_test : numpy.ndarray
        Standardised features, shape ``(n, n_features)``.
    y_train, y_test : numpy.ndarray
        Integer labels (int64) in ``[0, n_classes)``.
    name : str
        A short description (e.g. ``"digits"``).
    n_classes : int
        Number of classes.
    raw_train, raw_test : numpy.ndarray
        The features before standardisation (float64), kept so that :meth:`subset` can refit it.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    n_classes: int
    raw_train: np.ndarray
    raw_test: np.ndarray

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    def subset(self, n: int, *, rng: np.random.Generator) -> Dataset:
        """The first ``n`` examples of a random permutation of the training set (drawn from
        ``rng``), standardisation refitted on them; the test set is the same examples."""
        rng = check_generator(rng)
        if not 1 <= n <= len(self.y_train):
            raise ValueError(f"n must be in [1, {len(self.y_train)}], but got {n!r}")
        idx = np.sort(rng.permutation(len(self.y_train))[:n])
        return _make(
            self.raw_train[idx],
            self.y_train[idx],
            self.raw_test,
            self.y_test,
            f"{self.name} ({n} training examples)",
            self.n_classes,
            self.x_train.dtype,
        )

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}: {len(self.y_train)} train, {len(self.y_test)} test, "
            f"{self.n_features} features, {self.n_classes} classes, {self.x_train.dtype})"
        )


def standardize(
    x_train: np.ndarray, x_test: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, float]:
    r"""Standardise with the mean and standard deviation of the **training split only**.

    :math:`x' = (x - \mu) / \sigma` with one scalar :math:`\mu` and :math:`\sigma`: the mean and
    standard deviation of all entries of ``x_train`` (as MNIST is usually normalised). Fitting
    on the test split too would leak information about the test set into training.

    One scalar rather than one per feature keeps the images' shape: in digits, a pixel that is
    inked in one training image out of hundreds has a tiny per-pixel standard deviation, and
    per-feature scaling would turn that one stroke into an input of size
    :math:`\sqrt{n}` (17 for 300 images), which destabilises training.

    Returns
    -------
    tuple
        ``(x_train', x_test', mean, std)``.
    """
    mean = float(x_train.mean())
    std = float(x_train.std())
    std = std if std > 0 else 1.0
    return (x_train - mean) / std, (x_test - mean) / std, mean, std


def _make(
    raw_train: np.ndarray,
    y_train: np.ndarray,
    raw_test: np.ndarray,
    y_test: np.ndarray,
    name: str,
    n_classes: int,
    dtype: type[np.floating] | np.dtype,
) -> Dataset:
    raw_train = np.asarray(raw_train, dtype=np.float64)
    raw_test = np.asarray(raw_test, dtype=np.float64)
    x_train, x_test, _, _ = standardize(raw_train, raw_test)
    arrays = [
        np.ascontiguousarray(x_train, dtype=dtype),
        np.asarray(y_train, dtype=np.int64),
        np.ascontiguousarray(x_test, dtype=dtype),
        np.asarray(y_test, dtype=np.int64),
        raw_train,
        raw_test,
    ]
    for a in arrays:
        a.flags.writeable = False
    xt, yt, xs, ys, rt, rs = arrays
    return Dataset(xt, yt, xs, ys, name, n_classes, rt, rs)


def _check_dtype(dtype: object) -> None:
    if not np.issubdtype(np.dtype(dtype), np.floating):  # type: ignore[arg-type]
        raise TypeError(f"dtype must be a floating type, but got {dtype!r}")


def load_digits(
    *,
    test_size: float = 0.25,
    seed: int = 0,
    n_train: int | None = None,
    dtype: type[np.floating] = np.float32,
) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1797 images, 64 pixels 0..16, 10 classes).

    The split is **stratified** (each class keeps its share in both parts) and seeded:
    ``sklearn.model_selection.train_test_split(test_size=test_size, random_state=seed,
    stratify=y)``; with the defaults that is 1347 training and 450 test images. If ``n_train``
    is given, the training set is then reduced to a random ``n_train`` of its examples (drawn
    with ``np.random.default_rng(seed)``). Pixels are standardised with one scalar mean and
    standard deviation, those of all pixels of the training split (:func:`standardize`).
    """
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    _check_dtype(dtype)
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), but got {test_size!r}")
    x, y = _sk_load_digits(return_X_y=True)
    xr, xs, yr, ys = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    data = _make(xr, yr, xs, ys, "digits", 10, dtype)
    if n_train is not None:
        data = data.subset(n_train, rng=np.random.default_rng(seed))
    return data


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Generate MNIST-1D with the package's default arguments (seed 42), offline; cached."""
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    arrays = (d["x"], d["y"], d["x_test"], d["y_test"])
    for a in arrays:
        a.flags.writeable = False
    return arrays


def load_mnist1d(
    *, n_train: int | None = None, seed: int = 0, dtype: type[np.floating] = np.float32
) -> Dataset:
    """MNIST-1D: 4000 training and 1000 test signals of length 40, 10 classes.

    Generated offline by ``mnist1d.data.make_dataset(get_dataset_args())``, the package's
    defaults, which fix the generator's own seed (42) and therefore the train/test split: the
    same 5000 signals and the same split as the published data set. If ``n_train`` is given,
    the training set is reduced to a random ``n_train`` of its examples (drawn with
    ``np.random.default_rng(seed)``). Features are standardised with one scalar mean and
    standard deviation, those of all entries of the training split (:func:`standardize`). The
    first call takes about 1.6 s (then cached).
    """
    _check_dtype(dtype)
    xr, yr, xs, ys = _mnist1d_arrays()
    data = _make(xr, yr, xs, ys, "MNIST-1D", 10, dtype)
    if n_train is not None:
        data = data.subset(n_train, rng=np.random.default_rng(seed))
    return data
