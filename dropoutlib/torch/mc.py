r"""Monte Carlo dropout in PyTorch: switch on the dropout modules, and only them.

MC dropout (Gal & Ghahramani, 2016) keeps dropout sampling at test time and averages
:math:`T` stochastic forward passes,

.. math::

    \hat p(y \mid x) = \frac1T \sum_{t=1}^{T} f_{\hat W_t}(x),
    \qquad \hat W_t = W \odot M_t,\ M_t \text{ fresh dropout masks.}

The tempting ``model.train()`` switches on every training-mode behaviour, not only dropout:
:class:`torch.nn.BatchNorm1d` (and 2d/3d, ``SyncBatchNorm``, ``InstanceNorm`` with
``track_running_stats``) then normalises each batch by its own statistics
:math:`\hat\mu_B, \hat\sigma^2_B` instead of the running estimates, and **updates** those
running estimates as a side effect. Predictions then depend on which other examples share the
batch, and the model itself changes every time it predicts.

:func:`enable_mc_dropout` puts the model in eval mode and then sets ``training = True`` on the
dropout modules alone; :func:`mc_dropout` does the same as a context manager and restores every
module's previous mode on exit; :func:`mc_forward` draws :math:`T` passes reproducibly from an
explicit seed or :class:`torch.Generator` without touching the global random state.

**What a module switch cannot reach.** Dropout that is not a module is invisible to a mode
switch:

- ``torch.nn.functional.dropout(x, p)`` (and ``dropout1d/2d/3d``, ``alpha_dropout``,
  ``feature_alpha_dropout``) called inside some ``forward``: ``training`` defaults to ``True``,
  so it drops in eval mode too unless the caller passes ``training=self.training``, in which
  case it follows *that* module's flag (usually eval here, so it stays off);
- ``torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=p)``: it has no
  ``training`` argument at all; it drops whenever ``dropout_p > 0``.

:func:`functional_dropout_sites` detects what it reliably can: modules whose class is
:class:`torch.nn.MultiheadAttention` (attention dropout applied functionally, gated by the
attention module's own flag, so :func:`enable_mc_dropout` switches it with ``attention=True``),
and modules whose ``forward`` source calls a functional dropout or
``scaled_dot_product_attention``. A call hidden in a helper function, a compiled or scripted
module, or a C++ extension is not found; the helpers warn about what they find, and this
note is the warning for the rest.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import warnings
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from dropoutlib.torch import modules as _ours
from dropoutlib.torch.gaussian import GaussianDropout

__all__ = [
    "DROPOUT_MODULE_TYPES",
    "FunctionalDropoutWarning",
    "dropout_modules",
    "enable_mc_dropout",
    "functional_dropout_sites",
    "mc_dropout",
    "mc_forward",
]

#: The module classes :func:`enable_mc_dropout` switches to training mode: torch's six dropout
#: layers (``Dropout``, ``Dropout1d/2d/3d``, ``AlphaDropout``, ``FeatureAlphaDropout``, all
#: subclasses of ``torch.nn.modules.dropout._DropoutNd``), the library's drop-ins for them,
#: and :class:`dropoutlib.torch.GaussianDropout`. Subclasses count too.
DROPOUT_MODULE_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.dropout._DropoutNd,
    _ours._DropoutNd,
    GaussianDropout,
)

_FUNCTIONAL_CALL = re.compile(
    r"\b(?:dropout|dropout1d|dropout2d|dropout3d|alpha_dropout|feature_alpha_dropout"
    r"|scaled_dot_product_attention)\s*\("
)
_MESSAGE = (
    "{sites}: functional dropout (F.dropout and friends called inside forward) and "
    "scaled_dot_product_attention(dropout_p=...) are not modules, so switching module modes "
    "does not switch them. F.dropout's `training` defaults to True (it drops even in eval "
    "mode unless given training=self.training, and then it follows that module's flag); "
    "scaled_dot_product_attention drops whenever dropout_p > 0."
)


class FunctionalDropoutWarning(UserWarning):
    """Dropout applied functionally somewhere in a model: module mode switches miss it."""


def dropout_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The dropout modules of ``model`` (itself included), as ``(qualified name, module)``.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    list of (str, torch.nn.Module)
        Every submodule that is an instance of :data:`DROPOUT_MODULE_TYPES`, in
        :meth:`~torch.nn.Module.named_modules` order (the root is named ``""``).
    """
    _check_module(model)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, DROPOUT_MODULE_TYPES)]


