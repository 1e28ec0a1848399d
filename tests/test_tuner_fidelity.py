"""Successive halving (`tune --fidelity successive-halving`) and `--rescore`.

The loop's decisions are checked with a stand-in trainer; that a promoted
candidate continues its training exactly (the weights of one uninterrupted
training at the end), and that a killed run resumes losing at
most the trainings in flight, with real Caffe.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from drnngen.cli import cli
from drnngen.errors import UserError
from drnngen.runner import TrainJob, TrainResult, forward, state_weights, train
from drnngen.tuner import Resources, tune
from drnngen.tuner.candidate import Candidate
from drnngen.tuner.fidelity import RESCORE, RUNG, Schedule, Training, successive_halving
from drnngen.tuner.fitness import Outcome, outcome_of
from drnngen.tuner.gentune import Interrupted
from drnngen.tuner.ledger import LEDGER_FILE, SCHEMA_VERSION, Ledger
from drnngen.vocabulary import Status
from tests.data_support import TUNER_DATA
from tests.tuner_support import FakeTrainer, TuneSetup, kill_when, params, run

ROOT = Path(__file__).resolve().parent.parent
DATASET = TUNER_DATA  # the `dataset` fixture (tests/conftest.py)
TUNE_GENERATIONS = 1  # the `setup` fixture
HALVING = ["--fidelity", "successive-halving", "--eta", "3", "--rungs", "3"]


def test_budgets_grow_by_eta_up_to_the_full_budget() -> None:
    assert Schedule(3, 3).budgets(27) == (3, 9, 27)
    assert Schedule(3, 3).budgets(270) == (30, 90, 270)
    assert Schedule(2, 4).budgets(10) == (2, 3, 5, 10)
    assert Schedule(3, 3).budgets(2) == (1, 2)  # too small to split three ways: no two equal rungs
    assert Schedule(3, 3).trainings(9, 27) == 9 + 3 + 1
    for eta, rungs in ((1, 3), (3, 1)):
        with pytest.raises(UserError):
            Schedule(eta, rungs)


def _candidates(n: int, iterations: int = 27) -> list[Candidate]:
    return [Candidate((i,), f"key{i}", None, {}, i, iterations, 1) for i in range(n)]  # type: ignore[arg-type]


class _Rungs:
    """A `train` for successive_halving: a fitness per (candidate, rung), a model per training."""

    def __init__(self, fitness: Mapping[tuple[str, int], float]) -> None:
        self.fitness = fitness
        self.asked: list[list[Training]] = []

    def __call__(self, trainings: Sequence[Training]) -> dict[str, Outcome]:
        self.asked.append(list(trainings))
        return {t.key: Outcome(Status.OK, self.fitness[t.owner, t.rung or 0], iterations=t.stop - t.start,
                               solver_seconds=1.0, caffemodel=f"{t.key}.caffemodel", state=_state(t))
                for t in trainings}


def _state(t: Training) -> str | None:
    return None if t.saved_state is None else f"{t.key}/{t.saved_state}"


def test_successive_halving_promotes_exactly_the_top_third_from_their_snapshots() -> None:
    candidates = _candidates(9)
    rng = np.random.default_rng(3)
    fitness = {(c.key, r): float(rng.random()) for c in candidates for r in range(3)}
    trainer = _Rungs(fitness)
    finals = successive_halving(candidates, Schedule(3, 3), trainer)

    first, second, third = trainer.asked
    assert [t.owner for t in first] == [c.key for c in candidates] and {t.state for t in first} == {None}
    top3 = sorted((c.key for c in candidates), key=lambda k: -fitness[k, 0])[:3]
    assert [t.owner for t in second] == top3
    assert [t.owner for t in third] == sorted(top3, key=lambda k: -fitness[k, 1])[:1]
    states = {t.owner: _state(t) for t in first}
    assert [t.state for t in second] == [states[k] for k in top3]  # each continues its own training
    assert third[0].state == next(_state(t) for t in second if t.owner == third[0].owner)
    assert [t.keep_state for t in (first[0], second[0], third[0])] == [True, True, False]  # none after the last
    assert [(t.start, t.stop) for t in (first[0], second[0], third[0])] == [(0, 3), (3, 9), (9, 27)]
    reached = {t.owner: t.rung for batch in trainer.asked for t in batch}
    for c in candidates:  # the fitness of the highest rung reached, the seconds of every rung
        r = reached[c.key]
        assert r is not None and finals[c.key].fitness == fitness[c.key, r]
        assert finals[c.key].solver_seconds == r + 1 and finals[c.key].iterations == (3, 9, 27)[r]


def test_a_failed_rung_is_not_promoted_and_a_small_batch_still_reaches_the_full_budget() -> None:
    candidates = _candidates(2)
    fitness = {(c.key, r): 0.5 for c in candidates for r in range(3)}

    def train(trainings: Sequence[Training]) -> dict[str, Outcome]:
        return {t.key: Outcome(Status.FAILED if t.owner == "key0" else Status.OK, 0.0 if t.owner == "key0"
                               else fitness[t.owner, t.rung or 0], iterations=t.stop - t.start, state=_state(t))
                for t in trainings}

    finals = successive_halving(candidates, Schedule(3, 3), train)
    assert finals["key0"].status == Status.FAILED and finals["key1"].iterations == 27  # 2 // 3 = 0: one goes on


def test_a_rung_without_a_saved_state_is_not_promoted() -> None:
    """A rung whose loss went NaN after its best point is ok but saved no state: the
    next best goes on instead."""
    candidates = _candidates(3)
    fitness = {"key0": 0.9, "key1": 0.5, "key2": 0.1}

    def train(trainings: Sequence[Training]) -> dict[str, Outcome]:
        return {t.key: Outcome(Status.OK, fitness[t.owner], iterations=t.stop - t.start,
                               state=None if t.owner == "key0" else _state(t)) for t in trainings}

    finals = successive_halving(candidates, Schedule(3, 3), train)
    assert finals["key0"].iterations == 3 and finals["key1"].iterations == 27


def test_a_missing_rung_result_interrupts_before_anything_is_decided() -> None:
    def train(trainings: Sequence[Training]) -> dict[str, Outcome]:
        return {t.key: Outcome(Status.OK, 0.5) for t in trainings[:-1]}

    with pytest.raises(Interrupted):
        successive_halving(_candidates(3), Schedule(3, 3), train)


def test_the_ledger_records_every_rung_and_the_ga_sees_the_highest(tmp_path: Path, dataset: Path) -> None:
    trainer = FakeTrainer()
    changes = {"fidelity": "successive-halving", "iterations": 27, "population": 9, "generations": 2}
    summary = run(tmp_path, dataset, "sh", trainer, changes=changes)
    ledger = Ledger.open(tmp_path / "sh")
    rungs = ledger.trainings()
    assert len(trainer.trained) == len(rungs) and {t.kind for t in rungs} == {RUNG}
    gen0 = [t for t in rungs if t.generation == 0]
    assert [sum(t.rung == r for t in gen0) for r in range(3)] == [9, 3, 1]
    rows = {r.key: r for r in ledger.candidates()}
    for key in {t.candidate for t in rungs}:
        top = max((t for t in rungs if t.candidate == key), key=lambda t: t.rung or 0)
        assert rows[key].outcome.fitness == top.outcome.fitness and rows[key].outcome.iterations == top.budget
    for member in ledger.populations()[0]:
        assert member["fitness"] == rows[member["key"]].outcome.fitness
    again = run(tmp_path, dataset, "sh2", FakeTrainer(), changes=changes)
    assert [list(i) for i in again.result.population] == [list(i) for i in summary.result.population]


def test_rungs_come_from_the_cache_in_a_second_run(tmp_path: Path, dataset: Path) -> None:
    changes = {"fidelity": "successive-halving", "iterations": 27, "population": 6, "generations": 1}
    resources = Resources(workers=2, cache_dir=tmp_path / "cache")
    first = FakeTrainer()
    run(tmp_path, dataset, "a", first, changes=changes, resources=resources)
    second = FakeTrainer()
    run(tmp_path, dataset, "b", second, changes=changes, resources=resources)
    assert first.trained and not second.trained
    assert {t.source for t in Ledger.open(tmp_path / "b").trainings()} == {"cache"}
    assert {r.source for r in Ledger.open(tmp_path / "b").candidates()} == {"cache"}
    records = Ledger.open(tmp_path / "b").records()
    assert [r["cached"] for r in records] == [r["evals"] for r in records]  # the logbook counts them as cached


def test_rescore_keeps_every_score_and_ranks_by_the_mean(tmp_path: Path, dataset: Path) -> None:
    trainer = FakeTrainer()
    summary = run(tmp_path, dataset, "r", trainer, changes={"rescore": 2, "rescore_top": 3})
    ledger = Ledger.open(tmp_path / "r")
    scores = ledger.scores()
    rescores = [t for t in ledger.trainings() if t.kind == RESCORE]
    assert len(rescores) == 6 and len(scores) == 3 and all(len(s) == 3 for s in scores.values())
    ok = sorted((r for r in ledger.candidates() if r.outcome.ok), key=lambda r: -r.outcome.fitness)
    assert set(scores) == {r.key for r in ok[:3]}
    assert {t.random_seed for t in rescores}.isdisjoint({r.random_seed for r in ok})  # other Caffe seeds
    assert summary.best is not None and summary.best.key == max(scores, key=lambda k: sum(scores[k]))
    n = len(trainer.trained)
    tune(tmp_path / "r", None, Resources(workers=1), trainer=trainer)  # a resume retrains nothing
    assert len(trainer.trained) == n


def test_a_schema_2_ledger_reads_as_a_run_without_rungs(tmp_path: Path, dataset: Path) -> None:
    run(tmp_path, dataset, "old", FakeTrainer(), changes={"generations": 0})
    path = tmp_path / "old" / LEDGER_FILE
    db = sqlite3.connect(path)
    with db:
        db.execute("DROP TABLE trainings")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    db.close()  # the last connection: SQLite folds its WAL back in
    before = path.read_bytes()
    reader = Ledger.open(tmp_path / "old", read_only=True)  # `best`, `report`, `evaluate`: nothing written
    assert reader.trainings() == [] and reader.scores() == {} and reader.best() is not None
    reader.close()
    assert path.read_bytes() == before
    ledger = Ledger.open(tmp_path / "old")  # a run (--resume) upgrades it in place
    assert ledger.meta("schema_version") == SCHEMA_VERSION == 3
    assert ledger.trainings() == [] and ledger.best() is not None


def test_halving_options_are_checked_and_fixed_at_the_start(tmp_path: Path, dataset: Path) -> None:
    base = ["tune", "--data", str(dataset), "--iters", "5", "--no-cache", "-o", str(tmp_path / "x")]
    for extra in (["--eta", "1"], ["--rungs", "1"], ["--fidelity", "quarter"], ["--rescore", "-1"]):
        result = CliRunner().invoke(cli, [*base, *extra])
        assert result.exit_code == 2 and result.output.startswith("error: "), result.output
        assert "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["tune", "--resume", str(tmp_path / "x"), "--eta", "2"])
    assert result.exit_code == 2 and "drop --eta" in result.output
    with pytest.raises(UserError, match="fidelity"):
        tune(tmp_path / "bad", params(dataset, fidelity="quarter"), Resources(), trainer=FakeTrainer())


# --- real Caffe -----------------------------------------------------------------------------------


class _StartWeights:
    """Real Caffe training that first records the weights each job starts from: a twin
    of the job (same files and state, learning rate and momentum 0, one step) saves
    them as its snapshot. Keeps each job too."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.starts: dict[tuple[str, str], Path] = {}  # (folder, snapshot name) -> start weights
        self.jobs: dict[tuple[str, str], TrainJob] = {}

    def __call__(self, job: TrainJob) -> TrainResult:
        twin = self.scratch / f"{len(self.starts)}"
        shutil.copytree(job.workdir, twin)
        solver = twin / job.solver
        text = re.sub(r"base_lr: [^\n]+", "base_lr: 0", solver.read_text())
        solver.write_text(re.sub(r"momentum: [^\n]+", "momentum: 0", text))  # no step from the history either
        started = train(dataclasses.replace(job, workdir=twin, iterations=1, snapshot=Path("start.caffemodel"),
                                            patience=0, validate_every=0, save_state=None))
        assert started.ok and started.caffemodel is not None, started.error
        self.starts[str(job.workdir), str(job.snapshot)] = started.caffemodel
        self.jobs[str(job.workdir), str(job.snapshot)] = job
        return train(job)


