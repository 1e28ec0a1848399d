"""Trainings beyond a candidate's one full-budget training: the rungs of
successive halving (`tune --fidelity successive-halving`) and the other
Caffe seeds of `--rescore`.

Successive halving (Jamieson & Talwalkar 2016; the inner loop of Hyperband,
Li et al. 2018) runs inside one generation's batch of trainings: every
candidate trains for the first rung's budget, the best ``1/eta`` of them
continue to ``eta`` times that budget, and so on up to the full budget. A
rung continues the training the rung before stopped, exactly (its solver
state: iteration, learning-rate schedule, momentum or Adam's moments, the
weights and the train data's position; `runner.TrainJob.resume_state`), so a
candidate's last rung ends with the weights its one full-budget training
would have (bit for bit on the CPU when the net draws no random numbers
while training, as without dropout). The GA sees each candidate's fitness
at the highest rung it reached. Each rung is a training of its own (a `Training`), with its own
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
from drnngen.runner import TrainJob, state_weights
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

    A rung of `owner` (`kind` RUNG: iterations `start` → `stop`, continuing
    the solver state `state` the rung before saved; `keep_state`: save its
    own for the next), or a rescore (`kind` RESCORE: the
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
    state: str | None = None
    keep_state: bool = False

    @property
    def snapshot(self) -> Path:
        return Path(MODEL_FILE if self.rung is None else f"rung{self.rung}.caffemodel")

    @property
    def saved_state(self) -> Path | None:
        """Where this rung's solver state goes (its weights beside it, .caffemodel)."""
        return Path(f"rung{self.rung}.last.solverstate") if self.keep_state else None

    def job(self, folder: Path, setting: Setting) -> TrainJob:
        """The runner's job: the candidate's own, cut to this training's steps and files."""
        job = train_job(self.candidate, folder, setting)
        steps = self.stop - self.start
        if self.rung is None:
            return job
        job = dataclasses.replace(job, iterations=steps, snapshot=self.snapshot, save_state=self.saved_state,
                                  log_file=f"caffe-rung{self.rung}.log", loss_interval=max(1, steps // 20))
        if self.state is None:
            return job
        # The state's weights hold every weight, the repeat path's fixed map included.
        state = Path(self.state)
        reads = (*(p for p in job.reads if p != job.init_weights), state, state_weights(state))
        return dataclasses.replace(job, init_weights=None, resume_state=state, reads=reads)


def rung_key(owner: str, budgets: Sequence[int]) -> str:
    """A rung training's key: the candidate's and the chain of budgets that led to it
    (the same network on the same chain is the same training, whatever eta gave it).
    "resumed": rungs continue the solver state; the keys of the rungs that restarted
    the solver (before 2026-12) do not match, so a cache never mixes the two."""
    return hashlib.sha256(f"{owner}:rungs-resumed:{','.join(map(str, budgets))}".encode()).hexdigest()


def rung(candidate: Candidate, budgets: Sequence[int], r: int, before: Outcome | None) -> Training:
    """Rung `r` of `budgets` for `candidate`, continuing the outcome of rung r - 1 (`before`)."""
    start = 0 if r == 0 else budgets[r - 1]
    if r > 0 and (before is None or before.state is None):
        raise ValueError(f"rung {r} needs the solver state of rung {r - 1}")
    return Training(rung_key(candidate.key, budgets[: r + 1]), candidate.key, RUNG, candidate, start, budgets[r],
                    rung=r, state=before.state if r > 0 and before is not None else None,
                    keep_state=r < len(budgets) - 1)


TrainMany = Callable[[Sequence[Training]], Mapping[str, Outcome]]


def successive_halving(candidates: Sequence[Candidate], schedule: Schedule, train: TrainMany) -> dict[str, Outcome]:
    """Each candidate's outcome at the highest rung it reached (key → Outcome).

    `train` returns the outcome of each training it got (key → Outcome); one
    missing (the run was stopped) raises `Interrupted` before anything is
    decided, so a resume replays the batch with every finished rung read back.
    """
    finals: dict[str, Outcome] = {}
    before: dict[str, Outcome] = {}  # each candidate's last rung, as it came back
    spent: dict[str, tuple[float, float]] = {c.key: (0.0, 0.0) for c in candidates}
    alive = list(candidates)
    for c in candidates:
        if not schedule.budgets(c.iterations):
            raise UserError("successive halving needs a budget of at least one iteration")
    r = 0
    while alive:
        trainings = [rung(c, schedule.budgets(c.iterations), r, before.get(c.key)) for c in alive]
        outcomes = train(trainings)
        if any(t.key not in outcomes for t in trainings):
            raise Interrupted  # the stop event skipped rungs that had not started
        for c, t in zip(alive, trainings, strict=True):
            o = outcomes[t.key]
            solver, wall = spent[c.key]
            spent[c.key] = (solver + o.solver_seconds, wall + o.wall_seconds)
            finals[c.key] = _as_candidate(o, t, len(schedule.budgets(c.iterations)), spent[c.key])
            before[c.key] = o
        r += 1
        alive = [c for c in _ranked(alive, finals)
                 if r < len(schedule.budgets(c.iterations)) and before[c.key].state is not None]
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
