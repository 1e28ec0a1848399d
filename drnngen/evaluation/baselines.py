"""The baselines the field compares session recommenders against: POP, S-POP and
item-kNN (as in GRU4Rec, Hidasi et al. 2016) and the session-based kNNs SKNN
and V-SKNN (Jannach & Ludewig 2017; Ludewig & Jannach 2018), scored on exactly
the samples and targets the DRNN sees.

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
* **SKNN** — session-based kNN (Jannach & Ludewig, RecSys 2017; session-rec's
  ``ContextKNN``). A train session is, as for item-kNN, one train sample's
  item set: the item classes it viewed (window and older pages) plus the one
  it bought. The candidates are the ``sample_size`` most recent train
  sessions that share at least one item with the current session (all of
  them when there are fewer); the train split is stored in time order —
  sessions by their first event, a session's samples by the end of their
  prefix — so a later row is a more recent session. Each candidate's
  similarity is the cosine of the two binary item sets,
  ``|s ∩ n| / sqrt(|s| |n|)``; the ``k`` most similar are the neighbours
  (equal similarities: the more recent first), and item i scores the sum of
  the similarities of the neighbours holding it. Items of the current session
  are not left out (session-rec's ``remind=False`` adds no boost and removes
  nothing).
* **V-SKNN** — SKNN with the current session as a real-valued vector
  (Ludewig & Jannach, UMUAI 2018; session-rec's ``VMContextKNN``). The
  session's item views get a linear decay by position, session-rec's default
  ``weighting='div'``: the p-th of L views weighs ``p / L``, so the most
  recent weighs 1 and each earlier one ``1/L`` less; an item viewed more than
  once keeps the weight of its latest view. Only pages of an item class are
  views here. Pages older than the window come before the window but their
  order is unknown (the history row has none), so each of the H older item
  pages gets the mean weight of positions 1 … H, ``(H + 1) / 2L``. The
  similarity is session-rec's: the weighted dot product with the neighbour's
  binary item set divided by the number of distinct items of the current
  session, ``Σ_{i ∈ s ∩ n} w_i / |s|``. Candidates are sampled by recency as
  for SKNN and, as in session-rec's defaults (``weighting_time=False``),
  a neighbour's age weighs nothing beyond that; item scores are the plain sum
  of the neighbours' similarities, as in the paper (session-rec's later
  ``weighting_score`` factor is left out).

Fallbacks are strict: POP only reorders items whose baseline score is equal,
so it never outweighs any evidence from the session. (SKNN and V-SKNN sum
floating-point similarities; sums equal to a relative 1e-9 count as equal.)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from drnngen.data.cooccurrence import cosine_similarity
from drnngen.data.samples import FloatArray, IntArray, Sessions, session_item_counts
from drnngen.errors import UserError


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
        if not (math.isfinite(shrink) and shrink >= 0):
            raise UserError(f"shrink: must be a finite number >= 0, got {shrink}")
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


#: SKNN's and V-SKNN's neighbours k and candidate sample: session-rec's documented defaults
#: (the ``ContextKNN``/``VMContextKNN`` docstrings: k 100, sample_size 500).
SKNN_K = 100
SKNN_SAMPLE = 500


@dataclass(frozen=True)
class TrainSessions:
    """The train split as item sets, and the inverted index item → train sessions.

    Session r is train row r (rows are in time order, see the module doc).
    ``session_ptr``/``session_items``: each session's distinct item classes,
    ascending (CSR). ``item_ptr``/``item_sessions``: each item's sessions,
    ascending, so the most recent last.
    """

    session_ptr: IntArray  # [n+1]
    session_items: IntArray
    item_ptr: IntArray  # [N+1]
    item_sessions: IntArray

    @classmethod
    def build(cls, train: Sessions, page_item: IntArray, items: int) -> TrainSessions:
        """The item set of every train sample: the items it viewed (window and older pages) plus the one bought."""
        n = len(train)
        if n and (train.labels.min() < 0 or train.labels.max() >= items):
            raise UserError(f"train labels: item classes must lie in [0, {items})")
        window = page_item[train.pages]
        rows, cols = np.nonzero(window >= 0)
        older = page_item[train.older_pages]
        keep = older >= 0
        keys = np.unique(np.concatenate([
            rows * items + window[rows, cols],
            train.older_rows[keep] * items + older[keep],
            np.arange(n, dtype=np.int64) * items + train.labels,
        ]))  # sorted by session, then item
        session, item = keys // items, keys % items
        by_item = np.argsort(item, kind="stable")  # stable: each item's sessions stay ascending
        return cls(_offsets(np.bincount(session, minlength=n)), item,
                   _offsets(np.bincount(item, minlength=items)), session[by_item])

    def __len__(self) -> int:
        return len(self.session_ptr) - 1


class SessionKNN(Baseline):
    """SKNN: the train sessions most similar to the current one vote for their items (module doc).

    Cosine similarity as in Jannach & Ludewig (2017) (session-rec's
    ``ContextKNN`` defaults to Jaccard); ``k`` and ``sample_size`` default to
    the 100 and 500 that session-rec's ``ContextKNN`` and ``VMContextKNN``
    document (their signatures say ``sample_size=1000`` in the current code),
    and the candidates are the most recent as with its default
    ``sampling='recent'``. ``index`` shares one :class:`TrainSessions` between
    SKNN and V-SKNN.
    """

    name = "SKNN"

    def __init__(self, train: Sessions, page_item: IntArray, items: int, k: int = SKNN_K,
                 sample_size: int = SKNN_SAMPLE, *, index: TrainSessions | None = None) -> None:
        check_sknn_options(k, sample_size)
        self.page_item = check_page_item(page_item, items)
        self.items = items
        self.k = k
        self.sample_size = sample_size
        self.index = index if index is not None else TrainSessions.build(train, self.page_item, items)
        if len(self.index) != len(train):
            raise UserError(f"the train index holds {len(self.index)} sessions, the train split {len(train)}")
        self.tie_break = _tie_break(item_popularity(train.labels, items))

    def scores(self, block: Sessions) -> FloatArray:
        """The order of :meth:`item_scores`, ties (and items no neighbour holds) broken by POP."""
        # Dense ranks of the sums are whole numbers >= 1 (0 for items no neighbour
        # holds), so the POP tie-break below 1 only reorders equal sums.
        out = np.tile(self.tie_break, (len(block), 1))
        for row, (items, sums) in enumerate(self._item_sums(block)):
            out[row, items] += _dense_ranks(sums)
        return out

    def item_scores(self, block: Sessions) -> FloatArray:
        """``[b, N]``: the summed similarities of the neighbours holding each item (no tie-break)."""
        out = np.zeros((len(block), self.items))
        for row, (items, sums) in enumerate(self._item_sums(block)):
            out[row, items] = sums
        return out

    def neighbours(self, block: Sessions) -> list[tuple[IntArray, FloatArray]]:
        """Per sample: the neighbours' train rows and similarities, most similar first."""
        return [self._neighbours(items, weights) for items, weights in self.current_sessions(block)]

    def current_sessions(self, block: Sessions) -> Iterator[tuple[IntArray, FloatArray]]:
        """Per sample: the distinct item classes of the session (ascending) and their weights."""
        window = self.page_item[block.pages]
        older = self.page_item[block.older_pages]
        bounds = np.searchsorted(block.older_rows, np.arange(len(block) + 1))
        for row in range(len(block)):
            viewed = window[row][window[row] >= 0]
            old = older[bounds[row]:bounds[row + 1]]
            yield self._weights(viewed, old[old >= 0])

    def _weights(self, viewed: IntArray, older: IntArray) -> tuple[IntArray, FloatArray]:
        """A binary session vector: every item weighs 1."""
        items = _sorted_unique(np.concatenate([viewed, older]))
        return items, np.ones(len(items))

    def _similarity(self, dot: FloatArray, weights: FloatArray, sizes: IntArray) -> FloatArray:
        """Cosine of the binary item sets: ``|s ∩ n| / sqrt(|s| |n|)``."""
        cosine: FloatArray = dot / np.sqrt(len(weights) * sizes)
        return cosine

    def _sample(self, items: IntArray) -> IntArray:
        """The ``sample_size`` most recent train sessions holding any of ``items``, ascending."""
        starts, stops = self.index.item_ptr[items], self.index.item_ptr[items + 1]
        # The most recent of the union are among each item's most recent: O(|s| * sample) work.
        first = np.maximum(starts, stops - self.sample_size)
        pool = _sorted_unique(self.index.item_sessions[_ranges(first, stops - first)])
        sample: IntArray = pool[-self.sample_size:]
        return sample

    def _members(self, sessions: IntArray) -> tuple[IntArray, IntArray]:
        """The items of ``sessions``, concatenated, and each session's item count."""
        starts = self.index.session_ptr[sessions]
        sizes: IntArray = self.index.session_ptr[sessions + 1] - starts
        return self.index.session_items[_ranges(starts, sizes)], sizes

    def _neighbours(self, items: IntArray, weights: FloatArray) -> tuple[IntArray, FloatArray]:
        candidates = self._sample(items)
        if not len(candidates):
            return candidates, np.zeros(0)
        members, sizes = self._members(candidates)
        at = np.minimum(np.searchsorted(items, members), len(items) - 1)
        shared = np.where(items[at] == members, weights[at], 0.0)
        owner = np.repeat(np.arange(len(candidates)), sizes)
        dot = np.bincount(owner, weights=shared, minlength=len(candidates)).astype(np.float64, copy=False)
        similarity = self._similarity(dot, weights, sizes)
        # Most similar first; equal similarities: the more recent session first.
        order = np.lexsort((-candidates, -_dense_ranks(similarity)))[:self.k]
        return candidates[order], similarity[order]

    def _item_sums(self, block: Sessions) -> Iterator[tuple[IntArray, FloatArray]]:
        """Per sample: the items the neighbours hold and the sum of those neighbours' similarities."""
        for items, weights in self.current_sessions(block):
            rows, similarity = self._neighbours(items, weights)
            members, sizes = self._members(rows)
            # Stable: each item's similarities are summed in neighbour order, so items held by
            # the same neighbours get bit-identical sums.
            order = np.argsort(members, kind="stable")
            ordered = members[order]
            if not len(ordered):
                yield ordered, np.zeros(0)
                continue
            first = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
            sums: FloatArray = np.add.reduceat(np.repeat(similarity, sizes)[order], first)
            yield ordered[first], sums


