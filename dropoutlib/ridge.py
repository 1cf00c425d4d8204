r"""Dropout in linear regression, in closed form (Srivastava et al., 2014, section 9).

Drop each entry of the design matrix :math:`X \in \mathbb R^{N \times D}` independently with
probability :math:`p` (keep mask :math:`M_{ij} \sim \mathrm{Bernoulli}(1-p)`) and write
:math:`\Gamma = \operatorname{diag}(X^\top X)^{1/2}`. Averaging the squared loss over the masks
gives, with :math:`q = 1 - p`,

.. math::

   \begin{aligned}
   &\text{inverted:} \\
   &\quad \mathbb E_M \bigl\| y - \tfrac{1}{q}(M \odot X) w \bigr\|^2 \\
   &\qquad = \| y - X w \|^2 + \frac{p}{q}\, \| \Gamma w \|^2,
   \end{aligned}

   \begin{aligned}
   &\text{standard (paper):} \\
   &\quad \mathbb E_M \bigl\| y - (M \odot X) w \bigr\|^2 \\
   &\qquad = \| y - q X w \|^2 + p q\, \| \Gamma w \|^2 .
   \end{aligned}

Dropout on the inputs of a linear model is therefore, in expectation, ridge regression whose
penalty on :math:`w_j` is weighted by :math:`\|x_{:,j}\|^2`. The two conventions have the same
predictor: the standard minimiser is the inverted one divided by :math:`q`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dropoutlib._validation import check_float_array, check_generator, check_probability
from dropoutlib.numpy.functional import Scaling, _check_scaling, bernoulli_mask

__all__ = [
    "DropoutSGDResult",
    "dropout_loss_samples",
    "dropout_ridge_solution",
    "dropout_sgd",
    "expected_dropout_loss",
    "gamma_squared",
    "ridge_solution",
]


def _check_regression(X: object, y: object) -> tuple[np.ndarray, np.ndarray]:
    X = check_float_array(X, "X")
    y = check_float_array(y, "y")
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise ValueError(
            f"X must be 2-d (N, D) and y 1-d (N,), but got X {X.shape} and y {y.shape}"
        )
    return X.astype(np.float64, copy=False), y.astype(np.float64, copy=False)


def gamma_squared(X: np.ndarray) -> np.ndarray:
    r"""The diagonal of :math:`\Gamma^2 = \operatorname{diag}(X^\top X)`: squared column norms."""
    X = check_float_array(X, "X")
    return np.einsum("ij,ij->j", X, X, dtype=np.float64)


def expected_dropout_loss(
    X: np.ndarray, y: np.ndarray, w: np.ndarray, p: float, *, scaling: Scaling = "inverted"
) -> float:
    r"""Closed form of :math:`\mathbb E_M \|y - c\,(M \odot X) w\|^2` (sum over the N rows).

    :math:`c = 1/(1-p)` for ``scaling="inverted"`` and :math:`c = 1` for ``"standard"``; see
    the module docstring for both formulas.

    Examples
    --------
    >>> import numpy as np
    >>> X, y, w = np.eye(2), np.zeros(2), np.ones(2)
    >>> expected_dropout_loss(X, y, w, 0.5)   # ||Xw||^2 + (0.5/0.5) * ||w||^2
    4.0
    """
    X, y = _check_regression(X, y)
    p = check_probability(p)
    scaling = _check_scaling(scaling)
    w = np.asarray(w, dtype=np.float64)
    q = 1.0 - p
    penalty = float(gamma_squared(X) @ (w * w))
    if scaling == "inverted":
        if q == 0.0:
            raise ValueError("inverted dropout needs p < 1 (it divides by 1 - p)")
        return float(np.sum((y - X @ w) ** 2) + (p / q) * penalty)
    return float(np.sum((y - q * (X @ w)) ** 2) + p * q * penalty)


def dropout_loss_samples(
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    p: float,
    *,
    samples: int,
    rng: np.random.Generator,
    scaling: Scaling = "inverted",
) -> np.ndarray:
    r"""Draw ``samples`` independent masks and return the dropout loss under each.

    The Monte Carlo counterpart of :func:`expected_dropout_loss`: the returned array has
    ``samples`` entries :math:`\|y - c\,(M_s \odot X) w\|^2`, computed for all masks at once.
    """
    X, y = _check_regression(X, y)
    p = check_probability(p)
    scaling = _check_scaling(scaling)
    rng = check_generator(rng)
    w = np.asarray(w, dtype=np.float64)
    c = 1.0 / (1.0 - p) if scaling == "inverted" else 1.0
    masks = bernoulli_mask((samples, *X.shape), p, rng=rng)
    predictions = c * np.einsum("snd,nd,d->sn", masks, X, w)
    return np.sum((y - predictions) ** 2, axis=1)


def ridge_solution(X: np.ndarray, y: np.ndarray, penalty: np.ndarray | float) -> np.ndarray:
    r"""Generalised ridge: :math:`\arg\min_w \|y - Xw\|^2 + \sum_j \lambda_j w_j^2`.

    The minimiser is :math:`(X^\top X + \operatorname{diag}(\lambda))^{-1} X^\top y`.

    ``penalty`` is a scalar :math:`\lambda` (ordinary ridge) or the vector :math:`(\lambda_j)`.
    """
    X, y = _check_regression(X, y)
    lam = np.broadcast_to(np.asarray(penalty, dtype=np.float64), (X.shape[1],))
    return np.linalg.solve(X.T @ X + np.diag(lam), X.T @ y)


def dropout_ridge_solution(
    X: np.ndarray, y: np.ndarray, p: float, *, scaling: Scaling = "inverted"
) -> np.ndarray:
    r"""The weights that minimise the expected dropout loss, in closed form.

    .. math::

       \begin{aligned}
       w_\text{inv} &= \Bigl(X^\top X + \tfrac{p}{1-p}\,\Gamma^2\Bigr)^{-1} X^\top y, \\
       w_\text{std} &= \frac{w_\text{inv}}{1-p}.
       \end{aligned}

    Both give the same test-time predictor: :math:`X w_\text{inv} = (1-p)\, X w_\text{std}`.
    """
    X, y = _check_regression(X, y)
    p = check_probability(p)
    scaling = _check_scaling(scaling)
    if p == 1.0:
        raise ValueError("p = 1 drops every input: the dropout loss does not depend on w")
    q = 1.0 - p
    w_inv = ridge_solution(X, y, (p / q) * gamma_squared(X))
    return w_inv if scaling == "inverted" else w_inv / q


@dataclass(frozen=True)
class DropoutSGDResult:
    """Result of :func:`dropout_sgd`.

    Attributes
    ----------
    w : numpy.ndarray
        The averaged iterate (Polyak-Ruppert average over the second half of the steps).
    w_last : numpy.ndarray
        The last iterate (noisy: constant-step SGD keeps fluctuating around the optimum).
    path : numpy.ndarray
        The running average after each epoch, shape ``(epochs, D)``, for convergence plots.
    """

    w: np.ndarray
    w_last: np.ndarray
    path: np.ndarray


def dropout_sgd(
    X: np.ndarray,
    y: np.ndarray,
    p: float,
    *,
    rng: np.random.Generator,
    lr: float = 0.01,
    epochs: int = 200,
    batch_size: int = 16,
    scaling: Scaling = "inverted",
) -> DropoutSGDResult:
    r"""Fit linear regression by minibatch SGD with a fresh dropout mask on every input entry.

    Each step draws :math:`M_B` for the minibatch and descends the mean squared loss
    :math:`\frac1{|B|}\|y_B - c\,(M_B \odot X_B) w\|^2`. The stochastic gradient is linear in
    :math:`w` with expectation :math:`\frac{1}{N}` times the gradient of the expected loss
    :func:`expected_dropout_loss` (a sum over the :math:`N` rows: the factor 2 from the square
    appears in both gradients), so the average of the iterates converges to
    :func:`dropout_ridge_solution` (averaging removes the fluctuation of constant-step SGD).
    """
    X, y = _check_regression(X, y)
    p = check_probability(p)
    scaling = _check_scaling(scaling)
    rng = check_generator(rng)
    if p == 1.0:
        raise ValueError("p = 1 drops every input: nothing can be learned")
    n, d = X.shape
    c = 1.0 / (1.0 - p) if scaling == "inverted" else 1.0
    w = np.zeros(d)
    total = np.zeros(d)
    counted = 0
    path = np.empty((epochs, d))
    for epoch in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            xb = c * X[rows] * bernoulli_mask((rows.size, d), p, rng=rng)
            residual = xb @ w - y[rows]
            w -= lr * (2.0 / rows.size) * (xb.T @ residual)
            if epoch >= epochs // 2:
                total += w
                counted += 1
        path[epoch] = total / counted if counted else w
    return DropoutSGDResult(w=total / counted, w_last=w.copy(), path=path)
