"""From-scratch NumPy implementations of dropout and its variants (forward and backward).

Randomness is always explicit: every function that draws a mask takes a
:class:`numpy.random.Generator` as ``rng=``.
"""

from dropoutlib.numpy.functional import (
    SCALINGS,
    Scaling,
    bernoulli_mask,
    dropout,
    dropout_backward,
)
from dropoutlib.numpy.gaussian import gaussian_dropout, gaussian_dropout_backward

__all__ = [
    "SCALINGS",
    "Scaling",
    "bernoulli_mask",
    "dropout",
    "dropout_backward",
    "gaussian_dropout",
    "gaussian_dropout_backward",
]
