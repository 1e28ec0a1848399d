"""POP, S-POP, item-kNN, SKNN and V-SKNN on a hand-made log whose right answers are worked out below."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drnngen.errors import UserError
from drnngen.evaluation.baselines import (
    SKNN_K,
    SKNN_SAMPLE,
    ItemKNN,
    Pop,
    SessionKNN,
    SessionPop,
    Sessions,
    TrainSessions,
    VSessionKNN,
    _dense_ranks,
    check_sknn_options,
    cosine_similarity,
    last_items,
    session_item_counts,
)
from drnngen.evaluation.compare import compare, standard_baselines
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


# --- SKNN and V-SKNN -------------------------------------------------------------------
#
# On TRAIN the train sessions (rows in time order: row 4 is the most recent) are
#   row 0 {0,1}   row 1 {0,1}   row 2 {0,2}   row 3 {2,3}   row 4 {3}
# The session S = {0, 2} (pages 1 and 3) shares an item with rows 0-3, not with row 4.
# Cosines |S ∩ n| / sqrt(|S| |n|): row 2: 2/sqrt(4) = 1; rows 0, 1, 3: 1/sqrt(4) = 1/2.

SESSION_02 = [0, 1, 3]  # window: padding, item 0, item 2 (the newest)
SESSION_20 = [0, 3, 1]  # the same items, item 0 the newest
NO_ITEM = [0, 5, 6]


def _rows(model: SessionKNN, pages: list[list[int]],
          history: list[list[float]] | None = None) -> list[tuple[list[int], list[float]]]:
    """Each sample's neighbours: train rows and similarities, most similar first."""
    block = _test(pages, [0] * len(pages), history)
    return [(rows.tolist(), sims.tolist()) for rows, sims in model.neighbours(block)]


def _near(*expected: tuple[list[int], list[float]]) -> list[tuple[list[int], object]]:
    return [(rows, pytest.approx(sims)) for rows, sims in expected]


def test_train_sessions_index_items_and_sessions() -> None:
    history = np.zeros((5, 7))
    history[4, 2] = 1.0  # row 4 also viewed page 2 (item 1) before its window
    train = Sessions.from_history(TRAIN.pages, history, TRAIN.labels)
    index = TrainSessions.build(train, PAGE_ITEM, N)
    sets = [index.session_items[index.session_ptr[r]:index.session_ptr[r + 1]].tolist() for r in range(5)]
    assert sets == [[0, 1], [0, 1], [0, 2], [2, 3], [1, 3]]
    holders = [index.item_sessions[index.item_ptr[i]:index.item_ptr[i + 1]].tolist() for i in range(N)]
    assert holders == [[0, 1, 2], [0, 1, 4], [2, 3], [3, 4]]  # oldest first


def test_sknn_cosine_similarities_and_neighbour_order() -> None:
    sknn = SessionKNN(TRAIN, PAGE_ITEM, N, k=100, sample_size=500)
    # All four candidates, most similar first; the three at 1/2 tie: the more recent first.
    # An item-less session has no candidate at all.
    assert _rows(sknn, [SESSION_02, NO_ITEM]) == _near(([2, 3, 1, 0], [1, 0.5, 0.5, 0.5]), ([], []))
    # The cosine divides by the neighbour's size too: S' = {1} (page 2) vs {0,1}: 1/sqrt(2).
    assert _rows(sknn, [[0, 0, 2]]) == _near(([1, 0], [1 / math.sqrt(2)] * 2))


def test_sknn_keeps_the_k_most_similar() -> None:
    block = _test([SESSION_02], [0])
    top2 = SessionKNN(TRAIN, PAGE_ITEM, N, k=2)
    assert _rows(top2, [SESSION_02]) == _near(([2, 3], [1, 0.5]))
    # Item scores: sums of the neighbours' similarities. k=2: rows 2 {0,2} (1) and 3 {2,3} (1/2).
    np.testing.assert_allclose(top2.item_scores(block), [[1, 0, 1.5, 0.5]])
    # k=100: rows 2, 3, 1, 0 → item 0: 1 + 1/2 + 1/2, item 1: 1/2 + 1/2, item 2: 1 + 1/2, item 3: 1/2.
    np.testing.assert_allclose(SessionKNN(TRAIN, PAGE_ITEM, N, k=100).item_scores(block), [[2, 1, 1.5, 0.5]])
    # k=1: row 2 alone.
    np.testing.assert_allclose(SessionKNN(TRAIN, PAGE_ITEM, N, k=1).item_scores(block), [[1, 0, 1, 0]])


