"""A tuning run: its folder, its evaluation service, resume, and its best candidate.

    run folder/
        ledger.sqlite          every candidate, generation, RNG state (tuner.ledger)
        candidates/<key16>/    net/solver/deploy prototxt, config.yaml, caffe.log, model.caffemodel
        best/                  what `drnngen best` exports (default folder)

`tune` starts or resumes a run; `CandidateEvaluator` is the `evaluate_many`
the GA loop gets: ledger first (never train twice in a run), then the shared
cache, then training on the executor, each result written the moment it exists.
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack, closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from codegen.build import generate, write
from codegen.config import DRNNConfig, parse_config, to_mapping
from drnngen.errors import EnvironmentProblem, UserError
from tuner.cache import ResultCache
from tuner.codec import describe, individual_class
from tuner.executors import Executor, LocalExecutor, Slot
from tuner.fitness import (
    CONFIG_FILE,
    MODEL_FILE,
    WORST_FITNESS,
    Budget,
    Candidate,
    Dataset,
    Outcome,
    Setting,
    Trainer,
    invalid,
    prepare,
    train_candidate,
)
from tuner.gentune import Evaluation, Interrupted, RngState, TuneResult, gentune, strategy_named
from tuner.ledger import CandidateRow, Ledger
from tuner.operators import make_toolbox
from tuner.space import SearchSpace, parse_space

# A Dask task whose workers kept dying: recorded in the run (never retrained by a resume),
# not in the shared cache, since a dying worker may take a task it merely held down with it.
LOST = "lost"


@dataclass(frozen=True)
class TuneParams:
    """What decides a run's result. Stored in the ledger; a resume reads it back."""

    data: str
    generations: int
    population: int
    pc: float
    pm: float
    strategy: str
    seed: int
    iterations: int | None
    epochs: float | None
    mode: str
    timeout_s: float | None
    base: dict[str, Any]  # codegen.config.to_mapping of the base config
    space: dict[str, Any]  # tuner.space.space_mapping

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TuneParams:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    def base_config(self) -> DRNNConfig:
        return parse_config(self.base)

    def search_space(self) -> SearchSpace:
        return parse_space(self.space)


@dataclass(frozen=True)
class Resources:
    """How a run executes; may differ between a run and its resume."""

    workers: int = 1
    gpus: tuple[int, ...] = ()
    cache_dir: Path | None = None
    scheduler: str | None = None  # a Dask scheduler's address: evaluate there instead of locally


class Progress(Protocol):
    """The CLI's progress bar (one per generation)."""

    def start(self, gen: int, total: int) -> None: ...

    def advance(self, done: int = 1) -> None: ...

    def finish(self) -> None: ...


