r"""Start a real ``torch.distributed`` process group on the loopback interface, with a time limit.

:func:`run_workers` spawns ``world_size`` processes (``torch.multiprocessing``'s ``spawn``
context, so worker functions must be importable module-level functions), joins them into a
**gloo** process group and returns what each worker function returned, in rank order.

Only 127.0.0.1 is ever used:

- the rendezvous is a :class:`torch.distributed.TCPStore` whose server runs in the **parent**
  process on ``127.0.0.1`` with port 0, so the operating system picks a free port and hands it
  to the parent before any worker starts: two test processes running at once cannot collide,
  and there is no window between choosing a port and binding it;
- gloo's own connections are pinned to the loopback interface with ``GLOO_SOCKET_IFNAME``.

Every wait is bounded: the store and the process group get ``timeout`` seconds, and the parent
kills workers that are still alive after ``timeout`` seconds and raises :class:`TimeoutError`.
"""

from __future__ import annotations

import datetime
import os
import queue
import socket
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["LOOPBACK", "call_sequence", "loopback_interface", "run_workers"]

#: The only address the process groups of this package use.
LOOPBACK = "127.0.0.1"


def loopback_interface() -> str:
    """The name of the loopback network interface (``lo`` on Linux, ``lo0`` on macOS)."""
    names = [name for _, name in socket.if_nameindex()]
    for name in ("lo", "lo0"):
        if name in names:
            return name
    loops = [name for name in names if name.startswith("lo")]
    if not loops:
        raise RuntimeError(f"no loopback interface among {names}")
    return loops[0]


def _worker_main(
    rank: int,
    world_size: int,
    port: int,
    timeout: float,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    results: Any,
) -> None:
    import torch
    import torch.distributed as dist

    os.environ["GLOO_SOCKET_IFNAME"] = loopback_interface()
    torch.set_num_threads(1)  # the same kernels in every process and in the reference
    try:
        store = dist.TCPStore(
            LOOPBACK,
            port,
            world_size,
            is_master=False,
            timeout=datetime.timedelta(seconds=timeout),
        )
        dist.init_process_group(
            "gloo",
            store=store,
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout),
        )
        try:
            results.put((rank, True, fn(rank, world_size, *args)))
        finally:
            dist.destroy_process_group()
    except BaseException:  # report any failure to the parent instead of hanging it
        results.put((rank, False, traceback.format_exc()))


def run_workers(
    fn: Callable[..., Any], world_size: int, *args: Any, timeout: float = 60.0
) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` gloo processes on 127.0.0.1.

    Parameters
    ----------
    fn : callable
        A module-level function (it is pickled by name for ``spawn``); its return value must be
        picklable (NumPy arrays, numbers, dicts of those).
    world_size : int
        Number of processes, at least 1.
    *args
        Extra arguments passed to every worker.
    timeout : float, default 60
        Seconds allowed for the rendezvous, for each collective and for the whole run.

    Returns
    -------
    list
        ``fn``'s return value on each rank, in rank order.

    Raises
    ------
    RuntimeError
        If a worker raised (its traceback is in the message).
    TimeoutError
        If the workers did not all finish within ``timeout`` seconds.
    """
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive int, but got {world_size!r}")
    # the server side of the rendezvous: port 0 lets the OS choose a free port
    server = dist.TCPStore(
        LOOPBACK,
        0,
        world_size,
        is_master=True,
        timeout=datetime.timedelta(seconds=timeout),
        wait_for_workers=False,
    )
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(rank, world_size, server.port, timeout, fn, args, results),
            daemon=True,
        )
        for rank in range(world_size)
    ]
    for proc in procs:
        proc.start()
    out: dict[int, Any] = {}
    errors = []
    finished = False
    try:
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=timeout)
        while len(out) < world_size:
            left = (deadline - datetime.datetime.now()).total_seconds()
            if left <= 0:
                raise TimeoutError(
                    f"{world_size - len(out)} of {world_size} workers did not "
                    f"finish within {timeout} s"
                )
            try:
                rank, ok, value = results.get(timeout=min(left, 0.5))
            except queue.Empty:
                dead = [r for r, p in enumerate(procs) if p.exitcode not in (None, 0)]
                if dead and results.empty():
                    raise RuntimeError(f"workers {dead} died without a result") from None
                continue
            if not ok:  # stop at the first failure: the others may be waiting for it
                errors.append(f"rank {rank}:\n{value}")
                raise RuntimeError("distributed worker failed:\n" + "\n".join(errors))
            out[rank] = value
        finished = True
    finally:
        for proc in procs:
            proc.join(timeout=5 if finished else 0)
            if proc.is_alive():
                proc.kill()
                proc.join()
    return [out[rank] for rank in range(world_size)]


def call_sequence(
    rank: int, world_size: int, calls: list[tuple[Callable[..., Any], tuple[Any, ...]]]
) -> list[Any]:
    """Worker that runs several worker functions one after another in one process group.

    ``run_workers(call_sequence, W, [(fn1, args1), (fn2, args2)])`` pays for starting the
    processes once; each ``fn`` is called as ``fn(rank, world_size, *args)``.
    """
    return [fn(rank, world_size, *args) for fn, args in calls]
