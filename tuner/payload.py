"""What a worker slot runs for one training: the seam between the tuner and
the runner. A `TrainJob` goes down (values only, so it pickles to a Dask
worker), a `TrainResult` comes back; the GPU id is the slot's.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable
from pathlib import Path

from drnngen.errors import EnvironmentProblem
from drnngen.runner import TrainJob, TrainResult

Trainer = Callable[[TrainJob], TrainResult]  # drnngen.runner.train, or a test's stand-in


def run_training(job: TrainJob, gpu: int | None, trainer: Trainer | None = None) -> TrainResult:
    """Train `job` on this worker, on GPU `gpu` when given (a module-level
    function: it pickles by name)."""
    check_reachable(job)
    if gpu is not None:
        job = dataclasses.replace(job, gpu_id=gpu)
    from drnngen.runner import train

    return (trainer or train)(job)


def check_reachable(job: TrainJob) -> None:
    """EnvironmentProblem when this machine cannot see the data or the run folder.

    A Dask worker without the shared file system would otherwise have every
    training fail inside Caffe and be recorded with fitness 0; this stops the
    run instead, with the reason, and records nothing.
    """
    for path in (*job.reads, Path(job.workdir) / job.solver):
        if not Path(path).exists():
            raise EnvironmentProblem(
                f"{socket.gethostname()}: {path} is not there; the dataset and the run folder must be at "
                "the same absolute path on every Dask worker (a shared file system)")
