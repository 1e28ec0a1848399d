"""`drnngen tune` refuses in one line, before any run folder exists, when the
local Caffe cannot do what was asked."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from drnngen.cli import cli
from tests.data_support import TUNER_DATA

DATASET = dataclasses.replace(TUNER_DATA, sessions=400)  # the `dataset` fixture (tests/conftest.py)


@pytest.mark.caffe
def test_gpu_mode_on_cpu_build_is_one_line(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["tune", "--data", str(dataset), "--iters", "2", "--mode", "gpu", "-o", str(run)])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1].startswith("error: --mode gpu: the Caffe build at")
    assert "CPU-only" in result.output and not run.exists()


def test_missing_caffe_is_one_line(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRNNGEN_CAFFE_ROOT", str(tmp_path / "no-caffe"))
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["tune", "--data", str(dataset), "--iters", "2", "-o", str(run)])
    assert result.exit_code == 1, result.output
    assert "holds no built pycaffe" in result.output and "make caffe" in result.output
    assert not run.exists()


@pytest.mark.parametrize(("budget", "message"), [
    ("4 parsecs", "error: --memory-budget: not a size: '4 parsecs' (e.g. 4GiB, 256MiB)"),
    ("10k", "error: one sample of the default net needs about"),
])
def test_memory_budget_errors_are_one_line(dataset: Path, tmp_path: Path, budget: str, message: str) -> None:
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["tune", "--data", str(dataset), "--iters", "2", "--memory-budget", budget,
                                      "-o", str(run)])
    assert result.exit_code == 2, result.output
    assert result.output.strip().startswith(message) and len(result.output.strip().splitlines()) == 1
    assert not run.exists()
