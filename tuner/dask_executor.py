"""Evaluations on a Dask cluster (`distributed`): one task per training.

What runs where:

* the client (the `drnngen tune` process) runs the GA, codegen and the
  ledger; it submits `fn(item, slot)` per item and writes each result as its
  future completes (`as_completed`). Nothing of the client's state travels:
  `fn` and the items must pickle (the tuner sends `tuner.payload.run_training`
  and a `drnngen.runner.TrainJob`);
* a worker runs the task in one of its threads, which starts the Caffe child
  process (`drnngen.runner`) as on the local pool. Workers need drnngen and
  Caffe installed, and the dataset and the run folder at the same absolute
  paths as the client (a shared file system).

Faults are Dask's own: a task whose worker dies is rescheduled on another
worker, up to the scheduler's `distributed.scheduler.allowed-failures` times
(default 3); beyond that the item gets `on_lost(message)` as its result (the
tuner records a failed candidate). An exception raised by `fn` itself (Caffe
missing on a worker, data not reachable) is retried `retries` times, then
raised here: it says nothing about the candidate, so it is not recorded. Losing
the scheduler raises `SchedulerLost`; the ledger holds every finished result.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import dask
from distributed import Client, Event, Future, as_completed
from distributed.client import FutureCancelledError
from distributed.scheduler import KilledWorker

from drnngen.errors import EnvironmentProblem, UserError
from drnngen.tuner.executors import Executor, ExecutorLost, Gpu

T = TypeVar("T")
R = TypeVar("R")

RETRIES = 2  # re-runs of a task whose function raised (a worker's environment, not the candidate)


class SchedulerLost(ExecutorLost):
    """The connection to the scheduler is gone; results not yet back are lost."""


class _Skipped:
    """What a task returns when the run was stopped before it started (pickles by value)."""


def _run_task(fn: Callable[[T, Gpu], R], item: T, gpu: Gpu, stop_event: str) -> R | _Skipped:
    """On the worker: skip when the client has asked to stop, else fn(item, gpu)."""
    if Event(stop_event).is_set():
        return _Skipped()
    return fn(item, gpu)


class DaskExecutor(Executor):
    """Submits each item as one task to the Dask scheduler at `address`.

    In GPU mode every task asks for `resources={"GPU": 1}`, so a worker started
    with `--resources GPU=1` runs one training at a time on its GPU (device 0
    of the worker's process: pin a worker to a GPU with CUDA_VISIBLE_DEVICES).
    The connection timeout is Dask's `distributed.comm.timeouts.connect`.
    """

    def __init__(self, address: str, *, gpu: bool = False, retries: int = RETRIES,
                 on_lost: Callable[[str], Any] | None = None) -> None:
        self.address, self.gpu, self.retries, self.on_lost = address, gpu, retries, on_lost
        timeout = dask.config.get("distributed.comm.timeouts.connect")
        try:
            self.client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise EnvironmentProblem(
                f"--scheduler {address}: cannot reach the Dask scheduler ({_first_line(exc)})") from None
        except ValueError as exc:  # a malformed address
            raise UserError(f"--scheduler {address}: {exc}") from None

    @property
    def workers(self) -> int:
        """Tasks the cluster runs at once now (GPUs in GPU mode, else worker threads)."""
        info = self.client.scheduler_info(n_workers=-1)["workers"].values()
        if self.gpu:
            return int(sum(w.get("resources", {}).get("GPU", 0) for w in info))
        return int(sum(w["nthreads"] for w in info))

    def imap_unordered(
        self, fn: Callable[[T, Gpu], R], items: Sequence[T], stop: threading.Event | None = None
    ) -> Iterator[tuple[int, R]]:
        stop_event = f"drnngen-stop-{uuid.uuid4().hex}"
        futures = {self._submit(fn, item, stop_event): index for index, item in enumerate(items)}
        finished = threading.Event()
        watcher = threading.Thread(target=self._relay_stop, args=(stop, finished, stop_event), daemon=True)
        watcher.start()
        try:
            for future in as_completed(futures, loop=self.client.loop):
                result = self._result(future)
                if not isinstance(result, _Skipped):
                    yield futures[future], result
        finally:
            finished.set()
            watcher.join()
            unfinished = [f for f in futures if not f.done()]
            if unfinished and self.client.status == "running":
                # The consumer stopped early (or failed): like the local pool, tasks not
                # started are dropped and running ones finish (their results unread).
                Event(stop_event, client=self.client).set()
                self.client.cancel(unfinished)

    def _submit(self, fn: Callable[[T, Gpu], R], item: T, stop_event: str) -> Future[R | _Skipped]:
        # A unique key per submission: two runs on one cluster never share a task, and a
        # retried task is the same task (Dask's bounded retries), never a second one.
        key = f"drnngen-eval-{uuid.uuid4().hex}"
        # A worker thread is the slot; in GPU mode its GPU is the process's device 0.
        return self.client.submit(
            _run_task, fn, item, 0 if self.gpu else None, stop_event, key=key,
            retries=self.retries, resources={"GPU": 1} if self.gpu else None,
        )

    def _relay_stop(self, stop: threading.Event | None, finished: threading.Event, stop_event: str) -> None:
        """Set the cluster-wide stop flag once the caller's `stop` is set (polled: the
        caller's is a plain threading.Event, often set from a signal handler)."""
        if stop is None:
            return
        while not finished.is_set():
            if stop.wait(0.2):
                Event(stop_event, client=self.client).set()
                return

    def _result(self, future: Future[Any]) -> Any:
        try:
            return future.result()
        except KilledWorker as exc:
            if self.on_lost is None:
                raise UserError(f"Dask: {_first_line(exc)}") from None
            return self.on_lost(f"lost: the Dask workers running it died ({_first_line(exc)})")
        except FutureCancelledError:
            if self.client.status != "running":
                raise SchedulerLost(f"--scheduler {self.address}: lost the connection to the Dask scheduler"
                                    ) from None
            raise

    def close(self) -> None:
        if self.client.status == "running":
            self.client.close()
            return
        # The scheduler is gone: closing cancels the client's reconnect loop, which distributed
        # logs as an error with a traceback; the caller already reports the loss in one line.
        logger = logging.getLogger("distributed.client")
        level = logger.level
        logger.setLevel(logging.CRITICAL)
        try:
            self.client.close()
        finally:
            logger.setLevel(level)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
