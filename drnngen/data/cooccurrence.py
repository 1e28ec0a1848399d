"""Item co-occurrence over a split's samples: the cosine item-kNN ranks by
(`drnngen.evaluation.baselines.ItemKNN`) and the neighbour path's fixed map
is made of (`drnngen.bind`, docs/MODEL.md section 17.5).

``sim(i, j) = co(i, j) / sqrt((n_i + λ)(n_j + λ))``: a sample is the set of
items it viewed (window and older pages) plus its target, ``co`` counts the
samples holding both items and λ (``shrink``, GRU4Rec's regulariser) damps
rare items.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from drnngen.data.samples import FloatArray, IntArray, Sessions, session_item_counts


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
