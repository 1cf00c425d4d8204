r"""Mask-free (seeded) dropout on the GPU, written in Triton.

:func:`seeded_dropout_forward` and :func:`seeded_dropout_backward` regenerate the keep mask
from ``(seed, offset)`` with Philox4x32-10 (``tl.philox`` on explicit uint32 counters), so
nothing but two integers is kept between the passes. Each Philox call serves 16 elements, a
byte each: element :math:`i` compares its byte with the top byte of
:math:`t = \operatorname{round}(p\,2^{32})` and reads further bytes, from disjoint counters,
only on a tie, so that it is kept exactly when its uniform 32-bit word is at least :math:`t`
(:math:`P(\text{keep}) = 1 - t/2^{32}`).
:func:`dropoutlib.numpy.philox.philox_keep_mask` computes the same mask in NumPy.

Triton is an optional dependency (``pip install dropoutlib[triton]``). Importing this package
imports Triton; nothing else in the library does. Without a GPU the kernels run on CPU
tensors under Triton's interpreter: set ``TRITON_INTERPRET=1`` **before** Triton is first
imported.
"""

from dropoutlib.triton.dropout import (
    DEFAULT_BLOCK,
    seeded_dropout_backward,
    seeded_dropout_forward,
    seeded_keep_mask,
)

__all__ = ["DEFAULT_BLOCK", "seeded_dropout_backward", "seeded_dropout_forward", "seeded_keep_mask"]
