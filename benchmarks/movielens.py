"""MovieLens-100k for `make quality`: fetched from the recbole wheel, converted to a GRU4Rec TSV.

The ratings ship inside the PyPI wheel of ``recbole`` as the atomic file
``recbole/dataset_example/ml-100k/ml-100k.inter`` (tab-separated, header
``user_id:token  item_id:token  rating:float  timestamp:float``). The wheel is
downloaded with the venv's pip (``pip download --no-deps``), only that member is
read out of it (a wheel is a zip) and it is cached as
``$DRNNGEN_CACHE/datasets/ml-100k.inter``; recbole itself is never installed or
imported. A cached file skips the download.

The conversion makes each user's ratings, sorted by timestamp, one session of page
views of the rated items (the rating value is ignored), in the layout `drnngen
prepare --format gru4rec` reads: ``SessionId ItemId Time UserId``, tab-separated,
Unix seconds. Ratings of one user in the same second keep the file's order (the
order `prepare` falls back to on equal times). By default a user's sequence stays
whole (prepare's windowing handles long sessions); ``chunk`` > 0 cuts it into
sessions of at most that many ratings instead, numbered in order.

``python -m benchmarks.movielens [OUT.tsv]`` fetches (if needed) and converts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from drnngen.runner.locate import cache_dir

RECBOLE_VERSION = "1.2.1"
WHEEL = f"recbole-{RECBOLE_VERSION}-py3-none-any.whl"
MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
CACHE_NAME = "ml-100k.inter"
#: Columns the conversion needs, by their field name (the part of a header before ``:``).
USER, ITEM, TIME = "user_id", "item_id", "timestamp"
GRU4REC_HEADER = ("SessionId", "ItemId", "Time", "UserId")


class InterError(ValueError):
    """A malformed ``.inter`` file (message names the line)."""


@dataclass(frozen=True)
class Event:
    """One page view of the converted log."""

    session: int
    item: int
    time: int
    user: int


def cached_inter(cache: Path | None = None) -> Path:
    """Where the ml-100k ratings are cached: ``$DRNNGEN_CACHE/datasets/ml-100k.inter``."""
    return (cache or cache_dir()) / "datasets" / CACHE_NAME


def fetch_ml100k(cache: Path | None = None, python: str = sys.executable) -> tuple[Path, bool]:
    """The cached ``.inter`` file, downloaded first when missing; ``(path, downloaded)``."""
    target = cached_inter(cache)
    if target.is_file():
        return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="drnngen-recbole-") as tmp:
        command = [python, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                   f"recbole=={RECBOLE_VERSION}", "-d", tmp]
        done = subprocess.run(command, check=False, stdout=subprocess.DEVNULL)
        wheels = sorted(Path(tmp).glob("recbole-*.whl"))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(f"`{' '.join(command)}` failed (exit {done.returncode})")
        extract_member(wheels[0], MEMBER, target)
    return target, True


def extract_member(wheel: Path, member: str, target: Path) -> None:
    """Copy one member of a zip to ``target`` (written beside it, then renamed into place)."""
    with zipfile.ZipFile(wheel) as archive:
        try:
            data = archive.read(member)
        except KeyError:
            raise RuntimeError(f"{wheel.name} has no member {member}") from None
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    partial.write_bytes(data)
    partial.replace(target)


def parse_header(line: str) -> dict[str, int]:
    """Column index of each field of an atomic-file header (``name:type`` cells, tab-separated)."""
    fields = [cell.strip().split(":", 1)[0] for cell in line.rstrip("\r\n").split("\t")]
    where = {name: index for index, name in enumerate(fields) if name}
    missing = [name for name in (USER, ITEM, TIME) if name not in where]
    if missing:
        raise InterError(f"line 1: the header lacks {', '.join(missing)} (it has: {', '.join(fields)})")
    return where


def read_inter(lines: Iterable[str]) -> list[tuple[int, int, int]]:
    """``(user, item, time)`` of every rating, in file order (times in whole seconds)."""
    rows = iter(lines)
    try:
        where = parse_header(next(rows))
    except StopIteration:
        raise InterError("empty file") from None
    user, item, when = where[USER], where[ITEM], where[TIME]
    width = max(user, item, when) + 1
    out: list[tuple[int, int, int]] = []
    for number, line in enumerate(rows, start=2):
        if not line.strip():
            continue
        cells = line.rstrip("\r\n").split("\t")
        if len(cells) < width:
            raise InterError(f"line {number}: {len(cells)} fields, expected at least {width}")
        try:
            out.append((int(cells[user]), int(cells[item]), int(float(cells[when]))))
        except ValueError:
            raise InterError(f"line {number}: user, item and timestamp must be numbers: {line.strip()!r}") from None
    return out


def to_sessions(ratings: Iterable[tuple[int, int, int]], chunk: int = 0) -> list[Event]:
    """Each user's ratings sorted by time (stable: equal times keep file order) as page views.

    ``chunk`` = 0 keeps a user's sequence as one session whose id is the user id;
    ``chunk`` > 0 cuts it into sessions of at most ``chunk`` views, numbered 1, 2, …
    in (user, time) order. Events come out by user, then time.
    """
    if chunk < 0:
        raise ValueError(f"chunk must be >= 0, got {chunk}")
    by_user: dict[int, list[tuple[int, int]]] = {}
    for user, item, when in ratings:
        by_user.setdefault(user, []).append((when, item))
    events: list[Event] = []
    next_session = 1
    for user in sorted(by_user):
        views = sorted(by_user[user], key=lambda view: view[0])  # sorted() is stable
        step = chunk or len(views)
        for start in range(0, len(views), step):
            session = user if chunk == 0 else next_session
            next_session += 1
            events += [Event(session, item, when, user) for when, item in views[start:start + step]]
    return events


def gru4rec_lines(events: Iterable[Event]) -> Iterator[str]:
    """The GRU4Rec TSV (header first), one line per event, newline-terminated."""
    yield "\t".join(GRU4REC_HEADER) + "\n"
    for e in events:
        yield f"{e.session}\t{e.item}\t{e.time}\t{e.user}\n"


def convert(inter: Path, out: Path, chunk: int = 0) -> tuple[int, int]:
    """``.inter`` file → GRU4Rec TSV at ``out``; ``(events, sessions)``."""
    with inter.open(encoding="utf-8") as f:
        try:
            events = to_sessions(read_inter(f), chunk)
        except InterError as exc:
            raise InterError(f"{inter}: {exc}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        f.writelines(gru4rec_lines(events))
    return len(events), len({e.session for e in events})


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else Path("out/quality/ml-100k/sessions.tsv")
    start = time.perf_counter()
    inter, downloaded = fetch_ml100k()
    print(f"{inter} ({'downloaded' if downloaded else 'cached'}, {time.perf_counter() - start:.1f} s)")
    start = time.perf_counter()
    events, sessions = convert(inter, out)
    print(f"{out}: {events:,} views in {sessions:,} sessions ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
