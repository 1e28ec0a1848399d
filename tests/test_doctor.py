"""`drnngen doctor`: green with the built Caffe, one red line when it is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from drnngen.cli import cli
from drnngen.runner import locate_caffe


def run_doctor(monkeypatch: pytest.MonkeyPatch, *args: str,
               **env: str) -> tuple[int, str, str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["doctor", *args])
    return result.exit_code, result.stdout, result.stderr


def report_of(out: str) -> dict[str, str]:
    """The report's `label  value` lines as a mapping."""
    pairs = (line.split(None, 1) for line in out.splitlines() if line != "ok")
    return {label: value for label, value in pairs}


@pytest.mark.caffe
def test_doctor_green(monkeypatch: pytest.MonkeyPatch) -> None:
    install = locate_caffe()
    code, out, err = run_doctor(monkeypatch)
    assert code == 0, err
    assert out.splitlines()[-1] == "ok"
    report = report_of(out)
    assert report["caffe"].startswith(str(install.root or install.package_dir))
    assert report["version"].startswith("1.0.0")
    assert report["build"] in {"CPU only", "CUDA"} or report["build"].startswith("CUDA ")
    assert report["layers"].endswith("all present")
    assert report["mode"] == "cpu"
    assert "numpy" in report and "protobuf" in report and "dot" in report


def test_doctor_red_with_bogus_caffe_root(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    code, out, err = run_doctor(monkeypatch, DRNNGEN_CAFFE_ROOT=str(tmp_path / "no-caffe"))
    assert code == 1
    assert report_of(out)["caffe"] == "not found"
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: DRNNGEN_CAFFE_ROOT=")
    assert lines[0].endswith("run `make caffe`")


def test_doctor_red_without_dot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # An empty PATH hides Graphviz; the bogus root keeps Caffe out of it.
    code, out, err = run_doctor(monkeypatch, PATH=str(tmp_path),
                                DRNNGEN_CAFFE_ROOT=str(tmp_path / "no-caffe"))
    assert code == 1
    assert report_of(out)["dot"] == "not found"
    assert err.count("\n") == 1 and "run `make system-deps`" in err


@pytest.mark.caffe
def test_doctor_gpu_mode_on_cpu_build(monkeypatch: pytest.MonkeyPatch) -> None:
    if locate_caffe().cpu_only is False:
        pytest.skip("this Caffe is a CUDA build")
    code, _, err = run_doctor(monkeypatch, "--mode", "gpu")
    assert code == 1
    assert err.count("\n") == 1
    assert "CPU-only" in err and "--mode cpu" in err
