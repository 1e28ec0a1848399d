"""A candidate's score: the runner's TrainResult as the `Outcome` the ledger,
the cache and the GA keep.

fit = top-1 accuracy + 1 / (1 + loss) of the last state on the validation
split, taken from the snapshot the training kept (the best validation point,
see `drnngen.runner.TrainJob`). A candidate that Caffe rejects (CHECK abort,
segfault), whose loss turns NaN before any finite validation point, or that
runs past the timeout is a result too: status, Caffe's message, and
WORST_FITNESS (0, the lowest value the formula can give).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from drnngen.runner import TrainResult, fitness
from drnngen.vocabulary import Status

__all__ = ["WORST_FITNESS", "Outcome", "fitness", "invalid", "lost", "outcome_of"]

WORST_FITNESS = 0.0


@dataclass(frozen=True)
class Outcome:
    """A candidate's result, as the ledger and the cache keep it.

    ``iterations`` is where training stopped, ``best_iteration`` the kept
    snapshot's iteration, ``stop_reason`` why it stopped (max_iter, patience,
    deadline, nan), ``validations`` every validation point as
    ``{"iteration", "loss", "accuracy": {blob: value}}``; ``note`` says what
    the tuner changed to get the result (a NaN retry at a lower learning rate);
    ``state`` the solver state a rung of successive halving saved for the next
    (`runner.state_weights` names its weights).
    """

    status: Status
    fitness: float
    accuracy: float | None = None
    loss: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    iterations: int = 0
    solver_seconds: float = 0.0
    wall_seconds: float = 0.0
    error: str | None = None
    caffemodel: str | None = None
    best_iteration: int | None = None
    stop_reason: str | None = None
    validations: tuple[Mapping[str, Any], ...] = ()
    note: str | None = None
    state: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))

    @property
    def ok(self) -> bool:
        return self.status == Status.OK

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value, "metrics": dict(self.metrics),
                "validations": [dict(v) for v in self.validations]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Outcome:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["validations"] = tuple(values.get("validations") or ())
        return cls(**values)


def outcome_of(result: TrainResult, accuracy_blob: str) -> Outcome:
    """A runner TrainResult as an Outcome with its fitness."""
    failed = Outcome(result.status, WORST_FITNESS, iterations=result.iterations_done,
                     solver_seconds=result.solver_seconds, wall_seconds=result.wall_seconds, error=result.error,
                     stop_reason=result.stopped, validations=tuple(v.to_dict() for v in result.validations))
    if result.status != Status.OK:
        return failed
    loss, accuracy = result.test_loss, result.test_accuracy.get(accuracy_blob)
    if loss is None or accuracy is None or not math.isfinite(loss) or not math.isfinite(accuracy):
        return replace(failed, status=Status.NAN, error=f"validation loss/accuracy not finite ({loss}, {accuracy})")
    return replace(failed, fitness=fitness(accuracy, loss), accuracy=accuracy, loss=loss,
                   metrics=dict(result.test_accuracy), caffemodel=str(result.caffemodel),
                   best_iteration=result.best_iteration, state=None if result.state is None else str(result.state))


def invalid(error: str) -> Outcome:
    """A genotype codegen refused (never trained)."""
    return Outcome(Status.INVALID, WORST_FITNESS, error=error)


def lost(message: str) -> Outcome:
    """A candidate whose Dask workers kept dying under it (out of memory, say)."""
    return Outcome(Status.LOST, WORST_FITNESS, error=message)
