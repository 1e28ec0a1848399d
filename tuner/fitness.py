"""Evaluating one candidate: genotype → config → prototxt files → Caffe → fitness.

`prepare` is pure computation in the tuner's process (decode, codegen, the
canonical hash and the per-candidate Caffe seed); `train_candidate` writes the
files into the candidate's folder and trains it through `drnngen.runner`
(always a child process): TRAIN on the train split, then TEST on the
validation split. fit = top-1 accuracy + 1 / (1 + loss) of the last state.

A candidate that Caffe rejects (CHECK abort, segfault), whose loss turns NaN,
or that runs past the timeout is a result too: status, Caffe's message, and
WORST_FITNESS (0, the lowest value the formula can give).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from codegen.build import NET, SOLVER, generate, write
from codegen.config import DRNNConfig, to_mapping
from codegen.graph import model_outputs
from drnngen.errors import UserError
from tuner.codec import decode
from tuner.executors import Slot
from tuner.space import SearchSpace

WORST_FITNESS = 0.0
MODEL_FILE = "model.caffemodel"
TRAIN_LOSS_FILE = "train_loss.json"  # [[iteration, mean train loss], ...] for the report's curve
CONFIG_FILE = "config.yaml"
UNCACHEABLE = ("timeout",)  # depends on the machine's load and --timeout, not on the net


def fitness(accuracy: float, loss: float) -> float:
    """The paper's fit(c) = accuracy + 1 / (1 + loss)."""
    return accuracy + 1.0 / (1.0 + loss)


@dataclass(frozen=True)
class Outcome:
    """A candidate's result, as the ledger and the cache keep it."""

    status: str  # ok | failed | timeout | nan | invalid
    fitness: float
    accuracy: float | None = None
    loss: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    iterations: int = 0
    solver_seconds: float = 0.0
    wall_seconds: float = 0.0
    error: str | None = None
    caffemodel: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "metrics": dict(self.metrics)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Outcome:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Budget:
    """Training length of every candidate: iterations, or epochs of the train split."""

    iterations: int | None = None
    epochs: float | None = None

    def __post_init__(self) -> None:
        if (self.iterations is None) == (self.epochs is None):
            raise UserError("give a training budget: --iters N or --epochs E (one of them)")
        if (self.iterations or 1) < 1 or (self.epochs or 1) <= 0:
            raise UserError(f"training budget must be positive, got {self.iterations or self.epochs}")

    def iterations_for(self, train_samples: int, batch_size: int) -> int:
        if self.iterations is not None:
            return self.iterations
        assert self.epochs is not None
        return max(1, math.ceil(self.epochs * train_samples / batch_size))


class Dataset:
    """The prepared dataset as the tuner needs it (drnngen.data's manifest)."""

    def __init__(self, path: Path) -> None:
        from drnngen.data.manifest import load_manifest

        self.path = Path(path).resolve()
        self.manifest = load_manifest(self.path)

    @property
    def val_samples(self) -> int:
        return int(self.manifest.val_samples)

    def bind(self, cfg: DRNNConfig) -> DRNNConfig:
        """`cfg` reading this dataset's HDF5 files for its window (absolute paths)."""
        from drnngen.bind import bind_dataset

        return bind_dataset(cfg, self.path)

    def digest(self, window: int) -> str:
        """Identity of the data a window-w net sees: the sample store's hash and w
        (the window files are derived from the store deterministically)."""
        return f"{self.manifest.store_sha256}:w{window}"


@dataclass(frozen=True)
class Setting:
    """Everything per run that turns a genotype into a trainable candidate."""

    base: DRNNConfig
    space: SearchSpace
    data: Dataset
    budget: Budget
    seed: int
    mode: str = "cpu"  # cpu | gpu
    timeout_s: float | None = None


@dataclass(frozen=True)
class Candidate:
    """A genotype made concrete: its config, files, canonical key and Caffe seed."""

    genotype: tuple[Any, ...]
    key: str
    config: DRNNConfig
    files: Mapping[str, str]
    random_seed: int
    iterations: int
    test_iterations: int


