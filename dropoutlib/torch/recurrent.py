r"""Recurrent and learned dropout in PyTorch: locked, embedding, concrete, R-Drop, schedules.

- :func:`locked_dropout`, :class:`LockedDropout`: one mask per sequence, shared by every time
  step (Gal & Ghahramani, 2016; AWD-LSTM's name, Merity et al., 2018).
- :class:`VariationalGRU`: a GRU whose input **and recurrent** connections are dropped, with
  locked or per-step masks (Gal & Ghahramani, 2016).
- :func:`stacked_lstm`: ``nn.LSTM(num_layers=L, dropout=p)`` rebuilt from one-layer LSTMs and
  :func:`dropoutlib.torch.dropout`, bit for bit.
- :func:`embedding_dropout`, :class:`EmbeddingDropout`: whole rows (words) of the embedding
  matrix dropped.
- :func:`concrete_dropout`, :class:`ConcreteDropout`, :func:`concrete_regularization`: the
  relaxed Bernoulli mask, differentiable in :math:`p` (Gal, Hron & Kendall, 2017).
- :func:`r_drop_loss`, :func:`symmetric_kl`: two dropout passes, cross-entropy plus symmetric
  KL (Liang et al., 2021).
- :func:`set_dropout_p`: set every dropout layer's ``p``, for early and late dropout (Liu et
  al., 2023).

Masks are drawn with ``bernoulli_`` from torch's generator, like ``torch.nn.Dropout``: with the
same ``torch.manual_seed`` the same call gives the same mask. ``p`` is the **drop**
probability.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dropoutlib.numpy.recurrent import CONCRETE_EPS, CONCRETE_TEMPERATURE
from dropoutlib.torch import modules as _modules
from dropoutlib.torch.functional import dropout as _dropout

__all__ = [
    "ConcreteDropout",
    "EmbeddingDropout",
    "LockedDropout",
    "VariationalGRU",
    "concrete_dropout",
    "concrete_regularization",
    "embedding_dropout",
    "locked_dropout",
    "r_drop_loss",
    "set_dropout_p",
    "stacked_lstm",
    "symmetric_kl",
]


def _check_p(p: float) -> None:
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _noise(like: Tensor, shape: tuple[int, ...], p: float) -> Tensor:
    """``bernoulli_(1 - p)`` then ``div_(1 - p)`` on a new tensor: ATen's dropout noise."""
    return like.new_empty(shape).bernoulli_(1 - p).div_(1 - p)


# --- locked dropout -------------------------------------------------------------------------


def locked_dropout(
    input: Tensor, p: float = 0.5, training: bool = True, batch_first: bool = False
) -> Tensor:
    r"""Locked (variational) dropout: one mask per sequence and feature, for every time step.

    For ``input`` of shape :math:`(T, B, H)` (or :math:`(B, T, H)` with ``batch_first``) the
    noise :math:`m_{bh}/(1-p)`, :math:`m_{bh} \sim \mathrm{Bernoulli}(1-p)`, has shape
    :math:`(1, B, H)` and is broadcast over time:
    :math:`y_{tbh} = x_{tbh}\, m_{bh}/(1-p)`.

    It draws the noise the way ``torch.nn.functional.dropout`` draws it on CPU for a tensor
    of the mask's shape (``new_empty``, ``bernoulli_(1-p)``, ``div_(1-p)``), so on CPU it
    equals ``F.dropout(torch.ones(1, B, H), p) * input`` bit for bit under the same seed
    (tested). On CUDA, ``F.dropout`` runs the fused ``native_dropout`` kernel instead of
    ``bernoulli_``, so no such equality is claimed there.
    In evaluation, or for ``p = 0``, the input object itself is returned.
    """
    _check_p(p)
    if input.dim() < 3:
        raise ValueError(
            "locked_dropout expects a 3-d or higher (T, B, H) input (B, T, H with "
            f"batch_first=True), but got a {input.dim()}-d input"
        )
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * torch.zeros((), dtype=input.dtype, device=input.device)
    t_axis = 1 if batch_first else 0
    shape = tuple(1 if i == t_axis else n for i, n in enumerate(input.shape))
    return input * _noise(input, shape, p)


