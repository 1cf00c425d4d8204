"""PyTorch 2.13's error and warning texts for the dropout family, in one place.

Both the torch drop-ins (:mod:`dropoutlib.torch`) and the NumPy channel-wise dropouts
(:mod:`dropoutlib.numpy.feature`) raise and warn with exactly these texts; the parity tests
compare them with torch's own. This module imports nothing, so NumPy code can use it without
importing torch.
"""

__all__ = [
    "DROPOUT1D_RANK_ERROR",
    "DROPOUT2D_3D_INPUT_WARNING",
    "DROPOUT2D_RANK_WARNING",
    "DROPOUT3D_RANK_WARNING",
    "FEATURE_RANK_ERROR",
]

#: ``RuntimeError`` of ``dropout1d`` for a rank other than 2 or 3 (format with ``k``).
DROPOUT1D_RANK_ERROR = (
    "dropout1d: Expected 2D or 3D input, but received a {k}D input. Note that dropout1d exists "
    "to provide channel-wise dropout on inputs with 1 spatial dimension, a channel dimension, "
    "and an optional batch dimension (i.e. 2D or 3D inputs)."
)
#: ``UserWarning`` of ``dropout2d`` for a rank other than 3 or 4 (format with ``k``).
DROPOUT2D_RANK_WARNING = (
    "dropout2d: Received a {k}-D input to dropout2d, which is deprecated and will result in an "
    "error in a future release. To retain the behavior and silence this warning, please use "
    "dropout instead. Note that dropout2d exists to provide channel-wise dropout on inputs with "
    "2 spatial dimensions, a channel dimension, and an optional batch dimension (i.e. 3D or 4D "
    "inputs)."
)
#: ``UserWarning`` of ``dropout2d`` for a 3-D input, read as ``(N, C, L)``.
DROPOUT2D_3D_INPUT_WARNING = (
    "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout "
    "behavior is desired - input is interpreted as shape (N, C, L), where C is the channel dim. "
    "This behavior will change in a future release to interpret the input as one without a "
    "batch dimension, i.e. shape (C, H, W). To maintain the 1D channel-wise dropout behavior, "
    "please switch to using dropout1d instead."
)
#: ``UserWarning`` of ``dropout3d`` for a rank other than 4 or 5 (format with ``k``).
DROPOUT3D_RANK_WARNING = (
    "dropout3d: Received a {k}-D input to dropout3d, which is deprecated and will result in an "
    "error in a future release. To retain the behavior and silence this warning, please use "
    "dropout instead. Note that dropout3d exists to provide channel-wise dropout on inputs with "
    "3 spatial dimensions, a channel dimension, and an optional batch dimension (i.e. 4D or 5D "
    "inputs)."
)
#: ``RuntimeError`` of every feature (channel-wise) dropout on an input of rank < 2.
FEATURE_RANK_ERROR = "Feature dropout requires at least 2 dimensions in the input"
