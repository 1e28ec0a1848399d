"""The GA loop: Algorithm 2 (GenTune) on DEAP, and the strategies it can run.

The loop knows nothing about Caffe, files or the chromosome's layout: it gets
a DEAP toolbox (`individual`, `mate`, `mutate`, `clone`), an `evaluate_many`
callable, a seeded `random.Random`, and optional hooks. A unit test injects
a cheap deterministic fitness and fixed r-values; `tuner.evaluator` is the
cached, ledgered, parallel Caffe evaluation.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar, Protocol

from deap import base, tools

from drnngen.errors import UserError


@dataclass(frozen=True)
class Evaluation:
    """What evaluating one individual gave: its fitness, and how it was had."""

    fitness: float
    cached: bool = False  # no training was needed (ledger or cache hit)
    failed: bool = False  # Caffe failed; `fitness` is then the worst fitness


EvaluateMany = Callable[[Sequence[Any]], Sequence[Evaluation]]
RngState = Any  # random.Random.getstate()


class Interrupted(Exception):
    """Raised by an evaluate_many that was told to stop (the paper's user interrupt)."""


class Journal(Protocol):
    """Where the loop reports its progress (the ledger; tests may record)."""

    def generation_started(self, gen: int, population: Sequence[Any], rng_state: RngState) -> None: ...

    def generation_finished(
        self, gen: int, population: Sequence[Any], rng_state: RngState, record: dict[str, Any], best: Any
    ) -> None: ...


@dataclass
class Checkpoint:
    """Where a resumed run starts: generation `generation` from its first line.

    `population` is the population at that generation's start (empty for
    generation 0, the random initial population), `best` the best individual
    evaluated before it (None for generation 0).
    """

    generation: int
    population: list[Any]
    rng_state: RngState
    best: Any = None


@dataclass
class TuneResult:
    """What the loop returns; printing is the caller's business."""

    population: list[Any]
    best: Any
    logbook: tools.Logbook
    interrupted: bool = False
    generations_done: int = 0


@dataclass
class Context:
    """What a strategy may use within one generation."""

    toolbox: base.Toolbox
    rng: Any  # random.Random
    draw: Callable[[], float]
    pc: float
    pm: float
    evaluate: Callable[[Sequence[Any]], None]


class Strategy(ABC):
    """One generation of a GA. A new strategy is a new subclass, not an `if`."""

    name: ClassVar[str]

    def check(self, pc: float, pm: float) -> None:
        """Raise UserError when the probabilities make no sense for this strategy."""
        for key, value in (("pc", pc), ("pm", pm)):
            if not 0.0 <= value <= 1.0:
                raise UserError(f"{key}: must be within [0, 1], got {value}")

    @abstractmethod
    def generation(self, population: list[Any], ctx: Context) -> list[Any]:
        """Vary and evaluate; return the next population."""


class Literal(Strategy):
    """Algorithm 2's generation as written (lines 5-13): no selection at all.

    The evaluations that lines 12-13 ask for are gathered over the pairs and
    run as one batch (in parallel) after the last pair. The operators never
    read a fitness, so this changes nothing but the wall time. With an odd
    population the last chromosome after the shuffle has no partner and is
    left as it is.
    """

    name = "literal"

    def generation(self, population: list[Any], ctx: Context) -> list[Any]:
        ctx.rng.shuffle(population)  # line 5
        changed: list[Any] = []
        for k in range(len(population) // 2):  # line 6
            c1, c2 = population[2 * k], population[2 * k + 1]  # line 7
            r1, r2, r3 = ctx.draw(), ctx.draw(), ctx.draw()  # line 8
            if r1 < ctx.pc:  # line 9
                ctx.toolbox.mate(c1, c2)
            if r2 < ctx.pm:  # line 10
                ctx.toolbox.mutate(c1)
            if r3 < ctx.pm:  # line 11
                ctx.toolbox.mutate(c2)
            if r1 < ctx.pc or r2 < ctx.pm:  # line 12
                changed.append(c1)
            if r1 < ctx.pc or r3 < ctx.pm:  # line 13
                changed.append(c2)
        ctx.evaluate(changed)  # lines 12-13's "evaluate, update best"
        return population


@dataclass
class MuPlusLambda(Strategy):
    """Elitist (μ + λ) with tournament selection (DEAP's eaMuPlusLambda/varOr).

    λ offspring (default μ): with probability pc a crossover of two tournament
    winners (first child kept), else with pm a mutated winner, else a copy.
    The next population is the best μ of parents and offspring.
    """

    name: ClassVar[str] = "elitist"
    tournsize: int = 3
    offspring: int | None = None

    def check(self, pc: float, pm: float) -> None:
        super().check(pc, pm)
        if pc + pm > 1.0:
            raise UserError(f"pc + pm: must be <= 1 for the elitist strategy, got {pc + pm:g}")

    def generation(self, population: list[Any], ctx: Context) -> list[Any]:
        from drnngen.tuner.operators import selTournament

        children = []
        for _ in range(self.offspring or len(population)):
            r = ctx.draw()
            if r < ctx.pc:
                a, b = (ctx.toolbox.clone(p) for p in selTournament(population, 2, ctx.rng, self.tournsize))
                ctx.toolbox.mate(a, b)
                del a.fitness.values
                children.append(a)
            elif r < ctx.pc + ctx.pm:
                (a,) = (ctx.toolbox.clone(p) for p in selTournament(population, 1, ctx.rng, self.tournsize))
                ctx.toolbox.mutate(a)
                del a.fitness.values
                children.append(a)
            else:
                children.append(ctx.toolbox.clone(selTournament(population, 1, ctx.rng, self.tournsize)[0]))
        ctx.evaluate([c for c in children if not c.fitness.valid])
        return list(tools.selBest(population + children, len(population)))


class RandomSearch(Strategy):
    """Random search (Bergstra & Bengio, JMLR 2012), the baseline every tuner must
    beat: each generation is a fresh random population, all of it evaluated."""

    name = "random"

    def generation(self, population: list[Any], ctx: Context) -> list[Any]:
        fresh = [ctx.toolbox.individual() for _ in population]
        ctx.evaluate(fresh)
        return fresh


STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (Literal, MuPlusLambda, RandomSearch)}


def strategy_named(name: str) -> Strategy:
    """The strategy for `--strategy NAME`."""
    try:
        return STRATEGIES[name]()
    except KeyError:
        raise UserError(f"strategy: unknown {name!r} (one of: {', '.join(STRATEGIES)})") from None


@dataclass
class _Tally:
    """Evaluations of one generation, and the running best (lines 3, 12, 13)."""

    best: Any = None
    evals: int = 0
    cached: int = 0
    failed: int = 0
    fitnesses: list[float] = field(default_factory=list)

    def add(self, individual: Any, result: Evaluation, clone: Callable[[Any], Any]) -> None:
        self.evals += 1
        self.cached += result.cached
        self.failed += result.failed
        # Strictly greater: of equal fitnesses the first evaluated stays best.
        if self.best is None or individual.fitness.values[0] > self.best.fitness.values[0]:
            self.best = clone(individual)


def gentune(
    toolbox: base.Toolbox,
    rng: Any,
    *,
    generations: int,
    population_size: int,
    pc: float,
    pm: float,
    evaluate_many: EvaluateMany | None = None,
    strategy: Strategy | None = None,
    journal: Journal | None = None,
    stop: Callable[[], bool] = lambda: False,
    draw: Callable[[], float] | None = None,
    start: Checkpoint | None = None,
) -> TuneResult:
    """Algorithm 2, GenTune(w, l, h), as docs/MODEL.md reads it::

         1: τ ← 0
         2: P ← n random chromosomes (w, l, h, a_1…a_l, E_1…E_l)
         3: evaluate every c ∈ P; best ← argmax_c fit(c)
         4: while τ < N and not interrupted do
         5:     shuffle P
         6:     for k ← 0 … ⌊n/2⌋ − 1 do
         7:         (c1, c2) ← (P[2k], P[2k+1])
         8:         r1, r2, r3 ~ U[0, 1]
         9:         if r1 < p_c then crossover(c1, c2)
        10:         if r2 < p_m then mutate(c1)
        11:         if r3 < p_m then mutate(c2)
        12:         if r1 < p_c or r2 < p_m then evaluate c1; update best
        13:         if r1 < p_c or r3 < p_m then evaluate c2; update best
        14:     τ ← τ + 1
        15: return best

    Lines 5-13 are the default `Literal` strategy; another `Strategy` replaces
    them when asked for. fit(c) = accuracy + 1 / (1 + loss) comes from
    `evaluate_many` (default: `toolbox.map(toolbox.evaluate, ...)`). Logbook
    record τ = 0 is lines 1-3. `draw` supplies the r-values (default
    `rng.random`); `stop()` is the "interrupted" of line 4, and an
    `Interrupted` raised by `evaluate_many` ends the loop inside a generation.
    `journal` hears of each generation's start and end (with the RNG state),
    and `start` resumes at a generation that a journal recorded.
    """
    strategy = strategy or Literal()
    strategy.check(pc, pm)
    if population_size < 2:
        raise UserError(f"population: must be >= 2, got {population_size}")
    evaluate_many = evaluate_many or _map_evaluate(toolbox)
    draw = draw or rng.random
    logbook = tools.Logbook()
    logbook.header = ["gen", "evals", "cached", "failed", "max", "mean", "best_fitness", "best"]
    start = start or Checkpoint(0, [], rng.getstate())
    rng.setstate(start.rng_state)
    tally = _Tally(best=start.best)
    population = [toolbox.clone(ind) for ind in start.population]
    gen = start.generation
    try:
        while gen <= generations and not stop():  # line 4 (generation 0 is lines 1-3)
            if journal is not None:
                journal.generation_started(gen, population, rng.getstate())
            tally = _Tally(best=tally.best)
            evaluate = partial(_evaluate, evaluate_many=evaluate_many, tally=tally, toolbox=toolbox)
            ctx = Context(toolbox, rng, draw, pc, pm, evaluate)
            if gen == 0:
                population = [toolbox.individual() for _ in range(population_size)]  # line 2
                ctx.evaluate(population)  # line 3
            else:
                population = strategy.generation([toolbox.clone(i) for i in population], ctx)
            record = _record(gen, population, tally)
            logbook.record(**record)
            if journal is not None:
                journal.generation_finished(gen, population, rng.getstate(), record, tally.best)
            gen += 1  # line 14
    except Interrupted:
        return TuneResult(population, tally.best, logbook, interrupted=True, generations_done=gen)
    return TuneResult(population, tally.best, logbook, interrupted=gen <= generations, generations_done=gen)


def _map_evaluate(toolbox: base.Toolbox) -> EvaluateMany:
    """DEAP's way: toolbox.map(toolbox.evaluate, individuals), evaluate → fitness."""

    def evaluate_many(individuals: Sequence[Any]) -> list[Evaluation]:
        return [Evaluation(float(f)) for f in toolbox.map(toolbox.evaluate, individuals)]

    return evaluate_many


def _evaluate(individuals: Sequence[Any], evaluate_many: EvaluateMany, tally: _Tally, toolbox: base.Toolbox) -> None:
    if not individuals:
        return
    results = evaluate_many(individuals)
    for individual, result in zip(individuals, results, strict=True):
        individual.fitness.values = (result.fitness,)
        tally.add(individual, result, toolbox.clone)


def _record(gen: int, population: Sequence[Any], tally: _Tally) -> dict[str, Any]:
    values = [ind.fitness.values[0] for ind in population if ind.fitness.valid]
    best = tally.best
    return {
        "gen": gen,
        "evals": tally.evals,
        "cached": tally.cached,
        "failed": tally.failed,
        "max": max(values) if values else math.nan,
        "mean": sum(values) / len(values) if values else math.nan,
        "best_fitness": best.fitness.values[0] if best is not None else math.nan,
        "best": list(best) if best is not None else None,
    }
