"""Algorithm 2's loop with a cheap deterministic fitness and fixed r-values."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from drnngen.errors import UserError
from drnngen.tuner.gentune import Checkpoint, Evaluation, Interrupted, MuPlusLambda, gentune, strategy_named
from drnngen.tuner.operators import make_toolbox
from drnngen.tuner.space import IntRange, SearchSpace

SPACE = SearchSpace(states=IntRange(2, 5), layers=IntRange(1, 3), shortcut=IntRange(0, 2),
                    activations=("ReLU", "TanH"), widths=(8, 16, 32))


def cheap_fitness(ind: Sequence[Any]) -> float:
    """Deterministic, depends on every gene; in [0, 2) like the real fitness."""
    text = repr(list(ind))
    return (sum(ord(c) * (i + 1) for i, c in enumerate(text)) % 1000) / 500.0


class Recorder:
    """evaluate_many that remembers what it was asked to evaluate, in order."""

    def __init__(self) -> None:
        self.calls: list[list[Any]] = []

    def __call__(self, individuals: Sequence[Any]) -> list[Evaluation]:
        self.calls.append(list(individuals))
        return [Evaluation(cheap_fitness(i)) for i in individuals]


def fixed(values: list[float]) -> Iterator[float]:
    yield from values
    raise AssertionError("the loop drew more r-values than Algorithm 2 does")


def traced_toolbox(rng: random.Random, log: list[tuple[str, int]]) -> Any:
    toolbox = make_toolbox(SPACE, rng)
    mate, mutate = toolbox.mate, toolbox.mutate

    def traced_mate(a: Any, b: Any) -> Any:
        log.append(("mate", id(a)))
        log.append(("mate", id(b)))
        return mate(a, b)

    def traced_mutate(a: Any) -> Any:
        log.append(("mutate", id(a)))
        return mutate(a)

    toolbox.register("mate", traced_mate)
    toolbox.register("mutate", traced_mutate)
    return toolbox


@pytest.mark.parametrize(("draws", "expected"), [
    # pair 0: crossover only → c1, c2; pair 1: mutate c1 only → c1
    ([0.1, 0.9, 0.9, 0.9, 0.1, 0.9], [(0, "c1"), (0, "c2"), (1, "c1")]),
    # pair 0: nothing; pair 1: mutate c2 only
    ([0.9, 0.9, 0.9, 0.9, 0.9, 0.1], [(1, "c2")]),
    # pair 0: crossover and both mutations → each once; pair 1: nothing
    ([0.1, 0.1, 0.1, 0.9, 0.9, 0.9], [(0, "c1"), (0, "c2")]),
    # nothing at all → no evaluation
    ([0.9] * 6, []),
])
def test_exactly_the_chromosomes_algorithm_2_names_are_reevaluated(
    draws: list[float], expected: list[tuple[int, str]]
) -> None:
    rng = random.Random(5)
    log: list[tuple[str, int]] = []
    toolbox = traced_toolbox(rng, log)
    evaluate = Recorder()
    shuffled: list[list[Any]] = []
    original_shuffle = rng.shuffle

    def spy_shuffle(population: list[Any]) -> None:
        original_shuffle(population)
        shuffled.append(list(population))

    rng.shuffle = spy_shuffle  # type: ignore[method-assign]
    r = fixed(draws)
    result = gentune(toolbox, rng, generations=1, population_size=4, pc=0.5, pm=0.5,
                     evaluate_many=evaluate, draw=lambda: next(r))
    initial, *generation = evaluate.calls
    assert len(initial) == 4  # lines 2-3
    (order,) = shuffled
    names = {(k, "c1"): order[2 * k] for k in range(2)} | {(k, "c2"): order[2 * k + 1] for k in range(2)}
    evaluated = [i for call in generation for i in call]
    assert [id(i) for i in evaluated] == [id(names[e]) for e in expected]
    # the operators touched exactly the chromosomes the r-values name
    r1s, r2s, r3s = draws[0::3], draws[1::3], draws[2::3]
    want_log = []
    for k in range(2):
        if r1s[k] < 0.5:
            want_log += [("mate", id(names[(k, "c1")])), ("mate", id(names[(k, "c2")]))]
        if r2s[k] < 0.5:
            want_log.append(("mutate", id(names[(k, "c1")])))
        if r3s[k] < 0.5:
            want_log.append(("mutate", id(names[(k, "c2")])))
    assert log == want_log
    assert result.logbook.select("evals") == [4, len(expected)]


def run(seed: int, **kwargs: Any) -> Any:
    rng = random.Random(seed)
    return gentune(make_toolbox(SPACE, rng), rng, generations=kwargs.pop("generations", 6),
                   population_size=kwargs.pop("population_size", 6), pc=0.7, pm=0.3,
                   evaluate_many=kwargs.pop("evaluate_many", Recorder()), **kwargs)


def test_same_seed_same_result_and_another_seed_differs() -> None:
    a, b, c = run(11), run(11), run(12)
    assert [list(i) for i in a.population] == [list(i) for i in b.population]
    assert list(a.best) == list(b.best)
    assert [list(i) for i in a.population] != [list(i) for i in c.population]


def test_best_is_the_running_maximum_over_every_evaluation() -> None:
    evaluate = Recorder()
    result = run(3, evaluate_many=evaluate, generations=8)
    every = [i for call in evaluate.calls for i in call]
    top = max(cheap_fitness(i) for i in every)
    assert result.best.fitness.values[0] == top
    assert list(result.best) == list(next(i for i in every if cheap_fitness(i) == top))
    assert result.logbook.select("best_fitness")[-1] == top
    assert result.interrupted is False and result.generations_done == 9


def test_stop_before_a_generation_is_the_user_interrupt() -> None:
    calls = iter([False, False, True])
    result = run(3, stop=lambda: next(calls))
    assert result.interrupted is True and result.generations_done == 2
    assert result.best is not None


class Journal:
    def __init__(self) -> None:
        self.started: dict[int, Checkpoint] = {}
        self.best: Any = None

    def generation_started(self, gen: int, population: Sequence[Any], rng_state: Any) -> None:
        self.started[gen] = Checkpoint(gen, [p for p in population], rng_state, self.best)

    def generation_finished(self, gen: int, population: Sequence[Any], rng_state: Any,
                            record: dict[str, Any], best: Any) -> None:
        self.best = best


@pytest.mark.parametrize("stop_after", [2, 7, 13, 20])
def test_interrupt_inside_a_generation_then_resume_equals_uninterrupted(stop_after: int) -> None:
    reference = run(21, generations=5)

    count = 0

    def dying(individuals: Sequence[Any]) -> list[Evaluation]:
        nonlocal count
        count += len(individuals)
        if count > stop_after:
            raise Interrupted
        return Recorder()(individuals)

    journal = Journal()
    first = run(21, generations=5, evaluate_many=dying, journal=journal)
    assert first.interrupted is True
    checkpoint = journal.started[max(journal.started)]
    rng = random.Random(999)  # the state comes from the checkpoint, not the seed
    resumed = gentune(make_toolbox(SPACE, rng), rng, generations=5, population_size=6, pc=0.7, pm=0.3,
                      evaluate_many=Recorder(), start=checkpoint)
    assert [list(i) for i in resumed.population] == [list(i) for i in reference.population]
    assert list(resumed.best) == list(reference.best)
    assert resumed.best.fitness.values == reference.best.fitness.values


def test_elitist_strategy_never_loses_its_best() -> None:
    result = run(4, strategy=MuPlusLambda(), generations=8)
    maxima = result.logbook.select("max")
    assert maxima == sorted(maxima)
    assert result.best.fitness.values[0] == maxima[-1]


def test_strategy_options_are_checked() -> None:
    with pytest.raises(UserError, match="pc \\+ pm"):
        gentune(make_toolbox(SPACE, random.Random(1)), random.Random(1), generations=1, population_size=4,
                pc=0.8, pm=0.5, strategy=MuPlusLambda(), evaluate_many=Recorder())
    with pytest.raises(UserError, match="unknown 'nope'"):
        strategy_named("nope")
    assert strategy_named("literal").name == "literal"
