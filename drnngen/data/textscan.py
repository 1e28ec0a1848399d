"""Vectorised parsing of delimited text: the readers' hot path.

A chunk of whole lines becomes one NumPy byte buffer; field boundaries are found with
array operations, and each column is cut out as a [rows, width] byte matrix (one gather
from a sliding-window view) and parsed with matrix operations over all rows at once. The
cost per event is a few NumPy element operations, never a Python statement, which is
what keeps conversion above a million clicks a second.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import os
import stat
import zlib
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
Mask = npt.NDArray[np.bool_]
Digest = Any  # a hashlib hash object (its class is private in typeshed)

DEFAULT_CHUNK_BYTES = 8 << 20
_NL, _CR, _QUOTE, _UNIT_SEP = 10, 13, 34, 31
_MAX_INT_DIGITS = 18  # 10**18 < 2**63: no overflow check needed
_MAX_KEY_BYTES = 64
_HEADER_LIMIT = 1 << 20  # bytes: a header line is short; a longer one is not a log
PAD = 64  # zero bytes around a chunk's buffer, so fixed-width windows never leave it
_DAY = 86400


@dataclass(frozen=True)
class Chunk:
    """Whole lines of one file, each ending in a newline."""

    data: bytes
    first_line: int  # 1-based number of the chunk's first line in its file
    lines: int = 0  # how many lines it holds

    @property
    def last_line(self) -> int:
        return self.first_line + self.lines - 1


def open_binary(path: Path) -> IO[bytes]:
    """Open a log for reading; `.gz` logs are decompressed on the fly."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # /dev/zero would never end, a FIFO never open
            raise UserError(f"{path}: not a regular file (a pipe or a device?); give the log file")
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
            except (OSError, EOFError, zlib.error) as exc:  # a corrupt or truncated .gz among them
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
            chunk = Chunk(block[:cut], line, block.count(b"\n", 0, cut))
            line += chunk.lines
            yield chunk
    if carry:
        yield Chunk(carry + b"\n", line, 1)


def line_bounds(buf: Bytes, begin: int = 0) -> tuple[Ints, Ints]:
    """Start and end (exclusive, before any `\r`) of every line of a newline-terminated buffer
    whose text begins at `begin`."""
    newlines = np.flatnonzero(buf == _NL)
    starts = np.empty_like(newlines)
    starts[:1] = begin
    starts[1:] = newlines[:-1] + 1
    has_cr = (newlines > starts) & (buf[np.maximum(newlines - 1, 0)] == _CR)
    return starts, newlines - has_cr


@dataclass(frozen=True)
class Column:
    """One field of every row of a chunk: byte ranges into the chunk's padded buffer."""

    buf: Bytes  # the chunk with PAD zero bytes before and after it
    start: Ints
    end: Ints
    lines: Ints  # line number of each row, for error messages
    source: str
    name: str

    def __len__(self) -> int:
        return len(self.start)

    @functools.cached_property
    def length(self) -> Ints:
        return self.end - self.start

    def text(self, row: int) -> str:
        """The raw text of one row's field (for error messages)."""
        raw = self.buf[self.start[row] : self.end[row]].tobytes()
        return raw.decode("utf-8", errors="replace")[:60]

    def fail(self, bad: Mask, expected: str) -> None:
        """Raise a one-line error naming the first row where `bad` is true."""
        if bad.any():
            row = int(np.argmax(bad))
            raise UserError(
                f"{self.source}:{self.lines[row]}: {self.name}: expected {expected}, found {self.text(row)!r}"
            )

    def matrix(self, width: int, right: bool = False, fill: int = 0) -> Bytes:
        """The field of every row as a [rows, width] byte matrix, `fill` outside the field.

        Left-aligned from the field's start, or right-aligned on its end (then a number's
        last digit is always the last column). One row-gather from a sliding-window view
        of the buffer: far cheaper than gathering byte by byte.
        """
        windows = np.lib.stride_tricks.sliding_window_view(self.buf, width)
        matrix: Bytes = windows[self.end - width] if right else windows[self.start]
        length = self.length
        if np.any(length != width):
            column = np.arange(width)[None, :]
            inside = column >= (width - length)[:, None] if right else column < length[:, None]
            matrix[~inside] = fill
        return matrix


