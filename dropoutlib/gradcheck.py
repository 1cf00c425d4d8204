r"""Finite-difference gradient checks (central differences in float64).

A backward pass is checked by comparing it with the slope of the function itself. For a scalar
function :math:`f` and a small step :math:`\varepsilon`,

.. math::

   \frac{\partial f}{\partial x_i} \approx
   \frac{f(x + \varepsilon e_i) - f(x - \varepsilon e_i)}{2\varepsilon},

with truncation error :math:`O(\varepsilon^2)` and round-off error
:math:`O(u/\varepsilon)` (:math:`u \approx 1.1\times 10^{-16}` in float64), so
:math:`\varepsilon \approx 10^{-6}` gives about 8 to 10 correct digits. The comparison uses
the **normwise** relative error :func:`relative_error`: the largest difference relative to the
largest magnitude in the whole array, so it judges an array as a whole and is blind to errors
in its small entries; :func:`elementwise_relative_error` judges every entry on its own scale.

API (stable):

- :func:`numerical_gradient` ``(f, x, eps=1e-6)``: central differences of a scalar function.
- :func:`relative_error` ``(a, b)``: :math:`\max_i |a_i - b_i| / \max(\max_i(|a_i| + |b_i|),
  \text{tiny})` (normwise: one global scale).
- :func:`elementwise_relative_error` ``(a, b, *, floor=1e-8)``:
  :math:`\max_i |a_i - b_i| / \max(|a_i| + |b_i|, \text{floor})` (each entry on its own scale).
- :func:`check_module` ``(module, x, *, rng, eps=1e-6)``: compare a module's ``backward`` with
  finite differences for its input and every parameter; returns ``{name: relative error}``.
  The randomness of every stochastic layer (dropout masks, Gaussian noise, any layer that
  keeps its generator in ``rng``) is held fixed by replaying the state of its generator
  before each evaluation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dropoutlib.numpy.nn import Module, stochastic_modules

__all__ = ["check_module", "elementwise_relative_error", "numerical_gradient", "relative_error"]


def numerical_gradient(
    f: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-6
) -> np.ndarray:
    """Central-difference gradient of the scalar function ``f`` at ``x``.

    ``x`` must be a float64 array; each element is perturbed in place by :math:`\\pm\\varepsilon`
    and restored, so ``f`` may read ``x`` through a reference (e.g. a parameter's ``data``).
    Costs :math:`2n` evaluations of ``f`` for :math:`n` elements.
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise TypeError("numerical_gradient needs a float64 array (float32 has too few digits)")
    grad = np.empty_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError("x must be contiguous so that it can be perturbed in place")
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f(x)
        flat[i] = old - eps
        down = f(x)
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} and {b.shape}")
    return a, b


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    r"""Normwise relative error: the largest absolute difference, relative to the **largest**
    magnitude in the arrays,
    :math:`\max_i |a_i - b_i| \,/\, \max(\max_i (|a_i| + |b_i|),\ 10^{-300})`.

    Zero when the arrays are equal; about :math:`10^{-8}` or less for a correct float64
    backward checked with central differences; of order 1 for a wrong one.

    One scale serves the whole array: an error confined to entries much smaller than the
    largest one is divided by the largest, so it can pass unnoticed (an entry of size
    :math:`10^{-3}` next to one of size 1 may be completely wrong and add only about
    :math:`10^{-3}`). That is the right measure when the array is judged as a whole (it is the
    :math:`\infty`-norm error :math:`\|a-b\|_\infty / \|\,|a|+|b|\,\|_\infty`, insensitive to
    the finite-difference noise of entries near zero); to judge every entry on its own scale
    use :func:`elementwise_relative_error`.
    """
    a, b = _pair(a, b)
    scale = max(float(np.max(np.abs(a) + np.abs(b), initial=0.0)), 1e-300)
    return float(np.max(np.abs(a - b), initial=0.0)) / scale


