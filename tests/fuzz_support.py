"""The fuzz suite's promise and its case tables (not a test module; issue #13).

The promise, for every hostile input: `drnngen` either succeeds (exit 0) or says
exactly one line `error: ...` on stderr with exit code 2 — never a traceback, an
escaped exception or click's usage text — and in both cases nothing outside
`-o` changed (the inputs above all: same bytes, same mtime).

Cases are values, generated systematically: `Case(command, category, detail,
...)`, shown by pytest as `command:category:detail`, which tests/fuzz_tally.py
(`make fuzz`) counts per command and category.
"""

from __future__ import annotations

import dataclasses
import hashlib
import typing
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import NoneType, UnionType
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from drnngen.cli import cli
from drnngen.codegen.config import DRNNConfig
from drnngen.tuner.space import IntRange, SearchSpace

MAX_LINE = 1000  # an error line spells out no huge value


@dataclass(frozen=True)
class Case:
    """One hostile input: what to run (`args`, with {in}/{out}/{data}/{run} filled in by
    the test) and the files to write first under {in} (name → bytes)."""

    command: str
    category: str
    detail: str
    args: tuple[str, ...] = ()
    files: tuple[tuple[str, bytes], ...] = ()
    marks: tuple[Any, ...] = field(default=(), compare=False)

    @property
    def id(self) -> str:
        return f"{self.command}:{self.category}:{self.detail}"

    def param(self) -> Any:
        return pytest.param(self, id=self.id, marks=self.marks)


def params(cases: Iterable[Case]) -> list[Any]:
    """pytest parameters, one per case; two cases with the same id are a bug of the table."""
    listed = list(cases)
    ids = [case.id for case in listed]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, duplicates[:5]
    return [case.param() for case in listed]


# --- the promise ------------------------------------------------------------------------------------

def snapshot(root: Path, skip: Sequence[Path] = ()) -> dict[str, tuple[str, int]]:
    """Every entry under `root` but those under `skip`: files by sha256 and mtime."""
    files: dict[str, tuple[str, int]] = {}
    for path in sorted(root.rglob("*")):
        if any(path == s or path.is_relative_to(s) for s in skip):  # not resolved: a link may loop
            continue
        name = str(path.relative_to(root))
        if path.is_file() and not path.is_symlink():
            files[name] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        else:
            files[name] = ("entry", 0)
    return files


