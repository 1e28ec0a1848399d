"""The one way drnngen runs Caffe: build checks, the tuner and evaluation all
come through here, and every call runs in a fresh child process.

Failures come back in the shape the caller needs: ``train`` returns a
TrainResult whose status says what happened (a tuner scores a crashed
candidate, it does not stop); ``load_check`` returns NetSummary values with
``ok``/``error`` (a build check collects them all); ``forward`` and
``forward_scores`` raise CaffeError. Asking for GPU mode from a CPU-only
build raises EnvironmentProblem before any Caffe code runs.
"""

from __future__ import annotations

import functools
import signal
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drnngen.errors import EnvironmentProblem, UserError
from drnngen.runner.jobs import (
    CaffeInfo,
    LayerSummary,
    Mode,
    NetSummary,
    Phase,
    TrainJob,
    TrainResult,
    Validation,
    check_mode,
    check_phase,
)
from drnngen.runner.locate import CaffeInstall, locate_caffe
from drnngen.runner.process import WorkerRun, run_worker
from drnngen.vocabulary import Status

INFO_TIMEOUT_S = 120.0
GPU_BUILD_HINT = "bash scripts/build_caffe.sh --gpu (on a machine with CUDA)"


class CaffeError(UserError):
    """Caffe refused a net or crashed on it; the message is Caffe's own line."""


@dataclass(frozen=True)
class NetLoad:
    """One net file for :func:`load_check_many`; relative paths inside it
    (HDF5 source lists) are resolved from ``workdir`` (default: its folder)."""

    net: Path
    phase: Phase
    weights: Path | None = None
    workdir: Path | None = None

    def to_wire(self) -> dict[str, Any]:
        net = self.net.resolve()
        return {
            "net": str(net),
            "phase": check_phase(self.phase),
            "weights": None if self.weights is None else str(self.weights.resolve()),
            "workdir": str((self.workdir or net.parent).resolve()),
        }


# --- what Caffe is ------------------------------------------------------------


def caffe_info(install: CaffeInstall | None = None) -> CaffeInfo:
    """Version, layer types and GPU capability of the located Caffe."""
    return _info(install or locate_caffe())


@functools.lru_cache(maxsize=8)
def _info(install: CaffeInstall) -> CaffeInfo:
    run = run_worker("info", {}, install, timeout_s=INFO_TIMEOUT_S)
    result = run.result
    if result is None:
        raise EnvironmentProblem(
            f"Caffe at {install.package_dir} does not import ({run.error()}): run `make caffe`"
        )
    return CaffeInfo(
        version=result["version"],
        layer_types=tuple(result["layer_types"]),
        gpu_capable=result["gpu_capable"],
        numpy=result["numpy"],
        protobuf=result["protobuf"],
        python=result["python"],
        package_dir=Path(result["package_dir"]),
    )


def gpu_available(install: CaffeInstall | None = None) -> bool:
    """Whether this Caffe build can run in GPU mode at all (CUDA compiled in)."""
    install = install or locate_caffe()
    if install.cpu_only is not None:
        return not install.cpu_only
    return caffe_info(install).gpu_capable is not False


def require_mode(mode: str, install: CaffeInstall) -> Mode:
    """``mode`` when this build can run it; EnvironmentProblem (one line) when not."""
    checked = check_mode(mode)
    if checked == "gpu" and not gpu_available(install):
        where = install.root or install.package_dir
        raise EnvironmentProblem(
            f"--mode gpu: the Caffe build at {where} is CPU-only; "
            f"use --mode cpu, or build with CUDA: {GPU_BUILD_HINT}"
        )
    return checked


# --- training -------------------------------------------------------------------


def train(job: TrainJob, install: CaffeInstall | None = None) -> TrainResult:
    """Train ``job.solver`` in ``job.workdir``; never raises for Caffe's failures."""
    if not (job.workdir / job.solver).is_file():
        raise UserError(f"{job.workdir / job.solver}: no such solver file")
    install = install or locate_caffe()
    require_mode(job.mode, install)
    started = time.perf_counter()
    run = run_worker("train", job.to_wire(), install, cwd=job.workdir, timeout_s=job.timeout_s)
    wall = time.perf_counter() - started
    log = _keep_log(job, run)
    losses = tuple((int(e["iteration"]), float(e["loss"])) for e in run.of_kind("progress"))
    validations = tuple(Validation.from_dict(e) for e in run.of_kind("validation"))
    result = run.result
    if result is None:
        seconds = run.of_kind("progress")[-1]["seconds"] if losses else 0.0
        status = failure_status(run)
        error = f"timed out after {job.timeout_s:g} s" if run.timed_out else run.error()
        return TrainResult(status=status, iterations_done=losses[-1][0] if losses else 0,
                           train_losses=losses, solver_seconds=float(seconds), error=error,
                           log=log, validations=validations, wall_seconds=wall)
    return _train_result(result, losses, validations, log, wall)


def failure_status(run: WorkerRun) -> Status:
    """Why a training child gave no result: our timeout, a SIGKILL from outside
    (the OOM killer, a user's kill -9: says nothing about the net, so never
    cached), or a failure of the net itself (a CHECK abort, a crash)."""
    if run.timed_out:
        return Status.TIMEOUT
    if run.returncode == -signal.SIGKILL:
        return Status.KILLED
    return Status.FAILED


