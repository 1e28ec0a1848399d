"""Tuners side by side at an equal budget of Caffe solver seconds (`make bench-tuners`).

One search space, one synthetic dataset, one budget B of solver seconds (the
time inside `solver.step`, summed over every training a method asks for) and
the same seeds for each of:

    literal      Algorithm 2 as written, every changed candidate at the full budget
    elitist      (mu + lambda) with tournaments
    literal+SH   literal with --fidelity successive-halving (eta, rungs as below)
    random       random search (--strategy random)
    optuna       Optuna's TPE sampler with its SuccessiveHalvingPruner, over the same
                 genes, training through the same runner on the same rung budgets
                 (continuing from the rung's snapshot, like literal+SH)

Each run stops once it has spent B; a training that crosses B does not count.
For each method and seed the best validation fitness so far is traced against
cumulative solver seconds (any rung's snapshot counts: it is a trained model
scored on the validation split), and the final best snapshot is scored on the
test split (Recall@20). Two ratios, per seed, with their spread:

    time ratio   solver seconds literal+SH needs to reach literal's final best
                 / those literal needed to reach it       (target <= 1/3)
    Optuna ratio best fitness of drnngen's best option at B
                 / Optuna's best at B                     (target >= 1)

Writes OUT/tuners.png, OUT/tuners.md (the tables) and OUT/tuners.json.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drnngen.codegen.build import DEPLOY, generate
from drnngen.codegen.config import load_config, parse_config, to_mapping
from drnngen.codegen.graph import model_outputs
from drnngen.data.manifest import load_manifest
from drnngen.errors import UserError
from drnngen.tuner import Resources, TuneParams, tune
from drnngen.tuner.candidate import Budget, Setting, TuneData, prepare, write_files
from drnngen.tuner.codec import Genes, to_list
from drnngen.tuner.fidelity import Schedule, rung
from drnngen.tuner.fitness import Outcome, outcome_of
from drnngen.tuner.ledger import Ledger
from drnngen.tuner.space import IntRange, SearchSpace, space_mapping
from drnngen.vocabulary import short_key

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SPACE = SearchSpace(IntRange(2, 4), IntRange(1, 2), IntRange(0, 1), ("ReLU", "TanH", "Sigmoid"), (16, 32, 64),
                    base_lr=(0.005, 0.02, 0.08))
ETA, RUNGS = 3, 3
REPEATS = 200  # Optuna's run ends after this many trials in a row that drew only known networks
POPULATION = 9  # a multiple of eta: rungs of 9, 3 and 1
GA_METHODS = {
    "literal": {"strategy": "literal"},
    "elitist": {"strategy": "elitist"},
    "literal+SH": {"strategy": "literal", "fidelity": "successive-halving"},
    "random": {"strategy": "random"},
}
DRNNGEN_OPTIONS = ("literal", "elitist", "literal+SH")  # drnngen's own tuner options (random is a baseline)
METHODS = (*GA_METHODS, "optuna")


@dataclass
class Point:
    """One training's result: cumulative solver seconds at its end, its fitness, its model."""

    seconds: float
    fitness: float
    caffemodel: str | None
    config: str  # the candidate's config YAML (for the deploy net)


@dataclass
class Trace:
    method: str
    seed: int
    points: list[Point] = field(default_factory=list)
    wall_s: float = 0.0
    test_recall20: float | None = None

    def within(self, budget: float) -> list[Point]:
        return [p for p in self.points if p.seconds <= budget]

    def best(self, budget: float) -> Point | None:
        return max(self.within(budget), key=lambda p: p.fitness, default=None)

    def best_at(self, t: float) -> float:
        best = self.best(t)
        return math.nan if best is None else best.fitness

    def reaches(self, target: float, budget: float) -> float:
        """Solver seconds at which the best so far first reaches `target` (inf: never)."""
        return next((p.seconds for p in self.within(budget) if p.fitness >= target - 1e-12), math.inf)


# --- the problem -------------------------------------------------------------------------------


