"""Where designs are priced: a local process pool or a dask.distributed cluster.

Both take the pricing inputs and the pending designs and yield one list of rows per finished
design, in completion order; the table does not depend on which executor ran. A task prices a
batch of designs (:func:`batches`), so the inputs are unpickled once per batch and the scheduler
handles few, long tasks.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

from pmq.errors import PMQError
from pmq.sweep.pricing import PricingInputs, price_designs
from pmq.sweep.space import Design

EXECUTORS = ("local", "dask")
MAX_BATCH = 16  # designs per task: enough to amortise a task's overhead, few enough to balance workers
NO_DASK = "the dask executor needs dask.distributed: pip install 'pmq[distributed]'"


def _init_worker(parent: int) -> None:
    """Leave Ctrl-C to the parent; exit if the parent dies (SIGKILL)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def batches(designs: list[Design], workers: int) -> list[list[tuple[int, dict, dict | None]]]:
    """Designs cut into tasks: at least four per worker (load balance, progress), at most MAX_BATCH each."""
    size = max(1, min(MAX_BATCH, math.ceil(len(designs) / (4 * workers))))
    return [[(d.id, d.config, d.patchwise) for d in designs[i:i + size]] for i in range(0, len(designs), size)]


def _each(batches_done: Iterable[list[list[dict]]]) -> Iterator[list[dict]]:
    for batch in batches_done:
        yield from batch


def run_local(inputs: PricingInputs, designs: list[Design], workers: int | None) -> Iterator[list[dict]]:
    """Process pool over all cores; workers are spawned (not forked), so they never hold torch.

    The inputs travel with each task (no per-process state), a batch of designs per task.
    """
    workers = max(1, min(workers or os.cpu_count() or 1, len(designs)))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                               initializer=_init_worker, initargs=(os.getpid(),))
    try:
        futures = [pool.submit(price_designs, inputs, batch) for batch in batches(designs, workers)]
        yield from _each(future.result() for future in as_completed(futures))
    finally:  # on Ctrl-C or an error: drop what has not started, do not wait for it
        pool.shutdown(wait=False, cancel_futures=True)


def run_dask(inputs: PricingInputs, designs: list[Design], scheduler: str) -> Iterator[list[dict]]:
    """Submit batches of designs to the cluster; the inputs are broadcast to every worker once.

    Pricing is pure Python, so workers should run one thread each; their statistical profiler
    (``distributed.worker.profile.enabled``) costs it some 10-15% (benchmarks/sweep_speed.py).
    """
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:
        raise PMQError(NO_DASK, param="executor") from None
    try:
        client = Client(scheduler, timeout=30)
    except (OSError, TimeoutError, ValueError) as err:
        raise PMQError(f"cannot reach the dask scheduler at {scheduler!r} ({type(err).__name__}): "
                       "start one (`dask scheduler`) or give its address", param="scheduler") from None
    try:
        shared = client.scatter(inputs, broadcast=True)
        workers = max(1, len(client.scheduler_info()["workers"]))
        futures = [client.submit(price_designs, shared, batch, pure=False) for batch in batches(designs, workers)]
        yield from _each(future.result() for future in dask_completed(futures))
    finally:
        client.close()
