"""What `drnngen tune` uses when the user gives no base config or no space:
settings that suit the prepared dataset, chosen so that no candidate of the
default space diverges (Adam at a small fixed learning rate, batches sized to
the train split).

The paper's Table I (SGD at lr 0.1, batch 9000, widths 1000/100) stays the
default of `drnngen build` and of `examples/paper.yaml`; on a few thousand
training samples it is three iterations an epoch and diverges in deep nets,
which is why the tuner does not start from it.
"""

from __future__ import annotations

from typing import Any

from drnngen.codegen.config import DRNNConfig, parse_config
from drnngen.errors import UserError
from drnngen.tuner.space import IntRange, SearchSpace

# A repeat path / tied output holds a fixed (M+1) x N page->item map in the net.
REPEAT_MAP_LIMIT = 256 * 2**20  # bytes of that map (float32) the defaults allow
DEFAULT_EPOCHS = 30.0  # the per-candidate budget when neither --iters nor --epochs is given
DEFAULT_PATIENCE = 3  # validation points without improvement before a training stops
DEFAULT_VALIDATE_EVERY = 1.0  # epochs between validation points
# The repeat path only scores items the session has seen. Where hardly any target is one
# (MovieLens: nobody rates a film twice) it adds nothing but cost: with the sparse history
# its V̄R route took 207 of 467 ms of an iteration on MovieLens-100k (N = 1554, batch 512).
MIN_REPEAT_SHARE = 0.05
NEIGHBOURS_INIT = 2.5  # the neighbour path's scalars at the start: Q's rows peak at 1, the repeat path's β start at 5
DEFAULT_MEMORY_BUDGET = 4 << 30  # bytes one training's nets may hold (`tune --memory-budget`)
TEST_BATCH = 2048  # the TEST net's batch, unless the budget asks for less
# The largest net of the default space (`default_space`): the memory estimate's worst case.
_MAX_STATES, _MAX_WIDTH = 6, 256


