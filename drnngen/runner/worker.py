"""The child process that runs Caffe: ``python -m drnngen.runner.worker``.

It reads one JSON job on stdin and writes JSON lines (events) to its original
stdout. File descriptor 1 is pointed at stderr before Caffe is imported, so
anything Caffe or a library prints cannot corrupt the event stream; stderr is
glog's, which the parent reads to explain a CHECK failure or a crash.

Events: ``{"event": "progress", ...}`` while training, ``{"event": "item", ...}``
per net of a load job, then ``{"event": "result", ...}`` or
``{"event": "error", "message": ...}``. A Python error becomes an error event;
a C++ abort ends the process, and the parent makes sense of it.

This module is the only place in drnngen that imports ``caffe``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

Event = dict[str, Any]
Emit = Callable[[Event], None]


class JobError(Exception):
    """A job that cannot run as asked; becomes an error event."""


def _caffe() -> Any:
    import caffe

    return caffe


def gpu_capable() -> bool | None:
    """Whether the loaded libcaffe links CUDA (None when this OS cannot tell).

    A CPU-only build accepts set_mode_gpu() silently and aborts on the next
    step, so this has to be known before choosing GPU mode.
    """
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return None
    return "libcudart" in maps.read_text()


def set_mode(mode: str, gpu_id: int) -> None:
    caffe = _caffe()
    if mode == "cpu":
        caffe.set_mode_cpu()
        return
    if gpu_capable() is False:
        raise JobError("this Caffe is a CPU-only build; GPU mode needs a CUDA build")
    caffe.set_device(gpu_id)
    caffe.set_mode_gpu()


def _phase(name: str) -> Any:
    caffe = _caffe()
    return caffe.TRAIN if name == "train" else caffe.TEST


# --- info -------------------------------------------------------------------


def run_info(job: Event, emit: Emit) -> None:
    caffe = _caffe()
    import google.protobuf

    emit({
        "event": "result",
        "version": str(caffe.__version__),
        "layer_types": sorted(str(t) for t in caffe.layer_type_list()),
        "gpu_capable": gpu_capable(),
        "numpy": np.__version__,
        "protobuf": google.protobuf.__version__,
        "python": sys.version.split()[0],
        "package_dir": str(Path(caffe.__file__).resolve().parent),
    })


# --- load -------------------------------------------------------------------


def _pointer(array: Any) -> int:
    return int(array.__array_interface__["data"][0])


def summarize(net: Any) -> Event:
    """Layers, blob shapes and shared parameter groups of a loaded net."""
    layers = []
    owners: dict[int, list[str]] = {}
    for index, name in enumerate(net._layer_names):
        layer = net.layers[index]
        shapes = []
        for param_index, blob in enumerate(layer.blobs):
            shapes.append(list(blob.data.shape))
            owners.setdefault(_pointer(blob.data), []).append(f"{name}/{param_index}")
        layers.append({
            "name": str(name),
            "type": str(layer.type),
            "bottoms": [str(b) for b in net.bottom_names[name]],
            "tops": [str(t) for t in net.top_names[name]],
            "param_shapes": shapes,
        })
    return {
        "layers": layers,
        # Blob.shape, not .data.shape: touching .data would allocate every blob.
        "blobs": {str(k): [int(d) for d in v.shape] for k, v in net.blobs.items()},
        "shared_params": [group for group in owners.values() if len(group) > 1],
    }


def run_load(job: Event, emit: Emit) -> None:
    caffe = _caffe()
    caffe.set_mode_cpu()
    for index, item in enumerate(job["items"]):
        # Relative HDF5 source paths are read from the net file's folder.
        os.chdir(item["workdir"])
        try:
            net = caffe.Net(item["net"], _phase(item["phase"]))
            if item.get("weights"):
                net.copy_from(item["weights"])
        except Exception as exc:  # pycaffe raises plain RuntimeError/KeyError
            emit({"event": "item", "index": index, "ok": False, "error": _describe(exc)})
            continue
        emit({"event": "item", "index": index, "ok": True, **summarize(net)})
        del net
    emit({"event": "result"})


# --- train ------------------------------------------------------------------


def _solver_param(solver_file: str) -> Any:
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    param = caffe_pb2.SolverParameter()
    text_format.Merge(Path(solver_file).read_text(), param)
    return param


def _solver_net_file(solver_file: str) -> str:
    param = _solver_param(solver_file)
    return str(param.net or param.train_net)


def state_weights(state: str | Path) -> Path:
    """The weights file beside the solver state `state` (`runner.jobs.state_weights`'s
    rule; this module imports nothing of drnngen, so it is written here once more)."""
    return Path(state).with_suffix(".caffemodel")


def _save_state(solver: Any, job: Event) -> None:
    """Write the solver's state now as the pair `job["save_state"]` names."""
    written = Path(f"{_solver_param(job['solver']).snapshot_prefix}_iter_{int(solver.iter)}")
    written.parent.mkdir(parents=True, exist_ok=True)  # a prefix "snapshots/drnn": Caffe would abort
    solver.snapshot()  # Caffe's own names: <prefix>_iter_<N>.caffemodel / .solverstate
    target = Path(job["save_state"])
    shutil.move(written.with_suffix(".caffemodel"), state_weights(target))  # the prefix may be elsewhere
    shutil.move(written.with_suffix(".solverstate"), target)


