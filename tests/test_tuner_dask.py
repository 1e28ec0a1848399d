"""`drnngen tune --scheduler` on a real Dask cluster (scheduler + 2 worker
processes on loopback) with real Caffe: the same ledger as the local pool, a
worker killed mid-training, the scheduler lost and the run resumed.

Tiny nets, 30 iterations each; one cluster for the module.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask
import pytest
import yaml
from click.testing import CliRunner

from drnngen.cli import cli
from drnngen.codegen.config import load_config
from drnngen.errors import EnvironmentProblem
from drnngen.tuner.candidate import Budget, Setting, TuneData, prepare, train_job
from drnngen.tuner.dask_executor import DaskExecutor
from drnngen.tuner.payload import run_training
from drnngen.tuner.space import parse_space
from drnngen.vocabulary import candidate_folder
from tests.dask_support import LoopbackCluster
from tests.golden_tool import EXAMPLES
from tests.tuner_support import TUNE_SPACE, TuneSetup, peek_ledger

ROOT = Path(__file__).resolve().parent.parent
ENV = {
    "OPENBLAS_NUM_THREADS": "1",  # two Caffe trainings on two cores, not four threads each
    # A task may lose one worker and is retried; a second loss makes it a KilledWorker.
    "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
}
Contents = dict[str, Any]
TUNE_GENERATIONS = 2  # the `setup` fixture (tests/conftest.py)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackCluster]:
    with LoopbackCluster(tmp_path_factory.mktemp("cluster"), workers=2, env=ENV) as running:
        yield running


@pytest.fixture(scope="module")
def reference(setup: TuneSetup) -> Contents:
    """The same run on the local pool."""
    root, _, args = setup
    result = CliRunner().invoke(cli, [*args, "-o", str(root / "local"), "--workers", "2"])
    assert result.exit_code == 0, result.output
    return ledger_contents(root / "local")


def ledger_contents(run: Path) -> Contents:
    """What decides a run's result, as the ledger holds it (no times, no paths)."""
    with sqlite3.connect(run / "ledger.sqlite") as db:
        candidates = {key: rest for key, *rest in db.execute(
            "SELECT key, genotype, status, fitness, accuracy, loss, metrics, iterations, random_seed, error "
            "FROM candidates")}
        evaluations = db.execute("SELECT generation, position, key FROM evaluations ORDER BY id").fetchall()
        sources = db.execute("SELECT source FROM evaluations ORDER BY id").fetchall()
        generations = db.execute(
            "SELECT generation, population_start, population_end, record FROM generations ORDER BY generation"
        ).fetchall()
        status = json.loads(db.execute("SELECT value FROM meta WHERE key = 'status'").fetchone()[0])
    return {"candidates": candidates, "evaluations": evaluations, "sources": sources,
            "generations": generations, "status": status}


def dask_tasks(cluster: LoopbackCluster) -> set[str]:
    """Keys of the drnngen tasks the scheduler has seen finish (its transition log)."""
    def finished(dask_scheduler: Any) -> list[str]:
        return [str(t[0]) for t in dask_scheduler.transition_log
                if str(t[0]).startswith("drnngen-eval-") and t[2] == "memory"]

    return set(cluster.client.run_on_scheduler(finished))


