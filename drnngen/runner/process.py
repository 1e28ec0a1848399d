"""Starting the Caffe worker in a child process and reading what it says.

Caffe reports a broken net by logging a glog FATAL line (``Check failed: ...``)
and aborting the process. Running it in a child keeps the caller alive; the
child's stderr is glog's, and :func:`caffe_error` turns it into one line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import drnngen
from drnngen.runner.locate import CaffeInstall

# I1123 18:30:00.123456 12345 net.cpp:84] message  (glog >= 0.6 adds the year: I20261123)
_GLOG_LINE = re.compile(r"^([IWEF])(?:\d{4}|\d{8}) [\d:.]+\s+\d+ ([^\]]+)\] (.*)$")
# [libprotobuf ERROR google/protobuf/text_format.cc:337] Error parsing text-format ...
_PROTOBUF_LINE = re.compile(r"^\[libprotobuf (ERROR|FATAL) ([^\]]+)\] (.*)$")
DEFAULT_GLOG_LEVEL = "1"  # warnings and up; INFO (net set-up chatter) only when asked


@dataclass(frozen=True)
class WorkerRun:
    """Everything a finished (or killed) child left behind."""

    events: tuple[dict[str, Any], ...]
    returncode: int
    stderr: str
    timed_out: bool
    seconds: float

    @property
    def result(self) -> dict[str, Any] | None:
        """The final result event, when the child got that far."""
        results = self.of_kind("result")
        return results[-1] if results else None

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event.get("event") == kind]

    def error(self) -> str:
        """One line saying why the child failed."""
        for event in self.events:
            if event.get("event") == "error":
                return str(event["message"])
        return caffe_error(self.stderr, self.returncode)


def caffe_error(stderr: str, returncode: int) -> str:
    """Caffe's own reason for dying: the FATAL line, with the last ERROR line
    (prototxt parse errors put the detail there), else the signal."""
    fatal: str | None = None
    last_error: str | None = None
    for level, where, message in _log_lines(stderr):
        if level == "F" and fatal is None:
            fatal = f"{message} [{where}]"
        elif level == "E" and fatal is None:
            last_error = message
    if fatal is not None:
        return f"{fatal} ({last_error})" if last_error else fatal
    if last_error is not None:
        return last_error
    if returncode < 0:
        return f"Caffe crashed ({signal.Signals(-returncode).name})"
    tail = [line for line in stderr.strip().splitlines() if line.strip()]
    return tail[-1] if tail else f"Caffe worker exited with status {returncode}"


def _log_lines(stderr: str) -> list[tuple[str, str, str]]:
    """(level I/W/E/F, file:line, message) of each glog or protobuf log line."""
    lines = []
    for line in stderr.splitlines():
        glog = _GLOG_LINE.match(line.strip())
        if glog is not None:
            lines.append((glog[1], glog[2], glog[3]))
            continue
        protobuf = _PROTOBUF_LINE.match(line.strip())
        if protobuf is not None:
            lines.append((protobuf[1][0], protobuf[2], protobuf[3]))
    return lines


def child_env(install: CaffeInstall, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: pycaffe and drnngen importable, glog to stderr."""
    env = dict(os.environ if base is None else base)
    project = str(Path(drnngen.__file__).resolve().parent.parent)
    paths = [str(install.python_path)] if install.python_path else []
    paths.append(project)
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["GLOG_logtostderr"] = "1"
    env.setdefault("GLOG_minloglevel", DEFAULT_GLOG_LEVEL)
    return env


def run_worker(
    kind: str,
    payload: Mapping[str, Any],
    install: CaffeInstall,
    cwd: Path | None = None,
    timeout_s: float | None = None,
) -> WorkerRun:
    """Run one job in a fresh ``python -m drnngen.runner.worker``."""
    job = json.dumps({"kind": kind, **payload})
    start = time.monotonic()
    # Own session, so a timeout kills the child and anything it started.
    with subprocess.Popen(
        [sys.executable, "-m", "drnngen.runner.worker"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=cwd, env=child_env(install), text=True, start_new_session=True,
    ) as proc:
        timed_out = False
        try:
            out, err = proc.communicate(job, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
    return WorkerRun(
        events=tuple(_events(out)),
        returncode=proc.returncode,
        stderr=err,
        timed_out=timed_out,
        seconds=time.monotonic() - start,
    )


def _events(stdout: str) -> list[dict[str, Any]]:
    events = []
    for line in stdout.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if isinstance(event, dict):
            events.append(event)
    return events
