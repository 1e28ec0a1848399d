"""A prepared split's samples as arrays (`Sessions`), read from its HDF5 files:
the page ids of each sample's window, the pages older than the window and the
label. What the baselines, `evaluate` and the neighbour path's map
(`drnngen.bind`) read; Caffe reads the same files itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from drnngen.errors import UserError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _no_ints() -> IntArray:
    return np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Sessions:
    """The samples of one split as the baselines see them.

    ``older_rows``/``older_pages`` list the pages older than the window (the
    non-zero columns of a ``history`` row) as pairs, rows ascending: a dense
    ``[n, M+1]`` history would not fit in memory for a real catalogue.
    """

    pages: IntArray  # [n, w] page ids, oldest first, 0 = padding
    labels: IntArray  # [n] item class bought
    older_rows: IntArray = field(default_factory=_no_ints)  # sample of each older page
    older_pages: IntArray = field(default_factory=_no_ints)  # its page id

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.pages.ndim != 2 or self.pages.shape[0] != n:
            raise UserError(f"pages: expected [{n}, w], got {self.pages.shape}")
        if self.older_rows.shape != self.older_pages.shape:
            raise UserError("older pages: rows and page ids differ in length")

    @classmethod
    def from_history(cls, pages: npt.ArrayLike, history: npt.ArrayLike | None, labels: npt.ArrayLike) -> Sessions:
        """Sessions from dense rows as stored in HDF5 (history may be None: no older pages)."""
        page_ids = np.asarray(pages).astype(np.int64)
        if history is None:
            return cls(page_ids, np.asarray(labels).astype(np.int64))
        rows, older = np.nonzero(np.asarray(history) > 0)
        return cls(page_ids, np.asarray(labels).astype(np.int64), rows.astype(np.int64), older.astype(np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def blocks(self, size: int) -> Iterator[Sessions]:
        """Consecutive slices of at most ``size`` samples (keeps [b, N] score blocks small)."""
        for start in range(0, len(self), size):
            stop = min(start + size, len(self))
            lo, hi = np.searchsorted(self.older_rows, [start, stop])
            yield Sessions(self.pages[start:stop], self.labels[start:stop],
                           self.older_rows[lo:hi] - start, self.older_pages[lo:hi])


def session_item_counts(sessions: Sessions, page_item: IntArray, items: int) -> FloatArray:
    """``[n, N]``: how often each item's page was viewed in each session (older pages once)."""
    n = len(sessions)
    counts = np.zeros((n, items))
    window_items = page_item[sessions.pages]
    rows, cols = np.nonzero(window_items >= 0)
    np.add.at(counts, (rows, window_items[rows, cols]), 1.0)
    old_items = page_item[sessions.older_pages]
    keep = old_items >= 0
    np.add.at(counts, (sessions.older_rows[keep], old_items[keep]), 1.0)
    return counts


_PAGE = re.compile(r"^page_(\d+)$")
#: Rows of ``history`` read at a time: [rows, M+1] floats in memory, never the whole split.
_HISTORY_ROWS = 2048


def hdf5_files(source_list: Path) -> list[Path]:
    """The HDF5 files a Caffe source list names (relative names: from the list's folder)."""
    try:
        names = [line.strip() for line in source_list.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise UserError(f"{source_list}: cannot read the HDF5 source list ({exc.strerror})") from exc
    if not names:
        raise UserError(f"{source_list}: the HDF5 source list is empty")
    return [p if p.is_absolute() else source_list.parent / p for p in map(Path, names)]


def load_sessions(source_list: Path) -> Sessions:
    """The samples of one split, rows in file order (the order the net sees them)."""
    parts = [_read_file(path) for path in hdf5_files(source_list)]
    offsets = np.cumsum([0] + [len(p) for p in parts[:-1]])
    widths = {p.pages.shape[1] for p in parts}
    if len(widths) > 1:
        raise UserError(f"{source_list}: files with different windows {sorted(widths)}")
    return Sessions(
        np.concatenate([p.pages for p in parts]),
        np.concatenate([p.labels for p in parts]),
        np.concatenate([p.older_rows + off for p, off in zip(parts, offsets, strict=True)]),
        np.concatenate([p.older_pages for p in parts]),
    )


def _read_file(path: Path) -> Sessions:
    try:
        with h5py.File(path, "r") as f:
            names = sorted((int(m.group(1)), key) for key in f if (m := _PAGE.match(key)))
            if not names or "label" not in f:
                raise UserError(f"{path}: no page_0 … page_{{w-1}} / label datasets (not a prepared split?)")
            pages = np.stack([np.asarray(f[key]).reshape(-1) for _, key in names], axis=1)
            labels = np.asarray(f["label"]).reshape(-1)
            rows, older = _older_pages(f)
    except OSError as exc:
        raise UserError(f"{path}: cannot read HDF5 ({exc})") from exc
    if np.any(pages != np.round(pages)) or np.any(labels != np.round(labels)):
        raise UserError(f"{path}: page ids and labels must be whole numbers")
    return Sessions(pages.astype(np.int64), labels.astype(np.int64), rows.astype(np.int64), older.astype(np.int64))


def _older_pages(f: Any) -> tuple[IntArray, IntArray]:
    """(row, page) of every page older than the window, rows then pages ascending: the
    non-zero columns of the dense `history`, or the sparse layout's weighted ids."""
    if "history_ids" in f:
        weights = np.asarray(f["history_weights"]).reshape(len(f["history_weights"]), -1)
        ids = np.asarray(f["history_ids"]).reshape(weights.shape)
        r, k = np.nonzero(weights > 0)
        order = np.lexsort((ids[r, k], r))
        return r[order].astype(np.int64), ids[r, k][order].astype(np.int64)
    if "history" not in f:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    history = f["history"]
    rows: list[IntArray] = []
    pages: list[IntArray] = []
    for start in range(0, history.shape[0], _HISTORY_ROWS):
        r, p = np.nonzero(np.asarray(history[start:start + _HISTORY_ROWS]) > 0)
        rows.append(r + start)
        pages.append(p)
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(rows).astype(np.int64), np.concatenate(pages).astype(np.int64)