def start_tune(args: list[str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-c", "from drnngen.cli import main; main()", *args]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **ENV})


def wait_until(condition: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}: {proc.communicate()[0]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def trained(run: Path) -> int:
    try:
        with peek_ledger(run / "ledger.sqlite") as db:
            return int(db.execute("SELECT COUNT(*) FROM candidates").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.mark.caffe
@pytest.mark.slow
def test_a_run_through_the_scheduler_writes_the_ledger_of_the_local_pool(
    setup: TuneSetup, cluster: LoopbackCluster, reference: Contents
) -> None:
    root, _, args = setup
    before = dask_tasks(cluster)
    result = CliRunner().invoke(cli, [*args, "-o", str(root / "dask"), "--scheduler", cluster.address])
    assert result.exit_code == 0, result.output
    contents = ledger_contents(root / "dask")
    assert contents == reference
    assert contents["status"] == "finished" and len(contents["generations"]) == 3
    assert all(row[1] == "ok" for row in contents["candidates"].values())
    # every training ran as one Dask task, none twice
    assert len(dask_tasks(cluster) - before) == len(contents["candidates"])


def rungs(run: Path) -> set[tuple[Any, ...]]:
    """Every rung of a successive-halving run, as the ledger holds it (no times, no paths)."""
    with sqlite3.connect(run / "ledger.sqlite") as db:
        return set(db.execute("SELECT key, candidate, kind, rung, budget, random_seed, fitness, generation"
                              " FROM trainings"))


@pytest.mark.caffe
@pytest.mark.slow
def test_successive_halving_through_the_scheduler_trains_the_rungs_of_the_local_pool(
    setup: TuneSetup, cluster: LoopbackCluster
) -> None:
    root, _, args = setup
    halving = [*args, "--fidelity", "successive-halving", "--eta", "2", "--rungs", "3"]
    local = CliRunner().invoke(cli, [*halving, "-o", str(root / "sh-local"), "--workers", "2"])
    assert local.exit_code == 0, local.output
    before = dask_tasks(cluster)
    remote = CliRunner().invoke(cli, [*halving, "-o", str(root / "sh-dask"), "--scheduler", cluster.address])
    assert remote.exit_code == 0, remote.output
    expected = rungs(root / "sh-local")
    assert rungs(root / "sh-dask") == expected and {r[3] for r in expected} == {0, 1, 2}
    assert ledger_contents(root / "sh-dask")["candidates"] == ledger_contents(root / "sh-local")["candidates"]
    assert len(dask_tasks(cluster) - before) == len(expected)  # one Dask task per rung


@pytest.mark.caffe
@pytest.mark.slow
def test_a_worker_killed_mid_training_loses_and_duplicates_nothing(
    setup: TuneSetup, cluster: LoopbackCluster, reference: Contents
) -> None:
    root, _, args = setup
    run = root / "killed-worker"
    pids = cluster.worker_pids()
    proc = start_tune([*args, "-o", str(run), "--scheduler", cluster.address])
    victim: list[str] = []

    def a_worker_is_training() -> bool:
        if trained(run) < 1:  # some results in: Caffe is warm, the kill lands mid-run
            return False
        victim.extend(w for w, keys in cluster.executing().items() if any(k.startswith("drnngen-eval-") for k in keys))
        return bool(victim)

    wait_until(a_worker_is_training, proc, "a worker was training")
    os.kill(pids[victim[0]], signal.SIGKILL)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output
    contents = ledger_contents(run)
    assert contents == reference  # every evaluation once, with the fitness of an undisturbed run
    with sqlite3.connect(run / "ledger.sqlite") as db:
        positions = db.execute("SELECT generation, position, COUNT(*) FROM evaluations GROUP BY 1, 2").fetchall()
    assert all(count == 1 for _, _, count in positions)
    assert pids[victim[0]] not in cluster.worker_pids().values()  # it did die (its nanny restarted it)


@pytest.mark.caffe
@pytest.mark.slow
def test_scheduler_lost_mid_run_then_resume_ends_as_an_undisturbed_run(
    setup: TuneSetup, reference: Contents
) -> None:
    root, _, args = setup
    run = root / "lost-scheduler"
    with LoopbackCluster(root / "doomed", workers=2, env=ENV) as doomed:
        proc = start_tune([*args, "-o", str(run), "--scheduler", doomed.address])
        wait_until(lambda: trained(run) >= 2, proc, "two trainings were recorded")
        doomed.kill_scheduler()
        output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 1, output
    assert output.strip().splitlines()[-1] == (
        f"error: --scheduler {doomed.address}: lost the connection to the Dask scheduler; "
        f"the ledger has every finished training: drnngen tune --resume {run}")
    assert "Traceback" not in output
    interrupted = ledger_contents(run)
    assert interrupted["status"] == "running" and len(interrupted["candidates"]) >= 2
    result = CliRunner().invoke(cli, ["tune", "--resume", str(run), "--workers", "2"])
    assert result.exit_code == 0, result.output
    resumed, undisturbed = ledger_contents(run), dict(reference)
    # read back instead of trained: the sources and the logbook's cached counts differ, nothing else
    for contents in (resumed, undisturbed):
        contents.pop("sources")
        contents["generations"] = [row[:3] for row in contents["generations"]]
    assert resumed == undisturbed


@pytest.mark.slow
def test_results_stream_back_in_any_order_and_stop_skips_what_has_not_started(cluster: LoopbackCluster) -> None:
    with DaskExecutor(cluster.address) as pool:
        assert pool.workers == 2
        assert pool.map(lambda x: x + 1, [3, 1, 2]) == [4, 2, 3]  # DEAP's toolbox.map
        results = dict(pool.imap_unordered(lambda x, gpu: (x * 2, gpu), list(range(6))))
        assert results == {i: (2 * i, None) for i in range(6)}
        stop = threading.Event()
        seen = []
        for index, _ in pool.imap_unordered(lambda x, gpu: time.sleep(0.5), list(range(12)), stop=stop):
            stop.set()  # what the CLI's Ctrl-C does
            seen.append(index)
        # the first, the other worker's, and at most one each started before the stop reached the cluster
        assert 1 <= len(seen) <= 4


@pytest.mark.slow
def test_a_task_that_keeps_killing_its_worker_becomes_a_failed_result(cluster: LoopbackCluster) -> None:
    with DaskExecutor(cluster.address, on_lost=lambda message: ("lost", message)) as pool:
        # two items, one per worker: a worker's death counts against every task it holds
        results = dict(pool.imap_unordered(lambda x, gpu: os._exit(1) if x == 1 else ("ok", x), [1, 0]))
    assert results[1] == ("ok", 0)
    assert results[0][0] == "lost" and "died" in results[0][1]
    cluster.client.wait_for_workers(2, timeout=60)  # the nannies restart them for the tests after this one


@pytest.mark.slow
def test_a_worker_that_cannot_see_the_data_stops_the_run_with_the_reason(
    setup: TuneSetup, cluster: LoopbackCluster
) -> None:
    root, _, _ = setup
    setting = Setting(load_config(EXAMPLES / "small.yaml"), parse_space(yaml.safe_load(TUNE_SPACE)),
                      TuneData(root / "data"), Budget(iterations=5), seed=1)
    candidate = prepare([2, 1, 0, "ReLU", 8], setting)
    elsewhere = candidate_folder(root / "not-shared", candidate.key)  # a run folder the worker cannot see
    job = train_job(candidate, elsewhere, setting)
    with DaskExecutor(cluster.address) as pool, pytest.raises(EnvironmentProblem, match=r"not-shared.* is not there"):
        list(pool.imap_unordered(run_training, [job]))
    assert not elsewhere.exists()  # nothing written, nothing trained


FILES = ["--config", str(EXAMPLES / "small.yaml"), "--space", str(EXAMPLES / "space.yaml")]


def test_an_unreachable_scheduler_is_one_line_and_leaves_no_run_folder(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        # base config and space given: the data-aware defaults would read the (absent) dataset first
        result = CliRunner().invoke(cli, ["tune", "--data", str(tmp_path), "--iters", "5", *FILES,
                                          "-o", str(tmp_path / "run"), "--scheduler", address])
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"error: --scheduler {address}: cannot reach the Dask scheduler")
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("args", "message", "code"), [
    (["--workers", "2"], "--scheduler runs the trainings on the Dask workers; drop --workers/--gpus", 2),
    ([], "--scheduler needs Dask", 1),
])
def test_scheduler_mistakes_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str, code: int
) -> None:
    monkeypatch.setitem(sys.modules, "drnngen.tuner.dask_executor", None)  # as if distributed were not installed
    result = CliRunner().invoke(cli, ["tune", "--data", str(tmp_path), "--iters", "5", *FILES,
                                      "-o", str(tmp_path / "run"), "--scheduler", "tcp://127.0.0.1:1", *args])
    assert result.exit_code == code, result.output
    assert result.output.startswith(f"error: {message}") and len(result.output.strip().splitlines()) == 1
    assert "pip install 'drnngen[dask]'" in result.output or code == 2
