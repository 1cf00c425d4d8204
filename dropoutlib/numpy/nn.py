r"""A small from-scratch neural network in NumPy: layers with a forward and a backward pass.

Every layer is a :class:`Module` with two methods:

- ``forward(x)`` computes the output and remembers what the backward pass needs;
- ``backward(grad)`` takes :math:`\partial L/\partial y` (the gradient of the loss with
  respect to the layer's output), **adds** the gradients of the layer's parameters into their
  ``.grad`` arrays (as PyTorch accumulates into ``.grad``), and returns
  :math:`\partial L/\partial x`.

A network is a :class:`Sequential` of layers; the loss is :func:`softmax_cross_entropy`, which
returns the loss and its gradient with respect to the logits. One training step reads::

    model.zero_grad()
    loss, grad = softmax_cross_entropy(model(x), y)
    model.backward(grad)
    optimizer.step()

API (stable; other chapters and :mod:`dropoutlib.train` build on it):

- :class:`Parameter` -- an array ``data`` with its gradient ``grad`` (same shape and dtype) and a
  per-parameter learning-rate multiplier ``lr_scale`` (default 1).
- :class:`Module` -- ``forward``, ``backward``, ``__call__`` (= forward), ``train(mode=True)``,
  ``eval()``, ``training``, ``parameters()``, ``named_parameters()``, ``modules()``,
  ``zero_grad()``.
- Layers: :class:`Linear`, :class:`ReLU`, :class:`Dropout`, :class:`Sequential`.
- :class:`FreshMaskDropout` -- a **deliberately wrong** dropout layer (its backward pass draws a
  new mask), kept for the gradient-check and training demonstrations of chapter 4.
- Functions: :func:`softmax`, :func:`log_softmax`, :func:`softmax_cross_entropy`,
  :func:`stochastic_modules`.

**Stochastic layers.** A layer that draws random numbers keeps its
:class:`numpy.random.Generator` in the attribute ``rng`` (as :class:`Dropout` and
:class:`~dropoutlib.numpy.gaussian.GaussianDropout` do) and draws only from it.
:func:`stochastic_modules` finds such layers by that attribute, and the tools that must control
the randomness rely on it: :func:`~dropoutlib.gradcheck.check_module` replays the state of
every such generator, and :func:`~dropoutlib.ensemble.mc_dropout_proba` substitutes its own
``rng`` for them. A new stochastic layer therefore needs no registration.

Shapes follow PyTorch: inputs are ``(batch, features)`` and a :class:`Linear` weight is
``(out_features, in_features)``, so row :math:`i` of the weight is the incoming weight vector
of unit :math:`i` (the vector the max-norm constraint bounds). Arrays are float32 by default;
pass ``dtype=np.float64`` for gradient checks.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from dropoutlib._validation import check_float_array, check_generator, check_probability
from dropoutlib.numpy.functional import (
    Scaling,
    _check_scaling,
    bernoulli_mask,
    dropout,
    dropout_backward,
)

__all__ = [
    "Dropout",
    "FreshMaskDropout",
    "Linear",
    "Module",
    "Parameter",
    "ReLU",
    "Sequential",
    "log_softmax",
    "softmax",
    "softmax_cross_entropy",
    "stochastic_modules",
]


class Parameter:
    """A trainable array and its gradient.

    Attributes
    ----------
    data : numpy.ndarray
        The value, updated in place by the optimiser.
    grad : numpy.ndarray
        :math:`\\partial L / \\partial \\text{data}`, same shape and dtype, accumulated by
        ``backward`` and reset by ``zero_grad``.
    lr_scale : float
        Multiplier of the optimiser's learning rate for this parameter (pylearn2's
        ``W_lr_scale``); 1 unless set.
    """

    __slots__ = ("data", "grad", "lr_scale")

    def __init__(self, data: np.ndarray) -> None:
        self.data = check_float_array(data, "data")
        self.grad = np.zeros_like(data)
        self.lr_scale = 1.0

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class: a function with a forward pass, a backward pass and a train/eval mode."""

    training: bool = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def children(self) -> list[Module]:
        """The direct sub-modules (none for a plain layer)."""
        return []

    def modules(self) -> Iterator[Module]:
        """This module and all its descendants, depth first."""
        yield self
        for child in self.children():
            yield from child.modules()

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        """``(name, parameter)`` pairs, named as PyTorch names them (``"0.weight"``, ...)."""
        return []

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero (in place)."""
        for p in self.parameters():
            p.grad.fill(0)

    def train(self, mode: bool = True) -> Module:
        """Switch this module and all its descendants to training (or evaluation) mode."""
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self) -> Module:
        """Switch to evaluation mode: dropout becomes deterministic."""
        return self.train(False)

    def _need_input(self, cached: np.ndarray | None) -> np.ndarray:
        if cached is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return cached


class Linear(Module):
    r"""Affine layer :math:`y = x W^\top + b`.

    Backward, for :math:`g = \partial L/\partial y` of shape ``(batch, out)``:

    .. math::

       \frac{\partial L}{\partial W} = g^\top x, \qquad
       \frac{\partial L}{\partial b} = \textstyle\sum_{\text{batch}} g, \qquad
       \frac{\partial L}{\partial x} = g\, W.

    Initialisation (He et al., 2015, for ReLU networks): :math:`W_{ij} \sim
    \mathcal N(0,\, 2/n_\text{in})`, :math:`b = 0`. It keeps the mean square of the
    pre-activations roughly constant from layer to layer.

    Parameters
    ----------
    in_features, out_features : int
        Input and output widths.
    rng : numpy.random.Generator
        Draws the initial weights (required, keyword-only).
    dtype : numpy dtype, default float32
        float32 for training, float64 for gradient checks.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        rng: np.random.Generator,
        dtype: type[np.floating] = np.float32,
    ) -> None:
        for name, n in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
                raise ValueError(f"{name} must be a positive integer, but got {n!r}")
        if not np.issubdtype(dtype, np.floating):
            raise TypeError(f"dtype must be a floating type, but got {dtype!r}")
        rng = check_generator(rng)
        self.in_features, self.out_features = int(in_features), int(out_features)
        std = np.sqrt(2.0 / in_features)
        w = rng.standard_normal((out_features, in_features)) * std
        self.weight = Parameter(w.astype(dtype))
        self.bias = Parameter(np.zeros(out_features, dtype=dtype))
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = check_float_array(x)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"Linear expects input of shape (batch, {self.in_features}), but got {x.shape}"
            )
        self._x = x
        return x @ self.weight.data.T + self.bias.data

    def backward(self, grad: np.ndarray) -> np.ndarray:
        x = self._need_input(self._x)
        self.weight.grad += grad.T @ x
        self.bias.grad += grad.sum(axis=0)
        return grad @ self.weight.data

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        return [("weight", self.weight), ("bias", self.bias)]

    def __repr__(self) -> str:
        dtype = self.weight.data.dtype
        return f"Linear({self.in_features}, {self.out_features}, dtype={dtype})"