def make_data(root: Path, sessions: int) -> Path:
    from tests.data_support import synthetic_dataset

    return synthetic_dataset(root, sessions=sessions, items=300, categories=12, max_pages=400, max_items=100,
                             window=3)


def base_mapping() -> dict[str, Any]:
    base = to_mapping(load_config(EXAMPLES / "small.yaml"))
    base["data"]["batch_size"] = 64
    return base


def ga_params(data: Path, method: str, seed: int, iterations: int) -> TuneParams:
    return TuneParams(data=str(data), generations=100_000, population=POPULATION, pc=0.7, pm=0.3,
                      seed=seed, iterations=iterations, epochs=None, mode="cpu", timeout_s=None,
                      base=base_mapping(), space=space_mapping(SPACE), eta=ETA, rungs=RUNGS,
                      **GA_METHODS[method])


# --- drnngen's runs -----------------------------------------------------------------------------


class _Spent:
    """The tune run's Progress: after each training, stop the run once B is spent."""

    def __init__(self, run_dir: Path, budget: float, stop: threading.Event) -> None:
        self.run_dir, self.budget, self.stop = run_dir, budget, stop

    def start(self, gen: int, total: int) -> None:
        pass

    def advance(self, done: int = 1) -> None:
        points = _points(self.run_dir)
        if points and points[-1].seconds >= self.budget:
            self.stop.set()

    def finish(self) -> None:
        pass


def _points(run_dir: Path) -> list[Point]:
    """Every training of the run in order, with cumulative solver seconds (rungs when it has them)."""
    ledger = Ledger.open(run_dir, read_only=True)  # the run's own connection writes on
    try:
        rungs = ledger.trainings()
        configs = {row.key: row.config for row in ledger.candidates()}
        rows: list[tuple[float, Outcome, str]]
        if rungs:
            rows = [(t.outcome.solver_seconds, t.outcome, configs.get(t.candidate, "")) for t in rungs
                    if t.source == "trained"]
        else:
            rows = [(r.outcome.solver_seconds, r.outcome, r.config) for r in ledger.candidates()
                    if r.source == "trained"]
    finally:
        ledger.close()
    points, total = [], 0.0
    for seconds, outcome, config in rows:
        total += seconds
        points.append(Point(total, outcome.fitness if outcome.ok else 0.0, outcome.caffemodel, config))
    return points


def run_ga(root: Path, data: Path, method: str, seed: int, budget: float, iterations: int) -> Trace:
    run_dir = root / f"{method}-s{seed}"
    stop = threading.Event()
    start = time.perf_counter()
    tune(run_dir, ga_params(data, method, seed, iterations), Resources(workers=1), stop=stop,
         progress=_Spent(run_dir, budget, stop))
    trace = Trace(method, seed, _points(run_dir), time.perf_counter() - start)
    # Rung rows carry no config until the batch is decided: fill them from the candidate folders.
    for p in trace.points:
        if not p.config and p.caffemodel:
            p.config = (Path(p.caffemodel).parent / "config.yaml").read_text()
    return trace


# --- Optuna --------------------------------------------------------------------------------------


def suggest(trial: Any, space: SearchSpace) -> list[Any]:
    """A chromosome of `space` drawn by an Optuna trial (define-by-run: per-layer genes
    only for the layers it has; h's range depends on l, so its name does too)."""
    w = trial.suggest_int("w", space.states.low, space.states.high)
    layers = trial.suggest_int("l", space.layers.low, space.layers.high)
    h_range = space.shortcut_range(layers)
    h = trial.suggest_int(f"h_l{layers}", h_range.low, h_range.high)
    acts = tuple(trial.suggest_categorical(f"a{i}", list(space.activations)) for i in range(layers))
    widths = tuple(trial.suggest_categorical(f"E{i}", list(space.widths)) for i in range(layers))
    optional = {g.name: trial.suggest_categorical(g.name, list(getattr(space, g.name))) for g in space.optional_genes()}
    return to_list(Genes(w, layers, h, acts, widths, **optional), space)


