"""Issue #13, a real full disk: each command writes onto a small tmpfs that is full
(or has a few KiB left, so a file is cut mid-write), and must say one `error:`
line with exit code 2, keep the old outputs byte for byte and leave no
half-written or temporary file. The tmpfs needs root (mount(2)); elsewhere the
tests skip, saying so (tests/fault_support.py simulates ENOSPC without root).
"""

from __future__ import annotations

import errno
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from drnngen.cli import cli
from tests.data_support import TUNER_DATA, synth_log
from tests.fault_support import tmpfs
from tests.golden_tool import EXAMPLES
from tests.tuner_support import FakeTrainer, run

DATASET = TUNER_DATA
DISK = "8m"
LEFT = {"full": 0, "4KiB-left": 4 << 10, "64KiB-left": 64 << 10}
TIGHT = {"full": 0, "4KiB-left": 4 << 10}  # for outputs that fit in 64 KiB


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A fresh 8 MiB tmpfs at tmp_path/disk, unmounted afterwards."""
    with tmpfs(tmp_path / "disk", DISK) as point:
        yield point


def _fill(disk: Path, left: int) -> None:
    """Fill `disk` until at most `left` bytes are free."""
    free = shutil.disk_usage(disk).free
    with (disk / "filler").open("wb") as handle:
        try:
            handle.write(b"\0" * max(0, free - left))
            handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    assert shutil.disk_usage(disk).free <= left + (8 << 10)


def _state(folder: Path) -> dict[str, str]:
    """Every entry under `folder` (the filler aside) with its sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
            for p in sorted(folder.rglob("*")) if p.name != "filler"}


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _one_error_line(result: Result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("left", TIGHT.values(), ids=TIGHT.keys())
def test_build_on_a_full_disk_keeps_the_old_net(disk: Path, left: int) -> None:
    out = disk / "net"
    assert _run("build", str(EXAMPLES / "small.yaml"), "-o", str(out)).exit_code == 0
    before = _state(disk)
    _fill(disk, left)
    line = _one_error_line(_run("build", str(EXAMPLES / "paper.yaml"), "-o", str(out)))
    assert "No space left on device" in line or "disk" in line, line
    assert _state(disk) == before  # the old config's three files, no temporary file


@pytest.mark.parametrize("left", LEFT.values(), ids=LEFT.keys())
def test_prepare_force_on_a_full_disk_keeps_the_old_dataset(disk: Path, tmp_path: Path, left: int) -> None:
    log = synth_log(tmp_path / "log", sessions=600)
    args = ["prepare", str(log / "clicks.dat"), "--buys", str(log / "buys.dat"), "-o", str(disk / "data"), "-q",
            "--max-pages", "100", "--max-items", "20"]
    assert _run(*args).exit_code == 0
    before = _state(disk)
    _fill(disk, left)
    _one_error_line(_run(*args, "--window", "3", "--force"))
    assert _state(disk) == before  # the old dataset whole, no .tmp- folder, no lock file


@pytest.mark.parametrize("left", LEFT.values(), ids=LEFT.keys())
def test_synth_force_on_a_full_disk_keeps_the_old_log(disk: Path, left: int) -> None:
    args = ["synth", "--sessions", "300", "-o", str(disk / "logs"), "-q"]
    assert _run(*args, "--seed", "1").exit_code == 0
    before = _state(disk)
    _fill(disk, left)
    _one_error_line(_run(*args, "--seed", "2", "--force"))
    assert _state(disk) == before


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, dataset: Path) -> Path:
    root = tmp_path_factory.mktemp("enospc-run")
    run(root, dataset, "run", FakeTrainer(), changes={"generations": 1})
    return root / "run"


@pytest.mark.parametrize("left", LEFT.values(), ids=LEFT.keys())
def test_report_on_a_full_disk_keeps_the_old_report(disk: Path, finished_run: Path, left: int) -> None:
    shutil.copytree(finished_run, disk / "run")
    assert _run("report", str(disk / "run"), "-o", str(disk / "report")).exit_code == 0
    before = _state(disk)
    _fill(disk, left)
    _one_error_line(_run("report", str(disk / "run"), "-o", str(disk / "report")))
    assert _state(disk) == before  # no 0-byte PNG, no temporary file


@pytest.mark.parametrize("left", TIGHT.values(), ids=TIGHT.keys())
def test_best_on_a_full_disk_leaves_no_half_export(disk: Path, finished_run: Path, left: int) -> None:
    shutil.copytree(finished_run, disk / "run")
    before = _state(disk)
    _fill(disk, left)
    _one_error_line(_run("best", str(disk / "run"), "-o", str(disk / "best")))
    after = _state(disk)
    assert "best/best.json" not in after  # the export's last file: a folder without it is not an export
    assert {k: v for k, v in after.items() if k.startswith("run")} == before


@pytest.mark.caffe
@pytest.mark.parametrize("left", TIGHT.values(), ids=TIGHT.keys())
def test_tune_on_a_full_disk_leaves_no_ledger(disk: Path, dataset: Path, left: int) -> None:
    _fill(disk, left)
    before = _state(disk)
    line = _one_error_line(_run("tune", "--config", str(EXAMPLES / "small.yaml"), "--data", str(dataset),
                                "--no-cache", "--population", "2", "--iters", "1", "--time-budget", "0.00001",
                                "-o", str(disk / "run")))
    assert "ledger" in line or "No space" in line, line
    after = _state(disk)
    assert not any(name.endswith("ledger.sqlite") for name in after), after  # never a 0-byte or partial one
    assert set(after) - set(before) <= {"run", "run/.drnngen-lock"}


@pytest.mark.caffe
def test_tune_that_fills_the_disk_later_ends_in_one_line_and_a_resumable_ledger(disk: Path, dataset: Path) -> None:
    """The ledger exists (the disk had room at first); the disk fills before the
    run's first write: one line, and the ledger still opens."""
    out = disk / "run"
    args = ["tune", "--config", str(EXAMPLES / "small.yaml"), "--data", str(dataset), "--no-cache",
            "--population", "2", "--iters", "1", "--time-budget", "0.00001"]
    first = _run(*args, "-o", str(out))
    assert first.exit_code == 2 and "no candidate trained" in first.stderr  # the budget was spent at once
    _fill(disk, 0)
    resumed = _run("tune", "--resume", str(out), "--no-cache")
    _one_error_line(resumed)
    (disk / "filler").unlink()
    best = _run("best", str(out), "-o", str(disk / "b"))
    assert "not a complete ledger" not in best.stderr, best.stderr
