"""`drnngen doctor`."""

from __future__ import annotations

import click

from drnngen.errors import EnvironmentProblem
from drnngen.runner.doctor import diagnose


@click.command()
@click.option("--mode", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True,
              help="Also check that Caffe can run in this mode.")
def doctor(mode: str) -> None:
    """Where Caffe is, its version, CPU/GPU build, layer types, numpy/protobuf
    versions and Graphviz. Exits 1 with a one-line fix when something is missing."""
    report = diagnose(mode)
    width = max(len(label) for label, _ in report.lines)
    for label, value in report.lines:
        click.echo(f"{label:<{width}}  {value}")
    if not report.ok:
        raise EnvironmentProblem("; ".join(report.problems))
    click.echo("ok")
