"""Vectorised parsing of delimited text: the readers' hot path.

A chunk of whole lines becomes one NumPy byte buffer; field boundaries are found with
array operations and each column is parsed digit position by digit position over all
rows at once. The cost per event is a few NumPy element operations, never a Python
statement, which is what keeps conversion above a million clicks a second.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import numpy.typing as npt

from drnngen.errors import UserError

Bytes = npt.NDArray[np.uint8]
Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Digest = Any  # a hashlib hash object (its class is private in typeshed)

DEFAULT_CHUNK_BYTES = 32 << 20
_NL, _CR, _QUOTE, _UNIT_SEP = 10, 13, 34, 31
_MAX_INT_DIGITS = 18  # 10**18 < 2**63: no overflow check needed
_MAX_KEY_BYTES = 64
_DAY = 86400


@dataclass(frozen=True)
class Chunk:
    """Whole lines of one file, each ending in a newline."""

    data: bytes
    first_line: int  # 1-based number of the chunk's first line in its file


def open_binary(path: Path) -> IO[bytes]:
    """Open a log for reading; `.gz` logs are decompressed on the fly."""
    try:
        if path.suffix == ".gz":
            return cast(IO[bytes], gzip.open(path, "rb"))
        return path.open("rb")
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def iter_chunks(path: Path, chunk_bytes: int, digest: Digest | None = None) -> Iterator[Chunk]:
    """Yield the file as chunks of whole lines (a missing final newline is added).

    `digest`, when given, is fed every byte read, so the content hash costs no second pass.
    """
    line = 1
    carry = b""
    with open_binary(path) as handle:
        while True:
            try:
                block = handle.read(chunk_bytes)
            except (OSError, EOFError) as exc:
                raise UserError(f"{path}: cannot read: {exc}") from exc
            if not block:
                break
            if digest is not None:
                digest.update(block)
            block = carry + block if carry else block
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                carry = block
                continue
            carry = block[cut:]
            chunk = Chunk(block[:cut], line)
            line += chunk.data.count(b"\n")
            yield chunk
    if carry:
        yield Chunk(carry + b"\n", line)


def line_bounds(buf: Bytes) -> tuple[Ints, Ints]:
    """Start and end (exclusive, before any `\\r`) of every line of a newline-terminated buffer."""
    newlines = np.flatnonzero(buf == _NL)
    starts = np.empty_like(newlines)
    starts[:1] = 0
    starts[1:] = newlines[:-1] + 1
    has_cr = (newlines > starts) & (buf[np.maximum(newlines - 1, 0)] == _CR)
    return starts, newlines - has_cr


@dataclass(frozen=True)
class Column:
    """One field of every row of a chunk: byte ranges into the chunk's buffer."""

    buf: Bytes
    start: Ints
    end: Ints
    lines: Ints  # line number of each row, for error messages
    source: str
    name: str

    def __len__(self) -> int:
        return len(self.start)

    def text(self, row: int) -> str:
        """The raw text of one row's field (for error messages)."""
        raw = self.buf[self.start[row] : self.end[row]].tobytes()
        return raw.decode("utf-8", errors="replace")[:60]

    def fail(self, bad: npt.NDArray[np.bool_], expected: str) -> None:
        """Raise a one-line error naming the first row where `bad` is true."""
        if bad.any():
            row = int(np.argmax(bad))
            raise UserError(
                f"{self.source}:{self.lines[row]}: {self.name}: expected {expected}, "
                f"found {self.text(row)!r}"
            )

    def select(self, rows: npt.NDArray[np.bool_]) -> Column:
        """The same column restricted to some rows."""
        return Column(self.buf, self.start[rows], self.end[rows], self.lines[rows], self.source, self.name)


@dataclass(frozen=True)
class Table:
    """The non-blank lines of a chunk split into fields."""

    buf: Bytes
    starts: Ints  # [rows, fields]
    ends: Ints
    lines: Ints
    source: str

    @property
    def rows(self) -> int:
        return len(self.lines)

    def column(self, index: int, name: str) -> Column:
        return Column(self.buf, self.starts[:, index], self.ends[:, index], self.lines, self.source, name)


