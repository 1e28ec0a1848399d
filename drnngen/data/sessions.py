"""From an event log to window-independent samples: sessions, split, vocabulary, dwell, labels.

Everything here is whole-array NumPy: one stable sort puts events in session/time order,
after which sessions are contiguous blocks and every per-session quantity is a reduction
over block boundaries.

Definitions (also in the README's `## Data` section):

* Sessions are ordered by their first event's time (ties by session id) and split 60/20/20
  in that order, unless the splits come as files (`prepare TRAIN --valid-log --test-log`);
  the vocabularies and the dwell normalisation use the train split only.
* Filters (session-rec's and GRU4Rec's, in their order; off by default): sessions shorter
  than `min_session_length` events go, then events of items with fewer than
  `min_item_support` train events, then sessions left too short. With given splits the
  train file is filtered so, and validation/test events whose item the (filtered) train
  split lacks are dropped, as session-rec's loader does, before their short sessions go.
* Page ids: 0 pads a short window, 1 is the out-of-vocabulary page, 2..M are the M-1 most
  viewed pages of the train split (ties by id). So `pages` (M) counts the OOV slot and
  Caffe's Embed takes input_dim M+1.
* Item classes 0..N-1: the N most bought items of the train split (target `purchase`) or
  the N most viewed (target `next-item`). A sample whose label is not among them is dropped.
* Dwell θ(p) = time to the session's next event of any kind (view or purchase), capped at
  `dwell_cap`; a session's last event has no successor and gets the median train gap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from drnngen.data.events import MISSING_USER, PURCHASE, VIEW, EventLog
from drnngen.data.textscan import Ints
from drnngen.errors import UserError

TARGETS = ("purchase", "next-item")
SPLITS = ("train", "val", "test")
PAD_PAGE = 0
OOV_PAGE = 1
Mask = npt.NDArray[np.bool_]
Int32s = npt.NDArray[np.int32]
Float32s = npt.NDArray[np.float32]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class BuildOptions:
    """How samples are made from sessions (the `drnngen prepare` options)."""

    target: str = "purchase"
    max_pages: int | None = None  # M, the OOV slot included; None: every page of the train split
    max_items: int | None = None  # N; None: every item bought (or viewed) in the train split
    dwell_cap: float = 1800.0  # seconds; a longer gap means the user left
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    min_item_support: int = 1  # events of an item in train; 1 keeps every item (session-rec: 5)
    min_session_length: int = 1  # events of a session; 1 keeps every session (session-rec: 2)

    def check(self) -> None:
        """Raise a one-line UserError on impossible values."""
        if self.min_item_support < 1 or self.min_session_length < 1:
            raise UserError("--min-item-support and --min-session-length must be at least 1")
        if self.target not in TARGETS:
            raise UserError(f"--target must be one of {', '.join(TARGETS)}, not {self.target!r}")
        if (self.max_pages is not None and self.max_pages < 1) or (self.max_items is not None and self.max_items < 1):
            raise UserError("--max-pages and --max-items must be at least 1 (or all)")
        if not self.dwell_cap > 0:
            raise UserError("--dwell-cap must be a positive number of seconds")
        if len(self.split) != 3 or min(self.split) < 0 or not abs(sum(self.split) - 1) < 1e-6 or self.split[0] == 0:
            raise UserError(f"--split must be three fractions that sum to 1 with train > 0, not {self.split}")


@dataclass(frozen=True)
class DwellScale:
    """Dwell normalisation fitted on the train split: log1p, then min-max to [0, 1]."""

    cap: float
    last_event: float  # θ given to a session's last event
    log_min: float
    log_max: float

    def normalise(self, theta: npt.NDArray[Any]) -> Float32s:
        """Scaled dwell in [0, 1] (values outside the train range are clipped)."""
        span = self.log_max - self.log_min
        if span <= 0:
            return np.zeros(np.shape(theta), dtype=np.float32)
        scaled = (np.log1p(np.asarray(theta, dtype=np.float64)) - self.log_min) / span
        return np.clip(scaled, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class SplitSamples:
    """One split: the page views its samples need, and the samples as ranges over them.

    Sample i sees pages `page[start[i]:end[i]]` (oldest first) and predicts `label[i]`;
    its user's earlier purchases are `user_items[ui_lo[i]:ui_hi[i]]` of the dataset.
    """

    page: Int32s
    theta: Float32s  # capped dwell in seconds
    start: Ints
    end: Ints
    label: Int32s
    ui_lo: Ints
    ui_hi: Ints
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def samples(self) -> int:
        return len(self.label)


@dataclass(frozen=True)
class Dataset:
    """Everything `prepare` stores besides the per-window HDF5 files."""

    splits: dict[str, SplitSamples]
    user_items: Int32s  # item classes of known users' purchases, grouped by user, in time order
    page_keys: list[Any]  # raw id of page 2, 3, …, M
    item_keys: list[Any]  # raw id of class 0, 1, …, N-1
    dwell: DwellScale
    counts: dict[str, int]
    # given splits: raw ids of the items viewed in the filtered train file, and of those only bought there
    train_item_keys: tuple[list[Any], list[Any]] | None = None

    @property
    def pages(self) -> int:
        return len(self.page_keys) + 1

    @property
    def items(self) -> int:
        return len(self.item_keys)


@dataclass
class _Sessions:
    """The sorted log cut into session blocks."""

    first: Ints  # index of each session's first event
    stop: Ints  # one past its last event
    block: Ints  # session block of every event
    split: Ints  # split (0/1/2) of every session
    rank: Ints  # position of every session in time order


def build_dataset(log: EventLog, options: BuildOptions, progress: Progress) -> Dataset:
    """Sort, split, fit vocabularies and dwell on train, and make the samples of every split.

    The log's arrays are replaced by their sorted versions (no second copy is kept).
    """
    options.check()
    if options.target == "purchase" and not np.any(log.kind == PURCHASE):
        raise UserError(f"{_inputs(log)}: no purchases in the log; --target purchase needs them "
                        "(pass --buys FILE, or use --target next-item)")
    read = len(log)
    split_counts = filter_log(log, options)
    if not len(log):  # given splits say which split went empty (filter_log); one log says it here
        raise UserError(f"{_inputs(log)}: no events left after filtering (--min-item-support "
                        f"{options.min_item_support}, --min-session-length {options.min_session_length})")
    sort_log(log)
    progress(f"sorted {len(log):,} events" + (f" ({read - len(log):,} filtered out)" if read > len(log) else ""))
    sessions = _cut_sessions(log, options.split)
    vocab = _Vocabulary.fit(log, sessions, options)
    is_view = log.kind == VIEW
    theta, dwell = _dwell(log, sessions, is_view & (sessions.split[sessions.block] == 0), options.dwell_cap)
    samples = _samples(log, sessions, vocab.classes, options.target)
    user_items = _user_history(log, sessions, vocab.classes, samples)
    views = np.flatnonzero(is_view)
    page = vocab.pages[views].astype(np.int32)
    view_split = sessions.split[sessions.block[views]]
    splits = {name: _compact(split, sessions, (page, theta, view_split), samples, split_counts.get(name, {}))
              for split, name in enumerate(SPLITS)}
    counts = {"events": len(log), "page_views": len(views), "purchases": len(log) - len(views),
              "sessions": len(sessions.first), "users": len(np.unique(log.user[log.user != MISSING_USER])),
              "filtered_events": read - len(log)}
    progress(f"{counts['sessions']:,} sessions, M={len(vocab.page_keys) + 1} pages, N={len(vocab.item_keys)} "
             "items, samples " + "/".join(f"{s.samples:,}" for s in splits.values()))
    return Dataset(splits, user_items, vocab.page_keys, vocab.item_keys, dwell, counts, _train_items(log))


def filter_log(log: EventLog, options: BuildOptions) -> dict[str, dict[str, int]]:
    """Apply the filters (module doc) in place; per given split, what its file held and what went.

    Without given splits the filters run over the whole log before it is split, as the
    field's preprocessing scripts run them; the result is then empty.
    """
    given = log.split
    read = _split_tallies(log)
    train = np.ones(len(log), dtype=np.bool_) if given is None else given == 0
    keep = _session_rec_filter(log, train, options)
    dropped_unseen = np.zeros(len(SPLITS), dtype=np.int64)
    if given is not None:  # session-rec's loader: test items must be train items
        unseen = ~train & ~_in_train(log, keep & train)
        keep &= ~unseen
        keep &= train | _long_sessions(log, keep & ~train, options.min_session_length)
        dropped_unseen = np.bincount(given[unseen], minlength=len(SPLITS))
    if not keep.all():  # no copy of a log nothing was filtered from
        log.keep(keep)
    return {} if given is None else _given_split_counts(log, read, dropped_unseen, options)


def filter_as_prepared(log: EventLog, options: BuildOptions, train_keys: tuple[list[Any], list[Any]] | None) -> int:
    """Filter a log to be read under a prepared dataset (`recommend`, `score`) as `prepare`
    filtered the files it read; returns the number of events dropped.

    `train_keys` None: the dataset was cut from one log, whose filters ran over the whole log
    (`filter_log`), so they run over this one the same way. Else they are the raw ids of the
    items viewed in the dataset's (filtered) train file and of those only bought there
    (`_train_items`), and this log is filtered as its validation and test files were: events
    of other items go (`_in_train`), then sessions left shorter than `min_session_length`.
    """
    if train_keys is None:
        keep = _session_rec_filter(log, np.ones(len(log), dtype=np.bool_), options)
    else:  # as `_in_train`: views need an item viewed in train, purchases one of any train event
        viewed, bought_only = train_keys
        keep = _has_key(log, viewed)
        keep |= (log.kind != VIEW) & _has_key(log, bought_only)
        keep &= _long_sessions(log, keep, options.min_session_length)
    if not keep.all():
        log.keep(keep)
    return int(np.sum(~keep))


def _in_train(log: EventLog, train: Mask) -> Mask:
    """Per event, whether its item is a train item the way the vocabularies see it: a view's
    item must be viewed in `train` (else its page would be OOV: the page vocabulary is fitted
    on train views), a purchase's item may occur in any `train` event."""
    viewed = np.isin(log.item, log.item[train & (log.kind == VIEW)])
    seen: Mask = np.where(log.kind == VIEW, viewed, viewed | np.isin(log.item, log.item[train]))
    return seen