def test_sknn_samples_the_most_recent_sessions_sharing_an_item() -> None:
    # sample_size 3: rows 1, 2, 3 (row 0 is the oldest candidate; row 4 shares no item).
    assert _rows(SessionKNN(TRAIN, PAGE_ITEM, N, sample_size=3), [SESSION_02]) == _near(([2, 3, 1], [1, 0.5, 0.5]))
    # sample_size 1: row 3 only, although row 2 is more similar and row 4 more recent.
    one = SessionKNN(TRAIN, PAGE_ITEM, N, sample_size=1)
    assert _rows(one, [SESSION_02]) == _near(([3], [0.5]))
    np.testing.assert_allclose(one.item_scores(_test([SESSION_02], [0])), [[0, 0, 0.5, 0.5]])


def test_sknn_session_includes_pages_older_than_the_window() -> None:
    sknn = SessionKNN(TRAIN, PAGE_ITEM, N)
    # Window shows item 0 only; the history adds page 3 (item 2): the session is {0, 2} again.
    older = [[0, 0, 0, 1.0, 0, 0, 0]]
    assert _rows(sknn, [[0, 0, 1]], older) == _rows(sknn, [SESSION_02])
    items, weights = next(sknn.current_sessions(_test([[0, 0, 1]], [0], older)))
    assert items.tolist() == [0, 2] and weights.tolist() == [1, 1]


def test_sknn_ties_fall_back_to_pop_strictly() -> None:
    # POP counts [1, 1, 1, 2].  sample_size 1 → neighbour row 3 {2,3}: items 2 and 3 tie at
    # 1/2, POP puts 3 first; items 0 and 1 score 0 and tie in POP too (rank 4).
    one = SessionKNN(TRAIN, PAGE_ITEM, N, sample_size=1)
    for label, expected in [(3, 1), (2, 2), (0, 4), (1, 4)]:
        block = _test([SESSION_02], [label])
        assert target_ranks(one.scores(block), block.labels).tolist() == [expected], label
    # k=2 (scores [1, 0, 1.5, .5]): any evidence beats POP — item 3, the most bought, is third.
    # No item page: pure POP, item 3 first, the rest tied.
    top2 = SessionKNN(TRAIN, PAGE_ITEM, N, k=2)
    pages = [SESSION_02, NO_ITEM]
    for label, expected in [(2, [1, 4]), (0, [2, 4]), (3, [3, 1]), (1, [4, 4])]:
        block = _test(pages, [label, label])
        assert target_ranks(top2.scores(block), block.labels).tolist() == expected, label


def test_sums_equal_up_to_rounding_tie() -> None:
    assert 0.1 + 0.2 != 0.3
    assert _dense_ranks(np.array([0.5, 0.1 + 0.2, 0.3, 2.0])).tolist() == [2, 1, 1, 3]
    assert _dense_ranks(np.zeros(0)).tolist() == []


