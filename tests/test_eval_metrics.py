"""The one metric function against hand-computed values (ties, K > N, NaN, bad input)."""

from __future__ import annotations

import numpy as np
import pytest

from drnngen.errors import UserError
from drnngen.evaluation.metrics import metrics_from_ranks, parse_ks, ranking_metrics, target_ranks

# 3 samples, N = 4 items.  Targets 0, 2, 3.
SCORES = np.array([
    [0.9, 0.05, 0.03, 0.02],  # target 0 is first                   → rank 1
    [0.1, 0.4, 0.3, 0.2],     # target 2: only item 1 above         → rank 2
    [0.4, 0.3, 0.2, 0.1],     # target 3 is last                    → rank 4
])
LABELS = np.array([0.0, 2.0, 3.0])  # float, as stored in HDF5


def test_ranks_hand_computed() -> None:
    assert target_ranks(SCORES, LABELS).tolist() == [1, 2, 4]


def test_metrics_hand_computed() -> None:
    m = ranking_metrics(SCORES, LABELS, [1, 2, 3])
    assert m.samples == 3
    assert m.accuracy == pytest.approx({1: 1 / 3, 2: 2 / 3, 3: 2 / 3})
    assert m.recall == m.accuracy  # one target per sample: the same number
    # MRR@1 = (1 + 0 + 0)/3 ; MRR@2 = MRR@3 = (1 + 1/2 + 0)/3
    assert m.mrr == pytest.approx({1: 1 / 3, 2: 0.5, 3: 0.5})


def test_ties_are_pessimistic() -> None:
    scores = np.array([
        [0.5, 0.5, 0.5, 0.1],  # target 0 tied with 1 and 2     → rank 3, not 1
        [0.2, 0.7, 0.7, 0.7],  # target 3 tied with 1 and 2     → rank 3
        [0.3, 0.3, 0.3, 0.3],  # all equal: target 2            → rank N = 4
    ])
    labels = [0, 3, 2]
    assert target_ranks(scores, labels).tolist() == [3, 3, 4]
    m = ranking_metrics(scores, labels, [1, 3])
    assert m.accuracy == pytest.approx({1: 0.0, 3: 2 / 3})
    assert m.mrr == pytest.approx({1: 0.0, 3: (1 / 3 + 1 / 3 + 0) / 3})


def test_k_larger_than_n_is_every_sample_a_hit() -> None:
    m = ranking_metrics(SCORES, LABELS, [4, 50])
    assert m.accuracy == {4: 1.0, 50: 1.0}
    # MRR does not grow past K = N: the ranks are what they are.
    assert m.mrr[50] == pytest.approx((1 + 1 / 2 + 1 / 4) / 3)
    assert m.mrr[4] == m.mrr[50]


def test_nan_scores_rank_last() -> None:
    scores = np.array([[np.nan, 0.2, 0.1], [np.nan, np.nan, np.nan]])
    # Target 0 is NaN → below both others (rank 3); an all-NaN row ties everything (rank 3).
    assert target_ranks(scores, [0, 1]).tolist() == [3, 3]


def test_blocks_agree_with_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 5, size=(37, 9)).astype(float)  # many ties
    labels = rng.integers(0, 9, size=37)
    expected = [int((row >= row[t]).sum()) for row, t in zip(scores, labels, strict=True)]
    monkeypatch.setattr("drnngen.evaluation.metrics._ROWS_PER_BLOCK", 5)
    assert target_ranks(scores, labels).tolist() == expected


def test_ks_parsed_sorted_unique() -> None:
    assert parse_ks("20, 1,5,5") == (1, 5, 20)
    assert ranking_metrics(SCORES, LABELS, "2,1").ks == (1, 2)


@pytest.mark.parametrize("ks", ["", "0", "1,x", "-3"])
def test_bad_ks(ks: str) -> None:
    with pytest.raises(UserError, match="--k"):
        parse_ks(ks)


@pytest.mark.parametrize(("labels", "message"), [
    ([0, 1], "2 labels for 3"),
    ([0, 1, 4], r"\[0, 4\)"),
    ([0, 1, -1], r"\[0, 4\)"),
    ([0, 1.5, 2], "whole"),
])
def test_bad_labels(labels: list[float], message: str) -> None:
    with pytest.raises(UserError, match=message):
        target_ranks(SCORES, labels)


def test_no_samples() -> None:
    with pytest.raises(UserError, match="no test samples"):
        metrics_from_ranks([], [1])


def test_as_dict_keys() -> None:
    d = ranking_metrics(SCORES, LABELS, [1]).as_dict()
    assert d == {"samples": 3, "accuracy@1": pytest.approx(1 / 3), "recall@1": pytest.approx(1 / 3),
                 "mrr@1": pytest.approx(1 / 3)}
