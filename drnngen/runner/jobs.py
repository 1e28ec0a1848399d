"""What the runner is asked to do and what it answers: frozen, typed values.

Jobs travel to the child process as JSON (``to_wire``) and results come back
as JSON; nothing here imports Caffe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from drnngen.errors import UserError
from drnngen.vocabulary import Status

Mode = Literal["cpu", "gpu"]
Phase = Literal["train", "test"]
StopReason = Literal["max_iter", "patience", "deadline", "time_limit", "nan"]

MODES: tuple[Mode, ...] = ("cpu", "gpu")
PHASES: tuple[Phase, ...] = ("train", "test")


def check_mode(mode: str) -> Mode:
    """`mode` as a Mode, or UserError naming the allowed values."""
    for known in MODES:
        if mode == known:
            return known
    raise UserError(f"mode: {mode!r} is not one of {', '.join(MODES)}")


def check_phase(phase: str) -> Phase:
    """`phase` as a Phase, or UserError naming the allowed values."""
    for known in PHASES:
        if phase == known:
            return known
    raise UserError(f"phase: {phase!r} is not one of {', '.join(PHASES)}")


def fitness(accuracy: float, loss: float) -> float:
    """The paper's fit(c) = accuracy + 1 / (1 + loss): how a training picks the
    snapshot it keeps, and how the tuner ranks candidates."""
    return accuracy + 1.0 / (1.0 + loss)


def state_weights(state: str | Path) -> Path:
    """The weights file of the solver state `state` (a .solverstate).

    A saved solver state is a pair of files: ``X.solverstate`` (iteration,
    learning-rate step, the update history: momentum, Adam's moments) and
    ``X.caffemodel`` beside it (the weights at that iteration, not the best
    snapshot's). The pair travels as one (the tuner's cache keeps both), so
    the path Caffe writes into the state (``learned_net``) is never used.
    """
    return Path(state).with_suffix(".caffemodel")


@dataclass(frozen=True)
class TrainJob:
    """Train the solver in ``workdir`` for up to ``iterations`` steps, validating
    on the way, and keep the best snapshot.

    Caffe resolves the relative paths inside the prototxt files (net file,
    HDF5 source lists) from the working directory, so the child runs there.
    ``loss_blob`` is read on the TRAIN net after every step and, with the
    ``accuracy_blobs``, averaged over ``test_iterations`` batches of the TEST
    net at every validation point: every ``validate_every`` steps (0: only at
    the end) and at the last step. The snapshot with the highest
    :func:`fitness` of ``accuracy_blobs[0]`` and the loss is written to
    ``snapshot`` (relative to workdir, or absolute) as a .caffemodel; training
    stops early after ``patience`` validation points without improvement (0:
    never) and, once the Unix time ``stop_at`` has passed or the training has
    run ``max_train_s`` seconds, after the next step (a time budget: the best
    snapshot so far is the result). ``init_weights``
    (a .caffemodel or .caffemodel.h5) is copied into the net before the first
    step, like ``caffe train --weights``. ``resume_state`` (a solver state
    another job saved, see ``save_state``) continues that training exactly
    where it stopped instead: iteration, learning-rate schedule, update
    history, weights and the train data's position (``iterations`` more
    steps; iterations and validation points are still counted from the
    job's own first step). ``save_state`` writes the solver's state at the
    end as ``<save_state>`` (a .solverstate) and its weights beside it
    (the same name, .caffemodel). Train losses are reported as means
    over ``loss_interval`` steps; ``log_file`` (relative to workdir) keeps
    Caffe's glog output. ``reads`` are the files besides ``workdir`` the job
    needs (data lists), checked before the child starts.
    """

    workdir: Path
    iterations: int
    loss_blob: str
    accuracy_blobs: tuple[str, ...] = ()
    test_iterations: int = 0
    solver: str = "solver.prototxt"
    mode: Mode = "cpu"
    gpu_id: int = 0
    loss_interval: int = 10
    timeout_s: float | None = None
    snapshot: Path | None = None
    log_file: str | None = "caffe.log"
    validate_every: int = 0
    patience: int = 0
    stop_at: float | None = None
    max_train_s: float | None = None
    init_weights: Path | None = None
    reads: tuple[Path, ...] = ()
    resume_state: Path | None = None
    save_state: Path | None = None

    def __post_init__(self) -> None:
        check_mode(self.mode)
        if self.iterations < 1:
            raise UserError(f"iterations: must be >= 1, got {self.iterations}")
        if self.loss_interval < 1:
            raise UserError(f"loss_interval: must be >= 1, got {self.loss_interval}")
        if self.test_iterations < 0:
            raise UserError(f"test_iterations: must be >= 0, got {self.test_iterations}")
        if self.gpu_id < 0:
            raise UserError(f"gpu_id: must be >= 0, got {self.gpu_id}")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise UserError(f"timeout_s: must be > 0, got {self.timeout_s}")
        if self.max_train_s is not None and self.max_train_s <= 0:
            raise UserError(f"max_train_s: must be > 0, got {self.max_train_s}")
        if self.validate_every < 0 or self.patience < 0:
            raise UserError(f"validate_every/patience: must be >= 0, got {self.validate_every}/{self.patience}")

    @property
    def snapshot_path(self) -> Path | None:
        """Where the caffemodel goes, absolute."""
        return None if self.snapshot is None else self.workdir / self.snapshot

    def to_wire(self) -> dict[str, Any]:
        """The JSON the worker reads."""
        snapshot = self.snapshot_path
        return {
            "solver": self.solver,
            "iterations": self.iterations,
            "loss_blob": self.loss_blob,
            "accuracy_blobs": list(self.accuracy_blobs),
            "test_iterations": self.test_iterations,
            "mode": self.mode,
            "gpu_id": self.gpu_id,
            "loss_interval": self.loss_interval,
            "snapshot": None if snapshot is None else str(snapshot),
            "validate_every": self.validate_every,
            "patience": self.patience,
            "stop_at": self.stop_at,
            "max_train_s": self.max_train_s,
            "init_weights": None if self.init_weights is None else str(self.workdir / self.init_weights),
            "resume_state": None if self.resume_state is None else str(self.workdir / self.resume_state),
            "save_state": None if self.save_state is None else str(self.workdir / self.save_state),
        }


@dataclass(frozen=True)
class Validation:
    """One validation point: the TEST net's mean loss and accuracies at ``iteration``."""

    iteration: int
    loss: float
    accuracy: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "loss": self.loss, "accuracy": dict(self.accuracy)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Validation:
        return cls(int(data["iteration"]), float(data["loss"]), {k: float(v) for k, v in data["accuracy"].items()})


@dataclass(frozen=True)
class TrainResult:
    """The outcome of a TrainJob; failures are values, not exceptions.

    ``train_losses`` holds (iteration, mean loss of the interval ending there);
    ``final_train_loss`` is the last of those means. ``validations`` are every
    validation point; ``test_loss``/``test_accuracy`` are those of the kept
    snapshot (``best_iteration``, saved to ``caffemodel``). ``stopped`` says
    why training ended. ``solver_seconds`` counts only the time inside the
    solver (no process start, no net set-up, no validation); ``wall_seconds``
    the whole job, child process included.
    """

    status: Status
    iterations_done: int = 0
    train_losses: tuple[tuple[int, float], ...] = ()
    test_loss: float | None = None
    test_accuracy: Mapping[str, float] = field(default_factory=dict)
    solver_seconds: float = 0.0
    caffemodel: Path | None = None
    error: str | None = None
    log: Path | None = None
    state: Path | None = None
    validations: tuple[Validation, ...] = ()
    best_iteration: int | None = None
    stopped: StopReason | None = None
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == Status.OK

    @property
    def final_train_loss(self) -> float | None:
        return self.train_losses[-1][1] if self.train_losses else None


@dataclass(frozen=True)
class LayerSummary:
    """One layer as Caffe built it (after its own `*_split` insertion)."""

    name: str
    type: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    param_shapes: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class NetSummary:
    """Whether caffe.Net accepted a net file, and what it built.

    ``shared_params`` groups the parameter blobs that are one piece of memory
    (``layer/index`` names, groups of two or more), read from the data
    pointers Caffe hands out.
    """

    path: Path
    phase: Phase
    ok: bool
    error: str | None = None
    layers: tuple[LayerSummary, ...] = ()
    blobs: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    shared_params: tuple[tuple[str, ...], ...] = ()

    def layer(self, name: str) -> LayerSummary:
        """The layer called ``name`` (KeyError when the net has none)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


@dataclass(frozen=True)
class CaffeInfo:
    """What the located Caffe is, as seen from inside a child process."""

    version: str
    layer_types: tuple[str, ...]
    gpu_capable: bool | None
    numpy: str
    protobuf: str
    python: str
    package_dir: Path
