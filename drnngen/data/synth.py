"""`drnngen synth`: seeded, realistic synthetic click logs, so the pipeline runs with no data.

The generative story, all of it vectorised over sessions and events:

* a catalogue of items in categories, with long-tailed (Zipf) popularity;
* users with a sparse taste over categories, a few favourite items, and a long-tailed
  activity, so some users come back many times (repeat buyers: the FNN's signal);
* a session has a goal item (a favourite, or a popular item of a category the user
  likes); its page views drift toward it — early views wander through the user's
  tastes, late views are mostly the goal's category and the goal itself — and the user
  dwells longer on pages close to the goal (the dwell signal);
* some sessions end in a purchase of the goal (sometimes with a second item of the same
  category in the same order).

So a model that reads the session beats popularity by a wide margin, as on real logs.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from drnngen import __version__
from drnngen.data.output import (
    SYNTH_MARKER,
    check_output,
    output_lock,
    swap_into_place,
    synth_problem,
    temp_folder,
)
from drnngen.errors import UserError

SYNTH_FORMATS = ("yoochoose", "gru4rec", "otto")
MAX_SESSIONS = 100_000_000
MAX_ITEMS = 1_000_000  # item ids are drawn from a million distinct ones
MAX_USERS = 10_000_000
CLICK, CART, ORDER = 0, 1, 2
Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Progress = Callable[[str], None]
_START = np.datetime64("2014-04-01T00:00:00", "ms")
_BLOCK_ROWS = 200_000
Format = Callable[[npt.NDArray[Any]], list[str]]


@dataclass(frozen=True)
class SynthOptions:
    """Size and shape of the synthetic log (defaults look like a small shop)."""

    sessions: int
    seed: int = 0
    items: int = 2000
    categories: int = 40
    users: int = 0  # 0: one user per 6 sessions
    buy_rate: float = 0.4
    mean_length: float = 8.0
    known_users: float = 0.8  # share of sessions whose user is known (in users.csv)

    def check(self) -> None:
        """Raise a one-line UserError on impossible values."""
        if self.sessions < 1 or self.items < 2 or self.categories < 1 or self.users < 0:
            raise UserError("--sessions must be >= 1, --items >= 2, --categories >= 1")
        if self.seed < 0:
            raise UserError(f"--seed must be >= 0, not {self.seed}")
        if self.sessions > MAX_SESSIONS or self.items > MAX_ITEMS or self.users > MAX_USERS:
            raise UserError(f"--sessions must be <= {MAX_SESSIONS:,}, --items <= {MAX_ITEMS:,}, "
                            f"--users <= {MAX_USERS:,}")
        if self.categories > self.items:
            raise UserError("--categories cannot exceed --items")
        if not (0 <= self.buy_rate <= 1 and 0 <= self.known_users <= 1 and 1 <= self.mean_length < 1e6):
            raise UserError("--buy-rate must lie in [0, 1] and the mean session length be >= 1")


@dataclass(frozen=True)
class SynthLog:
    """Generated events in time order within each session, sessions in start-time order."""

    session: Ints  # 1-based session id of every event
    item: Ints  # raw item id
    category: Ints
    time: Floats  # Unix seconds
    tag: npt.NDArray[np.int8]  # CLICK, CART or ORDER
    session_user: Ints  # user id of every session (index session-1), -1 when anonymous


def generate(options: SynthOptions) -> SynthLog:
    """Draw a log from the generative story (same options and seed → same log)."""
    options.check()
    rng = np.random.default_rng(options.seed)
    catalogue = _Catalogue(rng, options.items, options.categories)
    n_users = options.users or max(10, options.sessions // 6)
    taste = rng.dirichlet(np.full(options.categories, 0.2), size=n_users)
    favourites = catalogue.sample(rng, _categorical(rng, np.repeat(taste, 3, axis=0))).reshape(n_users, 3)
    activity = 1.0 / np.arange(1, n_users + 1) ** 0.8
    user = rng.permutation(n_users)[rng.choice(n_users, options.sessions, p=activity / activity.sum())]
    goal = np.where(
        rng.random(options.sessions) < 0.35,
        favourites[user, rng.integers(0, 3, options.sessions)],
        catalogue.sample(rng, _categorical(rng, taste, user)),
    )
    length = np.minimum(rng.geometric(1.0 / options.mean_length, options.sessions), 200)
    views = _views(rng, catalogue, taste, user, goal, length)
    buys = rng.random(options.sessions) < options.buy_rate
    log = _assemble(rng, catalogue, views, goal, buys, length)
    known = rng.random(options.sessions) < options.known_users
    return SynthLog(*log, session_user=np.where(known, user, -1))


class _Catalogue:
    """Items grouped by category with Zipf popularity; draws items of given categories."""

    def __init__(self, rng: np.random.Generator, items: int, categories: int) -> None:
        self.category = np.sort(rng.permutation(np.arange(items) % categories))
        self.ids = 214_500_000 + np.sort(rng.choice(1_000_000, items, replace=False))
        popularity = 1.0 / (1.0 + rng.permutation(items)) ** 0.9
        self.cumulative = np.cumsum(popularity)
        self.first = np.searchsorted(self.category, np.arange(categories))
        self.last = np.searchsorted(self.category, np.arange(categories), side="right") - 1
        below = np.r_[0.0, self.cumulative][self.first]
        self.mass_from, self.mass = below, self.cumulative[self.last] - below

    def sample(self, rng: np.random.Generator, category: Ints) -> Ints:
        """One popularity-weighted item index of each given category."""
        target = self.mass_from[category] + rng.random(len(category)) * self.mass[category]
        index: Ints = np.clip(np.searchsorted(self.cumulative, target, side="right"),
                              self.first[category], self.last[category])
        return index

    def popular(self, rng: np.random.Generator, count: int) -> Ints:
        """Items drawn by global popularity (noise clicks)."""
        index: Ints = np.searchsorted(self.cumulative, rng.random(count) * self.cumulative[-1], side="right")
        return np.minimum(index, len(self.cumulative) - 1)


def _categorical(rng: np.random.Generator, weights: Floats, rows: Ints | None = None) -> Ints:
    """One draw from each listed row (default: every row) of a row-stochastic matrix.

    Row u's cumulative weights, shifted by u, lie in (u, u + 1], so all rows form one
    sorted array and every draw is one binary search, without a [draws, categories] matrix.
    """
    n_rows, width = weights.shape
    rows = np.arange(n_rows) if rows is None else rows
    cumulative = np.cumsum(weights, axis=1)
    shifted = (cumulative / cumulative[:, -1:] + np.arange(n_rows)[:, None]).ravel()
    index = np.searchsorted(shifted, rows + rng.random(len(rows)), side="right") - rows * width
    drawn: Ints = np.clip(index, 0, width - 1)
    return drawn


def _views(
    rng: np.random.Generator, catalogue: _Catalogue, taste: Floats, user: Ints, goal: Ints, length: Ints
) -> tuple[Ints, Ints]:
    """Item index of every page view and its session; views drift toward the goal."""
    session = np.repeat(np.arange(len(length)), length)
    position = np.arange(len(session)) - np.repeat(np.cumsum(length) - length, length)
    progress = (position + 1) / length[session]
    goal_category = catalogue.category[goal[session]]
    draw = rng.random(len(session))
    p_goal = 0.03 + 0.3 * progress**2
    p_category = p_goal + 0.15 + 0.25 * progress
    p_taste = p_category + 0.75 * (1 - p_category)
    item = np.where(draw < p_goal, goal[session], catalogue.sample(rng, goal_category))
    item = np.where(draw < p_category, item, catalogue.sample(rng, _categorical(rng, taste, user[session])))
    item = np.where(draw < p_taste, item, catalogue.popular(rng, len(session)))
    return item, session


def _assemble(
    rng: np.random.Generator,
    catalogue: _Catalogue,
    views: tuple[Ints, Ints],
    goal: Ints,
    buys: npt.NDArray[np.bool_],
    length: Ints,
) -> tuple[Ints, Ints, Ints, Floats, npt.NDArray[np.int8]]:
    """Add dwell times, carts and orders; return the events as columns."""
    item, session = views
    closeness = np.where(item == goal[session], 2.2,
                         np.where(catalogue.category[item] == catalogue.category[goal[session]], 1.4, 1.0))
    dwell = rng.lognormal(np.log(20.0), 0.8, len(item)) * closeness
    dwell += np.where(rng.random(len(item)) < 0.02, rng.exponential(3600.0, len(item)), 0.0)  # walked away
    start = np.cumsum(rng.exponential(30.0, len(length)))
    offset = np.cumsum(dwell) - dwell  # dwell summed over all earlier views of the log
    time = start[session] + offset - offset[np.cumsum(length) - length][session]
    buyer = np.flatnonzero(buys)
    end_time = start + np.bincount(session, dwell, minlength=len(length))
    carts = buyer[rng.random(len(buyer)) < 0.5]
    second = buyer[rng.random(len(buyer)) < 0.2]
    extra = catalogue.sample(rng, catalogue.category[goal[second]])
    second, extra = second[extra != goal[second]], extra[extra != goal[second]]
    parts = [
        (session, item, time, CLICK),
        (carts, goal[carts], end_time[carts] - 1.0, CART),
        (buyer, goal[buyer], end_time[buyer], ORDER),
        (second, extra, end_time[second], ORDER),
    ]
    sess = np.concatenate([p[0] for p in parts])
    index = np.concatenate([p[1] for p in parts])
    when = np.round(np.concatenate([p[2] for p in parts]), 3)
    tag = np.concatenate([np.full(len(p[0]), p[3], dtype=np.int8) for p in parts])
    order = np.lexsort((tag, when, sess))
    when = when + (_START - np.datetime64("1970-01-01T00:00:00", "ms")).astype(np.int64) / 1000.0
    return sess[order] + 1, catalogue.ids[index[order]], catalogue.category[index[order]], when[order], tag[order]


# --- writers ----------------------------------------------------------------------------------

def _iso(seconds: Floats) -> list[str]:
    stamps = np.round(seconds * 1000).astype(np.int64).astype("datetime64[ms]")
    return [f"{s}Z" for s in np.datetime_as_string(stamps, unit="ms").tolist()]


def _rows(*columns: list[str], sep: str = ",") -> str:
    return "".join(sep.join(row) + "\n" for row in zip(*columns, strict=True))


def _strings(values: npt.NDArray[Any]) -> list[str]:
    return [str(v) for v in values.tolist()]


def _seconds(values: Floats) -> list[str]:
    return [f"{t:.3f}" for t in values.tolist()]


def _write_table(path: Path, columns: list[tuple[npt.NDArray[Any], Format]], sep: str = ",", header: str = "") -> None:
    """Write formatted columns as delimited lines, a block of rows at a time (bounded memory)."""
    with path.open("w") as handle:
        handle.write(header)
        for first in range(0, len(columns[0][0]), _BLOCK_ROWS):
            block = slice(first, first + _BLOCK_ROWS)
            handle.write(_rows(*(fmt(values[block]) for values, fmt in columns), sep=sep))


def _write_yoochoose(log: SynthLog, folder: Path) -> None:
    click = log.tag != ORDER  # YOOCHOOSE has no carts: a cart is one more click on the item
    order = ~click
    _write_table(folder / "clicks.dat", [(log.session[click], _strings), (log.time[click], _iso),
                                         (log.item[click], _strings), (log.category[click], _strings)])
    price = np.round(np.exp(3 + 0.8 * np.sin(log.item[order])) * 10).astype(np.int64) * 10
    _write_table(folder / "buys.dat", [(log.session[order], _strings), (log.time[order], _iso),
                                       (log.item[order], _strings), (price, _strings),
                                       (np.ones(int(order.sum()), dtype=np.int64), _strings)])


def _write_gru4rec(log: SynthLog, folder: Path) -> None:
    for name, rows in (("sessions.tsv", log.tag != ORDER), ("buys.tsv", log.tag == ORDER)):
        _write_table(folder / name, [(log.session[rows], _strings), (log.item[rows], _strings),
                                     (log.time[rows], _seconds)], sep="\t", header="SessionId\tItemId\tTime\n")


def _write_otto(log: SynthLog, folder: Path) -> None:
    names = ("clicks", "carts", "orders")
    bounds = np.flatnonzero(np.r_[True, log.session[1:] != log.session[:-1], True])
    with (folder / "sessions.jsonl").open("w") as handle:
        for first in range(0, len(bounds) - 1, _BLOCK_ROWS // 10):
            edges = bounds[first : first + _BLOCK_ROWS // 10 + 1]
            rows = slice(int(edges[0]), int(edges[-1]))
            ms = np.round(log.time[rows] * 1000).astype(np.int64).tolist()
            events = [f'{{"aid":{a},"ts":{t},"type":"{names[k]}"}}' for a, t, k in
                      zip(log.item[rows].tolist(), ms, log.tag[rows].tolist(), strict=True)]
            offsets = (edges - edges[0]).tolist()
            handle.write("".join(
                f'{{"session":{int(log.session[edges[0] + a])},"events":[' + ",".join(events[a:b]) + "]}\n"
                for a, b in itertools.pairwise(offsets)
            ))


def _write_users(log: SynthLog, folder: Path) -> None:
    known = np.flatnonzero(log.session_user >= 0)
    _write_table(folder / "users.csv", [(known + 1, _strings), (log.session_user[known], _users)],
                 header="session,user\n")


def _users(values: Ints) -> list[str]:
    return [f"u{u}" for u in values.tolist()]


_WRITERS = {"yoochoose": _write_yoochoose, "gru4rec": _write_gru4rec, "otto": _write_otto}
# What each format writes: `--force` replaces a folder of these files and the marker only.
SYNTH_FILES = {
    "yoochoose": ("clicks.dat", "buys.dat", "users.csv"),
    "gru4rec": ("sessions.tsv", "buys.tsv", "users.csv"),
    "otto": ("sessions.jsonl", "users.csv"),
}
_KIND = "a log drnngen synth wrote"
PREPARE_HINTS = {
    "yoochoose": "drnngen prepare {o}/clicks.dat --buys {o}/buys.dat --users {o}/users.csv --format yoochoose",
    "gru4rec": "drnngen prepare {o}/sessions.tsv --buys {o}/buys.tsv --users {o}/users.csv --format gru4rec",
    "otto": "drnngen prepare {o}/sessions.jsonl --users {o}/users.csv --format otto",
}


def synthesize(options: SynthOptions, log_format: str, output: Path, force: bool, progress: Progress) -> list[Path]:
    """Generate a log and write it in `log_format` into `output` (all or nothing).

    With `force`, an existing `output` is replaced only if `synth` wrote it (its
    marker file, or exactly one format's files), once the new log is complete."""
    if log_format not in SYNTH_FORMATS:
        raise UserError(f"--format must be one of {', '.join(SYNTH_FORMATS)}, not {log_format!r}")
    options.check()
    with output_lock(output, "drnngen synth"):
        return _synthesize(options, log_format, output, force, progress)


def _synthesize(options: SynthOptions, log_format: str, output: Path, force: bool, progress: Progress) -> list[Path]:
    check_output(output, force, _KIND, _synth_problem)
    log = generate(options)
    progress(f"generated {options.sessions:,} sessions, {int(np.sum(log.tag != ORDER)):,} page views, "
             f"{int(np.sum(log.tag == ORDER)):,} purchases")
    tmp = temp_folder(output)
    try:
        _WRITERS[log_format](log, tmp)
        _write_users(log, tmp)
        names = sorted(p.name for p in tmp.iterdir())
        marker = {"created_by": f"drnngen {__version__} synth", "format": log_format, "files": names}
        (tmp / SYNTH_MARKER).write_text(json.dumps(marker, indent=1) + "\n")
        check_output(output, force, _KIND, _synth_problem)  # again, just before the swap
        swap_into_place(tmp, output)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"{output}: cannot write the log ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [output / name for name in names]


def _synth_problem(folder: Path) -> str:
    return synth_problem(folder, SYNTH_FILES.values())