def batch_for(train_samples: int, row_bytes: int = 0, budget: int | None = None) -> int:
    """A power of two near 1/64 of the train split, within [32, 512]: enough
    iterations per epoch for Adam, few enough for a CPU; then halved (down to 1)
    while `batch × row_bytes` (the TRAIN net's bytes per sample, `net_row_bytes`)
    exceeds `budget`."""
    target = max(1, train_samples // 64)
    size = 32
    while size * 2 <= min(target, 512):
        size *= 2
    return _within(size, row_bytes, budget)


def _within(size: int, row_bytes: int, budget: int | None) -> int:
    if budget is None or row_bytes <= 0:
        return size
    while size > 1 and size * row_bytes > budget:
        size //= 2
    if size * row_bytes > budget:
        raise UserError(f"one sample of the default net needs about {row_bytes / 2**20:,.1f} MiB (its score "
                        f"blobs are batch × N per state), over the {budget / 2**20:,.1f} MiB a net may take "
                        "(half of --memory-budget); raise --memory-budget, or prepare with a smaller --max-items")
    return size


def net_row_bytes(pages: int, items: int, history_k: int, paths: int, *, states: int = _MAX_STATES,
                  width: int = _MAX_WIDTH, train: bool = True) -> int:
    """Bytes per sample of the default space's largest net (README, "Memory of a training"),
    with `paths` fixed-map paths (0-2: the repeat path, the neighbour path).

    Per state: the top and shortcut projections, the score sum and the softmax's
    probabilities, each N wide, and per path the state's page map, one term per lag up
    to it and the history's term: (4 + paths·(t + 3))·N. The history: per path V̄ R (N;
    the sparse route first holds K·N rows, and its in-place Scale a copy of them), and
    the page rows (sparse: 3·K·E_0; dense: the M+1 wide input row). Hidden layers are
    small beside N. TRAIN keeps a gradient beside every blob (×2).
    """
    scores = sum(4 + paths * (t + 3) for t in range(states)) * items
    pairs = 3 * history_k * width + paths * (2 * history_k + 1) * items
    history = pairs if history_k else pages + 1 + paths * items
    hidden = 12 * states * width
    return 4 * ((2 if train else 1) * (scores + hidden) + history)


def fixed_maps_bytes(pages: int, items: int, maps: int) -> int:
    """Bytes the `maps` fixed [M+1, N] maps cost a training beside the per-sample blobs:
    Caffe keeps a param at lr_mult 0 among the learnable ones, so each has its data, its
    diff and Adam's history, update and temporary blobs: six copies."""
    return 6 * maps * (pages + 1) * items * 4


def repeat_fits(pages: int, items: int, maps: int = 1) -> bool:
    """Whether `maps` fixed [M+1, N] maps (the repeat path's R, the neighbour path's Q)
    are small enough by default."""
    return maps * (pages + 1) * items * 4 <= REPEAT_MAP_LIMIT


def default_base(pages: int, items: int, train_samples: int, target: str, *, history_k: int = 0,
                 memory_budget: int | None = DEFAULT_MEMORY_BUDGET, repeats: float | None = None) -> DRNNConfig:
    """The base config for a dataset of M `pages`, N `items` and `train_samples` rows
    (sparse history of K `history_k` pairs, or 0: dense), its TRAIN and TEST batches
    sized so that the largest net of the default space fits `memory_budget` (half each,
    less the fixed maps' copies). `repeats` is the share of train samples whose target is
    among the session's own items (drnngen.bind.repeat_share; None: unknown); the repeat
    path is on where it fits and that share reaches MIN_REPEAT_SHARE, and the neighbour
    path with it where both maps fit."""
    model: dict[str, Any] = {"top_k": min(20, items), "widths": 128, "layers": 2, "shortcut": 1,
                             "activations": "ReLU"}
    if repeat_fits(pages, items) and (repeats is None or repeats >= MIN_REPEAT_SHARE):
        # β starts at 5 and learns 10x faster than the weights: from 1 at lr_mult 1 it had
        # moved only to 1.6-1.8 by the best snapshot on the shop log of `make quality`
        # (test MRR@20 0.655 there; 0.754 with these two settings, same net and seed).
        model.update(repeat=True, repeat_init=5.0, repeat_lr_mult=10.0)
        if repeat_fits(pages, items, maps=2):
            # The neighbour path where the repeat path is on: the session's items' item-kNN
            # neighbours are what the net finds hardest to learn from few samples. The best
            # shop genotypes of `make quality`, trained alone with and without Q folded in
            # (scale 0.5 under β = 5): purchase test R@20 0.838 -> 0.899, next-item 0.362 ->
            # 0.402 (MRR 0.170 -> 0.185), both past every baseline.
            model.update(neighbours=True, neighbours_init=NEIGHBOURS_INIT, neighbours_lr_mult=10.0)
    paths = int(bool(model.get("repeat"))) + int(bool(model.get("neighbours")))
    half = None if memory_budget is None else max(1, memory_budget // 2 - fixed_maps_bytes(pages, items, paths))
    batch = batch_for(train_samples, net_row_bytes(pages, items, history_k, paths), half)
    test_batch = _within(TEST_BATCH, net_row_bytes(pages, items, history_k, paths, train=False), half)
    return parse_config({
        "name": "drnn",
        "model": model,
        "data": {"batch_size": batch, "test_batch_size": test_batch},
        "solver": {"type": "Adam", "base_lr": 0.002, "lr_policy": "fixed", "momentum": 0.9,
                   "weight_decay": 0.0, "display": 0},
    })


def default_space(pages: int, items: int, target: str) -> SearchSpace:
    """Small nets that train in seconds to minutes on a CPU, with the learning
    rate, weight decay, dropout and the cell (the paper's or GRU4Rec's) as genes."""
    # The repeat path is on in the base config where its map fits, not a gene: on the
    # shop log of `make quality` candidates without it reached fitness 0.75 at best
    # against 0.90 with it, so drawing it would only halve the useful evaluations. `tied` stays out: it needs
    # widths[l-1] == widths[0], which most genotypes break.
    return SearchSpace(
        states=IntRange(2, 6), layers=IntRange(1, 3), shortcut=IntRange(0, 2),
        activations=("ReLU", "TanH", "ELU"), widths=(64, 128, 256),
        base_lr=(0.001, 0.002, 0.005), weight_decay=(0.0, 0.0001), dropout=(0.0, 0.2, 0.4),
        cell=("drnn", "gru"),
    )
