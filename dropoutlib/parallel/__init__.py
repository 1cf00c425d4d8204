"""Dropout across processes: tensor and data parallelism on real ``torch.distributed`` (gloo).

Importing this subpackage imports PyTorch. Worker functions are module-level so that
``torch.multiprocessing``'s ``spawn`` can pickle them; :func:`run_workers` starts them on
127.0.0.1 only.
"""

from dropoutlib.parallel.launch import LOOPBACK, call_sequence, loopback_interface, run_workers
from dropoutlib.parallel.tensor_parallel import (
    MEGATRON_TP_SEED_OFFSET,
    dot_error_bound,
    dropout_seeds,
    gamma,
    tp_mlp_reference,
    tp_mlp_worker,
)

__all__ = [
    "LOOPBACK",
    "MEGATRON_TP_SEED_OFFSET",
    "call_sequence",
    "dot_error_bound",
    "dropout_seeds",
    "gamma",
    "loopback_interface",
    "run_workers",
    "tp_mlp_reference",
    "tp_mlp_worker",
]
