"""`make quality`: the tuned DRNN against every baseline at Recall@20 and MRR@20, per log.

A benchmark, not a test: nothing is asserted. For each log it runs the real CLI
(``drnngen prepare`` → ``drnngen tune --time-budget MINUTES`` with the data-aware
defaults, no ``--config``/``--space`` → ``drnngen evaluate --k 20``), reads the
run's ``evaluation.json`` and prints a table per log (every model the evaluation
scored; the DRNN row carries the tuning wall time) with the verdict "DRNN >= best
baseline" and the margins (DRNN minus the best baseline, per metric), and the run's
best candidate of each cell (``model.cell``: the paper's ``drnn`` and GRU4Rec's
``gru``, docs/MODEL.md section 18) with its validation fitness, read from the run's
ledger ("no gru candidate" where the space did not make the cell a gene). The tables go
to ``OUT/quality.md`` and ``OUT/quality.json`` too (rewritten after every log, so a
later failure keeps the earlier results).

The logs:

* ``ml-100k`` — MovieLens-100k (real; :mod:`benchmarks.movielens`): each user's
  ratings sorted by time are one session of page views, whole; target next-item.
* ``shop-purchase`` — ``drnngen synth --sessions 7000 --items 1000`` (about 57k
  clicks: users with tastes, sessions drifting toward the bought item, repeat
  views); target purchase, the paper's.
* ``shop-next-item`` — the same synthetic log, target next-item.

``python -m benchmarks.bench_quality [--minutes M] [--logs a,b] [--out DIR]``;
``QUALITY_TUNE_ARGS`` (shell words) is appended to every ``drnngen tune`` command,
e.g. ``QUALITY_TUNE_ARGS='--generations 0 --population 2'`` for a smoke run.
A failing step ends the benchmark with one line naming it (its own error is above).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from benchmarks import movielens
from drnngen.errors import UserError
from drnngen.tuner.codec import describe
from drnngen.tuner.ledger import Ledger
from drnngen.tuner.space import parse_space

K = 20
#: (key prefix in evaluation.json, column title)
METRICS = (("recall", f"Recall@{K}"), ("mrr", f"MRR@{K}"))
#: The DRNN's row in evaluation.json (drnngen.evaluation.compare.DRNN).
DRNN = "DRNN"
DEFAULT_MINUTES = 15.0
SHOP_SESSIONS = 7000  # x ~8.1 views at the default mean length: about 57k clicks
SHOP_ITEMS = 1000
SHOP_SEED = 1
MIN_SHOP_CLICKS = 50_000
TUNE_ARGS_ENV = "QUALITY_TUNE_ARGS"
#: The cells compared per log (codegen.config.CELLS), reported in this order.
CELLS = ("gru", "drnn")


class StepFailed(RuntimeError):
    """A step of the benchmark failed; the message is the one line to print."""


# --- the table and the verdict (pure) -----------------------------------------------------


@dataclass(frozen=True)
class Row:
    model: str
    recall: float
    mrr: float

    def value(self, metric: str) -> float:
        return self.recall if metric == "recall" else self.mrr


@dataclass(frozen=True)
class Margin:
    """DRNN against the best baseline on one metric (ties between baselines: the first listed)."""

    metric: str  # "recall" or "mrr"
    baseline: str
    baseline_value: float
    drnn_value: float

    @property
    def margin(self) -> float:
        return self.drnn_value - self.baseline_value

    @property
    def ok(self) -> bool:
        return self.margin >= 0


@dataclass(frozen=True)
class Table:
    """One log's models at K, the DRNN first, then the baselines in evaluation.json's order."""

    rows: tuple[Row, ...]
    margins: tuple[Margin, ...]
    samples: int

    @property
    def ok(self) -> bool:
        """DRNN >= best baseline on every metric."""
        return all(m.ok for m in self.margins)


def quality_table(evaluation: Mapping[str, Any], k: int = K) -> Table:
    """The table and verdict from an ``evaluation.json`` document (``{"models": {name: {"recall@K": ...}}}``)."""
    models = evaluation.get("models")
    if not isinstance(models, Mapping) or not models:
        raise ValueError("the evaluation lists no models")
    rows: list[Row] = []
    for name, metrics in models.items():
        try:
            rows.append(Row(str(name), float(metrics[f"recall@{k}"]), float(metrics[f"mrr@{k}"])))
        except KeyError as exc:
            raise ValueError(f"model {name!r} has no {exc.args[0]} (was it evaluated with --k {k}?)") from None
    drnn = next((row for row in rows if row.model == DRNN), None)
    if drnn is None:
        raise ValueError(f"the evaluation has no {DRNN} row")
    baselines = [row for row in rows if row.model != DRNN]
    if not baselines:
        raise ValueError("the evaluation has no baseline rows")
    margins = []
    for metric, _ in METRICS:
        best = max(baselines, key=lambda row: row.value(metric))  # max() keeps the first of equals
        margins.append(Margin(metric, best.model, best.value(metric), drnn.value(metric)))
    samples = int(models[DRNN].get("samples", 0))
    return Table((drnn, *baselines), tuple(margins), samples)


@dataclass(frozen=True)
class CellBest:
    """The fittest successful candidate of one cell in a run's ledger (validation fitness)."""

    cell: str
    fitness: float
    key: str  # the candidate's key, 16 hex digits (its folder under RUN/candidates/)
    genotype: str  # the chromosome's one-line description


