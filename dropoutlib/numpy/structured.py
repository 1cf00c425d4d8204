r"""Structured dropout in NumPy: DropConnect, DropPath (stochastic depth) and DropBlock.

Each variant drops a *structure* instead of independent activations, with a forward and a
backward pass, in the inverted convention of the rest of the library (kept values scaled in
training, :math:`p` the **drop** probability):

- **DropConnect** (Wan et al., 2013) drops individual **weights**: a linear layer computes
  :math:`u = (M \odot W)\,x / (1-p) + b` with a fresh mask :math:`M` per example
  (:func:`dropconnect_linear`, :class:`DropConnectLinear`). At test time the mean of
  :math:`u` is exactly :math:`Wx + b`, but the mean of :math:`\mathrm{relu}(u)` is not
  :math:`\mathrm{relu}(Wx + b)`; :func:`dropconnect_moments` and :func:`gaussian_relu_mean`
  give the paper's Gaussian moment-matching inference.
- **DropPath / stochastic depth** (Huang et al., 2016) drops a whole residual **branch**, per
  sample or per batch (:func:`drop_path`, :class:`ResidualBlock`), with a depth schedule
  (:func:`linear_drop_rates`).
- **DropBlock** (Ghiasi et al., 2018) drops contiguous **blocks** of a feature map
  (:func:`drop_block`), with the seed rate :math:`\gamma` of :func:`dropblock_gamma` and the
  exact drop rate it produces (:func:`dropblock_drop_rate`).

The torch versions, bit-identical to torchvision's and timm's, are in
:mod:`dropoutlib.torch.structured`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from dropoutlib._validation import (
    check_float_array,
    check_generator,
    check_probability,
    check_training,
)
from dropoutlib.numpy.functional import Scaling, _check_scaling, bernoulli_mask
from dropoutlib.numpy.nn import Linear, Module, Parameter, ReLU, Sequential, softmax

__all__ = [
    "DropConnectLinear",
    "ResidualBlock",
    "block_coverage",
    "drop_block",
    "drop_block_backward",
    "drop_path",
    "drop_path_backward",
    "dropblock_drop_rate",
    "dropblock_exact_gamma",
    "dropblock_gamma",
    "dropblock_mask",
    "dropconnect_linear",
    "dropconnect_linear_backward",
    "dropconnect_mc_proba",
    "dropconnect_moments",
    "gaussian_relu_mean",
    "gaussian_relu_sampled",
    "linear_drop_rates",
    "moment_matching_proba",
]


# --- DropConnect ------------------------------------------------------------------------------


def _check_linear_args(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> None:
    check_float_array(x)
    check_float_array(weight, "weight")
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"x must be (batch, in) and weight (out, in) with the same in, "
            f"but got {x.shape} and {weight.shape}"
        )
    if bias is not None and (check_float_array(bias, "bias").shape != (weight.shape[0],)):
        raise ValueError(f"bias must have shape ({weight.shape[0]},), but got {bias.shape}")


def dropconnect_linear(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    p: float = 0.5,
    *,
    rng: np.random.Generator | None = None,
    training: bool = True,
    per_sample: bool = True,
    return_mask: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    r"""A linear layer with DropConnect on its weights (Wan et al., 2013), inverted form.

    For example :math:`n` with its own keep mask :math:`M_n \in \{0,1\}^{\text{out}\times
    \text{in}}`, :math:`M_{n,ij} \sim \mathrm{Bernoulli}(1-p)`:

    .. math::

       \begin{aligned}
       u_n &= \frac{(M_n \odot W)\, x_n}{1 - p} + b, \\
       \mathbb{E}_M[u_n] &= W x_n + b.
       \end{aligned}

    The bias is not dropped. In evaluation the layer is :math:`Wx + b` (weight scaling, which
    is the identity in the inverted form).

    Parameters
    ----------
    x : numpy.ndarray
        ``(batch, in)``.
    weight : numpy.ndarray
        ``(out, in)``.
    bias : numpy.ndarray or None
        ``(out,)``.
    p : float, default 0.5
        Drop probability of each weight.
    rng : numpy.random.Generator
        Required in training.
    training : bool, default True
    per_sample : bool, default True
        One mask per example, shape ``(batch, out, in)``, as in the paper; ``False`` draws one
        ``(out, in)`` mask for the whole batch (AWD-LSTM's weight drop).
    return_mask : bool, default False
        Also return the boolean keep mask (``None`` in evaluation or at ``p = 0``).

    Returns
    -------
    numpy.ndarray or tuple
        ``u`` of shape ``(batch, out)`` in the dtype of ``x``, and the mask if requested.
    """
    _check_linear_args(x, weight, bias)
    p = check_probability(p)
    b = 0 if bias is None else bias
    if not check_training(training) or p == 0.0:
        if training:
            check_generator(rng)
        u = x @ weight.T + b
        return (u, None) if return_mask else u
    rng = check_generator(rng)
    shape = (x.shape[0], *weight.shape) if per_sample else weight.shape
    mask = bernoulli_mask(shape, p, rng=rng)
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    w = (mask * weight) * np.asarray(scale, dtype=weight.dtype)
    u = (np.einsum("noi,ni->no", w, x) if per_sample else x @ w.T) + b
    u = u.astype(x.dtype, copy=False)
    return (u, mask) if return_mask else u


def dropconnect_linear_backward(
    grad_output: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    mask: np.ndarray | None,
    p: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Gradients of :func:`dropconnect_linear` for the mask of the forward pass.

    With :math:`g_n = \partial L/\partial u_n` and :math:`\tilde W_n = M_n \odot W/(1-p)`:

    .. math::

       \begin{aligned}
       \frac{\partial L}{\partial x_n} &= \tilde W_n^\top g_n, \\
       \frac{\partial L}{\partial W} &= \frac{1}{1-p} \sum_n M_n \odot (g_n x_n^\top), \\
       \frac{\partial L}{\partial b} &= \sum_n g_n.
       \end{aligned}

    A dropped weight gets no gradient from the examples that dropped it.

    Returns
    -------
    tuple of numpy.ndarray
        ``(grad_x, grad_weight, grad_bias)``.
    """
    grad_output = check_float_array(grad_output, "grad_output")
    _check_linear_args(x, weight, None)
    p = check_probability(p)
    grad_b = grad_output.sum(axis=0)
    if mask is None:
        if p == 1.0:
            return np.zeros_like(x), np.zeros_like(weight), grad_b
        return grad_output @ weight, grad_output.T @ x, grad_b
    scale = np.asarray(0.0 if p == 1.0 else 1.0 / (1.0 - p), dtype=weight.dtype)
    if mask.shape == weight.shape:  # one mask for the batch
        w = (mask * weight) * scale
        return grad_output @ w, (grad_output.T @ x) * mask * scale, grad_b
    if mask.shape != (x.shape[0], *weight.shape):
        raise ValueError(
            f"mask of shape {mask.shape} fits neither the weight {weight.shape} nor "
            f"(batch, out, in) = {(x.shape[0], *weight.shape)}"
        )
    w = (mask * weight) * scale
    grad_x = np.einsum("noi,no->ni", w, grad_output)
    grad_w = np.einsum("noi,no,ni->oi", mask.astype(weight.dtype), grad_output, x) * scale
    return grad_x, grad_w, grad_b


def dropconnect_moments(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, p: float
) -> tuple[np.ndarray, np.ndarray]:
    r"""Mean and variance of DropConnect pre-activations over the mask (Wan et al., 2013, §3).

    :math:`u_i = \sum_j M_{ij} W_{ij} x_j / (1-p) + b_i` is a sum of independent terms, each
    :math:`W_{ij}x_j/(1-p)` with probability :math:`1-p` and 0 otherwise, so

    .. math::

       \begin{aligned}
       \mu_i &= \textstyle\sum_j W_{ij} x_j + b_i, \\
       \sigma_i^2 &= \frac{p}{1-p} \textstyle\sum_j W_{ij}^2 x_j^2 .
       \end{aligned}

    (In the paper's convention, keep probability :math:`q = 1-p` and no scaling in training,
    the mean is :math:`q\,Wx` and the variance :math:`q(1-q)(W\odot W)(x \odot x)`; dividing
    :math:`u` by :math:`q` gives the lines above.) By the central limit theorem :math:`u_i` is
    approximately :math:`\mathcal N(\mu_i, \sigma_i^2)`, the paper's inference assumption.

    Returns
    -------
    tuple of numpy.ndarray
        ``(mean, variance)``, each ``(batch, out)``.
    """
    _check_linear_args(x, weight, bias)
    p = check_probability(p)
    if p == 1.0:
        raise ValueError("the moments need p < 1 (at p = 1 every weight is dropped)")
    mean = x @ weight.T + (0 if bias is None else bias)
    var = (p / (1.0 - p)) * ((x * x) @ (weight * weight).T)
    return mean, var


def gaussian_relu_mean(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    r"""Exact :math:`\mathbb E[\max(u, 0)]` for :math:`u \sim \mathcal N(\mu, \sigma^2)`.

    .. math::

       \begin{aligned}
       \mathbb E[\max(u,0)] &= \mu\, \Phi(\mu/\sigma) \\
       &\quad + \sigma\, \varphi(\mu/\sigma),
       \end{aligned}

    with :math:`\Phi, \varphi` the standard normal CDF and density, and
    :math:`\max(\mu, 0)` where :math:`\sigma = 0`. This is the closed form of the paper's
    sampled inference (:func:`gaussian_relu_sampled`) for ReLU units.
    """
    mean = np.asarray(mean, dtype=np.float64)
    sd = np.sqrt(np.asarray(var, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = mean / sd
        out = mean * special.ndtr(z) + sd * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return np.where(sd > 0, out, np.maximum(mean, 0.0))


def gaussian_relu_sampled(
    mean: np.ndarray, var: np.ndarray, samples: int, *, rng: np.random.Generator
) -> np.ndarray:
    r"""The paper's inference (Wan et al., 2013, Algorithm 2): average :math:`\max(u, 0)` over
    ``samples`` draws :math:`u \sim \mathcal N(\mu, \sigma^2)` per unit."""
    rng = check_generator(rng)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, but got {samples!r}")
    mean = np.asarray(mean, dtype=np.float64)
    sd = np.sqrt(np.asarray(var, dtype=np.float64))
    total = np.zeros_like(mean)
    for _ in range(samples):
        total += np.maximum(mean + sd * rng.standard_normal(mean.shape), 0.0)
    return total / samples


class DropConnectLinear(Linear):
    r"""A :class:`~dropoutlib.numpy.nn.Linear` layer whose weights are dropped in training.

    Forward :func:`dropconnect_linear` (per-example masks by default), backward
    :func:`dropconnect_linear_backward` with the stored mask; in evaluation it is the plain
    linear layer (weight scaling). Being a ``Linear``, it is found by the protocol's max-norm
    and weight-distance diagnostics.

    Parameters
    ----------
    in_features, out_features : int
    p : float
        Drop probability of each weight.
    rng : numpy.random.Generator
        Initial weights (as :class:`Linear`).
    mask_rng : numpy.random.Generator
        The masks (kept in ``self.rng``, so the library's tools find and control it).
    per_sample : bool, default True
    dtype : numpy dtype, default float32
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        p: float = 0.5,
        *,
        rng: np.random.Generator,
        mask_rng: np.random.Generator,
        per_sample: bool = True,
        dtype: type[np.floating] = np.float32,
    ) -> None:
        super().__init__(in_features, out_features, rng=rng, dtype=dtype)
        self.p = check_probability(p)
        self.rng = check_generator(mask_rng, "mask_rng")
        self.per_sample = bool(per_sample)
        self.mask: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = check_float_array(x)
        self._x = x
        u, self.mask = dropconnect_linear(
            x, self.weight.data, self.bias.data, self.p, rng=self.rng, training=self.training,
            per_sample=self.per_sample, return_mask=True,
        )  # fmt: skip
        return u

    def backward(self, grad: np.ndarray) -> np.ndarray:
        x = self._need_input(self._x)
        p = self.p if self.training else 0.0
        gx, gw, gb = dropconnect_linear_backward(grad, x, self.weight.data, self.mask, p)
        self.weight.grad += gw
        self.bias.grad += gb
        return gx

    def __repr__(self) -> str:
        return f"DropConnectLinear({self.in_features}, {self.out_features}, p={self.p})"


def moment_matching_proba(
    model: Sequential, x: np.ndarray, *, samples: int | None = None, rng=None
) -> np.ndarray:
    r"""Class probabilities with the paper's Gaussian moment-matching inference.

    Runs ``model`` (a :class:`~dropoutlib.numpy.nn.Sequential`) in evaluation mode, except
    that every :class:`DropConnectLinear` followed by a :class:`~dropoutlib.numpy.nn.ReLU`
    outputs :math:`\mathbb E[\max(u,0)]` under :math:`u \sim \mathcal N(\mu, \sigma^2)` of
    :func:`dropconnect_moments`: exactly (:func:`gaussian_relu_mean`, ``samples=None``) or by
    the paper's sampling (:func:`gaussian_relu_sampled`). Returns the softmax of the output.
    """
    layers = list(model.children())
    h = np.asarray(x, dtype=np.float64)
    i = 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, DropConnectLinear) and isinstance(nxt, ReLU):
            w, b = layer.weight.data.astype(np.float64), layer.bias.data.astype(np.float64)
            mean, var = dropconnect_moments(h, w, b, layer.p)
            if samples is None:
                h = gaussian_relu_mean(mean, var)
            else:
                h = gaussian_relu_sampled(mean, var, samples, rng=rng)
            i += 2
            continue
        was = layer.training
        layer.train(False)
        h = np.asarray(layer(h.astype(_layer_dtype(layer, h))), dtype=np.float64)
        layer.train(was)
        i += 1
    return softmax(h)


def _layer_dtype(layer: Module, h: np.ndarray) -> np.dtype:
    """The dtype a layer computes in (its weights' dtype, or the input's if it has none)."""
    params = layer.parameters()
    return params[0].data.dtype if params else h.dtype


def dropconnect_mc_proba(
    model: Sequential, x: np.ndarray, samples: int, *, rng: np.random.Generator
) -> np.ndarray:
    r"""Monte Carlo average of the class probabilities over ``samples`` DropConnect masks.

    Each pass runs ``model`` in training mode with one mask per :class:`DropConnectLinear`
    for the whole of ``x`` (masks independent across passes; every example's average is the
    same Monte Carlo estimate of :math:`\mathbb E_M[\mathrm{softmax}]` as with per-example
    masks) drawn from ``rng``; the layers' own generators, modes and ``per_sample`` flags are
    restored. Returns ``(samples, N, classes)``: the mean over axis 0 is the MC average.
    """
    rng = check_generator(rng)
    layers = [m for m in model.modules() if isinstance(m, DropConnectLinear)]
    saved = [(m.rng, m.per_sample) for m in layers]
    was = model.training
    out = []
    try:
        model.train()
        for m in layers:
            m.rng, m.per_sample = rng, False
        for _ in range(samples):
            out.append(softmax(np.asarray(model(x), dtype=np.float64)))
    finally:
        for m, (g, ps) in zip(layers, saved, strict=True):
            m.rng, m.per_sample = g, ps
        model.train(was)
    return np.stack(out)


# --- DropPath / stochastic depth --------------------------------------------------------------


def drop_path(
    x: np.ndarray,
    p: float,
    *,
    rng: np.random.Generator | None = None,
    training: bool = True,
    mode: str = "row",
    scaling: Scaling = "inverted",
    return_mask: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    r"""Drop whole samples ("row") or the whole batch ("batch") of a residual branch's output.

    With :math:`b_n \sim \mathrm{Bernoulli}(1-p)` per sample (or one :math:`b` for the
    batch), in training

    .. math::

       \begin{aligned}
       \text{inverted:} \quad y_n &= \frac{b_n}{1-p}\, x_n, \\
       \text{standard:} \quad y_n &= b_n\, x_n,
       \end{aligned}

    (standard: Huang et al., 2016) and in evaluation :math:`y = x` (inverted) or
    :math:`y = (1-p)\,x` (standard: the paper's
    test-time rule :math:`H_\ell = \mathrm{ReLU}(p_\ell f_\ell(H_{\ell-1}) + H_{\ell-1})`
    with **survival** probability :math:`p_\ell = 1-p`). Both have
    :math:`\mathbb E[\text{train}] = \text{eval}`; the inverted network is the standard one
    with every branch's last layer multiplied by :math:`1/(1-p)`, i.e. converting a trained
    standard network to inverted form multiplies the branch output by :math:`1-p`.

    Returns ``y`` (and the boolean keep mask of shape :math:`(N, 1, \dots)` or
    :math:`(1, \dots)` if ``return_mask``; ``None`` when nothing was drawn).
    """
    x = check_float_array(x)
    p = check_probability(p)
    scaling = _check_scaling(scaling)
    if mode not in ("row", "batch"):
        raise ValueError(f"mode has to be either 'batch' or 'row', but got {mode!r}")
    if x.ndim < 1:
        raise ValueError("drop_path needs an input with a batch axis (ndim >= 1)")
    if not check_training(training):
        y = x if scaling == "inverted" else x * np.asarray(1.0 - p, dtype=x.dtype)
        return (y, None) if return_mask else y
    rng = check_generator(rng)
    shape = (x.shape[0],) + (1,) * (x.ndim - 1) if mode == "row" else (1,) * x.ndim
    mask = bernoulli_mask(shape, p, rng=rng)
    y = drop_path_backward(x, mask, p, scaling=scaling)  # the same linear map
    return (y, mask) if return_mask else y


def drop_path_backward(
    grad_output: np.ndarray, mask: np.ndarray, p: float, *, scaling: Scaling = "inverted"
) -> np.ndarray:
    r"""Gradient of :func:`drop_path` for a given keep mask: :math:`g_n\, b_n / (1-p)` (inverted)
    or :math:`g_n b_n` (standard). A dropped sample's branch receives no gradient."""
    grad_output = check_float_array(grad_output, "grad_output")
    p = check_probability(p)
    scaling = _check_scaling(scaling)
    if scaling == "inverted":
        scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    else:
        scale = 1.0
    with np.errstate(invalid="ignore"):
        return (grad_output * mask) * np.asarray(scale, dtype=grad_output.dtype)


def linear_drop_rates(depth: int, p_last: float, *, convention: str = "huang") -> list[float]:
    r"""Drop probabilities of ``depth`` residual blocks under the linear decay rule.

    Huang et al. (2016) let the **survival** probability fall linearly from 1 at the input to
    :math:`p_L` at the last block, :math:`p_\ell = 1 - \frac{\ell}{L}(1 - p_L)`, so the drop
    probability of block :math:`\ell = 1, \dots, L` is

    .. math::

       d_\ell = \frac{\ell}{L}\, d_L, \qquad d_L = 1 - p_L

    (``convention="huang"``: the first block is already dropped with :math:`d_L / L`).
    timm's ``calculate_drop_path_rates`` uses ``torch.linspace(0, d_L, L)``, i.e.
    :math:`d_\ell = \frac{\ell - 1}{L - 1} d_L` (``convention="timm"``: the first block is
    never dropped). The paper's :math:`p_L = 0.5` is ``p_last = 0.5`` in both.
    """
    p_last = check_probability(p_last, "p_last")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, but got {depth!r}")
    if convention == "huang":
        return [p_last * ell / depth for ell in range(1, depth + 1)]
    if convention == "timm":
        if depth == 1:
            return [0.0]
        return [p_last * (ell - 1) / (depth - 1) for ell in range(1, depth + 1)]
    raise ValueError(f"convention must be 'huang' or 'timm', but got {convention!r}")


class ResidualBlock(Module):
    r"""A residual block :math:`y = x + \mathrm{drop\_path}(f(x))` with stochastic depth.

    Backward: :math:`\partial L/\partial x = g + f'(x)^\top \big(b\, g / (1-p)\big)` per
    sample (inverted), with the keep decision :math:`b` of the forward pass. The branch is
    computed for every sample (a dropped sample simply gets a zero contribution and no
    gradient); skipping its computation, the speed-up of the paper, is not implemented.

    Parameters
    ----------
    branch : Module
        :math:`f`, mapping ``(N, d)`` to ``(N, d)`` (e.g. ``Sequential(Linear, ReLU, Linear)``).
    p : float
        Drop probability of the branch.
    rng : numpy.random.Generator
        The keep decisions (``self.rng``).
    mode : {"row", "batch"}, default "row"
    scaling : {"inverted", "standard"}, default "inverted"
    """

    def __init__(
        self,
        branch: Module,
        p: float,
        *,
        rng: np.random.Generator,
        mode: str = "row",
        scaling: Scaling = "inverted",
    ) -> None:
        self.branch = branch
        self.p = check_probability(p)
        self.rng = check_generator(rng)
        self.mode, self.scaling = mode, _check_scaling(scaling)
        self.mask: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        z = self.branch(x)
        if self.training and self.p == 0.0:
            self.mask = None
            return x + z
        dz, self.mask = drop_path(
            z, self.p, rng=self.rng, training=self.training, mode=self.mode,
            scaling=self.scaling, return_mask=True,
        )  # fmt: skip
        return x + dz

    def backward(self, grad: np.ndarray) -> np.ndarray:
        if self.mask is not None:
            gz = drop_path_backward(grad, self.mask, self.p, scaling=self.scaling)
        elif self.training or self.scaling == "inverted":
            gz = grad
        else:
            gz = grad * np.asarray(1.0 - self.p, dtype=grad.dtype)
        return grad + self.branch.backward(gz)

    def children(self) -> list[Module]:
        return [self.branch]

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        return [(f"branch.{n}", q) for n, q in self.branch.named_parameters()]

    def __repr__(self) -> str:
        return f"ResidualBlock({self.branch!r}, p={self.p}, mode={self.mode!r})"


# --- DropBlock --------------------------------------------------------------------------------


def _sides(block_size: int | tuple[int, int]) -> tuple[int, int]:
    kh, kw = (block_size, block_size) if isinstance(block_size, int) else block_size
    for k in (kh, kw):
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"block_size must be a positive integer, but got {block_size!r}")
    return int(kh), int(kw)


def _check_region(seed_region: str) -> str:
    if seed_region not in ("valid", "full"):
        raise ValueError(f"seed_region must be 'valid' or 'full', but got {seed_region!r}")
    return seed_region


def dropblock_gamma(p: float, block_size: int | tuple[int, int], height: int, width: int) -> float:
    r"""Seed rate :math:`\gamma` of DropBlock for a target drop rate ``p`` (Ghiasi et al., 2018).

    Block centres may lie on the :math:`(H-k+1)(W-k+1)` positions where a whole
    :math:`k \times k` block fits, each a seed with probability :math:`\gamma`. Ignoring
    overlaps, the expected number of dropped activations is
    :math:`\gamma\, k^2 (H-k+1)(W-k+1)`; setting it to :math:`p\,HW` gives the paper's (and
    torchvision's and timm's) rate

    .. math::

       \gamma = \frac{p\, H W}{k^2\, (H-k+1)(W-k+1)}.

    Overlapping blocks make the true drop rate smaller than ``p``
    (:func:`dropblock_drop_rate`); :func:`dropblock_exact_gamma` corrects for it.
    ``block_size`` may be ``(kh, kw)``; then :math:`k^2` is :math:`k_h k_w`.
    """
    p = check_probability(p)
    kh, kw = _sides(block_size)
    if kh > height or kw > width:
        raise ValueError(f"block {kh}x{kw} does not fit a {height}x{width} feature map")
    return p * height * width / (kh * kw * (height - kh + 1) * (width - kw + 1))


def block_coverage(
    block_size: int | tuple[int, int], height: int, width: int, seed_region: str = "valid"
) -> np.ndarray:
    r"""How many possible seed positions drop each activation: an ``(H, W)`` integer array.

    Activation :math:`(i, j)` is dropped if any of these :math:`c_{ij}` seeds fires. For
    ``"valid"`` seeds (centres where the block fits) :math:`c_{ij} = k^2` in the interior and
    fewer near the border; for ``"full"`` seeds (a centre anywhere, blocks clipped) it is the
    number of positions within :math:`k//2` rows and columns, also smaller at the border.
    """
    kh, kw = _sides(block_size)
    _check_region(seed_region)

    def counts(n: int, k: int) -> np.ndarray:
        i = np.arange(n)
        if seed_region == "valid":  # seeds a = 0..n-k cover a..a+k-1
            lo, hi = np.maximum(i - k + 1, 0), np.minimum(i, n - k)
        else:  # seeds a = 0..n-1 cover a-k//2..a+k//2
            lo, hi = np.maximum(i - k // 2, 0), np.minimum(i + k // 2, n - 1)
        return np.maximum(hi - lo + 1, 0)

    return np.outer(counts(height, kh), counts(width, kw))


def dropblock_drop_rate(
    gamma: float,
    block_size: int | tuple[int, int],
    height: int,
    width: int,
    seed_region: str = "valid",
) -> float:
    r"""The exact expected fraction of dropped activations for seed rate ``gamma``.

    Seeds are independent, so activation :math:`(i,j)` survives only if none of its
    :math:`c_{ij}` covering seeds (:func:`block_coverage`) fires:

    .. math::

       \begin{aligned}
       \bar p(\gamma) &= \frac{1}{HW} \sum_{i,j} \bigl(1 - (1-\gamma)^{c_{ij}}\bigr) \\
       &\le \frac{\gamma}{HW} \sum_{i,j} c_{ij},
       \end{aligned}

    and :math:`\sum_{ij} c_{ij} = k^2 (H-k+1)(W-k+1)` for valid seeds: the bound is the
    first-order rate that :func:`dropblock_gamma` inverts.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], but got {gamma!r}")
    c = block_coverage(block_size, height, width, seed_region)
    return float(np.mean(1.0 - (1.0 - gamma) ** c))


def dropblock_exact_gamma(
    p: float,
    block_size: int | tuple[int, int],
    height: int,
    width: int,
    seed_region: str = "valid",
) -> float:
    r"""The seed rate whose exact drop rate (:func:`dropblock_drop_rate`) is ``p``.

    :math:`\bar p(\gamma)` increases continuously from 0 to 1 on :math:`[0, 1]`, so bisection
    finds :math:`\gamma^\star` to within :math:`10^{-15}`.
    """
    p = check_probability(p)
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if dropblock_drop_rate(mid, block_size, height, width, seed_region) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def dropblock_mask(
    shape: tuple[int, int, int, int],
    p: float,
    block_size: int | tuple[int, int],
    *,
    rng: np.random.Generator,
    seed_region: str = "valid",
    share_channels: bool = False,
    gamma: float | None = None,
) -> np.ndarray:
    r"""A DropBlock keep mask: ``False`` inside every block grown from a Bernoulli(γ) seed.

    Seeds are drawn on the allowed positions of an ``(N, C, H, W)`` map (``(N, 1, H, W)`` with
    ``share_channels``) as ``~bernoulli_mask(seeds_shape, gamma)``, i.e. the same draw as a
    dropout keep mask with drop probability :math:`\gamma`. With ``block_size`` equal to the
    (odd) map size and valid seeds there is one seed per channel and :math:`\gamma = p`: the
    mask is then exactly the channel mask of :func:`~dropoutlib.numpy.dropout2d` for the same
    generator state (chapter 8's spatial dropout). Returns a boolean ``(N, C or 1, H, W)``.
    """
    n, c, h, w = shape
    kh, kw = _sides(block_size)
    _check_region(seed_region)
    g = dropblock_gamma(p, (kh, kw), h, w) if gamma is None else gamma
    g = min(g, 1.0)
    channels = 1 if share_channels else c
    rows, cols = (h - kh + 1, w - kw + 1) if seed_region == "valid" else (h, w)
    fired = ~bernoulli_mask((n, channels, rows, cols), g, rng=rng)
    if seed_region == "valid":  # seed a drops a..a+k-1: pad k-1 zeros before and after
        top, left = kh - 1, kw - 1
    else:  # seed a (odd k) drops a-k//2..a+k//2
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"block size should be odd for seed_region='full', got {(kh, kw)}")
        top, left = kh // 2, kw // 2
    padded = np.zeros((n, channels, rows + 2 * top, cols + 2 * left), dtype=bool)
    padded[:, :, top : top + rows, left : left + cols] = fired
    # Activation (i, j) is dropped if the k x k window of seeds starting at (i, j) has one.
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))
    return ~windows.any(axis=(-2, -1))


def drop_block(
    x: np.ndarray,
    p: float,
    block_size: int | tuple[int, int],
    *,
    rng: np.random.Generator | None = None,
    training: bool = True,
    seed_region: str = "valid",
    share_channels: bool = False,
    eps: float = 1e-6,
    return_mask: bool = False,
) -> np.ndarray | tuple[np.ndarray, tuple[np.ndarray, float] | None]:
    r"""DropBlock of an ``(N, C, H, W)`` feature map (Ghiasi et al., 2018), rescaled as the paper.

    .. math::

       y = x \odot M \cdot s, \qquad s = \frac{\mathrm{numel}(M)}{\varepsilon + \sum M},

    with :math:`M` from :func:`dropblock_mask`. The factor :math:`s` is the observed fraction
    kept in this draw (paper Algorithm 1, torchvision), not :math:`1/(1-p)`. Since :math:`s`
    depends only on the mask, the backward pass is :math:`g \odot M \cdot s`
    (:func:`drop_block_backward`).

    Returns ``y``, and ``(mask, s)`` if ``return_mask`` (``None`` when nothing was drawn).
    """
    x = check_float_array(x)
    p = check_probability(p)
    if x.ndim != 4:
        raise ValueError(f"input should be 4 dimensional. Got {x.ndim} dimensions.")
    if not check_training(training) or p == 0.0:
        if training:
            check_generator(rng)
        return (x, None) if return_mask else x
    rng = check_generator(rng)
    h, w = x.shape[2:]
    kh, kw = _sides(block_size)
    kh, kw = min(kh, h), min(kw, w)
    mask = dropblock_mask(
        x.shape, p, (kh, kw), rng=rng, seed_region=seed_region, share_channels=share_channels
    )
    scale = float(mask.size / (eps + np.count_nonzero(mask)))
    y = drop_block_backward(x, mask, scale)
    return (y, (mask, scale)) if return_mask else y


def drop_block_backward(grad_output: np.ndarray, mask: np.ndarray, scale: float) -> np.ndarray:
    r""":math:`\partial L/\partial x = g \odot M \cdot s` for the mask and factor of the forward
    pass (the mask broadcasts over channels when it was shared)."""
    grad_output = check_float_array(grad_output, "grad_output")
    with np.errstate(invalid="ignore"):
        return (grad_output * mask) * np.asarray(scale, dtype=grad_output.dtype)