class ReLU(Module):
    r"""Rectified linear unit :math:`y = \max(x, 0)`; backward :math:`g \cdot [x > 0]`."""

    def __init__(self) -> None:
        self._positive: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = check_float_array(x)
        self._positive = x > 0
        return np.maximum(x, 0)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return grad * self._need_input(self._positive)

    def __repr__(self) -> str:
        return "ReLU()"


class Dropout(Module):
    r"""Dropout layer: a thin stateful wrapper over :func:`~dropoutlib.numpy.functional.dropout`.

    In training mode the forward pass draws a keep mask :math:`m` from the layer's generator
    and **stores it**; the backward pass reuses that very mask,
    :math:`\partial L/\partial x = c\, m \odot g` with :math:`c = 1/(1-p)` (inverted) or
    :math:`c = 1` (standard). In evaluation mode the layer is the identity (inverted) or the
    multiplication by :math:`1 - p` (standard, the paper's test-time rule).

    Parameters
    ----------
    p : float, default 0.5
        **Drop** probability (PyTorch's convention; the paper's keep probability is
        :math:`1 - p`).
    rng : numpy.random.Generator
        Source of the masks (required, keyword-only). Layers may share one generator.
    scaling : {"inverted", "standard"}, default "inverted"
        Inverted (PyTorch) or standard (Srivastava et al., 2014) dropout.
    """

    def __init__(
        self, p: float = 0.5, *, rng: np.random.Generator, scaling: Scaling = "inverted"
    ) -> None:
        self.p = check_probability(p)
        self.rng = check_generator(rng)
        self.scaling = _check_scaling(scaling)
        self.mask: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        y, self.mask = dropout(
            x, self.p, rng=self.rng, training=self.training, scaling=self.scaling, return_mask=True
        )
        return y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        if self.mask is not None:
            return dropout_backward(grad, self.mask, self.p, scaling=self.scaling)
        # Evaluation mode: the layer is linear and deterministic.
        return grad if self.scaling == "inverted" else grad * (1.0 - self.p)

    def __repr__(self) -> str:
        return f"Dropout(p={self.p}, scaling={self.scaling!r})"


