"""From-scratch NumPy implementations of dropout and its variants (forward and backward).

Randomness is always explicit: every function that draws a mask takes a
:class:`numpy.random.Generator` as ``rng=``.
"""

from dropoutlib.numpy.alpha import (
    ALPHA_PRIME,
    SELU_ALPHA,
    SELU_SCALE,
    alpha_affine,
    alpha_dropout,
    alpha_dropout_backward,
    feature_alpha_dropout,
    selu,
    selu_backward,
)
from dropoutlib.numpy.feature import (
    dropout1d,
    dropout2d,
    dropout3d,
    feature_dropout,
    feature_dropout_backward,
)
from dropoutlib.numpy.functional import (
    SCALINGS,
    Scaling,
    apply_mask,
    bernoulli_mask,
    dropout,
    dropout_backward,
    inverted_scale,
    random_bytes,
    reference_byte_first_mask,
    reference_dropout,
)
from dropoutlib.numpy.gaussian import gaussian_dropout, gaussian_dropout_backward
from dropoutlib.numpy.recurrent import (
    concrete_drop_mask,
    concrete_dropout,
    concrete_dropout_backward,
    concrete_regularizer,
    concrete_regularizer_backward,
    dropout_schedule,
    embedding_dropout,
    embedding_dropout_backward,
    locked_dropout,
    locked_dropout_backward,
)

__all__ = [
    "ALPHA_PRIME",
    "SCALINGS",
    "SELU_ALPHA",
    "SELU_SCALE",
    "Scaling",
    "alpha_affine",
    "alpha_dropout",
    "alpha_dropout_backward",
    "apply_mask",
    "bernoulli_mask",
    "concrete_drop_mask",
    "concrete_dropout",
    "concrete_dropout_backward",
    "concrete_regularizer",
    "concrete_regularizer_backward",
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "dropout_backward",
    "dropout_schedule",
    "embedding_dropout",
    "embedding_dropout_backward",
    "feature_alpha_dropout",
    "feature_dropout",
    "feature_dropout_backward",
    "gaussian_dropout",
    "gaussian_dropout_backward",
    "inverted_scale",
    "locked_dropout",
    "locked_dropout_backward",
    "random_bytes",
    "reference_byte_first_mask",
    "reference_dropout",
    "selu",
    "selu_backward",
]