def elementwise_relative_error(a: np.ndarray, b: np.ndarray, *, floor: float = 1e-8) -> float:
    r"""Element-wise relative error: every entry relative to its **own** magnitude,
    :math:`\max_i |a_i - b_i| \,/\, \max(|a_i| + |b_i|,\ \text{floor})`.

    Unlike :func:`relative_error`, a wrong small entry counts as much as a wrong large one.
    Entries that are (near) zero in both arrays are compared absolutely, through ``floor``:
    central differences in float64 leave an absolute error of roughly
    :math:`u\,|f|/\varepsilon + \varepsilon^2 |f^{(3)}|/6` (about :math:`10^{-10}` for
    values of order 1 and :math:`\varepsilon = 10^{-6}`), which a purely relative measure
    would blow up for an entry that is exactly zero. The default floor of :math:`10^{-8}`
    suits functions of order 1; scale it with the function's magnitude.

    Parameters
    ----------
    a, b : array_like
        Arrays of the same shape (compared in float64).
    floor : float, default 1e-8
        Smallest denominator, :math:`> 0`.

    Returns
    -------
    float
        0 when the arrays are equal (and for empty arrays).
    """
    if isinstance(floor, bool) or not isinstance(floor, int | float | np.floating | np.integer):
        raise TypeError(f"floor must be a real number, but got {floor!r}")
    if not (np.isfinite(floor) and floor > 0):
        raise ValueError(f"floor must be a finite number > 0, but got {floor!r}")
    a, b = _pair(a, b)
    scale = np.maximum(np.abs(a) + np.abs(b), float(floor))
    return float(np.max(np.abs(a - b) / scale, initial=0.0))


def check_module(
    module: Module, x: np.ndarray, *, rng: np.random.Generator, eps: float = 1e-6
) -> dict[str, float]:
    """Check ``module.backward`` against central differences, in float64.

    The scalar checked is :math:`f = \\sum_j w_j\\, \\text{module}(x)_j` with fixed random
    weights :math:`w` from ``rng`` (so that every output element matters). Before each
    evaluation the state of the generator of every stochastic layer (every module whose ``rng``
    attribute is a :class:`numpy.random.Generator`, see
    :func:`~dropoutlib.numpy.nn.stochastic_modules`: :class:`~dropoutlib.numpy.nn.Dropout`,
    :class:`~dropoutlib.numpy.gaussian.GaussianDropout`, ...) is restored, so every evaluation
    sees the **same** masks and noise: the check is of the function the backward pass
    differentiates. On return those generators are back in the state they had on entry.

    Parameters
    ----------
    module : Module
        A module with float64 parameters, in the mode (train or eval) to be checked.
    x : numpy.ndarray
        A float64 input batch (not modified).
    rng : numpy.random.Generator
        Draws the output weights :math:`w`.

    Returns
    -------
    dict
        ``{"input": error, "<parameter name>": error, ...}`` of :func:`relative_error`, the
        normwise error of each array as a whole (see there for what it can miss).
    """
    if x.dtype != np.float64 or any(p.data.dtype != np.float64 for p in module.parameters()):
        raise TypeError("check_module needs float64 inputs and parameters")
    generators = {id(m.rng): m.rng for m in stochastic_modules(module)}
    states = {key: g.bit_generator.state for key, g in generators.items()}

    def replay() -> None:
        for key, g in generators.items():
            g.bit_generator.state = states[key]

    x = np.array(x, dtype=np.float64, copy=True)
    replay()
    out = module.forward(x)
    w = rng.standard_normal(out.shape)
    module.zero_grad()
    analytic = {"input": module.backward(w)}
    analytic.update({name: p.grad.copy() for name, p in module.named_parameters()})

    def f(_: np.ndarray) -> float:
        replay()
        return float(np.sum(module.forward(x) * w))

    errors = {"input": relative_error(analytic["input"], numerical_gradient(f, x, eps))}
    for name, p in module.named_parameters():
        errors[name] = relative_error(analytic[name], numerical_gradient(f, p.data, eps))
    replay()
    return errors
