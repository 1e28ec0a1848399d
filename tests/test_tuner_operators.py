"""cx*/mut* keep every constraint (h < l, l per-layer genes, bounds) — property tests."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from drnngen.codegen.config import load_config
from drnngen.tuner.codec import decode, from_list, random_individual, violations
from drnngen.tuner.operators import cxLayers, mutGenes, selTournament
from drnngen.tuner.space import IntRange, SearchSpace
from tests.golden_tool import EXAMPLES

OPS_PER_EXAMPLE = 20
EXAMPLES_RUN = 500  # 500 × 20 = 10 000 operator applications


@st.composite
def spaces(draw: st.DrawFn) -> SearchSpace:
    layers_low = draw(st.integers(1, 4))
    layers = IntRange(layers_low, draw(st.integers(layers_low, 6)))
    short_low = draw(st.integers(0, layers_low - 1))
    w_low = draw(st.integers(1, 5))
    return SearchSpace(
        states=IntRange(w_low, draw(st.integers(w_low, 8))),
        layers=layers,
        shortcut=IntRange(short_low, draw(st.integers(short_low, 6))),
        activations=tuple(draw(st.lists(st.sampled_from(["ReLU", "TanH", "Sigmoid", "ELU"]),
                                        min_size=1, max_size=4, unique=True))),
        widths=tuple(draw(st.lists(st.integers(1, 2000), min_size=1, max_size=5, unique=True))),
        base_lr=tuple(draw(st.lists(st.sampled_from([0.01, 0.05, 0.1]), max_size=3, unique=True))),
        batch_size=tuple(draw(st.lists(st.sampled_from([32, 64, 128]), max_size=3, unique=True))),
        cell=tuple(draw(st.lists(st.sampled_from(["drnn", "gru"]), max_size=2, unique=True))),
    )


@settings(max_examples=EXAMPLES_RUN, deadline=None)
@given(space=spaces(), seed=st.integers(0, 2**32 - 1),
       ops=st.lists(st.tuples(st.booleans(), st.integers(0, 3), st.integers(0, 3)),
                    min_size=OPS_PER_EXAMPLE, max_size=OPS_PER_EXAMPLE),
       indpb=st.floats(0.0, 1.0))
def test_operators_never_break_a_constraint(
    space: SearchSpace, seed: int, ops: list[tuple[bool, int, int]], indpb: float
) -> None:
    rng = random.Random(seed)
    population = [random_individual(rng, space) for _ in range(4)]
    for ind in population:
        assert violations(ind, space) == []
    for crossover, i, j in ops:
        if crossover:
            a, b = population[i], population[j] if i != j else population[(j + 1) % 4]
            result: tuple[Any, ...] = cxLayers(a, b, rng, space, indpb)
            assert result[0] is a and result[1] is b
        else:
            result = mutGenes(population[i], rng, space, indpb)
            assert result[0] is population[i] and len(result) == 1
        for ind in result:
            assert violations(ind, space) == [], (ind, space)


def test_ten_thousand_applications_on_the_default_space_decode_to_valid_configs() -> None:
    space = SearchSpace()
    base = load_config(EXAMPLES / "small.yaml")
    rng = random.Random(1)
    population = [random_individual(rng, space) for _ in range(6)]
    applications = 0
    seen = set()
    while applications < 10_000:
        if rng.random() < 0.5:
            a, b = rng.sample(population, 2)
            cxLayers(a, b, rng, space)
            changed = [a, b]
        else:
            changed = list(mutGenes(rng.choice(population), rng, space))
        applications += 1
        for ind in changed:
            assert violations(ind, space) == []
            seen.add(tuple(ind))
    assert applications == 10_000
    assert len({from_list(s, space).layers for s in seen}) == space.layers.high - space.layers.low + 1
    for chromosome in list(seen)[:200]:  # decoding goes through codegen's validation
        cfg = decode(list(chromosome), base, space)
        assert cfg.model.shortcut < cfg.model.layers


def test_mutation_always_changes_something_when_it_can() -> None:
    space = SearchSpace()
    rng = random.Random(3)
    for _ in range(500):
        ind = random_individual(rng, space)
        before = list(ind)
        mutGenes(ind, rng, space, indpb=0.0)
        assert list(ind) != before


def test_mutation_of_a_fixed_space_is_a_no_op() -> None:
    space = SearchSpace(IntRange(3, 3), IntRange(2, 2), IntRange(1, 1), ("ReLU",), (8,))
    rng = random.Random(0)
    ind = random_individual(rng, space)
    assert list(ind) == [3, 2, 1, "ReLU", "ReLU", 8, 8]
    mutGenes(ind, rng, space, indpb=1.0)
    assert list(ind) == [3, 2, 1, "ReLU", "ReLU", 8, 8]


def test_crossover_growing_l_takes_the_donor_layers_and_caps_h() -> None:
    space = SearchSpace(layers=IntRange(1, 4), shortcut=IntRange(0, 3))
    a = [2, 1, 0, "ReLU", 50]
    b = [4, 4, 3, "TanH", "ELU", "Sigmoid", "ReLU", 100, 200, 500, 1000]

    class Always(random.Random):
        def random(self) -> float:  # every swap happens
            return 0.0

    cxLayers(a, b, Always(), space)
    assert a == [4, 4, 3, "TanH", "ELU", "Sigmoid", "ReLU", 100, 200, 500, 1000]
    # b now has a's l = 1 and h = 0 (both swapped); its one layer is a's
    assert b == [2, 1, 0, "ReLU", 50]


def test_crossover_shrinking_l_caps_h_below_l() -> None:
    space = SearchSpace()

    class SwapOnlyL(random.Random):
        calls = 0

        def random(self) -> float:
            self.calls += 1
            return 0.0 if self.calls == 2 else 1.0  # second scalar draw is l

    a = [3, 4, 3, "ReLU", "ReLU", "ReLU", "ReLU", 50, 50, 50, 50]
    b = [3, 2, 0, "TanH", "TanH", 100, 100]
    cxLayers(a, b, SwapOnlyL(), space)
    assert a == [3, 2, 1, "ReLU", "ReLU", 50, 50]
    assert b == [3, 4, 0, "TanH", "TanH", "ReLU", "ReLU", 100, 100, 50, 50]


def test_tournament_uses_the_injected_rng() -> None:
    from drnngen.tuner.codec import individual_class

    cls = individual_class()
    pop = []
    for k in range(10):
        ind = cls([k])
        ind.fitness.values = (float(k),)
        pop.append(ind)
    first = [list(i) for i in selTournament(pop, 5, random.Random(9))]
    again = [list(i) for i in selTournament(pop, 5, random.Random(9))]
    other = [list(i) for i in selTournament(pop, 5, random.Random(10))]
    assert first == again and first != other