def prepare(genotype: Sequence[Any], setting: Setting) -> Candidate:
    """Decode, bind to the data, set the budget and seed, generate the files.

    The Caffe seed is derived from the run seed and the hash of the
    candidate's files without a seed; the cache key hashes the files with it
    (so two runs with the same --seed share trainings, and a network gets the
    same seed wherever it appears in a run).
    """
    cfg = setting.data.bind(decode(genotype, setting.base, setting.space))
    iterations = setting.budget.iterations_for(cfg.data.train_samples or cfg.data.batch_size, cfg.data.batch_size)
    test_batch, test_iterations = validation_batches(setting.data.val_samples, cfg.data.test_batch_size)
    cfg = replace(
        cfg,
        data=replace(cfg.data, test_batch_size=test_batch),
        solver=replace(
            cfg.solver, max_iter=iterations, test_iter=test_iterations, test_interval=iterations,
            # one validation pass, at the end: a pass at iteration 0 would only cost time
            test_initialization=False, solver_mode=setting.mode.upper(), random_seed=None, snapshot=0,
        ),
    )
    digest = setting.data.digest(cfg.model.states)
    unseeded = canonical_hash(generate(cfg), cfg, digest)
    seed = int.from_bytes(hashlib.sha256(f"{setting.seed}:{unseeded}".encode()).digest()[:4], "big") & 0x7FFFFFFF
    cfg = replace(cfg, solver=replace(cfg.solver, random_seed=seed))
    files = generate(cfg, source=CONFIG_FILE)
    return Candidate(tuple(genotype), canonical_hash(files, cfg, digest), cfg, files, seed, iterations, test_iterations)


def validation_batches(rows: int, largest: int) -> tuple[int, int]:
    """(batch, iterations) that cover the validation rows once, batch <= largest.

    Caffe's HDF5Data wraps around; spreading the rows evenly over the fewest
    batches makes batch x iterations = rows whenever it can (else it
    overshoots by fewer rows than there are batches), so the validation
    accuracy is that of the split, not of a few rows counted twice.
    """
    rows = max(1, rows)
    iterations = math.ceil(rows / max(1, largest))
    return math.ceil(rows / iterations), iterations


def canonical_hash(files: Mapping[str, str], cfg: DRNNConfig, data_digest: str) -> str:
    """sha256 of what decides a training's result: the net and solver text
    without comments and with the data paths replaced by the data's identity."""
    digest = hashlib.sha256(data_digest.encode())
    for name in (NET, SOLVER):
        text = files[name].replace(cfg.data.train_source, "<train>").replace(cfg.data.test_source, "<val>")
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        digest.update(f"{name}\n".encode())
        digest.update("\n".join(lines).encode())
    return digest.hexdigest()


Trainer = Callable[[Any], Any]  # drnngen.runner.train: TrainJob -> TrainResult


def train_candidate(candidate: Candidate, folder: Path, slot: Slot, setting: Setting,
                    trainer: Trainer | None = None) -> Outcome:
    """Write the candidate's files into `folder` and train it there; never raises for Caffe's failures."""
    from drnngen.runner import TrainJob, train
    from drnngen.runner.jobs import check_mode

    started = time.perf_counter()
    write({**candidate.files, CONFIG_FILE: yaml.safe_dump(to_mapping(candidate.config), sort_keys=False)}, folder)
    (folder / MODEL_FILE).unlink(missing_ok=True)  # a stale model of an interrupted attempt is no result
    loss_blob, accuracy_blob = model_outputs(candidate.config)
    job = TrainJob(
        workdir=folder, iterations=candidate.iterations, loss_blob=loss_blob,
        accuracy_blobs=_accuracy_blobs(candidate.config, accuracy_blob),
        test_iterations=candidate.test_iterations, solver=SOLVER, mode=check_mode(setting.mode),
        gpu_id=slot.gpu or 0, timeout_s=setting.timeout_s, snapshot=Path(MODEL_FILE),
        loss_interval=max(1, candidate.iterations // 20),
    )
    result = (trainer or train)(job)
    losses = getattr(result, "train_losses", ())
    if losses:
        (folder / TRAIN_LOSS_FILE).write_text(json.dumps([[int(i), float(v)] for i, v in losses]))
    return outcome_of(result, accuracy_blob, time.perf_counter() - started)


def _accuracy_blobs(cfg: DRNNConfig, top1: str) -> tuple[str, ...]:
    k = cfg.model.top_k
    return (top1, f"accuracy_top{k}") if k > 1 else (top1,)


def outcome_of(result: Any, accuracy_blob: str, wall_seconds: float) -> Outcome:
    """A runner TrainResult as an Outcome with its fitness."""
    failed = Outcome(str(result.status), WORST_FITNESS, iterations=int(result.iterations_done),
                     solver_seconds=float(result.solver_seconds), wall_seconds=wall_seconds, error=result.error)
    if result.status != "ok":
        return failed
    loss, accuracy = result.test_loss, result.test_accuracy.get(accuracy_blob)
    if loss is None or accuracy is None or not math.isfinite(loss) or not math.isfinite(accuracy):
        return replace(failed, status="nan", error=f"validation loss/accuracy not finite ({loss}, {accuracy})")
    return replace(failed, fitness=fitness(accuracy, loss), accuracy=accuracy, loss=loss,
                   metrics=dict(result.test_accuracy), caffemodel=str(result.caffemodel))


def invalid(error: str) -> Outcome:
    """A genotype codegen refused (never trained)."""
    return Outcome("invalid", WORST_FITNESS, error=error)
