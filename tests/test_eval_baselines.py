"""POP, S-POP and item-kNN on a hand-made log whose right answers are worked out below."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drnngen.errors import UserError
from drnngen.evaluation.baselines import (
    ItemKNN,
    Pop,
    SessionPop,
    Sessions,
    cosine_similarity,
    last_items,
    session_item_counts,
)
from drnngen.evaluation.metrics import target_ranks

# Pages 1-4 are the item pages of items 0-3; pages 5 and 6 are no item (say, a
# category page and the cart); page 0 is padding.  N = 4 items, M = 6 pages.
PAGE_ITEM = np.array([-1, 0, 1, 2, 3, -1, -1])
N = 4

# Train log, window w = 3.  The item sets (viewed items + the one bought) are
#   {0,1} {0,1} {0,2} {2,3} {3}
# so n_0 = 3, n_1 = n_2 = n_3 = 2 and co(0,1) = 2, co(0,2) = co(2,3) = 1.
# Bought: 1, 0, 2, 3, 3  → POP counts [1, 1, 1, 2].
TRAIN = Sessions.from_history(
    pages=[[0, 1, 2], [0, 2, 5], [0, 5, 1], [0, 0, 3], [0, 6, 5]],
    history=None,
    labels=[1, 0, 2, 3, 3],
)


def _test(pages: list[list[int]], labels: list[int], history: list[list[float]] | None = None) -> Sessions:
    return Sessions.from_history(pages, history, labels)


def test_pop_ranks_by_train_purchases_ties_pessimistic() -> None:
    pop = Pop(TRAIN, N)
    assert pop.popularity.tolist() == [1, 1, 1, 2]
    block = _test([[0, 1, 2], [0, 0, 5]], [3, 0])
    # Item 3 is the most bought → rank 1; item 0 ties with 1 and 2 → rank 4.
    assert target_ranks(pop.scores(block), block.labels).tolist() == [1, 4]


def test_session_item_counts_window_and_history() -> None:
    # Window views item 2 twice and item 0 once; the older pages 4 (item 3) and
    # 6 (no item) count once each, whatever their dwell share.
    block = _test([[3, 3, 1]], [0], history=[[0, 0, 0, 0, 0.7, 0, 0.3]])
    assert session_item_counts(block, PAGE_ITEM, N).tolist() == [[1, 0, 2, 1]]


def test_spop_most_viewed_in_session_then_pop() -> None:
    spop = SessionPop(TRAIN, PAGE_ITEM, N)
    # Session 1 views item 2 twice, items 0 and 3 once (3 in the history):
    #   order 2 > 3 (once, POP 2) > 0 (once, POP 1) > 1 (not viewed).
    # Session 2 views no item page at all: pure POP, item 3 first, 0-2 tied (rank 4).
    pages = [[3, 3, 1], [0, 5, 6]]
    history = [[0, 0, 0, 0, 1.0, 0, 0], [0] * 7]
    for label, expected in [(2, [1, 4]), (3, [2, 1]), (0, [3, 4]), (1, [4, 4])]:
        block = _test(pages, [label, label], history)
        assert target_ranks(spop.scores(block), block.labels).tolist() == expected, label


def test_last_item_skips_pages_that_are_no_item() -> None:
    block = _test([[2, 1, 5], [0, 3, 6], [0, 5, 6], [4, 0, 0]], [0, 0, 0, 0])
    assert last_items(block, PAGE_ITEM).tolist() == [0, 2, -1, 3]


def test_cosine_hand_computed() -> None:
    sim = cosine_similarity(TRAIN, PAGE_ITEM, N, shrink=0.0)
    s6 = math.sqrt(6)
    expected = [
        [1, 2 / s6, 1 / s6, 0],
        [2 / s6, 1, 0, 0],
        [1 / s6, 0, 1, 1 / 2],
        [0, 0, 1 / 2, 1],
    ]
    np.testing.assert_allclose(sim, expected)
    shrunk = cosine_similarity(TRAIN, PAGE_ITEM, N, shrink=1.0)
    assert shrunk[0, 1] == pytest.approx(2 / math.sqrt(4 * 3))
    assert shrunk[3, 3] == pytest.approx(2 / 3)  # n_3 / (n_3 + λ)


def test_cosine_counts_history_pages() -> None:
    # One session: window shows item 0, the history holds page 2 (item 1), bought item 3.
    train = _test([[0, 0, 1]], [3], history=[[0, 0, 1.0, 0, 0, 0, 0]])
    sim = cosine_similarity(train, PAGE_ITEM, N, shrink=0.0)
    assert sim[0, 1] == sim[0, 3] == sim[1, 3] == 1.0
    assert sim[2].tolist() == [0, 0, 0, 0]


def test_item_knn_ranks_by_similarity_to_last_item() -> None:
    knn = ItemKNN(TRAIN, PAGE_ITEM, N, shrink=0.0)
    # Last item 0 (page 1, the 5s are no item): sims [1, .82, .41, 0] → 0, 1, 2, 3.
    # Last item 2: sims [.41, 0, 1, .5] → 2, 3, 0, 1.
    # Last item 1: sims [.82, 1, 0, 0]; 2 and 3 tie at 0, POP puts 3 first.
    # No item page: all zero → POP: 3 first, the others tie pessimistically.
    pages = [[1, 5, 5], [0, 3, 6], [0, 0, 2], [0, 5, 6]]
    expected_rank = {
        0: [1, 3, 2, 4],
        1: [2, 4, 1, 4],
        2: [3, 1, 4, 4],
        3: [4, 2, 3, 1],
    }
    for label, expected in expected_rank.items():
        block = _test(pages, [label] * 4)
        assert target_ranks(knn.scores(block), block.labels).tolist() == expected, label


def test_pair_counting_matches_dense_product() -> None:
    rng = np.random.default_rng(3)
    pages_m, items = 40, 12
    page_item = np.concatenate([[-1], rng.integers(-1, items, size=pages_m)])
    train = Sessions(rng.integers(0, pages_m + 1, size=(300, 5)), rng.integers(0, items, size=300))
    present = session_item_counts(train, page_item, items) > 0
    present[np.arange(300), train.labels] = True
    member = present.astype(float)
    co = member.T @ member
    norm = np.sqrt(np.diag(co) + 2.0)
    np.testing.assert_allclose(cosine_similarity(train, page_item, items, 2.0), co / np.outer(norm, norm))


def test_blocks_keep_older_pages_with_their_sample() -> None:
    history = np.zeros((5, 7))
    history[1, 4] = history[4, 2] = history[4, 6] = 0.5
    sessions = Sessions.from_history(TRAIN.pages, history, TRAIN.labels)
    blocks = list(sessions.blocks(2))
    assert [len(b) for b in blocks] == [2, 2, 1]
    assert [(b.older_rows.tolist(), b.older_pages.tolist()) for b in blocks] == [
        ([1], [4]), ([], []), ([0, 0], [2, 6])]


@pytest.mark.parametrize("page_item", [[-1, 0, 4], [-2, 0], []])
def test_bad_page_item(page_item: list[int]) -> None:
    with pytest.raises(UserError, match="page_item"):
        SessionPop(TRAIN, np.array(page_item), N)


def test_mismatched_shapes() -> None:
    with pytest.raises(UserError, match="pages"):
        Sessions(np.zeros((2, 3), dtype=np.int64), np.zeros(3, dtype=np.int64))
