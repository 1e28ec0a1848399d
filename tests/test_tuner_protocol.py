"""A candidate's training protocol in real Caffe: validation points during
training, the best snapshot kept (its fitness is the candidate's), early
stopping after a patience, a time budget that cuts a training and keeps its
best snapshot, and `evaluate`'s forward reproducing the kept snapshot."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from drnngen.cli import cli
from drnngen.codegen.config import load_config
from drnngen.data.manifest import load_manifest
from drnngen.runner import TrainResult, fitness, forward_scores, train
from drnngen.tuner.candidate import Budget, Setting, TuneData, prepare, train_job, write_files
from drnngen.tuner.ledger import Ledger
from drnngen.tuner.space import IntRange, SearchSpace
from drnngen.vocabulary import Status, candidate_folder
from tests.data_support import TUNER_DATA
from tests.golden_tool import EXAMPLES

pytestmark = pytest.mark.caffe
DATASET = TUNER_DATA
SPACE = SearchSpace(IntRange(3, 3), IntRange(2, 2), IntRange(1, 1), ("ReLU",), (32,))


def _setting(dataset: Path, **changes: object) -> Setting:
    # a high fixed learning rate: the validation fitness rises, then falls (overfitting, noise)
    base = load_config(EXAMPLES / "small.yaml")
    base = replace(base, solver=replace(base.solver, base_lr=0.5, lr_policy="fixed"))
    setting = Setting(base, SPACE, TuneData(dataset), Budget(iterations=300), seed=3,
                      validate_every=0.25, patience=0)
    return replace(setting, **changes)  # type: ignore[arg-type]


def _val_accuracy(deploy: Path, model: Path, dataset: Path, window: int) -> float:
    """Top-1 accuracy of the weights on the validation split, as Caffe's Accuracy counts it."""
    val = load_manifest(dataset).sources(window)["val"]
    prob = forward_scores(deploy, model, val, "prob")
    labels = np.concatenate([h5py.File(line.strip(), "r")["label"][:] for line in val.read_text().splitlines()])
    true = prob[np.arange(len(labels)), labels.astype(int)]
    return float(np.mean((prob >= true[:, None]).sum(axis=1) - 1 < 1))


def _train(dataset: Path, folder: Path, **changes: object) -> TrainResult:
    setting = _setting(dataset, **changes)
    candidate = prepare([3, 2, 1, "ReLU", "ReLU", 32, 32], setting)
    write_files(candidate, folder)
    return train(train_job(candidate, folder, setting))


def test_the_kept_snapshot_is_the_best_validation_point_and_reloads(dataset: Path, tmp_path: Path) -> None:
    result = _train(dataset, tmp_path)
    assert result.status == Status.OK and result.stopped == "max_iter"
    assert len(result.validations) >= 4  # every quarter epoch, and at the end
    scores = [fitness(v.accuracy["accuracy"], v.loss) for v in result.validations]
    best = result.validations[int(np.argmax(scores))]
    assert result.best_iteration == best.iteration
    assert result.test_loss == best.loss and result.test_accuracy == best.accuracy
    assert result.best_iteration < result.iterations_done, "the seed was chosen so that the best is not the last"
    assert result.caffemodel is not None
    accuracy = _val_accuracy(tmp_path / "deploy.prototxt", result.caffemodel, dataset, 3)
    assert accuracy == pytest.approx(best.accuracy["accuracy"], abs=1e-6)  # the weights are the best point's


def test_patience_stops_after_points_without_improvement(dataset: Path, tmp_path: Path) -> None:
    full = _train(dataset, tmp_path / "full")
    early = _train(dataset, tmp_path / "early", patience=1)
    assert early.stopped == "patience"
    first_worse = next(i for i in range(1, len(full.validations))
                       if fitness(full.validations[i].accuracy["accuracy"], full.validations[i].loss)
                       <= max(fitness(v.accuracy["accuracy"], v.loss) for v in full.validations[:i]))
    # same seed, same steps: the early run is the full run's prefix up to its first point without improvement
    assert [v.iteration for v in early.validations] == [v.iteration for v in full.validations[:first_worse + 1]]
    assert early.iterations_done == full.validations[first_worse].iteration


def test_a_deadline_cuts_training_and_keeps_the_best_snapshot(dataset: Path, tmp_path: Path) -> None:
    result = _train(dataset, tmp_path, stop_at=time.time() - 1)  # already spent: one step, then stop
    assert result.status == Status.OK and result.stopped == "deadline"
    assert result.iterations_done == 1 and len(result.validations) == 1
    assert result.caffemodel is not None and result.caffemodel.is_file()


def test_tune_records_the_protocol_and_evaluate_uses_the_kept_weights(dataset: Path, tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"states": 3, "layers": 2, "shortcut": 1, "activations": ["ReLU", "TanH"],
                                     "widths": [16, 32]}))
    config = tmp_path / "base.yaml"
    base = yaml.safe_load((EXAMPLES / "small.yaml").read_text())
    base["solver"].update(base_lr=0.5, lr_policy="fixed")
    config.write_text(yaml.safe_dump(base))
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "tune", "--config", str(config), "--space", str(space), "--data", str(dataset), "--generations", "0",
        "--population", "3", "--iters", "120", "--validate-every", "0.25", "--patience", "2", "--seed", "3",
        "--no-cache", "-o", str(run)])
    assert result.exit_code == 0, result.output
    ledger = Ledger.open(run)
    rows = [r for r in ledger.candidates() if r.outcome.ok]
    assert rows
    for row in rows:
        o = row.outcome
        points = {v["iteration"]: fitness(v["accuracy"]["accuracy"], v["loss"]) for v in o.validations}
        assert o.best_iteration == max(points, key=lambda it: points[it])
        assert o.fitness == pytest.approx(max(points.values()), abs=1e-12)
        assert o.stop_reason in ("patience", "max_iter") and o.iterations == max(points)
    best = ledger.best()
    assert best is not None and best.outcome.caffemodel is not None
    folder = candidate_folder(run, best.key)
    accuracy = _val_accuracy(folder / "deploy.prototxt", Path(best.outcome.caffemodel), dataset, 3)
    assert accuracy == pytest.approx(best.outcome.accuracy, abs=1e-6)


def test_a_training_s_own_time_limit_stops_it_with_its_best_snapshot(dataset: Path, tmp_path: Path) -> None:
    result = _train(dataset, tmp_path, train_seconds=1e-6)  # spent after the first step
    assert result.status == Status.OK and result.stopped == "time_limit"
    assert result.iterations_done == 1 and [v.iteration for v in result.validations] == [1]
    assert result.caffemodel is not None and result.caffemodel.is_file()
    later = _train(dataset, tmp_path / "later", train_seconds=3600.0, stop_at=time.time() - 1)
    assert later.stopped == "deadline"  # the run's budget ends first: it names the stop