def _train_items(log: EventLog) -> tuple[list[Any], list[Any]] | None:
    """Given splits: raw ids of the items viewed in the (filtered) train split, and of those
    only bought there (`filter_as_prepared`'s sets); None for one log."""
    if log.split is None:
        return None
    train = log.split == 0
    viewed = np.unique(log.item[train & (log.kind == VIEW)])
    bought_only = np.setdiff1d(np.unique(log.item[train]), viewed)
    return _names(log, viewed), _names(log, bought_only)


def _given_split_counts(log: EventLog, read: dict[str, dict[str, int]], dropped_unseen: Ints,
                        options: BuildOptions) -> dict[str, dict[str, int]]:
    """The manifest's counts of each given split; a one-line UserError for a split left empty."""
    after = _split_tallies(log)
    for name in SPLITS:
        if after[name]["events"] == 0:
            path = next((f["path"] for f in log.files if f.get("split") == name), name)
            raise UserError(f"{path}: no events left in the {name} split after filtering "
                            f"(--min-item-support {options.min_item_support}, --min-session-length "
                            f"{options.min_session_length}; test and validation events need an item of the "
                            "train file)")
    return {name: {"file_events": read[name]["events"], "file_sessions": read[name]["sessions"],
                   "dropped_unseen_item_events": int(dropped_unseen[split]),
                   "dropped_filtered_events": read[name]["events"] - after[name]["events"]
                   - int(dropped_unseen[split]),
                   "events": after[name]["events"]}
            for split, name in enumerate(SPLITS)}


