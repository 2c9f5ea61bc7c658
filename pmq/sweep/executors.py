"""Where designs are priced: a local process pool or a dask.distributed cluster.

Both take the pricing inputs and the pending designs and yield one list of rows per finished
design, in completion order; the table does not depend on which executor ran. The inputs reach
each worker once (the pool's initializer; a broadcast on dask) and a task carries only a batch of
designs (:func:`batches`), so the scheduler handles few, long tasks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import active_children, get_context

from pmq.errors import PMQError
from pmq.sweep.pricing import PricingInputs, price_designs
from pmq.sweep.space import Design

EXECUTORS = ("local", "dask")
MAX_BATCH = 16  # designs per task: enough to amortise a task's overhead, few enough to balance workers
NO_DASK = "the dask executor needs dask.distributed: pip install 'pmq[distributed]'"
# glibc's mallopt parameters: freed blocks below 32 MiB (its largest mmap threshold) stay in the heap
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
HEAP_KEPT, MMAP_ABOVE = 256 << 20, 32 << 20

Batch = list[tuple[int, dict, dict | None]]
_inputs: PricingInputs | None = None  # a local worker's inputs, set once by its initializer


@functools.cache
def keep_freed_memory() -> bool:
    """Make this process's allocator keep the memory pricing frees, instead of returning it to the OS.

    The cost tables' numpy temporaries are large; by default glibc maps and unmaps them per call, and
    every page is faulted in again: a third of a worker's time went to the kernel, several times its
    pricing time on a threaded dask worker (benchmarks/sweep_speed.py). False where there is no glibc.
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_ABOVE)) and bool(mallopt(M_TRIM_THRESHOLD, HEAP_KEPT))


def _init_worker(parent: int, inputs: PricingInputs) -> None:
    """Keep the inputs for every task; leave Ctrl-C to the parent; exit if the parent dies (SIGKILL)."""
    global _inputs
    _inputs = inputs
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def price_batch(batch: Batch, inputs: PricingInputs | None = None) -> list[list[dict]]:
    """A task: price a batch of designs with ``inputs`` (by default the ones this local worker was given)."""
    keep_freed_memory()
    return price_designs(inputs or _inputs, batch)


def batches(designs: list[Design], workers: int) -> list[Batch]:
    """Designs cut into tasks: at least four per worker (load balance, progress), at most MAX_BATCH each."""
    size = max(1, min(MAX_BATCH, math.ceil(len(designs) / (4 * workers))))
    return [[(d.id, d.config, d.patchwise) for d in designs[i:i + size]] for i in range(0, len(designs), size)]


def _each(batches_done: Iterable[list[list[dict]]]) -> Iterator[list[dict]]:
    for batch in batches_done:
        yield from batch


def run_local(inputs: PricingInputs, designs: list[Design], workers: int | None) -> Iterator[list[dict]]:
    """Process pool over all cores; workers are spawned (not forked), so they never hold torch."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(designs)))
    others = set(active_children())
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                               initializer=_init_worker, initargs=(os.getpid(), inputs))
    finished = False
    try:
        futures = [pool.submit(price_batch, batch) for batch in batches(designs, workers)]
        yield from _each(future.result() for future in as_completed(futures))
        finished = True
    finally:  # on Ctrl-C or an error: drop what has not started, and stop the batches that have
        pool.shutdown(wait=False, cancel_futures=True)
        if not finished:  # (the interpreter's exit would wait for each worker's queued batches)
            for process in set(active_children()) - others:
                process.terminate()


def run_dask(inputs: PricingInputs, designs: list[Design], scheduler: str) -> Iterator[list[dict]]:
    """Submit batches of designs to the cluster; the inputs are broadcast to every worker once.

    Pricing is pure Python, so workers should run one thread each. (Their statistical profiler costs
    nothing measurable: 15.1-15.6 CPU s for 12 DeiT-S designs on one worker, on or off.)
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
        futures = [client.submit(price_batch, batch, shared, pure=False) for batch in batches(designs, workers)]
        yield from _each(future.result() for future in dask_completed(futures))
    finally:
        client.close()
