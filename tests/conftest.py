"""Fixtures shared by the test modules.

A fixture made once per module reads what to make from the module itself
(pytest's request.module), so every module states its own dataset or run
length where its tests are:

    DATASET = TUNER_DATA                                # `dataset`
    DATASET = dataclasses.replace(EVAL_DATA, seed=11)   # another seed
    TUNE_GENERATIONS = 3                                # `setup`

Helpers the tests call live in the support modules (tests/data_support.py,
tests/tuner_support.py, tests/dask_support.py, tests/golden_tool.py); no test
module imports another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.data_support import SyntheticData
from tests.tuner_support import TuneSetup, tune_setup


def _module_setting(request: pytest.FixtureRequest, name: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = getattr(request.module, name, None)
    if not isinstance(value, kind):
        pytest.fail(f"{request.module.__name__} uses the `{request.fixturename}` fixture: "
                    f"give the module {name} = {what}", pytrace=False)
    return value


def _module_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, what: str) -> Path:
    return tmp_path_factory.mktemp(f"{request.module.__name__.rpartition('.')[2]}-{what}")


@pytest.fixture(scope="module")
def dataset(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's synthetic prepared dataset, made once for the module from its
    DATASET (a tests.data_support.SyntheticData). A module with a dataset of
    another kind defines its own `dataset` fixture."""
    recipe: SyntheticData = _module_setting(request, "DATASET", SyntheticData, "a tests.data_support.SyntheticData")
    return recipe.make(_module_folder(request, tmp_path_factory, "data"))


@pytest.fixture(scope="module")
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TuneSetup:
    """A folder of the module's with a small dataset and space, and the `drnngen tune`
    arguments (no -o) for a run of the module's TUNE_GENERATIONS generations."""
    generations: int = _module_setting(request, "TUNE_GENERATIONS", int, "the number of generations")
    return tune_setup(_module_folder(request, tmp_path_factory, "tune"), generations)
