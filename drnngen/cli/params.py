"""Option types shared by the commands: numbers checked where they come in."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click


class FiniteFloat(click.FloatRange):
    """A float option that refuses NaN and infinities (which slip through every
    range check: NaN compares false with any bound), then checks its range."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


def finite(min: float | None = None, max: float | None = None, min_open: bool = False,
           max_open: bool = False) -> FiniteFloat:
    """A finite float in the range (both bounds optional, as click.FloatRange)."""
    return FiniteFloat(min, max, min_open=min_open, max_open=max_open)


class CountOrAll(click.IntRange):
    """A whole number of at least `min`, or `all` (None: no cap)."""

    name = "count or all"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() == "all"):
            return None
        return super().convert(value, param, ctx)


def count_or_all(min: int) -> CountOrAll:
    """An integer option >= `min` that also takes `all`."""
    return CountOrAll(min)


class NamedPath(click.Path):
    """A path option that refuses the empty string, which click would turn into `.`
    (so `-o ""` would write into the current folder)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("an empty path; name a folder (`.` for this one)", param, ctx)
        return super().convert(value, param, ctx)


def output_path(file_okay: bool = True, dir_okay: bool = True) -> NamedPath:
    """The type of an -o (or RUN) option: a pathlib.Path, never empty."""
    return NamedPath(file_okay=file_okay, dir_okay=dir_okay, path_type=Path)
