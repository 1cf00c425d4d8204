r"""Stochastic gradient descent with momentum, weight decay and the max-norm constraint.

API (stable):

- :class:`SGD` ``(params, lr, *, momentum=0, weight_decay=0, max_norm=None)`` with ``step()`` and
  ``zero_grad()``; ``lr`` and ``momentum`` are plain attributes that a schedule may change.
- :func:`max_norm_` ``(weight, c)``: project each row of a weight matrix onto the ball of radius
  ``c`` (in place).

The update matches :class:`torch.optim.SGD` (without dampening or Nesterov): for a parameter
:math:`w` with gradient :math:`g`,

.. math::

   g \leftarrow g + \lambda w, \qquad v \leftarrow \mu v + g, \qquad
   w \leftarrow w - \eta\, s\, v,

with learning rate :math:`\eta`, per-parameter multiplier :math:`s` (``Parameter.lr_scale``),
momentum :math:`\mu`, weight decay :math:`\lambda` and velocity :math:`v` starting at zero.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from dropoutlib.numpy.nn import Parameter

__all__ = ["SGD", "max_norm_"]


def _check_nonnegative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"{name} must be a real number, but got {value!r}")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, but got {value!r}")
    return float(value)


def max_norm_(weight: np.ndarray, c: float) -> np.ndarray:
    r"""Renormalise each row :math:`w_i` of ``weight`` (in place) so that :math:`\|w_i\|_2 \le c`.

    The projection onto the ball of radius :math:`c` (Srivastava et al., 2014, Section 5.1):

    .. math::

       w_i \leftarrow w_i \cdot \min\!\Bigl(1, \frac{c}{\|w_i\|_2}\Bigr).

    Rows already inside the ball are left unchanged. With the weight stored as
    ``(out_features, in_features)``, row :math:`i` is the incoming weight vector of unit
    :math:`i`.

    Returns
    -------
    numpy.ndarray
        ``weight`` itself, modified in place.
    """
    c = _check_nonnegative("c", c)
    if c == 0:
        raise ValueError("the max-norm radius c must be > 0")
    if not isinstance(weight, np.ndarray) or weight.ndim != 2:
        raise ValueError("max_norm_ expects a 2-D weight array of shape (out, in)")
    norms = np.sqrt(np.einsum("ij,ij->i", weight, weight))
    too_long = norms > c
    if too_long.any():
        weight[too_long] *= (c / norms[too_long])[:, None].astype(weight.dtype)
    return weight


class SGD:
    """Stochastic gradient descent with momentum, weight decay and an optional max-norm constraint.

    Parameters
    ----------
    params : iterable of Parameter
        Usually ``model.parameters()``.
    lr : float
        Learning rate :math:`\\eta > 0`.
    momentum : float, default 0
        :math:`\\mu \\in [0, 1)`; the paper's recipe uses 0.95 to 0.99.
    weight_decay : float, default 0
        L2 coefficient :math:`\\lambda`, added to the gradient as :math:`\\lambda w`.
    max_norm : float, optional
        If given, after every step each **2-D** parameter (a Linear weight) is projected with
        :func:`max_norm_` so that every unit's incoming weight vector has norm at most
        ``max_norm``. Biases are not constrained.
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float,
        *,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        max_norm: float | None = None,
    ) -> None:
        self.params = list(params)
        if not self.params or not all(isinstance(p, Parameter) for p in self.params):
            raise TypeError("params must be a non-empty iterable of Parameter objects")
        self.lr = _check_nonnegative("lr", lr)
        self.momentum = _check_nonnegative("momentum", momentum)
        if self.momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), but got {momentum!r}")
        self.weight_decay = _check_nonnegative("weight_decay", weight_decay)
        self.max_norm = None if max_norm is None else _check_nonnegative("max_norm", max_norm)
        if self.max_norm == 0:
            raise ValueError("max_norm must be > 0 (or None to disable it)")
        self.velocity = [np.zeros_like(p.data) for p in self.params]

    def zero_grad(self) -> None:
        """Set the gradients of all parameters to zero."""
        for p in self.params:
            p.grad.fill(0)

    def step(self) -> None:
        """Apply one update to every parameter, in place."""
        for p, v in zip(self.params, self.velocity, strict=True):
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            if self.momentum:
                v *= self.momentum
                v += g
                g = v
            p.data -= (self.lr * p.lr_scale) * g
            if self.max_norm is not None and p.data.ndim == 2:
                max_norm_(p.data, self.max_norm)
