"""A long-lived Caffe child that answers deploy-net forward passes (`drnngen serve`).

The process that holds the user's sessions never imports Caffe: it keeps one
``python -m drnngen.runner.worker`` child with the deploy net loaded and sends it one
JSON line per request (the inputs as sparse index/value pairs), reading one line back.

Requests are micro-batched: callers `submit` rows and get a future; one feeder thread
sends the child everything that waits (up to `max_batch` rows) as one batch, so under
load one forward pass (about 1.3 ms for the demo's ~300-layer net at batch 1, 3.7 ms at
batch 8) serves several events, and an idle server adds no wait. A child that dies fails
the batch it held with one `CaffeError` carrying Caffe's own message; the next batch
starts a fresh child. The child runs OpenBLAS single-threaded: at these batch sizes a
second BLAS thread only spins, burning the core the HTTP server needs.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from drnngen.runner.jobs import Mode
from drnngen.runner.locate import CaffeInstall, locate_caffe
from drnngen.runner.process import caffe_error, child_env
from drnngen.runner.run import CaffeError

Float32s = npt.NDArray[np.float32]
_STDERR_LINES = 200
_MAX_BATCH = 32
_ONE_THREAD = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_Waiting = tuple[Mapping[str, Float32s], "concurrent.futures.Future[Float32s]"]


class ForwardClosed(CaffeError):
    """The server was closed (a reload swapped in another); ask the current one."""


class ForwardServer:
    """The deploy net `deploy` with `weights`, loaded once in a child process."""

    def __init__(self, deploy: Path, weights: Path, blob: str = "prob", mode: Mode = "cpu", gpu_id: int = 0,
                 install: CaffeInstall | None = None, max_batch: int = _MAX_BATCH) -> None:
        self.deploy, self.weights, self.blob, self.max_batch = Path(deploy), Path(weights), blob, max_batch
        self._job = {"kind": "serve", "deploy": str(self.deploy), "weights": str(self.weights), "blob": blob,
                     "mode": mode, "gpu_id": gpu_id}
        self._install = install or locate_caffe()
        self._lock = threading.Lock()  # the child's pipes
        self._proc: subprocess.Popen[str] | None = None
        self._closed = False
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self.inputs: tuple[str, ...] = ()
        self.forwards = 0  # forward passes the child has run (fewer than requests when batched)
        self._waiting: list[_Waiting] = []
        self._wake = threading.Condition()
        with self._lock:
            self._start()
        threading.Thread(target=self._feed, daemon=True, name="forward-feeder").start()

    @property
    def child_pid(self) -> int | None:
        """The Caffe child's pid (None between a death and the next batch)."""
        proc = self._proc
        return None if proc is None else proc.pid

    def _start(self) -> None:
        env = child_env(self._install)
        for name in _ONE_THREAD:
            env.setdefault(name, "1")
        proc = subprocess.Popen(
            [sys.executable, "-m", "drnngen.runner.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=self.deploy.parent, env=env, text=True,
            start_new_session=True, bufsize=1,
        )
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        self._stderr.clear()
        threading.Thread(target=_drain, args=(proc.stderr, self._stderr), daemon=True).start()
        self._proc = proc
        proc.stdin.write(json.dumps(self._job) + "\n")
        proc.stdin.flush()
        ready = self._reply()
        self.inputs = tuple(str(name) for name in ready["inputs"])

    def _reply(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait()
            message = caffe_error("\n".join(self._stderr), self._proc.returncode or 0)
            self._proc = None
            raise CaffeError(f"{self.deploy}: the Caffe forward worker stopped: {message}")
        event: dict[str, Any] = json.loads(line)
        if event.get("event") == "error":
            raise CaffeError(f"{self.deploy}: {event['message']}")
        return event

    def submit(self, rows: Mapping[str, Float32s]) -> concurrent.futures.Future[Float32s]:
        """Queue a forward pass over `rows` (name → array with a batch axis); the future
        holds the `blob` rows, or the CaffeError (ForwardClosed once this server is closed)."""
        future: concurrent.futures.Future[Float32s] = concurrent.futures.Future()
        with self._wake:
            if self._closed:
                raise ForwardClosed(f"{self.deploy}: this forward server was closed")
            self._waiting.append(({name: np.asarray(rows[name], np.float32) for name in self.inputs}, future))
            self._wake.notify()
        return future

    def scores(self, rows: Mapping[str, Float32s]) -> Float32s:
        """The `blob` rows of a forward pass over `rows` (name → array with a batch axis)."""
        return self.submit(rows).result()

    __call__ = scores

    def _feed(self) -> None:
        """Send what waits as one batch, until closed."""
        while True:
            with self._wake:
                while not self._waiting and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return  # `close` failed what was waiting
                batch: list[_Waiting] = []
                taken = 0
                while self._waiting and (not batch or taken + _rows(self._waiting[0][0]) <= self.max_batch):
                    batch.append(self._waiting.pop(0))
                    taken += _rows(batch[-1][0])
            futures = [future for _, future in batch]
            try:
                out = self._forward({name: np.concatenate([rows[name] for rows, _ in batch]) for name in self.inputs})
            except BaseException as exc:  # every waiter hears it; the feeder goes on
                for future in futures:
                    future.set_exception(exc)
                continue
            at = 0
            for rows, future in batch:
                future.set_result(out[at:at + _rows(rows)])
                at += _rows(rows)

    def _forward(self, rows: Mapping[str, Float32s]) -> Float32s:
        request = {"inputs": {name: _sparse(rows[name]) for name in self.inputs}}
        line = json.dumps(request) + "\n"
        with self._lock:
            if self._closed:
                raise ForwardClosed(f"{self.deploy}: this forward server was closed")
            if self._proc is None:
                self._start()
            assert self._proc is not None and self._proc.stdin is not None
            try:
                self._proc.stdin.write(line)
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass  # the reply read says why the child is gone
            event = self._reply()
            self.forwards += 1
        return np.asarray(event["rows"], np.float32)

    def close(self) -> None:
        """Fail what waits with ForwardClosed (the service asks the new server), let the
        batch in flight finish, then stop the child (closing its stdin ends its loop; a
        stuck one is killed)."""
        with self._wake:
            self._closed, waiting, self._waiting = True, self._waiting, []
            self._wake.notify_all()
        for _, future in waiting:
            future.set_exception(ForwardClosed(f"{self.deploy}: this forward server was closed"))
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _rows(rows: Mapping[str, Float32s]) -> int:
    return int(next(iter(rows.values())).shape[0]) if rows else 1


def _sparse(values: Float32s) -> dict[str, Any]:
    flat = values.ravel()
    index = np.flatnonzero(flat)
    return {"shape": list(values.shape), "index": index.tolist(), "value": flat[index].tolist()}


def _drain(stream: IO[str], keep: collections.deque[str]) -> None:
    for line in stream:
        keep.append(line.rstrip("\n"))
