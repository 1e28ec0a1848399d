"""A pytest plugin that tallies the fuzz suite (issue #13): cases and how many held,
per command and category. `make fuzz` loads it (`-p tests.fuzz_tally`); it prints
the table at the end and, with `--fuzz-tally PATH`, writes it as Markdown.

A case's id is `command:category:detail` (tests/fuzz_support.Case); a case held
when its test passed.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

_ID = re.compile(r"\[([^:\]]+):([^:\]]+):")
_held: Counter[tuple[str, str]] = Counter()
_tried: Counter[tuple[str, str]] = Counter()
_skipped: Counter[tuple[str, str]] = Counter()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-tally", metavar="PATH", default=None, help="write the fuzz tally there (Markdown)")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    found = _ID.search(report.nodeid)
    if found is None or "test_fuzz_" not in report.nodeid:
        return
    key = (found.group(1), found.group(2))
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.skipped:
            _skipped[key] += 1
            return
        _tried[key] += 1
        _held[key] += int(report.passed)


def table() -> list[str]:
    """The tally as Markdown lines: one row per command and category, totals per command, and in all."""
    lines = ["| command | category | cases | held |", "| --- | --- | ---: | ---: |"]
    commands = sorted({command for command, _ in _tried})
    for command in commands:
        keys = sorted(key for key in _tried if key[0] == command)
        for key in keys:
            lines.append(f"| {command} | {key[1]} | {_tried[key]} | {_held[key]} |")
        tried, held = sum(_tried[k] for k in keys), sum(_held[k] for k in keys)
        lines.append(f"| **{command}** | all | **{tried}** | **{held}** |")
    lines.append(f"| **all** | | **{sum(_tried.values())}** | **{sum(_held.values())}** |")
    return lines


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not _tried:
        return
    terminalreporter.section("fuzz tally (issue #13): cases tried and held")
    for line in table():
        terminalreporter.write_line(line)
    if _skipped:
        terminalreporter.write_line(f"skipped (deselected by a marker or missing Caffe): {sum(_skipped.values())}")
    path = config.getoption("--fuzz-tally")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("\n".join(table()) + "\n")