class VSessionKNN(SessionKNN):
    """V-SKNN: SKNN with the session's views weighted by a linear decay of their position (module doc).

    The decay is session-rec's ``VMContextKNN`` default ``weighting='div'``
    (``p / L``, linear in the position p, as the paper's "linear decay
    function" that gives the last element 1). Its ``linear`` option
    (``1 - 0.1 (L - p)``) is not used: that weight is 0 ten views back and
    negative further back, and session-rec's code sets it to 0 for every
    position after the tenth, so in a longer session the most recent view
    weighs nothing.
    """

    name = "V-SKNN"

    def _weights(self, viewed: IntArray, older: IntArray) -> tuple[IntArray, FloatArray]:
        length = len(viewed) + len(older)
        if length == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        old_items = _sorted_unique(older)
        # np.unique on the reversed views: index j = j views before the newest, at position L - j.
        window_items, back = np.unique(viewed[::-1], return_index=True)
        items = _sorted_unique(np.concatenate([old_items, window_items]))
        weights = np.zeros(len(items))
        weights[np.searchsorted(items, old_items)] = (len(older) + 1) / 2 / length
        weights[np.searchsorted(items, window_items)] = (length - back) / length  # the later view wins
        return items, weights

    def _similarity(self, dot: FloatArray, weights: FloatArray, sizes: IntArray) -> FloatArray:
        """session-rec's ``vec``: the weighted dot product over the session's distinct items."""
        similarity: FloatArray = dot / len(weights)
        return similarity