@dataclass(frozen=True)
class Table:
    """The non-blank lines of a chunk split into fields."""

    buf: Bytes
    line_start: Ints
    line_end: Ints
    delimiters: Ints  # [rows, fields - 1] positions of the separators
    lines: Ints
    source: str

    @property
    def rows(self) -> int:
        return len(self.lines)

    def column(self, index: int, name: str) -> Column:
        """Field `index` of every row; `name` is how error messages call it."""
        start = self.line_start if index == 0 else self.delimiters[:, index - 1] + 1
        end = self.line_end if index == self.delimiters.shape[1] else self.delimiters[:, index]
        return Column(self.buf, start, end, self.lines, self.source, name)


def split_fields(chunk: Chunk, delimiter: str, n_fields: int, source: str, quoted: bool = False) -> Table:
    """Split a chunk into `n_fields` fields per line; blank lines are skipped.

    `quoted` allows CSV quoting: a chunk that contains a quote character is re-read with
    Python's csv module (slower, but only for files that need it).
    """
    sep = ord(delimiter)
    if quoted and chunk.data.find(b'"') >= 0:
        chunk, sep = _unquote(chunk, delimiter, source), _UNIT_SEP
    buf = np.zeros(len(chunk.data) + 2 * PAD, dtype=np.uint8)
    buf[PAD:-PAD] = np.frombuffer(chunk.data, dtype=np.uint8)
    starts, ends = line_bounds(buf, PAD)
    lines = chunk.first_line + np.arange(len(starts), dtype=np.int64)
    keep = ends > starts
    starts, ends, lines = starts[keep], ends[keep], lines[keep]
    delims = np.flatnonzero(buf == sep)
    per_line = n_fields - 1
    if len(delims) == per_line * len(starts):
        # Each line's block of separators lies inside that line, and the total is right:
        # so every line has exactly n_fields - 1 of them (no per-separator search needed).
        grid = delims.reshape(len(starts), per_line)
        if per_line == 0 or (np.all(grid[:, 0] > starts - 1) and np.all(grid[:, -1] < ends)):
            return Table(buf, starts, ends, grid, lines, source)
    counts = np.bincount(np.searchsorted(starts, delims, side="right") - 1, minlength=len(starts))
    row = int(np.argmax(counts != per_line))
    raise UserError(
        f"{source}:{lines[row]}: expected {n_fields} fields separated by {delimiter!r}, found {counts[row] + 1}"
    )


def _unquote(chunk: Chunk, delimiter: str, source: str) -> Chunk:
    """Re-serialise quoted CSV lines with an unambiguous separator (ASCII unit separator)."""
    text = chunk.data.decode("utf-8", errors="replace")
    out: list[str] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    for row in _csv_rows(reader, source, chunk.first_line):
        if reader.line_num != len(out) + 1:
            raise UserError(f"{source}:{chunk.first_line + len(out)}: newline inside a quoted field")
        if any("\x1f" in field for field in row):
            raise UserError(f"{source}:{chunk.first_line + len(out)}: control character \\x1f in a field")
        out.append("\x1f".join(row))
    return Chunk(("\n".join(out) + "\n").encode(), chunk.first_line, chunk.lines)


def _csv_rows(reader: Any, source: str, first_line: int) -> Iterator[list[str]]:
    """The rows of a csv.reader; its errors (a field over its size limit, a bare carriage
    return in binary garbage) one line each."""
    try:
        yield from reader
    except csv.Error as exc:
        raise UserError(f"{source}:{first_line + reader.line_num - 1}: not a CSV line ({exc})") from None


def parse_int(col: Column) -> Ints:
    """Parse `[-]digits` in every row."""
    length = col.length
    col.fail(length > _MAX_INT_DIGITS + 1, "an integer of at most 18 digits")
    width = max(int(length.max(initial=1)), 1)
    negative = (length > 0) & (col.buf[col.start] == ord("-"))
    matrix = col.matrix(width, right=True, fill=ord("0"))  # right-aligned, so padding = leading zeros
    matrix[negative, width - length[negative]] = ord("0")
    value, bad = _Bytes(matrix).number(range(width))
    digits = length - negative
    col.fail(bad | (digits < 1) | (digits > _MAX_INT_DIGITS), "an integer")
    signed: Ints = np.where(negative, -value, value)
    return signed


