"""DEAP operators for the chromosome (w, l, h, a_1…a_l, E_1…E_l [, optional genes]).

DEAP's contract: change the individual(s) in place and return a tuple
(selection returns a list). Unlike DEAP's stock operators, every function
here takes the RNG as an argument instead of using the global `random`, and
leaves a legal chromosome behind: values within the space's bounds, h < l,
and exactly l activation and l width genes when l changes. The loop, not the
operator, invalidates fitness (as in DEAP's `varAnd`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from deap import base

from drnngen.tuner.codec import Genes, from_list, random_individual, random_layer, to_list
from drnngen.tuner.space import SearchSpace

Layer = tuple[str, int]  # (activation, width) of one hidden layer


def cxLayers(ind1: Any, ind2: Any, rng: random.Random, space: SearchSpace, indpb: float = 0.5) -> tuple[Any, Any]:
    """Uniform crossover that treats a hidden layer (a_i, E_i) as one gene.

    Each scalar gene (w, l, h and the optional genes: lr, batch, …, cell) and
    each aligned layer i < min(l1, l2) is swapped with probability `indpb`. A
    child whose l grew takes the extra layers from the other parent (which had
    that many), one whose l shrank drops its top layers; h is then capped at l-1.
    """
    a, b = from_list(ind1, space), from_list(ind2, space)
    head_a, head_b = _swap_scalars(a, b, rng, indpb)
    layers_a, layers_b = _layers(a), _layers(b)
    for i in range(min(len(layers_a), len(layers_b))):
        if rng.random() < indpb:
            layers_a[i], layers_b[i] = layers_b[i], layers_a[i]
    new_a = _resized(layers_a, head_a.layers, layers_b)
    new_b = _resized(layers_b, head_b.layers, layers_a)
    ind1[:] = to_list(_capped(_with_layers(head_a, new_a), space), space)
    ind2[:] = to_list(_capped(_with_layers(head_b, new_b), space), space)
    return ind1, ind2


def mutGenes(ind: Any, rng: random.Random, space: SearchSpace, indpb: float | None = None) -> tuple[Any]:
    """Random-reset mutation: each gene with probability `indpb` (default
    1/number of genes) takes another value of the space; at least one gene
    changes whenever the space allows any change.

    A new l truncates the per-layer genes or appends random layers; h is then
    capped at l-1.
    """
    genes = from_list(ind, space)
    sites = _sites(genes, space)
    if not sites:
        return (ind,)
    p = 1.0 / len(sites) if indpb is None else indpb
    chosen = [site for site in sites if rng.random() < p] or [rng.choice(sites)]
    for site in chosen:
        genes = _mutate_site(genes, site, rng, space)
    ind[:] = to_list(_capped(genes, space), space)
    return (ind,)


def selTournament(individuals: Sequence[Any], k: int, rng: random.Random, tournsize: int = 3) -> list[Any]:
    """k winners of `tournsize`-way tournaments (DEAP's, with an injected RNG)."""
    chosen = []
    for _ in range(k):
        aspirants = [rng.choice(individuals) for _ in range(tournsize)]
        chosen.append(max(aspirants, key=lambda ind: ind.fitness))
    return chosen


# --- helpers -----------------------------------------------------------------

_SCALARS = ("states", "layers", "shortcut", "base_lr", "batch_size")
# Optional genes added after the first release: drawn for only when the space has them,
# so the RNG stream of a space without them is the one earlier runs used.
_LATER_SCALARS = ("solver_type", "weight_decay", "dropout", "repeat", "tied", "cell")


def _swap_scalars(a: Genes, b: Genes, rng: random.Random, indpb: float) -> tuple[Genes, Genes]:
    for name in _SCALARS + _LATER_SCALARS:
        # One draw per gene, present or not, keeps the RNG stream independent of the space.
        if name in _LATER_SCALARS and getattr(a, name) is None:
            continue
        if rng.random() < indpb:
            va, vb = getattr(a, name), getattr(b, name)
            a, b = replace(a, **{name: vb}), replace(b, **{name: va})
    return a, b


def _layers(genes: Genes) -> list[Layer]:
    return list(zip(genes.activations, genes.widths, strict=True))


def _resized(own: list[Layer], count: int, donor: list[Layer]) -> list[Layer]:
    """`own` cut or extended to `count` layers, extra layers taken from `donor`."""
    return own[:count] + donor[len(own):count]


def _with_layers(genes: Genes, layers: list[Layer]) -> Genes:
    return replace(
        genes, layers=len(layers), activations=tuple(a for a, _ in layers), widths=tuple(e for _, e in layers)
    )


def _capped(genes: Genes, space: SearchSpace) -> Genes:
    """h moved into [shortcut.min, min(shortcut.max, l-1)]."""
    allowed = space.shortcut_range(genes.layers)
    return replace(genes, shortcut=max(allowed.low, min(genes.shortcut, allowed.high)))


Site = tuple[str, int]  # (gene name, layer index or -1)


def _sites(genes: Genes, space: SearchSpace) -> list[Site]:
    """Genes that can take another value (fixed ones are not mutation sites)."""
    sites: list[Site] = [
        (name, -1) for name, bounds in (("states", space.states), ("layers", space.layers))
        if bounds.high > bounds.low
    ]
    allowed = space.shortcut_range(genes.layers)
    if allowed.high > allowed.low:
        sites.append(("shortcut", -1))
    if len(space.activations) > 1:
        sites += [("activation", i) for i in range(genes.layers)]
    if len(space.widths) > 1:
        sites += [("width", i) for i in range(genes.layers)]
    sites += [(g.name, -1) for g in space.optional_genes() if len(getattr(space, g.name)) > 1]
    return sites


def _other(rng: random.Random, choices: Sequence[Any], current: Any) -> Any:
    others = [c for c in choices if c != current]
    return rng.choice(others) if others else current


def _mutate_site(genes: Genes, site: Site, rng: random.Random, space: SearchSpace) -> Genes:
    name, index = site
    if index >= genes.layers:  # a layer removed by an earlier change of l
        return genes
    if name == "states":
        return replace(genes, states=_other(rng, range(space.states.low, space.states.high + 1), genes.states))
    if name == "layers":
        count = _other(rng, range(space.layers.low, space.layers.high + 1), genes.layers)
        layers = _layers(genes)[:count]
        layers += [random_layer(rng, space) for _ in range(count - len(layers))]
        return _with_layers(genes, layers)
    if name == "shortcut":
        allowed = space.shortcut_range(genes.layers)
        return replace(genes, shortcut=_other(rng, range(allowed.low, allowed.high + 1), genes.shortcut))
    if name == "activation":
        acts = list(genes.activations)
        acts[index] = _other(rng, space.activations, acts[index])
        return replace(genes, activations=tuple(acts))
    if name == "width":
        widths = list(genes.widths)
        widths[index] = _other(rng, space.widths, widths[index])
        return replace(genes, widths=tuple(widths))
    return replace(genes, **{name: _other(rng, getattr(space, name), getattr(genes, name))})


def make_toolbox(space: SearchSpace, rng: random.Random, cx_indpb: float = 0.5,
                 mut_indpb: float | None = None) -> base.Toolbox:
    """A DEAP Toolbox with `individual`, `mate` and `mutate` bound to the space and RNG."""
    toolbox = base.Toolbox()
    toolbox.register("individual", random_individual, rng, space)
    toolbox.register("mate", cxLayers, rng=rng, space=space, indpb=cx_indpb)
    toolbox.register("mutate", mutGenes, rng=rng, space=space, indpb=mut_indpb)
    return toolbox
