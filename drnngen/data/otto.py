"""OTTO `.jsonl` sessions (`{"session": s, "events": [{"aid": a, "ts": ms, "type": ...}]}`).

The published files are compact JSON with a fixed key order, so a line can be checked and
cut into numbers with array operations over the whole chunk. A line that is not in that
exact shape (spaces, other key order, escapes, or broken JSON) goes through `json.loads`
instead: correct for every valid line, and the one that reports a broken line's number.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt

from drnngen.data.events import PURCHASE, VIEW, EventChunk
from drnngen.data.textscan import Bytes, Chunk, Ints, line_bounds, seconds_from_millis
from drnngen.errors import UserError

_KINDS = {"clicks": VIEW, "carts": VIEW, "orders": PURCHASE}
_HEAD = b'{"session":'
_EVENTS = b',"events":['
_AID = b'{"aid":'
_TS = b',"ts":'
_TYPE = b',"type":"'
Mask = npt.NDArray[np.bool_]


def _matches(buf: Bytes, pos: Ints, pattern: bytes) -> Mask:
    """Whether `pattern` starts at each position."""
    ok = np.ones(len(pos), dtype=np.bool_)
    for j, byte in enumerate(pattern):
        at = pos + j
        inside = at < len(buf)
        ok &= inside & (buf[np.where(inside, at, 0)] == byte)
    return ok


def _number(buf: Bytes, first: Ints, stop: Ints) -> tuple[Ints, Mask]:
    """Digits in [first, stop) of each entry; a mask of entries that are not plain digits."""
    value = np.zeros(len(first), dtype=np.int64)
    bad = (stop - first < 1) | (stop - first > 18)
    for j in range(int(np.clip(stop - first, 0, 18).max(initial=0))):
        active = j < stop - first
        digit = buf[np.where(active, first + j, 0)].astype(np.int64) - 48
        bad |= active & ((digit < 0) | (digit > 9))
        value = np.where(active, value * 10 + digit, value)
    return value, bad


def _next(positions: Ints, after: Ints) -> Ints:
    """The first of the sorted `positions` at or after each `after` (len(buf) sentinel when none)."""
    index = np.searchsorted(positions, after)
    return np.append(positions, positions[-1] + 1 if len(positions) else 0)[index]


def _type_length(buf: Bytes, first: Ints) -> tuple[Ints, Ints]:
    """Length of the `type` word at each position (0 when unknown) and its event kind."""
    length = np.zeros(len(first), dtype=np.int64)
    kind = np.zeros(len(first), dtype=np.int64)
    for word, value in _KINDS.items():
        hit = _matches(buf, first, word.encode() + b'"}')
        length[hit] = len(word)
        kind[hit] = value
    return length, kind


def scan_chunk(chunk: Chunk, source: str) -> EventChunk:
    """Parse a chunk of OTTO lines; canonical lines vectorised, the others with `json`."""
    buf = np.frombuffer(chunk.data, dtype=np.uint8)
    starts, ends = line_bounds(buf)
    lines = chunk.first_line + np.arange(len(starts), dtype=np.int64)
    keep = ends > starts
    starts, ends, lines = starts[keep], ends[keep], lines[keep]
    if not len(starts):
        return _empty()
    commas = np.flatnonzero(buf == ord(","))
    session_end = _next(commas, starts + len(_HEAD))
    session, bad_line = _number(buf, starts + len(_HEAD), session_end)
    bad_line |= ~_matches(buf, starts, _HEAD) | ~_matches(buf, session_end, _EVENTS)
    body = session_end + len(_EVENTS)  # first byte after '['

    braces = np.flatnonzero(buf == ord("{"))
    event_at = braces[_matches(buf, braces, _AID)]
    owner = np.searchsorted(starts, event_at, side="right") - 1
    aid_end = _next(commas, event_at + len(_AID))
    aid, bad_event = _number(buf, event_at + len(_AID), aid_end)
    ts_end = _next(commas, aid_end + len(_TS))
    ts, bad_ts = _number(buf, aid_end + len(_TS), ts_end)
    type_at = ts_end + len(_TYPE)
    type_len, kind = _type_length(buf, type_at)
    event_end = type_at + type_len + 2  # past '"}'
    bad_event |= bad_ts | ~_matches(buf, aid_end, _TS) | ~_matches(buf, ts_end, _TYPE) | (type_len == 0)

    # Events must tile each line exactly: '[' e1 ',' e2 ... ']}' — so nothing is skipped.
    first_of_line = np.ones(len(event_at), dtype=np.bool_)
    first_of_line[1:] = owner[1:] != owner[:-1]
    last_of_line = np.ones(len(event_at), dtype=np.bool_)
    last_of_line[:-1] = owner[1:] != owner[:-1]
    expected_start = np.where(first_of_line, body[owner], np.roll(event_end, 1) + 1)
    bad_event |= event_at != expected_start
    bad_event |= ~first_of_line & ~_matches(buf, np.roll(event_end, 1), b",")
    bad_event |= last_of_line & ((event_end != ends[owner] - 2) | ~_matches(buf, event_end, b"]}"))
    counts = np.bincount(owner, minlength=len(starts))
    empty_ok = (counts == 0) & (body == ends - 2) & _matches(buf, body, b"]}")
    bad_line |= (counts == 0) & ~empty_ok
    bad_line |= np.bincount(owner, weights=bad_event, minlength=len(starts)) > 0

    good = ~bad_line[owner]
    fast = EventChunk(
        session=session[owner[good]],
        item=aid[good],
        time=seconds_from_millis(ts[good]),
        kind=kind[good].astype(np.int8),
    )
    slow = [_parse_line(buf[s:e].tobytes(), int(n), source) for s, e, n in zip(
        starts[bad_line], ends[bad_line], lines[bad_line], strict=True
    )]
    return _concat([fast, *slow])


def _parse_line(raw: bytes, line: int, source: str) -> EventChunk:
    """One line that is not in canonical form: full JSON parse, strict checks."""
    where = f"{source}:{line}"
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{where}: not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from exc
    except (RecursionError, ValueError):  # nesting deeper than Python's stack, a number of thousands of digits
        raise UserError(f"{where}: not an OTTO session (nested too deeply, or a number too long)") from None
    if not isinstance(record, dict) or not _is_int(record.get("session")):
        raise UserError(f"{where}: expected an object with an integer 'session'")
    events = record.get("events")
    if not isinstance(events, list):
        raise UserError(f"{where}: expected a list 'events'")
    rows = [_event(event, k, where) for k, event in enumerate(events)]
    return EventChunk(
        session=np.full(len(rows), record["session"], dtype=np.int64),
        item=np.array([r[0] for r in rows], dtype=np.int64),
        time=seconds_from_millis(np.array([r[1] for r in rows], dtype=np.int64)),
        kind=np.array([r[2] for r in rows], dtype=np.int8),
    )


def _event(event: Any, k: int, where: str) -> tuple[int, int, int]:
    if not isinstance(event, dict) or not _is_int(event.get("aid")) or not _is_int(event.get("ts")):
        raise UserError(f"{where}: event {k}: expected integer 'aid' and 'ts'")
    kind = _KINDS.get(event.get("type"))  # type: ignore[arg-type]
    if kind is None:
        raise UserError(f"{where}: event {k}: 'type' must be one of {', '.join(_KINDS)}")
    return event["aid"], event["ts"], kind


def _is_int(value: object) -> bool:
    """An integer that fits the int64 columns the events are kept in."""
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


def _empty() -> EventChunk:
    none = np.empty(0, dtype=np.int64)
    return EventChunk(none, none, none.astype(np.float64), none.astype(np.int8))


def _concat(parts: list[EventChunk]) -> EventChunk:
    if len(parts) == 1:
        return parts[0]
    return EventChunk(
        session=np.concatenate([p.session for p in parts]),
        item=np.concatenate([p.item for p in parts]),
        time=np.concatenate([p.time for p in parts]),
        kind=np.concatenate([p.kind for p in parts]),
    )
