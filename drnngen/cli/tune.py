"""`drnngen tune` and `drnngen best`. Thin: options in, `drnngen.tuner` does the work."""

from __future__ import annotations

import datetime
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import click
from click.core import ParameterSource

from drnngen.bind import repeat_share
from drnngen.cli.data import parse_size
from drnngen.cli.params import finite, output_path
from drnngen.codegen.config import INT32_MAX, DRNNConfig, load_config, to_mapping
from drnngen.data.manifest import load_manifest
from drnngen.errors import UserError
from drnngen.runner.locate import cache_dir as drnngen_cache
from drnngen.tuner import Resources, RunSummary, TuneParams, export_best, tune
from drnngen.tuner.codec import describe
from drnngen.tuner.defaults import DEFAULT_EPOCHS, default_base, default_space
from drnngen.tuner.executors import ExecutorLost, kill_children, parse_gpus
from drnngen.tuner.fidelity import FIDELITIES, FULL
from drnngen.tuner.gentune import STRATEGIES
from drnngen.tuner.space import SearchSpace, load_space, space_mapping

# Options that decide a run's result: fixed at its start, refused with --resume.
_RESULT_OPTIONS = ("config", "space", "data", "memory_budget", "population", "iters", "epochs", "pc", "pm", "strategy",
                   "mode", "seed", "timeout", "time_budget", "validate_every", "patience", "nan_retry", "train_minutes",
                   "fidelity", "eta", "rungs", "rescore", "rescore_top")
UNBOUNDED_GENERATIONS = 1_000_000  # with --time-budget and no --generations: until the budget is spent
MAX_POPULATION = 100_000  # far beyond any run; a 30-digit one would hang creating it
MAX_WORKERS = 1024  # trainings at once on one machine (a thread and a Caffe child each)
_PATH = click.Path(path_type=Path)


def _share_cores(workers: int) -> None:
    """Give each Caffe child its share of the cores (inherited through the
    environment): K trainings each running OpenBLAS on every core would only
    fight over them. A thread count the user set is kept."""
    if workers > 1 and "OPENBLAS_NUM_THREADS" not in os.environ:
        os.environ["OPENBLAS_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))


def _require_local_caffe(mode: str) -> None:
    """Fail in one line before a run folder exists: no Caffe here, or GPU mode
    asked of a CPU-only build (which would abort inside every candidate)."""
    from drnngen.runner import locate_caffe, require_mode

    require_mode(mode, locate_caffe())


@click.command("tune")
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path),
              help="Base config YAML; the genes replace its w, l, h, activations, widths "
                   "(and the optional genes the space lists). Default: sized to the dataset "
                   "(Adam, fixed lr, batch ~1/64 of the train split, the repeat and neighbour paths where "
                   "the session's items recur and their maps fit).")
@click.option("--space", type=click.Path(dir_okay=False, path_type=Path),
              help="Search space YAML (see examples/space.yaml). Default: small nets with lr, weight "
                   "decay, dropout and the cell as genes (drnngen.tuner.defaults).")
@click.option("--data", type=_PATH, help="Prepared dataset folder (`drnngen prepare`).")
@click.option("--memory-budget", default="4GiB", show_default=True,
              help="Without --config: the default base config's TRAIN and TEST batches are chosen so that the "
                   "space's largest net holds at most this much (half each; the score blobs are batch × N per "
                   "state).")
@click.option("--generations", type=click.IntRange(0, UNBOUNDED_GENERATIONS),
              help="GA generations N after the initial population (with --resume: extend to N) "
                   "[default: 10; with --time-budget: until the budget is spent].")
@click.option("--population", type=click.IntRange(2, MAX_POPULATION), default=10, show_default=True,
              help="Population size.")
@click.option("--iters", type=click.IntRange(1, INT32_MAX), help="Training budget of every candidate, in iterations.")
@click.option("--epochs", type=finite(0, min_open=True),
              help="Training budget in epochs of the train split (instead of --iters) [default: 30].")
@click.option("--time-budget", type=finite(0, min_open=True), metavar="MINUTES",
              help="Wall time of the whole run: no training starts once it is spent, trainings in flight "
                   "stop at it and keep their best snapshot. --resume gets what is left.")
@click.option("--validate-every", type=finite(0), default=1.0, show_default=True, metavar="EPOCHS",
              help="Validation points during a training (0: one, at the end); the best one's snapshot "
                   "is the candidate's fitness and weights.")
@click.option("--patience", type=click.IntRange(0), default=3, show_default=True,
              help="Stop a training after this many validation points without improvement (0: never).")