def best_by_cell(run: Path) -> dict[str, CellBest | None]:
    """Per cell of ``CELLS``: the run's fittest successful candidate of that cell, or None.

    The cell is the candidate's config's ``model.cell`` (a config without the key, from
    a drnngen before the GRU cell, is ``drnn``); of equal fitnesses the first evaluated
    stays, as in ``Ledger.best``."""
    ledger = Ledger.open(run)
    try:
        rows = ledger.candidates()
        space_raw = ledger.params.get("space")
    finally:
        ledger.close()
    try:
        space = parse_space(space_raw) if isinstance(space_raw, Mapping) else None
    except UserError:  # a space this drnngen no longer reads: show the raw genotype
        space = None
    best: dict[str, CellBest | None] = dict.fromkeys(CELLS)
    for row in rows:
        if not row.outcome.ok:
            continue
        model = (yaml.safe_load(row.config) or {}).get("model") or {}
        cell = str(model.get("cell", "drnn"))
        current = best.get(cell)
        if current is None or row.outcome.fitness > current.fitness:
            shown = describe(row.genotype, space) if space is not None else json.dumps(row.genotype)
            best[cell] = CellBest(cell, row.outcome.fitness, row.key[:16], shown)
    return best


def cells_line(cells: Mapping[str, CellBest | None]) -> str:
    """``best gru candidate: fitness 0.4127 (w=2 … cell=gru); best drnn candidate: …``."""
    parts = []
    for cell in (*CELLS, *sorted(set(cells) - set(CELLS))):
        if cell not in cells:
            continue
        found = cells[cell]
        parts.append(f"no {cell} candidate" if found is None
                     else f"best {cell} candidate: fitness {found.fitness:.4f} ({found.genotype}, {found.key})")
    return "; ".join(parts)


@dataclass(frozen=True)
class LogResult:
    """What one log's benchmark measured."""

    name: str
    title: str
    target: str
    table: Table
    minutes: float
    seconds: Mapping[str, float]  # step → wall seconds: source, prepare, tune, evaluate
    context: Mapping[str, Any] = field(default_factory=dict)  # evaluation.json's context
    cells: Mapping[str, CellBest | None] = field(default_factory=dict)  # best_by_cell of the run; {}: not read