def _forward_calls_functional_dropout(module: nn.Module) -> bool:
    """True if the source of ``type(module).forward`` calls a functional dropout or SDPA."""
    forward = type(module).forward
    if forward is nn.Module.forward or isinstance(module, DROPOUT_MODULE_TYPES):
        return False  # the dropout modules call F.dropout(training=self.training): switched
    try:
        source = inspect.getsource(forward)
    except (OSError, TypeError):  # built-in, compiled or defined interactively
        return False
    code = "\n".join(line.split("#", 1)[0] for line in source.splitlines())
    return bool(_FUNCTIONAL_CALL.search(code))


def functional_dropout_sites(model: nn.Module) -> list[str]:
    """Names of the submodules that apply dropout functionally (best effort).

    Found: every :class:`torch.nn.MultiheadAttention` with ``dropout > 0`` (its attention
    weights go through ``F.dropout(..., training=self.training)``; transformer layers hold one),
    and every module whose class's ``forward`` source contains a call to ``dropout``,
    ``dropout1d/2d/3d``, ``alpha_dropout``, ``feature_alpha_dropout`` or
    ``scaled_dot_product_attention``. Not found: such calls inside helper functions, in
    compiled, scripted or C++ code, or in a ``forward`` without retrievable source.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    list of str
        Qualified module names (``""`` for the root), in ``named_modules`` order.
    """
    _check_module(model)
    sites = []
    for name, m in model.named_modules():
        if isinstance(m, nn.MultiheadAttention):
            if m.dropout > 0:
                sites.append(name)
        elif _forward_calls_functional_dropout(m):
            sites.append(name)
    return sites


def _check_module(model: object) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, but got {type(model).__name__}")


def enable_mc_dropout(model: nn.Module, *, attention: bool = True, warn: bool = True) -> list[str]:
    r"""Put ``model`` in eval mode, then switch on its dropout modules alone.

    After the call, ``m.training`` is ``True`` exactly for the modules in
    :func:`dropout_modules` (and, with ``attention=True``, the
    :class:`torch.nn.MultiheadAttention` modules with ``dropout > 0``, whose attention dropout
    is gated by their own flag); BatchNorm, and everything else, stays in eval mode and keeps
    normalising with its running statistics :math:`(x - \mu_{run}) /
    \sqrt{\sigma^2_{run} + \epsilon}`, which no forward pass updates.

    The switch is in place and permanent; use :func:`mc_dropout` to restore the previous
    modes afterwards.

    Parameters
    ----------
    model : torch.nn.Module
    attention : bool, default True
        Also switch :class:`torch.nn.MultiheadAttention` modules (their only training-mode
        behaviour is attention dropout; they also leave the inference fast path).
    warn : bool, default True
        Emit a :class:`FunctionalDropoutWarning` naming the modules that
        :func:`functional_dropout_sites` finds and this call does not control (with
        ``attention=True``, switched attention modules are not named), and a ``UserWarning``
        when it finds neither a dropout module nor functional dropout (every pass would be
        the same).

    Returns
    -------
    list of str
        Qualified names of the modules now in training mode.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    >>> enable_mc_dropout(net)
    ['2']
    >>> net[1].training, net[2].training
    (False, True)
    """
    _check_module(model)
    model.eval()
    switched, attention_names = [], []
    for n, m in model.named_modules():
        if isinstance(m, DROPOUT_MODULE_TYPES):
            m.train()
            switched.append(n)
        elif attention and isinstance(m, nn.MultiheadAttention) and m.dropout > 0:
            m.training = True  # only its own flag: its submodules (Linear) have no modes
            switched.append(n)
            attention_names.append(n)
    if warn:
        missed = [s for s in functional_dropout_sites(model) if s not in attention_names]
        if missed:
            shown = ", ".join(repr(s) for s in missed)
            warnings.warn(
                _MESSAGE.format(sites=f"modules {shown} apply dropout functionally"),
                FunctionalDropoutWarning,
                stacklevel=2,
            )
        if not switched and not missed:
            warnings.warn(
                "the model has no dropout module: every Monte Carlo pass will give the same output",
                UserWarning,
                stacklevel=2,
            )
    return switched


