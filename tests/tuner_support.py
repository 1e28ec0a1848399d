"""Helpers shared by the tuner's tests and the benchmarks (not a test module).

FakeTrainer stands in for drnngen.runner.train, to test the code around it
quickly (tests/test_tuner_ledger.py); `tune_setup` prepares what a real
`drnngen tune` run needs (tests/test_tuner_e2e.py, tests/test_tuner_dask.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from drnngen.codegen.config import load_config, to_mapping
from drnngen.runner import TrainJob, TrainResult, state_weights
from drnngen.tuner import Resources, RunSummary, TuneParams, tune
from drnngen.tuner.space import IntRange, SearchSpace, space_mapping
from tests.data_support import TUNER_DATA
from tests.golden_tool import EXAMPLES

# The space of the runs around FakeTrainer.
SPACE = SearchSpace(IntRange(2, 4), IntRange(1, 3), IntRange(0, 2), ("ReLU", "TanH", "Sigmoid"), (8, 16, 32))
# The space of the real runs (`tune_setup`): tiny nets.
TUNE_SPACE = """
states: {min: 2, max: 3}
layers: {min: 1, max: 2}
shortcut: {min: 0, max: 1}
activations: [ReLU, TanH, Sigmoid]
widths: [8, 16, 24]
"""


def make_dataset(root: Path, sessions: int = TUNER_DATA.sessions) -> Path:
    """The tuner tests' synthetic dataset (TUNER_DATA: 60 items, window 3) under `root`."""
    return dataclasses.replace(TUNER_DATA, sessions=sessions).make(root)


def params(data: Path, **changes: Any) -> TuneParams:
    values: dict[str, Any] = {
        "data": str(data), "generations": 3, "population": 4, "pc": 0.8, "pm": 0.3, "strategy": "literal",
        "seed": 7, "iterations": 5, "epochs": None, "mode": "cpu", "timeout_s": None,
        "base": to_mapping(load_config(EXAMPLES / "small.yaml")), "space": space_mapping(SPACE),
    }
    return TuneParams(**{**values, **changes})


class FakeTrainer:
    """Deterministic metrics from the files Caffe would read; counts trainings."""

    def __init__(self, delay: float = 0.0, fail_width: int | None = None) -> None:
        self.delay, self.fail_width = delay, fail_width
        self.trained: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, job: TrainJob) -> TrainResult:
        text = (job.workdir / "net.prototxt").read_text() + (job.workdir / "solver.prototxt").read_text()
        with self.lock:
            self.trained.append(text)
        time.sleep(self.delay)
        if self.fail_width is not None and f"num_output: {self.fail_width}\n" in text:
            return TrainResult("failed", error="Check failed: deliberately [fake.cpp:1]")
        h = int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)
        model = job.snapshot_path or job.workdir / "model.caffemodel"
        model.write_bytes(text.encode() + str(job.init_weights or job.resume_state).encode())
        state = None if job.save_state is None else job.workdir / job.save_state
        if state is not None:  # a rung's solver state: the pair of files the cache keeps
            state.write_bytes(model.read_bytes())
            state_weights(state).write_bytes(model.read_bytes())
        return TrainResult("ok", iterations_done=job.iterations, test_loss=1 + (h % 997) / 300,
                           test_accuracy={"accuracy": (h % 1009) / 2000}, solver_seconds=0.001, caffemodel=model,
                           state=state)


def run(tmp: Path, data: Path, name: str, trainer: Any, **kwargs: Any) -> RunSummary:
    """`tune` into tmp/name with `params(data, **changes)`; the other keyword arguments go to `tune`."""
    resources = kwargs.pop("resources", Resources(workers=2))
    return tune(tmp / name, params(data, **kwargs.pop("changes", {})), resources, trainer=trainer, **kwargs)


class TuneSetup(NamedTuple):
    """A folder holding a small dataset and space, and the `drnngen tune` arguments (no -o) for them."""

    root: Path
    data: Path
    args: list[str]


def tune_setup(root: Path, generations: int) -> TuneSetup:
    """A small dataset and space under `root`, and `drnngen tune` arguments (no -o) for them."""
    data = make_dataset(root)
    space = root / "space.yaml"
    space.write_text(TUNE_SPACE)
    args = ["tune", "--config", str(EXAMPLES / "small.yaml"), "--space", str(space), "--data", str(data),
            "--generations", str(generations), "--population", "4", "--iters", "30", "--seed", "5", "--no-cache"]
    return TuneSetup(root, data, args)


def peek_ledger(ledger: Path) -> sqlite3.Connection:
    """A read-only look at a ledger another process is writing. A plain connect would
    create an empty file where the run has not made its ledger yet, and the run would
    then refuse the folder ("already holds a run"); this raises OperationalError instead."""
    return sqlite3.connect(f"{ledger.resolve().as_uri()}?mode=ro", uri=True)


T = TypeVar("T")


def kill_when(proc: subprocess.Popen[Any], ledger: Path, ready: Callable[[sqlite3.Connection], T | None], *,
              timeout: float = 300.0, poll: float = 0.01, settle: float = 1.0) -> T | None:
    """SIGKILL the tuning run `proc` once `ready(db)`, a read-only look at its `ledger`,
    answers something other than None (or after `timeout`), and wait for it; that
    answer. Asserts the run was still going when killed. `settle` seconds after the
    kill let a Caffe child orphaned by it finish its (tiny) training."""
    deadline = time.monotonic() + timeout
    seen: T | None = None
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with closing(peek_ledger(ledger)) as db:
                seen = ready(db)
        except sqlite3.OperationalError:  # no ledger yet, or its tables not made yet
            seen = None
        if seen is not None:
            break
        time.sleep(poll)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(settle)
    return seen
