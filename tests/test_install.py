"""drnngen installs from a plain `pip install .` into a fresh virtualenv (no
editable checkout): templates and the compiled Caffe schema travel as package data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drnngen.codegen import schema

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_plain_install_into_fresh_venv_builds_paper_example(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, str(ROOT)], check=True, cwd=tmp_path)
    out = tmp_path / "out"
    # run from tmp_path so nothing from the checkout is importable
    result = subprocess.run(
        [str(venv / "bin" / "drnngen"), "build", str(ROOT / "examples" / "paper.yaml"), "-o", str(out)],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["deploy.prototxt", "net.prototxt", "solver.prototxt"]
    net = schema.parse((out / "net.prototxt").read_text(), "NetParameter", "net.prototxt")
    assert sum(layer.type == "SoftmaxWithLoss" for layer in net.layer) == 4
    schema.parse((out / "solver.prototxt").read_text(), "SolverParameter", "solver.prototxt")
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import drnngen.codegen as c, pathlib; print(pathlib.Path(c.__file__).parent)"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert "site-packages" in site
    assert (Path(site) / "templates" / "net.prototxt.j2").is_file()
    assert (Path(site) / "caffe_schema.desc").is_file()
    # one import root: the top-level folders install under drnngen only
    for name in ("codegen", "tuner"):
        stray = subprocess.run([str(venv / "bin" / "python"), "-c", f"import {name}"],
                               cwd=tmp_path, capture_output=True, text=True, check=False)
        assert stray.returncode != 0, f"`import {name}` works in a venv holding only drnngen"
    tops = list((Path(site).parent.parent).glob("drnngen-*.dist-info/top_level.txt"))
    if tops:  # setuptools writes it for regular (non-editable) installs
        assert tops[0].read_text().split() == ["drnngen"]
