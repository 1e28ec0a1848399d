"""Issue #13, the findings its first pass left to re-check, one test each:
`--resume` with `--no-cache` / `--cache-dir`, `-o` naming an existing file on
every command, binary garbage in gru4rec and diginetica input, and read-only
outputs (a read-only tmpfs: root writes through file modes, not through `ro`).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from drnngen.cli import cli
from drnngen.tuner import Resources
from tests.data_support import TUNER_DATA, synth_log
from tests.fault_support import tmpfs
from tests.golden_tool import EXAMPLES
from tests.tuner_support import FakeTrainer, run

DATASET = TUNER_DATA
SMALL = str(EXAMPLES / "small.yaml")
_GARBAGE = bytes(range(256)) * 16 + b"\r" * 10


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _one_error_line(result: Result, fragment: str = "") -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, dataset: Path) -> Path:
    root = tmp_path_factory.mktemp("findings-run")
    run(root, dataset, "run", FakeTrainer(), changes={"generations": 1})
    return root / "run"


# --- --resume and the cache (finding 8: "--resume ignores --no-cache and --cache-dir") --------------

@pytest.fixture
def resumed(monkeypatch: pytest.MonkeyPatch) -> list[Resources]:
    """What `tune --resume` hands the tuner, instead of running it."""
    seen: list[Resources] = []

    def fake_tune(run_dir: Path, params: Any, resources: Resources, **kwargs: Any) -> Any:
        seen.append(resources)
        raise SystemExit(0)

    monkeypatch.setattr("drnngen.cli.tune.tune", fake_tune)
    return seen


def test_resume_honours_no_cache(finished_run: Path, resumed: list[Resources]) -> None:
    _run("tune", "--resume", str(finished_run), "--no-cache")
    assert [r.cache_dir for r in resumed] == [None]


def test_resume_honours_cache_dir(finished_run: Path, tmp_path: Path, resumed: list[Resources]) -> None:
    _run("tune", "--resume", str(finished_run), "--cache-dir", str(tmp_path / "mine"))
    assert [r.cache_dir for r in resumed] == [tmp_path / "mine"]


def test_a_resumed_run_with_no_cache_writes_no_cache(tmp_path: Path, dataset: Path) -> None:
    """The tuner itself: a resume with Resources(cache_dir=None) creates no cache anywhere."""
    from drnngen.tuner import tune

    first = run(tmp_path, dataset, "run", FakeTrainer(), resources=Resources(workers=1, cache_dir=None),
                changes={"generations": 0})
    assert first.best is not None
    tune(tmp_path / "run", None, Resources(workers=1, cache_dir=None), trainer=FakeTrainer(), generations=1)
    assert not any(p.suffix in (".sqlite", ".db") and p.name != "ledger.sqlite" for p in tmp_path.rglob("*"))


# --- -o naming an existing file, on every command -----------------------------------------------

def _o_at_a_file_cases() -> list[tuple[str, list[str]]]:
    return [
        ("build", ["build", SMALL, "-o", "{f}"]),
        ("draw", ["draw", SMALL, "-o", "{f}/net.svg"]),
        ("prepare", ["prepare", "{log}/clicks.dat", "-o", "{f}", "-q"]),
        ("synth", ["synth", "--sessions", "10", "-o", "{f}", "-q"]),
        ("tune", ["tune", "--config", SMALL, "--data", "{data}", "--no-cache", "-o", "{f}"]),
        ("best", ["best", "{run}", "-o", "{f}"]),
        ("report", ["report", "{run}", "-o", "{f}"]),
        ("evaluate", ["evaluate", "{run}", "--data", "{data}", "-o", "{f}"]),
    ]


@pytest.mark.parametrize(("command", "args"), _o_at_a_file_cases(), ids=[c for c, _ in _o_at_a_file_cases()])
def test_o_naming_an_existing_file_is_one_line_and_keeps_it(command: str, args: list[str], tmp_path: Path,
                                                           finished_run: Path, dataset: Path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("years of work\n")
    log = synth_log(tmp_path / "log", sessions=40)
    filled = [a.format(f=target, log=log, data=dataset, run=finished_run) for a in args]
    _one_error_line(_run(*filled))
    assert target.read_text() == "years of work\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log", "precious.txt"]


# --- binary garbage in gru4rec and diginetica input (finding 5: a _csv.Error) ---------------------

@pytest.mark.parametrize(("log_format", "name"), [("gru4rec", "sessions.tsv"), ("diginetica", "train-item-views.csv"),
                                                  ("csv", "log.csv"), ("gru4rec", "sessions.tsv.gz")])
def test_binary_garbage_as_a_log_is_one_line(log_format: str, name: str, tmp_path: Path) -> None:
    (tmp_path / name).write_bytes(_GARBAGE)  # a .gz name on bytes that are not gzip, too
    extra = ["--columns", "session=s,item=i,time=t"] if log_format == "csv" else []
    line = _one_error_line(_run("prepare", str(tmp_path / name), "--format", log_format, "-o",
                                str(tmp_path / "data"), "-q", *extra))
    assert name in line and line.isprintable()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_binary_garbage_as_purchases_is_one_line(tmp_path: Path) -> None:
    log = synth_log(tmp_path / "log", sessions=40, log_format="gru4rec")
    (log / "buys.tsv").write_bytes(b"SessionId\tItemId\tTime\n" + _GARBAGE)
    line = _one_error_line(_run("prepare", str(log / "sessions.tsv"), "--buys", str(log / "buys.tsv"),
                                "-o", str(tmp_path / "data"), "-q"))
    assert "buys.tsv" in line and not (tmp_path / "data").exists()


# --- read-only outputs (finding 3: PermissionError tracebacks) ------------------------------------

@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs at tmp_path/ro holding a finished build, prepare, synth and report; then remounted read-only."""
    with tmpfs(tmp_path / "ro", "16m") as point:
        yield point