def stat_snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under `root` by size, mtime and inode: a cheap look at a large shared folder."""
    return {str(p.relative_to(root)): (st.st_size, st.st_mtime_ns, st.st_ino)
            for p in sorted(root.rglob("*")) for st in (p.lstat(),)}


def invoke(args: Sequence[str]) -> Result:
    return CliRunner().invoke(cli, list(args))


def assert_promise(result: Result, case: Case) -> None:
    """Exit 0, or exit 2 with one line `error: ...`; never a traceback."""
    said = result.stdout + result.stderr
    assert "Traceback" not in said, (case.id, said[-2000:])
    if result.exit_code == 0:
        assert result.exception is None, (case.id, result.exception)
        return
    assert result.exit_code == 2, (case.id, result.exit_code, result.exception, said[-2000:])
    assert isinstance(result.exception, SystemExit), (case.id, repr(result.exception))  # none escaped
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (case.id, result.stderr[-2000:])
    assert len(lines[0]) <= MAX_LINE, (case.id, lines[0][:200])


def run_case(case: Case, root: Path, fill: dict[str, Path], watch: Sequence[Path] = (),
             documented: Sequence[Path] = ()) -> Result:
    """Write the case's files under root/in, run it with root/out as -o, check the
    promise and that nothing but root/out (and the `documented` caches) changed
    (under root, and in `watch`)."""
    inputs = root / "in"
    inputs.mkdir(exist_ok=True)
    for name, content in case.files:
        (inputs / name).write_bytes(content)
    out = root / "out"
    values = {"in": str(inputs), "out": str(out), **{k: str(v) for k, v in fill.items()}}
    args = [arg.format(**values) for arg in case.args]
    before = [snapshot(root, [out, *documented]), *(stat_snapshot(w) for w in watch)]
    result = invoke(args)
    assert_promise(result, case)
    after = [snapshot(root, [out, *documented]), *(stat_snapshot(w) for w in watch)]
    changed = [sorted(set(a.items()) ^ set(b.items()))[:6] for a, b in zip(after, before, strict=True)]
    assert after == before, (case.id, "wrote outside -o or changed an input", changed)
    return result


# --- values a hostile YAML file holds (inline YAML, so one fits any key) ------------------------------

def _alias_bomb(levels: int = 9) -> str:
    """Billion laughs in one flow value: each level nine aliases of the one below."""
    parts = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    parts += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


YAML_VALUES: dict[str, dict[str, bytes]] = {
    "type": {"str": b'"abc"', "empty-str": b'""', "list": b"[1, 2]", "map": b"{a: 1}", "bool": b"true",
             "null": b"null", "timestamp": b"2001-12-14", "binary": b"!!binary aGk=", "set": b"!!set {a, b}"},
    "range": {"negative": b"-1", "zero": b"0", "neg-float": b"-0.5", "fraction": b"0.5", "int-max": b"2147483648"},
    "nan": {"nan": b".nan", "nan-str": b'"nan"'},
    "inf": {"inf": b".inf", "-inf": b"-.inf", "1e999": b"1e999"},
    "huge": {"23-digits": b"99999999999999999999999", "1e308": b"1.0e+308", "100k-digits": b"9" * 100_000,
             "long-str": b'"' + b"x" * 200_000 + b'"'},
    "alias-bomb": {"laughs": _alias_bomb().encode()},
    "nesting": {"lists": b"[" * 300 + b"]" * 300, "maps": b"{a: " * 200 + b"1" + b"}" * 200},
    "non-utf8": {"latin1": b'"caf\xe9"', "bad-byte": b"\xff\xfe", "nul": b'"a\x00b"', "surrogate": b'"\\ud800"'},
    "injection": {"quote": b"'x\" force_backward: true debug_info: true #'", "newline": b'"a\\nforce_backward: true"',
                  "python-tag": b'!!python/object/apply:os.system ["true"]', "tab": b'"a\\tb"'},
}
_TOKEN = "ZZFUZZVALUEZZ"


def _unwrap(hint: Any) -> Any:
    """X | None → X."""
    if isinstance(hint, UnionType) or typing.get_origin(hint) is typing.Union:
        rest = [a for a in typing.get_args(hint) if a is not NoneType]
        return rest[0] if len(rest) == 1 else hint
    return hint


def config_keys(cls: type[Any] = DRNNConfig, prefix: str = "") -> list[str]:
    """Every key of a config, sections included (`model`, `model.states`, `model.fnn.width`...)."""
    keys: list[str] = []
    hints = typing.get_type_hints(cls)
    for fld in dataclasses.fields(cls):
        key, hint = prefix + fld.name, _unwrap(hints[fld.name])
        keys.append(key)
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            keys.extend(config_keys(hint, key + "."))
    return keys


def space_keys() -> list[str]:
    """Every key of a search space, the bounds of its integer ranges included."""
    keys: list[str] = []
    hints = typing.get_type_hints(SearchSpace)
    for fld in dataclasses.fields(SearchSpace):
        keys.append(fld.name)
        if hints[fld.name] is IntRange:
            keys += [f"{fld.name}.min", f"{fld.name}.max"]
    return keys


def with_value(base: dict[str, Any], key: str) -> tuple[bytes, bytes]:
    """The YAML of `base` with `key` (dotted) set to a token, split around it: the
    hostile value goes in between."""
    mapping = yaml.safe_load(yaml.safe_dump(base))
    node = mapping
    *sections, last = key.split(".")
    for name in sections:
        if not isinstance(node.get(name), dict):
            node[name] = {}
        node = node[name]
    node[last] = _TOKEN
    before, token, after = yaml.safe_dump(mapping, sort_keys=False).encode().partition(_TOKEN.encode())
    assert token and _TOKEN.encode() not in after
    return before, after


def value_mutations(base: dict[str, Any], keys: Sequence[str], per_category: int | None = None
                    ) -> Iterator[tuple[str, str, bytes]]:
    """(category, detail, file) for every key × every category of hostile value: all its
    values, or `per_category` of them, taken in turn over the keys (so every value
    still meets several keys)."""
    for index, key in enumerate(keys):
        before, after = with_value(base, key)
        for category, values in YAML_VALUES.items():
            names = list(values)
            if per_category is not None and per_category < len(names):
                names = [names[(index * per_category + j) % len(names)] for j in range(per_category)]
            for name in names:
                yield category, f"{key}={name}", before + values[name] + after


def file_mutations(good: bytes) -> Iterator[tuple[str, str, bytes]]:
    """Whole-file damage to a good YAML file: (category, detail, file)."""
    yield "file", "empty", b""
    yield "file", "comment-only", b"# nothing\n"
    yield "file", "top-list", b"- 1\n- 2\n"
    yield "file", "top-scalar", b"42\n"
    yield "file", "top-null", b"~\n"
    yield "file", "truncated", good[: len(good) // 2]
    yield "file", "duplicate-key", good + good
    yield "file", "tabs", good.replace(b"  ", b"\t")
    yield "file", "2MiB", good + b"#" + b"x" * (2 << 20) + b"\n"
    yield "file", "bad-syntax", b"a: [1, 2\nb: }\n"
    yield "file", "merge-key", b"base: &b {name: x}\n<<: *b\n"
    yield "file", "many-docs", good + b"---\n" + good
    yield "non-utf8", "utf16", good.decode().encode("utf-16")
    yield "non-utf8", "latin1-comment", b"# caf\xe9\n" + good
    yield "non-utf8", "binary", bytes(range(256)) * 8
    yield "non-utf8", "nul-bytes", good.replace(b"\n", b"\x00\n", 3)
    yield "file", "bom", b"\xef\xbb\xbf" + good
    yield "file", "crlf", good.replace(b"\n", b"\r\n")
    yield "file", "100k-keys", b"".join(b"k%d: %d\n" % (i, i) for i in range(100_000))


# --- bad option values -----------------------------------------------------------------------------

INT_VALUES = {"zero": "0", "negative": "-1", "huge": "9" * 30, "float": "1.5", "word": "many", "empty": "",
              "nan": "nan", "inf": "inf", "hex": "0x10", "space": " 3 ", "2**63": str(2**63)}
FLOAT_VALUES = {"zero": "0", "negative": "-1", "nan": "nan", "inf": "inf", "-inf": "-inf", "1e400": "1e400",
                "1e308": "1e308", "word": "fast", "empty": "", "tiny": "1e-320", "huge-int": "9" * 400}
