"""A long-lived Caffe child that answers deploy-net forward passes (`drnngen serve`).

The process that holds the user's sessions never imports Caffe: it keeps one
``python -m drnngen.runner.worker`` child with the deploy net loaded and sends it one
JSON line per request (the inputs as sparse index/value pairs), reading one line back.
Requests are serialised by a lock; a child that dies is one `CaffeError` with Caffe's
own message, and the next request starts a fresh child.
"""

from __future__ import annotations

import collections
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


class ForwardClosed(CaffeError):
    """The server was closed (a reload swapped in another); ask the current one."""


class ForwardServer:
    """The deploy net `deploy` with `weights`, loaded once in a child process."""

    def __init__(self, deploy: Path, weights: Path, blob: str = "prob", mode: Mode = "cpu", gpu_id: int = 0,
                 install: CaffeInstall | None = None) -> None:
        self.deploy, self.weights, self.blob = Path(deploy), Path(weights), blob
        self._job = {"kind": "serve", "deploy": str(self.deploy), "weights": str(self.weights), "blob": blob,
                     "mode": mode, "gpu_id": gpu_id}
        self._install = install or locate_caffe()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._closed = False
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self.inputs: tuple[str, ...] = ()
        with self._lock:
            self._start()

    def _start(self) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "drnngen.runner.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=self.deploy.parent, env=child_env(self._install), text=True,
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

    def scores(self, rows: Mapping[str, Float32s]) -> Float32s:
        """The `blob` rows of a forward pass over `rows` (name → array with a batch axis)."""
        request = {"inputs": {name: _sparse(np.asarray(rows[name], np.float32)) for name in self.inputs}}
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
        return np.asarray(event["rows"], np.float32)

    def close(self) -> None:
        """Stop the child (closing its stdin ends its loop; a stuck one is killed)."""
        with self._lock:
            proc, self._proc, self._closed = self._proc, None, True
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _sparse(values: Float32s) -> dict[str, Any]:
    flat = values.ravel()
    index = np.flatnonzero(flat)
    return {"shape": list(values.shape), "index": index.tolist(), "value": flat[index].tolist()}


def _drain(stream: IO[str], keep: collections.deque[str]) -> None:
    for line in stream:
        keep.append(line.rstrip("\n"))