def parse_float(col: Column) -> Floats:
    """Parse `[-]digits[.digits]` (no exponent) in every row — e.g. Unix times with a fraction.

    Whole and fractional digits are read as integers and combined as whole + frac / 10**k,
    the way every other time parser here combines seconds and their fraction, so the same
    instant gives the same double whatever the file format.
    """
    length = col.length
    col.fail(length > 40, "a number")
    width = max(int(length.max(initial=1)), 1)
    matrix = col.matrix(width)
    negative = matrix[:, 0] == ord("-")
    is_dot = matrix == ord(".")
    dots = is_dot.sum(axis=1)
    point = np.where(dots > 0, np.argmax(is_dot, axis=1), length)
    matrix[negative, 0] = ord("0")
    matrix[is_dot] = ord("0")
    digits = _Bytes(matrix)
    whole, bad_whole = digits.number(range(width), [j < point for j in range(width)])
    frac, bad_frac = digits.number(range(width), [(j > point) & (j < length) for j in range(width)])
    places = np.maximum(length - point - 1, 0)
    bad = bad_whole | bad_frac | (dots > 1) | (point - negative < 1) | (point - negative > _MAX_INT_DIGITS)
    bad |= ((dots > 0) & (places < 1)) | (places > _MAX_INT_DIGITS)
    col.fail(bad, "a number")
    value: Floats = whole + frac / 10.0**places
    signed: Floats = np.where(negative, -value, value)
    return signed


def seconds_from_millis(millis: Ints) -> Floats:
    """Unix seconds of integer milliseconds, rounded the way the other time parsers round."""
    value: Floats = millis // 1000 + (millis % 1000) / 1000.0
    return value


_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def days_in_month(year: Ints, month: Ints) -> Ints:
    """Days of each (year, month), February 29 in Gregorian leap years (so 2014-02-31 is refused)."""
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    days: Ints = _MONTH_DAYS[month] + ((month == 2) & leap)
    return days