@click.option("--train-minutes", type=click.FloatRange(0, min_open=True), metavar="MINUTES",
              help="Wall time one training may take; it then stops and keeps its best snapshot "
                   "[default: with --time-budget, the budget / (population / workers), so the first "
                   "generation fits in it; else none].")
@click.option("--nan-retry/--no-nan-retry", default=True, show_default=True,
              help="Retrain a candidate whose loss went NaN once, at a tenth of its learning rate.")
@click.option("--pc", type=finite(0, 1), default=0.8, show_default=True, help="Crossover probability.")
@click.option("--pm", type=finite(0, 1), default=0.2, show_default=True, help="Mutation probability.")
@click.option("--strategy", type=click.Choice(sorted(STRATEGIES)), default="literal", show_default=True,
              help="literal: Algorithm 2 as written (no selection); elitist: (mu+lambda) with tournaments; "
                   "random: a fresh random population each generation (a baseline).")
@click.option("--fidelity", type=click.Choice(FIDELITIES), default=FULL, show_default=True,
              help="full: every candidate trains the whole budget; successive-halving: a generation's "
                   "candidates start on a small budget and the best 1/eta continue their training to eta "
                   "times it, up to the full budget.")
@click.option("--eta", type=click.IntRange(2), default=3, show_default=True,
              help="Successive halving: the top 1/eta of a rung are promoted to eta times its budget.")
@click.option("--rungs", type=click.IntRange(2), default=3, show_default=True,
              help="Successive halving: the number of budgets, full/eta^(rungs-1) up to full.")
@click.option("--rescore", type=click.IntRange(0), default=0, show_default=True, metavar="N",
              help="After the last generation, retrain the top candidates with N other Caffe seeds and rank "
                   "them by mean fitness (the ledger keeps every score; the report shows error bars).")
@click.option("--rescore-top", type=click.IntRange(1), default=3, show_default=True, metavar="K",
              help="How many top candidates --rescore retrains.")
@click.option("--workers", type=click.IntRange(1, MAX_WORKERS),
              help="Trainings at once (default 1, or one per --gpus id).")
@click.option("--mode", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True, help="Caffe mode.")
@click.option("--gpus", help="GPU ids, e.g. 0,1: one worker pinned to each (with --mode gpu).")
@click.option("--scheduler", metavar="tcp://HOST:8786",
              help="Train on the Dask cluster of this scheduler instead of local workers "
                   "(needs drnngen[dask]; data and run folder on a shared file system).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the GA and, per candidate, Caffe's random_seed: same seed, same run.")
@click.option("--timeout", type=finite(0, min_open=True),
              help="Seconds one training may take; a slower candidate is recorded as failed.")
@click.option("--cache-dir", type=_PATH,
              help="Result cache shared across runs [default: $DRNNGEN_CACHE/tune].")
@click.option("--no-cache", is_flag=True, help="Do not read or write the cross-run cache.")
@click.option("-o", "--output", type=output_path(), help="Run folder [default: runs/tune-<date>-<time>].")
@click.option("--resume", type=output_path(), metavar="RUN", help="Continue the run in RUN where it stopped.")
@click.pass_context
def tune_command(ctx: click.Context, /, **options: Any) -> None:
    """Evolve the DRNN's hyperparameters (Algorithm 2), training every candidate in Caffe.

    Every evaluation is written to RUN/ledger.sqlite as it finishes; after
    Ctrl-C (the paper's user interrupt), a crash or kill -9, `--resume RUN`
    carries on and ends where an uninterrupted run would have. The best
    candidate is exported to RUN/best (see `drnngen best`).
    """
    gpus = parse_gpus(options["gpus"])
    if gpus and options["mode"] != "gpu" and options["resume"] is None:
        raise UserError("--gpus needs --mode gpu")
    if options["scheduler"] is not None and (options["workers"] is not None or gpus):
        raise UserError("--scheduler runs the trainings on the Dask workers; drop --workers/--gpus")
    run_dir, params = _run_and_params(ctx, options)
    resources = Resources(
        workers=options["workers"] or max(1, len(gpus)),
        gpus=gpus,
        cache_dir=None if options["no_cache"] else (options["cache_dir"] or drnngen_cache() / "tune"),
        scheduler=None if options["scheduler"] is None else _scheduler_address(options["scheduler"]),
    )
    if params is not None and options["scheduler"] is None:
        _require_local_caffe(params.mode)
    _share_cores(resources.workers)
    extend = options["generations"] if _given(ctx, "generations") and options["resume"] is not None else None
    stop = threading.Event()
    try:
        with _interrupt_sets(stop):
            summary = tune(run_dir, params, resources, stop=stop, progress=_Bar(),
                           on_generation=_Logbook(params, run_dir).line, generations=extend)
    except KeyboardInterrupt:  # the second Ctrl-C: trainings in flight were killed
        click.echo(f"\nabandoned; continue with: drnngen tune --resume {run_dir}", err=True)
        ctx.exit(130)
    except ExecutorLost as exc:
        raise ExecutorLost(f"{exc}; the ledger has every finished training: drnngen tune --resume {run_dir}"
                           ) from None
    _finish(summary)
    if summary.budget_spent:
        click.echo(f"time budget spent; extend it with: drnngen tune --resume {run_dir}", err=True)
    elif summary.result.interrupted:
        click.echo(f"interrupted; continue with: drnngen tune --resume {run_dir}", err=True)
        ctx.exit(130)


