"""Process-wide test setup, loaded by pytest before it collects anything.

Triton's interpreter must be switched on before Triton is first imported in a process, and
``--doctest-modules dropoutlib`` imports :mod:`dropoutlib.triton` while collecting, possibly in
the same pytest-xdist worker that later runs ``tests/test_triton_dropout.py``. So the switch is
set here, for every worker, unless the tests are asked to run the compiled kernels on a GPU
(``DROPOUTLIB_TRITON_DEVICE=cuda``, as ``tools/gpu_checks.sh`` does).
"""

import os

if os.environ.get("DROPOUTLIB_TRITON_DEVICE", "cpu") == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")