def days_from_civil(year: Ints, month: Ints, day: Ints) -> Ints:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm, vectorised)."""
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days: Ints = era * 146097 + doe - 719468
    return days


def _is(values: Bytes, chars: bytes) -> Mask:
    return np.isin(values, np.frombuffer(chars, dtype=np.uint8))


class _Bytes:
    """Byte j of every row's field as a contiguous vector (0 beyond the field): the matrix
    is transposed once so that each position is one cheap vector operation."""

    def __init__(self, matrix: Bytes) -> None:
        self.t = np.ascontiguousarray(matrix.T)
        self.zero = np.zeros(len(matrix), dtype=np.uint8)
        self.rows = np.arange(len(matrix))

    def at(self, j: int) -> Bytes:
        return self.t[j] if j < len(self.t) else self.zero

    def at_rows(self, pos: Ints) -> Bytes:
        """Byte at a per-row position (0 where it lies outside the matrix)."""
        inside = (pos >= 0) & (pos < len(self.t))
        if pos.size and np.all(pos == pos[0]):
            return self.at(int(pos[0])) if inside[0] else self.zero
        return np.where(inside, self.t[np.clip(pos, 0, len(self.t) - 1), self.rows], 0).astype(np.uint8)

    def number(self, columns: range, active: list[Mask] | None = None) -> tuple[Ints, Mask]:
        """Decimal value of the digits at `columns`, and a non-digit mask. With `active` (one
        mask per column), a row reads only its active columns."""
        value = np.zeros(len(self.zero), dtype=np.int64)
        bad = np.zeros(len(self.zero), dtype=np.bool_)
        for j in columns:
            digit = self.at(j) - np.uint8(48)  # wraps: a non-digit becomes > 9
            if active is None:
                bad |= digit > 9
                value = value * 10 + digit
            else:
                on = active[j - columns.start]
                bad |= on & (digit > 9)
                value = np.where(on, value * 10 + digit, value)
        return value, bad


def parse_datetime(col: Column) -> Floats:
    """Parse ISO 8601 `YYYY-MM-DD[(T| )HH:MM:SS[.f…]][Z|±HH:MM]` into Unix seconds (UTC)."""
    n = col.length
    expected = "a date-time like 2014-04-07T10:51:09.277Z"
    col.fail(n > 35, expected)
    b = _Bytes(col.matrix(max(int(n.max(initial=0)), 10)))
    year, bad = b.number(range(0, 4))
    month, bad_month = b.number(range(5, 7))
    day, bad_day = b.number(range(8, 10))
    bad |= bad_month | bad_day | (n < 10) | (b.at(4) != ord("-")) | (b.at(7) != ord("-"))
    timed = n > 10
    hour, bad_hour = b.number(range(11, 13))
    minute, bad_minute = b.number(range(14, 16))
    second, bad_second = b.number(range(17, 19))
    separators = _is(b.at(10), b"T ") & (b.at(13) == ord(":")) & (b.at(16) == ord(":"))
    bad |= timed & (bad_hour | bad_minute | bad_second | (n < 19) | ~separators)
    last = b.at_rows(n - 1)
    zulu = timed & ((last == ord("Z")) | (last == ord("z")))
    offset = timed & ~zulu & (n >= 25) & _is(b.at_rows(n - 6), b"+-") & (b.at_rows(n - 3) == ord(":"))
    body_end = n - np.where(zulu, 1, np.where(offset, 6, 0))
    has_frac = timed & (body_end > 19)
    bad |= has_frac & ((b.at(19) != ord(".")) | (body_end < 21) | (body_end > 29))
    active = [has_frac & (j < body_end) for j in range(20, 29)]
    fraction, bad_frac = b.number(range(20, 29), active)
    nanos = fraction * 10 ** np.clip(29 - body_end, 0, 9)  # ".5" is 500000000 ns
    bad |= bad_frac | (month < 1) | (month > 12) | (day < 1) | (day > days_in_month(year, np.clip(month, 1, 12)))
    bad |= timed & ((hour > 23) | (minute > 59) | (second > 60))
    tz = np.zeros(len(n), dtype=np.int64)
    if offset.any():
        digits = [b.at_rows(np.where(offset, n - k, 0)) - np.uint8(48) for k in (5, 4, 2, 1)]
        bad |= offset & np.any([d > 9 for d in digits], axis=0)
        sign = np.where(b.at_rows(n - 6) == ord("-"), -1, 1)
        minutes = (digits[0] * 10 + digits[1]).astype(np.int64) * 60 + digits[2] * 10 + digits[3]
        tz = np.where(offset, sign * minutes * 60, 0)
    col.fail(bad, expected)
    clock = np.where(timed, hour * 3600 + minute * 60 + second, 0)
    seconds = days_from_civil(year, month, day) * _DAY + clock - tz
    result: Floats = seconds + nanos / 1e9
    return result


def parse_key(col: Column) -> npt.NDArray[np.bytes_]:
    """The raw bytes of every row as a fixed-width bytes array (ids that are not integers)."""
    col.fail(col.length > _MAX_KEY_BYTES, f"an id of at most {_MAX_KEY_BYTES} bytes")
    width = max(int(col.length.max(initial=0)), 1)
    return np.ascontiguousarray(col.matrix(width)).view(f"S{width}").ravel()


def read_header(path: Path, delimiter: str, source: str) -> list[str]:
    """The first line of a file, split into column names (quotes and a BOM removed)."""
    with open_binary(path) as handle:
        try:
            first = handle.readline(_HEADER_LIMIT)
        except (OSError, EOFError, zlib.error) as exc:  # not gzip after all, or a truncated one
            raise UserError(f"{path}: cannot read: {exc}") from exc
    if not first.strip():
        raise UserError(f"{source}: empty file" if not first else f"{source}:1: empty header line")
    if not first.endswith(b"\n") and len(first) == _HEADER_LIMIT:
        raise UserError(f"{source}:1: the header line is longer than {_HEADER_LIMIT >> 10} KiB; is this a log?")
    text = first.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")
    try:
        return [name.strip() for name in next(csv.reader([text], delimiter=delimiter))]
    except csv.Error as exc:  # a bare carriage return, say: binary, or a file of old-Mac line ends
        raise UserError(f"{source}:1: cannot read the header line ({exc})") from None


def content_digest() -> Digest:
    """The hash used for content hashes in the manifest."""
    return hashlib.sha256()