def _session_rec_filter(log: EventLog, train: Mask, options: BuildOptions) -> Mask:
    """session-rec's `filter_data` on the `train` events (others kept): short sessions, then
    rare items (support counted over train), then sessions left short."""
    keep = ~train | _long_sessions(log, train, options.min_session_length)
    if options.min_item_support > 1:
        item, _ = dense_codes(log.item)
        support = np.bincount(item, weights=keep & train)
        keep &= ~train | (support[item] >= options.min_item_support)
    keep &= ~train | _long_sessions(log, keep & train, options.min_session_length)
    return keep


def _split_tallies(log: EventLog) -> dict[str, dict[str, int]]:
    """Events and sessions of each given split (nothing without given splits)."""
    if log.split is None:
        return {}
    tallies = {}
    for split, name in enumerate(SPLITS):
        mine = log.split == split
        tallies[name] = {"events": int(mine.sum()), "sessions": len(np.unique(log.session[mine]))}
    return tallies


def _long_sessions(log: EventLog, among: Mask, minimum: int) -> Mask:
    """Events whose session holds at least `minimum` of the events `among` (all True when minimum is 1)."""
    if minimum <= 1:
        return np.ones(len(log), dtype=np.bool_)
    codes, _ = dense_codes(log.session)
    length = np.bincount(codes, weights=among)
    long: Mask = length[codes] >= minimum
    return long


