"""What decides a run's result (`TuneParams`, kept in the ledger) and how it
executes (`Resources`, free to change between a run and its resume)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drnngen.codegen.config import DRNNConfig, parse_config
from drnngen.errors import UserError
from drnngen.tuner.space import SearchSpace, parse_space


@dataclass(frozen=True)
class TuneParams:
    """What decides a run's result. Stored in the ledger; a resume reads it back."""

    data: str
    generations: int
    population: int
    pc: float
    pm: float
    strategy: str
    seed: int
    iterations: int | None
    epochs: float | None
    mode: str
    timeout_s: float | None
    base: dict[str, Any]  # codegen.config.to_mapping of the base config
    space: dict[str, Any]  # tuner.space.space_mapping
    # The training protocol (fields of later releases have defaults: older ledgers lack them):
    validate_every: float = 0.0  # epochs between validation points; 0: one pass at the end
    patience: int = 0  # validation points without improvement that stop a training; 0: never
    time_budget_s: float | None = None  # the whole run's; no training starts once it is spent
    nan_retry: bool = False  # retrain a NaN candidate once at a tenth of its learning rate
    train_seconds: float | None = None  # one training's own wall-time limit (keeps its best snapshot)
    fidelity: str = "full"  # tuner.fidelity: full | successive-halving
    eta: int = 3  # successive halving: the top 1/eta of a rung go on to eta times its budget
    rungs: int = 3  # successive halving: budgets full/eta^(rungs-1), ..., full
    rescore: int = 0  # after the last generation: other Caffe seeds per top candidate
    rescore_top: int = 3  # how many top candidates --rescore retrains

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TuneParams:
        try:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except TypeError as exc:  # a ledger whose params lost keys
            raise UserError(f"the run's parameters are incomplete ({str(exc)[:160]}); start the run again") from None

    def base_config(self) -> DRNNConfig:
        return parse_config(self.base)

    def search_space(self) -> SearchSpace:
        return parse_space(self.space)


@dataclass(frozen=True)
class Resources:
    """How a run executes; may differ between a run and its resume."""

    workers: int = 1
    gpus: tuple[int, ...] = ()
    cache_dir: Path | None = None
    scheduler: str | None = None  # a Dask scheduler's address: evaluate there instead of locally
