r"""Which dropout mask does activation checkpointing's recomputation draw?

``torch.utils.checkpoint.checkpoint(fn, x)`` keeps only ``x`` from the forward pass and runs
``fn`` a second time during the backward pass to rebuild the activations it needs. Dropout in
``fn`` draws from the global generator, so the recomputation reproduces the forward mask only
if the generator is put back where it was: with ``preserve_rng_state=True`` (the default)
checkpoint saves the CPU (and CUDA) generator state before the forward run and restores it
around the recomputation (``torch/utils/checkpoint.py``). With ``preserve_rng_state=False``
the recomputation continues the stream, draws a **new** mask, and the gradient is that of a
network the forward pass never ran. A counter-based mask,
:func:`dropoutlib.torch.seeded.seeded_dropout`, is a function of ``(seed, offset)`` and needs
no generator state at all.

:func:`checkpoint_masks` records the mask of every run of the checkpointed block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint, set_checkpoint_early_stop

from dropoutlib.torch.seeded import seeded_dropout

__all__ = ["checkpoint_masks"]


def checkpoint_masks(
    x: torch.Tensor,
    p: float,
    *,
    preserve_rng_state: bool = True,
    seed: int | None = None,
    use_reentrant: bool = False,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    r"""Run :math:`L = \sum \operatorname{dropout}(e^{x})` under checkpointing; return its masks.

    The block :math:`e^{x}` (never zero, so that a zero output means a dropped element) is
    followed by ``F.dropout`` (``seed=None``) or by the library's seeded dropout at
    ``(seed, 0)``.

    Parameters
    ----------
    x : torch.Tensor
        Input (a leaf; its gradient is computed).
    p : float
        Drop probability.
    preserve_rng_state : bool, default True
        Passed to ``torch.utils.checkpoint.checkpoint``.
    seed : int or None, default None
        ``None``: ``F.dropout`` with torch's generator; an int: seeded dropout.
    use_reentrant : bool, default False
        Passed to ``checkpoint`` (``False`` is the recommended implementation).

    Returns
    -------
    masks : list of torch.Tensor of bool
        The keep mask of each run of the block: the forward run, then the recomputation.
    grad : torch.Tensor
        :math:`\partial L / \partial x`, which is :math:`m_{\text{recomputed}}\, e^{x} / (1-p)`.
    """
    masks: list[torch.Tensor] = []

    def block(t: torch.Tensor) -> torch.Tensor:
        h = torch.exp(t)
        if seed is None:
            y = F.dropout(h, p, training=True)
        else:
            y = seeded_dropout(h, p, seed=seed)
        masks.append((y != 0).detach().clone())
        return y

    leaf = x.detach().clone().requires_grad_(True)
    # early stop would end the recomputation inside dropout, before the mask is recorded
    with set_checkpoint_early_stop(False):
        out = checkpoint(
            block, leaf, use_reentrant=use_reentrant, preserve_rng_state=preserve_rng_state
        )
        out.sum().backward()
    return masks, leaf.grad