def test_vsknn_position_weights_linear_decay() -> None:
    vsknn = VSessionKNN(TRAIN, PAGE_ITEM, N)

    def weights(pages: list[int], history: list[float] | None = None) -> dict[int, float]:
        block = _test([pages], [0], None if history is None else [history])
        items, w = next(vsknn.current_sessions(block))
        return dict(zip(items.tolist(), w.tolist(), strict=True))

    # Views of items 1, 0, 1 (pages 2, 1, 2): p / L with L = 3 → item 0 at p=2: 2/3; item 1's
    # latest view p=3: 1.
    assert weights([2, 1, 2]) == pytest.approx({0: 2 / 3, 1: 1})
    # Pages of no item are no views: the last item page weighs 1 even when others follow it.
    assert weights([1, 5, 6]) == pytest.approx({0: 1})
    assert weights([3, 5, 1]) == pytest.approx({0: 1, 2: 1 / 2})
    # Older pages 3 and 4 (items 2, 3) come first, in unknown order: H = 2 of L = 5 views, each
    # the mean weight of positions 1 and 2, (1 + 2) / 2 / 5 = 0.3; the window's views are
    # positions 3-5: item 0 at 4 → 0.8, item 1 at 5 → 1.
    assert weights([2, 1, 2], [0, 0, 0, 0.5, 0.5, 0, 0]) == pytest.approx({0: 0.8, 1: 1, 2: 0.3, 3: 0.3})
    # An item older and in the window keeps its (later) window weight: L = 3, item 0 at p=2.
    assert weights([0, 1, 2], [0, 1.0, 0, 0, 0, 0, 0]) == pytest.approx({0: 2 / 3, 1: 1})
    assert weights(NO_ITEM) == pytest.approx({})


def test_vsknn_weighted_similarity_and_scores() -> None:
    # SESSION_20: views 2 then 0 → w = {0: 1, 2: 1/2}, |s| = 2; sim = Σ w over shared items / 2:
    #   row 2 {0,2}: 1.5/2 = .75, rows 0, 1 {0,1}: 1/2, row 3 {2,3}: .5/2 = .25.
    vsknn = VSessionKNN(TRAIN, PAGE_ITEM, N, k=100)
    assert _rows(vsknn, [SESSION_20]) == _near(([2, 1, 0, 3], [0.75, 0.5, 0.5, 0.25]))
    # SESSION_02 (item 2 the newest): rows 2: .75, 3: .5, 1 and 0: .25.
    assert _rows(vsknn, [SESSION_02]) == _near(([2, 3, 1, 0], [0.75, 0.5, 0.25, 0.25]))
    # k = 2 → the order of the views decides: newest 0 → rows 2, 1; newest 2 → rows 2, 3.
    top2 = VSessionKNN(TRAIN, PAGE_ITEM, N, k=2)
    block = _test([SESSION_20, SESSION_02, NO_ITEM], [0, 0, 0])
    np.testing.assert_allclose(top2.item_scores(block), [[1.25, 0.5, 0.75, 0], [0.75, 0, 1.25, 0.5], [0, 0, 0, 0]])
    # SKNN cannot tell the two apart: both are the set {0, 2}.
    sknn = SessionKNN(TRAIN, PAGE_ITEM, N, k=2).item_scores(block)
    np.testing.assert_allclose(sknn[0], sknn[1])
    # Ranks: newest 0 → 0, 2, 1, 3 (item 3 unscored, below item 1 despite POP); no item → POP.
    for label, expected in [(0, [1, 2, 4]), (2, [2, 1, 4]), (1, [3, 4, 4]), (3, [4, 3, 1])]:
        labelled = _test([SESSION_20, SESSION_02, NO_ITEM], [label] * 3)
        assert target_ranks(top2.scores(labelled), labelled.labels).tolist() == expected, label


def test_vsknn_samples_by_recency_like_sknn() -> None:
    one = VSessionKNN(TRAIN, PAGE_ITEM, N, sample_size=1)
    assert _rows(one, [SESSION_20]) == _near(([3], [0.25]))


def _reference_knn(train: Sessions, test: Sessions, page_item: np.ndarray, items: int, k: int, sample: int,
                   weighted: bool) -> np.ndarray:
    """The definitions in the module doc with Python sets and a loop over every train session."""
    def views(s: Sessions, r: int) -> tuple[list[int], list[int]]:
        window = [int(page_item[p]) for p in s.pages[r] if page_item[p] >= 0]
        older = [int(page_item[p]) for p in s.older_pages[s.older_rows == r] if page_item[p] >= 0]
        return window, older

    train_sets = []
    for r in range(len(train)):
        window, older = views(train, r)
        train_sets.append(set(window) | set(older) | {int(train.labels[r])})
    out = np.zeros((len(test), items))
    for r in range(len(test)):
        window, older = views(test, r)
        length = len(window) + len(older)
        w = {i: (len(older) + 1) / 2 / length for i in older}
        w.update({i: (len(older) + p + 1) / length for p, i in enumerate(window)})
        if not weighted:
            w = dict.fromkeys(w, 1.0)
        candidates = [n for n in range(len(train)) if train_sets[n] & w.keys()][-sample:]
        sims = []
        for n in candidates:
            dot = sum(w[i] for i in train_sets[n] & w.keys())
            sims.append(dot / len(w) if weighted else dot / math.sqrt(len(w) * len(train_sets[n])))
        ranked = sorted(zip(sims, candidates, strict=True), key=lambda sn: (round(sn[0], 9), sn[1]), reverse=True)[:k]
        for sim, n in ranked:
            for i in train_sets[n]:
                out[r, i] += sim
    return out


