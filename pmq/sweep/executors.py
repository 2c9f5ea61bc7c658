"""Where designs are priced: a local process pool or a dask.distributed cluster.

Both take the pricing inputs and the pending designs and yield one list of rows per finished
design, in completion order; the table does not depend on which executor ran.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

from pmq.errors import PMQError
from pmq.sweep.pricing import PricingInputs, price_design
from pmq.sweep.space import Design

EXECUTORS = ("local", "dask")
NO_DASK = "--executor dask needs dask.distributed: pip install 'pmq[distributed]'"


def _init_worker(parent: int) -> None:
    """Leave Ctrl-C to the parent; exit if the parent dies (SIGKILL)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def run_local(inputs: PricingInputs, designs: list[Design], workers: int | None) -> Iterator[list[dict]]:
    """Process pool over all cores; workers are spawned (not forked), so they never hold torch.

    The inputs travel with each task (no per-process state): unpickling a DeiT-S workload and Ω
    takes ~10 ms, against ~1 s to price one design.
    """
    workers = max(1, min(workers or os.cpu_count() or 1, len(designs)))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                               initializer=_init_worker, initargs=(os.getpid(),))
    try:
        futures = [pool.submit(price_design, inputs, d.id, d.config) for d in designs]
        for future in as_completed(futures):
            yield future.result()
    finally:  # on Ctrl-C or an error: drop what has not started, do not wait for it
        pool.shutdown(wait=False, cancel_futures=True)


def run_dask(inputs: PricingInputs, designs: list[Design], scheduler: str) -> Iterator[list[dict]]:
    """Submit one task per design to the cluster; the inputs are broadcast to every worker once.

    Pricing is pure Python, so workers should run one thread each; their statistical profiler
    (``distributed.worker.profile.enabled``) costs it some 10-15% (benchmarks/sweep_speed.py).
    """
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:
        raise PMQError(NO_DASK) from None
    try:
        client = Client(scheduler, timeout=30)
    except (OSError, TimeoutError, ValueError) as err:
        raise PMQError(f"cannot reach the dask scheduler at {scheduler!r} ({type(err).__name__}): "
                       "start one (`dask scheduler`) or pass its address with --scheduler") from None
    try:
        shared = client.scatter(inputs, broadcast=True)
        futures = [client.submit(price_design, shared, d.id, d.config, pure=False) for d in designs]
        for future in dask_completed(futures):
            yield future.result()
    finally:
        client.close()
