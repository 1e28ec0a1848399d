"""Training curves from Caffe's own output (glog lines of ``Solver::Step``/``Test``).

Caffe prints, at INFO level::

    Iteration 200 (1.2 iter/s, 8.3s/10 iters), loss = 2.17        (older builds: "Iteration 200, loss = 2.17")
    Iteration 200, Testing net (#0)
        Test net output #0: accuracy = 0.31
        Test net output #1: s3_loss = 2.05 (* 1 = 2.05 loss)

Only test net #0 is read (the validation net the tuner scores). Values Caffe
prints as ``nan``/``inf`` are kept as such: a diverged curve should show it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_NUMBER = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|-?inf))"
_TRAIN = re.compile(r"Iteration (\d+)(?: \([^)]*\))?, loss = " + _NUMBER)
_TESTING = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")
_TEST_OUTPUT = re.compile(r"Test net output #\d+: (\S+) = " + _NUMBER)


@dataclass(frozen=True)
class TrainingCurve:
    """Train loss per display interval and each test output per test interval."""

    train_loss: tuple[tuple[int, float], ...] = ()
    test: dict[str, tuple[tuple[int, float], ...]] = field(default_factory=dict)
    # Caffe's log prints the net's total loss; the runner records the last state's
    train_label: str = "train loss (sum over states)"
    kept: int | None = None  # iteration of the snapshot the training kept (its best validation point)
    stopped: tuple[int, str] | None = None  # (iteration, why): max_iter, patience, deadline, nan

    def __bool__(self) -> bool:
        return bool(self.train_loss or self.test)


def parse_caffe_log(lines: Iterable[str]) -> TrainingCurve:
    """The curves in Caffe's glog output; an empty curve when there are none (e.g. INFO was off)."""
    train: list[tuple[int, float]] = []
    test: dict[str, list[tuple[int, float]]] = {}
    testing_at: int | None = None  # iteration of the test net #0 block being read
    for line in lines:
        if match := _TESTING.search(line):
            testing_at = int(match.group(1)) if match.group(2) == "0" else None
        elif (match := _TEST_OUTPUT.search(line)) and testing_at is not None:
            test.setdefault(match.group(1), []).append((testing_at, float(match.group(2))))
        elif match := _TRAIN.search(line):
            train.append((int(match.group(1)), float(match.group(2))))
            testing_at = None
    return TrainingCurve(tuple(train), {name: tuple(points) for name, points in test.items()})