@dataclass(frozen=True)
class _Vocabulary:
    """Page ids and item classes of every event, fitted on the train split."""

    pages: Ints  # page id of every event (OOV_PAGE when not kept)
    classes: Ints  # item class of every event (-1 when not kept)
    page_keys: list[Any]  # raw id of page 2, 3, …
    item_keys: list[Any]  # raw id of class 0, 1, …

    @classmethod
    def fit(cls, log: EventLog, sessions: _Sessions, options: BuildOptions) -> _Vocabulary:
        train = sessions.split[sessions.block] == 0
        is_view = log.kind == VIEW
        codes, keys = dense_codes(log.item)
        if not (is_view & train).any():
            raise UserError(f"{_inputs(log)}: the train split has no page views; the log is too small to split")
        kept_pages = None if options.max_pages is None else options.max_pages - 1
        page_codes, page_of = _vocabulary(codes[is_view & train], len(keys), kept_pages,
                                          base=OOV_PAGE + 1, missing=OOV_PAGE)  # the OOV id is one of the M
        targets = (log.kind == PURCHASE) if options.target == "purchase" else is_view
        if not (targets & train).any():
            raise UserError(f"{_inputs(log)}: no {_label_kind(options)} in the train split, so there is "
                            f"nothing to predict (--target {options.target})")
        item_codes, class_of = _vocabulary(codes[targets & train], len(keys), options.max_items, base=0, missing=-1)
        return cls(page_of[codes], class_of[codes], _names(log, keys[page_codes]), _names(log, keys[item_codes]))


def _label_kind(options: BuildOptions) -> str:
    return "purchases" if options.target == "purchase" else "page views"


def _inputs(log: EventLog) -> str:
    return ", ".join(str(f["path"]) for f in log.files if f["role"] != "users") or "the log"


def _names(log: EventLog, raw: Ints) -> list[Any]:
    """Original ids for the id maps (the file's integers, or the names behind string codes)."""
    if log.item_names is None:
        return list(raw.tolist())
    return [log.item_names[code] for code in raw.tolist()]