@contextlib.contextmanager
def mc_dropout(
    model: nn.Module, *, attention: bool = True, warn: bool = True
) -> Iterator[list[str]]:
    """Context manager: :func:`enable_mc_dropout` on entry, every module's mode restored on exit.

    The ``training`` flag of every module of ``model`` is recorded on entry and put back on
    exit (also when the block raises), so a model that was half in train mode comes back
    exactly as it was.

    Parameters
    ----------
    model : torch.nn.Module
    attention, warn : bool
        As in :func:`enable_mc_dropout`.

    Yields
    ------
    list of str
        The names of the modules switched to training mode.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)).train()
    >>> with mc_dropout(net) as on:
    ...     print(on, net[1].training)
    ['2'] False
    >>> net[1].training
    True
    """
    _check_module(model)
    saved = [(m, m.training) for m in model.modules()]
    try:
        yield enable_mc_dropout(model, attention=attention, warn=warn)
    finally:
        for m, mode in saved:
            m.training = mode


def mc_forward(
    model: nn.Module,
    input: Tensor,
    n_samples: int,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    attention: bool = True,
    warn: bool = True,
) -> Tensor:
    r"""``n_samples`` Monte Carlo dropout passes, reproducible, global RNG state untouched.

    Runs ``model(input)`` :math:`T` = ``n_samples`` times inside :func:`mc_dropout` and
    :func:`torch.no_grad`, and stacks the outputs: ``out[t]`` is :math:`f_{\hat W_t}(x)`.
    Dropout modules draw from the global generator of ``input``'s device (``nn.Dropout`` has no
    ``generator=`` argument), so the passes run inside :func:`torch.random.fork_rng` after
    seeding the CPU generator and, for a CUDA ``input``, that device's generator with
    ``seed`` (what ``torch.manual_seed(seed)`` does to them): the same seed gives the same
    :math:`T` passes, and the caller's random state, on every device, is the same after the
    call as before it.

    Parameters
    ----------
    model : torch.nn.Module
    input : torch.Tensor
    n_samples : int
        :math:`T \ge 1`.
    seed : int, optional
        Seed for the passes. Exactly one of ``seed`` and ``generator`` must be given.
    generator : torch.Generator, optional
        A CPU generator to draw the seed from (one 63-bit integer, advancing it), for callers
        who keep an explicit generator.
    attention, warn : bool
        As in :func:`enable_mc_dropout`.

    Returns
    -------
    torch.Tensor
        Shape ``(n_samples, *output.shape)``.
    """
    if (seed is None) == (generator is None):
        raise ValueError("give exactly one of seed= and generator=")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, but got {n_samples!r}")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator)}")
        seed = int(torch.randint(0, 2**63 - 1, (), generator=generator))
    devices = [input.device] if input.device.type == "cuda" else []
    with (
        torch.random.fork_rng(devices=devices),
        mc_dropout(model, attention=attention, warn=warn),
        torch.no_grad(),
    ):
        # Seed exactly the generators fork_rng restores: torch.manual_seed would also reseed
        # every CUDA device, and those states would not come back (a CPU input on a GPU
        # machine, or the other GPUs of a multi-GPU one).
        torch.random.default_generator.manual_seed(seed)
        for device in devices:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        return torch.stack([model(input) for _ in range(n_samples)])
