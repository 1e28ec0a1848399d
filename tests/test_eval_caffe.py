"""Evaluation with real Caffe: a tuned DRNN beats POP on a synthetic log with a learnable signal,
our top-1 accuracy agrees with Caffe's own Accuracy layer, and `report` draws the real run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from drnngen.bind import bind_dataset
from drnngen.cli import cli
from drnngen.codegen.build import DEPLOY, generate, write
from drnngen.codegen.config import load_config, to_mapping
from drnngen.codegen.graph import model_outputs
from drnngen.data.manifest import load_manifest
from drnngen.data.samples import hdf5_files
from drnngen.evaluation.metrics import ranking_metrics
from drnngen.evaluation.report import PLOTS
from tests.data_support import EVAL_DATA

pytestmark = pytest.mark.caffe

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "small.yaml"
DATASET = dataclasses.replace(EVAL_DATA, seed=11)  # the `dataset` fixture (tests/conftest.py)


@pytest.fixture(scope="module")
def tuned_run(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real tuning run: 4 candidates, 1 generation of Algorithm 2, 300 iterations each."""
    from drnngen.tuner import Resources, TuneParams, tune
    from drnngen.tuner.space import IntRange, SearchSpace, space_mapping

    root = tmp_path_factory.mktemp("caffe-eval-run")
    base = bind_dataset(load_config(EXAMPLE), dataset)
    space = SearchSpace(states=IntRange(2, 3), layers=IntRange(1, 2), shortcut=IntRange(0, 1),
                        activations=("ReLU", "TanH"), widths=(32, 64))
    params = TuneParams(data=str(dataset), generations=1, population=4, pc=0.8, pm=0.3, strategy="literal",
                        seed=3, iterations=300, epochs=None, mode="cpu", timeout_s=300.0,
                        base=to_mapping(base), space=space_mapping(space))
    summary = tune(root / "run", params, Resources(workers=1, cache_dir=root / "cache"))
    assert summary.best is not None and summary.best.outcome.ok
    return root / "run"


def test_tuned_drnn_beats_pop_on_recall_at_20(tuned_run: Path, dataset: Path) -> None:
    result = CliRunner().invoke(cli, ["evaluate", str(tuned_run), "--data", str(dataset), "--k", "1,5,10,20"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tuned_run / "evaluation.json").read_text())
    models = doc["models"]
    assert doc["context"]["run"] == str(tuned_run) and doc["context"]["split"] == "test"
    assert models["DRNN"]["samples"] == models["POP"]["samples"] == load_manifest(dataset).test_samples
    # Loose margin: on this log the DRNN reaches ~0.8 and POP ~0.4.
    assert models["DRNN"]["recall@20"] > models["POP"]["recall@20"] + 0.15, result.output
    assert (tuned_run / "evaluation.md").is_file()


def test_report_of_the_real_run(tuned_run: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", str(tuned_run), "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "report.md").read_text()
    for name in PLOTS.values():
        assert (tmp_path / name).stat().st_size > 10_000
        assert f"]({name})" in markdown
    assert "## Best candidate: `" in markdown


def test_top1_agrees_with_caffes_accuracy_layer(dataset: Path, tmp_path: Path) -> None:
    """Same net, same validation rows: our pessimistic top-1 equals Caffe's Accuracy layer."""
    from drnngen.runner import TrainJob, forward_scores, train

    manifest = load_manifest(dataset)
    cfg = bind_dataset(load_config(EXAMPLE), dataset)
    cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, test_batch_size=manifest.val_samples),
        solver=dataclasses.replace(cfg.solver, max_iter=200, test_iter=1, test_interval=200))
    write(generate(cfg), tmp_path)
    loss, accuracy = model_outputs(cfg)
    trained = train(TrainJob(workdir=tmp_path, iterations=200, loss_blob=loss, accuracy_blobs=(accuracy,),
                             test_iterations=1, snapshot=Path("model.caffemodel")))
    assert trained.ok and trained.caffemodel is not None, trained.error
    val = manifest.sources(cfg.model.states)["val"]
    scores = forward_scores(tmp_path / DEPLOY, trained.caffemodel, val, "prob")
    labels = np.concatenate([np.asarray(h5py.File(p, "r")["label"]) for p in hdf5_files(val)])
    ours = ranking_metrics(scores, labels, [1]).accuracy[1]
    assert ours == pytest.approx(trained.test_accuracy[accuracy], abs=1.5 / len(labels))


@pytest.mark.parametrize("weights", ["random", "other"])
def test_weights_that_are_not_this_net_s_are_one_line(dataset: Path, tmp_path: Path, weights: str) -> None:
    """Random bytes, or another net's caffemodel: Caffe's copy_from would skip them silently."""
    from drnngen.runner import TrainJob, train

    cfg = bind_dataset(load_config(EXAMPLE), dataset)
    write(generate(cfg), tmp_path)
    if weights == "random":
        model = tmp_path / "random.caffemodel"
        model.write_bytes(np.random.default_rng(0).bytes(4096))
    else:  # a trained net of another shape: other layer names
        other = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, layers=1, shortcut=0, widths=(8,),
                                                                   activations=("ReLU",)))
        write(generate(other), tmp_path / "other")
        loss, accuracy = model_outputs(other)
        result = train(TrainJob(workdir=tmp_path / "other", iterations=2, loss_blob=loss, accuracy_blobs=(accuracy,),
                                test_iterations=1, snapshot=Path("model.caffemodel")))
        assert result.ok and result.caffemodel is not None, result.error
        model = result.caffemodel
    out = CliRunner().invoke(cli, ["evaluate", "--deploy", str(tmp_path / DEPLOY), "--weights", str(model),
                                   "--data", str(dataset), "--k", "20"])
    assert out.exit_code == 2, out.output
    assert out.output.count("\n") == 1 and out.output.startswith("error: ")
    assert "not a caffemodel" in out.output or "holds no weights for the layers" in out.output