def dense_codes(values: Ints) -> tuple[Ints, Ints]:
    """(codes, keys) with keys sorted and keys[codes] == values.

    Ids within a modest range use a direct table (no sort); others go through np.unique.
    """
    if not len(values):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    low, high = int(values.min()), int(values.max())
    if high - low < 1 << 24:
        present = np.zeros(high - low + 1, dtype=np.bool_)
        present[values - low] = True
        table = np.cumsum(present) - 1
        return table[values - low], np.flatnonzero(present) + low
    keys, codes = np.unique(values, return_inverse=True)
    return codes.ravel(), keys


def sort_log(log: EventLog) -> None:
    """Order events by session, time, then views before purchases at equal times (stable)."""
    if _is_sorted(log):
        return
    order = _event_order(log)
    log.session, log.item, log.time = log.session[order], log.item[order], log.time[order]
    log.kind, log.user = log.kind[order], log.user[order]
    if log.split is not None:
        log.split = log.split[order]


def _event_order(log: EventLog) -> Ints:
    """Stable order by (session, time, kind).

    When session ids and millisecond times fit one int64 together, a single stable sort of
    that combined key (nearly linear on logs that are mostly in order already) replaces a
    three-key lexsort. Events less than a millisecond apart then keep their file order.
    """
    session = log.session - log.session.min()
    millis = np.round((log.time - log.time.min()) * 1000.0)
    time_bits = int(millis.max()).bit_length()
    if int(session.max()).bit_length() + time_bits + 1 <= 62:
        key = (session << (time_bits + 1)) | (millis.astype(np.int64) << 1) | log.kind
        order: Ints = np.argsort(key, kind="stable")
        return order
    return np.lexsort((log.kind, log.time, log.session))


def _is_sorted(log: EventLog) -> bool:
    ds, dt, dk = np.diff(log.session), np.diff(log.time), np.diff(log.kind.astype(np.int8))
    return bool(np.all((ds > 0) | ((ds == 0) & ((dt > 0) | ((dt == 0) & (dk >= 0))))))


def _cut_sessions(log: EventLog, split: tuple[float, float, float]) -> _Sessions:
    """Session blocks, and their split: the given files', else the time-ordered 60/20/20 cut."""
    first = np.flatnonzero(np.r_[True, log.session[1:] != log.session[:-1]])
    stop = np.r_[first[1:], len(log)]
    block = np.repeat(np.arange(len(first)), stop - first)
    by_time = np.lexsort((log.session[first], log.time[first]))
    rank = np.empty(len(first), dtype=np.int64)
    rank[by_time] = np.arange(len(first))
    if log.split is not None:
        return _Sessions(first, stop, block, log.split[first].astype(np.int64), rank)
    cuts = np.round(np.cumsum(split)[:2] * len(first)).astype(np.int64)
    return _Sessions(first, stop, block, np.searchsorted(cuts, rank, side="right"), rank)


def _vocabulary(codes: Ints, n_codes: int, limit: int | None, base: int, missing: int) -> tuple[Ints, Ints]:
    """The `limit` most frequent codes (every code seen when None; most frequent first,
    ties: smaller id first) and a table code → base + rank, `missing` for codes not kept."""
    counts = np.bincount(codes, minlength=n_codes)
    seen = np.flatnonzero(counts)
    kept = seen[np.lexsort((seen, -counts[seen]))][:limit]
    table = np.full(n_codes, missing, dtype=np.int64)
    table[kept] = base + np.arange(len(kept))
    return kept, table


def _dwell(log: EventLog, sessions: _Sessions, train_views: Mask, cap: float) -> tuple[Float32s, DwellScale]:
    """θ of every page view (gap to the session's next event, capped) and the train scale."""
    gap, has_next = _gaps(log, sessions, cap)
    observed = train_views & has_next
    last = float(np.median(gap[observed])) if observed.any() else 0.0
    gap[~has_next] = last
    logs = np.log1p(gap[train_views])
    scale = DwellScale(cap, last, float(logs.min(initial=np.inf)), float(logs.max(initial=-np.inf)))
    return gap[log.kind == VIEW].astype(np.float32), scale


