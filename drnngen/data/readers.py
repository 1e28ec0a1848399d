"""Readers of the common click-log formats into one columnar `EventLog`.

Every reader streams its file in chunks of whole lines and parses each chunk with the
vectorised scanners of `textscan` (or `otto`); only the parsed columns are kept.

Header names match whatever their letter case and `_` (`SessionId`, `session_id`,
`SESSIONID` and `sessionid` name one column), as public copies of the same data spell
them differently. Given split files (`LogSpec.valid`, `LogSpec.test`) are read by one
collector, so string ids and users get the same codes in every file; each event keeps
the split of its file (`EventLog.split`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from drnngen.data import otto
from drnngen.data.events import (
    MISSING_USER,
    PURCHASE,
    VIEW,
    EventChunk,
    EventLog,
    Keys,
    KeyTable,
    encode_users,
)
from drnngen.data.sessions import SPLITS, dense_codes
from drnngen.data.textscan import (
    DEFAULT_CHUNK_BYTES,
    Chunk,
    Column,
    Digest,
    Floats,
    Ints,
    Table,
    content_digest,
    iter_chunks,
    parse_datetime,
    parse_float,
    parse_int,
    parse_key,
    read_header,
    seconds_from_millis,
    split_fields,
)
from drnngen.errors import UserError

Progress = Callable[[str], None]
FORMATS = ("yoochoose", "gru4rec", "diginetica", "otto", "csv")
TIME_UNITS = ("s", "ms", "iso")
CSV_ROLES = ("session", "item", "time", "user", "type")
DEFAULT_PURCHASE_VALUES = ("buy", "buys", "purchase", "order", "orders", "transaction")
_SUFFIX_FORMATS = {".dat": "yoochoose", ".tsv": "gru4rec", ".jsonl": "otto", ".csv": "csv", ".txt": "gru4rec"}


@dataclass(frozen=True)
class LogSpec:
    """Which files to read and how (`columns`, `delimiter`, `time_unit` for csv/gru4rec)."""

    format: str
    events: Path
    buys: Path | None = None
    users: Path | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    delimiter: str | None = None
    time_unit: str | None = None
    purchase_values: tuple[str, ...] = DEFAULT_PURCHASE_VALUES
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    valid: Path | None = None  # given validation split (same format as `events`)
    test: Path | None = None  # given test split

    @property
    def given_splits(self) -> bool:
        """Whether the splits come as files (`events` is then the train split)."""
        return self.valid is not None or self.test is not None

    def inputs(self) -> tuple[Path | None, ...]:
        """Every file the spec reads."""
        return (self.events, self.buys, self.users, self.valid, self.test)


def guess_format(path: Path) -> str:
    """The format implied by a file name (`.dat` yoochoose, `.tsv` gru4rec, `.jsonl` otto, …)."""
    name = path.name.removesuffix(".gz")
    if name.startswith("train-item-views") or name.startswith("train-purchases"):
        return "diginetica"
    found = _SUFFIX_FORMATS.get(Path(name).suffix)
    if found is None:
        raise UserError(f"{path}: cannot tell the format from the name; pass --format ({', '.join(FORMATS)})")
    return found


def read_log(spec: LogSpec, progress: Progress) -> EventLog:
    """Read the events (and buys and users files) of `spec` into one `EventLog`."""
    if spec.format not in FORMATS:
        raise UserError(f"unknown format {spec.format!r} (one of {', '.join(FORMATS)})")
    if spec.format == "otto" and spec.buys is not None:
        raise UserError("--buys: OTTO files carry their orders inline; drop --buys")
    if spec.given_splits and (spec.valid is None or spec.test is None):
        raise UserError("--valid-log and --test-log go together (the train, validation and test files)")
    if spec.given_splits and spec.buys is not None:
        raise UserError("--buys does not combine with --valid-log/--test-log: give split files that carry "
                        "their purchases inline (otto, or csv with a type column), or use --target next-item")
    collector = _Collector(string_ids=spec.format == "csv")
    for split, (role, path) in enumerate(_files(spec)):
        if path is not None:
            digest = content_digest()
            collector.read(role, path, digest, _READERS[spec.format](spec, path, role, digest), progress,
                           split if spec.given_splits else None)
    log = collector.finish()
    if spec.users is not None:
        _join_users(log, spec, collector, progress)
    if log.split is not None:
        _separate_sessions(log)
    return log


def _files(spec: LogSpec) -> list[tuple[str, Path | None]]:
    if spec.given_splits:
        return [("events", spec.events), ("events", spec.valid), ("events", spec.test)]
    return [("events", spec.events), ("buys", spec.buys)]


def _separate_sessions(log: EventLog) -> None:
    """Give each file's sessions their own ids, so a session id that two split files
    share stays two sessions (the split files of the field never share one)."""
    assert log.split is not None
    offset = 0
    session = np.empty_like(log.session)
    for split in range(len(SPLITS)):
        mine = log.split == split
        codes, keys = dense_codes(log.session[mine])
        session[mine] = codes + offset
        offset += len(keys)
    log.session = session
    log.session_names = None  # the ids are codes now; the files' ids are no longer needed


class _Collector:
    """Accumulates parsed chunks; non-integer ids become dense codes."""

    def __init__(self, string_ids: bool) -> None:
        self.sessions = KeyTable() if string_ids else None
        self.items = KeyTable() if string_ids else None
        self.users = KeyTable()
        self.columns: dict[str, list[npt.NDArray[Any]]] = {
            c: [] for c in ("session", "item", "time", "kind", "user", "split")}
        self.files: list[dict[str, Any]] = []
        self.given_splits = False

    def read(
        self, role: str, path: Path, digest: Digest, chunks: Iterator[tuple[int, EventChunk]], progress: Progress,
        split: int | None = None,
    ) -> None:
        """Add the events of one file (tagged with `split` when the splits are given)."""
        count = 0
        for lines, part in chunks:
            self._add(part)
            count += len(part.time)
            if split is not None:
                self.columns["split"].append(np.full(len(part.time), split, dtype=np.int8))
            progress(f"reading {path.name}: {lines:,} lines, {count:,} events")
        if count == 0:
            raise UserError(f"{path}: no events")
        entry: dict[str, Any] = {"role": role, "path": str(path.resolve()), "bytes": path.stat().st_size,
                                 "sha256": digest.hexdigest(), "events": count}
        if split is not None:
            entry["split"] = SPLITS[split]
            self.given_splits = True
        self.files.append(entry)

    def _add(self, part: EventChunk) -> None:
        session, item = part.session, part.item
        if self.sessions is not None and self.items is not None:  # csv: ids are bytes keys
            session, item = self.sessions.encode(cast(Keys, session)), self.items.encode(cast(Keys, item))
        user = np.full(len(part.time), MISSING_USER) if part.user is None else encode_users(self.users, part.user)
        for name, values in (("session", session), ("item", item), ("time", part.time), ("kind", part.kind),
                             ("user", user)):
            self.columns[name].append(values)

    def finish(self) -> EventLog:
        """The log so far; the chunks are released as each column is joined."""

        def join(name: str, dtype: type) -> Any:
            parts = self.columns.pop(name)
            return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)

        split = join("split", np.int8) if self.given_splits else None
        return EventLog(
            session=join("session", np.int64), item=join("item", np.int64), time=join("time", np.float64),
            kind=join("kind", np.int8), user=join("user", np.int64),
            item_names=self.items.names() if self.items is not None else None, files=self.files,
            split=split, session_names=self.sessions.names() if self.sessions is not None else None,
        )


UTF8_BOM = b"\xef\xbb\xbf"


def _chunks(path: Path, spec: LogSpec, digest: Digest, skip_header: bool) -> Iterator[tuple[int, Chunk]]:
    """Chunks of `path` (header line dropped) with the number of the last line read so far."""
    seen = False
    for chunk in iter_chunks(path, spec.chunk_bytes, digest):
        seen = True
        last_line = chunk.last_line
        if chunk.first_line == 1 and chunk.data.startswith(UTF8_BOM):  # editors on Windows write one
            chunk = Chunk(chunk.data[len(UTF8_BOM):], 1, chunk.lines)
        if skip_header and chunk.first_line == 1:
            cut = chunk.data.index(b"\n") + 1
            chunk = Chunk(chunk.data[cut:], 2, chunk.lines - 1)
            if not chunk.data:
                continue
        yield last_line, chunk
    if not seen:
        raise UserError(f"{path}: empty file")


# --- one reader per format: (spec, path, role) -> (lines read so far, chunk of events) ---------

def _yoochoose(spec: LogSpec, path: Path, role: str, digest: Digest) -> Iterator[tuple[int, EventChunk]]:
    """`clicks.dat`: session,timestamp,item,category; `buys.dat`: session,timestamp,item,price,quantity."""
    n_fields, kind = (4, VIEW) if role == "events" else (5, PURCHASE)
    for lines, chunk in _chunks(path, spec, digest, skip_header=False):
        table = split_fields(chunk, ",", n_fields, str(path))
        yield lines, EventChunk(
            session=parse_int(table.column(0, "session id")),
            time=parse_datetime(table.column(1, "timestamp")),
            item=parse_int(table.column(2, "item id")),
            kind=np.full(table.rows, kind, dtype=np.int8),
        )


def _gru4rec(spec: LogSpec, path: Path, role: str, digest: Digest) -> Iterator[tuple[int, EventChunk]]:
    """Tab-separated with a header: SessionId, ItemId, Time (Unix seconds), optional UserId."""
    delimiter = spec.delimiter or "\t"
    header = read_header(path, delimiter, str(path))
    where = _columns(header, path, {"session": "SessionId", "item": "ItemId", "time": "Time"}, ("UserId",))
    kind = VIEW if role == "events" else PURCHASE
    for lines, chunk in _chunks(path, spec, digest, skip_header=True):
        table = split_fields(chunk, delimiter, len(header), str(path))
        yield lines, EventChunk(
            session=parse_int(_col(table, where, "session")),
            item=parse_int(_col(table, where, "item")),
            time=_time(_col(table, where, "time"), spec.time_unit or "s"),
            kind=np.full(table.rows, kind, dtype=np.int8),
            user=parse_key(_col(table, where, "UserId")) if "UserId" in where else None,
        )


def _diginetica(spec: LogSpec, path: Path, role: str, digest: Digest) -> Iterator[tuple[int, EventChunk]]:
    """`train-item-views.csv` / `train-purchases.csv` (`;`): time = eventdate + timeframe (ms)."""
    header = read_header(path, ";", str(path))
    names = {"session": "sessionId", "item": "itemId", "timeframe": "timeframe", "date": "eventdate"}
    where = _columns(header, path, names, ("userId",))
    kind = VIEW if role == "events" else PURCHASE
    for lines, chunk in _chunks(path, spec, digest, skip_header=True):
        table = split_fields(chunk, ";", len(header), str(path))
        day = parse_datetime(_col(table, where, "date"))
        yield lines, EventChunk(
            session=parse_int(_col(table, where, "session")),
            item=parse_int(_col(table, where, "item")),
            time=day + seconds_from_millis(parse_int(_col(table, where, "timeframe"))),
            kind=np.full(table.rows, kind, dtype=np.int8),
            user=parse_key(_col(table, where, "userId")) if "userId" in where else None,
        )


def _otto(spec: LogSpec, path: Path, role: str, digest: Digest) -> Iterator[tuple[int, EventChunk]]:
    """One JSON session a line; `clicks` and `carts` are page views, `orders` purchases."""
    for lines, chunk in _chunks(path, spec, digest, skip_header=False):
        yield lines, otto.scan_chunk(chunk, str(path))


def _csv(spec: LogSpec, path: Path, role: str, digest: Digest) -> Iterator[tuple[int, EventChunk]]:
    """Any delimited file with a header; `columns` maps session/item/time[/user/type] to names."""
    delimiter = spec.delimiter or ","
    missing = [role_ for role_ in ("session", "item", "time") if role_ not in spec.columns]
    if missing:
        raise UserError(f"--columns must name the {', '.join(missing)} column (e.g. session=sid,item=iid,time=ts)")
    header = read_header(path, delimiter, str(path))
    required = {name: spec.columns[name] for name in ("session", "item", "time")}
    optional = tuple(spec.columns[name] for name in ("user", "type") if name in spec.columns)
    where = _columns(header, path, required, optional)
    purchase_words = np.array([v.encode() for v in spec.purchase_values]) if spec.purchase_values else None
    for lines, chunk in _chunks(path, spec, digest, skip_header=True):
        table = split_fields(chunk, delimiter, len(header), str(path), quoted=True)
        kind = np.full(table.rows, VIEW if role == "events" else PURCHASE, dtype=np.int8)
        if "type" in spec.columns and role == "events" and purchase_words is not None:
            kind[np.isin(parse_key(_col(table, where, spec.columns["type"])), purchase_words)] = PURCHASE
        yield lines, EventChunk(
            session=parse_key(_col(table, where, "session")),
            item=parse_key(_col(table, where, "item")),
            time=_time(_col(table, where, "time"), spec.time_unit or "s"),
            kind=kind,
            user=parse_key(_col(table, where, spec.columns["user"])) if "user" in spec.columns else None,
        )


_READERS: dict[str, Callable[[LogSpec, Path, str, Digest], Iterator[tuple[int, EventChunk]]]] = {
    "yoochoose": _yoochoose,
    "gru4rec": _gru4rec,
    "diginetica": _diginetica,
    "otto": _otto,
    "csv": _csv,
}


def _columns(header: list[str], path: Path, required: Mapping[str, str], optional: tuple[str, ...]) -> dict[str, int]:
    """Positions of the named columns: role → index for required ones, name → index for optional.

    A name matches a header field exactly or, failing that, whatever its letter case and
    `_` (`column_key`); two fields that match one name alike are an error, not a guess."""
    found: dict[str, int] = {}
    for role, name in required.items():
        at = _position(header, name, path)
        if at is None:
            raise UserError(f"{path}:1: missing column {name!r} (the header has: {_listed(header)})")
        found[role] = at
    for name in optional:
        at = _position(header, name, path)
        if at is not None:
            found[name] = at
        elif name not in ("UserId", "userId"):  # those two are optional by nature
            raise UserError(f"{path}:1: missing column {name!r} (the header has: {_listed(header)})")
    return found


def column_key(name: str) -> str:
    """A header name without letter case and `_`: `session_id`, `sessionId` → `sessionid`."""
    return name.replace("_", "").casefold()


def _position(header: list[str], name: str, path: Path) -> int | None:
    if name in header:
        return header.index(name)
    matches = [at for at, field_name in enumerate(header) if column_key(field_name) == column_key(name)]
    if len(matches) > 1:
        shown = ", ".join(repr(header[at]) for at in matches)
        raise UserError(f"{path}:1: the columns {shown} all match {name!r}; rename one")
    return matches[0] if matches else None


def _listed(header: list[str]) -> str:
    """A header's names for a one-line message: a binary file's "header" is cut and escaped."""
    text = ", ".join(header)
    shown = text if len(text) <= 200 else text[:200] + "..."
    return shown if shown.isprintable() else ascii(shown)


def _col(table: Table, where: Mapping[str, int], role: str) -> Column:
    return table.column(where[role], f"column {role!r}")


def _time(col: Column, unit: str) -> Floats:
    if unit == "iso":
        return parse_datetime(col)
    seconds = parse_float(col)
    return seconds / 1000.0 if unit == "ms" else seconds


# --- users ------------------------------------------------------------------------------------

def _join_users(log: EventLog, spec: LogSpec, collector: _Collector, progress: Progress) -> None:
    """Fill unknown users from a `session,user` CSV (sessions the file lacks stay unknown)."""
    assert spec.users is not None
    path = spec.users
    header = [_USERS_ALIASES.get(column_key(name), name) for name in read_header(path, ",", str(path))]
    where = _columns(header, path, {"session": "session", "user": "user"}, ())
    sessions: list[Ints] = []
    users: list[Ints] = []
    digest = content_digest()
    for _, chunk in _chunks(path, spec, digest, skip_header=True):
        table = split_fields(chunk, ",", len(header), str(path))
        column = _col(table, where, "session")
        if collector.sessions is None:
            sessions.append(parse_int(column))
        else:
            sessions.append(collector.sessions.lookup(parse_key(column)))
        users.append(encode_users(collector.users, parse_key(_col(table, where, "user"))))
    session_ids, user_ids = _first_user_per_session(np.concatenate(sessions or [np.empty(0, np.int64)]),
                                                    np.concatenate(users or [np.empty(0, np.int64)]))
    slot = np.clip(np.searchsorted(session_ids, log.session), 0, max(len(session_ids) - 1, 0))
    known = (log.user == MISSING_USER) & (len(session_ids) > 0)
    if len(session_ids):
        known &= session_ids[slot] == log.session
        log.user[known] = user_ids[slot[known]]
    log.files.append({"role": "users", "path": str(path.resolve()), "bytes": path.stat().st_size,
                      "sha256": digest.hexdigest(), "sessions": len(session_ids)})
    progress(f"users: {int(known.sum()):,} events of known users")


#: The users file's columns under their other spellings (`session_id`, `SessionId`, `userId`, …).
_USERS_ALIASES = {"session": "session", "sessionid": "session", "user": "user", "userid": "user"}


def _first_user_per_session(sessions: Ints, users: Ints) -> tuple[Ints, Ints]:
    keep = users != MISSING_USER
    unique, first = np.unique(sessions[keep], return_index=True)
    return unique, users[keep][first]
