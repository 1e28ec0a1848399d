"""`drnngen score`: HR@K and MRR@K of a recommendation list file, as session-rec computes them.

session-rec's `HitRate` and `MRR` metrics (``evaluation/metrics/accuracy.py``) judge each
list against the next item of the session: every position of every session of the test
log counts once; a hit when the next item is among the first K of the list; MRR adds
``1 / (its place in the list)`` for a hit and 0 otherwise; both are means over the
positions. The list order is the file's: equal scores are not re-ranked (session-rec
sorts by score and takes the list as it comes), unlike `drnngen evaluate`, which ranks a
tie pessimistically — the two agree wherever the top K hold no tie across the target.

A position of the log that the file lacks, or a row for a position the log does not
have, is an error: the two files do not belong together.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drnngen.data.manifest import Manifest
from drnngen.data.prefixes import NextViews, read_next_views
from drnngen.data.readers import LogSpec, column_key
from drnngen.errors import UserError
from drnngen.evaluation.metrics import parse_ks

COLUMNS = ("SessionId", "Position", "Recommendations", "Scores")
Progress = Callable[[str], None]
Lists = dict[tuple[str, int], list[str]]


@dataclass(frozen=True)
class ListScore:
    """HR@K and MRR@K of one list file against one log, per K."""

    positions: int
    sessions: int
    hit_rate: dict[int, float]
    mrr: dict[int, float]
    short_lists: int  # lists holding fewer items than the largest K

    def to_text(self) -> str:
        """The terminal table: a row per K."""
        lines = [f"{self.positions:,} positions in {self.sessions:,} sessions (session-rec's HitRate and MRR)",
                 f"{'K':>4}  {'HR@K':>8}  {'MRR@K':>8}"]
        lines += [f"{k:>4}  {self.hit_rate[k]:8.4f}  {self.mrr[k]:8.4f}" for k in self.hit_rate]
        if self.short_lists:
            lines.append(f"note: {self.short_lists:,} lists hold fewer than {max(self.hit_rate)} items")
        return "\n".join(lines) + "\n"


def score(recs: Path, spec: LogSpec, ks: Iterable[int] | str, progress: Progress,
          dataset: Manifest | None = None) -> ListScore:
    """Score the list file `recs` against the next views of `spec`'s log (with `dataset`:
    of the log after that dataset's filters, as `recommend` reads it)."""
    cutoffs = parse_ks(ks, "-k")
    lists = read_lists(recs)
    short = sum(1 for items in lists.values() if len(items) < max(cutoffs))  # before _places empties `lists`
    targets = read_next_views(spec, progress, dataset)
    if not targets.position.size:
        raise UserError(f"{spec.events}: no session with two page views, so nothing to score")
    places = _places(lists, targets, recs, spec.events)
    hit_rate = {k: float(np.mean(places <= k)) for k in cutoffs}
    mrr = {k: float(np.mean(np.where(places <= k, 1.0 / places, 0.0))) for k in cutoffs}
    return ListScore(len(places), targets.sessions, hit_rate, mrr, short)


def _places(lists: Lists, targets: NextViews, recs: Path, log: Path) -> np.ndarray:
    """1-based place of each target in its list (a number past any K when absent)."""
    places = np.empty(len(targets.item), dtype=np.float64)
    for index, (session, position, item) in enumerate(zip(targets.session, targets.position.tolist(),
                                                          targets.item, strict=True)):
        items = lists.pop((session, position), None)
        if items is None:
            raise UserError(f"{recs}: no list for session {session} position {position} of {log}; "
                            "was it made from this log (`drnngen recommend --log`)?")
        places[index] = items.index(item) + 1 if item in items else np.inf
    if lists:
        session, position = next(iter(lists))
        raise UserError(f"{recs}: session {session} position {position} is not a position of {log} "
                        f"({len(lists):,} such rows); was it made from another log?")
    return places


def read_lists(path: Path) -> Lists:
    """(session, position) → item ids, best first, from a session-rec CSV; one-line errors."""
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # /dev/zero would never end
        handle.close()
        raise UserError(f"{path}: not a regular file (a pipe or a device?); give the CSV file")
    with handle:
        try:
            return _parse(path, iter(handle))
        except UnicodeDecodeError:
            raise UserError(f"{path}: not UTF-8 text") from None


def _parse(path: Path, lines: Iterator[str]) -> Lists:
    header = next(lines, "").lstrip("\ufeff").rstrip("\r\n").split(";")
    keys = [column_key(name) for name in header]
    missing = [name for name in COLUMNS if column_key(name) not in keys]
    if missing:
        raise UserError(f"{path}:1: expected session-rec's header {';'.join(COLUMNS)} (missing {', '.join(missing)})")
    where = [keys.index(column_key(name)) for name in COLUMNS]
    lists: Lists = {}
    for number, line in enumerate(lines, start=2):
        text = line.rstrip("\r\n")
        if not text:
            continue
        fields = text.split(";")
        if len(fields) != len(header):
            raise UserError(f"{path}:{number}: {len(fields)} fields, the header has {len(header)}")
        session, position, items, scores = (fields[at] for at in where)
        if not position.isdigit():
            raise UserError(f"{path}:{number}: Position must be a whole number >= 0, not {position!r}")
        recommended = items.split(",") if items else []
        if len(scores.split(",") if scores else []) != len(recommended):
            raise UserError(f"{path}:{number}: {len(recommended)} recommendations but a different number of scores")
        key = (session, int(position))
        if key in lists:
            raise UserError(f"{path}:{number}: a second row for session {session} position {position}")
        lists[key] = recommended
    return lists
