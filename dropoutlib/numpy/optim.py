r"""Stochastic gradient descent with momentum, weight decay and the max-norm constraint.

API (stable):

- :class:`SGD` ``(params, lr, *, momentum=0, weight_decay=0, max_norm=None)`` with ``step()`` and
  ``zero_grad()``; ``lr`` and ``momentum`` are plain attributes that a schedule may change.
  ``max_norm`` is one radius for every weight matrix, or one radius per weight matrix (per
  Linear layer) or per parameter, so that layers may have different radii.
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

from collections.abc import Iterable, Sequence

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


def _radii(
    max_norm: float | Sequence[float | None] | np.ndarray | None, params: list[Parameter]
) -> list[float | None]:
    """One max-norm radius (or None) per parameter, from the forms :class:`SGD` accepts."""
    n_params = len(params)
    matrices = [i for i, p in enumerate(params) if p.data.ndim == 2]
    if max_norm is None:
        return [None] * n_params
    if isinstance(max_norm, int | float | np.floating | np.integer):  # bool is refused here
        c = _check_nonnegative("max_norm", max_norm)
        if c == 0:
            raise ValueError("max_norm must be > 0 (or None to disable it)")
        return [c if i in matrices else None for i in range(n_params)]
    if isinstance(max_norm, str | bytes) or not isinstance(max_norm, Sequence | np.ndarray):
        raise TypeError(
            "max_norm must be None, a number, or a sequence of numbers or None (one per weight "
            f"matrix or one per parameter), but got {max_norm!r}"
        )
    given = list(max_norm)
    if len(given) == len(matrices):  # one per weight matrix (all 2-D parameters, in order)
        per_param: list[object] = [None] * n_params
        for i, c in zip(matrices, given, strict=True):
            per_param[i] = c
    elif len(given) == n_params:  # one per parameter
        per_param = given
    else:
        raise ValueError(
            f"max_norm gives {len(given)} radii, but there are {len(matrices)} weight matrices "
            f"(2-D parameters) and {n_params} parameters; give one radius per weight matrix "
            "or one per parameter (None for no constraint)"
        )
    radii: list[float | None] = []
    for i, c in enumerate(per_param):
        if c is None:
            radii.append(None)
            continue
        c = _check_nonnegative(f"max_norm[{i}]", c)
        if c == 0:
            raise ValueError(f"max_norm[{i}] must be > 0 (or None for no constraint)")
        if params[i].data.ndim != 2:
            raise ValueError(
                f"max_norm[{i}] = {c} is given for a parameter of shape {params[i].data.shape}; "
                "max-norm bounds the rows of 2-D weight matrices only (use None)"
            )
        radii.append(c)
    return radii


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
    max_norm : float, sequence of (float or None), or None, default None
        The max-norm constraint: after every step a constrained **2-D** parameter (a Linear
        weight) is projected with :func:`max_norm_` so that every unit's incoming weight
        vector has norm at most its radius :math:`c`. Biases are never constrained.

        - ``None``: no constraint.
        - a number :math:`c > 0`: the same radius for every 2-D parameter.
        - a sequence with **one entry per 2-D parameter** (per Linear layer, in the order of
          ``params``) or **one entry per parameter**: a radius :math:`c > 0` or ``None``
          (unconstrained) for each. A radius given for a parameter that is not 2-D is an
          error. When every parameter is 2-D the two readings coincide.

        Per-layer radii are what chapter 3's conversion needs when layers have different keep
        probabilities (:math:`c' = q\\,c` for a layer whose inputs are kept with probability
        :math:`q`).

    Attributes
    ----------
    max_norm : float, tuple or None
        ``max_norm`` as given: ``None``, a float, or for a sequence the tuple of per-parameter
        radii (``None`` if every entry is ``None``).
    radii : list of (float or None)
        The radius applied to each parameter, aligned with ``params``.
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
        self.radii = _radii(max_norm, self.params)
        self.max_norm: float | tuple[float | None, ...] | None
        if max_norm is None or isinstance(max_norm, int | float | np.floating | np.integer):
            self.max_norm = None if max_norm is None else float(max_norm)
        else:
            self.max_norm = None if all(c is None for c in self.radii) else tuple(self.radii)
        self.velocity = [np.zeros_like(p.data) for p in self.params]

    def zero_grad(self) -> None:
        """Set the gradients of all parameters to zero."""
        for p in self.params:
            p.grad.fill(0)

    def step(self) -> None:
        """Apply one update to every parameter, in place."""
        for p, v, c in zip(self.params, self.velocity, self.radii, strict=True):
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            if self.momentum:
                v *= self.momentum
                v += g
                g = v
            p.data -= (self.lr * p.lr_scale) * g
            if c is not None:
                max_norm_(p.data, c)
