"""Where drnngen looks for Caffe, and in which order (no Caffe needed)."""

from __future__ import annotations

import json
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest

from drnngen.errors import EnvironmentProblem
from drnngen.runner.locate import CAFFE_VERSION, locate_caffe


def make_prefix(root: Path, complete: bool = True, cpu_only: bool = True) -> Path:
    """A directory laid out like scripts/build_caffe.sh's prefix."""
    package = root / "python" / "caffe"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "_caffe.so").write_bytes(b"")
    tool = root / "bin" / "caffe"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    (root / "build-info.json").write_text(json.dumps({"version": CAFFE_VERSION,
                                                       "cpu_only": cpu_only}))
    if complete:
        (root / ".complete").write_text("done\n")
    return root


def no_system_caffe(name: str) -> ModuleSpec | None:
    return None


def system_caffe(name: str) -> ModuleSpec | None:
    return ModuleSpec(name, None, origin="/usr/lib/python3/dist-packages/caffe/__init__.py")


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_env_root_wins_over_cache_and_sys_path(tmp_path: Path, cache: Path) -> None:
    make_prefix(cache / f"caffe-{CAFFE_VERSION}-cpu")
    own = make_prefix(tmp_path / "own", cpu_only=False)
    env = {"DRNNGEN_CAFFE_ROOT": str(own), "DRNNGEN_CACHE": str(cache)}
    found = locate_caffe(env, find_spec=system_caffe)
    assert found.source == "DRNNGEN_CAFFE_ROOT"
    assert found.root == own
    assert found.python_path == own / "python"
    assert found.tool == own / "bin" / "caffe"
    assert found.cpu_only is False


def test_bogus_env_root_is_an_error_not_a_fallback(tmp_path: Path, cache: Path) -> None:
    make_prefix(cache / f"caffe-{CAFFE_VERSION}-cpu")
    env = {"DRNNGEN_CAFFE_ROOT": str(tmp_path / "nowhere"), "DRNNGEN_CACHE": str(cache)}
    with pytest.raises(EnvironmentProblem, match=r"DRNNGEN_CAFFE_ROOT=.*nowhere.*make caffe"):
        locate_caffe(env, find_spec=system_caffe)


def test_cache_prefix_when_no_env_root(cache: Path) -> None:
    prefix = make_prefix(cache / f"caffe-{CAFFE_VERSION}-cpu")
    found = locate_caffe({"DRNNGEN_CACHE": str(cache)}, find_spec=system_caffe)
    assert (found.source, found.root, found.cpu_only) == ("drnngen cache", prefix, True)


def test_gpu_build_preferred_over_cpu_build(cache: Path) -> None:
    make_prefix(cache / f"caffe-{CAFFE_VERSION}-cpu")
    gpu = make_prefix(cache / f"caffe-{CAFFE_VERSION}-gpu", cpu_only=False)
    assert locate_caffe({"DRNNGEN_CACHE": str(cache)}, find_spec=no_system_caffe).root == gpu


def test_incomplete_prefix_is_ignored(cache: Path) -> None:
    make_prefix(cache / f"caffe-{CAFFE_VERSION}-gpu", complete=False)
    cpu = make_prefix(cache / f"caffe-{CAFFE_VERSION}-cpu")
    assert locate_caffe({"DRNNGEN_CACHE": str(cache)}, find_spec=no_system_caffe).root == cpu


def test_sys_path_last(cache: Path) -> None:
    make_prefix(cache / f"caffe-{CAFFE_VERSION}-cpu", complete=False)
    found = locate_caffe({"DRNNGEN_CACHE": str(cache)}, find_spec=system_caffe)
    assert found.source == "sys.path"
    assert found.python_path is None
    assert found.package_dir == Path("/usr/lib/python3/dist-packages/caffe")
    assert found.cpu_only is None


def test_nothing_found_names_the_fix(cache: Path) -> None:
    with pytest.raises(EnvironmentProblem, match=r"Caffe not found .*run `make caffe`$"):
        locate_caffe({"DRNNGEN_CACHE": str(cache)}, find_spec=no_system_caffe)


def test_cache_defaults_to_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    prefix = make_prefix(tmp_path / ".cache" / "drnngen" / f"caffe-{CAFFE_VERSION}-cpu")
    assert locate_caffe({}, find_spec=no_system_caffe).root == prefix
