"""The `drnngen` command. Thin: each sub-command lives in its own module in this
package, declares its options once and hands the work to the library modules."""

from __future__ import annotations

from typing import Any

import click

from drnngen import __version__
from drnngen.cli.build import build, draw
from drnngen.cli.data import prepare_command, synth_command
from drnngen.cli.doctor import doctor
from drnngen.cli.evaluate import evaluate, report
from drnngen.cli.tune import best, tune_command
from drnngen.errors import EnvironmentProblem, UserError


class _UserFailure(click.ClickException):
    """A UserError shown as one line, `error: ...`, exit code 2."""

    exit_code = UserError.exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class _EnvironmentFailure(_UserFailure):
    """Something missing on the machine: exit code 1."""

    exit_code = EnvironmentProblem.exit_code


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EnvironmentProblem as exc:
            raise _EnvironmentFailure(str(exc)) from exc
        except UserError as exc:
            raise _UserFailure(str(exc)) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="drnngen")
def cli() -> None:
    """Generate Caffe nets for deep recurrent session recommenders (Wu et al.,
    ICDE 2016) and tune their hyperparameters with a genetic algorithm."""


for _command in (build, draw, doctor, evaluate, report, tune_command, best, prepare_command, synth_command):
    cli.add_command(_command)


def main() -> None:
    """Console entry point."""
    cli(prog_name="drnngen")
