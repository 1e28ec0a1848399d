"""`drnngen evaluate` and `drnngen report`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from drnngen.cli.params import finite, output_path
from drnngen.errors import UserError

if TYPE_CHECKING:  # the evaluation stack (numpy, h5py, matplotlib) loads only when a command runs
    from drnngen.evaluation.evaluate import NetUnderTest


@click.command()
@click.argument("run", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--data", "data", required=True, type=click.Path(path_type=Path),
              help="Prepared dataset (folder with manifest.json) the net was trained on.")
@click.option("--k", "ks", default="1,5,10,20", show_default=True,
              help="Cut-offs K, comma-separated.")
@click.option("--candidate", default=None, help="Evaluate this candidate of RUN instead of the best.")
@click.option("--deploy", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="deploy.prototxt of any trained net (instead of RUN's best).")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The .caffemodel for --deploy.")
@click.option("-o", "--output", type=output_path(file_okay=False), default=None,
              help="Folder for evaluation.json and evaluation.md (default: RUN, else the weights' folder).")
@click.option("--shrink", type=finite(0), default=20.0, show_default=True,
              help="item-kNN's similarity regulariser λ (GRU4Rec's default).")
@click.option("--sknn-k", "sknn_k", type=int, default=100, show_default=True,
              help="SKNN and V-SKNN: neighbour sessions that score the items (session-rec's default).")
@click.option("--sknn-sample", "sknn_sample", type=int, default=500, show_default=True,
              help="SKNN and V-SKNN: candidates, the most recent train sessions sharing an item with the "
                   "session (session-rec's default).")
def evaluate(run: Path | None, data: Path, ks: str, candidate: str | None, deploy: Path | None,
             weights: Path | None, output: Path | None, shrink: float, sknn_k: int, sknn_sample: int) -> None:
    """Top-K accuracy, Recall@K and MRR@K on the TEST split for RUN's best (or --candidate) net,
    and for the baselines POP, S-POP, item-kNN, SKNN and V-SKNN on the same samples.

    Any trained net works too: --deploy deploy.prototxt --weights model.caffemodel.
    """
    from drnngen.evaluation.baselines import check_sknn_options
    from drnngen.evaluation.compare import write_outputs
    from drnngen.evaluation.evaluate import evaluate_net
    from drnngen.evaluation.metrics import parse_ks

    cutoffs = parse_ks(ks)  # a bad --k (or --sknn-k, --sknn-sample) fails before any data is read
    check_sknn_options(sknn_k, sknn_sample)
    net = net_under_test(run, candidate, deploy, weights)
    comparison = evaluate_net(net, data, cutoffs, shrink=shrink, sknn_k=sknn_k, sknn_sample=sknn_sample)
    click.echo(comparison.to_text(), nl=False)
    folder = output or run or net.weights.parent
    stem = f"evaluation-{candidate}" if candidate else "evaluation"
    for path in write_outputs(comparison, folder, stem):
        click.echo(f"wrote {path}")


def net_under_test(run: Path | None, candidate: str | None, deploy: Path | None,
                    weights: Path | None) -> NetUnderTest:
    from drnngen.evaluation.evaluate import NetUnderTest

    if (deploy is None) != (weights is None):
        raise UserError("--deploy and --weights go together")
    if deploy is not None and weights is not None:
        if candidate is not None:
            raise UserError("--candidate picks a net of RUN; it does not combine with --deploy/--weights")
        label = {"run": str(run)} if run is not None else {}
        return NetUnderTest(deploy, weights, label)
    if run is None:
        raise UserError("give RUN (a tuning run folder) or --deploy and --weights")
    from drnngen.evaluation.run_folder import trained_net

    return trained_net(run, candidate)


@click.command()
@click.argument("run", type=output_path(file_okay=False))
@click.option("-o", "--output", type=output_path(file_okay=False), default=None,
              help="Folder for the PNG plots and report.md (default: RUN/report).")
def report(run: Path, output: Path | None) -> None:
    """Plots of tuning run RUN (fitness per generation, accuracy vs loss, training times,
    gene frequencies, the best candidate's training curve) and a Markdown summary."""
    from drnngen.evaluation.report import write_report
    from drnngen.evaluation.run_folder import run_history

    for path in write_report(run_history(run), output or run / "report"):
        click.echo(f"wrote {path}")
