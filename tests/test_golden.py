"""Generated files equal the reviewed golden record, byte for byte."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from tests.golden_tool import GOLDEN, README, example_configs, expected_files, readme_with_table


@pytest.mark.parametrize("config", example_configs(), ids=lambda p: p.stem)
def test_example_matches_golden(config: Path) -> None:
    for name, text in expected_files(config).items():
        golden = GOLDEN / config.stem / name
        assert golden.exists(), f"{golden} missing: run `make golden` and review the diff"
        expected = golden.read_text(encoding="utf-8")
        if text != expected:
            diff = "".join(difflib.unified_diff(
                expected.splitlines(True), text.splitlines(True), str(golden), "generated", n=1))
            pytest.fail(f"{golden} differs from the generated file (run `make golden` if intended):\n{diff[:3000]}")


def test_every_example_has_golden_files() -> None:
    folders = {p.name for p in GOLDEN.iterdir() if p.is_dir()}
    assert folders == {c.stem for c in example_configs()}


def test_readme_config_table_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    assert readme_with_table(text) == text, "README config table is stale: run `make golden`"