def _run_and_params(ctx: click.Context, options: dict[str, Any]) -> tuple[Path, TuneParams | None]:
    if options["resume"] is not None:
        given = [f"--{name}" for name in _RESULT_OPTIONS if _given(ctx, name)]
        given += ["-o"] if options["output"] is not None else []
        if given:
            raise UserError(f"--resume takes its settings from the run's ledger; drop {', '.join(given)}")
        return options["resume"], None
    if options["data"] is None:
        raise UserError("--data: give the prepared dataset folder (or --resume RUN)")
    if options["iters"] is not None and options["epochs"] is not None:
        raise UserError("give the training budget of a candidate: --iters N or --epochs E (one of them)")
    epochs = options["epochs"] if options["iters"] is not None or options["epochs"] is not None else DEFAULT_EPOCHS
    base, space = _base_and_space(options)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = options["output"] or Path("runs") / f"tune-{stamp}"
    budget = options["time_budget"]
    generations = options["generations"]
    if generations is None:
        generations = UNBOUNDED_GENERATIONS if budget is not None else 10
    params = TuneParams(
        data=str(Path(options["data"]).resolve()), generations=generations,
        population=options["population"], pc=options["pc"], pm=options["pm"], strategy=options["strategy"],
        seed=options["seed"], iterations=options["iters"], epochs=epochs if options["iters"] is None else None,
        mode=options["mode"], timeout_s=options["timeout"], base=to_mapping(base), space=space_mapping(space),
        validate_every=options["validate_every"], patience=options["patience"],
        time_budget_s=None if budget is None else budget * 60.0, nan_retry=options["nan_retry"],
        train_seconds=_train_seconds(options["train_minutes"], budget, options["population"],
                                     options["workers"] or max(1, len(parse_gpus(options["gpus"])))),
        fidelity=options["fidelity"], eta=options["eta"], rungs=options["rungs"], rescore=options["rescore"],
        rescore_top=options["rescore_top"],
    )
    return run_dir, params


def _scheduler_address(text: str) -> str:
    """`--scheduler` checked before any connection attempt: a Dask address is
    [protocol://]host:port (Dask would otherwise wait for its connect timeout)."""
    from urllib.parse import urlsplit

    parts = urlsplit(text if "://" in text else f"tcp://{text}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("tcp", "tls", "ucx", "ws", "wss") or not parts.hostname or port is None \
            or parts.path not in ("", "/") or any(c.isspace() for c in text):
        raise UserError(f"--scheduler: expected a Dask scheduler address like tcp://HOST:8786, got {text!r}")
    return text


def _train_seconds(minutes: float | None, budget: float | None, population: int, workers: int) -> float | None:
    """One training's limit: as given, else the run's budget shared by the first
    generation's trainings (so the GA gets past its random start), else none."""
    if minutes is not None:
        return minutes * 60.0
    return None if budget is None else budget * 60.0 / math.ceil(population / workers)


def _base_and_space(options: dict[str, Any]) -> tuple[DRNNConfig, SearchSpace]:
    """The files given, else the defaults that suit the dataset (read only then)."""
    base = load_config(options["config"]) if options["config"] else None
    space = load_space(options["space"]) if options["space"] else None
    if base is None or space is None:
        m = load_manifest(Path(options["data"]))
        budget = parse_size(options["memory_budget"], "--memory-budget")
        base = base or default_base(m.pages, m.items, m.train_samples, m.target, history_k=m.layout.history_k,
                                    memory_budget=budget, repeats=repeat_share(m))
        space = space or default_space(m.pages, m.items, m.target)
    return base, space


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)