def split_fields(chunk: Chunk, delimiter: str, n_fields: int, source: str, quoted: bool = False) -> Table:
    """Split a chunk into `n_fields` fields per line; blank lines are skipped.

    `quoted` allows CSV quoting: a chunk that contains a quote character is re-read with
    Python's csv module (slower, but only for files that need it).
    """
    sep = ord(delimiter)
    if quoted and chunk.data.find(b'"') >= 0:
        chunk, sep = _unquote(chunk, delimiter, source), _UNIT_SEP
    buf = np.frombuffer(chunk.data, dtype=np.uint8)
    starts, ends = line_bounds(buf)
    lines = chunk.first_line + np.arange(len(starts), dtype=np.int64)
    delims = np.flatnonzero(buf == sep)
    counts = np.bincount(np.searchsorted(starts, delims, side="right") - 1, minlength=len(starts))
    keep = ends > starts
    wrong = keep & (counts != n_fields - 1)
    if wrong.any():
        row = int(np.argmax(wrong))
        raise UserError(
            f"{source}:{lines[row]}: expected {n_fields} fields separated by {delimiter!r}, "
            f"found {counts[row] + 1}"
        )
    inner = delims.reshape(-1, n_fields - 1) if n_fields > 1 else np.empty((int(keep.sum()), 0), np.int64)
    field_starts = np.column_stack([starts[keep], inner + 1])
    field_ends = np.column_stack([inner, ends[keep]])
    return Table(buf, field_starts, field_ends, lines[keep], source)


def _unquote(chunk: Chunk, delimiter: str, source: str) -> Chunk:
    """Re-serialise quoted CSV lines with an unambiguous separator (ASCII unit separator)."""
    text = chunk.data.decode("utf-8", errors="replace")
    out: list[str] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    for row in reader:
        if reader.line_num != len(out) + 1:
            raise UserError(f"{source}:{chunk.first_line + len(out)}: newline inside a quoted field")
        if any("\x1f" in field for field in row):
            raise UserError(f"{source}:{chunk.first_line + len(out)}: control character \\x1f in a field")
        out.append("\x1f".join(row))
    return Chunk(("\n".join(out) + "\n").encode(), chunk.first_line)


def _digit_at(col: Column, offset: Ints | int, active: npt.NDArray[np.bool_]) -> Ints:
    """The digit at `start + offset` of every active row (garbage > 9 marks a non-digit)."""
    pos = np.where(active, col.start + offset, 0)
    return col.buf[pos].astype(np.int64) - 48


def _horner(col: Column, first: Ints, last: Ints) -> tuple[Ints, npt.NDArray[np.bool_]]:
    """Value of the decimal digits in [start+first, start+last) of every row, and a bad-row mask."""
    count = last - first
    value = np.zeros(len(col), dtype=np.int64)
    bad = np.zeros(len(col), dtype=np.bool_)
    for j in range(int(count.max(initial=0))):
        active = j < count
        digit = _digit_at(col, first + j, active)
        bad |= active & ((digit < 0) | (digit > 9))
        value = np.where(active, value * 10 + digit, value)
    return value, bad


def parse_int(col: Column) -> Ints:
    """Parse `[-]digits` in every row."""
    length = col.end - col.start
    negative = (length > 0) & (col.buf[np.where(length > 0, col.start, 0)] == ord("-"))
    first = negative.astype(np.int64)
    value, bad = _horner(col, first, length)
    col.fail(bad | (length - first < 1) | (length - first > _MAX_INT_DIGITS), "an integer")
    signed: Ints = np.where(negative, -value, value)
    return signed


def parse_float(col: Column) -> Floats:
    """Parse `[-]digits[.digits]` (no exponent) in every row — e.g. Unix times with a fraction."""
    length = col.end - col.start
    dot = np.full(len(col), -1, dtype=np.int64)
    for j in range(int(length.max(initial=0))):
        is_dot = (j < length) & (dot < 0) & (col.buf[np.where(j < length, col.start + j, 0)] == ord("."))
        dot[is_dot] = j
    whole_end = np.where(dot >= 0, dot, length)
    negative = (length > 0) & (col.buf[np.where(length > 0, col.start, 0)] == ord("-"))
    first = negative.astype(np.int64)
    whole, bad_whole = _horner(col, first, whole_end)
    frac_start = whole_end + 1
    frac_end = np.where(dot >= 0, np.minimum(length, frac_start + _MAX_INT_DIGITS), frac_start)
    frac, bad_frac = _horner(col, frac_start, frac_end)
    bad = bad_whole | bad_frac | (whole_end - first < 1) | (whole_end - first > _MAX_INT_DIGITS)
    bad |= (dot >= 0) & (length - frac_start > _MAX_INT_DIGITS)
    col.fail(bad, "a number")
    value: Floats = whole + frac / 10.0 ** (frac_end - frac_start)
    signed: Floats = np.where(negative, -value, value)
    return signed


