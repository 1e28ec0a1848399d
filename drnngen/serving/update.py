"""`drnngen update RUN --samples LOG`: fine-tune the served net on completed sessions.

1. The sample log's prefixes become rows through `drnngen.data.live` (the code the
   service scores with) and one HDF5 file, `RUN/serving/updates/<n>/train.h5`.
2. The served candidate's config, reading that file in TRAIN and the dataset's validation
   split in TEST, trains `--iters` steps starting from the served weights (Caffe's
   `--weights`, `TrainJob.init_weights`) at `--lr-factor` times its learning rate (a
   fine-tune: the weights are already trained).
3. The served and the fine-tuned weights are scored on the validation split by the same
   deploy forward, fitness = top-1 accuracy + 1/(1 + loss) (the tuner's). The new weights
   are swapped in (`RUN/serving/current.json`) only when their fitness is no worse.

A running server picks them up on `POST /admin/reload` or SIGHUP.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drnngen.codegen.build import generate, write
from drnngen.codegen.graph import model_outputs
from drnngen.data.live import LivePrefix, live_rows, write_rows
from drnngen.errors import UserError
from drnngen.runner import TrainJob, fitness, forward_scores, train
from drnngen.runner.jobs import Mode
from drnngen.serving.model import ServedModel, load_model, serving_dir, write_current
from drnngen.serving.samples import read_samples
from drnngen.tuner.candidate import accuracy_blobs, validation_batches

UPDATES_DIR = "updates"
MODEL_FILE = "model.caffemodel"
LOCK_FILE = ".update-lock"


@dataclass(frozen=True)
class UpdateResult:
    samples: int
    old_fitness: float
    new_fitness: float
    swapped: bool
    weights: Path  # the fine-tuned weights (served when swapped)
    update: int


def update(run: Path, samples: Path, iterations: int, mode: Mode = "cpu", lr_factor: float = 0.1) -> UpdateResult:
    """Fine-tune, evaluate, swap when no worse (see the module docstring)."""
    if iterations < 1:
        raise UserError(f"--iters {iterations}: expected at least 1")
    if not 0 < lr_factor <= 1:
        raise UserError(f"--lr-factor {lr_factor}: expected a number in (0, 1]")
    model = load_model(run)
    with _update_lock(serving_dir(run)):
        return _update(run, model, samples, iterations, mode, lr_factor)


def _update(run: Path, model: ServedModel, samples: Path, iterations: int, mode: Mode,
            lr_factor: float) -> UpdateResult:
    pairs = list(read_samples(samples))
    if not pairs:
        raise UserError(f"--samples {samples}: holds no complete sample yet")
    number = model.update + 1
    folder = serving_dir(run) / UPDATES_DIR / str(number)
    shutil.rmtree(folder, ignore_errors=True)  # an update that was interrupted
    folder.mkdir(parents=True)
    train_list = _train_file(model, pairs, folder)
    job = _job(model, folder, train_list, iterations, mode, lr_factor)
    result = train(job)
    if not result.ok or result.caffemodel is None:
        raise UserError(f"update {number}: fine-tuning failed ({result.status}: {result.error})")
    val = model.manifest.sources(model.window)["val"]
    old = validation_fitness(model.deploy, model.weights, val, mode)
    new = validation_fitness(model.deploy, Path(result.caffemodel), val, mode)
    swapped = new >= old
    if swapped:
        served = serving_dir(run) / f"model-update{number}.caffemodel"
        staged = served.with_name(f".{served.name}.tmp")
        shutil.copyfile(result.caffemodel, staged)
        staged.replace(served)
        write_current(run, served, new, number)
    return UpdateResult(len(pairs), old, new, swapped, Path(result.caffemodel), number)


@contextlib.contextmanager
def _update_lock(folder: Path) -> Iterator[None]:
    """One update of a run at a time (flock: a killed update leaves no lock behind)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / LOCK_FILE).open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{folder.parent}: another `drnngen update` of this run is running") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _train_file(model: ServedModel, pairs: list[tuple[LivePrefix, int]], folder: Path) -> Path:
    m = model.manifest
    labels = np.array([label for _, label in pairs], np.float32)
    if np.any((labels < 0) | (labels >= m.items)):
        raise UserError(f"the sample log has labels outside 0..{m.items - 1}: not this model's samples")
    prefixes = [prefix for prefix, _ in pairs]
    try:
        rows = live_rows(prefixes, model.window_files)
    except (ValueError, IndexError) as exc:
        raise UserError(f"the sample log does not fit this model (w={model.window}, M={m.pages}): {exc}") from None
    rows["label"] = labels
    write_rows(folder / "train.h5", rows)
    (folder / "train.txt").write_text(f"{folder / 'train.h5'}\n")
    return folder / "train.txt"


def _job(model: ServedModel, folder: Path, train_list: Path, iterations: int, mode: Mode,
         lr_factor: float) -> TrainJob:
    cfg = model.config
    val = model.manifest.sources(model.window)["val"]
    batch, test_iterations = validation_batches(model.manifest.val_samples, cfg.data.test_batch_size)
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, train_source=str(train_list), test_source=str(val), test_batch_size=batch),
        solver=dataclasses.replace(cfg.solver, base_lr=float(f"{cfg.solver.base_lr * lr_factor:.6g}"),
                                   max_iter=iterations, test_iter=test_iterations,
                                   test_interval=iterations, test_initialization=False, snapshot=0,
                                   solver_mode=mode.upper()),
    )
    write(generate(cfg), folder)
    loss_blob, accuracy_blob = model_outputs(cfg)
    return TrainJob(workdir=folder, iterations=iterations, loss_blob=loss_blob,
                    accuracy_blobs=accuracy_blobs(cfg, accuracy_blob), test_iterations=test_iterations,
                    mode=mode, snapshot=Path(MODEL_FILE), init_weights=model.weights,
                    loss_interval=max(1, iterations // 10), reads=(train_list, val, model.weights))


def validation_fitness(deploy: Path, weights: Path, val: Path, mode: Mode = "cpu") -> float:
    """Top-1 accuracy + 1/(1 + mean loss) of the deploy net's `prob` on the validation rows."""
    from drnngen.data.samples import load_sessions

    prob = forward_scores(deploy, weights, val, "prob", mode=mode)
    labels = load_sessions(val).labels
    picked = prob[np.arange(len(labels)), labels]
    # pessimistic top-1 (a tie with the label counts as a miss), like evaluation's ranks
    accuracy = float(np.mean(np.sum(prob >= picked[:, None], axis=1) == 1))
    loss = float(np.mean(-np.log(np.maximum(picked, np.finfo(np.float32).tiny))))
    return fitness(accuracy, loss) if math.isfinite(loss) else 0.0
