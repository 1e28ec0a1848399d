"""The `drnngen` command. Thin: each sub-command lives in its own module in this
package, declares its options once and hands the work to the library modules."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from drnngen import __version__
from drnngen.cli.build import build, draw
from drnngen.cli.data import prepare_command, synth_command
from drnngen.cli.doctor import doctor
from drnngen.cli.evaluate import evaluate, report
from drnngen.cli.recommend import recommend_command, score_command
from drnngen.cli.serve import serve, update
from drnngen.cli.tune import best, tune_command
from drnngen.errors import EnvironmentProblem, UserError


class _UserFailure(click.ClickException):
    """A UserError shown as one line, `error: ...`, exit code 2."""

    exit_code = UserError.exit_code

    def show(self, file: Any = None) -> None:
        one_line = " ".join(part.strip() for part in self.format_message().strip().splitlines())
        click.echo(f"error: {one_line}", err=True, file=file)


class _EnvironmentFailure(_UserFailure):
    """Something missing on the machine: exit code 1."""

    exit_code = EnvironmentProblem.exit_code


# Raised as they are: ours, and `drnngen` alone, which prints the help (click >= 8.2
# raises that as a usage error)
_AS_THEY_ARE: tuple[type[BaseException], ...] = (_UserFailure, *(
    e for e in (getattr(click.exceptions, "NoArgsIsHelpError", None),) if isinstance(e, type)
))


@contextmanager
def _one_error_line() -> Iterator[None]:
    """The CLI's one error boundary: a UserError, and every mistake click catches
    itself (a bad option value, a missing option, a folder given as a file, an
    unknown command), ends in one line `error: ...` and exit code 2 — never click's
    three-line usage text."""
    try:
        yield
    except _AS_THEY_ARE:
        raise
    except click.ClickException as exc:  # click's UsageError, BadParameter, FileError, ...
        raise _UserFailure(exc.format_message()) from exc
    except EnvironmentProblem as exc:
        raise _EnvironmentFailure(str(exc)) from exc
    except UserError as exc:
        raise _UserFailure(str(exc)) from exc


class _Group(click.Group):
    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        with _one_error_line():  # the group's own options: `drnngen --bogus`
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _one_error_line():  # the sub-command's name, its options and its run
            return super().invoke(ctx)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="drnngen")
def cli() -> None:
    """Generate Caffe nets for deep recurrent session recommenders (Wu et al.,
    ICDE 2016) and tune their hyperparameters with a genetic algorithm."""


for _command in (build, draw, doctor, evaluate, report, recommend_command, score_command, tune_command, best,
                 prepare_command, synth_command, serve, update):
    cli.add_command(_command)


def main() -> None:
    """Console entry point."""
    cli(prog_name="drnngen")
