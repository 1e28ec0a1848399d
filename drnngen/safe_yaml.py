"""The one way drnngen reads a user's YAML file (configs, search spaces).

Bounded in every dimension a hostile or broken file could blow up, and every
problem is one `UserError` line naming the file (and the line where YAML knows it):

* a regular file only (a FIFO, a device such as /dev/zero or a folder is refused
  before a byte is read, so nothing blocks), at most `MAX_BYTES`;
* UTF-8 text only (binary, UTF-16/32 and Latin-1 files are named as such);
* nesting at most `MAX_DEPTH` deep (no RecursionError);
* at most `MAX_NODES` values, also with every alias expanded, at most `MAX_ALIASES`
  aliases (`*name`) and no recursive alias (a "billion laughs" file fails at once);
* no duplicate key in a mapping (a second `model:` would silently win);
* integers of at most `MAX_INT_CHARS` characters (Python refuses to convert, or
  takes quadratic time on, 100000-digit numbers).

`short_repr` is the bounded repr for error messages about such values.
"""

from __future__ import annotations

import os
import reprlib
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.reader import ReaderError

from drnngen.errors import UserError

MAX_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_ALIASES = 16
MAX_NODES = 10_000
MAX_INT_CHARS = 40
REPR_LIMIT = 80

_MERGE_TAG = "tag:yaml.org,2002:merge"
_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}


def load_yaml(path: str | Path, what: str) -> Any:
    """The parsed content of the YAML file `path` (None when empty); `what` names the
    kind of file in the messages (`config`, `search-space`)."""
    path = Path(path)
    text = _decode(_read(path, what), path)
    return loads_yaml(text, str(path))


def loads_yaml(text: str, where: str) -> Any:
    """Parse YAML text under the same limits as `load_yaml`; `where` prefixes the messages."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise UserError(f"{where}: larger than {MAX_BYTES // 2**20} MiB; not a config drnngen reads")
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f" line {mark.line + 1}:" if mark is not None else ""
        problem = exc.problem or exc.context or "not valid YAML"
        raise UserError(f"{where}:{line} malformed YAML: {problem}") from None
    except ReaderError as exc:  # a control character; the reader gives its position, not a mark
        number = text.count("\n", 0, exc.position) + 1
        raise UserError(f"{where}: line {number}: malformed YAML: character #x{exc.character:04x} is not allowed "
                        "(a control character)") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{where}: malformed YAML: {_one_line(str(exc))}") from None
    except RecursionError:  # a safety net: MAX_DEPTH stops nesting long before
        raise UserError(f"{where}: malformed YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def short_repr(value: object, limit: int = REPR_LIMIT) -> str:
    """repr(value) for an error message: nested containers and long strings
    abbreviated (without walking all of them), at most `limit` characters."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        text = f"<an integer of {value.bit_length()} bits>"
    else:
        try:
            text = _REPR.repr(value)
        except Exception:  # a hostile __repr__ must not hide the real error
            text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read(path: Path, what: str) -> bytes:
    """The bytes of a regular file, opened without blocking (a FIFO would wait for a writer)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a {what} file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise UserError(f"{path}: is a folder, not a {what} file")
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{path}: not a regular file (a pipe or a device?); give a {what} file")
        if info.st_size > MAX_BYTES:
            raise UserError(f"{path}: {info.st_size:,} bytes, larger than {MAX_BYTES // 2**20} MiB; "
                            f"not a {what} file drnngen reads")
        chunks, size = [], 0
        while size <= MAX_BYTES:
            chunk = os.read(fd, MAX_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    finally:
        os.close(fd)
    if size > MAX_BYTES:
        raise UserError(f"{path}: larger than {MAX_BYTES // 2**20} MiB; not a {what} file drnngen reads")
    return b"".join(chunks)


def _decode(data: bytes, path: Path) -> str:
    for bom, encoding in _BOMS.items():
        if data.startswith(bom):
            raise UserError(f"{path}: {encoding} text; save it as UTF-8")
    if b"\x00" in data:
        raise UserError(f"{path}: binary data (NUL bytes), not YAML text; save it as UTF-8 text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                        "save it as UTF-8") from None
    return text.removeprefix("\ufeff")


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _Loader(yaml.SafeLoader):
    """SafeLoader with bounded nesting and aliases, no duplicate keys, bounded integers."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise ComposerError(None, None, f"more than {MAX_ALIASES} aliases (*name)", self._mark())
            return super().compose_node(parent, index)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise ComposerError(None, None, f"more than {MAX_NODES:,} values", self._mark())
        if self._depth >= MAX_DEPTH:
            raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", self._mark())
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _mark(self) -> Any:
        """Where the next event starts."""
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        return event.start_mark

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = key in first
                except TypeError:  # unhashable: SafeConstructor reports it
                    continue
                if seen:
                    raise ConstructorError(None, None, f"duplicate key {short_repr(key)} (first on line "
                                           f"{first[key] + 1})", key_node.start_mark)
                first[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = self.construct_scalar(node)
        if isinstance(text, str) and len(text) > MAX_INT_CHARS:
            raise ConstructorError(None, None, f"an integer of {len(text)} characters (at most "
                                   f"{MAX_INT_CHARS})", node.start_mark)
        value: int = super().construct_yaml_int(node)
        return value


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a recursive alias, or more than MAX_NODES nodes once aliases are expanded.

    Sizes are memoised per node, so a shared subtree is counted without being walked
    again: the check is linear in the file even when the expansion is exponential."""
    size: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            open_nodes.discard(key)
            size[key] = 1 + sum(size[id(child)] for child in children)
            if size[key] > MAX_NODES:
                raise ComposerError(None, None, f"more than {MAX_NODES:,} values once its aliases are expanded",
                                    node.start_mark)
            continue
        if key in size:
            continue
        if key in open_nodes:
            raise ComposerError(None, None, "a recursive alias (a node that contains itself)", node.start_mark)
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in size)
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxdict = _REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = 6
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlong = 40
