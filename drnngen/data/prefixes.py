"""A log's session prefixes as input rows of a prepared dataset (`drnngen recommend`), and
the next page view of each prefix (`drnngen score`).

The rows come from the code that makes `prepare`'s rows: `sessions.prefix_samples` (the
sort, page ids, dwell and user history of `build_dataset`, under the dataset's fitted
vocabulary and dwell scale) and `windows.write_window` (the HDF5 layout of a window).
Position p of a session is the prefix of its first p + 1 page views, as in session-rec's
`SessionId;Position;…` lists: positions 0 … L-2 of a session of L views, each followed by
a view to predict.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drnngen.data.events import VIEW, EventLog
from drnngen.data.manifest import Manifest
from drnngen.data.readers import LogSpec, read_log
from drnngen.data.sessions import (
    SPLITS,
    Prefixes,
    SplitSamples,
    decode,
    filter_as_prepared,
    prefix_samples,
    sort_log,
)
from drnngen.data.textscan import Ints
from drnngen.data.windows import write_window
from drnngen.errors import UserError

Progress = Callable[[str], None]
_CHUNK_LIST = "chunk-{:04d}.txt"


@dataclass(frozen=True)
class PrefixRows:
    """The prefixes of a log and the HDF5 files holding their rows, in order.

    `chunks` are Caffe HDF5 list files of one HDF5 file each, so a consumer can score one
    chunk at a time (rows of chunk i follow those of chunk i-1).
    """

    prefixes: Prefixes
    chunks: list[Path]


def read_prefixes(spec: LogSpec, manifest: Manifest, progress: Progress, filtered: bool = True) -> Prefixes:
    """Every prefix of the sessions of `spec`'s log as samples of `manifest`'s dataset
    (`filtered`: after the dataset's filters, `_read`)."""
    log = _read(spec, manifest if filtered else None, "recommend", progress)
    prefixes = prefix_samples(log, manifest.page_keys()[2:], manifest.item_keys(), manifest.dwell, progress)
    if prefixes.samples.samples == 0:
        raise UserError(f"{spec.events}: no session with two page views, so nothing to recommend after")
    if prefixes.known_views == 0:
        progress(f"warning: no item of {spec.events.name} is in the vocabulary of {manifest.root} "
                 "(prepared from another log?); every page is the OOV page")
    return prefixes


def _read(spec: LogSpec, dataset: Manifest | None, command: str, progress: Progress) -> EventLog:
    """`spec`'s log; with `dataset`, filtered as `prepare` filtered the files it made `dataset`
    of (`sessions.filter_as_prepared`), so the positions are those of prepare's samples."""
    if spec.given_splits:
        raise UserError(f"{command} reads one log; --valid-log/--test-log belong to prepare")
    log = read_log(spec, progress)
    if dataset is None:
        return log
    options = dataset.filters()
    dropped = filter_as_prepared(log, options, dataset.train_item_keys())
    if dropped:
        progress(f"{dropped:,} events dropped by the dataset's filters (items its train file lacks, "
                 f"--min-item-support {options.min_item_support}, --min-session-length "
                 f"{options.min_session_length}; --no-filter keeps them)")
    if not len(log):
        raise UserError(f"{spec.events}: no events left after the filters of {dataset.root} (--no-filter keeps them)")
    return log


def write_prefix_rows(prefixes: Prefixes, manifest: Manifest, window: int, folder: Path, rows_per_chunk: int,
                      progress: Progress) -> PrefixRows:
    """Write the rows of `prefixes` for `window` into `folder`: `prepare`'s HDF5 layout,
    `rows_per_chunk` rows a file."""
    spec = manifest.window_files(window)
    spec = dataclasses.replace(spec, file_bytes=max(1, rows_per_chunk) * spec.row_bytes)
    folder.mkdir(parents=True, exist_ok=True)
    splits = {name: _no_samples(prefixes.samples) for name in SPLITS}
    splits["test"] = prefixes.samples
    index = write_window(splits, prefixes.user_items.astype(np.int64), folder, spec, progress)
    chunks = []
    for number, name in enumerate(index["files"]["test"]):
        listing = folder / _CHUNK_LIST.format(number)
        listing.write_text(f"{(folder / name).resolve()}\n")
        chunks.append(listing)
    return PrefixRows(prefixes, chunks)


def _no_samples(like: SplitSamples) -> SplitSamples:
    """A split of no samples, shaped like `like` (whatever arrays the store's layout holds)."""
    none = np.zeros(0, dtype=np.int64)
    return dataclasses.replace(like, start=none, end=none, label=np.zeros(0, np.int32), ui_lo=none, ui_hi=none,
                               counts={})


@dataclass(frozen=True)
class NextViews:
    """The view to predict at every position of every session of a log."""

    session: list[str]  # the session's id in the log
    position: Ints  # p: the target is the session's view p + 1
    item: list[str]  # the target's item id in the log
    sessions: int  # sessions with at least one position


def read_next_views(spec: LogSpec, progress: Progress, dataset: Manifest | None = None) -> NextViews:
    """The targets of `spec`'s log in session-rec's order (sessions sorted, then time);
    with `dataset`, after its filters (`_read`)."""
    log = _read(spec, dataset, "score", progress)
    sort_log(log)
    views = np.flatnonzero(log.kind == VIEW)
    session = log.session[views]
    first = np.r_[True, session[1:] != session[:-1]]
    position = np.arange(len(views)) - np.maximum.accumulate(np.where(first, np.arange(len(views)), 0))
    targets = views[~first]
    return NextViews(decode(log.session[targets], log.session_names), position[~first] - 1,
                     decode(log.item[targets], log.item_names), len(np.unique(log.session[targets])))