def _fixed(col: Column, offset: int, width: int, ok: npt.NDArray[np.bool_]) -> tuple[Ints, npt.NDArray[np.bool_]]:
    zero = np.zeros(len(col), dtype=np.int64)
    value, bad = _horner(col, zero + offset, np.where(ok, offset + width, offset))
    return value, bad


def _char_is(col: Column, offset: Ints | int, chars: bytes, active: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    found = col.buf[np.where(active, col.start + offset, 0)]
    return np.isin(found, np.frombuffer(chars, dtype=np.uint8))


def days_from_civil(year: Ints, month: Ints, day: Ints) -> Ints:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm, vectorised)."""
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days: Ints = era * 146097 + doe - 719468
    return days


def parse_datetime(col: Column) -> Floats:
    """Parse ISO 8601 `YYYY-MM-DD[(T| )HH:MM:SS[.fff…]][Z|±HH:MM]` into Unix seconds (UTC)."""
    n = col.end - col.start
    rows = np.ones(len(col), dtype=np.bool_)
    timed = n > 10
    year, bad = _fixed(col, 0, 4, rows)
    month, b2 = _fixed(col, 5, 2, rows)
    day, b3 = _fixed(col, 8, 2, rows)
    bad |= b2 | b3 | (n < 10) | ~_char_is(col, 4, b"-", rows) | ~_char_is(col, 7, b"-", rows)
    hour, b4 = _fixed(col, 11, 2, timed)
    minute, b5 = _fixed(col, 14, 2, timed)
    second, b6 = _fixed(col, 17, 2, timed)
    bad |= b4 | b5 | b6 | (timed & (n < 19))
    bad |= timed & ~(_char_is(col, 10, b"T ", timed) & _char_is(col, 13, b":", timed) & _char_is(col, 16, b":", timed))
    zulu = timed & _char_is(col, n - 1, b"Zz", timed)
    offset_form = timed & ~zulu & (n >= 25) & _char_is(col, n - 6, b"+-", timed) & _char_is(col, n - 3, b":", timed)
    tz_len = np.where(zulu, 1, np.where(offset_form, 6, 0))
    tz_hours, b7 = _horner(col, n - 5, np.where(offset_form, n - 3, n - 5))
    tz_minutes, b8 = _horner(col, n - 2, np.where(offset_form, n, n - 2))
    tz_sign = np.where(_char_is(col, n - 6, b"-", offset_form), -1, 1)
    body_end = n - tz_len
    has_frac = timed & (body_end > 19)
    bad |= b7 | b8 | (has_frac & ~_char_is(col, 19, b".", has_frac)) | (has_frac & (body_end < 21))
    frac_end = np.where(has_frac, np.minimum(body_end, 29), 20)
    frac, b9 = _horner(col, np.full(len(col), 20), frac_end)
    bad |= b9 | (has_frac & (body_end > 29))
    bad |= (month < 1) | (month > 12) | (day < 1) | (day > 31) | (hour > 23) | (minute > 59) | (second > 60)
    col.fail(bad, "a date-time like 2014-04-07T10:51:09.277Z")
    days = days_from_civil(year, month, day)
    seconds = days * _DAY + hour * 3600 + minute * 60 + second
    seconds -= np.where(offset_form, tz_sign * (tz_hours * 3600 + tz_minutes * 60), 0)
    return seconds + frac / 10.0 ** (frac_end - 20)


def parse_key(col: Column) -> npt.NDArray[np.bytes_]:
    """The raw bytes of every row as a fixed-width bytes array (ids that are not integers)."""
    length = col.end - col.start
    col.fail(length > _MAX_KEY_BYTES, f"an id of at most {_MAX_KEY_BYTES} bytes")
    width = max(int(length.max(initial=0)), 1)
    matrix = np.zeros((len(col), width), dtype=np.uint8)
    for j in range(width):  # column by column: memory stays at one byte per cell
        inside = j < length
        matrix[:, j] = np.where(inside, col.buf[np.where(inside, col.start + j, 0)], 0)
    return matrix.view(f"S{width}").ravel()


def read_header(path: Path, delimiter: str, source: str) -> list[str]:
    """The first line of a file, split into column names (quotes and a BOM removed)."""
    with open_binary(path) as handle:
        first = handle.readline()
    if not first.strip():
        raise UserError(f"{source}: empty file" if not first else f"{source}:1: empty header line")
    text = first.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")
    return [name.strip() for name in next(csv.reader([text], delimiter=delimiter))]


def content_digest() -> Digest:
    """The hash used for content hashes in the manifest."""
    return hashlib.sha256()
