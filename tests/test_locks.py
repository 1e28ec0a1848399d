"""Issue #13, locks: one command at a time writes a dataset folder, a synthetic log or
a run folder. Each test runs two real `drnngen` processes. The first is stopped
(SIGSTOP) once it holds its lock, so the second one surely meets a live holder;
then it is let go (SIGCONT) and must finish as if alone, or killed (SIGKILL) to
leave a stale lock file that must not block anyone.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.tuner_support import TuneSetup

CLI = [sys.executable, "-c", "from drnngen.cli import main; main()"]
TUNE_GENERATIONS = 1  # the `setup` fixture: population 4, 30 iterations per candidate


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _drnngen(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False)


def _one_error_line(done: subprocess.CompletedProcess[str], fragment: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert fragment in lines[0], lines[0]
    return lines[0]


def _wait_for_holder(lock: Path, first: subprocess.Popen[str], ready: Path | None, timeout: float = 60) -> None:
    """Until `first` has written its pid into `lock` (it does so once it holds the flock)
    and `ready` exists."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if f"pid {first.pid}" in lock.read_text() and (ready is None or ready.exists()):
                return
        except FileNotFoundError:
            pass
        if first.poll() is not None:
            pytest.fail(f"the first process ended before it was caught holding {lock}: {first.communicate()}")
        time.sleep(0.001)
    pytest.fail(f"{lock} never named pid {first.pid}")


@contextmanager
def _held(lock: Path, *args: str, ready: Path | None = None) -> Iterator[subprocess.Popen[str]]:
    """A `drnngen ARGS` process, stopped while it holds `lock` (and once `ready` exists);
    killed if the test fails."""
    first = _start(*args)
    try:
        _wait_for_holder(lock, first, ready)
        os.kill(first.pid, signal.SIGSTOP)
        yield first
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
        if first.stdout is not None:
            first.stdout.close()
        if first.stderr is not None:
            first.stderr.close()


def _finish(first: subprocess.Popen[str]) -> tuple[int, str, str]:
    os.kill(first.pid, signal.SIGCONT)
    out, err = first.communicate(timeout=300)
    return first.returncode, out, err


def _stale(lock: Path, *args: str) -> None:
    """Leave `lock` behind as a process killed while holding it does."""
    with _held(lock, *args) as first:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    assert lock.is_file()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log large enough that `prepare` takes a second (caught holding its lock)."""
    folder = tmp_path_factory.mktemp("locks") / "logs"
    done = _drnngen("synth", "--sessions", "20000", "--seed", "2", "-o", str(folder), "-q")
    assert done.returncode == 0, done.stderr
    return folder


def _prepare_args(logs: Path, output: Path) -> list[str]:
    return ["prepare", str(logs / "clicks.dat"), "--buys", str(logs / "buys.dat"), "-o", str(output), "-q"]


def _synth_args(output: Path) -> list[str]:
    return ["synth", "--sessions", "30000", "--seed", "4", "-o", str(output), "-q"]


# --- datasets and synthetic logs -------------------------------------------------------------------

def test_a_second_prepare_into_the_same_folder_waits_for_no_one(tmp_path: Path, logs: Path) -> None:
    data = tmp_path / "data"
    lock = tmp_path / ".data.drnngen-lock"
    with _held(lock, *_prepare_args(logs, data)) as first:
        line = _one_error_line(_drnngen(*_prepare_args(logs, data)), "another drnngen is writing it right now")
        assert f"drnngen prepare, pid {first.pid}" in line
        forced = _drnngen(*_prepare_args(logs, data), "--force")
        _one_error_line(forced, f"pid {first.pid}")
        code, out, err = _finish(first)
    assert code == 0, err
    assert "wrote " in out and (data / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # the lock file went with the first


def test_a_prepare_into_another_folder_is_not_blocked(tmp_path: Path, logs: Path) -> None:
    with _held(tmp_path / ".a.drnngen-lock", *_prepare_args(logs, tmp_path / "a")) as first:
        other = _drnngen(*_prepare_args(logs, tmp_path / "b"))
        assert other.returncode == 0, other.stderr
        assert _finish(first)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_a_stale_dataset_lock_of_a_killed_prepare_blocks_nothing(tmp_path: Path, logs: Path) -> None:
    data, lock = tmp_path / "data", tmp_path / ".data.drnngen-lock"
    _stale(lock, *_prepare_args(logs, data))
    done = _drnngen(*_prepare_args(logs, data))
    assert done.returncode == 0, done.stderr
    assert (data / "manifest.json").is_file() and not lock.exists()


def test_a_second_synth_into_the_same_folder_is_one_line(tmp_path: Path) -> None:
    out, lock = tmp_path / "logs", tmp_path / ".logs.drnngen-lock"
    with _held(lock, *_synth_args(out)) as first:
        line = _one_error_line(_drnngen(*_synth_args(out), "--force"), "another drnngen is writing it right now")
        assert f"drnngen synth, pid {first.pid}" in line
        code, _, err = _finish(first)
    assert code == 0, err
    assert (out / "clicks.dat").is_file() and not lock.exists()


def test_a_stale_synth_lock_blocks_nothing(tmp_path: Path) -> None:
    out, lock = tmp_path / "logs", tmp_path / ".logs.drnngen-lock"
    _stale(lock, *_synth_args(out))
    done = _drnngen(*_synth_args(out))
    assert done.returncode == 0, done.stderr
    assert (out / "clicks.dat").is_file() and not lock.exists()


def test_a_failed_prepare_leaves_no_lock_and_no_parents(tmp_path: Path, logs: Path) -> None:
    output = tmp_path / "new" / "deeper" / "data"
    done = _drnngen("prepare", str(logs / "clicks.dat"), "--buys", str(logs / "nope.dat"), "-o", str(output),
                    "-q")
    _one_error_line(done, "nope.dat")
    assert list(tmp_path.iterdir()) == []


# --- run folders: a concurrent --resume ------------------------------------------------------------

def _evaluation_rows(run: Path) -> list[tuple[int, int, str]]:
    with sqlite3.connect(run / "ledger.sqlite") as db:
        return [tuple(row) for row in db.execute("SELECT generation, position, key FROM evaluations ORDER BY id")]


@pytest.mark.caffe
@pytest.mark.slow
def test_resume_while_the_run_is_being_tuned_is_one_line_and_writes_nothing(tmp_path: Path,
                                                                             setup: TuneSetup) -> None:
    run = tmp_path / "run"
    with _held(run / ".drnngen-lock", *setup.args, "-o", str(run), ready=run / "ledger.sqlite") as first:
        line = _one_error_line(_drnngen("tune", "--resume", str(run)), "is being tuned right now")
        assert f"pid {first.pid}" in line
        _one_error_line(_drnngen(*setup.args, "-o", str(run)), "already holds a run")
        code, _, err = _finish(first)
    assert code == 0, err
    rows = _evaluation_rows(run)
    assert len(rows) == 4 * (TUNE_GENERATIONS + 1)  # population 4, generations 0..1: each asked once
    assert len({(gen, pos) for gen, pos, _ in rows}) == len(rows)
    with sqlite3.connect(run / "ledger.sqlite") as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'status'").fetchone()[0] == '"finished"'
