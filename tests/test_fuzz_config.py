"""Fuzz suite (issue #13), configs and search spaces: every key of a config × every
kind of hostile value, and whole-file damage, through `build`, `draw` and
`tune --config/--space`. The promise is tests/fuzz_support.py's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.data_support import TUNER_DATA
from tests.fuzz_support import (
    Case,
    config_keys,
    file_mutations,
    params,
    run_case,
    space_keys,
    value_mutations,
)
from tests.golden_tool import EXAMPLES
from tests.tuner_support import TUNE_SPACE

DATASET = TUNER_DATA  # the `dataset` fixture: what `tune` reads

SMALL = (EXAMPLES / "small.yaml").read_bytes()
BASE: dict[str, Any] = yaml.safe_load(SMALL)
SPACE_BYTES = TUNE_SPACE.encode()
SPACE: dict[str, Any] = yaml.safe_load(SPACE_BYTES)
# A tune that stops before any training: the time budget is spent at once.
TUNE = ("tune", "--data", "{data}", "--no-cache", "--population", "2", "--iters", "1", "--time-budget", "0.00001",
        "-o", "{out}")


def _config_cases() -> list[Case]:
    cases: list[Case] = []
    keys = config_keys()
    mutated = list(value_mutations(BASE, keys, per_category=2))
    core = list(value_mutations(BASE, keys, per_category=1))
    whole = list(file_mutations(SMALL))
    for category, detail, text in mutated + whole:
        cases.append(Case("build", category, detail, ("build", "{in}/c.yaml", "-o", "{out}"), (("c.yaml", text),)))
    for category, detail, text in core + whole:
        files = (("c.yaml", text),)
        cases.append(Case("draw", category, detail, ("draw", "{in}/c.yaml", "-o", "{out}/net.dot"), files))
        cases.append(Case("tune", f"config-{category}", detail, (*TUNE, "--config", "{in}/c.yaml"), files))
    for category, detail, text in [*value_mutations(SPACE, space_keys(), per_category=2), *file_mutations(SPACE_BYTES)]:
        cases.append(Case("tune", f"space-{category}", detail,
                          (*TUNE, "--config", str(EXAMPLES / "small.yaml"), "--space", "{in}/s.yaml"),
                          (("s.yaml", text),)))
    return cases


@pytest.mark.parametrize("case", params(_config_cases()))
def test_hostile_config(case: Case, tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a stray relative write lands where the snapshot sees it
    run_case(case, tmp_path, {"data": dataset}, watch=[dataset] if case.command == "tune" else [])
