"""Trainings beyond a candidate's one full-budget training: the rungs of
successive halving (`tune --fidelity successive-halving`) and the other
Caffe seeds of `--rescore`.

Successive halving (Jamieson & Talwalkar 2016; the inner loop of Hyperband,
Li et al. 2018) runs inside one generation's batch of trainings: every
candidate trains for the first rung's budget, the best ``1/eta`` of them
continue from their kept snapshot to ``eta`` times that budget, and so on up
to the full budget. The GA sees each candidate's fitness at the highest rung
it reached. Each rung is a training of its own (a `Training`), with its own
key: the ledger records every rung, the cache shares them across runs, and a
resumed run reads back every rung that finished, so a crash loses at most the
trainings in flight.

The loop here is pure: it gets a `train` callable (the evaluator's ledger →
cache → executor path) and only decides who trains what.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from drnngen.codegen.build import generate
from drnngen.errors import UserError
from drnngen.runner import TrainJob
from drnngen.tuner.candidate import CONFIG_FILE, MODEL_FILE, Candidate, Setting, train_job
from drnngen.tuner.fitness import Outcome
from drnngen.tuner.gentune import Interrupted

FULL = "full"
SUCCESSIVE_HALVING = "successive-halving"
FIDELITIES = (FULL, SUCCESSIVE_HALVING)
RUNG, RESCORE = "rung", "rescore"  # ledger `trainings.kind`


@dataclass(frozen=True)
class Schedule:
    """Successive halving's shape: `rungs` budgets, each `eta` times the one before."""

    eta: int = 3
    rungs: int = 3

    def __post_init__(self) -> None:
        if self.eta < 2:
            raise UserError(f"eta: must be >= 2, got {self.eta}")
        if self.rungs < 2:
            raise UserError(f"rungs: must be >= 2 for successive halving, got {self.rungs}")

    def budgets(self, full: int) -> tuple[int, ...]:
        """Cumulative iterations at the end of each rung; the last is `full`.
        A budget too small to split that far gives fewer rungs (never two equal ones)."""
        budgets: list[int] = []
        for r in range(self.rungs):
            b = max(1, math.ceil(full / self.eta ** (self.rungs - 1 - r)))
            if not budgets or b > budgets[-1]:
                budgets.append(b)
        return tuple(budgets)

    def promoted(self, entered: int) -> int:
        """How many of the `entered` candidates of a rung go on: the top 1/eta
        (at least one, so every batch gets a full-budget result)."""
        return max(1, entered // self.eta)

    def trainings(self, n: int, full: int) -> int:
        """The most trainings a batch of `n` candidates asks for (the progress bar's length)."""
        total, alive = 0, n
        for _ in self.budgets(full):
            total += alive
            alive = self.promoted(alive)
        return total


@dataclass(frozen=True)
class Training:
    """One training that is not a candidate's single full-budget one.

    A rung of `owner` (`kind` RUNG: iterations `start` → `stop`, starting from
    the weights `init` of the rung before), or a rescore (`kind` RESCORE: the
    owner's network at another Caffe seed, from scratch at the full budget).
    `candidate` is what trains (for a rescore, the reseeded network, whose own
    key is the training's and names its folder).
    """

    key: str
    owner: str
    kind: str
    candidate: Candidate
    start: int
    stop: int
    rung: int | None = None
    init: str | None = None

    @property
    def snapshot(self) -> Path:
        return Path(MODEL_FILE if self.rung is None else f"rung{self.rung}.caffemodel")

    def job(self, folder: Path, setting: Setting) -> TrainJob:
        """The runner's job: the candidate's own, cut to this training's steps and files."""
        job = train_job(self.candidate, folder, setting)
        steps = self.stop - self.start
        if self.rung is None:
            return job
        # The previous rung's snapshot holds every weight, the repeat path's fixed map included.
        init = Path(self.init) if self.init is not None else job.init_weights
        reads = tuple(p for p in job.reads if p != job.init_weights) + (() if init is None else (init,))
        return dataclasses.replace(job, iterations=steps, snapshot=self.snapshot, init_weights=init, reads=reads,
                                   log_file=f"caffe-rung{self.rung}.log", loss_interval=max(1, steps // 20))


def rung_key(owner: str, budgets: Sequence[int]) -> str:
    """A rung training's key: the candidate's and the chain of budgets that led to it
    (the same network on the same chain is the same training, whatever eta gave it)."""
    return hashlib.sha256(f"{owner}:rungs:{','.join(map(str, budgets))}".encode()).hexdigest()


def rung(candidate: Candidate, budgets: Sequence[int], r: int, init: str | None) -> Training:
    start = 0 if r == 0 else budgets[r - 1]
    return Training(rung_key(candidate.key, budgets[: r + 1]), candidate.key, RUNG, candidate, start, budgets[r],
                    rung=r, init=init)


TrainMany = Callable[[Sequence[Training]], Mapping[str, Outcome]]


def successive_halving(candidates: Sequence[Candidate], schedule: Schedule, train: TrainMany) -> dict[str, Outcome]:
    """Each candidate's outcome at the highest rung it reached (key → Outcome).

    `train` returns the outcome of each training it got (key → Outcome); one
    missing (the run was stopped) raises `Interrupted` before anything is
    decided, so a resume replays the batch with every finished rung read back.
    """
    finals: dict[str, Outcome] = {}
    spent: dict[str, tuple[float, float]] = {c.key: (0.0, 0.0) for c in candidates}
    alive = list(candidates)
    snapshot: dict[str, str | None] = {c.key: None for c in candidates}
    for c in candidates:
        if not schedule.budgets(c.iterations):
            raise UserError("successive halving needs a budget of at least one iteration")
    r = 0
    while alive:
        trainings = [rung(c, schedule.budgets(c.iterations), r, snapshot[c.key]) for c in alive]
        outcomes = train(trainings)
        if any(t.key not in outcomes for t in trainings):
            raise Interrupted  # the stop event skipped rungs that had not started
        for c, t in zip(alive, trainings, strict=True):
            o = outcomes[t.key]
            solver, wall = spent[c.key]
            spent[c.key] = (solver + o.solver_seconds, wall + o.wall_seconds)
            finals[c.key] = _as_candidate(o, t, len(schedule.budgets(c.iterations)), spent[c.key])
            snapshot[c.key] = o.caffemodel
        r += 1
        alive = [c for c in _ranked(alive, finals) if r < len(schedule.budgets(c.iterations))]
        alive = alive[: schedule.promoted(len(trainings))]
    return finals


def _ranked(alive: Sequence[Candidate], finals: Mapping[str, Outcome]) -> list[Candidate]:
    """The rung's successful candidates, fittest first (of equals, the first in the batch)."""
    ok = [c for c in alive if finals[c.key].ok]
    return sorted(ok, key=lambda c: -finals[c.key].fitness)


def _as_candidate(o: Outcome, t: Training, rungs: int, spent: tuple[float, float]) -> Outcome:
    """A rung's outcome as the candidate's: iterations counted from scratch, the
    seconds of all its rungs, and which rung it is."""
    assert t.rung is not None
    best = None if o.best_iteration is None else o.best_iteration + t.start
    validations = tuple({**v, "iteration": int(v["iteration"]) + t.start} for v in o.validations)
    return dataclasses.replace(o, iterations=o.iterations + t.start, best_iteration=best, solver_seconds=spent[0],
                               wall_seconds=spent[1], validations=validations,
                               note=f"successive halving: rung {t.rung + 1} of {rungs} ({t.stop} iterations)")


# --- rescoring -----------------------------------------------------------------------------


def reseeded(candidate: Candidate, setting: Setting, index: int) -> Candidate:
    """The candidate's network at its `index`-th other Caffe seed (derived from the
    run's seed and the candidate's key), with the key its files give."""
    seed = int.from_bytes(hashlib.sha256(f"{setting.seed}:{candidate.key}:rescore{index}".encode()).digest()[:4],
                          "big") & 0x7FFFFFFF
    cfg = candidate.config
    cfg = dataclasses.replace(cfg, solver=dataclasses.replace(cfg.solver, random_seed=seed))
    # Keyed by the candidate's key (data, protocol and all) and the seed: the same
    # rescore in another run with the same --seed is the cache's.
    key = hashlib.sha256(f"{candidate.key}:rescore:{seed}".encode()).hexdigest()
    return dataclasses.replace(candidate, key=key, config=cfg, files=generate(cfg, source=CONFIG_FILE),
                               random_seed=seed)


def rescorings(candidate: Candidate, setting: Setting, seeds: int) -> list[Training]:
    """`seeds` full-budget trainings of the candidate's network at other Caffe seeds."""
    out = []
    for i in range(seeds):
        other = reseeded(candidate, setting, i)
        out.append(Training(other.key, candidate.key, RESCORE, other, 0, candidate.iterations))
    return out
