"""Where evaluations run: a small interface and the local implementation.

The GA loop never sees an executor; the evaluation service (`tuner.evaluator`)
hands it trainings. `map` is DEAP's `toolbox.map` contract (ordered results);
`imap_unordered` yields `(index, result)` as each finishes, so every result
can be written to the ledger the moment it exists. A Dask (or any other)
executor is a new subclass; the loop and the service stay as they are.

The local executor runs K worker slots as threads. That is enough because a
slot does no heavy work itself: every training is its own spawned child
process (`drnngen.runner`), and the slot only waits for it. A slot owns a GPU
id when GPUs are given, so each GPU runs one training at a time.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from drnngen.errors import EnvironmentProblem, UserError

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Slot:
    """One local worker: its index and the GPU it is pinned to (None: no GPU).
    A function run on a slot sees only the GPU id."""

    index: int
    gpu: int | None = None


Gpu = int | None  # what a function run by an executor learns of its slot


class ExecutorLost(EnvironmentProblem):
    """The executor's workers can no longer be reached (a Dask scheduler gone);
    results not yet back are lost, those already yielded are in the ledger."""


class Executor(ABC):
    """Runs a function over items on some set of worker slots."""

    @property
    @abstractmethod
    def workers(self) -> int:
        """How many items run at once."""

    @abstractmethod
    def imap_unordered(
        self, fn: Callable[[T, Gpu], R], items: Sequence[T], stop: threading.Event | None = None
    ) -> Iterator[tuple[int, R]]:
        """(index, fn(item, gpu)) as each finishes. Items not yet started when
        `stop` is set are skipped (they yield nothing)."""

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """DEAP's `toolbox.map`: fn over items, results in item order."""
        listed = list(items)
        results = dict(self.imap_unordered(lambda item, _gpu: fn(item), listed))
        return [results[i] for i in range(len(listed))]

    @abstractmethod
    def close(self) -> None:
        """Release the workers (running items finish first)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class LocalExecutor(Executor):
    """K slots on this machine; with `gpus`, slot i is pinned to gpus[i % len(gpus)]."""

    def __init__(self, workers: int = 1, gpus: Sequence[int] = ()) -> None:
        if workers < 1:
            raise UserError(f"workers: must be >= 1, got {workers}")
        if any(g < 0 for g in gpus):
            raise UserError(f"gpus: ids must be >= 0, got {list(gpus)}")
        self._slots = [Slot(i, gpus[i % len(gpus)] if gpus else None) for i in range(workers)]
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drnngen-slot")

    @property
    def workers(self) -> int:
        return len(self._slots)

    def imap_unordered(
        self, fn: Callable[[T, Gpu], R], items: Sequence[T], stop: threading.Event | None = None
    ) -> Iterator[tuple[int, R]]:
        free: queue.SimpleQueue[Slot] = queue.SimpleQueue()
        for slot in self._slots:
            free.put(slot)
        skipped = object()

        def run(index: int, item: T) -> tuple[int, R | object]:
            if stop is not None and stop.is_set():
                return index, skipped
            slot = free.get()  # as many threads as slots: never blocks for long
            try:
                return index, fn(item, slot.gpu)
            finally:
                free.put(slot)

        pending: set[Future[tuple[int, R | object]]] = {
            self._pool.submit(run, i, item) for i, item in enumerate(items)
        }
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index, result = future.result()
                    if result is not skipped:
                        yield index, result  # type: ignore[misc]
        finally:
            # The consumer stopped early: cancel what has not started, let the rest finish.
            for future in pending:
                future.cancel()
            wait(pending)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def parse_gpus(text: str | None) -> tuple[int, ...]:
    """`--gpus 0,1,3` → (0, 1, 3)."""
    if not text:
        return ()
    try:
        ids = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"--gpus: expected comma-separated GPU ids like 0,1, got {text!r}") from None
    if len(set(ids)) != len(ids) or any(i < 0 for i in ids):
        raise UserError(f"--gpus: ids must be distinct and >= 0, got {text!r}")
    return ids


def kill_children() -> list[int]:
    """SIGKILL this process's own child processes (the runner's Caffe workers,
    each the leader of its own session, so its process group goes too).

    For an abandoned run (second Ctrl-C): the slots' threads return as soon as
    their child is gone, instead of waiting for trainings nobody will record.
    Linux only (reads /proc); elsewhere it kills nothing.
    """
    killed = []
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in (int(p) for p in children.read_text().split()):
            try:
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
    return killed
