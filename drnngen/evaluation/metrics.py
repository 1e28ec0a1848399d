"""Top-K accuracy, Recall@K and MRR@K — computed here, once, for every model.

Every model (the DRNN through Caffe, POP, S-POP, item-kNN) hands over a score
matrix ``[n, N]`` (one row per test sample, one column per purchasable item)
and the same ``labels [n]``; :func:`ranking_metrics` turns them into numbers.

Definitions (``rank`` is the 1-based position of the bought item in a row):

* **top-K accuracy** (Wu et al.): a hit when any of the K recommended items is
  the bought one, i.e. ``rank <= K``; the mean over samples.
* **Recall@K** (GRU4Rec protocol): the share of test cases whose target is in
  the top K. With exactly one target per sample this is the same number as
  top-K accuracy; both are reported because both communities quote theirs.
* **MRR@K** (GRU4Rec protocol): the mean of ``1 / rank``, with 0 when
  ``rank > K``.

Tie rule — pessimistic: every other item whose score is *equal to or higher
than* the target's is ranked above it, so ``rank = #{j : s_j >= s_target}``
(the target counts itself). This is the rule of Caffe's own ``Accuracy`` layer
(``num_better_predictions`` counts ``>=``), so these numbers agree with the
accuracy the tuner optimised, and a model that scores everything alike (or
a baseline whose counts tie) cannot earn hits by luck of the sort order.
A NaN score (a diverged net) counts as the lowest possible score.

K larger than N is allowed: every rank is at most N, so every sample is a hit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from drnngen.errors import UserError

#: Rows ranked per block, so ``n x N`` comparisons never need one huge boolean matrix.
_ROWS_PER_BLOCK = 4096


@dataclass(frozen=True)
class RankingMetrics:
    """Metrics of one model over one set of samples, per K."""

    samples: int
    accuracy: dict[int, float]
    recall: dict[int, float]
    mrr: dict[int, float]

    @property
    def ks(self) -> tuple[int, ...]:
        """The cut-offs, ascending."""
        return tuple(self.accuracy)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form: ``{"samples": n, "accuracy@5": ..., "recall@5": ..., "mrr@5": ...}``."""
        out: dict[str, object] = {"samples": self.samples}
        for name, values in (("accuracy", self.accuracy), ("recall", self.recall), ("mrr", self.mrr)):
            out.update({f"{name}@{k}": v for k, v in values.items()})
        return out


def parse_ks(ks: Iterable[int] | str, option: str = "--k") -> tuple[int, ...]:
    """Cut-offs from ``"1,5,10,20"`` or integers: positive, de-duplicated, ascending
    (errors name `option`: evaluate's ``--k``, score's ``-k``)."""
    if isinstance(ks, str):
        try:
            values = [int(part) for part in ks.split(",") if part.strip()]
        except ValueError as exc:
            raise UserError(f"{option}: expected comma-separated integers, got {ks!r}") from exc
    else:
        values = [int(k) for k in ks]
    if not values:
        raise UserError(f"{option}: at least one cut-off K is needed")
    if min(values) < 1:
        raise UserError(f"{option}: every K must be >= 1, got {min(values)}")
    return tuple(sorted(set(values)))


def target_ranks(scores: npt.ArrayLike, labels: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """1-based rank of each sample's target in its score row, ties pessimistic (see module doc)."""
    matrix = np.asarray(scores)
    if matrix.dtype.kind != "f":  # keep float32 scores as they are: no [n, N] copy
        matrix = matrix.astype(np.float64)
    if matrix.ndim != 2:
        raise UserError(f"scores must be a matrix [samples, items], got shape {matrix.shape}")
    targets = _check_labels(labels, matrix.shape)
    ranks = np.empty(len(targets), dtype=np.int64)
    for start in range(0, len(targets), _ROWS_PER_BLOCK):
        block = matrix[start:start + _ROWS_PER_BLOCK]
        # NaN compares false with everything; as -inf it ranks last instead of first.
        block = np.where(np.isnan(block), -np.inf, block)
        rows = np.arange(len(block))
        target_scores = block[rows, targets[start:start + _ROWS_PER_BLOCK]]
        ranks[start:start + len(block)] = (block >= target_scores[:, None]).sum(axis=1)
    return ranks


def metrics_from_ranks(ranks: npt.ArrayLike, ks: Iterable[int] | str) -> RankingMetrics:
    """Top-K accuracy, Recall@K and MRR@K for every K from the targets' 1-based ranks."""
    rank = np.asarray(ranks, dtype=np.int64)
    cutoffs = parse_ks(ks)
    if rank.size == 0:
        raise UserError("no test samples to evaluate")
    if rank.min() < 1:
        raise UserError("ranks are 1-based; got a rank below 1")
    # hits[i, j]: is sample i's target within the first ks[j]?  One pass for all K.
    hits = rank[:, None] <= np.asarray(cutoffs)[None, :]
    hit_rate = hits.mean(axis=0)
    reciprocal = np.where(hits, 1.0 / rank[:, None], 0.0).mean(axis=0)
    accuracy = {k: float(v) for k, v in zip(cutoffs, hit_rate, strict=True)}
    return RankingMetrics(
        samples=int(rank.size),
        accuracy=accuracy,
        recall=dict(accuracy),
        mrr={k: float(v) for k, v in zip(cutoffs, reciprocal, strict=True)},
    )


def ranking_metrics(scores: npt.ArrayLike, labels: npt.ArrayLike, ks: Iterable[int] | str) -> RankingMetrics:
    """The one metric function: scores ``[n, N]`` and labels ``[n]`` → metrics for every K."""
    return metrics_from_ranks(target_ranks(scores, labels), ks)


def _check_labels(labels: npt.ArrayLike, shape: tuple[int, ...]) -> npt.NDArray[np.int64]:
    # HDF5 stores labels as float (Caffe wants that), so accept integral floats.
    raw = np.asarray(labels, dtype=np.float64).reshape(-1)
    n, items = shape
    if raw.size != n:
        raise UserError(f"{raw.size} labels for {n} score rows")
    if not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw)):
        raise UserError("labels must be whole item indices")
    targets = raw.astype(np.int64)
    if targets.size and (targets.min() < 0 or targets.max() >= items):
        raise UserError(f"labels must lie in [0, {items}); got {targets.min()}..{targets.max()}")
    return targets
