"""Turning a genotype into a trainable candidate, and a candidate into the one
job a worker runs.

`prepare` is pure computation in the tuner's process (decode, codegen, the
canonical hash and the per-candidate Caffe seed); `write_files` puts the
candidate's files into its folder and `train_job` describes its training for
`drnngen.runner`: TRAIN on the train split, validation passes on the
validation split, the best snapshot kept.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from drnngen.codegen.build import NET, SOLVER, generate, write
from drnngen.codegen.config import DRNNConfig, to_mapping, uses_fixed_maps
from drnngen.codegen.graph import model_outputs
from drnngen.errors import UserError
from drnngen.runner import Mode, TrainJob
from drnngen.tuner.codec import decode
from drnngen.tuner.space import SearchSpace

MODEL_FILE = "model.caffemodel"
CONFIG_FILE = "config.yaml"
TRAIN_LOSS_FILE = "train_loss.json"  # [[iteration, mean train loss], ...] for the report's curve


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


class TuneData:
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
    """Everything per run that turns a genotype into a trainable candidate.

    A validation point every ``validate_every`` epochs (0: one, at the end);
    ``patience`` of them without improvement stop a training (0: never).
    ``stop_at`` (Unix time) is the run's time budget: no step starts after it;
    ``train_seconds`` one training's own limit. Both keep the best snapshot.
    """

    base: DRNNConfig
    space: SearchSpace
    data: TuneData
    budget: Budget
    seed: int
    mode: Mode = "cpu"
    timeout_s: float | None = None
    validate_every: float = 0.0
    patience: int = 0
    stop_at: float | None = None
    train_seconds: float | None = None


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
            # the runner validates (and keeps the best snapshot) itself: Caffe's own
            # pass at iteration 0 would only cost time
            test_initialization=False, solver_mode=setting.mode.upper(), random_seed=None, snapshot=0,
        ),
    )
    digest = setting.data.digest(cfg.model.states)
    unseeded = canonical_hash(generate(cfg), cfg, digest)
    seed = int.from_bytes(hashlib.sha256(f"{setting.seed}:{unseeded}".encode()).digest()[:4], "big") & 0x7FFFFFFF
    cfg = replace(cfg, solver=replace(cfg.solver, random_seed=seed))
    files = generate(cfg, source=CONFIG_FILE)
    # The protocol decides the result (hence the key) but not the net's seed: the same
    # net trains the same steps whether it validates often or stops early.
    key = canonical_hash(files, cfg, digest + _protocol(setting))
    return Candidate(tuple(genotype), key, cfg, files, seed, iterations, test_iterations)


def _protocol(setting: Setting) -> str:
    """The training protocol's part of the key; empty for the one-pass default,
    so keys (and the shared cache) of such runs stay as they were."""
    if setting.validate_every <= 0 and setting.patience == 0:
        return ""
    return f":v{setting.validate_every:g}:p{setting.patience}"


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


def write_files(candidate: Candidate, folder: Path) -> None:
    """The candidate's prototxt files and config into its folder (the client
    writes them; a worker only trains)."""
    write({**candidate.files, CONFIG_FILE: yaml.safe_dump(to_mapping(candidate.config), sort_keys=False)}, folder)
    (folder / MODEL_FILE).unlink(missing_ok=True)  # a stale model of an interrupted attempt is no result


def train_job(candidate: Candidate, folder: Path, setting: Setting) -> TrainJob:
    """The candidate's training as the runner takes it (folder absolute)."""
    loss_blob, accuracy_blob = model_outputs(candidate.config)
    data = candidate.config.data
    every = 0
    if setting.validate_every > 0:
        epoch = math.ceil((data.train_samples or data.batch_size) / data.batch_size)
        every = max(1, math.ceil(setting.validate_every * epoch))
    init = None
    if uses_fixed_maps(candidate.config):  # the fixed page->item maps, loaded like `caffe train --weights`
        from drnngen.bind import repeat_weights

        init = repeat_weights(candidate.config, setting.data.path)
    return TrainJob(
        workdir=folder, iterations=candidate.iterations, loss_blob=loss_blob, init_weights=init,
        accuracy_blobs=accuracy_blobs(candidate.config, accuracy_blob),
        test_iterations=candidate.test_iterations, solver=SOLVER, mode=setting.mode,
        timeout_s=setting.timeout_s, snapshot=Path(MODEL_FILE),
        loss_interval=max(1, candidate.iterations // 20),
        validate_every=every, patience=setting.patience, stop_at=setting.stop_at,
        max_train_s=setting.train_seconds,
        reads=(Path(data.train_source), Path(data.test_source), *(() if init is None else (init,))),
    )


def retry_candidate(candidate: Candidate, lr_factor: float = 0.1) -> Candidate:
    """The same candidate at `lr_factor` times its learning rate (a NaN's one retry).
    It keeps the key, genotype and seed: the ledger records the retry's result
    as the candidate's, with a note."""
    cfg = candidate.config
    lower = float(f"{cfg.solver.base_lr * lr_factor:.6g}")  # 0.005, not 0.005000000000000001
    cfg = replace(cfg, solver=replace(cfg.solver, base_lr=lower))
    return replace(candidate, config=cfg, files=generate(cfg, source=CONFIG_FILE))


def accuracy_blobs(cfg: DRNNConfig, top1: str) -> tuple[str, ...]:
    """The blobs a validation pass reads besides the loss: top-1 first, then top-K."""
    k = cfg.model.top_k
    return (top1, f"accuracy_top{k}") if k > 1 else (top1,)