def _restore_state(solver: Any, job: Event) -> None:
    """Continue the training the state `job["resume_state"]` saved, as if it had never
    stopped: the solver's iteration, schedule and history, the weights, and the train
    data's read position (the data layers are run forward once per iteration done,
    which also draws their shuffles from Caffe's RNG as the first run did)."""
    from caffe.proto import caffe_pb2

    state = caffe_pb2.SolverState()
    state.ParseFromString(Path(job["resume_state"]).read_bytes())
    state.ClearField("learned_net")
    tmp = Path(f".restore-{os.getpid()}.solverstate")  # in the job's folder: the state's may be a shared cache
    tmp.write_bytes(state.SerializeToString())
    try:
        solver.restore(str(tmp))
    finally:
        tmp.unlink(missing_ok=True)
    solver.net.copy_from(str(state_weights(job["resume_state"])))
    net = solver.net
    data = [i for i, layer in enumerate(net.layers) if layer.type.endswith("Data")]
    for _ in range(int(state.iter) * max(1, _solver_param(job["solver"]).iter_size) if data else 0):
        net._forward(0, max(data))


def _test_net(solver: Any, solver_file: str) -> Any:
    if len(solver.test_nets):
        net = solver.test_nets[0]
    else:  # a solver without test_iter has no test net: make one
        caffe = _caffe()
        net = caffe.Net(_solver_net_file(solver_file), caffe.TEST)
    # Test nets hold their own weights; Caffe's TestAll shares them first, so do we.
    net.share_with(solver.net)
    return net


def _require_blobs(net: Any, names: list[str], which: str) -> None:
    missing = [name for name in names if name not in net.blobs]
    if missing:
        raise JobError(
            f"{which} net has no blob {', '.join(missing)} "
            f"(blobs: {', '.join(list(net.blobs)[-8:])}, ...)"
        )


class _Keeper:
    """The best validation point so far and its snapshot; counts points without improvement."""

    def __init__(self, job: Event) -> None:
        self.job = job
        self.best: Event | None = None
        self.stale = 0

    def offer(self, net: Any, iteration: int, means: dict[str, float]) -> None:
        loss = means[self.job["loss_blob"]]
        accuracy = {k: v for k, v in means.items() if k != self.job["loss_blob"]}
        top1 = accuracy.get(self.job["accuracy_blobs"][0], 0.0) if self.job["accuracy_blobs"] else 0.0
        score = top1 + 1.0 / (1.0 + loss) if math.isfinite(loss) and loss > -1.0 else -math.inf
        if not all(math.isfinite(v) for v in means.values()):
            score = -math.inf
        if self.best is not None and score <= self.best["score"]:
            self.stale += 1
            return
        if not math.isfinite(score):
            return
        self.best = {"score": score, "iteration": iteration, "loss": loss, "accuracy": accuracy}
        self.stale = 0
        if self.job["snapshot"]:
            net.save(self.job["snapshot"])

    @property
    def exhausted(self) -> bool:
        return bool(self.job["patience"]) and self.stale >= self.job["patience"]


def _validation_due(job: Event, step: int) -> bool:
    every = int(job["validate_every"])
    return step == job["iterations"] or (every > 0 and step % every == 0)


