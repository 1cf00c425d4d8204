"""Argument checks shared by the NumPy API.

Every check raises before anything is computed or mutated, with a message that names the
bad value and says what is allowed.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["check_float_array", "check_generator", "check_probability", "check_training"]


def check_probability(p: object, name: str = "p") -> float:
    """Return ``p`` as a Python float after checking that it is a probability.

    Parameters
    ----------
    p : object
        The value to check. Real numbers (Python or NumPy, not ``bool``) are accepted.
    name : str
        The argument's name, used in the error message.

    Returns
    -------
    float
        ``float(p)``, guaranteed to satisfy ``0 <= p <= 1``.

    Raises
    ------
    TypeError
        If ``p`` is not a real number (for example a string, ``None``, a complex number,
        a ``bool`` or an array).
    ValueError
        If ``p`` is NaN or lies outside the closed interval [0, 1].
    """
    if isinstance(p, bool | np.bool_) or not isinstance(p, numbers.Real):
        raise TypeError(
            f"{name} must be a real number in [0, 1] (the drop probability), "
            f"but got {p!r} of type {type(p).__name__}"
        )
    value = float(p)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"{name} is the drop probability and has to be between 0 and 1 inclusive, but got {p!r}"
        )
    return value


def check_float_array(x: object, name: str = "x") -> np.ndarray:
    """Check that ``x`` is a NumPy array of a real floating dtype and return it.

    Raises
    ------
    TypeError
        If ``x`` is not a :class:`numpy.ndarray`, or its dtype is not a real floating type
        (integer, bool and complex arrays are refused, as PyTorch refuses integer tensors).
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, but got {type(x).__name__}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(
            f"{name} must have a floating-point dtype (float16, float32 or float64), "
            f"but got dtype {x.dtype}; convert it first, e.g. x.astype(np.float32)"
        )
    return x


def check_generator(rng: object, name: str = "rng") -> np.random.Generator:
    """Check that ``rng`` is an explicit :class:`numpy.random.Generator`.

    Raises
    ------
    TypeError
        If ``rng`` is missing (``None``), a legacy ``RandomState``, an integer seed or anything
        else that is not a ``Generator``. Randomness in this library is always explicit.
    """
    if not isinstance(rng, np.random.Generator):
        hint = (
            "pass rng=np.random.default_rng(seed)"
            if rng is None or isinstance(rng, numbers.Integral)
            else "wrap your bit generator with np.random.Generator(...)"
        )
        raise TypeError(
            f"{name} must be a numpy.random.Generator when a random mask is needed, "
            f"but got {rng!r}; {hint}"
        )
    return rng


def check_training(training: object, name: str = "training") -> bool:
    """Check that the mode flag ``training`` is a bool and return it as a Python ``bool``.

    PyTorch refuses anything but a bool here (``TypeError: dropout(): argument 'train'
    (position 3) must be bool, not str``); so does this library, because a truthy string such
    as ``"False"`` would silently train and ``None`` would silently evaluate.

    Raises
    ------
    TypeError
        If ``training`` is not a ``bool`` (``numpy.bool_`` is accepted).
    """
    if not isinstance(training, bool | np.bool_):
        raise TypeError(
            f"{name} must be a bool (True to train, False to evaluate), "
            f"but got {training!r} of type {type(training).__name__}"
        )
    return bool(training)