def _weights(folder: Path, model: Path) -> dict[str, tuple[np.ndarray, ...]]:
    return dict(forward(folder / "net.prototxt", "test", [], weights=model, with_params=True).params)


def _same(a: Mapping[str, Sequence[np.ndarray]], b: Mapping[str, Sequence[np.ndarray]]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(x, y) for k in a for x, y in zip(a[k], b[k], strict=True))


@pytest.mark.caffe
@pytest.mark.slow
def test_promoted_candidates_continue_their_training_exactly(tmp_path: Path, setup: TuneSetup) -> None:
    _, data, _ = setup
    trainer = _StartWeights(tmp_path / "twins")
    base = params(data).base
    base["solver"]["snapshot_prefix"] = "snapshots/drnn"  # Caffe's snapshot needs the folder made first
    changes = {"fidelity": "successive-halving", "iterations": 27, "population": 9, "generations": 0, "base": base}
    run(tmp_path, data, "sh", trainer, changes=changes, resources=Resources(workers=1))
    ledger = Ledger.open(tmp_path / "sh")
    rungs = ledger.trainings()
    by_rung = [[t for t in rungs if t.rung == r] for r in range(3)]
    assert [len(b) for b in by_rung] == [9, 3, 1]
    ranked = sorted(by_rung[0], key=lambda t: -t.outcome.fitness)
    assert [t.candidate for t in by_rung[1]] == [t.candidate for t in ranked[:3]]  # exactly the top third
    assert [t.candidate for t in by_rung[2]] == [max(by_rung[1], key=lambda t: t.outcome.fitness).candidate]
    for later in (*by_rung[1], *by_rung[2]):
        before = next(t for t in rungs if t.candidate == later.candidate and t.rung == (later.rung or 0) - 1)
        assert before.outcome.state is not None
        folder = Path(before.outcome.caffemodel or "").parent
        start = trainer.starts[str(folder), f"rung{later.rung}.caffemodel"]
        saved = _weights(folder, state_weights(before.outcome.state or ""))
        assert _same(_weights(folder, start), saved)  # the next rung starts from the weights the last ended with
        scratch = trainer.starts[str(folder), "rung0.caffemodel"]
        assert not _same(_weights(folder, scratch), saved)  # ... which training had changed
    # ... and goes on as if it had never stopped: the last rung ends with the weights of
    # one uninterrupted training to the full budget (no dropout here: bit for bit).
    top = by_rung[2][0]
    assert top.outcome.state is None  # nothing continues the last rung
    folder = Path(top.outcome.caffemodel or "").parent
    whole = tmp_path / "whole"
    shutil.copytree(folder, whole)
    first = trainer.jobs[str(folder), "rung0.caffemodel"]
    result = train(dataclasses.replace(first, workdir=whole, iterations=27, save_state=None,
                                       snapshot=Path("whole.caffemodel")))
    assert result.ok and result.caffemodel is not None, result.error
    assert _same(_weights(folder, Path(top.outcome.caffemodel or "")), _weights(whole, result.caffemodel))
    assert top.outcome.fitness == pytest.approx(outcome_of(result, first.accuracy_blobs[0]).fitness, abs=1e-6)


