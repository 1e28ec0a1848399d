"""A tuning run's life: start or resume, run the GA loop over the evaluation
service, mark the run's status.

    run folder/
        ledger.sqlite          every candidate, generation, RNG state (tuner.ledger)
        candidates/<key16>/    net/solver/deploy prototxt, config.yaml, caffe.log, model.caffemodel
        best/                  what `drnngen best` exports (default folder)
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack, closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from drnngen.errors import EnvironmentProblem
from drnngen.runner import TrainResult
from drnngen.runner.jobs import check_mode
from drnngen.tuner.cache import ResultCache
from drnngen.tuner.candidate import Budget, Setting, TuneData
from drnngen.tuner.codec import individual_class
from drnngen.tuner.evaluator import CandidateEvaluator, Progress
from drnngen.tuner.executors import Executor, LocalExecutor
from drnngen.tuner.gentune import RngState, TuneResult, gentune, strategy_named
from drnngen.tuner.ledger import CandidateRow, Ledger, RunStatus
from drnngen.tuner.operators import make_toolbox
from drnngen.tuner.params import Resources, TuneParams
from drnngen.tuner.payload import Trainer
from drnngen.vocabulary import Status


@dataclass
class RunSummary:
    """What `tune` returns: the loop's result and the ledger's view of the run."""

    run_dir: Path
    result: TuneResult
    best: CandidateRow | None
    evaluated: int
    params: TuneParams
    records: list[dict[str, Any]] = field(default_factory=list)


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
                ledger.set_params(asdict(params))
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
    setting = Setting(params.base_config(), space, TuneData(Path(params.data)),
                      Budget(params.iterations, params.epochs), params.seed, check_mode(params.mode),
                      params.timeout_s)
    strategy = strategy_named(params.strategy)
    rng = random.Random(params.seed)
    toolbox = make_toolbox(space, rng)
    checkpoint = ledger.checkpoint(individual_class())
    cache = ResultCache(resources.cache_dir) if resources.cache_dir is not None else None
    ledger.set_status(RunStatus.RUNNING)
    try:
        evaluator = CandidateEvaluator(setting, ledger, cache, executor, run_dir, stop, progress, trainer)
        result = gentune(toolbox, rng, generations=params.generations, population_size=params.population,
                         pc=params.pc, pm=params.pm, evaluate_many=evaluator, strategy=strategy,
                         journal=_Reporting(ledger, on_generation), stop=stop.is_set, start=checkpoint)
    finally:
        if cache is not None:
            cache.close()
    ledger.set_status(RunStatus.INTERRUPTED if result.interrupted else RunStatus.FINISHED)
    return RunSummary(run_dir, result, ledger.best(), len(ledger.candidates()), params, ledger.records())


def _executor(resources: Resources, mode: str) -> Executor:
    """The local pool, or the Dask cluster at `resources.scheduler`."""
    if resources.scheduler is None:
        return LocalExecutor(resources.workers, resources.gpus)
    try:
        from drnngen.tuner.dask_executor import DaskExecutor
    except ImportError as exc:
        raise EnvironmentProblem(f"--scheduler needs Dask ({exc}): pip install 'drnngen[dask]'") from None
    return DaskExecutor(resources.scheduler, gpu=mode == "gpu", on_lost=_lost)


def _lost(message: str) -> TrainResult:
    """A training whose Dask workers kept dying under it (out of memory, say): recorded
    in the run (never retrained by a resume), not in the shared cache, since a dying
    worker may take a task it merely held down with it."""
    return TrainResult(Status.LOST, error=message)
