"""recommend + score against evaluate with real Caffe: on the test file of a session-rec-style
trio, the lists a trained net writes give the Recall@20 and MRR@20 `drnngen evaluate` gives on
prepare's test samples; `recommend RUN` takes the run's best net and dataset."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from drnngen.bind import bind_dataset
from drnngen.cli import cli
from drnngen.codegen.build import DEPLOY, generate, write
from drnngen.codegen.config import load_config, to_mapping
from drnngen.codegen.graph import model_outputs
from drnngen.data.manifest import load_manifest
from drnngen.data.readers import LogSpec
from drnngen.data.sessions import BuildOptions
from drnngen.evaluation.score import score
from drnngen.tuner.fitness import Outcome
from drnngen.tuner.ledger import Ledger
from drnngen.tuner.params import TuneParams
from drnngen.tuner.space import IntRange, SearchSpace, space_mapping
from tests.data_support import quiet, run_prepare, session_rec_trio

pytestmark = pytest.mark.caffe

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "small.yaml"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(trio folder, dataset, folder of a net trained on it: deploy.prototxt, model.caffemodel)."""
    from drnngen.runner import TrainJob, train

    root = tmp_path_factory.mktemp("recommend-caffe")
    session_rec_trio(root, seed=8)
    spec = LogSpec("gru4rec", root / "shop_train_tr.txt", valid=root / "shop_train_valid.txt",
                   test=root / "shop_test.txt")
    run_prepare(spec, root / "data", build=BuildOptions(target="next-item", max_items=100), window=3)
    cfg = bind_dataset(load_config(EXAMPLE), root / "data")
    cfg = dataclasses.replace(cfg, solver=dataclasses.replace(cfg.solver, max_iter=150, test_iter=1,
                                                              test_interval=150))
    net = root / "net"
    write(generate(cfg), net)
    loss, accuracy = model_outputs(cfg)
    result = train(TrainJob(workdir=net, iterations=150, loss_blob=loss, accuracy_blobs=(accuracy,),
                            test_iterations=1, snapshot=Path("model.caffemodel")))
    assert result.ok and result.caffemodel == net / "model.caffemodel", result.error
    return root, root / "data", net


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_recommend_and_score_give_evaluate_s_recall_and_mrr_at_20(trained: tuple[Path, Path, Path],
                                                                   tmp_path: Path) -> None:
    root, data, net = trained
    deploy, weights = net / DEPLOY, net / "model.caffemodel"
    _invoke("evaluate", "--deploy", str(deploy), "--weights", str(weights), "--data", str(data), "--k", "5,20",
            "-o", str(tmp_path))
    drnn = json.loads((tmp_path / "evaluation.json").read_text())["models"]["DRNN"]
    recs = tmp_path / "recs.csv"
    out = _invoke("recommend", "--deploy", str(deploy), "--weights", str(weights), "--data", str(data),
                  "--log", str(root / "shop_test.txt"), "-k", "20", "-o", str(recs), "-q")
    assert f"{drnn['samples']:,} lists of 20 items (DRNN)" in out
    ours = score(recs, LogSpec("gru4rec", root / "shop_test.txt"), "5,20", quiet)
    assert ours.positions == drnn["samples"] == load_manifest(data).test_samples
    for k in (5, 20):
        assert ours.hit_rate[k] == pytest.approx(drnn[f"recall@{k}"], abs=1e-9)
        assert ours.mrr[k] == pytest.approx(drnn[f"mrr@{k}"], abs=1e-9)
    printed = _invoke("score", str(recs), "--log", str(root / "shop_test.txt"), "-k", "20", "-q")
    assert f"{drnn['recall@20']:8.4f}  {drnn['mrr@20']:8.4f}" in printed
    # the scores are the net's softmax: a list's scores fall, and sum to at most 1
    first = recs.read_text().splitlines()[1].split(";")
    values = [float(v) for v in first[3].split(",")]
    assert values == sorted(values, reverse=True) and 0 < sum(values) <= 1 + 1e-5


def test_recommend_run_takes_the_run_s_best_net_and_dataset(trained: tuple[Path, Path, Path],
                                                            tmp_path: Path) -> None:
    root, data, net = trained
    base = load_config(EXAMPLE)
    space = SearchSpace(states=IntRange(3, 3), layers=IntRange(2, 2), shortcut=IntRange(1, 1),
                        activations=("ReLU", "TanH"), widths=(16, 32))
    params = TuneParams(data=str(data), generations=1, population=1, pc=0.8, pm=0.2, strategy="literal", seed=1,
                        iterations=150, epochs=None, mode="cpu", timeout_s=None, base=to_mapping(base),
                        space=space_mapping(space))
    run = tmp_path / "run"
    ledger = Ledger.create(run, dataclasses.asdict(params))
    ledger.generation_started(0, [], None)
    config = yaml.safe_dump(to_mapping(bind_dataset(base, data)))
    ledger.record_candidate("dddd4444", [3, 2, 1, "ReLU", "TanH", 32, 16], config,
                            Outcome("ok", 1.0, 0.2, 2.0, {"accuracy": 0.2}, 150, 1.0, 1.0,
                                    caffemodel=str(net / "model.caffemodel")),
                            random_seed=1, folder=net, source="trained")
    ledger.close()
    by_run, by_files = tmp_path / "run.csv", tmp_path / "files.csv"
    _invoke("recommend", str(run), "--log", str(root / "shop_test.txt"), "-o", str(by_run), "-q")
    _invoke("recommend", "--deploy", str(net / DEPLOY), "--weights", str(net / "model.caffemodel"),
            "--data", str(data), "--log", str(root / "shop_test.txt"), "-o", str(by_files), "-q")
    assert by_run.read_text() == by_files.read_text()
