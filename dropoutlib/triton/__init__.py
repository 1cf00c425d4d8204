r"""Mask-free (seeded) dropout on the GPU, written in Triton.

:func:`seeded_dropout_forward` and :func:`seeded_dropout_backward` regenerate the keep mask
from ``(seed, offset)`` with Philox4x32-10 (``tl.randint4x``), using all four 32-bit words
of every Philox call, so nothing but two integers is kept between the passes. Element
:math:`i` is kept when word :math:`i \bmod 4` of counter
:math:`(\lfloor i/4\rfloor, \text{offset}, 0, 0)` is at least
:math:`\operatorname{round}(p\,2^{32})`;
:func:`dropoutlib.numpy.philox.philox_keep_words` computes the same words in NumPy.

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
