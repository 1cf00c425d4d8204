r"""A tiny LoRA linear layer whose dropout acts on the adapter's input only.

LoRA (Hu et al., 2021) freezes a pretrained weight :math:`W_0 \in \mathbb{R}^{d_{out} \times
d_{in}}` and learns a low-rank update :math:`\Delta W = \frac{\alpha}{r} B A` with
:math:`A \in \mathbb{R}^{r \times d_{in}}`, :math:`B \in \mathbb{R}^{d_{out} \times r}`. PEFT's
``LoraConfig.lora_dropout`` (``peft/tuners/lora/layer.py``: ``result = result +
lora_B(lora_A(dropout(x))) * scaling``) drops the input of the **adapter** branch only:

.. math::

   \begin{aligned}
   y &= W_0 x + b \\
     &\quad {}+ \frac{\alpha}{r}\, B A\, \Bigl(\frac{m}{1-p} \odot x\Bigr), \\
   m_i &\sim \mathrm{Bernoulli}(1-p),
   \end{aligned}

so the frozen path sees the clean input, and only the update is trained under noise. Since the
branch is linear in the mask, :math:`\mathbb{E}_m[y] = (W_0 + \frac{\alpha}{r}BA)x + b`: the
evaluation-mode output, which :meth:`LoRALinear.merged_weight` folds into one matrix.
Initialisation as PEFT's default: :math:`A` like ``nn.Linear`` (Kaiming-uniform with
:math:`a = \sqrt 5`), :math:`B = 0`, so the layer starts as the base layer exactly.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from dropoutlib.torch.modules import Dropout

__all__ = ["LoRALinear"]


class LoRALinear(nn.Module):
    r"""``base(x) + lora_B(lora_A(dropout(x))) * (lora_alpha / r)`` with ``base`` frozen.

    Parameters
    ----------
    base : torch.nn.Linear
        The pretrained layer; its parameters are frozen (``requires_grad = False``).
    r : int
        Rank of the update, :math:`r \ge 1`.
    lora_alpha : float, default 8.0
        The update is scaled by ``lora_alpha / r``.
    lora_dropout : float, default 0.0
        Drop probability on the adapter's input (an identity when 0, as in PEFT).

    Examples
    --------
    >>> import torch
    >>> layer = LoRALinear(torch.nn.Linear(4, 3), r=2, lora_dropout=0.1)
    >>> x = torch.randn(5, 4)
    >>> torch.equal(layer(x), layer.base(x))  # B = 0 at initialisation
    True
    """

    def __init__(
        self, base: nn.Linear, r: int, lora_alpha: float = 8.0, lora_dropout: float = 0.0
    ) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"base must be a torch.nn.Linear, but got {type(base).__name__}")
        if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
            raise ValueError(f"`r` should be a positive integer value but the value passed is {r}")
        if not 0.0 <= float(lora_dropout) <= 1.0:
            raise ValueError(
                f"dropout probability has to be between 0 and 1, but got {lora_dropout}"
            )
        self.base = base
        for param in base.parameters():
            param.requires_grad_(False)
        self.r, self.lora_alpha = r, float(lora_alpha)
        self.scaling = self.lora_alpha / r
        kw = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.lora_A = nn.Linear(base.in_features, r, bias=False, **kw)
        self.lora_B = nn.Linear(r, base.out_features, bias=False, **kw)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.lora_dropout: nn.Module = (
            Dropout(float(lora_dropout)) if lora_dropout > 0.0 else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        result = self.base(x)
        return result + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling

    def merged_weight(self) -> Tensor:
        r""":math:`W_0 + \frac{\alpha}{r} B A`: the weight of the evaluation-mode layer."""
        return self.base.weight + (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    def extra_repr(self) -> str:
        return f"r={self.r}, lora_alpha={self.lora_alpha:g}"
