"""A real Dask cluster on loopback for tests and benchmarks: `dask scheduler`
and `dask worker` as child processes, started the way users start them.

Each command is the leader of its own process group, so closing the cluster
stops the nanny and its worker process (a Caffe child runs in a session of its
own and ends at its next write once its worker is gone).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from distributed import Client

START_TIMEOUT_S = 60.0


class LoopbackCluster:
    """`dask scheduler` + `workers` × `dask worker --nthreads 1` on 127.0.0.1."""

    def __init__(self, folder: Path, workers: int, env: dict[str, str] | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._env = {**os.environ, **(env or {})}
        self._folder = folder
        self._procs: list[subprocess.Popen[bytes]] = []
        scheduler_file = folder / "scheduler.json"
        scheduler_file.unlink(missing_ok=True)
        self._start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                    "--scheduler-file", str(scheduler_file))
        self.address = _wait_for_address(scheduler_file)
        for i in range(workers):
            self._start(f"worker{i}", "worker", self.address, "--nthreads", "1", "--host", "127.0.0.1",
                        "--no-dashboard", "--name", f"w{i}", "--memory-limit", "0")
        self.client = Client(self.address, timeout=START_TIMEOUT_S, set_as_default=False)
        self.client.wait_for_workers(workers, timeout=START_TIMEOUT_S)

    def _start(self, log: str, *args: str) -> None:
        with (self._folder / f"{log}.log").open("wb") as out:
            self._procs.append(subprocess.Popen(
                [sys.executable, "-m", "dask", *args], stdout=out, stderr=subprocess.STDOUT,
                env=self._env, start_new_session=True,
            ))

    def worker_pids(self) -> dict[str, int]:
        """Worker address → pid of its worker process (the nanny's child)."""
        return dict(self.client.run(os.getpid))

    def executing(self) -> dict[str, list[str]]:
        """Worker address → keys of the tasks running in it now."""
        return dict(self.client.run(_executing_keys))

    def kill_scheduler(self) -> None:
        os.killpg(self._procs[0].pid, signal.SIGKILL)
        self._procs[0].wait()

    def close(self) -> None:
        """Stop every process this cluster started (workers first), then wait for them."""
        self.client.close()
        for proc in reversed(self._procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            with contextlib.suppress(ProcessLookupError):  # a worker the nanny restarted may outlive it
                os.killpg(proc.pid, signal.SIGKILL)

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _executing_keys(dask_worker: Any) -> list[str]:
    return [str(task.key) for task in dask_worker.state.executing]


def _wait_for_address(scheduler_file: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            return str(json.loads(scheduler_file.read_text())["address"])
        except (OSError, ValueError, KeyError):
            time.sleep(0.1)
    raise TimeoutError(f"the Dask scheduler did not write {scheduler_file}")