def run_optuna(root: Path, data: Path, seed: int, budget: float, iterations: int) -> Trace:
    import optuna

    from drnngen.runner import train

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    params = ga_params(data, "literal", seed, iterations)
    setting = Setting(params.base_config(), SPACE, TuneData(data), Budget(iterations=iterations), seed)
    schedule = Schedule(ETA, RUNGS)
    trace = Trace("optuna", seed)
    seen: dict[str, list[Outcome]] = {}  # a repeated network is not trained again (like the GA's ledger)
    spent = [0.0]
    repeats = [0]  # trials in a row that trained nothing: TPE has converged on a small space

    def objective(trial: Any) -> float:
        try:
            candidate = prepare(suggest(trial, SPACE), setting)
        except UserError:
            return 0.0
        budgets = schedule.budgets(candidate.iterations)
        outcomes = seen.setdefault(candidate.key, [])
        folder = root / f"optuna-s{seed}" / short_key(candidate.key)
        config = yaml.safe_dump(to_mapping(candidate.config), sort_keys=False)
        fit = 0.0
        repeats[0] += 1
        if repeats[0] > REPEATS:
            trial.study.stop()  # it would only draw known networks, spending nothing, until the sun goes out
        for r in range(len(budgets)):
            if r >= len(outcomes):
                repeats[0] = 0
                if spent[0] >= budget:
                    trial.study.stop()
                    raise optuna.TrialPruned()
                t = rung(candidate, budgets, r, outcomes[-1] if outcomes else None)
                write_files(candidate, folder)
                outcome = outcome_of(train(t.job(folder.resolve(), setting)), model_outputs(candidate.config)[1])
                outcomes.append(outcome)
                spent[0] += outcome.solver_seconds
                fit = outcome.fitness if outcome.ok else 0.0
                trace.points.append(Point(spent[0], fit, outcome.caffemodel, config))
            fit = outcomes[r].fitness if outcomes[r].ok else 0.0
            if not outcomes[r].ok:
                return 0.0
            if r < len(budgets) - 1 and outcomes[r].state is None:
                return fit  # its loss went NaN after its best point: nothing to continue
            trial.report(fit, step=budgets[r])
            if trial.should_prune():
                raise optuna.TrialPruned()
        return fit

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.SuccessiveHalvingPruner(
                                    min_resource=schedule.budgets(iterations)[0], reduction_factor=ETA))
    start = time.perf_counter()
    study.optimize(objective, n_trials=100_000)  # study.stop() ends it at B, or when it only repeats itself
    trace.wall_s = time.perf_counter() - start
    return trace


# --- test split ----------------------------------------------------------------------------------


def test_recall20(point: Point, data: Path, out: Path) -> float:
    """Recall@20 on the test split of the snapshot `point`."""
    import numpy as np

    from drnngen.data.samples import load_sessions
    from drnngen.evaluation.metrics import ranking_metrics
    from drnngen.runner import forward_scores

    cfg = parse_config(yaml.safe_load(point.config))
    deploy = out / DEPLOY
    out.mkdir(parents=True, exist_ok=True)
    deploy.write_text(generate(cfg)[DEPLOY])
    test = load_manifest(data).sources(cfg.model.states)["test"]
    assert point.caffemodel is not None
    scores = forward_scores(deploy, Path(point.caffemodel), test, "prob")
    labels = load_sessions(test).labels
    return float(ranking_metrics(np.asarray(scores), labels, (20,)).recall[20])


# --- summary ---------------------------------------------------------------------------------------