@pytest.mark.parametrize("model", [SessionKNN, VSessionKNN])
@pytest.mark.parametrize(("k", "sample"), [(3, 10), (100, 500), (10, 4)])
def test_knn_matches_a_plain_reference(model: type[SessionKNN], k: int, sample: int) -> None:
    rng = np.random.default_rng(11)
    pages_m, items = 30, 12
    page_item = np.concatenate([[-1], rng.integers(-1, items, size=pages_m)])

    def split(n: int) -> Sessions:
        history = (rng.random((n, pages_m + 1)) < 0.05) * rng.random((n, pages_m + 1))
        history[:, 0] = 0
        return Sessions.from_history(rng.integers(0, pages_m + 1, size=(n, 4)), history, rng.integers(0, items, size=n))

    train, test = split(200), split(60)
    knn = model(train, page_item, items, k=k, sample_size=sample)
    # The reference breaks equal similarities by recency too (larger row first).
    np.testing.assert_allclose(knn.item_scores(test), _reference_knn(train, test, page_item, items, k, sample,
                                                                     model is VSessionKNN), atol=1e-12)
    # Every row is ranked by its sums, ties and unscored items by POP.
    ranks = target_ranks(knn.scores(test), test.labels)
    assert ranks.min() >= 1 and ranks.max() <= items


@pytest.mark.parametrize(("k", "sample", "message"), [
    (0, 500, "--sknn-k: the number of neighbours must be >= 1, got 0"),
    (-2, 500, "--sknn-k"),
    (100, 0, "--sknn-sample: the number of candidate sessions must be >= 1, got 0"),
    (100, -1, "--sknn-sample"),
])
def test_bad_sknn_options(k: int, sample: int, message: str) -> None:
    with pytest.raises(UserError, match=message):
        check_sknn_options(k, sample)
    with pytest.raises(UserError, match=message):
        VSessionKNN(TRAIN, PAGE_ITEM, N, k=k, sample_size=sample)


def test_sknn_defaults_are_session_recs() -> None:
    assert (SKNN_K, SKNN_SAMPLE) == (100, 500)
    sknn = SessionKNN(TRAIN, PAGE_ITEM, N)
    assert (sknn.k, sknn.sample_size) == (100, 500)


def test_sknn_and_vsknn_are_rows_of_the_comparison() -> None:
    baselines = standard_baselines(TRAIN, PAGE_ITEM, N, shrink=0.0, sknn_k=2, sknn_sample=500)
    assert [b.name for b in baselines] == ["POP", "S-POP", "item-kNN", "SKNN", "V-SKNN"]
    # The ranks worked out above: SKNN (k=2) on SESSION_02 ranks 2, 0, 3, 1; V-SKNN on
    # SESSION_20 ranks 0, 2, 1, 3.
    test = _test([SESSION_02, SESSION_20], [0, 0])
    result = compare(test, [1, 2], baselines)
    assert list(result.results) == ["POP", "S-POP", "item-kNN", "SKNN", "V-SKNN"]
    assert result.results["SKNN"].accuracy == {1: 0.0, 2: 1.0}
    assert result.results["SKNN"].mrr[2] == pytest.approx(0.5)
    assert result.results["V-SKNN"].accuracy == {1: 0.5, 2: 1.0}
    assert result.results["V-SKNN"].mrr[2] == pytest.approx((1 / 2 + 1) / 2)
    assert "SKNN" in result.to_text() and "| V-SKNN |" in result.to_markdown()
