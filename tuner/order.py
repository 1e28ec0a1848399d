"""The order a batch of trainings goes to the executor: longest first.

With K workers a batch (a generation's changed candidates, or one rung of successive
halving) ends when its last training does; a long training that starts last runs alone
while the other workers wait. Sending the longest first (LPT, Graham 1969: a makespan
within 4/3 of the best) leaves the short ones to fill the gaps. The length is a rough
count of the multiply-adds of each training from its config (widths, states, cell, N,
iterations, batch): it only has to order the batch, not to predict seconds. With one
worker the order changes nothing, and the batch keeps the population's order.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TypeVar

from drnngen.codegen.config import DRNNConfig, widths
from drnngen.codegen.graph import GRU

T = TypeVar("T")
_GRU_GATES = 3  # z, r and the candidate state: three affine maps where the paper's cell has one


def training_cost(cfg: DRNNConfig, iterations: int, test_iterations: int) -> float:
    """Multiply-adds of a training, roughly: per state and row, every layer's input and
    recurrent products and the top projection to N; forward and backward (×3) over
    `iterations` batches, forward only over the validation's."""
    ws = widths(cfg)
    per_state = sum(a * b for a, b in itertools.pairwise(ws)) + sum(w * w for w in ws)
    if cfg.model.cell == GRU:
        per_state *= _GRU_GATES
    per_state += ws[-1] * cfg.data.items
    rows = 3 * iterations * cfg.data.batch_size + test_iterations * cfg.data.test_batch_size
    return float(per_state * cfg.model.states * rows)


def longest_first(items: Sequence[T], cost: Callable[[T], float], workers: int) -> list[T]:
    """`items` longest first when several workers share them (ties keep their order)."""
    if workers <= 1:
        return list(items)
    return sorted(items, key=lambda item: -cost(item))