class LockedDropout(nn.Module):
    r"""Module form of :func:`locked_dropout` (AWD-LSTM's ``LockedDropout``).

    Shape: :math:`(T, B, H, \dots)`, or :math:`(B, T, H, \dots)` with ``batch_first=True``.
    """

    def __init__(self, p: float = 0.5, batch_first: bool = False) -> None:
        super().__init__()
        _check_p(p)
        self.p = p
        self.batch_first = batch_first

    def forward(self, input: Tensor) -> Tensor:
        return locked_dropout(input, self.p, self.training, self.batch_first)

    def extra_repr(self) -> str:
        return f"p={self.p}, batch_first={self.batch_first}"


# --- a variational GRU ----------------------------------------------------------------------


class VariationalGRU(nn.Module):
    r"""A one-layer GRU with dropout on its input and on its recurrent connections.

    The cell is PyTorch's (``torch.nn.GRU``), with the dropped input :math:`\tilde x_t` and
    dropped state :math:`\tilde h_{t-1}` inside the products (Gal & Ghahramani, 2016, with one
    mask shared by the three gates, their "tied" variant):

    .. math::

       \begin{aligned}
       r_t &= \sigma(W_{ir}\tilde x_t + W_{hr}\tilde h_{t-1} + b_r), \\
       z_t &= \sigma(W_{iz}\tilde x_t + W_{hz}\tilde h_{t-1} + b_z), \\
       n_t &= \tanh\big(W_{in}\tilde x_t + b_{in} \\
       &\qquad + r_t \odot (W_{hn}\tilde h_{t-1} + b_{hn})\big), \\
       h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1},
       \end{aligned}

    with :math:`b_r = b_{ir} + b_{hr}`, :math:`b_z = b_{iz} + b_{hz}`,
    :math:`\tilde x_t = x_t \odot m^x_t/(1-p_x)` and
    :math:`\tilde h_{t-1} = h_{t-1} \odot m^h_t/(1-p_h)`. With ``locked=True`` the masks
    :math:`m^x, m^h` are drawn once per sequence (the same at every step: variational
    dropout); with ``locked=False`` they are drawn afresh at every step, on the input and on
    the recurrent connections alike. (The naive dropout of Gal & Ghahramani's Figure 1 has
    per-step masks and no dropout on the recurrent connections; ``locked=False`` keeps the
    recurrent dropout, so that it differs from ``locked=True`` in the locking only.) The
    parameters have
    ``nn.GRU``'s names and shapes, so ``load_state_dict`` of a one-layer ``nn.GRU`` works.

    Shape: input :math:`(T, B, I)`; returns the outputs :math:`(T, B, H)` and the last state
    :math:`(B, H)`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        dropout_input: float = 0.0,
        dropout_hidden: float = 0.0,
        locked: bool = True,
    ) -> None:
        super().__init__()
        _check_p(dropout_input)
        _check_p(dropout_hidden)
        self.input_size, self.hidden_size = input_size, hidden_size
        self.dropout_input, self.dropout_hidden, self.locked = dropout_input, dropout_hidden, locked
        h3 = 3 * hidden_size
        self.weight_ih_l0 = nn.Parameter(torch.empty(h3, input_size))
        self.weight_hh_l0 = nn.Parameter(torch.empty(h3, hidden_size))
        self.bias_ih_l0 = nn.Parameter(torch.empty(h3))
        self.bias_hh_l0 = nn.Parameter(torch.empty(h3))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.GRU``'s initialisation: every parameter uniform in :math:`\\pm 1/\\sqrt H`."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for w in self.parameters():
            nn.init.uniform_(w, -bound, bound)

    def _mask(self, like: Tensor, shape: tuple[int, ...], p: float) -> Tensor | None:
        if not self.training or p == 0.0:
            return None
        return _noise(like, shape, p)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if input.dim() != 3 or input.shape[-1] != self.input_size:
            raise ValueError(
                f"expected input of shape (T, B, {self.input_size}), got {tuple(input.shape)}"
            )
        t, b, _ = input.shape
        hsz = self.hidden_size
        px, ph = self.dropout_input, self.dropout_hidden
        mx = self._mask(input, (1 if self.locked else t, b, self.input_size), px)
        x = input if mx is None else input * mx
        gi = F.linear(x, self.weight_ih_l0, self.bias_ih_l0)  # all steps at once
        h = input.new_zeros(b, hsz) if hx is None else hx
        mh = self._mask(input, (b, hsz), ph) if self.locked else None
        outputs = []
        for step in range(t):
            if not self.locked:
                mh = self._mask(input, (b, hsz), ph)
            hd = h if mh is None else h * mh
            gh = F.linear(hd, self.weight_hh_l0, self.bias_hh_l0)
            i_r, i_z, i_n = gi[step].chunk(3, dim=1)
            h_r, h_z, h_n = gh.chunk(3, dim=1)
            r = torch.sigmoid(i_r + h_r)
            z = torch.sigmoid(i_z + h_z)
            n = torch.tanh(i_n + r * h_n)
            h = (1 - z) * n + z * h
            outputs.append(h)
        return torch.stack(outputs), h

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, dropout_input={self.dropout_input}, "
            f"dropout_hidden={self.dropout_hidden}, locked={self.locked}"
        )


def stacked_lstm(
    layers: list[nn.LSTM], input: Tensor, p: float, training: bool = True
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    r"""What ``nn.LSTM(num_layers=L, dropout=p)`` computes, from ``L`` one-layer LSTMs.

    ATen's recurrent stack (``aten/src/ATen/native/RNN.cpp``, ``apply_layer_stack``; the
    oneDNN path in ``mkldnn/RNN.cpp`` does the same) runs the layers in turn and applies
    ``at::dropout(output, p, train=true)`` to every layer's **whole output sequence** except the
    last: a fresh mask per element and time step, nothing on the recurrent connections, nothing
    on the input or the final output. This function does exactly that with
    :func:`dropoutlib.torch.dropout`, so with the same seed and the same weights it reproduces
    ``nn.LSTM``'s output and final states bit for bit on CPU (tested).

    Parameters
    ----------
    layers : list of torch.nn.LSTM
        One-layer, unidirectional, time-first LSTMs (layer ``l + 1``'s input size is layer
        ``l``'s hidden size).
    input : torch.Tensor
        :math:`(T, B, I)`.
    p : float
        Drop probability between layers.
    training : bool, default True

    Returns
    -------
    tuple
        ``(output, (h_n, c_n))`` as ``nn.LSTM`` returns them (states stacked over layers).
    """
    _check_p(p)
    for layer in layers:
        if layer.num_layers != 1 or layer.bidirectional or layer.batch_first:
            raise ValueError("stacked_lstm takes one-layer, unidirectional, time-first LSTMs")
    hs, cs = [], []
    x = input
    for i, layer in enumerate(layers):
        x, (h, c) = layer(x)
        hs.append(h)
        cs.append(c)
        if i < len(layers) - 1 and p != 0.0 and training:
            x = _dropout(x, p, True)
    return x, (torch.cat(hs), torch.cat(cs))


# --- embedding dropout ----------------------------------------------------------------------


def embedding_dropout(
    input: Tensor,
    weight: Tensor,
    p: float = 0.1,
    training: bool = True,
    padding_idx: int | None = None,
) -> Tensor:
    r"""``F.embedding(input, weight)`` with whole rows (words) of ``weight`` dropped.

    One draw per row of the :math:`(V, D)` matrix, noise of shape :math:`(V, 1)` drawn as
    ``F.dropout`` draws it on CPU (``bernoulli_(1-p)``, ``div_(1-p)``; on CUDA ``F.dropout``
    uses its fused kernel instead), then
    ``F.embedding(input, weight * noise)``: a dropped word reads zeros at every position of
    the batch, a kept one :math:`W_v/(1-p)`. The gradient reaches only kept rows, scaled by
    :math:`1/(1-p)`. In evaluation (or ``p = 0``) it is the plain look-up.
    """
    _check_p(p)
    if training and p > 0.0:
        if p == 1.0:
            noise = weight.new_zeros((weight.shape[0], 1))
        else:
            noise = _noise(weight, (weight.shape[0], 1), p)
        weight = weight * noise
    return F.embedding(input, weight, padding_idx)


class EmbeddingDropout(nn.Module):
    r"""An ``nn.Embedding`` whose words (rows) are dropped in training (:func:`embedding_dropout`).

    Parameters
    ----------
    embedding : torch.nn.Embedding
        The wrapped embedding (its ``weight`` and ``padding_idx`` are used).
    p : float, default 0.1
        Drop probability of a word.
    """

    def __init__(self, embedding: nn.Embedding, p: float = 0.1) -> None:
        super().__init__()
        _check_p(p)
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(f"embedding must be a torch.nn.Embedding, got {type(embedding)}")
        self.embedding = embedding
        self.p = p

    def forward(self, input: Tensor) -> Tensor:
        e = self.embedding
        return embedding_dropout(input, e.weight, self.p, self.training, e.padding_idx)

    def extra_repr(self) -> str:
        return f"p={self.p}"


# --- concrete dropout -----------------------------------------------------------------------


def concrete_dropout(
    input: Tensor,
    p: Tensor,
    temperature: float = CONCRETE_TEMPERATURE,
    eps: float = CONCRETE_EPS,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Concrete dropout: :math:`y = x(1-\tilde z)/(1-p)`, differentiable in ``p``.

    With one :math:`u \sim U(0,1)` per element (``torch.rand``),

    .. math::

       \begin{aligned}
       \tilde z &= \sigma\big((\ell(p) + \ell(u))/t\big), \\
       \ell(q) &= \log(q+\varepsilon) - \log(1-q+\varepsilon),
       \end{aligned}

    the relaxation of :func:`dropoutlib.numpy.concrete_drop_mask`.
    ``p`` is a tensor (usually :math:`\sigma` of a learned logit) and receives a gradient.
    """
    u = torch.rand(input.shape, dtype=input.dtype, device=input.device, generator=generator)
    a = (
        torch.log(p + eps) - torch.log(1 - p + eps) + torch.log(u + eps) - torch.log(1 - u + eps)
    ) / temperature
    z = torch.sigmoid(a)
    return input * (1 - z) / (1 - p)


class ConcreteDropout(nn.Module):
    r"""A layer whose input dropout rate is learned (Gal, Hron & Kendall, 2017).

    ``forward(x) = layer(concrete_dropout(x, p))`` in training and ``layer(x)`` in evaluation,
    with :math:`p = \sigma(\rho)` and :math:`\rho` (``p_logit``) a parameter.
    :meth:`regularization` is the layer's term of the objective,

    .. math::

       \begin{aligned}
       R &= \lambda_w \frac{\lVert W \rVert^2}{1 - p} - \lambda_p K\, \mathcal H(p), \\
       \mathcal H(p) &= -p \log p - (1-p) \log(1-p),
       \end{aligned}

    with :math:`W` the layer's ``weight`` and :math:`K` its input dimension
    (:func:`dropoutlib.numpy.concrete_regularizer`); add :func:`concrete_regularization` of
    the model to the data loss. The authors use :math:`\lambda_w = l^2/N`,
    :math:`\lambda_p = 2/N` and temperature 0.1.

    Parameters
    ----------
    layer : torch.nn.Module
        The layer whose input is dropped; it must have a ``weight`` (and ``in_features``,
        unless ``input_dim`` is given).
    weight_regularizer, dropout_regularizer : float
        :math:`\lambda_w` and :math:`\lambda_p`.
    init_p : float, default 0.1
        Initial drop rate (the authors' ``init_min = init_max = 0.1``).
    temperature : float, default 0.1
    input_dim : int, optional
        :math:`K` (default ``layer.in_features``).
    """

    def __init__(
        self,
        layer: nn.Module,
        *,
        weight_regularizer: float = 1e-6,
        dropout_regularizer: float = 1e-5,
        init_p: float = 0.1,
        temperature: float = CONCRETE_TEMPERATURE,
        input_dim: int | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 < init_p < 1.0:
            raise ValueError(f"init_p must lie in (0, 1), but got {init_p}")
        if not isinstance(getattr(layer, "weight", None), Tensor):
            raise TypeError("ConcreteDropout needs a layer with a weight (e.g. nn.Linear)")
        if input_dim is None:
            input_dim = getattr(layer, "in_features", None)
            if input_dim is None:
                raise ValueError("give input_dim for a layer without in_features")
        self.layer = layer
        self.weight_regularizer = float(weight_regularizer)
        self.dropout_regularizer = float(dropout_regularizer)
        self.temperature = float(temperature)
        self.input_dim = int(input_dim)
        logit = math.log(init_p) - math.log(1 - init_p)
        weight = cast(Tensor, layer.weight)
        self.p_logit = nn.Parameter(torch.tensor([logit], dtype=weight.dtype, device=weight.device))

    @property
    def p(self) -> Tensor:
        """The current drop rate :math:`\\sigma(\\rho)` (a tensor of one element)."""
        return torch.sigmoid(self.p_logit)

    def forward(self, input: Tensor) -> Tensor:
        if self.training:
            input = concrete_dropout(input, self.p, self.temperature)
        return self.layer(input)

    def regularization(self) -> Tensor:
        """This layer's :math:`R` (a one-element tensor, differentiable in W and p)."""
        p = self.p
        weight = cast(Tensor, self.layer.weight)
        wreg = self.weight_regularizer * weight.pow(2).sum() / (1 - p)
        entropy = p * torch.log(p) + (1 - p) * torch.log(1 - p)
        return wreg + self.dropout_regularizer * self.input_dim * entropy

    def extra_repr(self) -> str:
        return (
            f"p={float(self.p.detach()):.4g}, temperature={self.temperature}, "
            f"weight_regularizer={self.weight_regularizer:g}, "
            f"dropout_regularizer={self.dropout_regularizer:g}"
        )


def concrete_regularization(model: nn.Module) -> Tensor:
    """Sum of :meth:`ConcreteDropout.regularization` over every such layer of ``model``."""
    terms = [m.regularization() for m in model.modules() if isinstance(m, ConcreteDropout)]
    if not terms:
        raise ValueError("the model has no ConcreteDropout layer")
    return torch.stack(terms).sum()


# --- R-Drop ---------------------------------------------------------------------------------


def symmetric_kl(logits_a: Tensor, logits_b: Tensor) -> Tensor:
    r"""Symmetric KL divergence of two softmax outputs, averaged over the batch.

    Per example :math:`\tfrac12\big(\mathrm{KL}(P_a\|P_b) + \mathrm{KL}(P_b\|P_a)\big)`.

    With :math:`P = \operatorname{softmax}` over the last axis, the two KL terms add up to
    :math:`\sum_c (P_{a,c} - P_{b,c})(\log P_{a,c} - \log P_{b,c})`, which is what is computed.
    Both arguments receive gradients (R-Drop does not detach either pass).
    """
    if logits_a.shape != logits_b.shape:
        raise ValueError(f"shapes differ: {tuple(logits_a.shape)} and {tuple(logits_b.shape)}")
    la, lb = F.log_softmax(logits_a, dim=-1), F.log_softmax(logits_b, dim=-1)
    per_example = 0.5 * ((la.exp() - lb.exp()) * (la - lb)).sum(dim=-1)
    return per_example.mean()


def r_drop_loss(logits_a: Tensor, logits_b: Tensor, target: Tensor, alpha: float) -> Tensor:
    r"""The R-Drop objective for two dropout passes of one batch (Liang et al., 2021).

    .. math::

       \begin{aligned}
       L &= \tfrac12\big(\mathrm{CE}(P_a, y) + \mathrm{CE}(P_b, y)\big) \\
       &\quad + \alpha S, \\
       S &= \tfrac12\big(\mathrm{KL}(P_a\|P_b) + \mathrm{KL}(P_b\|P_a)\big),
       \end{aligned}

    each term a mean over the batch. The :math:`\tfrac12` on the cross-entropies is the
    authors' README (``ce_loss = 0.5 * (...)``); the paper writes the sum of the two
    cross-entropies, i.e. twice this loss with :math:`\alpha_\text{paper} = 2\alpha`. The
    README's ``compute_kl_loss`` sums the KL over the batch by default ("sum" or "mean"
    depending on the task) while its cross-entropy is a batch mean; with the sum, its
    :math:`\alpha` is this one divided by the batch size. With :math:`\alpha = 0` it is
    ordinary dropout training on the two passes.
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, but got {alpha}")
    ce = 0.5 * (F.cross_entropy(logits_a, target) + F.cross_entropy(logits_b, target))
    return ce + alpha * symmetric_kl(logits_a, logits_b)


# --- schedules ------------------------------------------------------------------------------

_DROPOUT_TYPES: tuple[type, ...] = (
    nn.modules.dropout._DropoutNd,
    _modules._DropoutNd,
    LockedDropout,
    EmbeddingDropout,
)


def set_dropout_p(model: nn.Module, p: float) -> int:
    """Set ``p`` of every dropout layer of ``model``; return how many were set.

    The dropout layers are ``torch.nn``'s and :mod:`dropoutlib.torch`'s ``Dropout*`` layers,
    :class:`LockedDropout` and :class:`EmbeddingDropout`; a :class:`VariationalGRU` has both
    its rates set. This is how early and late dropout (Liu et al., 2023) are applied: call it
    before every step with the step's rate from :func:`dropoutlib.numpy.dropout_schedule` (the
    authors' ``update_dropout``).
    """
    _check_p(p)
    count = 0
    for m in model.modules():
        if isinstance(m, _DROPOUT_TYPES):
            m.p = p
            count += 1
        elif isinstance(m, VariationalGRU):
            m.dropout_input = m.dropout_hidden = p
            count += 1
    return count