@pytest.mark.caffe
@pytest.mark.slow
def test_sigkill_in_the_middle_of_a_rung_loses_at_most_the_trainings_in_flight(setup: TuneSetup) -> None:
    root, _, args = setup
    args = [a if a != "4" else "9" for a in args]  # population 9: rungs of 9, 3 and 1
    reference = root / "sh-ref"
    result = CliRunner().invoke(cli, [*args, *HALVING, "-o", str(reference)])
    assert result.exit_code == 0, result.output
    killed = root / "sh-killed"
    command = [sys.executable, "-c", "from drnngen.cli import main; main()", *args, *HALVING, "-o", str(killed)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def mid_second_rung(db: sqlite3.Connection) -> list[Any] | None:
        """The trainings recorded, once one of generation 0's second rung is among them."""
        done = db.execute("SELECT key, evaluated_at FROM trainings").fetchall()
        rung1 = db.execute("SELECT COUNT(*) FROM trainings WHERE rung = 1").fetchone()[0]
        return done if rung1 >= 1 else None

    done = kill_when(proc, killed / LEDGER_FILE, mid_second_rung) or []
    with sqlite3.connect(killed / LEDGER_FILE) as db:
        recorded = dict(db.execute("SELECT key, evaluated_at FROM trainings").fetchall())
    assert len(recorded) >= len(done) >= 10 and Ledger.open(killed).meta("status") == "running"
    result = CliRunner().invoke(cli, ["tune", "--resume", str(killed), "--no-cache"])
    assert result.exit_code == 0, result.output
    after = {t.key: t for t in Ledger.open(killed).trainings()}
    with sqlite3.connect(killed / LEDGER_FILE) as db:
        stamps = dict(db.execute("SELECT key, evaluated_at FROM trainings").fetchall())
    assert all(stamps[key] == at for key, at in recorded.items())  # nothing recorded was trained again
    assert set(after) == {t.key for t in Ledger.open(reference).trainings()}
    resumed, uninterrupted = Ledger.open(killed).best(), Ledger.open(reference).best()
    assert resumed is not None and uninterrupted is not None and resumed.key == uninterrupted.key
    assert resumed.outcome.fitness == pytest.approx(uninterrupted.outcome.fitness, abs=1e-9)
