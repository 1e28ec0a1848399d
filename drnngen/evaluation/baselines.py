"""The baselines the field compares session recommenders against: POP, S-POP and
item-kNN (as in GRU4Rec, Hidasi et al. 2016), scored on exactly the samples and
targets the DRNN sees.

Every baseline answers ``scores(block) -> [b, N]`` over the same N item classes
as the net's softmax, so the one metric function in
:mod:`drnngen.evaluation.metrics` scores every model alike.

What a baseline knows of a session is what the prepared data holds: the page
ids of the window (``page_0 … page_{w-1}``), the pages older than the window
(the non-zero columns of ``history``), and — to relate a viewed page to an
item class — ``page_item``, an array ``[M+1]`` that holds each page id's item
class or -1 for pages that are no item (and for the padding id 0).

* **POP** — the item bought most often in the train split, same list for all.
* **S-POP** — the item viewed most often in the current session; ties (and
  items not in the session) fall back to POP. Pages older than the window
  count once each: the history row keeps their dwell share, not their views.
* **item-kNN** — items similar to the session's most recent item page, by
  the cosine of the two items' session vectors over the train split:
  ``sim(i, j) = co(i, j) / sqrt((n_i + λ)(n_j + λ))`` where a train session is
  the set of items it viewed plus the item it bought, ``co`` counts sessions
  holding both and λ (``shrink``, GRU4Rec's regulariser) damps rare items.
  The last item is similar to itself, which is right here: people often buy
  what they looked at last. Ties, and sessions with no item page in the
  window, fall back to POP.

Fallbacks are strict: POP only reorders items whose baseline score is equal,
so it never outweighs any evidence from the session.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

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


def last_items(sessions: Sessions, page_item: IntArray) -> IntArray:
    """Each session's most recent item in the window, or -1 when the window shows none."""
    window_items = page_item[sessions.pages]
    is_item = window_items >= 0
    # argmax on the reversed row finds the newest item page (pages are oldest first).
    newest = sessions.pages.shape[1] - 1 - np.argmax(is_item[:, ::-1], axis=1)
    found = is_item.any(axis=1)
    return np.where(found, window_items[np.arange(len(sessions)), newest], -1).astype(np.int64)


class Baseline(ABC):
    """A model that scores all N items for every sample of a block."""

    name: str

    @abstractmethod
    def scores(self, block: Sessions) -> FloatArray:
        """Scores ``[len(block), N]``; higher is better."""


class Pop(Baseline):
    """POP: how often each item was bought in the train split."""

    name = "POP"

    def __init__(self, train: Sessions, items: int) -> None:
        self.popularity = item_popularity(train.labels, items)

    def scores(self, block: Sessions) -> FloatArray:
        return np.broadcast_to(self.popularity, (len(block), len(self.popularity)))


class SessionPop(Baseline):
    """S-POP: views in the current session, ties broken by POP."""

    name = "S-POP"

    def __init__(self, train: Sessions, page_item: IntArray, items: int) -> None:
        self.page_item = check_page_item(page_item, items)
        self.items = items
        self.tie_break = _tie_break(item_popularity(train.labels, items))

    def scores(self, block: Sessions) -> FloatArray:
        # View counts are whole numbers, so a tie-break below 1 only reorders equal counts.
        return session_item_counts(block, self.page_item, self.items) + self.tie_break


class ItemKNN(Baseline):
    """item-kNN: cosine similarity (session co-occurrence) to the last item, ties broken by POP."""

    name = "item-kNN"

    def __init__(self, train: Sessions, page_item: IntArray, items: int, shrink: float = 20.0) -> None:
        if shrink < 0:
            raise UserError(f"shrink: must be >= 0, got {shrink}")
        self.page_item = check_page_item(page_item, items)
        self.similarity = cosine_similarity(train, self.page_item, items, shrink)
        # Half the smallest gap between distinct similarities: POP then orders
        # only items whose similarity is exactly equal.
        distinct = np.unique(self.similarity)
        step = 0.5 * float(np.diff(distinct).min()) if distinct.size > 1 else 1.0
        self.tie_break = step * _tie_break(item_popularity(train.labels, items))

    def scores(self, block: Sessions) -> FloatArray:
        last = last_items(block, self.page_item)
        rows = np.where(last[:, None] >= 0, self.similarity[np.maximum(last, 0)], 0.0)
        return rows + self.tie_break


def item_popularity(labels: IntArray, items: int) -> FloatArray:
    """Purchases per item class."""
    return np.bincount(labels, minlength=items).astype(np.float64)[:items]


def cosine_similarity(train: Sessions, page_item: IntArray, items: int, shrink: float) -> FloatArray:
    """``[N, N]`` session co-occurrence cosine with shrinkage λ (see module doc)."""
    co = np.zeros((items, items))
    flat = co.reshape(-1)  # a view: adding to it fills co
    for block in train.blocks(2048):
        present = session_item_counts(block, page_item, items) > 0
        present[np.arange(len(block)), block.labels] = True
        pair_keys, pair_counts = np.unique(_item_pairs(present, items), return_counts=True)
        flat[pair_keys] += pair_counts  # co[i, j]: sessions holding both i and j
    support = np.diag(co).copy()  # n_i: sessions holding i
    norm = np.sqrt(support + shrink)
    with np.errstate(divide="ignore", invalid="ignore"):
        sim = co / norm[:, None] / norm[None, :]
    return np.nan_to_num(sim, nan=0.0, posinf=0.0)


def _item_pairs(present: npt.NDArray[np.bool_], items: int) -> IntArray:
    """Keys ``i * N + j`` of every ordered item pair (i = j included) within each session.

    Sessions hold few items, so pairs per session (L² for L items) are far fewer
    than the dense ``N x N`` product a matrix multiply would compute.
    """
    rows, cols = np.nonzero(present)  # row-major: each row's items are contiguous
    per_row = np.bincount(rows, minlength=len(present))
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    padded = np.full((len(present), int(per_row.max(initial=0))), -1, dtype=np.int64)
    padded[rows, slot] = cols
    first, second = padded[:, :, None], padded[:, None, :]
    keys: IntArray = (first * items + second)[(first >= 0) & (second >= 0)]
    return keys


def check_page_item(page_item: npt.ArrayLike, items: int) -> IntArray:
    """The page → item-class map as int64, each value an item class or -1."""
    mapping = np.asarray(page_item, dtype=np.int64)
    if mapping.ndim != 1 or mapping.size == 0:
        raise UserError("page_item: expected a 1-D array indexed by page id")
    if mapping.min() < -1 or mapping.max() >= items:
        raise UserError(f"page_item: item classes must lie in [0, {items}) or be -1")
    return mapping


def _tie_break(popularity: FloatArray) -> FloatArray:
    # In [0, 1): keeps POP's order, never reaches the next whole score.
    scaled: FloatArray = popularity / (float(popularity.max()) + 1.0)
    return scaled