def _train_steps(solver: Any, job: Event, emit: Emit, keeper: _Keeper) -> tuple[str, str, float]:
    """Step the solver, emitting interval means and validation points.

    Returns (status, stop reason, solver seconds); validation time is not
    solver time.
    """
    net, blob, interval = solver.net, job["loss_blob"], job["loss_interval"]
    validate = job["test_iterations"] > 0
    test_net = _test_net(solver, job["solver"]) if validate else None
    if test_net is not None:
        _require_blobs(test_net, [blob, *job["accuracy_blobs"]], "TEST")
    chunk: list[float] = []
    seconds = 0.0
    deadline, reason = _deadline(job)
    for step in range(1, job["iterations"] + 1):
        start = time.perf_counter()
        solver.step(1)
        seconds += time.perf_counter() - start
        loss = float(net.blobs[blob].data)
        if not math.isfinite(loss):
            return ("ok" if keeper.best is not None else "nan"), "nan", seconds
        chunk.append(loss)
        if len(chunk) == interval or step == job["iterations"]:
            emit({"event": "progress", "iteration": step,
                  "loss": sum(chunk) / len(chunk), "seconds": seconds})
            chunk = []
        late = deadline is not None and time.time() >= deadline
        if test_net is not None and (_validation_due(job, step) or late):
            means = _test(test_net, job)
            emit({"event": "validation", "iteration": step, "loss": means[blob],
                  "accuracy": {k: v for k, v in means.items() if k != blob}})
            keeper.offer(net, step, means)
            if keeper.exhausted:
                return "ok", "patience", seconds
        if late:
            return "ok", reason, seconds
    return "ok", "max_iter", seconds


def _deadline(job: Event) -> tuple[float | None, str]:
    """When training must stop, and why: the run's time budget (`stop_at`) or this
    training's own limit (`max_train_s`, counted from now), whichever comes first."""
    run_end = job.get("stop_at")
    own_end = None if job.get("max_train_s") is None else time.time() + float(job["max_train_s"])
    if own_end is not None and (run_end is None or own_end < run_end):
        return own_end, "time_limit"
    return run_end, "deadline"


def _test(net: Any, job: Event) -> dict[str, float]:
    blobs = [job["loss_blob"], *job["accuracy_blobs"]]
    sums = dict.fromkeys(blobs, 0.0)
    for _ in range(job["test_iterations"]):
        net.forward()
        for name in blobs:
            sums[name] += float(net.blobs[name].data)
    return {name: total / job["test_iterations"] for name, total in sums.items()}


def run_train(job: Event, emit: Emit) -> None:
    caffe = _caffe()
    set_mode(job["mode"], job["gpu_id"])
    solver = caffe.get_solver(job["solver"])
    _require_blobs(solver.net, [job["loss_blob"]], "TRAIN")
    if job.get("resume_state"):
        _restore_state(solver, job)
    elif job.get("init_weights"):
        solver.net.copy_from(job["init_weights"])
    begin = int(solver.iter)  # a resumed solver counts on from its state's iteration
    keeper = _Keeper(job)
    status, stopped, seconds = _train_steps(solver, job, emit, keeper)
    result: Event = {"event": "result", "status": status, "iterations_done": int(solver.iter) - begin,
                     "solver_seconds": seconds, "stopped": stopped}
    if job.get("save_state") and status == "ok" and stopped != "nan":
        _save_state(solver, job)
        result["state"] = job["save_state"]
    if keeper.best is not None:
        result["test_loss"] = keeper.best["loss"]
        result["test_accuracy"] = keeper.best["accuracy"]
        result["best_iteration"] = keeper.best["iteration"]
        if job["snapshot"]:
            result["caffemodel"] = job["snapshot"]
    elif status == "ok" and job["snapshot"] and job["test_iterations"] == 0:
        solver.net.save(job["snapshot"])  # nothing to select by: the last weights
        result["caffemodel"] = job["snapshot"]
        result["best_iteration"] = int(solver.iter) - begin
    emit(result)


# --- forward ----------------------------------------------------------------


def run_forward(job: Event, emit: Emit) -> None:
    """One forward pass; the asked blobs (and all params) into an .npz file."""
    caffe = _caffe()
    caffe.set_mode_cpu()
    net = caffe.Net(job["net"], _phase(job["phase"]))
    if job.get("weights"):
        net.copy_from(job["weights"])
    _require_blobs(net, job["blobs"], job["phase"].upper())
    net.forward()
    arrays = {f"blob:{name}": net.blobs[name].data.copy() for name in job["blobs"]}
    if job["params"]:
        for layer, blobs in net.params.items():
            for index, blob in enumerate(blobs):
                arrays[f"param:{layer}:{index}"] = blob.data.copy()
    np.savez(job["out"], **arrays)
    emit({"event": "result"})


def _hdf5_files(list_file: str) -> list[str]:
    base = Path(list_file).resolve().parent
    lines = [line.strip() for line in Path(list_file).read_text().splitlines()]
    return [str(base / line) for line in lines if line]


def _batches(path: str, inputs: list[str], size: int) -> Iterator[dict[str, np.ndarray]]:
    import h5py

    with h5py.File(path, "r") as data:
        missing = [name for name in inputs if name not in data]
        if missing:
            raise JobError(f"{path}: no dataset {', '.join(missing)} for the deploy net's inputs")
        rows = data[inputs[0]].shape[0]
        for start in range(0, rows, size):
            yield {name: np.asarray(data[name][start:start + size]) for name in inputs}


