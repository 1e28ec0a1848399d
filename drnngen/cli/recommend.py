"""`drnngen recommend` and `drnngen score`: recommendation lists in session-rec's CSV layout."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from drnngen.cli.data import log_spec, split_format
from drnngen.cli.params import finite
from drnngen.data.readers import DEFAULT_PURCHASE_VALUES, FORMATS, TIME_UNITS, LogSpec
from drnngen.errors import UserError

if TYPE_CHECKING:  # the evaluation stack loads only when a command runs
    from drnngen.data.manifest import Manifest
    from drnngen.evaluation.recommend import Scorer

_FILE = click.Path(dir_okay=False, path_type=Path)
_MODELS = ("DRNN", "POP", "S-POP", "item-kNN", "SKNN", "V-SKNN")


def _log_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--log and how to read it, as `prepare` reads its logs."""
    for option in reversed((
        click.option("--log", "log", type=_FILE, required=True,
                     help="Click log whose sessions to take (e.g. session-rec's *_test.txt)."),
        click.option("--format", "log_format", type=click.Choice(["auto", *FORMATS]), default="auto",
                     show_default=True, help="Format of --log; auto guesses from the name, as prepare does."),
        click.option("--columns", help="csv: ROLE=COLUMN pairs for session, item, time and optionally user, type "
                     "(default: the dataset's, as prepare read its logs)."),
        click.option("--delimiter", help="csv/gru4rec: field separator (default: the dataset's, else ',' / tab)."),
        click.option("--time-unit", type=click.Choice(TIME_UNITS),
                     help="csv/gru4rec: time column in s, ms or ISO 8601 (default: the dataset's)."),
        click.option("--purchase-values", help="csv: values of the type column that mark a purchase "
                     "(default: the dataset's, else prepare's default)."),
        click.option("--no-filter", "no_filter", is_flag=True,
                     help="Read --log as it is, not through the dataset's filters (by default its events are "
                     "filtered as prepare filtered the dataset's files: items its train file lacks, "
                     "--min-item-support, --min-session-length)."),
    )):
        command = option(command)
    return command


_READING = ("columns", "delimiter", "time_unit", "purchase_values")


def _spec(log: Path, log_format: str, reading: tuple[str | None, ...], dataset: Path | None) -> LogSpec:
    """How to read --log: the options given, the others as `prepare` read the logs of
    `dataset` (its manifest's `parameters`, when the format is the dataset's)."""
    chosen = split_format(log, ()) if log_format == "auto" else log_format
    columns, delimiter, time_unit, purchase_values = reading
    spec = log_spec(log, chosen, columns=columns, delimiter=delimiter, time_unit=time_unit,
                    purchase_values=",".join(DEFAULT_PURCHASE_VALUES) if purchase_values is None else purchase_values)
    if dataset is None:
        return spec
    from drnngen.data.manifest import load_manifest

    manifest = load_manifest(dataset)
    params = manifest.data.get("parameters", {})
    if manifest.format != chosen or not isinstance(params, dict):
        return spec  # another format's columns and separator mean nothing here
    unset = {name: params[name] for name, value in zip(_READING, reading, strict=True)
             if value is None and params.get(name) is not None}
    if "columns" in unset:
        unset["columns"] = dict(unset["columns"])
    if "purchase_values" in unset:
        unset["purchase_values"] = tuple(unset["purchase_values"])
    return dataclasses.replace(spec, **unset)


@click.command("recommend")
@click.argument("run", required=False, type=click.Path(file_okay=False, path_type=Path))
@_log_options
@click.option("--buys", type=_FILE, help="Purchases file of --log, as prepare takes it (purchases end a page's "
              "dwell and make the user's history).")
@click.option("--users", type=_FILE, help="CSV with columns session,user for --log, as prepare takes it.")
@click.option("-k", "k", type=click.IntRange(1), default=20, show_default=True, help="Items per list.")
@click.option("-o", "--output", type=_FILE, required=True, help="CSV file to write (replaced when complete).")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Prepared dataset whose vocabulary builds the inputs (default: the one RUN trained on).")
@click.option("--model", type=click.Choice(_MODELS), default="DRNN", show_default=True,
              help="DRNN: RUN's best net (or --deploy/--weights); else a baseline fitted on the dataset's train "
              "split, as `evaluate` fits it.")
@click.option("--candidate", default=None, help="Recommend with this candidate of RUN instead of the best.")
@click.option("--deploy", type=_FILE, default=None, help="deploy.prototxt of any trained net (instead of RUN's best).")
@click.option("--weights", type=_FILE, default=None, help="The .caffemodel for --deploy.")
@click.option("--window", type=click.IntRange(1), default=None,
              help="Baselines: the window whose rows they see (default: the dataset's; the net uses its own).")
@click.option("--mode", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True,
              help="Where Caffe runs the net.")