def check_sknn_options(k: int, sample_size: int) -> None:
    """SKNN's and V-SKNN's ``k`` and ``sample_size``: whole numbers >= 1."""
    if k < 1:
        raise UserError(f"--sknn-k: the number of neighbours must be >= 1, got {k}")
    if sample_size < 1:
        raise UserError(f"--sknn-sample: the number of candidate sessions must be >= 1, got {sample_size}")


def item_popularity(labels: IntArray, items: int) -> FloatArray:
    """Purchases per item class."""
    return np.bincount(labels, minlength=items).astype(np.float64)[:items]


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


def _offsets(counts: IntArray) -> IntArray:
    """CSR pointers ``[len + 1]`` from per-row counts."""
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _sorted_unique(values: IntArray) -> IntArray:
    """``np.unique`` by sorting (faster than NumPy's hash-based unique on these short arrays)."""
    ordered = np.sort(values)
    unique: IntArray = ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])] if len(ordered) else ordered
    return unique.astype(np.int64, copy=False)


def _ranges(starts: IntArray, lengths: IntArray) -> IntArray:
    """``concat(arange(s, s + l) for s, l in zip(starts, lengths))`` without a Python loop."""
    ends = np.cumsum(lengths)
    shift = np.repeat(starts - (ends - lengths), lengths)
    out: IntArray = shift + np.arange(int(ends[-1]) if len(ends) else 0)
    return out


def _dense_ranks(values: FloatArray, rel_tol: float = 1e-9) -> FloatArray:
    """1-based ranks of the distinct values, ascending; values within ``rel_tol`` count as equal.

    Sums of similarities added in another order can differ in the last bits;
    they must still tie (and fall back to POP).
    """
    ranks = np.empty(len(values))
    if len(values):
        order = np.argsort(values, kind="stable")
        ordered = values[order]
        step = np.diff(ordered) > rel_tol * np.maximum(np.abs(ordered[1:]), np.finfo(np.float64).tiny)
        ranks[order] = np.cumsum(np.concatenate([[True], step]))
    return ranks