def _gaps(log: EventLog, sessions: _Sessions, cap: float) -> tuple[npt.NDArray[np.float64], Mask]:
    """Every event's capped gap to the next event, and whether its session has a next event."""
    gap = np.empty(len(log), dtype=np.float64)
    gap[:-1] = np.diff(log.time)
    has_next = np.ones(len(log), dtype=np.bool_)
    has_next[sessions.stop - 1] = False
    return np.clip(gap, 0.0, cap), has_next  # < 0 only for sub-millisecond ties kept in file order


@dataclass
class _Samples:
    """Sample i sees the page views start[i]:end[i] (indices among all page views of the
    sorted log), predicts class label[i], and belongs to session block owner[i]."""

    start: Ints
    end: Ints
    label: Ints
    owner: Ints
    per_session: dict[str, Ints]  # manifest counts per session: purchase_sessions, dropped_*
    ui_lo: Ints = field(default_factory=lambda: np.empty(0, np.int64))  # user history ranges
    ui_hi: Ints = field(default_factory=lambda: np.empty(0, np.int64))


def _samples(log: EventLog, sessions: _Sessions, cls: Ints, target: str) -> _Samples:
    """Every sample of the log (see `_Samples`) for the target."""
    is_view = log.kind == VIEW
    views_before = np.cumsum(is_view) - is_view  # index of each event among the views
    view_first = views_before[sessions.first]
    if target == "purchase":
        return _purchase_samples(log, sessions, cls, views_before, view_first)
    return _next_item_samples(log, sessions, cls, view_first, every_prefix=False)


def _next_item_samples(log: EventLog, sessions: _Sessions, cls: Ints, view_first: Ints,
                       every_prefix: bool) -> _Samples:
    """A sample per page view with an earlier view in its session: the views before it, labelled
    with its class. Views of no class make no sample unless `every_prefix` (label -1 then)."""
    views = np.flatnonzero(log.kind == VIEW)
    owner = sessions.block[views]
    follows = np.r_[False, owner[1:] == owner[:-1]]  # a view with an earlier view in its session
    labelled = follows & ((cls[views] >= 0) | every_prefix)
    at = np.flatnonzero(labelled)
    dropped = {"dropped_oov_label": np.bincount(owner[follows & (cls[views] < 0)], minlength=len(sessions.first))}
    return _Samples(view_first[owner[at]], at, cls[views][at], owner[at], dropped)


def _purchase_samples(
    log: EventLog, sessions: _Sessions, cls: Ints, views_before: Ints, view_first: Ints
) -> _Samples:
    """One sample per session with a purchase: the views before its first purchase event,
    labelled with the earliest bought item that is in the item vocabulary."""
    n = len(sessions.first)
    bought = np.flatnonzero(log.kind == PURCHASE)
    first_buy = _first_per_block(sessions.block[bought], bought, n)
    known = bought[cls[bought] >= 0]
    first_known = _first_per_block(sessions.block[known], known, n)
    has_buy = first_buy >= 0
    end = np.where(has_buy, views_before[np.maximum(first_buy, 0)], 0)
    empty = has_buy & (end == view_first)
    oov = has_buy & ~empty & (first_known < 0)
    ok = np.flatnonzero(has_buy & ~empty & ~oov)
    counts = {"purchase_sessions": has_buy.astype(np.int64), "dropped_empty_prefix": empty.astype(np.int64),
              "dropped_oov_label": oov.astype(np.int64)}
    return _Samples(view_first[ok], end[ok], cls[first_known[ok]], ok, counts)


def _first_per_block(blocks: Ints, positions: Ints, n: int) -> Ints:
    """For each of n blocks, the first of `positions` in it (sorted input), or -1."""
    result = np.full(n, -1, dtype=np.int64)
    unique, first = np.unique(blocks, return_index=True)
    result[unique] = positions[first]
    return result


