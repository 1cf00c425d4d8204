r"""Standard (paper) and inverted (PyTorch) dropout: the exact change of variables between them.

Let :math:`q = 1 - p` be the keep probability of a dropout layer and :math:`W` the weight of the
Linear layer that reads its output. Standard dropout trains with :math:`W (m \odot x)` and tests
with :math:`q W x`; inverted dropout trains with :math:`W' (m \odot x)/q` and tests with
:math:`W' x`. With

.. math::

   \begin{aligned}
   W' &= q\, W, & \eta_{W'} &= q^2\, \eta_W, \\
   \lambda_{W'} &= \lambda_W / q^2, & c_{W'} &= q\, c_W
   \end{aligned}

(initial weight, learning rate, weight decay and max-norm radius of that layer; biases and all
other layers unchanged), the two networks compute the same function for every mask, in training
and at test time, and SGD with momentum keeps :math:`W'_t = q W_t` at every step (Srivastava et
al., 2014, Section 10; Goodfellow's pylearn2 dropout cost, 2013).

API: :func:`to_inverted` ``(model)``; :func:`inverted_max_norm_radii` ``(model, c)``.
"""

from __future__ import annotations

import copy

import numpy as np

from dropoutlib.numpy.nn import Dropout, Linear, Module, ReLU, Sequential

__all__ = ["inverted_max_norm_radii", "to_inverted"]


def to_inverted(model: Sequential) -> Sequential:
    r"""The inverted-dropout twin of a standard-dropout network, trained identically by SGD.

    Every Linear layer that reads a dropout layer's output (directly, or through ReLUs, which
    commute with positive scaling) gets its weight multiplied by the keep probability
    :math:`q = 1 - p` and its ``lr_scale`` by :math:`q^2`; biases and other layers are copied
    unchanged. Each new dropout layer draws from a **copy** of the original layer's generator
    (same bit-generator state; layers that shared a generator share its copy), so the twin draws
    the same masks as the original when both run the same sequence of forward passes.

    Plain SGD with momentum applies as is. Weight decay and max-norm, if used, must also be
    rescaled for those layers (:math:`\lambda/q^2` and :math:`q\,c`):
    :class:`~dropoutlib.numpy.optim.SGD` takes one weight decay for all parameters, so the twin
    is exact only without weight decay; for max-norm pass :func:`inverted_max_norm_radii`
    ``(model, c)`` as the twin's ``max_norm`` (one radius per weight matrix). The generators are
    copied *now*: anything else that later draws from the original generator (e.g. data
    shuffling that shares it) puts the two streams out of step.

    Parameters
    ----------
    model : Sequential
        A network of Linear, ReLU and standard-scaling Dropout layers.

    Returns
    -------
    Sequential
        A new network; ``model`` is not modified.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"to_inverted expects a Sequential, but got {type(model).__name__}")
    copies: dict[int, np.random.Generator] = {}

    def twin(rng: np.random.Generator) -> np.random.Generator:
        if id(rng) not in copies:
            bits = type(rng.bit_generator)()
            bits.state = rng.bit_generator.state
            copies[id(rng)] = np.random.Generator(bits)
        return copies[id(rng)]

    layers: list[Module] = []
    keep: float | None = None
    for layer in model.layers:
        if isinstance(layer, Dropout):
            if layer.scaling != "standard":
                raise ValueError("to_inverted converts standard-scaling dropout layers only")
            if keep is not None:
                raise ValueError("two dropout layers in a row are not supported")
            new: Module = Dropout(layer.p, rng=twin(layer.rng), scaling="inverted")
            keep = 1.0 - layer.p
        elif isinstance(layer, Linear):
            new = copy.deepcopy(layer)
            if keep is not None:
                new.weight.data *= new.weight.data.dtype.type(keep)
                new.weight.lr_scale = layer.weight.lr_scale * keep**2
                keep = None
        elif isinstance(layer, ReLU):
            new = ReLU()
        else:
            raise TypeError(f"to_inverted supports Linear, ReLU and Dropout, not {layer!r}")
        new.training = layer.training
        layers.append(new)
    if keep is not None:
        raise ValueError("the last dropout layer must be followed by a Linear layer")
    return Sequential(*layers).train(model.training)


def inverted_max_norm_radii(model: Sequential, c: float) -> list[float]:
    r"""Per-layer max-norm radii of the inverted twin of a standard network with radius ``c``.

    A Linear layer that reads a dropout layer with keep probability :math:`q` (directly or
    through ReLUs) has weights :math:`W' = qW` in the twin, so the constraint
    :math:`\|w_i\| \le c` becomes :math:`\|w'_i\| \le q\,c`; every other Linear layer keeps
    :math:`c`. The radii are listed in the order of the Linear layers, as
    :func:`to_inverted` (with these radii) keeps the two trajectories identical under max-norm.

    Parameters
    ----------
    model : Sequential
        The standard-scaling network (the one passed to :func:`to_inverted`).
    c : float
        The paper's radius, in the standard parameterisation.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"expects a Sequential, but got {type(model).__name__}")
    if isinstance(c, bool) or not isinstance(c, int | float | np.floating) or not c > 0:
        raise ValueError(f"the radius c must be a number > 0, but got {c!r}")
    radii: list[float] = []
    keep = 1.0
    for layer in model.layers:
        if isinstance(layer, Dropout):
            keep = 1.0 - layer.p
        elif isinstance(layer, Linear):
            radii.append(keep * float(c))
            keep = 1.0
    return radii