class _Silent:
    def start(self, gen: int, total: int) -> None:
        pass

    def advance(self, done: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass
class RunSummary:
    """What `tune` returns: the loop's result and the ledger's view of the run."""

    run_dir: Path
    result: TuneResult
    best: CandidateRow | None
    evaluated: int
    params: TuneParams
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Training:
    """One training as the executor ships it: values only, nothing of the client
    (ledger, cache), so it pickles to a Dask worker. `folder` is absolute."""

    candidate: Candidate
    folder: Path
    setting: Setting
    trainer: Trainer | None = None


def run_training(training: Training, slot: Slot) -> Outcome:
    """What a worker slot runs (a module-level function: it pickles by name)."""
    _check_reachable(training)
    return train_candidate(training.candidate, training.folder, slot, training.setting, training.trainer)


def _check_reachable(training: Training) -> None:
    """EnvironmentProblem when this machine cannot see the data or the run folder.

    A Dask worker without the shared file system would otherwise have every
    training fail inside Caffe and be recorded with fitness 0; this stops the
    run instead, with the reason, and records nothing.
    """
    data = training.candidate.config.data
    run_dir = training.folder.parent.parent  # RUN/candidates/<key16>: the client created RUN
    for path in (Path(data.train_source), Path(data.test_source), run_dir):
        if not path.exists():
            raise EnvironmentProblem(
                f"{socket.gethostname()}: {path} is not there; the dataset and the run folder must be at "
                "the same absolute path on every Dask worker (a shared file system)")


class CandidateEvaluator:
    """The GA's `evaluate_many`: ledger → cache → training, results in order."""

    def __init__(self, setting: Setting, ledger: Ledger, cache: ResultCache | None, executor: Executor,
                 run_dir: Path, stop: threading.Event, progress: Progress | None = None,
                 trainer: Trainer | None = None) -> None:
        self.setting, self.ledger, self.cache, self.executor = setting, ledger, cache, executor
        self.run_dir, self.stop, self.trainer = run_dir, stop, trainer
        self.progress: Progress = progress or _Silent()
        self._prepared: dict[tuple[Any, ...], Candidate | tuple[str, Outcome]] = {}

    def __call__(self, individuals: Sequence[Any]) -> list[Evaluation]:
        items = [self._prepare(ind) for ind in individuals]
        keys = [item.key if isinstance(item, Candidate) else item[0] for item in items]
        results: dict[str, Outcome] = {}
        sources: list[str] = []
        todo: list[Candidate] = []
        for item, key in zip(items, keys, strict=True):
            if key in results or any(c.key == key for c in todo):
                sources.append("duplicate")
            else:
                sources.append(self._known(item, key, results, todo))
        self._train_all(todo, results)
        self.ledger.record_evaluations(
            [(pos, key, src) for pos, (key, src) in enumerate(zip(keys, sources, strict=True))]
        )
        return [Evaluation(results[key].fitness, cached=src != "trained", failed=not results[key].ok)
                for key, src in zip(keys, sources, strict=True)]

    def _prepare(self, individual: Any) -> Candidate | tuple[str, Outcome]:
        genotype = tuple(individual)
        if genotype not in self._prepared:
            try:
                self._prepared[genotype] = prepare(genotype, self.setting)
            except UserError as exc:  # codegen refused it: a failure of this genotype, not of the run
                key = "invalid:" + json.dumps(list(genotype))
                self._prepared[genotype] = (key, invalid(str(exc)))
        return self._prepared[genotype]

    def _known(self, item: Candidate | tuple[str, Outcome], key: str, results: dict[str, Outcome],
               todo: list[Candidate]) -> str:
        """Fill `results` from the ledger or the cache, or queue the training; the source."""
        known = self.ledger.outcome(key)
        if known is not None:
            results[key] = known
            return "ledger"
        if not isinstance(item, Candidate):
            results[key] = item[1]
            self.ledger.record_candidate(key, json.loads(key.removeprefix("invalid:")), "", item[1],
                                         random_seed=None, folder=None, source="invalid")
            return "invalid"
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            results[key] = cached
            self._record(item, cached, "cache")
            return "cache"
        todo.append(item)
        return "trained"

    def _train_all(self, todo: list[Candidate], results: dict[str, Outcome]) -> None:
        self.progress.start(self.ledger.generation, len(todo))
        try:
            trainings = [Training(c, self.folder(c.key).resolve(), self.setting, self.trainer) for c in todo]
            for index, outcome in self.executor.imap_unordered(run_training, trainings, stop=self.stop):
                candidate = todo[index]
                self._record(candidate, outcome, "trained")
                if self.cache is not None and outcome.status != LOST:
                    self.cache.put(candidate.key, outcome)
                results[candidate.key] = outcome
                self.progress.advance()
        finally:
            self.progress.finish()
        if any(c.key not in results for c in todo):
            raise Interrupted  # the stop event skipped trainings that had not started

    def folder(self, key: str) -> Path:
        return self.run_dir / "candidates" / key[:16]

    def _record(self, candidate: Candidate, outcome: Outcome, source: str) -> None:
        self.ledger.record_candidate(
            candidate.key, candidate.genotype, yaml.safe_dump(to_mapping(candidate.config), sort_keys=False),
            outcome, random_seed=candidate.random_seed, folder=self.folder(candidate.key), source=source,
        )


class _Reporting:
    """The ledger as the loop's journal, plus a callback per finished generation."""

    def __init__(self, ledger: Ledger, on_generation: Callable[[dict[str, Any]], None]) -> None:
        self.ledger, self.on_generation = ledger, on_generation

    def generation_started(self, gen: int, population: Sequence[Any], rng_state: RngState) -> None:
        self.ledger.generation_started(gen, population, rng_state)

    def generation_finished(self, gen: int, population: Sequence[Any], rng_state: RngState,
                            record: dict[str, Any], best: Any) -> None:
        self.ledger.generation_finished(gen, population, rng_state, record, best)
        self.on_generation(record)


def tune(
    run_dir: Path,
    params: TuneParams | None,
    resources: Resources,
    *,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    on_generation: Callable[[dict[str, Any]], None] = lambda record: None,
    trainer: Trainer | None = None,
    executor: Executor | None = None,
    generations: int | None = None,
) -> RunSummary:
    """Start a run (`params` given) or resume the one in `run_dir` (`params` None;
    `generations` may then extend it). Returns when the run is done or stopped."""
    run_dir = Path(run_dir)
    resume = params is None
    with ExitStack() as stack:
        if params is None:
            ledger = stack.enter_context(closing(Ledger.open(run_dir)))
            params = TuneParams.from_json(ledger.params)
            if generations is not None and generations != params.generations:
                params = TuneParams.from_json({**asdict(params), "generations": generations})
                ledger.set_meta("params", asdict(params))
        # The workers before a new run folder: an unreachable Dask scheduler leaves none behind.
        pool = executor or stack.enter_context(_executor(resources, params.mode))
        if not resume:
            ledger = stack.enter_context(closing(Ledger.create(run_dir, asdict(params))))
        return _run(run_dir, ledger, params, resources, stop or threading.Event(), progress, on_generation,
                    trainer, pool)


def _run(run_dir: Path, ledger: Ledger, params: TuneParams, resources: Resources, stop: threading.Event,
         progress: Progress | None, on_generation: Callable[[dict[str, Any]], None], trainer: Trainer | None,
         executor: Executor) -> RunSummary:
    space = params.search_space()
    setting = Setting(params.base_config(), space, Dataset(Path(params.data)),
                      Budget(params.iterations, params.epochs), params.seed, params.mode, params.timeout_s)
    strategy = strategy_named(params.strategy)
    rng = random.Random(params.seed)
    toolbox = make_toolbox(space, rng)
    cls = individual_class()
    checkpoint = ledger.checkpoint(cls)
    cache = ResultCache(resources.cache_dir) if resources.cache_dir is not None else None
    ledger.set_meta("status", "running")
    try:
        evaluator = CandidateEvaluator(setting, ledger, cache, executor, run_dir, stop, progress, trainer)
        result = gentune(toolbox, rng, generations=params.generations, population_size=params.population,
                         pc=params.pc, pm=params.pm, evaluate_many=evaluator, strategy=strategy,
                         journal=_Reporting(ledger, on_generation), stop=stop.is_set, start=checkpoint)
    finally:
        if cache is not None:
            cache.close()
    ledger.set_meta("status", "interrupted" if result.interrupted else "finished")
    return RunSummary(run_dir, result, ledger.best(), len(ledger.candidates()), params, ledger.records())


def _executor(resources: Resources, mode: str) -> Executor:
    """The local pool, or the Dask cluster at `resources.scheduler`."""
    if resources.scheduler is None:
        return LocalExecutor(resources.workers, resources.gpus)
    try:
        from tuner.dask_executor import DaskExecutor
    except ImportError as exc:
        raise EnvironmentProblem(f"--scheduler needs Dask ({exc}): pip install 'drnngen[dask]'") from None
    return DaskExecutor(resources.scheduler, gpu=mode == "gpu", on_lost=_lost)


def _lost(message: str) -> Outcome:
    """A candidate whose Dask workers kept dying under it (out of memory, say)."""
    return Outcome(LOST, WORST_FITNESS, error=message)


# --- the best candidate --------------------------------------------------------------


def best_candidate(run_dir: Path) -> tuple[CandidateRow, TuneParams]:
    """The run's fittest successful candidate, or UserError when there is none."""
    ledger = Ledger.open(Path(run_dir))
    try:
        best, params = ledger.best(), TuneParams.from_json(ledger.params)
    finally:
        ledger.close()
    if best is None:
        raise UserError(f"{run_dir}: no candidate has trained successfully yet")
    return best, params


def export_best(run_dir: Path, out_dir: Path) -> tuple[CandidateRow, list[Path]]:
    """config.yaml, net/solver/deploy prototxt, model.caffemodel and best.json of
    the best candidate, into `out_dir`."""
    best, params = best_candidate(run_dir)
    cfg = parse_config(yaml.safe_load(best.config))
    model = best.outcome.caffemodel
    if model is None or not Path(model).is_file():
        raise UserError(f"{run_dir}: the best candidate's weights {model} are gone")
    summary = {
        "key": best.key, "genotype": best.genotype,
        "genotype_text": describe(best.genotype, params.search_space()),
        **best.outcome.to_dict(), "random_seed": best.random_seed,
    }
    written = write({**generate(cfg, source=CONFIG_FILE), CONFIG_FILE: best.config,
                     "best.json": json.dumps(summary, indent=2) + "\n"}, out_dir)
    target = out_dir / MODEL_FILE
    shutil.copyfile(model, target)
    return best, [*written, target]