@click.option("--shrink", type=finite(0), default=20.0, show_default=True, help="item-kNN's λ, as in `evaluate`.")
@click.option("--sknn-k", "sknn_k", type=int, default=100, show_default=True,
              help="SKNN and V-SKNN: neighbour sessions, as in `evaluate`.")
@click.option("--sknn-sample", "sknn_sample", type=int, default=500, show_default=True,
              help="SKNN and V-SKNN: candidate sessions, as in `evaluate`.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def recommend_command(
    run: Path | None, log: Path, log_format: str, columns: str | None, delimiter: str | None, time_unit: str | None,
    purchase_values: str | None, no_filter: bool, buys: Path | None, users: Path | None, k: int, output: Path,
    data: Path | None, model: str, candidate: str | None, deploy: Path | None, weights: Path | None,
    window: int | None, mode: str, shrink: float, sknn_k: int, sknn_sample: int, quiet: bool,
) -> None:
    """Top-K items after every prefix of every session of --log, in session-rec's CSV layout
    (SessionId;Position;Recommendations;Scores; position p: after the first p+1 page views).

    The net's inputs are built as `prepare` builds its rows (window, dwell, history, OOV
    page) under the dataset's vocabulary; Caffe runs in a child process. --log goes through
    the dataset's filters first (as prepare filtered the files it read; --no-filter skips that).
    """
    from drnngen.cli.data import ProgressLines
    from drnngen.evaluation.baselines import check_sknn_options
    from drnngen.evaluation.recommend import recommend

    check_sknn_options(sknn_k, sknn_sample)
    dataset = data or _dataset_of(run)
    spec = _spec(log, log_format, (columns, delimiter, time_unit, purchase_values), dataset)
    spec = dataclasses.replace(spec, buys=buys, users=users)
    scorer = _scorer(model, run, candidate, deploy, weights, window, mode, (shrink, sknn_k, sknn_sample))
    report = recommend(spec, dataset, scorer, k, output, ProgressLines(quiet), filtered=not no_filter)
    click.echo(f"wrote {report.output}: {report.rows:,} lists of {report.k} items ({report.model}) for "
               f"{report.sessions:,} sessions")


def _dataset_of(run: Path | None) -> Path:
    if run is None:
        raise UserError("--data: name the prepared dataset (or give RUN, whose dataset is used)")
    from drnngen.evaluation.run_folder import run_dataset

    return run_dataset(run)


def _scorer(model: str, run: Path | None, candidate: str | None, deploy: Path | None, weights: Path | None,
            window: int | None, mode: str, knn: tuple[float, int, int]) -> Callable[[Manifest], Scorer]:
    from drnngen.evaluation.recommend import BaselineScorer, NetScorer

    if model != "DRNN":
        if deploy is not None or weights is not None or candidate is not None:
            raise UserError(f"--model {model} is a baseline; --deploy, --weights and --candidate pick a net")
        shrink, sknn_k, sknn_sample = knn
        return lambda manifest: BaselineScorer(model, manifest, window or manifest.window, shrink=shrink,
                                               sknn_k=sknn_k, sknn_sample=sknn_sample)
    if window is not None:
        raise UserError("--window is for the baselines; the net's window is its deploy net's")
    from drnngen.cli.evaluate import net_under_test

    net = net_under_test(run, candidate, deploy, weights)
    return lambda manifest: NetScorer(net, manifest.items, mode=mode)


@click.command("score")
@click.argument("recs", type=_FILE)
@_log_options
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Prepared dataset whose filters --log goes through, as recommend's --data (give the one "
              "RECS was made with; without it --log is read as it is).")
@click.option("-k", "ks", default="20", show_default=True, help="Cut-offs K, comma-separated.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def score_command(recs: Path, log: Path, log_format: str, columns: str | None, delimiter: str | None,
                  time_unit: str | None, purchase_values: str | None, no_filter: bool, data: Path | None, ks: str,
                  quiet: bool) -> None:
    """HR@K and MRR@K of RECS (session-rec's SessionId;Position;Recommendations;Scores CSV)
    against the next page view at every position of every session of --log, as
    session-rec's HitRate and MRR compute them. With --data, --log is read with that
    dataset's reading options (unless given) and goes through its filters first, as
    recommend reads it."""
    from drnngen.cli.data import ProgressLines
    from drnngen.data.manifest import load_manifest
    from drnngen.evaluation.metrics import parse_ks
    from drnngen.evaluation.score import score

    cutoffs = parse_ks(ks, "-k")
    spec = _spec(log, log_format, (columns, delimiter, time_unit, purchase_values), data)
    dataset = None if data is None or no_filter else load_manifest(data)
    click.echo(score(recs, spec, cutoffs, ProgressLines(quiet), dataset).to_text(), nl=False)