@contextmanager
def _interrupt_sets(stop: threading.Event) -> Iterator[None]:
    """First Ctrl-C: finish the trainings in flight, then stop (resumable).
    Second Ctrl-C: kill them and stop now (still resumable; they are retrained)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            stop.set()
            click.echo("\nstopping after the trainings in flight; Ctrl-C again to abandon them", err=True)
            return
        kill_children()
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set in the main thread
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Bar:
    """One progress bar per generation's trainings, on stderr."""

    def __init__(self) -> None:
        self._bar: Any = None

    def start(self, gen: int, total: int) -> None:
        if total:
            self._bar = click.progressbar(length=total, label=f"gen {gen}: training {total}", file=sys.stderr)
            self._bar.__enter__()

    def advance(self, done: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(done)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


class _Logbook:
    """A logbook line per generation on stdout."""

    def __init__(self, params: TuneParams | None, run_dir: Path) -> None:
        self._space: SearchSpace | None = None if params is None else params.search_space()
        self._run_dir = run_dir
        self._header = False

    def line(self, record: dict[str, Any]) -> None:
        if self._space is None:  # a resume: the space is the run's
            self._space = _space_of(self._run_dir)
        if not self._header:
            click.echo(f"run folder {self._run_dir}", err=True)
            click.echo(f"{'gen':>4} {'evals':>5} {'cached':>6} {'failed':>6} {'max':>7} {'mean':>7} "
                       f"{'best':>7}  best genotype")
            self._header = True
        best = describe(record["best"], self._space) if record["best"] is not None else "-"
        click.echo(f"{record['gen']:>4} {record['evals']:>5} {record['cached']:>6} {record['failed']:>6} "
                   f"{_num(record['max'])} {_num(record['mean'])} {_num(record['best_fitness'])}  {best}")


def _space_of(run_dir: Path) -> SearchSpace:
    from drnngen.tuner.ledger import Ledger

    ledger = Ledger.open(run_dir)
    try:
        return TuneParams.from_json(ledger.params).search_space()
    finally:
        ledger.close()


def _num(value: float) -> str:
    return f"{value:7.4f}" if math.isfinite(value) else f"{'-':>7}"


def _first_failure(run_dir: Path) -> str:
    """`: <status>: <Caffe's message>` of the run's first failed candidate, for the error line."""
    from drnngen.tuner.ledger import Ledger

    ledger = Ledger.open(run_dir)
    try:
        failed = [row.outcome for row in ledger.candidates() if not row.outcome.ok]
    finally:
        ledger.close()
    if not failed:
        return ""
    first = (failed[0].error or "").strip().splitlines()
    return f" (first: {failed[0].status}: {first[-1][:200] if first else 'no message'})"


def _finish(summary: RunSummary) -> None:
    best = summary.best
    failures = sum(r["failed"] for r in summary.records)
    click.echo(f"{summary.evaluated} networks evaluated, {failures} failed evaluations; "
               f"ledger {summary.run_dir / 'ledger.sqlite'}")
    if best is None:
        if summary.result.interrupted and not summary.budget_spent:
            click.echo("no candidate trained successfully yet", err=True)
            return  # the caller exits 130: resumable
        raise UserError(f"no candidate trained successfully{_first_failure(summary.run_dir)}; "
                        f"the ledger {summary.run_dir / 'ledger.sqlite'} has every candidate's error")
    out = summary.run_dir / "best"
    export_best(summary.run_dir, out)
    o = best.outcome
    click.echo(f"best: fitness {o.fitness:.4f} (accuracy {o.accuracy:.4f}, loss {o.loss:.4f}){_rescored(summary)} "
               f"{describe(best.genotype, summary.params.search_space())} -> {out}")


def _rescored(summary: RunSummary) -> str:
    """`, mean 0.61 ± 0.02 over 3 seeds` of the best once --rescore has ranked it so."""
    from drnngen.tuner.ledger import Ledger

    if not summary.params.rescore or summary.best is None:
        return ""
    ledger = Ledger.open(summary.run_dir)
    try:
        values = ledger.scores().get(summary.best.key, [])
    finally:
        ledger.close()
    if len(values) < 2:
        return ""
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f", mean {mean:.4f} ± {sd:.4f} over {len(values)} seeds"


@click.command()
@click.argument("run", type=output_path(file_okay=False))
@click.option("-o", "--output", type=output_path(), help="Folder for the files [default: RUN/best].")
def best(run: Path, output: Path | None) -> None:
    """Export the best candidate of RUN: config.yaml, net/solver/deploy prototxt,
    model.caffemodel and best.json (fitness, accuracy, loss, genotype)."""
    row, written = export_best(run, output or run / "best")
    o = row.outcome
    click.echo(f"best: fitness {o.fitness:.4f} (accuracy {o.accuracy:.4f}, loss {o.loss:.4f}), "
               f"generation {row.generation}")
    for path in written:
        click.echo(f"wrote {path}")