def _user_history(log: EventLog, sessions: _Sessions, cls: Ints, samples: _Samples) -> Int32s:
    """Set every sample's range of its user's purchases made before its session started;
    returns the purchases (item classes) those ranges index.

    Purchases of known users with an in-vocabulary item are sorted by (user, time); a
    sample's range is then two binary searches on a combined (user, time rank) key.
    """
    owners = samples.owner
    session_user = np.maximum.reduceat(log.user, sessions.first) if len(log) else np.empty(0, np.int64)
    bought = np.flatnonzero((log.kind == PURCHASE) & (cls >= 0) & (log.user != MISSING_USER))
    sample_user = session_user[owners]
    session_start = log.time[sessions.first][owners]
    _, ranks = np.unique(np.r_[log.time[bought], session_start], return_inverse=True)
    ranks = ranks.ravel().astype(np.int64)
    record_key = (log.user[bought] << 32) | ranks[: len(bought)]
    order = np.argsort(record_key, kind="stable")
    record_key = record_key[order]
    user_key = np.maximum(sample_user, 0) << 32
    lo = np.searchsorted(record_key, user_key, side="left")
    hi = np.searchsorted(record_key, user_key | ranks[len(bought):], side="left")
    unknown = sample_user == MISSING_USER
    samples.ui_lo, samples.ui_hi = np.where(unknown, 0, lo), np.where(unknown, 0, hi)
    return cls[bought][order].astype(np.int32)


def ranges(starts: Ints, lengths: Ints) -> Ints:
    """Concatenation of arange(s, s + n) for every (s, n), without a Python loop."""
    total = int(lengths.sum())
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(total, dtype=np.int64)


def _split_order(split: int, sessions: _Sessions, samples: _Samples) -> Ints:
    """The samples of a split in the order they are stored: sessions in time order, then prefix end."""
    mine = np.flatnonzero(sessions.split[samples.owner] == split)
    ordered: Ints = mine[np.lexsort((samples.end[mine], sessions.rank[samples.owner[mine]]))]
    return ordered


def _compact(split: int, sessions: _Sessions, views: tuple[Int32s, Float32s, Ints], samples: _Samples,
             extra_counts: dict[str, int]) -> SplitSamples:
    """Keep the page views the split's samples need (page id, dwell), sessions in time order."""
    page, theta, view_split = views
    starts, ends, owners = samples.start, samples.end, samples.owner
    mine = _split_order(split, sessions, samples)
    owner = owners[mine]
    chosen, first_sample = np.unique(sessions.rank[owner], return_index=True)
    need_end = np.maximum.reduceat(ends[mine], first_sample) if len(mine) else np.empty(0, np.int64)
    span_start = starts[mine][first_sample]
    lengths = need_end - span_start
    kept = ranges(span_start, lengths)
    offset = np.cumsum(lengths) - lengths
    where = np.searchsorted(chosen, sessions.rank[owner])
    new_start = offset[where]
    in_split = sessions.split == split
    counts = {"sessions": int(in_split.sum()), "samples": len(mine), "page_views": int(np.sum(view_split == split)),
              "oov_page_views": int(np.sum((view_split == split) & (page == OOV_PAGE)))}
    counts.update({name: int(per_session[in_split].sum()) for name, per_session in samples.per_session.items()})
    counts.update(extra_counts)
    return SplitSamples(
        page=page[kept], theta=theta[kept], start=new_start, end=new_start + (ends[mine] - starts[mine]),
        label=samples.label[mine].astype(np.int32), ui_lo=samples.ui_lo[mine], ui_hi=samples.ui_hi[mine],
        counts=counts,
    )


# --- every prefix of a log under a prepared dataset's vocabulary (`drnngen recommend`) -----------


