"""Ledger, resume, cache and executors around a cheap deterministic trainer.

The trainer (tests/tuner_support.py) stands in for drnngen.runner.train only
here, to test the code around it quickly; tests/test_tuner_e2e.py does the
same with real Caffe.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from drnngen.cli import cli
from drnngen.runner import TrainJob, TrainResult
from drnngen.tuner import Resources, RunSummary, export_best, tune
from drnngen.tuner.executors import LocalExecutor
from drnngen.tuner.ledger import Ledger
from tests.data_support import TUNER_DATA
from tests.tuner_support import FakeTrainer, kill_when, run

ROOT = Path(__file__).resolve().parent.parent
DATASET = TUNER_DATA  # the `dataset` fixture (tests/conftest.py)


def population_of(summary: RunSummary) -> list[list[Any]]:
    return [list(i) for i in summary.result.population]


def test_ledger_holds_every_evaluation_and_the_best_is_its_maximum(tmp_path: Path, dataset: Path) -> None:
    trainer = FakeTrainer()
    summary = run(tmp_path, dataset, "r", trainer)
    ledger = Ledger.open(tmp_path / "r")
    rows = ledger.candidates()
    db = sqlite3.connect(tmp_path / "r" / "ledger.sqlite")
    events = db.execute("SELECT generation, key, source FROM evaluations").fetchall()
    assert len(events) == sum(r["evals"] for r in summary.records)  # every evaluation the loop asked for
    assert {k for _, k, _ in events} == {r.key for r in rows}
    assert len(trainer.trained) == len(rows) == len(set(trainer.trained))  # never trained twice
    assert [g for (g,) in db.execute("SELECT generation FROM generations ORDER BY generation")] == [0, 1, 2, 3]
    top = max(r.outcome.fitness for r in rows)
    assert summary.best is not None and summary.best.outcome.fitness == top
    assert summary.result.best.fitness.values[0] == top
    assert ledger.meta("status") == "finished"
    for row in rows:  # the metrics and seed are the candidate's own
        assert row.outcome.fitness == pytest.approx(row.outcome.accuracy + 1 / (1 + row.outcome.loss))
        assert f"random_seed: {row.random_seed}" in (Path(row.folder) / "solver.prototxt").read_text()


def test_same_seed_same_run_and_another_seed_differs(tmp_path: Path, dataset: Path) -> None:
    a = run(tmp_path, dataset, "a", FakeTrainer(), resources=Resources(workers=1))
    b = run(tmp_path, dataset, "b", FakeTrainer(), resources=Resources(workers=2))
    c = run(tmp_path, dataset, "c", FakeTrainer(), changes={"seed": 8})
    assert population_of(a) == population_of(b)  # 1 or 2 workers: the same run
    assert a.best is not None and b.best is not None and a.best.key == b.best.key
    assert population_of(a) != population_of(c)


@pytest.mark.parametrize("stop_after", [2, 5, 9])
def test_interrupt_then_resume_ends_where_an_uninterrupted_run_does(
    tmp_path: Path, dataset: Path, stop_after: int
) -> None:
    reference = run(tmp_path, dataset, "ref", FakeTrainer())
    stop = threading.Event()

    class Stopping(FakeTrainer):
        def __call__(self, job: TrainJob) -> TrainResult:
            if len(self.trained) + 1 >= stop_after:
                stop.set()  # what the CLI's Ctrl-C handler does
            return super().__call__(job)

    first = run(tmp_path, dataset, "r", Stopping(), stop=stop, resources=Resources(workers=1))
    assert first.result.interrupted and Ledger.open(tmp_path / "r").meta("status") == "interrupted"
    again = FakeTrainer()
    resumed = tune(tmp_path / "r", None, Resources(workers=2), trainer=again)
    assert not resumed.result.interrupted
    assert population_of(resumed) == population_of(reference)
    assert resumed.best is not None and reference.best is not None
    assert resumed.best.key == reference.best.key
    assert resumed.best.outcome.fitness == reference.best.outcome.fitness
    assert resumed.evaluated == reference.evaluated  # nothing trained twice across the interruption
    assert len(again.trained) == reference.evaluated - first.evaluated


def test_resume_can_extend_the_generations(tmp_path: Path, dataset: Path) -> None:
    run(tmp_path, dataset, "r", FakeTrainer(), changes={"generations": 1})
    longer = run(tmp_path, dataset, "ref", FakeTrainer(), changes={"generations": 3})
    extended = tune(tmp_path / "r", None, Resources(), trainer=FakeTrainer(), generations=3)
    assert population_of(extended) == population_of(longer)


SCRIPT = """
import sys, time
from pathlib import Path
from tests.tuner_support import FakeTrainer, run
run(Path(sys.argv[1]), Path(sys.argv[2]), "r", FakeTrainer(delay=0.15))
"""


def test_sigkill_mid_generation_then_resume_gives_the_uninterrupted_result(tmp_path: Path, dataset: Path) -> None:
    reference = run(tmp_path, dataset, "ref", FakeTrainer())
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path), str(dataset)], cwd=ROOT)

    def inside_generation_1(db: sqlite3.Connection) -> bool | None:
        done = db.execute("SELECT COUNT(*) FROM candidates").fetchone()[0]
        gens = db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
        return True if done >= 6 and gens >= 2 else None  # inside generation 1 or later

    kill_when(proc, tmp_path / "r" / "ledger.sqlite", inside_generation_1, timeout=120, poll=0.02, settle=0.0)
    killed = Ledger.open(tmp_path / "r")
    assert killed.meta("status") == "running" and 6 <= len(killed.candidates()) < reference.evaluated
    resumed = tune(tmp_path / "r", None, Resources(workers=2), trainer=FakeTrainer())
    assert population_of(resumed) == population_of(reference)
    assert resumed.best is not None and reference.best is not None
    assert (resumed.best.key, resumed.best.outcome.fitness) == (reference.best.key, reference.best.outcome.fitness)


def test_cache_is_shared_across_runs_and_keyed_by_the_seed(tmp_path: Path, dataset: Path) -> None:
    cache = Resources(workers=2, cache_dir=tmp_path / "cache")
    first = FakeTrainer()
    a = run(tmp_path, dataset, "a", first, resources=cache)
    second = FakeTrainer()
    b = run(tmp_path, dataset, "b", second, resources=cache)
    assert second.trained == [] and len(first.trained) == a.evaluated
    assert population_of(a) == population_of(b)
    assert {r.source for r in Ledger.open(tmp_path / "b").candidates()} == {"cache"}
    assert sum(r["cached"] for r in b.records) == sum(r["evals"] for r in b.records)
    export_best(tmp_path / "b", tmp_path / "best")  # weights of another run, kept by the cache
    assert (tmp_path / "best" / "model.caffemodel").read_bytes()
    third = FakeTrainer()
    run(tmp_path, dataset, "c", third, resources=cache, changes={"seed": 99})
    assert third.trained  # another seed, other Caffe seeds: not the same trainings


def test_failures_are_recorded_with_the_worst_fitness_and_the_run_goes_on(tmp_path: Path, dataset: Path) -> None:
    summary = run(tmp_path, dataset, "r", FakeTrainer(fail_width=32))
    rows = Ledger.open(tmp_path / "r").candidates()
    failed = [r for r in rows if r.outcome.status == "failed"]
    assert failed and all(r.outcome.fitness == 0.0 and "deliberately" in (r.outcome.error or "") for r in failed)
    assert all(32 in r.genotype[3 + r.genotype[1]:] for r in failed)
    assert sum(r["failed"] for r in summary.records) >= len(failed)
    assert summary.best is not None and summary.best.outcome.ok


def test_export_best_writes_config_prototxt_and_weights(tmp_path: Path, dataset: Path) -> None:
    summary = run(tmp_path, dataset, "r", FakeTrainer())
    result = CliRunner().invoke(cli, ["best", str(tmp_path / "r"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["best.json", "config.yaml", "deploy.prototxt", "model.caffemodel", "net.prototxt",
                     "solver.prototxt"]
    assert summary.best is not None
    folder = Path(summary.best.folder or "")
    assert (tmp_path / "out" / "net.prototxt").read_text() == (folder / "net.prototxt").read_text()
    assert json.loads((tmp_path / "out" / "best.json").read_text())["fitness"] == summary.best.outcome.fitness


@pytest.mark.parametrize(("args", "message"), [
    (["--iters", "5"], "--data: give the prepared dataset"),
    (["--data", "d", "--iters", "5", "--epochs", "1"], "--iters N or --epochs E"),
    (["--resume", "r", "--seed", "3"], "--resume takes its settings from the run's ledger; drop --seed"),
    (["--resume", "nowhere"], "no ledger.sqlite here"),
    (["--data", "d", "--iters", "5", "--gpus", "0,x"], "--gpus: expected comma-separated"),
])
def test_cli_mistakes_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["tune", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.startswith("error: ")


def test_tune_refuses_a_folder_that_holds_a_run(
    tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(tmp_path, dataset, "r", FakeTrainer(), changes={"generations": 0})
    # The refusal is the ledger's, not Caffe's: pass the CLI's check for a local Caffe (tests/test_tuner_cli.py).
    monkeypatch.setattr("drnngen.cli.tune._require_local_caffe", lambda mode: None)
    result = CliRunner().invoke(cli, ["tune", "--data", str(dataset), "--iters", "5", "-o", str(tmp_path / "r")])
    assert result.exit_code == 2 and "already holds a run; continue it with --resume" in result.output


def test_local_executor_keeps_order_pins_gpus_and_stops() -> None:
    with LocalExecutor(workers=2, gpus=(0, 1)) as pool:
        busy: set[int] = set()
        lock = threading.Lock()

        def job(item: int, gpu: int | None) -> tuple[int, int | None]:
            with lock:
                assert gpu not in busy  # one training per GPU at a time
                busy.add(gpu or 0)
            time.sleep(0.01)
            with lock:
                busy.discard(gpu or 0)
            return item * 2, gpu

        results = dict(pool.imap_unordered(job, list(range(10))))
        assert [results[i][0] for i in range(10)] == [2 * i for i in range(10)]
        assert {gpu for _, gpu in results.values()} == {0, 1}
        assert pool.map(lambda x: x + 1, [3, 1, 2]) == [4, 2, 3]
        stop = threading.Event()

        def stopping(item: int, gpu: int | None) -> int:
            stop.set()
            return item

        assert len(list(pool.imap_unordered(stopping, list(range(20)), stop=stop))) <= 2


def test_a_moved_run_folder_reads_its_own_weights(tmp_path: Path, dataset: Path) -> None:
    import shutil

    run(tmp_path, dataset, "r", FakeTrainer(), changes={"generations": 1})
    with sqlite3.connect(tmp_path / "r" / "ledger.sqlite") as db:
        stored = db.execute("SELECT folder, caffemodel FROM candidates WHERE status = 'ok'").fetchall()
    assert stored and all(not Path(f).is_absolute() and not Path(m).is_absolute() for f, m in stored)
    shutil.move(tmp_path / "r", tmp_path / "moved")
    best = Ledger.open(tmp_path / "moved").best()
    assert best is not None and best.folder is not None and best.outcome.caffemodel is not None
    assert Path(best.folder).is_relative_to(tmp_path / "moved") and Path(best.outcome.caffemodel).is_file()
    export_best(tmp_path / "moved", tmp_path / "out")
    assert (tmp_path / "out" / "model.caffemodel").read_bytes() == Path(best.outcome.caffemodel).read_bytes()


def test_an_export_cut_short_leaves_no_best_json_and_no_temp_file(
    tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import drnngen.tuner.export as export

    run(tmp_path, dataset, "r", FakeTrainer(), changes={"generations": 0})
    out = tmp_path / "best"
    export_best(tmp_path / "r", out)
    assert (out / "best.json").is_file() and (out / "model.caffemodel").is_file()
    real_write, calls = export.write, []

    def dying(files: dict[str, str], folder: Path) -> list[Path]:  # the process dies after the weights
        calls.append(files)
        if "best.json" in files:
            raise KeyboardInterrupt
        return real_write(files, folder)

    monkeypatch.setattr(export, "write", dying)
    with pytest.raises(KeyboardInterrupt):
        export_best(tmp_path / "r", out)
    assert not (out / "best.json").exists()  # no description of an export that did not finish
    assert not list(out.glob(".*"))  # no temporary file left behind
    monkeypatch.setattr(export, "write", real_write)
    export_best(tmp_path / "r", out)  # `drnngen best RUN` again completes it
    assert (out / "best.json").is_file()


@pytest.mark.parametrize("command", [["best", "{run}"], ["report", "{run}"], ["tune", "--resume", "{run}"]])
def test_a_damaged_ledger_is_one_line(tmp_path: Path, dataset: Path, command: list[str]) -> None:
    run(tmp_path, dataset, "r", FakeTrainer(), changes={"generations": 1})
    path = tmp_path / "r" / "ledger.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file
    page = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    data = bytearray(path.read_bytes())
    assert len(data) > 2 * page
    last = len(data) - page  # the meta table (schema version, params) sits in an early page: spare it
    for offset in range(last, last + 8):  # flip the b-tree header of the last page (candidates, generations)
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    result = CliRunner().invoke(cli, [part.format(run=tmp_path / "r") for part in command])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "not a complete ledger" in result.output
    assert "Traceback" not in result.output


def test_a_full_disk_while_creating_the_ledger_leaves_no_ledger(
    tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import drnngen.tuner.ledger as ledger_module
    from drnngen.errors import UserError
    from tests.tuner_support import params

    real_connect = sqlite3.connect

    class Full:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def executescript(self, script: str) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        def close(self) -> None:
            self.db.close()

    monkeypatch.setattr(ledger_module.sqlite3, "connect", lambda *a, **k: Full(real_connect(*a, **k)))
    with pytest.raises(UserError, match=r"cannot create the ledger .*database or disk is full.*nothing was written"):
        tune(tmp_path / "r", params(dataset), Resources(), trainer=FakeTrainer())
    assert [p.name for p in (tmp_path / "r").iterdir() if "ledger" in p.name] == []
    monkeypatch.setattr(ledger_module.sqlite3, "connect", real_connect)
    summary = tune(tmp_path / "r", params(dataset, generations=0), Resources(), trainer=FakeTrainer())
    assert summary.best is not None  # the same folder takes a new run: nothing half-made stands in the way