class FreshMaskDropout(Dropout):
    r"""A **deliberately wrong** :class:`Dropout`: the backward pass draws a *new* mask.

    The forward pass is :class:`Dropout`'s (mask :math:`m` stored). In training mode the
    backward pass ignores :math:`m` and returns :math:`c\, m' \odot g` with a fresh mask
    :math:`m'` from the layer's generator and the same constant :math:`c` as the correct layer
    (:math:`1/(1-p)` for ``scaling="inverted"``, 1 for ``"standard"``), so the bug is the mask
    and nothing else. In evaluation mode it is the correct (deterministic) backward. It exists
    to be caught by :func:`~dropoutlib.gradcheck.check_module` and to show what the bug does to
    training; never use it in a model.
    """

    def backward(self, grad: np.ndarray) -> np.ndarray:
        if self.mask is None:
            return super().backward(grad)
        fresh = bernoulli_mask(self.mask.shape, self.p, rng=self.rng)
        return dropout_backward(grad, fresh, self.p, scaling=self.scaling)

    def __repr__(self) -> str:
        return f"FreshMaskDropout(p={self.p}, scaling={self.scaling!r})"


class Sequential(Module):
    """Layers applied in order; the backward pass visits them in reverse order."""

    def __init__(self, *layers: Module) -> None:
        for layer in layers:
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential takes Module instances, but got {layer!r}")
        self.layers = list(layers)

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad: np.ndarray) -> np.ndarray:
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def children(self) -> list[Module]:
        return list(self.layers)

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        return [
            (f"{i}.{name}", p)
            for i, layer in enumerate(self.layers)
            for name, p in layer.named_parameters()
        ]

    def __getitem__(self, index: int) -> Module:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"


def stochastic_modules(model: Module) -> list[Module]:
    """The modules of ``model`` (itself included) that draw random numbers, depth first.

    A module counts as stochastic when its attribute ``rng`` is a
    :class:`numpy.random.Generator` (the convention of this module's docstring).
    """
    return [m for m in model.modules() if isinstance(getattr(m, "rng", None), np.random.Generator)]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    r"""Row-wise :math:`\log \mathrm{softmax}(z)_k = z_k - \log\sum_j e^{z_j}`, computed stably.

    Subtracting the row maximum :math:`M` first, :math:`\log\sum_j e^{z_j} = M + \log\sum_j
    e^{z_j - M}`, keeps every exponent :math:`\le 0`, so nothing overflows and the largest term
    is exactly 1.
    """
    logits = check_float_array(logits, "logits")
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax probabilities, via the stable :func:`log_softmax`."""
    return np.exp(log_softmax(logits))


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    r"""Mean cross-entropy of a softmax classifier, and its gradient with respect to the logits.

    For :math:`N` rows of logits :math:`z_i` and integer labels :math:`y_i`,

    .. math::

       \begin{aligned}
       L &= \frac1N \sum_{i=1}^N \Bigl(\log\sum_k e^{z_{ik}} - z_{i y_i}\Bigr), \\
       \frac{\partial L}{\partial z_{ik}} &= \frac{\mathrm{softmax}(z_i)_k - [k = y_i]}{N}.
       \end{aligned}

    Parameters
    ----------
    logits : numpy.ndarray
        Floating array of shape ``(N, classes)``.
    labels : numpy.ndarray
        Integer array of shape ``(N,)`` with values in ``[0, classes)``.

    Returns
    -------
    loss : float
        The mean loss (a Python float).
    grad : numpy.ndarray
        :math:`\partial L/\partial z`, same shape and dtype as ``logits``.
    """
    logits = check_float_array(logits, "logits")
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, classes), but got shape {logits.shape}")
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers (class indices), but got dtype {labels.dtype}")
    n, classes = logits.shape
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match the logits, got {labels.shape}")
    if n and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"labels must lie in [0, {classes}), got [{labels.min()}, {labels.max()}]")
    logp = log_softmax(logits)
    rows = np.arange(n)
    loss = -float(logp[rows, labels].mean(dtype=np.float64))
    grad = np.exp(logp)
    grad[rows, labels] -= 1
    grad /= n
    return loss, grad
