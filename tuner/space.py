"""The search space: which values each gene of the chromosome may take.

Read from YAML (`examples/space.yaml`); every key is optional and defaults to
a range around the paper's Table I. Integers are ranges (`{min, max}` or one
fixed value); per-layer activations and widths are sets of choices, and so
are the optional genes (`OPTIONAL_GENES`: learning rate, batch size, solver
type, weight decay, dropout, repeat path, tied embeddings, the hidden
layer's cell). An empty list (their default) leaves that setting to the base
config and out of the chromosome.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drnngen.codegen.config import ACTIVATIONS, CELLS, INT32_MAX, MAX_LAYERS, MAX_STATES, MAX_WIDTH, SOLVER_TYPES
from drnngen.errors import UserError
from drnngen.safe_yaml import load_yaml, short_repr


@dataclass(frozen=True)
class OptionalGene:
    """A setting of the base config that becomes a gene when the space lists
    choices for it: `SearchSpace.<name>` holds them, the config key is
    `<section>.<key>`."""

    name: str
    section: str
    key: str
    label: str  # in a genotype's one-line description


OPTIONAL_GENES: tuple[OptionalGene, ...] = (
    OptionalGene("base_lr", "solver", "base_lr", "lr"),
    OptionalGene("batch_size", "data", "batch_size", "batch"),
    OptionalGene("solver_type", "solver", "type", "solver"),
    OptionalGene("weight_decay", "solver", "weight_decay", "decay"),
    OptionalGene("dropout", "model", "dropout", "dropout"),
    OptionalGene("repeat", "model", "repeat", "repeat"),
    OptionalGene("tied", "model", "tied", "tied"),
    OptionalGene("cell", "model", "cell", "cell"),
)


@dataclass(frozen=True)
class IntRange:
    """Integers low..high, both included."""

    low: int
    high: int

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.low <= value <= self.high

    def sample(self, rng: random.Random) -> int:
        return rng.randint(self.low, self.high)

    def capped(self, high: int) -> IntRange:
        """The part of the range at or below `high` (h < l caps the shortcut gene)."""
        return IntRange(self.low, min(self.high, high))


@dataclass(frozen=True)
class SearchSpace:
    """Bounds of every gene. `shortcut` is further capped at l-1 per individual."""

    states: IntRange = IntRange(2, 6)
    layers: IntRange = IntRange(1, 4)
    shortcut: IntRange = IntRange(0, 3)
    activations: tuple[str, ...] = ("ReLU", "TanH", "Sigmoid", "ELU")
    widths: tuple[int, ...] = (50, 100, 200, 500, 1000)
    base_lr: tuple[float, ...] = ()
    batch_size: tuple[int, ...] = ()
    solver_type: tuple[str, ...] = ()
    weight_decay: tuple[float, ...] = ()
    dropout: tuple[float, ...] = ()
    repeat: tuple[bool, ...] = ()
    tied: tuple[bool, ...] = ()
    cell: tuple[str, ...] = ()

    def optional_genes(self) -> tuple[OptionalGene, ...]:
        """The optional genes this space makes part of the chromosome, in chromosome order."""
        return tuple(g for g in OPTIONAL_GENES if getattr(self, g.name))

    def shortcut_range(self, layers: int) -> IntRange:
        """The h values allowed when l = `layers` (h < l)."""
        return self.shortcut.capped(layers - 1)


_KEYS = ("states", "layers", "shortcut", "activations", "widths", *(g.name for g in OPTIONAL_GENES))


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space YAML file."""
    path = Path(path)
    raw = load_yaml(path, "search-space")  # size, depth, alias and duplicate-key limits
    try:
        return parse_space({} if raw is None else raw)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def parse_space(raw: object) -> SearchSpace:
    """Validate a mapping into a SearchSpace; all problems are reported together."""
    if not isinstance(raw, Mapping):
        raise UserError("space: expected a mapping of keys")
    errors = [f"{str(key)[:80]}: unknown key (known: {', '.join(_KEYS)})" for key in raw if key not in _KEYS]
    default = SearchSpace()
    values: dict[str, Any] = {}
    for key in ("states", "layers", "shortcut"):
        values[key] = _range(raw.get(key, getattr(default, key)), key, errors)
    values["activations"] = tuple(
        _activation(v, errors) for v in _choices(raw.get("activations", default.activations), "activations", errors)
    )
    values["widths"] = _numbers(raw.get("widths", default.widths), "widths", int, errors)
    values["base_lr"] = _numbers(raw.get("base_lr", ()), "base_lr", float, errors, allow_empty=True)
    values["batch_size"] = _numbers(raw.get("batch_size", ()), "batch_size", int, errors, allow_empty=True)
    values["solver_type"] = tuple(_solver(v, errors) for v in _choices(raw.get("solver_type", ()), "solver_type",
                                                                        errors, allow_empty=True))
    values["weight_decay"] = _fractions(raw.get("weight_decay", ()), "weight_decay", errors, high=None)
    values["dropout"] = _fractions(raw.get("dropout", ()), "dropout", errors, high=1.0)
    for key in ("repeat", "tied"):
        values[key] = _flags(raw.get(key, ()), key, errors)
    values["cell"] = tuple(_cell(v, errors) for v in _choices(raw.get("cell", ()), "cell", errors, allow_empty=True))
    if errors:
        raise UserError("; ".join(errors))
    space = SearchSpace(**values)
    errors = _cross_checks(space)
    if errors:
        raise UserError("; ".join(errors))
    return space


