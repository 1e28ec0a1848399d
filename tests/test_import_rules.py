"""The import rules of docs/ARCHITECTURE.md, read from the source: which
package of drnngen may import which (a new edge is a design decision, made
there first). And the tests' own rule: no test module imports another (shared
helpers live in the support modules, shared fixtures in tests/conftest.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "drnngen"

# package -> the drnngen packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "vocabulary": set(),
    "safe_yaml": {"errors"},
    "codegen": {"errors", "safe_yaml"},
    "data": {"errors"},
    "runner": {"errors", "vocabulary", "codegen"},
    "bind": {"codegen", "data"},
    "tuner": {"errors", "vocabulary", "safe_yaml", "codegen", "data", "bind", "runner"},
    "evaluation": {"errors", "vocabulary", "codegen", "data", "runner", "tuner"},
    "serving": {"errors", "vocabulary", "codegen", "data", "runner", "tuner", "evaluation"},
    "cli": {"errors", "vocabulary", "safe_yaml", "codegen", "data", "bind", "runner", "tuner", "evaluation",
            "serving"},
}


def _package(path: Path) -> str:
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """The drnngen packages a module imports (any depth, deferred imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "drnngen" and len(parts) > 1:
                found.add(parts[1])
    return found


def _modules() -> list[Path]:
    """Every module but drnngen/__init__.py; is_dir() follows the drnngen/codegen and
    drnngen/tuner symlinks to the top-level folders."""
    top = [p for p in ROOT.glob("*.py") if p.name != "__init__.py"]
    return sorted(top) + sorted(p for d in ROOT.iterdir() if d.is_dir() for p in d.glob("*.py"))


def test_every_package_has_a_rule() -> None:
    packages = {_package(p) for p in _modules()}
    assert {"codegen", "tuner", "runner"} <= packages
    assert packages == set(ALLOWED)


@pytest.mark.parametrize("module", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_rules(module: Path) -> None:
    package = _package(module)
    illegal = _imports(module) - ALLOWED[package] - {package}
    assert not illegal, f"{module.relative_to(ROOT.parent)} imports drnngen.{', drnngen.'.join(sorted(illegal))}"


def test_a_forbidden_edge_is_caught(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from drnngen.tuner.ledger import Ledger\n")
    assert _imports(bad) == {"tuner"}


def _test_module_imports(text: str) -> list[str]:
    """The test modules `text` imports, in code or in a line of code a test hands to a
    subprocess (`from tests.test_x import y`, `import tests.test_x`, `from tests import test_x`)."""
    named = re.findall(r"^[ \t]*(?:from|import)[ \t]+((?:tests)?\.?test_\w+)", text, re.M)
    return named + re.findall(r"^[ \t]*from[ \t]+(?:tests|\.)[ \t]+import[ \t]+.*?\b(test_\w+)", text, re.M)


def test_no_test_module_imports_another() -> None:
    tests = Path(__file__).resolve().parent
    found = {path.name: _test_module_imports(path.read_text()) for path in sorted(tests.glob("*.py"))}
    assert {name: modules for name, modules in found.items() if modules} == {}


def test_an_import_of_a_test_module_is_caught() -> None:
    script = 'SCRIPT = """\nfrom tests.test_a import f\n"""\nimport tests.test_b\nfrom tests import x, test_c\n'
    assert _test_module_imports(script) == ["tests.test_a", "tests.test_b", "test_c"]
    assert _test_module_imports("from tests.tuner_support import run\nimport tests.data_support\n") == []