def _spread(values: Sequence[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "not reached"
    text = f"{statistics.median(finite):.3f} [{min(finite):.3f}, {max(finite):.3f}]"
    return text if len(finite) == len(values) else f"{text}, {len(values) - len(finite)} of {len(values)} never"


def _listed(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


def ratios(traces: dict[str, list[Trace]], budget: float) -> dict[str, Any]:
    """The issue's two ratios per seed (paired by seed)."""
    time_ratio, of_budget = [], []
    for a, c in zip(traces["literal"], traces["literal+SH"], strict=True):
        target = a.best_at(budget)
        time_ratio.append(c.reaches(target, budget) / a.reaches(target, budget))
        of_budget.append(c.reaches(target, budget) / budget)
    means = {m: statistics.mean(t.best_at(budget) for t in traces[m]) for m in DRNNGEN_OPTIONS}
    best_option = max(means, key=lambda m: means[m])
    optuna_ratio = [d.best_at(budget) / o.best_at(budget)
                    for d, o in zip(traces[best_option], traces["optuna"], strict=True)]
    half = [d.best_at(budget / 2) / o.best_at(budget / 2)
            for d, o in zip(traces[best_option], traces["optuna"], strict=True)]
    return {"time_ratio": time_ratio, "time_of_budget": of_budget, "best_option": best_option,
            "optuna_ratio": optuna_ratio, "optuna_ratio_half": half}


def markdown(traces: dict[str, list[Trace]], budget: float, figures: dict[str, Any], grid: Sequence[float]) -> str:
    lines = [f"Budget {budget:g} solver seconds per run, seeds {[t.seed for t in traces['literal']]}; "
             f"population {POPULATION}, eta {ETA}, {RUNGS} rungs.", "",
             "Best validation fitness vs cumulative solver seconds (median over seeds [min, max]):", "",
             "| method | " + " | ".join(f"{t:g} s" for t in grid) + " | trainings | wall s | test Recall@20 |",
             "| --- |" + " ---: |" * (len(grid) + 3)]
    for method, runs in traces.items():
        cells = [_spread([r.best_at(t) for r in runs]) for t in grid]
        trainings = statistics.median(len(r.within(budget)) for r in runs)
        wall = statistics.median(r.wall_s for r in runs)
        recall = _spread([r.test_recall20 if r.test_recall20 is not None else math.nan for r in runs])
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {trainings:g} | {wall:.0f} | {recall} |")
    if figures:
        lines += ["", f"- time ratio (solver seconds literal+SH needs to reach literal's final best / those "
                  f"literal needed to reach it): {_spread(figures['time_ratio'])}, per seed "
                  f"{_listed(figures['time_ratio'])} (target <= 0.333)",
                  f"- the same against literal's whole budget B: {_spread(figures['time_of_budget'])}, per seed "
                  f"{_listed(figures['time_of_budget'])}",
                  f"- Optuna ratio (drnngen's best option by mean, {figures['best_option']}, at B / Optuna "
                  f"TPE+SH at B): {_spread(figures['optuna_ratio'])}, per seed {_listed(figures['optuna_ratio'])} "
                  f"(target >= 1); at B/2: {_listed(figures['optuna_ratio_half'])}", ""]
    return "\n".join(lines)


def plot(traces: dict[str, list[Trace]], budget: float, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    grid = [budget * i / 200 for i in range(1, 201)]
    for method, runs in traces.items():
        curves = [[r.best_at(t) for t in grid] for r in runs]
        median = [statistics.median(v for v in col if math.isfinite(v)) if any(map(math.isfinite, col))
                  else math.nan for col in zip(*curves, strict=True)]
        low = [min((v for v in col if math.isfinite(v)), default=math.nan) for col in zip(*curves, strict=True)]
        high = [max((v for v in col if math.isfinite(v)), default=math.nan) for col in zip(*curves, strict=True)]
        (line,) = ax.plot(grid, median, drawstyle="steps-post", label=f"{method} (median of {len(runs)} seeds)")
        ax.fill_between(grid, low, high, step="post", alpha=0.15, color=line.get_color())
    ax.set_xlabel("cumulative Caffe solver time (s)")
    ax.set_ylabel("best validation fitness so far (accuracy + 1/(1+loss))")
    ax.set_title("Tuners at an equal solver-time budget (band: min-max over seeds)")
    ax.legend(loc="lower right")
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    path.write_bytes(png.getvalue())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_tuners", description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=12.0, help="solver seconds per run [12]")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per method [3]")
    parser.add_argument("--iters", type=int, default=270, help="full training budget in iterations [270]")
    parser.add_argument("--sessions", type=int, default=3000, help="synthetic log size [3000]")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    parser.add_argument("--out", type=Path, default=Path("out/bench-tuners"))
    parser.add_argument("--replot", type=Path, metavar="JSON", help="redraw table and plot from a tuners.json")
    args = parser.parse_args(argv or [])  # `python -m benchmarks tuners`: the defaults
    if args.replot is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_results(*load_traces(args.replot), args.out)
        return
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core per training, as the budget assumes
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise SystemExit(f"error: unknown methods {sorted(unknown)} (of {', '.join(METHODS)})")
    args.out.mkdir(parents=True, exist_ok=True)
    traces = run_all(methods, args)
    write_results(traces, args.budget, args.out)


def run_all(methods: Sequence[str], args: argparse.Namespace) -> dict[str, list[Trace]]:
    """Every method at every seed (seed by seed, so a machine's load changes hit all
    methods alike), each final best scored on the test split."""
    traces: dict[str, list[Trace]] = {m: [] for m in methods}
    with tempfile.TemporaryDirectory(prefix="bench-tuners-") as tmp:
        root = Path(tmp)
        data = make_data(root / "dataset", args.sessions)
        for seed in range(1, args.seeds + 1):
            for method in methods:
                start = time.perf_counter()
                trace = (run_optuna(root, data, seed, args.budget, args.iters) if method == "optuna"
                         else run_ga(root, data, method, seed, args.budget, args.iters))
                best = trace.best(args.budget)
                if best is not None and best.caffemodel:
                    trace.test_recall20 = test_recall20(best, data, root / "eval" / f"{method}-{seed}")
                traces[method].append(trace)
                save_traces(traces, args.budget, args.out / "tuners.json")  # a bench cut short keeps them
                print(f"{method} seed {seed}: best {trace.best_at(args.budget):.4f} after "
                      f"{len(trace.within(args.budget))} trainings, test Recall@20 {trace.test_recall20}, "
                      f"{time.perf_counter() - start:.0f} s wall", flush=True)
    return traces


def write_results(traces: dict[str, list[Trace]], budget: float, out: Path) -> None:
    """The table (tuners.md, printed) and the plot (tuners.png) of `traces`."""
    grid = [budget * f for f in (0.1, 0.25, 1 / 3, 0.5, 1.0)]
    complete = {"literal", "literal+SH", "optuna", *DRNNGEN_OPTIONS} <= set(traces)
    table = markdown(traces, budget, ratios(traces, budget) if complete else {}, grid)
    plot(traces, budget, out / "tuners.png")
    (out / "tuners.md").write_text(table)
    print(table)
    print(f"wrote {out / 'tuners.png'}, {out / 'tuners.md'}, {out / 'tuners.json'}")


def save_traces(traces: dict[str, list[Trace]], budget: float, path: Path) -> None:
    """tuners.json, replaced whole (written beside it, then renamed)."""
    doc = {"budget": budget, "traces": {m: [{"method": t.method, "seed": t.seed, "wall_s": t.wall_s,
                                             "test_recall20": t.test_recall20,
                                             "points": [[p.seconds, p.fitness] for p in t.points]} for t in runs]
                                        for m, runs in traces.items()}}
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_text(json.dumps(doc, indent=1))
    os.replace(staged, path)


def load_traces(path: Path) -> tuple[dict[str, list[Trace]], float]:
    """The traces a run saved in tuners.json (to redraw the table and plot: --replot)."""
    doc = json.loads(path.read_text())
    traces = {m: [Trace(t["method"], t["seed"], [Point(sec, fit, None, "") for sec, fit in t["points"]],
                        t["wall_s"], t["test_recall20"]) for t in runs] for m, runs in doc["traces"].items()}
    return traces, float(doc["budget"])


if __name__ == "__main__":
    main(sys.argv[1:])