def _range(value: object, key: str, errors: list[str]) -> IntRange:
    if isinstance(value, IntRange):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return IntRange(value, value)
    if isinstance(value, Mapping) and set(value) == {"min", "max"}:
        low, high = value["min"], value["max"]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
            return IntRange(low, high)
    errors.append(f"{key}: expected an integer or {{min: int, max: int}}, got {short_repr(value)}")
    return IntRange(0, 0)


def _choices(value: object, key: str, errors: list[str], allow_empty: bool = False) -> tuple[Any, ...]:
    items = tuple(value) if isinstance(value, list | tuple) else (value,)
    if not items and not allow_empty:
        errors.append(f"{key}: must not be an empty list")
    if any(isinstance(item, list | dict | tuple | set | bytes) for item in items):
        errors.append(f"{key}: expected a list of plain values, got {short_repr(value)}")
        return ()
    if len(set(items)) != len(items):
        errors.append(f"{key}: lists a value twice")
    return items


def _numbers(value: object, key: str, kind: type[Any], errors: list[str], allow_empty: bool = False) -> tuple[Any, ...]:
    out = []
    for item in _choices(value, key, errors, allow_empty):
        ok = isinstance(item, kind) or (kind is float and isinstance(item, int))
        if not ok or isinstance(item, bool) or not math.isfinite(item) or item <= 0 or item > INT32_MAX:
            errors.append(f"{key}: expected positive {kind.__name__} values (finite), got {short_repr(item)}")
            continue
        out.append(kind(item))
    return tuple(out)


def _fractions(value: object, key: str, errors: list[str], high: float | None) -> tuple[float, ...]:
    """Choices >= 0 (and < `high` when given): weight decay, dropout probability."""
    out = []
    for item in _choices(value, key, errors, allow_empty=True):
        ok = isinstance(item, int | float) and not isinstance(item, bool) and math.isfinite(item) and item >= 0
        if not ok or (high is not None and item >= high):
            bound = f"in [0, {high:g})" if high is not None else ">= 0"
            errors.append(f"{key}: expected finite values {bound}, got {short_repr(item)}")
            continue
        out.append(float(item))
    return tuple(out)


def _flags(value: object, key: str, errors: list[str]) -> tuple[bool, ...]:
    items = _choices(value, key, errors, allow_empty=True)
    bad = [item for item in items if not isinstance(item, bool)]
    if bad:
        errors.append(f"{key}: expected true/false choices, got {short_repr(bad[0])}")
    return tuple(bool(item) for item in items if isinstance(item, bool))


def _solver(name: object, errors: list[str]) -> str:
    for known in SOLVER_TYPES:
        if str(name).lower() == known.lower():
            return known
    errors.append(f"solver_type: unknown solver {short_repr(name)} (one of: {', '.join(SOLVER_TYPES)})")
    return str(name)


def _cell(name: object, errors: list[str]) -> str:
    if name not in CELLS:
        errors.append(f"cell: unknown cell {short_repr(name)} (one of: {', '.join(CELLS)})")
    return str(name)


def _activation(name: object, errors: list[str]) -> str:
    canonical = ACTIVATIONS.get(str(name).lower())
    if canonical is None:
        errors.append(f"activations: unknown activation {short_repr(name)} (one of: {', '.join(ACTIVATIONS.values())})")
        return str(name)
    return canonical


def _cross_checks(space: SearchSpace) -> list[str]:
    errors = [f"{key}: max {bounds.high} is above {cap}, the most codegen builds"
              for key, bounds, cap in (("states", space.states, MAX_STATES), ("layers", space.layers, MAX_LAYERS))
              if bounds.high > cap]
    errors += [f"widths: {e} is above {MAX_WIDTH}, the most codegen builds" for e in space.widths if e > MAX_WIDTH]
    for key, low in (("states", 1), ("layers", 1), ("shortcut", 0)):
        bounds: IntRange = getattr(space, key)
        if bounds.low < low or bounds.low > bounds.high:
            errors.append(f"{key}: need {low} <= min <= max, got min {bounds.low}, max {bounds.high}")
    # Every l in the range must leave at least one legal h (0 <= h < l).
    if space.shortcut.low > space.layers.low - 1:
        errors.append(
            f"shortcut: min {space.shortcut.low} must be < layers.min {space.layers.low} (h < l for every l)"
        )
    return errors


def space_mapping(space: SearchSpace) -> dict[str, Any]:
    """The space as YAML-ready data (parse_space's inverse; the ledger keeps it)."""
    return {
        **{key: {"min": r.low, "max": r.high} for key, r in (
            ("states", space.states), ("layers", space.layers), ("shortcut", space.shortcut))},
        "activations": list(space.activations),
        "widths": list(space.widths),
        **{g.name: list(getattr(space, g.name)) for g in OPTIONAL_GENES},
    }