def _remount_read_only(point: Path) -> dict[str, str]:
    done = subprocess.run(["mount", "-o", "remount,ro", str(point)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only: {done.stderr.strip()}")
    return {str(p.relative_to(point)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(point.rglob("*"))}


def test_every_writer_on_a_read_only_disk_is_one_line(read_only: Path, tmp_path: Path, finished_run: Path,
                                                      dataset: Path) -> None:
    log = synth_log(tmp_path / "log", sessions=300)
    prepare = ["prepare", str(log / "clicks.dat"), "--buys", str(log / "buys.dat"), "-o", str(read_only / "data"),
               "-q", "--max-pages", "100", "--max-items", "20"]
    assert _run("build", SMALL, "-o", str(read_only / "net")).exit_code == 0
    assert _run(*prepare).exit_code == 0
    assert _run("synth", "--sessions", "30", "-o", str(read_only / "logs"), "-q").exit_code == 0
    shutil.copytree(finished_run, read_only / "run")
    assert _run("report", str(read_only / "run"), "-o", str(read_only / "report")).exit_code == 0
    before = _remount_read_only(read_only)
    for args in (["build", str(EXAMPLES / "paper.yaml"), "-o", str(read_only / "net")],
                 ["draw", SMALL, "-o", str(read_only / "net.svg")],
                 [*prepare, "--force", "--window", "3"],
                 ["synth", "--sessions", "30", "--seed", "9", "-o", str(read_only / "logs"), "-q", "--force"],
                 ["report", str(read_only / "run"), "-o", str(read_only / "report")],
                 ["best", str(read_only / "run"), "-o", str(read_only / "best")],
                 ["tune", "--config", SMALL, "--data", str(dataset), "--no-cache", "-o", str(read_only / "run2")]):
        _one_error_line(_run(*args), "")
    after = {str(p.relative_to(read_only)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
             for p in sorted(read_only.rglob("*"))}
    assert after == before
