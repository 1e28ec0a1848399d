"""Genotype ⇄ config. The chromosome is the paper's, a flat list:

    [w, l, h, a_1 … a_l, E_1 … E_l (, base_lr) (, batch_size) (, solver_type)
     (, weight_decay) (, dropout) (, repeat) (, tied) (, cell)]

activations as Caffe type names, widths as ints; the optional genes
(`tuner.space.OPTIONAL_GENES`, in that order) are genes only when the search
space lists choices for them. A decoded config is the base config with these
fields replaced, re-validated by codegen's own parser.

The DEAP types live here and only here (`individual_class`), created once
under a guard, so importing this module twice or in a worker never warns.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from deap import base, creator

from drnngen.codegen.config import DRNNConfig, parse_config, to_mapping
from drnngen.codegen.config import activations as layer_activations
from drnngen.codegen.config import widths as layer_widths
from drnngen.tuner.space import SearchSpace

HEAD = 3  # w, l, h


@dataclass(frozen=True)
class Genes:
    """The chromosome as named fields (the list form is what DEAP mutates)."""

    states: int
    layers: int
    shortcut: int
    activations: tuple[str, ...]
    widths: tuple[int, ...]
    base_lr: float | None = None
    batch_size: int | None = None
    solver_type: str | None = None
    weight_decay: float | None = None
    dropout: float | None = None
    repeat: bool | None = None
    tied: bool | None = None
    cell: str | None = None  # optional genes: None when not a gene of the space


def individual_class() -> type[Any]:
    """DEAP's `Individual` (a list with a maximising `fitness`), created once."""
    if not hasattr(creator, "DRNNFitness"):
        creator.create("DRNNFitness", base.Fitness, weights=(1.0,))
    if not hasattr(creator, "DRNNIndividual"):
        creator.create("DRNNIndividual", list, fitness=creator.DRNNFitness)
    cls: type[Any] = creator.DRNNIndividual
    return cls


def to_list(genes: Genes, space: SearchSpace) -> list[Any]:
    """The flat chromosome of `genes`."""
    values: list[Any] = [genes.states, genes.layers, genes.shortcut, *genes.activations, *genes.widths]
    values += [getattr(genes, g.name) for g in space.optional_genes()]
    return values


def from_list(chromosome: Sequence[Any], space: SearchSpace) -> Genes:
    """Named genes of a flat chromosome (its layout follows from l and the space)."""
    w, layers, h = (int(v) for v in chromosome[:HEAD])
    acts = tuple(str(a) for a in chromosome[HEAD:HEAD + layers])
    widths = tuple(int(e) for e in chromosome[HEAD + layers:HEAD + 2 * layers])
    rest = list(chromosome[HEAD + 2 * layers:])
    optional = {g.name: rest.pop(0) for g in space.optional_genes()}
    return Genes(w, layers, h, acts, widths, **optional)


def make_individual(genes: Genes, space: SearchSpace) -> Any:
    """A DEAP individual (fitness not yet valid) holding `genes`."""
    return individual_class()(to_list(genes, space))


def random_layer(rng: random.Random, space: SearchSpace) -> tuple[str, int]:
    """(activation, width) of one hidden layer drawn from the space."""
    return rng.choice(space.activations), rng.choice(space.widths)


def random_genes(rng: random.Random, space: SearchSpace) -> Genes:
    """A uniformly drawn point of the space (the paper's random population)."""
    w = space.states.sample(rng)
    layers = space.layers.sample(rng)
    h = space.shortcut_range(layers).sample(rng)
    per_layer = [random_layer(rng, space) for _ in range(layers)]
    optional = {g.name: rng.choice(getattr(space, g.name)) for g in space.optional_genes()}
    return Genes(w, layers, h, tuple(a for a, _ in per_layer), tuple(e for _, e in per_layer), **optional)


def random_individual(rng: random.Random, space: SearchSpace) -> Any:
    """`random_genes` as a DEAP individual (registered as toolbox.individual)."""
    return make_individual(random_genes(rng, space), space)


def violations(chromosome: Sequence[Any], space: SearchSpace) -> list[str]:
    """Every constraint the chromosome breaks (empty when it is a legal point)."""
    if len(chromosome) < HEAD or not isinstance(chromosome[1], int):
        return [f"chromosome too short or malformed: {list(chromosome)!r}"]
    layers = chromosome[1]
    expected = HEAD + 2 * layers + len(space.optional_genes())
    if len(chromosome) != expected:
        return [f"length {len(chromosome)} != {expected} for l={layers}"]
    g = from_list(chromosome, space)
    problems = [
        *(f"{name}={value} outside {bounds}" for name, value, bounds in (
            ("w", g.states, space.states), ("l", g.layers, space.layers),
            ("h", g.shortcut, space.shortcut_range(g.layers)),
        ) if value not in bounds),
        *(f"activation {a!r} not in the space" for a in g.activations if a not in space.activations),
        *(f"width {e} not in the space" for e in g.widths if e not in space.widths),
    ]
    if g.shortcut >= g.layers:
        problems.append(f"h={g.shortcut} >= l={g.layers}")
    problems += [f"{gene.name} {getattr(g, gene.name)!r} not in the space" for gene in space.optional_genes()
                 if getattr(g, gene.name) not in getattr(space, gene.name)]
    return problems


def decode(chromosome: Sequence[Any], base_cfg: DRNNConfig, space: SearchSpace) -> DRNNConfig:
    """The base config with the chromosome's genes in place, validated by codegen."""
    g = from_list(chromosome, space)
    model = replace(
        base_cfg.model, states=g.states, layers=g.layers, shortcut=g.shortcut,
        activations=g.activations, widths=g.widths,
    )
    mapping = to_mapping(replace(base_cfg, model=model))
    for gene in space.optional_genes():
        mapping[gene.section][gene.key] = getattr(g, gene.name)
    # Round-trip through the parser so a decoded config obeys every rule a
    # hand-written one does (the GA never produces what `build` would reject).
    return parse_config(mapping)


def encode(cfg: DRNNConfig, space: SearchSpace) -> list[Any]:
    """The chromosome of a config (e.g. to seed a population with the base config)."""
    m = cfg.model
    mapping = to_mapping(cfg)
    optional = {g.name: _one(mapping[g.section][g.key]) for g in space.optional_genes()}
    genes = Genes(m.states, m.layers, m.shortcut, layer_activations(cfg), layer_widths(cfg), **optional)
    return to_list(genes, space)


def _one(value: Any) -> Any:
    """A per-layer setting given once for every layer (dropout) as its one value."""
    if isinstance(value, list) and value and all(v == value[0] for v in value):
        return value[0]
    return value


def describe(chromosome: Sequence[Any], space: SearchSpace) -> str:
    """One short line, e.g. `w=3 l=2 h=1 a=ReLU,TanH E=32,16`."""
    g = from_list(chromosome, space)
    text = (
        f"w={g.states} l={g.layers} h={g.shortcut} "
        f"a={','.join(g.activations)} E={','.join(str(e) for e in g.widths)}"
    )
    for gene in space.optional_genes():
        value = getattr(g, gene.name)
        shown = f"{value:g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else value
        text += f" {gene.label}={shown}"
    return text


def dumps(chromosome: Sequence[Any]) -> str:
    """Canonical JSON of a chromosome (the ledger's form)."""
    return json.dumps(list(chromosome), separators=(",", ":"))
