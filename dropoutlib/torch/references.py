r"""The reference implementations of structured dropout, loaded from the installed wheels.

Chapter 17 compares :mod:`dropoutlib.torch.structured` with the code practitioners run:

- torchvision's ``torchvision/ops/stochastic_depth.py`` (``stochastic_depth``,
  ``StochasticDepth``) and ``torchvision/ops/drop_block.py`` (``drop_block2d``,
  ``DropBlock2d``, ``drop_block3d``, ``DropBlock3d``);
- timm's ``timm/layers/drop.py`` (``drop_path``, ``DropPath``, ``drop_block_2d``,
  ``DropBlock2d``, ``calculate_drop_path_rates``).

**Why not ``import torchvision``.** The torchvision wheel pinned in ``requirements.txt``
(0.28.0) is a CUDA build; next to the CPU build of torch 2.13.0, ``import torchvision`` fails
in its C extension (``RuntimeError: operator torchvision::nms does not exist``), and
``import timm`` fails with it because timm imports torchvision. The three files above are
pure Python and need neither the extension nor the rest of their packages, so this module
executes **the files of the installed wheels themselves** (found with
:func:`importlib.util.find_spec`, which locates a package without importing it) with
:func:`importlib.util.spec_from_file_location`, under private module names
(``_dropoutlib_reference.torchvision.ops.drop_block``, ...) so that a later real
``import torchvision`` is not affected. Nothing is copied: the code that runs is the wheel's.

**What is stubbed, exactly.** Only what the files import relatively:

- torchvision's two files run ``from ..utils import _log_api_usage_once``; the stub parent
  package ``_dropoutlib_reference.torchvision.utils`` defines ``_log_api_usage_once`` as a
  function that does nothing (the real one calls ``torch._C._log_api_usage_once``, PyTorch's
  usage telemetry hook, and returns ``None``; it does not touch tensors or the random
  generator).
- timm 1.0.31's ``drop.py`` imports only ``typing`` and ``torch``: no stub at all.

The stub parent packages are empty modules except for that one function.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import types
from pathlib import Path

__all__ = ["ReferenceUnavailable", "load_timm_drop", "load_torchvision_ops", "reference_versions"]

_PREFIX = "_dropoutlib_reference"


class ReferenceUnavailable(ImportError):
    """The reference package is not installed (the comparison cannot be made)."""


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)  # locates a top-level package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ReferenceUnavailable(
            f"{package} is not installed; `pip install -r requirements.txt` installs the pinned "
            "version used for the comparison"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _stub_package(name: str, **attributes: object) -> types.ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    module = types.ModuleType(name)
    module.__path__ = []  # a package, so that relative imports below it resolve
    module.__dict__.update(attributes)
    sys.modules[name] = module
    return module


def _exec_file(name: str, path: Path) -> types.ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a file that exists always loads
        raise ReferenceUnavailable(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _log_api_usage_once(obj: object) -> None:
    """Stand-in for ``torchvision.utils._log_api_usage_once`` (telemetry only): does nothing."""


def load_torchvision_ops() -> types.SimpleNamespace:
    """Execute torchvision's ``ops/stochastic_depth.py`` and ``ops/drop_block.py`` from the wheel.

    Returns
    -------
    types.SimpleNamespace
        ``stochastic_depth``, ``StochasticDepth``, ``drop_block2d``, ``DropBlock2d``,
        ``drop_block3d``, ``DropBlock3d`` (the wheel's own objects), ``version`` and ``files``
        (the paths executed).

    Raises
    ------
    ReferenceUnavailable
        If torchvision is not installed.
    """
    root = _package_dir("torchvision")
    base = f"{_PREFIX}.torchvision"
    _stub_package(_PREFIX)
    _stub_package(base)
    _stub_package(f"{base}.utils", _log_api_usage_once=_log_api_usage_once)
    _stub_package(f"{base}.ops")
    files = [root / "ops" / "stochastic_depth.py", root / "ops" / "drop_block.py"]
    sd = _exec_file(f"{base}.ops.stochastic_depth", files[0])
    db = _exec_file(f"{base}.ops.drop_block", files[1])
    return types.SimpleNamespace(
        stochastic_depth=sd.stochastic_depth,
        StochasticDepth=sd.StochasticDepth,
        drop_block2d=db.drop_block2d,
        DropBlock2d=db.DropBlock2d,
        drop_block3d=db.drop_block3d,
        DropBlock3d=db.DropBlock3d,
        version=importlib.metadata.version("torchvision"),
        files=[str(f) for f in files],
    )


def load_timm_drop() -> types.ModuleType:
    """Execute timm's ``layers/drop.py`` from the wheel (it imports only ``torch``).

    Returns the module (``drop_path``, ``DropPath``, ``drop_block_2d``, ``DropBlock2d``,
    ``calculate_drop_path_rates``, ...), with ``__version__`` set to timm's installed version.

    Raises
    ------
    ReferenceUnavailable
        If timm is not installed.
    """
    root = _package_dir("timm")
    _stub_package(_PREFIX)
    _stub_package(f"{_PREFIX}.timm")
    _stub_package(f"{_PREFIX}.timm.layers")
    module = _exec_file(f"{_PREFIX}.timm.layers.drop", root / "layers" / "drop.py")
    module.__version__ = importlib.metadata.version("timm")
    return module


def reference_versions() -> dict[str, str]:
    """Installed versions of torch, torchvision and timm (``"not installed"`` if absent)."""
    out = {}
    for name in ("torch", "torchvision", "timm"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
