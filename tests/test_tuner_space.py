"""Search-space YAML, the genotype codec and the DEAP types."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from drnngen.codegen.config import load_config
from drnngen.errors import UserError
from drnngen.tuner.codec import decode, describe, encode, from_list, individual_class, random_individual, violations
from drnngen.tuner.space import IntRange, SearchSpace, load_space, parse_space, space_mapping
from tests.golden_tool import EXAMPLES


def test_example_space_is_the_default_space() -> None:
    assert load_space(EXAMPLES / "space.yaml") == SearchSpace()
    assert parse_space(space_mapping(SearchSpace())) == SearchSpace()


def test_space_errors_name_their_keys_all_at_once(tmp_path: Path) -> None:
    bad = tmp_path / "space.yaml"
    bad.write_text("states: {min: 4, max: 2}\nlayers: two\nactivations: [ReLU, Swish]\nwidths: [0]\ncolour: red\n")
    with pytest.raises(UserError) as info:
        load_space(bad)
    text = str(info.value)
    for part in ("colour: unknown key", "layers: expected an integer", "unknown activation 'Swish'",
                 "widths: expected positive int"):
        assert part in text
    with pytest.raises(UserError, match="states: need 1 <= min <= max"):
        parse_space({"states": {"min": 4, "max": 2}})
    with pytest.raises(UserError, match=r"shortcut: min 1 must be < layers\.min 1"):
        parse_space({"layers": {"min": 1, "max": 3}, "shortcut": {"min": 1, "max": 2}})


def test_activation_aliases_are_canonical_and_fixed_integers_allowed() -> None:
    space = parse_space({"activations": ["relu", "tanh"], "states": 4, "base_lr": [0.1, 1]})
    assert space.activations == ("ReLU", "TanH")
    assert space.states == IntRange(4, 4)
    assert space.base_lr == (0.1, 1.0)


def test_decode_replaces_genes_on_the_base_config_and_encode_inverts_it() -> None:
    base = load_config(EXAMPLES / "small.yaml")
    space = SearchSpace(base_lr=(0.01, 0.1), batch_size=(32, 64))
    chromosome = [4, 3, 2, "ELU", "ReLU", "TanH", 50, 100, 200, 0.01, 32]
    cfg = decode(chromosome, base, space)
    assert (cfg.model.states, cfg.model.layers, cfg.model.shortcut) == (4, 3, 2)
    assert cfg.model.activations == ("ELU", "ReLU", "TanH") and cfg.model.widths == (50, 100, 200)
    assert cfg.solver.base_lr == 0.01 and cfg.data.batch_size == 32
    assert cfg.solver.max_iter == base.solver.max_iter and cfg.name == base.name  # the rest is the base's
    assert encode(cfg, space) == chromosome
    assert describe(chromosome, space) == "w=4 l=3 h=2 a=ELU,ReLU,TanH E=50,100,200 lr=0.01 batch=32"


def test_the_cell_gene_follows_the_other_optional_genes() -> None:
    space = parse_space({"base_lr": [0.01, 0.1], "cell": ["gru", "drnn"]})
    assert [g.name for g in space.optional_genes()] == ["base_lr", "cell"]
    chromosome = [2, 1, 0, "ReLU", 50, 0.1, "gru"]
    cfg = decode(chromosome, load_config(EXAMPLES / "small.yaml"), space)
    assert cfg.model.cell == "gru" and encode(cfg, space) == chromosome
    assert describe(chromosome, space) == "w=2 l=1 h=0 a=ReLU E=50 lr=0.1 cell=gru"
    with pytest.raises(UserError, match="cell: unknown cell 'GRU'"):
        parse_space({"cell": ["GRU"]})
    with pytest.raises(UserError, match="cell: lists a value twice"):
        parse_space({"cell": ["gru", "gru"]})


def test_violations_catch_every_broken_constraint() -> None:
    space = SearchSpace()
    assert violations([3, 2, 1, "ReLU", "TanH", 50, 100], space) == []
    assert "h=2 >= l=2" in violations([3, 2, 2, "ReLU", "TanH", 50, 100], space)
    assert violations([3, 2, 1, "ReLU", 50, 100], space) == ["length 6 != 7 for l=2"]
    assert violations([9, 2, 1, "Swish", "TanH", 50, 7], space) == [
        "w=9 outside IntRange(low=2, high=6)", "activation 'Swish' not in the space", "width 7 not in the space"]


def test_random_individuals_are_legal_seeded_deap_individuals() -> None:
    space = SearchSpace()
    cls = individual_class()
    assert individual_class() is cls  # created once, however often asked
    a = random_individual(random.Random(4), space)
    b = random_individual(random.Random(4), space)
    assert isinstance(a, cls) and not a.fitness.valid and list(a) == list(b)
    assert violations(a, space) == []
    assert from_list(a, space).layers == a[1]


@pytest.mark.parametrize(("text", "message"), [
    ("widths: [[1]]\n", "widths: expected a list of plain values"),
    ("base_lr: [.nan]\n", "base_lr: expected positive float values"),
    ("states: {min: 2, max: 300}\n", "states: max 300 is above 256"),
    ("layers: {min: 1, max: 40}\n", "layers: max 40 is above 16"),
    ("widths: [8, 100000]\n", "widths: 100000 is above 65536"),
    ("states: 2\nstates: 3\n", "duplicate"),
])
def test_a_hostile_space_file_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as info:
        load_space(path)
    assert "\n" not in str(info.value)