def _train_result(result: Mapping[str, Any], losses: tuple[tuple[int, float], ...],
                  validations: tuple[Validation, ...], log: Path | None, wall: float) -> TrainResult:
    status = Status.NAN if result["status"] == Status.NAN else Status.OK
    model, state = result.get("caffemodel"), result.get("state")
    return TrainResult(
        status=status,
        iterations_done=int(result["iterations_done"]),
        train_losses=losses,
        test_loss=result.get("test_loss"),
        test_accuracy=dict(result.get("test_accuracy", {})),
        solver_seconds=float(result["solver_seconds"]),
        caffemodel=Path(model) if model else None,
        error="the training loss became NaN or infinite" if status == Status.NAN else None,
        log=log,
        validations=validations,
        best_iteration=result.get("best_iteration"),
        stopped=result.get("stopped"),
        wall_seconds=wall,
        state=Path(state) if state else None,
    )


def _keep_log(job: TrainJob, run: WorkerRun) -> Path | None:
    if job.log_file is None:
        return None
    path = job.workdir / job.log_file
    path.write_text(run.stderr)
    return path


# --- loading ----------------------------------------------------------------------


def load_check(net: Path, phase: Phase, weights: Path | None = None,
               install: CaffeInstall | None = None) -> NetSummary:
    """Does ``caffe.Net(net, phase)`` accept the file; what did it build."""
    return load_check_many([NetLoad(net, phase, weights)], install)[0]


def load_check_many(items: Sequence[NetLoad],
                    install: CaffeInstall | None = None) -> tuple[NetSummary, ...]:
    """:func:`load_check` for many nets, in as few child processes as possible.

    A net that makes Caffe abort takes its child down; it is recorded as failed
    with Caffe's message and the rest go on in a new child.
    """
    install = install or locate_caffe()
    summaries: list[NetSummary] = []
    while len(summaries) < len(items):
        pending = items[len(summaries):]
        run = run_worker("load", {"items": [item.to_wire() for item in pending]}, install)
        done = [_summary(pending[e["index"]], e) for e in run.of_kind("item")]
        summaries.extend(done)
        if run.result is None and len(done) < len(pending):
            summaries.append(NetSummary(pending[len(done)].net, pending[len(done)].phase,
                                        ok=False, error=run.error()))
    return tuple(summaries)


def _summary(item: NetLoad, event: Mapping[str, Any]) -> NetSummary:
    if not event["ok"]:
        return NetSummary(item.net, item.phase, ok=False, error=event["error"])
    layers = tuple(
        LayerSummary(
            name=layer["name"],
            type=layer["type"],
            bottoms=tuple(layer["bottoms"]),
            tops=tuple(layer["tops"]),
            param_shapes=tuple(tuple(shape) for shape in layer["param_shapes"]),
        )
        for layer in event["layers"]
    )
    return NetSummary(
        item.net,
        item.phase,
        ok=True,
        layers=layers,
        blobs={name: tuple(shape) for name, shape in event["blobs"].items()},
        shared_params=tuple(tuple(group) for group in event["shared_params"]),
    )


# --- forward passes -----------------------------------------------------------------


@dataclass(frozen=True)
class ForwardResult:
    """Blobs after one forward pass, and the parameters it used
    (``params[layer][i]`` is the layer's i-th parameter blob)."""

    blobs: Mapping[str, np.ndarray]
    params: Mapping[str, tuple[np.ndarray, ...]]


def forward(net: Path, phase: Phase, blobs: Sequence[str], weights: Path | None = None,
            with_params: bool = False, workdir: Path | None = None,
            install: CaffeInstall | None = None) -> ForwardResult:
    """One forward pass of ``net`` (its data layers supply the batch) on the CPU."""
    install = install or locate_caffe()
    item = NetLoad(net, phase, weights, workdir).to_wire()
    with tempfile.TemporaryDirectory(prefix="drnngen-forward-") as tmp:
        out = Path(tmp) / "forward.npz"
        payload = {**item, "blobs": list(blobs), "params": with_params, "out": str(out)}
        _expect_result(run_worker("forward", payload, install, cwd=Path(item["workdir"])), net)
        with np.load(out) as arrays:
            return _split_arrays({name: arrays[name] for name in arrays.files})


def _split_arrays(arrays: Mapping[str, np.ndarray]) -> ForwardResult:
    blobs = {k.split(":", 1)[1]: v for k, v in arrays.items() if k.startswith("blob:")}
    params: dict[str, list[tuple[int, np.ndarray]]] = {}
    for key, value in arrays.items():
        if key.startswith("param:"):
            layer, index = key.removeprefix("param:").rsplit(":", 1)
            params.setdefault(layer, []).append((int(index), value))
    ordered = {layer: tuple(v for _, v in sorted(items)) for layer, items in params.items()}
    return ForwardResult(blobs=blobs, params=ordered)


def forward_scores(deploy: Path, caffemodel: Path, sources: Path, blob: str,
                   mode: Mode = "cpu", gpu_id: int = 0, batch_size: int = 1024,
                   out: Path | None = None, install: CaffeInstall | None = None) -> np.ndarray:
    """``blob`` of the deploy net for every row of the HDF5 files listed in
    ``sources`` (datasets named like the net's inputs), rows in file order.
    Also saved to ``out`` (.npy) when given."""
    install = install or locate_caffe()
    require_mode(mode, install)
    with tempfile.TemporaryDirectory(prefix="drnngen-scores-") as tmp:
        target = out or Path(tmp) / "scores.npy"
        payload = {"deploy": str(deploy.resolve()), "weights": str(caffemodel.resolve()),
                   "sources": str(sources.resolve()), "blob": blob, "mode": mode,
                   "gpu_id": gpu_id, "batch_size": batch_size, "out": str(target.resolve())}
        _expect_result(run_worker("scores", payload, install, cwd=deploy.resolve().parent),
                       deploy)
        scores: np.ndarray = np.load(target)
        return scores


def _expect_result(run: WorkerRun, net: Path) -> None:
    if run.result is None:
        raise CaffeError(f"{net}: {run.error()}")