def _require_weights_for(net: Any, weights: str) -> None:
    """JobError unless the .caffemodel holds weights for every layer of `net` that
    has parameters: Caffe's copy_from skips what a file lacks, so random bytes or
    another net's weights would silently score an untrained net."""
    if weights.endswith(".h5"):
        return  # HDF5 weights: Caffe itself checks the layers it finds
    from caffe.proto import caffe_pb2
    from google.protobuf.message import DecodeError

    param = caffe_pb2.NetParameter()
    try:
        param.ParseFromString(Path(weights).read_bytes())
    except (DecodeError, RuntimeError) as exc:
        raise JobError(f"{weights}: not a caffemodel ({exc})") from None
    have = {layer.name for layer in param.layer if layer.blobs} | {layer.name for layer in param.layers if layer.blobs}
    missing = [name for name in net.params if name not in have]
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise JobError(f"{weights}: holds no weights for the layers {shown} of this net "
                       "(not a caffemodel trained for it?)")


def _deploy_net(job: Event) -> Any:
    """The job's deploy net in TEST mode with its trained weights, checked to hold them
    and the ``blob`` the job reads."""
    caffe = _caffe()
    set_mode(job["mode"], job["gpu_id"])
    net = caffe.Net(job["deploy"], caffe.TEST)
    _require_weights_for(net, job["weights"])
    net.copy_from(job["weights"])
    _require_blobs(net, [job["blob"]], "deploy")
    return net


def run_scores(job: Event, emit: Emit) -> None:
    """Deploy net over every row of the HDF5 files; ``blob`` rows into an .npy."""
    net = _deploy_net(job)
    inputs = [str(name) for name in net.inputs]
    parts = []
    for path in _hdf5_files(job["sources"]):
        for batch in _batches(path, inputs, job["batch_size"]):
            for name, values in batch.items():
                net.blobs[name].reshape(*values.shape)
                net.blobs[name].data[...] = values
            net.reshape()
            net.forward()
            parts.append(net.blobs[job["blob"]].data.copy())
    np.save(job["out"], np.concatenate(parts) if parts else np.zeros((0,), np.float32))
    emit({"event": "result"})


# --- serve ------------------------------------------------------------------


def _dense(spec: Event, blob: Any) -> np.ndarray:
    """A request's input as the blob's dense array: sparse (index, value) pairs over the
    flattened row, so a mostly-zero history row travels in a few bytes."""
    values = np.zeros(int(np.prod(spec["shape"])), np.float32)
    values[np.asarray(spec["index"], np.int64)] = np.asarray(spec["value"], np.float32)
    return values.reshape(spec["shape"])


def run_serve(job: Event, emit: Emit, requests: IO[str]) -> None:
    """A long-lived deploy net: one request line in, one ``scores`` event out, until stdin
    closes. The net is reshaped to each request's batch; ``blob`` rows come back."""
    net = _deploy_net(job)
    inputs = [str(name) for name in net.inputs]
    emit({"event": "ready", "inputs": inputs})
    for line in requests:
        request = json.loads(line)
        try:
            for name in inputs:
                values = _dense(request["inputs"][name], net.blobs[name])
                net.blobs[name].reshape(*values.shape)
                net.blobs[name].data[...] = values
            net.reshape()
            net.forward()
            emit({"event": "scores", "rows": net.blobs[job["blob"]].data.tolist()})
        except (KeyError, ValueError, IndexError) as exc:
            emit({"event": "error", "message": _describe(exc)})


# --- plumbing ---------------------------------------------------------------

KINDS: dict[str, Callable[[Event, Emit], None]] = {
    "info": run_info,
    "load": run_load,
    "train": run_train,
    "forward": run_forward,
    "scores": run_scores,
}


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[-1] if text else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _event_stream() -> IO[str]:
    # Keep the real stdout for events; fd 1 now goes to stderr with glog.
    events = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return events


def main() -> int:
    events = _event_stream()

    def emit(event: Event) -> None:
        events.write(json.dumps(event) + "\n")
        events.flush()

    # One job line; a `serve` job reads its requests from the lines after it.
    job = json.loads(sys.stdin.readline())
    try:
        if job["kind"] == "serve":
            run_serve(job, emit, sys.stdin)
            return 0
        KINDS[job["kind"]](job, emit)
    except Exception as exc:  # every Python failure is reported, none is lost
        emit({"event": "error", "message": _describe(exc)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