def duration(seconds: float) -> str:
    """``"14 min 58 s"``, or ``"12.3 s"`` under a minute."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60:02d} s"


def _title(metric: str) -> str:
    return dict(METRICS)[metric]


def verdict_line(table: Table) -> str:
    """``DRNN >= best baseline: yes (Recall@20 +0.0123 vs item-kNN, MRR@20 -0.0010 vs V-SKNN)``."""
    parts = [f"{_title(m.metric)} {m.margin:+.4f} vs {m.baseline}" for m in table.margins]
    return f"DRNN >= best baseline: {'yes' if table.ok else 'no'} ({', '.join(parts)})"


def _cells(result: LogResult) -> tuple[list[str], list[list[str]]]:
    headers = ["model", *(title for _, title in METRICS), "tuning"]
    rows = [[row.model, f"{row.recall:.4f}", f"{row.mrr:.4f}",
             duration(result.seconds.get("tune", 0.0)) if row.model == DRNN else ""] for row in result.table.rows]
    return headers, rows


def _heading(result: LogResult) -> str:
    window = result.context.get("window")
    items = result.context.get("items")
    shape = f", window {window}, N = {items}" if window is not None and items is not None else ""
    return (f"{result.name}: {result.title}, target {result.target} — {result.table.samples:,} test samples{shape}; "
            f"tuned with --time-budget {minutes_arg(result.minutes)} in {duration(result.seconds.get('tune', 0.0))}")


def render_text(result: LogResult) -> str:
    """The terminal table of one log, with its heading and verdict."""
    headers, rows = _cells(result)
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [_heading(result)]
    for r in [headers, *rows]:
        lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(r, widths, strict=True))).rstrip())
    if result.cells:
        lines.append(cells_line(result.cells))
    lines.append(verdict_line(result.table))
    return "\n".join(lines) + "\n"


def render_markdown(results: Sequence[LogResult], minutes: float, created: str = "") -> str:
    """``quality.md``: a summary over the logs, then one table per log (a column's best value in bold)."""
    lines = ["# DRNN against the baselines (`make quality`)", "",
             f"Each log: `drnngen prepare`, `drnngen tune --time-budget {minutes_arg(minutes)}` (minutes; data-aware "
             f"defaults, no --config/--space), `drnngen evaluate --k {K}` on the test split."
             + (f" Generated {created}." if created else ""), "",
             "| log | target | DRNN >= best baseline | " + " | ".join(f"{t} margin" for _, t in METRICS)
             + " | tuning |",
             "| --- | --- | --- |" + " ---: |" * len(METRICS) + " ---: |"]
    for r in results:
        margins = " | ".join(f"{m.margin:+.4f} (vs {m.baseline})" for m in r.table.margins)
        lines.append(f"| {r.name} | {r.target} | {'yes' if r.table.ok else 'no'} | {margins} | "
                     f"{duration(r.seconds.get('tune', 0.0))} |")
    for r in results:
        headers, rows = _cells(r)
        lines += ["", f"## {r.name}", "", _heading(r), "", "| " + " | ".join(headers) + " |",
                  "| --- |" + " ---: |" * (len(headers) - 1)]
        best = [max(row.value(metric) for row in r.table.rows) for metric, _ in METRICS]
        for row, cells in zip(r.table.rows, rows, strict=True):
            values = [row.value(metric) for metric, _ in METRICS]
            marked = [f"**{cell}**" if value == top else cell
                      for cell, value, top in zip(cells[1:3], values, best, strict=True)]
            lines.append("| " + " | ".join([cells[0], *marked, *cells[3:]]) + " |")
        if r.cells:
            lines += ["", "Validation fitness by cell: " + cells_line(r.cells) + "."]
        lines += ["", verdict_line(r.table) + "."]
    return "\n".join(lines) + "\n"


def to_document(results: Sequence[LogResult], minutes: float, created: str = "") -> dict[str, Any]:
    """``quality.json``."""
    return {
        "k": K,
        "minutes": minutes,
        "created": created,
        "logs": [{
            "name": r.name, "title": r.title, "target": r.target, "test_samples": r.table.samples,
            "seconds": dict(r.seconds),
            "models": [{"model": row.model, f"recall@{K}": row.recall, f"mrr@{K}": row.mrr} for row in r.table.rows],
            "verdict": {
                "drnn_at_least_best_baseline": r.table.ok,
                **{f"{m.metric}@{K}": {"best_baseline": m.baseline, "baseline": m.baseline_value,
                                       "drnn": m.drnn_value, "margin": m.margin, "ok": m.ok}
                   for m in r.table.margins},
            },
            "context": dict(r.context),
            "cells": {cell: None if best is None else {"fitness": best.fitness, "key": best.key,
                                                       "genotype": best.genotype}
                      for cell, best in r.cells.items()},
        } for r in results],
    }


def minutes_arg(minutes: float) -> str:
    """``15`` for 15.0, ``2.5`` for 2.5: how the budget is written on the command line."""
    return str(int(minutes)) if float(minutes).is_integer() else repr(float(minutes))


# --- the logs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogPlan:
    name: str
    title: str
    source: str  # "ml-100k" or "shop": what must exist before `prepare`
    target: str
    prepare: tuple[str, ...]  # prepare's arguments before -o


def plans(out: Path) -> list[LogPlan]:
    shop = out / "shop" / "log"
    shop_args = (str(shop / "clicks.dat"), "--buys", str(shop / "buys.dat"), "--users", str(shop / "users.csv"),
                 "--format", "yoochoose")
    # prepare's defaults: the whole catalog (every train page and item) and the sparse history
    return [
        LogPlan("ml-100k", "MovieLens-100k (each user's ratings by time = one session of views)", "ml-100k",
                "next-item", (str(out / "ml-100k" / "sessions.tsv"), "--format", "gru4rec", "--target", "next-item")),
        LogPlan("shop-purchase", f"synthetic shop log (drnngen synth, {SHOP_SESSIONS} sessions)", "shop",
                "purchase", (*shop_args, "--target", "purchase")),
        LogPlan("shop-next-item", f"synthetic shop log (drnngen synth, {SHOP_SESSIONS} sessions)", "shop",
                "next-item", (*shop_args, "--target", "next-item")),
    ]


def drnngen_command() -> list[str]:
    """The console script beside this interpreter (`drnngen = drnngen.cli:main`), else its entry point."""
    script = Path(sys.executable).with_name("drnngen")  # not resolved: the venv's bin/, not the base Python's
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    found = shutil.which("drnngen")
    if found:
        return [found]
    return [sys.executable, "-c", "from drnngen.cli import main; main()"]


def _show(command: Sequence[str]) -> str:
    return " ".join(shlex.quote(part) for part in command)


def run_step(what: str, command: Sequence[str]) -> float:
    """Run one CLI step with its output streamed; its wall seconds, or StepFailed."""
    print(f"$ {_show(command)}", flush=True)
    start = time.perf_counter()
    with subprocess.Popen(list(command)) as proc:
        try:
            code = proc.wait()
        except KeyboardInterrupt:  # the child got the same SIGINT; let it stop its own way
            try:
                proc.wait()
            except KeyboardInterrupt:
                proc.kill()
            raise
    if code != 0:
        raise StepFailed(f"{what} failed with exit code {code}: {_show(command)}")
    return time.perf_counter() - start


def tune_supports_time_budget(drnngen: Sequence[str]) -> bool:
    done = subprocess.run([*drnngen, "tune", "--help"], capture_output=True, text=True, check=False)
    return "--time-budget" in done.stdout


class Bench:
    def __init__(self, out: Path, minutes: float, drnngen: Sequence[str], tune_extra: Sequence[str],
                 with_budget: bool) -> None:
        self.out = out
        self.minutes = minutes
        self.drnngen = list(drnngen)
        self.tune_extra = list(tune_extra)
        self.with_budget = with_budget
        self.sources: dict[str, float] = {}

    def source(self, name: str) -> float:
        """Make the log a plan prepares (once per benchmark run); its seconds."""
        if name not in self.sources:
            self.sources[name] = {"ml-100k": self._movielens, "shop": self._shop}[name]()
        return self.sources[name]

    def _movielens(self) -> float:
        start = time.perf_counter()
        try:
            inter, downloaded = movielens.fetch_ml100k()
        except (OSError, RuntimeError) as exc:
            raise StepFailed(f"ml-100k: fetching the recbole {movielens.RECBOLE_VERSION} wheel failed: {exc}") from None
        fetched = time.perf_counter() - start
        print(f"ml-100k ratings: {inter} ({'downloaded' if downloaded else 'cached'}, {fetched:.1f} s)", flush=True)
        start = time.perf_counter()
        tsv = self.out / "ml-100k" / "sessions.tsv"
        try:
            events, sessions = movielens.convert(inter, tsv)
        except (OSError, ValueError) as exc:
            raise StepFailed(f"ml-100k: converting {inter} failed: {exc}") from None
        converted = time.perf_counter() - start
        print(f"ml-100k log: {tsv}: {events:,} views in {sessions:,} sessions ({converted:.1f} s)", flush=True)
        return fetched + converted

    def _shop(self) -> float:
        folder = self.out / "shop" / "log"
        seconds = run_step("synth", [*self.drnngen, "synth", "--sessions", str(SHOP_SESSIONS), "--seed",
                                     str(SHOP_SEED), "--items", str(SHOP_ITEMS), "-o", str(folder), "--force"])
        with (folder / "clicks.dat").open("rb") as f:
            clicks = sum(1 for _ in f)
        print(f"shop log: {clicks:,} clicks in {SHOP_SESSIONS:,} sessions", flush=True)
        if clicks < MIN_SHOP_CLICKS:
            raise StepFailed(f"shop: the synthetic log has {clicks:,} clicks, fewer than {MIN_SHOP_CLICKS:,}")
        return seconds

    def log(self, plan: LogPlan) -> LogResult:
        folder = self.out / plan.name
        data, run = folder / "data", folder / "run"
        made = plan.source not in self.sources
        seconds = {"source": self.source(plan.source)} if made else {}  # a log shared by two plans counts once
        cli = self.drnngen
        seconds["prepare"] = run_step(f"{plan.name}: prepare",
                                      [*cli, "prepare", *plan.prepare, "-o", str(data), "--force"])
        if run.exists():
            shutil.rmtree(run)  # a fresh run each time (the tuner's cache still spares repeated trainings)
        budget = ["--time-budget", minutes_arg(self.minutes)] if self.with_budget else []
        seconds["tune"] = run_step(f"{plan.name}: tune",
                                   [*cli, "tune", "--data", str(data), *budget, "-o", str(run), *self.tune_extra])
        seconds["evaluate"] = run_step(f"{plan.name}: evaluate",
                                       [*cli, "evaluate", str(run), "--data", str(data), "--k", str(K)])
        report = run / "evaluation.json"
        try:
            document = json.loads(report.read_text(encoding="utf-8"))
            table = quality_table(document)
        except (OSError, ValueError) as exc:
            raise StepFailed(f"{plan.name}: cannot read {report}: {exc}") from None
        try:
            cells = best_by_cell(run)
        except Exception as exc:  # the comparison by cell is extra: its failure must not lose the table
            print(f"{plan.name}: cannot read the ledger's candidates by cell: {exc}", flush=True)
            cells = {}
        return LogResult(plan.name, plan.title, plan.target, table, self.minutes, seconds,
                         document.get("context", {}), cells)


def write_outputs(out: Path, results: Sequence[LogResult], minutes: float, created: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "quality.md", out / "quality.json"
    md.write_text(render_markdown(results, minutes, created), encoding="utf-8")
    js.write_text(json.dumps(to_document(results, minutes, created), indent=2) + "\n", encoding="utf-8")
    return [md, js]


def _parse(argv: Sequence[str], names: Iterable[str]) -> argparse.Namespace:
    default_minutes = os.environ.get("QUALITY_MINUTES") or str(DEFAULT_MINUTES)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_quality",
                                     description="The tuned DRNN against every baseline at Recall@20 and MRR@20.")
    parser.add_argument("--minutes", type=float, default=float(default_minutes),
                        help="tuning budget per log, minutes (default: $QUALITY_MINUTES or 15)")
    parser.add_argument("--logs", default=",".join(names), help="comma-separated logs (default: all)")
    parser.add_argument("--out", type=Path, default=Path("out/quality"), help="output folder")
    args = parser.parse_args(list(argv))
    if args.minutes <= 0:
        parser.error("--minutes must be > 0")
    return args


def _fail(message: str) -> None:
    print(f"quality: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] = ()) -> int:
    """Run the benchmark; the exit status (0, 1 when a step failed, 2 for bad options, 130 on Ctrl-C)."""
    everything = plans(Path("out/quality"))
    args = _parse(argv, [p.name for p in everything])
    out: Path = args.out
    chosen = [name.strip() for name in args.logs.split(",") if name.strip()]
    unknown = sorted(set(chosen) - {p.name for p in everything})
    if unknown or not chosen:
        _fail(f"error: unknown log(s) {', '.join(unknown) or '(none)'}; "
              f"choose from {', '.join(p.name for p in everything)}")
        return 2
    drnngen = drnngen_command()
    with_budget = tune_supports_time_budget(drnngen)
    if not with_budget:
        _fail(f"warning: this `drnngen tune` has no --time-budget; tuning without it "
              f"(give a budget in ${TUNE_ARGS_ENV}, e.g. --iters)")
    bench = Bench(out, args.minutes, drnngen, shlex.split(os.environ.get(TUNE_ARGS_ENV, "")), with_budget)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    results: list[LogResult] = []
    try:
        for plan in (p for p in plans(out) if p.name in chosen):
            print(f"== quality: {plan.name}", flush=True)
            results.append(bench.log(plan))
            write_outputs(out, results, args.minutes, created)
            print("")
            print(render_text(results[-1]).rstrip("\n"))
            timing = ", ".join(f"{step} {duration(sec)}" for step, sec in results[-1].seconds.items())
            print(f"steps: {timing}", flush=True)
            print("")
    except StepFailed as exc:
        _fail(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    print("== quality: summary")
    for r in results:
        print(f"{r.name}: {verdict_line(r.table)}; tuning {duration(r.seconds['tune'])}")
        if r.cells:
            print(f"{r.name}: {cells_line(r.cells)}")
    print(f"wrote {out / 'quality.md'} and {out / 'quality.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
