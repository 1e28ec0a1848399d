"""Finding pycaffe without the user setting PYTHONPATH.

Precedence, first match wins:

1. ``DRNNGEN_CAFFE_ROOT`` — a prefix made by ``scripts/build_caffe.sh`` or a
   Caffe source tree built by hand (anything with ``python/caffe``). When it is
   set but holds no Caffe, that is an error, never a silent fall-through: the
   user asked for that Caffe.
2. The prefix that ``make caffe`` installs into the drnngen cache
   (``$DRNNGEN_CACHE``, default ``~/.cache/drnngen``): a CUDA build first, since
   it also runs on the CPU, then the CPU build. Only complete prefixes count.
3. ``import caffe`` already works in this interpreter (a system install).

Nothing here imports Caffe: the runner does that in a child process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any, Literal

from drnngen.errors import EnvironmentProblem

CAFFE_VERSION = "9.0.2"
ROOT_ENV = "DRNNGEN_CAFFE_ROOT"
CACHE_ENV = "DRNNGEN_CACHE"
FIX = "run `make caffe`"

Source = Literal["DRNNGEN_CAFFE_ROOT", "drnngen cache", "sys.path"]
SpecFinder = Callable[[str], ModuleSpec | None]


@dataclass(frozen=True)
class CaffeInstall:
    """Where a usable pycaffe lives.

    ``python_path`` goes in front of the child's PYTHONPATH (None when
    ``import caffe`` works as it is); ``build_info`` is the prefix's
    ``build-info.json`` when there is one.
    """

    source: Source
    package_dir: Path
    python_path: Path | None
    root: Path | None
    tool: Path | None
    build_info: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def cpu_only(self) -> bool | None:
        """True/False when the build recorded it, None when unknown."""
        if self.build_info is None or "cpu_only" not in self.build_info:
            return None
        return bool(self.build_info["cpu_only"])


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """The drnngen cache (``$DRNNGEN_CACHE``), shared with setup.py and the build script."""
    env = os.environ if env is None else env
    configured = env.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "drnngen"


def default_prefixes(env: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """The prefixes `make caffe` can create, in the order they are preferred."""
    cache = cache_dir(env)
    return tuple(cache / f"caffe-{CAFFE_VERSION}-{variant}" for variant in ("gpu", "cpu"))


def locate_caffe(
    env: Mapping[str, str] | None = None, find_spec: SpecFinder | None = None
) -> CaffeInstall:
    """The Caffe that drnngen runs, or EnvironmentProblem with a one-line fix."""
    env = os.environ if env is None else env
    root = env.get(ROOT_ENV)
    if root:
        return _from_root(Path(root).expanduser(), "DRNNGEN_CAFFE_ROOT")
    for prefix in default_prefixes(env):
        if (prefix / ".complete").is_file() and _package_dir(prefix) is not None:
            return _from_root(prefix, "drnngen cache")
    installed = _from_sys_path(find_spec or importlib.util.find_spec)
    if installed is not None:
        return installed
    raise EnvironmentProblem(
        f"Caffe not found (no {ROOT_ENV}, nothing in {cache_dir(env)}, "
        f"`import caffe` fails): {FIX}"
    )


def _package_dir(root: Path) -> Path | None:
    package = root / "python" / "caffe"
    if (package / "__init__.py").is_file() and any(package.glob("_caffe*.so")):
        return package
    return None


def _from_root(root: Path, source: Source) -> CaffeInstall:
    package = _package_dir(root)
    if package is None:
        raise EnvironmentProblem(
            f"{ROOT_ENV}={root} holds no built pycaffe (python/caffe/_caffe.so): "
            f"unset it or {FIX}"
        )
    return CaffeInstall(
        source=source,
        package_dir=package,
        python_path=package.parent,
        root=root,
        tool=_tool(root),
        build_info=_build_info(root),
    )


def _tool(root: Path) -> Path | None:
    # Our prefix has bin/caffe; a hand-built BVLC tree keeps it in build/tools.
    for candidate in ("bin/caffe", "build/tools/caffe", "build/tools/caffe.bin"):
        path = root / candidate
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def _build_info(root: Path) -> Mapping[str, Any] | None:
    path = root / "build-info.json"
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return info if isinstance(info, dict) else None


def _from_sys_path(find_spec: SpecFinder) -> CaffeInstall | None:
    try:
        spec = find_spec("caffe")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    package = Path(spec.origin).parent
    which = shutil.which("caffe")
    return CaffeInstall(
        source="sys.path",
        package_dir=package,
        python_path=None,
        root=None,
        tool=Path(which) if which else None,
    )