@dataclass(frozen=True)
class Prefixes:
    """Every prefix of every session of a log as samples, in the store's layout.

    Sample i sees its session's first `position[i] + 1` page views; `session[i]` is the
    session's id in the log. Labels are the class of the next view (-1: no class).
    """

    samples: SplitSamples
    user_items: Int32s
    session: list[str]
    position: Ints
    known_views: int  # page views of the log whose page is in the vocabulary


def prefix_samples(log: EventLog, page_keys: list[Any], item_keys: list[Any], dwell: DwellScale,
                   progress: Progress) -> Prefixes:
    """The samples `prepare` would make of every prefix of `log`, under a fitted vocabulary.

    `page_keys`/`item_keys` are the raw ids of pages 2..M and classes 0..N-1 (the dataset's
    id maps), `dwell` its train scale. Page ids, dwell, labels and the users' earlier
    purchases come from the same code as `build_dataset`'s, with nothing refitted: a page
    the vocabulary lacks is the OOV page, a session's last view gets the train median gap.
    The users' purchases are those of `log` itself.
    """
    sort_log(log)
    sessions = _cut_sessions(log, (1.0, 0.0, 0.0))  # one split: every session
    pages = _lookup(log, page_keys, base=OOV_PAGE + 1, missing=OOV_PAGE)
    classes = _lookup(log, item_keys, base=0, missing=-1)
    is_view = log.kind == VIEW
    gap, has_next = _gaps(log, sessions, dwell.cap)
    gap[~has_next] = dwell.last_event
    views_before = np.cumsum(is_view) - is_view
    samples = _next_item_samples(log, sessions, classes, views_before[sessions.first], every_prefix=True)
    user_items = _user_history(log, sessions, classes, samples)
    views = np.flatnonzero(is_view)
    page = pages[views].astype(np.int32)
    view_split = np.zeros(len(views), dtype=np.int64)
    split = _compact(0, sessions, (page, gap[views].astype(np.float32), view_split), samples, {})
    order = _split_order(0, sessions, samples)
    owner = samples.owner[order]
    raw = log.session[sessions.first[owner]]
    names = decode(raw, log.session_names)
    known = int(np.sum(page != OOV_PAGE))
    progress(f"{len(sessions.first):,} sessions, {split.samples:,} prefixes; {known:,} of {len(views):,} page "
             "views in the vocabulary")
    return Prefixes(split, user_items, names, split.end - split.start - 1, known)


def decode(values: Ints, names: list[str] | None) -> list[str]:
    """Raw ids as text: the names behind string codes, or the file's integers."""
    if names is None:
        return [str(v) for v in values.tolist()]
    return [names[code] for code in values.tolist()]


def _lookup(log: EventLog, keys: list[Any], base: int, missing: int) -> Ints:
    """Per event, base + the index of its item's raw id in `keys`, or `missing`.

    Ids compare as text: a dataset prepared from a GRU4Rec TSV holds integer keys, one from
    a CSV log string keys, and the log read now may be either."""
    codes, raw = _raw_items(log)
    table = {str(key): base + index for index, key in enumerate(keys)}
    per_code = np.fromiter((table.get(key, missing) for key in raw), dtype=np.int64, count=len(raw))
    looked_up: Ints = per_code[codes]
    return looked_up


def _has_key(log: EventLog, keys: list[Any]) -> Mask:
    """Per event, whether its item's raw id is one of `keys` (compared as text, as `_lookup`)."""
    codes, raw = _raw_items(log)
    wanted = {str(key) for key in keys}
    per_code = np.fromiter((key in wanted for key in raw), dtype=np.bool_, count=len(raw))
    has: Mask = per_code[codes]
    return has


def _raw_items(log: EventLog) -> tuple[Ints, list[str]]:
    """(per event, a code of its item; per code, the item's raw id as text)."""
    codes, distinct = dense_codes(log.item)
    return codes, decode(distinct, log.item_names)
