"""`drnngen build` / `drnngen draw` through click's CliRunner, in tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from drnngen.cli import cli
from drnngen.codegen import render
from drnngen.codegen.build import generate
from drnngen.codegen.config import load_config
from tests.fault_support import fill_disk_at
from tests.golden_tool import EXAMPLES, GOLDEN

SMALL = EXAMPLES / "small.yaml"


def test_build_writes_three_parseable_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["build", str(SMALL), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["deploy.prototxt", "net.prototxt", "solver.prototxt"]
    assert (tmp_path / "out" / "net.prototxt").read_text() == (GOLDEN / "small" / "net.prototxt").read_text()


def test_dry_run_prints_and_writes_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["build", str(SMALL), "--dry-run", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0
    assert "### solver.prototxt" in result.output and 'name: "s2_loss"' in result.output
    assert not (tmp_path / "out").exists()


def test_draw_dot_shows_states_and_shared_weights(tmp_path: Path) -> None:
    out = tmp_path / "net.dot"
    result = CliRunner().invoke(cli, ["draw", str(SMALL), "-o", str(out)])
    assert result.exit_code == 0, result.output
    dot = out.read_text()
    assert 'label="history state"' in dot and 'label="state 2"' in dot
    assert '"s0_w1" -> "s1_w1" [style=dashed' in dot and 'label="W1"' in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is installed by make system-deps")
def test_draw_svg(tmp_path: Path) -> None:
    out = tmp_path / "net.svg"
    result = CliRunner().invoke(cli, ["draw", str(SMALL), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().lstrip().startswith(("<?xml", "<svg"))


def test_draw_unknown_format(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["draw", str(SMALL), "-o", str(tmp_path / "net.gif")])
    assert result.exit_code == 2 and "unknown picture format .gif" in result.output


def test_one_character_template_change_breaks_golden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(render.template_dir(), templates)
    net = templates / "net.prototxt.j2"
    net.write_text(net.read_text().replace("layer {", "layer  {", 1))
    monkeypatch.setattr(render, "template_dir", lambda: templates)
    render.environment.cache_clear()
    try:
        changed = generate(load_config(SMALL), source=SMALL.name)["net.prototxt"]
    finally:
        render.environment.cache_clear()
    assert changed != (GOLDEN / "small" / "net.prototxt").read_text()


def test_a_full_disk_changes_nothing_and_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while writing the second file: the old files stay, no temporary file is left."""
    out = tmp_path / "out"
    first = CliRunner().invoke(cli, ["build", str(EXAMPLES / "small.yaml"), "-o", str(out)])
    assert first.exit_code == 0, first.output
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    fill_disk_at(monkeypatch, 2)
    result = CliRunner().invoke(cli, ["build", str(EXAMPLES / "paper.yaml"), "-o", str(out)])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert "No space left on device" in result.output and "nothing was changed" in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # same names, same bytes


def test_generated_files_follow_the_umask(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["build", str(EXAMPLES / "small.yaml"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    assert {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "out").iterdir()} == {oct(0o666 & ~mask)}
