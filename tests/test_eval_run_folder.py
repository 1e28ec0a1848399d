"""Reading a tuning run folder (ledger written through the tuner's own Ledger API), no Caffe."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from drnngen.cli import cli
from drnngen.codegen.config import load_config, to_mapping
from drnngen.errors import UserError
from drnngen.evaluation.compare import deploy_window
from drnngen.evaluation.report import PLOTS, plot_training_curve
from drnngen.evaluation.run_folder import genes_of, run_history, trained_net
from drnngen.tuner.candidate import TRAIN_LOSS_FILE
from drnngen.tuner.codec import decode, individual_class
from drnngen.tuner.fitness import Outcome
from drnngen.tuner.ledger import Ledger
from drnngen.tuner.params import TuneParams
from drnngen.tuner.space import IntRange, SearchSpace, space_mapping

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "small.yaml"
SPACE = SearchSpace(states=IntRange(2, 3), layers=IntRange(1, 2), shortcut=IntRange(0, 1),
                    activations=("ReLU", "TanH"), widths=(32, 64))
GENOTYPES = {"aaaa1111": [2, 1, 0, "ReLU", 32], "bbbb2222": [3, 2, 1, "TanH", "ReLU", 64, 32],
             "cccc3333": [2, 2, 0, "ReLU", "ReLU", 32, 64]}


def _run(tmp_path: Path) -> Path:
    base = load_config(EXAMPLE)
    params = TuneParams(data="data", generations=1, population=2, pc=0.8, pm=0.2, strategy="literal", seed=1,
                        iterations=10, epochs=None, mode="cpu", timeout_s=None, base=to_mapping(base),
                        space=space_mapping(SPACE))
    run = tmp_path / "run"
    ledger = Ledger.create(run, dataclasses.asdict(params))
    make = individual_class()
    outcomes = {"aaaa1111": (0.30, 2.0, "ok"), "bbbb2222": (0.45, 1.5, "ok"), "cccc3333": (None, None, "nan")}
    for gen, keys in ((0, ["aaaa1111", "bbbb2222"]), (1, ["cccc3333"])):
        ledger.generation_started(gen, [], None)
        for key in keys:
            acc, loss, status = outcomes[key]
            folder = run / "candidates" / key
            folder.mkdir(parents=True)
            (folder / "model.caffemodel").write_bytes(b"w")
            fit = acc + 1 / (1 + loss) if acc is not None and loss is not None else 0.0
            cfg = yaml.safe_dump(to_mapping(decode(GENOTYPES[key], base, SPACE)))
            ledger.record_candidate(key, GENOTYPES[key], cfg,
                                    Outcome(status, fit, acc, loss, {"accuracy": acc} if acc else {}, 10, 1.5 + gen,
                                            2.0, caffemodel=str(folder / "model.caffemodel")),
                                    random_seed=1, folder=folder, source="trained")
        population = []
        for key in ("aaaa1111", "bbbb2222") if gen == 0 else ("bbbb2222", "cccc3333"):
            ind = make(GENOTYPES[key])
            ind.fitness.values = (ledger.outcome(key).fitness,)  # type: ignore[union-attr]
            population.append(ind)
        ledger.generation_finished(gen, population, (3, [1, 2], None), {"gen": gen}, population[0])
    ledger.close()
    return run


def test_run_history_from_the_ledger(tmp_path: Path) -> None:
    history = run_history(_run(tmp_path))
    assert [c.key for c in history.candidates] == ["aaaa1111", "bbbb2222", "cccc3333"]
    assert history.best is not None and history.best.key == "bbbb2222"
    assert history.best.genes == {"states": 3, "layers": 2, "shortcut": 1, "activation_1": "TanH",
                                  "activation_2": "ReLU", "width_1": 64, "width_2": 32}
    assert history.candidates[2].fitness is None and history.candidates[2].status == "nan"
    assert sorted(history.populations) == [0, 1]
    assert [m.genes["states"] for m in history.populations[1]] == [3, 2]
    # No caffe.log: the curve is the final validation test from the ledger.
    assert history.best_curve.test["accuracy"] == ((10, 0.45),)
    assert history.best_curve.test["s2_loss"] == ((10, 1.5),)
    assert history.best_curve.train_loss == ()


def test_best_curve_uses_the_train_losses_the_tuner_recorded(tmp_path: Path) -> None:
    run = _run(tmp_path)
    (run / "candidates" / "bbbb2222" / TRAIN_LOSS_FILE).write_text("[[5, 2.5], [10, 1.25]]")
    curve = run_history(run).best_curve
    assert curve.train_loss == ((5, 2.5), (10, 1.25))
    assert curve.train_label == "train loss (last state, mean per interval)"


def test_trained_net_best_or_named(tmp_path: Path) -> None:
    run = _run(tmp_path)
    best = trained_net(run)
    assert best.label["candidate"] == "bbbb2222" and best.weights.name == "model.caffemodel"
    # The folder holds no deploy.prototxt: regenerated from the ledger's config (w = 3).
    assert best.deploy == run / "evaluation" / "bbbb2222" / "deploy.prototxt"
    assert deploy_window(best.deploy) == 3
    assert trained_net(run, "aaaa").label["candidate"] == "aaaa1111"
    with pytest.raises(UserError, match="did not train"):
        trained_net(run, "cccc")
    with pytest.raises(UserError, match="no candidate of"):
        trained_net(run, "zzzz")


def test_cli_report_writes_plots_and_markdown(tmp_path: Path) -> None:
    run = _run(tmp_path)
    result = CliRunner().invoke(cli, ["report", str(run)])
    assert result.exit_code == 0, result.output
    markdown = (run / "report" / "report.md").read_text()
    for name in PLOTS.values():
        assert (run / "report" / name).stat().st_size > 10_000
        assert f"]({name})" in markdown
    assert "| width_1 | 64 |" in markdown


def test_cli_report_not_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "error:" in result.output and "ledger.sqlite" in result.output


def test_genes_with_optional_lr_and_batch() -> None:
    space = dataclasses.replace(SPACE, base_lr=(0.1, 0.01), batch_size=(64, 128))
    assert genes_of([2, 1, 0, "ReLU", 32, 0.01, 128], space) == {
        "states": 2, "layers": 1, "shortcut": 0, "activation_1": "ReLU", "width_1": 32, "base_lr": 0.01,
        "batch_size": 128}


def test_best_curve_shows_every_validation_point_the_kept_snapshot_and_the_stop(tmp_path: Path) -> None:
    run = _run(tmp_path)
    ledger = Ledger.open(run)
    best = ledger.best()
    assert best is not None and best.key == "bbbb2222"
    points = ({"iteration": 4, "loss": 1.9, "accuracy": {"accuracy": 0.40}},
              {"iteration": 7, "loss": 1.5, "accuracy": {"accuracy": 0.45}},
              {"iteration": 10, "loss": 1.7, "accuracy": {"accuracy": 0.41}})
    outcome = dataclasses.replace(best.outcome, validations=points, best_iteration=7, stop_reason="patience")
    ledger.record_candidate(best.key, best.genotype, best.config, outcome, random_seed=1,
                            folder=Path(best.folder or ""), source="trained")
    ledger.close()
    history = run_history(run)
    curve = history.best_curve
    assert curve.test["accuracy"] == ((4, 0.40), (7, 0.45), (10, 0.41))
    assert curve.test["s2_loss"] == ((4, 1.9), (7, 1.5), (10, 1.7))
    assert curve.kept == 7 and curve.stopped == (10, "patience")
    figure = plot_training_curve(history)
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert "kept snapshot (iteration 7)" in labels and "stopped: patience (iteration 10)" in labels
