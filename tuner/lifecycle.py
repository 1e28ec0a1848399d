"""A tuning run's life: start or resume, run the GA loop over the evaluation
service, mark the run's status.

    run folder/
        ledger.sqlite          every candidate, generation, RNG state (tuner.ledger)
        candidates/<key16>/    net/solver/deploy prototxt, config.yaml, caffe.log, model.caffemodel
        best/                  what `drnngen best` exports (default folder)
"""

from __future__ import annotations

import fcntl
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from drnngen.codegen.config import uses_fixed_maps
from drnngen.data.windows import INDEX_FILE
from drnngen.errors import EnvironmentProblem, UserError
from drnngen.runner import TrainResult
from drnngen.runner.jobs import check_mode
from drnngen.tuner.cache import ResultCache
from drnngen.tuner.candidate import Budget, Setting, TuneData, prepare, retry_candidate
from drnngen.tuner.codec import individual_class
from drnngen.tuner.evaluator import NAN_RETRY_NOTE, CandidateEvaluator, Progress
from drnngen.tuner.executors import Executor, LocalExecutor
from drnngen.tuner.fidelity import FIDELITIES, SUCCESSIVE_HALVING, Schedule, rescorings
from drnngen.tuner.gentune import RngState, TuneResult, gentune, strategy_named
from drnngen.tuner.ledger import LEDGER_FILE, CandidateRow, Ledger, RunStatus
from drnngen.tuner.operators import make_toolbox
from drnngen.tuner.params import Resources, TuneParams
from drnngen.tuner.payload import Trainer
from drnngen.vocabulary import Status

IDLE_BATCHES = 20  # evaluation batches in a row with nothing new to train: the space is exhausted
ELAPSED = "elapsed_s"  # ledger meta: the run's wall time over all its sessions (the budget's clock)


@dataclass
class RunSummary:
    """What `tune` returns: the loop's result and the ledger's view of the run."""

    run_dir: Path
    result: TuneResult
    best: CandidateRow | None
    evaluated: int
    params: TuneParams
    records: list[dict[str, Any]] = field(default_factory=list)
    budget_spent: bool = False  # stopped by --time-budget (a finished run, not an interrupted one)


class RunClock:
    """The run's wall time over all its sessions (so a resume gets what is left
    of --time-budget), kept in the ledger."""

    def __init__(self, ledger: Ledger, budget_s: float | None) -> None:
        self.ledger, self.budget_s = ledger, budget_s
        self._before = float(ledger.meta(ELAPSED) or 0.0)
        self._started = time.time()

    @property
    def elapsed(self) -> float:
        return self._before + time.time() - self._started

    @property
    def deadline(self) -> float | None:
        """Unix time at which the budget is spent (None: no budget)."""
        return None if self.budget_s is None else self._started + self.budget_s - self._before

    def expired(self) -> bool:
        deadline = self.deadline
        return deadline is not None and time.time() >= deadline

    def save(self) -> None:
        self.ledger.set_meta(ELAPSED, self.elapsed)


LOCK_FILE = ".drnngen-lock"  # held (flock) by the one process tuning a run folder


@contextmanager
def run_lock(run_dir: Path, create: bool = False) -> Iterator[None]:
    """Hold RUN's lock while tuning it: a second `tune -o RUN` or `--resume RUN`
    while one runs would write the same ledger twice. The lock is the kernel's
    (flock), so a crashed or killed run leaves none behind."""
    if create:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{run_dir}: cannot create the run folder ({exc.strerror})") from None
    path = run_dir / LOCK_FILE
    try:
        handle = path.open("a+")
    except OSError as exc:
        raise UserError(f"{run_dir}: cannot lock the run folder ({exc.strerror})") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UserError(f"{run_dir}: is being tuned right now ({holder}); wait for it to end or stop it, "
                            "then --resume") from None
        try:  # who holds it, for the next one's message; best effort (a full disk: the flock holds all the same)
            os.ftruncate(handle.fileno(), 0)
            os.pwrite(handle.fileno(), f"pid {os.getpid()}\n".encode(), 0)  # unbuffered: close() cannot fail
        except OSError:
            pass
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _Halt(threading.Event):
    """Set once the user stops or the time budget is spent: what the evaluator, the
    executors and the loop obey (trainings in flight are cut by their stop_at).
    Reads both at every look, so a stop is seen at once."""

    def __init__(self, stop: threading.Event, clock: RunClock) -> None:
        super().__init__()
        self._stop, self._clock = stop, clock

    def is_set(self) -> bool:
        return super().is_set() or self._stop.is_set() or self._clock.expired()

    def wait(self, timeout: float | None = None) -> bool:
        end = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = 0.05 if end is None else min(0.05, end - time.monotonic())
            if left <= 0:
                return False
            self._stop.wait(left)
        return True


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
            if not (run_dir / LEDGER_FILE).is_file():
                Ledger.open(run_dir).close()  # its one-line error: not a run folder
            stack.enter_context(run_lock(run_dir))
            ledger = stack.enter_context(closing(Ledger.open(run_dir)))
            params = TuneParams.from_json(ledger.params)
            if generations is not None and generations != params.generations:
                params = TuneParams.from_json({**asdict(params), "generations": generations})
                ledger.set_params(asdict(params))
        # The workers before a new run folder: an unreachable Dask scheduler leaves none behind.
        pool = executor or stack.enter_context(_executor(resources, params.mode))
        if not resume:
            if (run_dir / LEDGER_FILE).exists():
                Ledger.create(run_dir, asdict(params))  # its one-line error: already holds a run
            stack.enter_context(run_lock(run_dir, create=True))
            ledger = stack.enter_context(closing(Ledger.create(run_dir, asdict(params))))
        return _run(run_dir, ledger, params, resources, stop or threading.Event(), progress, on_generation,
                    trainer, pool)


def _run(run_dir: Path, ledger: Ledger, params: TuneParams, resources: Resources, stop: threading.Event,
         progress: Progress | None, on_generation: Callable[[dict[str, Any]], None], trainer: Trainer | None,
         executor: Executor) -> RunSummary:
    space = params.search_space()
    clock = RunClock(ledger, params.time_budget_s)
    setting = Setting(params.base_config(), space, TuneData(Path(params.data)),
                      Budget(params.iterations, params.epochs), params.seed, check_mode(params.mode),
                      params.timeout_s, validate_every=params.validate_every, patience=params.patience,
                      stop_at=clock.deadline, train_seconds=params.train_seconds)
    _check_dataset(setting)
    strategy = strategy_named(params.strategy)
    rng = random.Random(params.seed)
    toolbox = make_toolbox(space, rng)
    checkpoint = ledger.checkpoint(individual_class())
    cache = ResultCache(resources.cache_dir) if resources.cache_dir is not None else None
    ledger.set_status(RunStatus.RUNNING)
    halt = _Halt(stop, clock)
    try:
        evaluator = CandidateEvaluator(setting, ledger, cache, executor, run_dir, halt, progress, trainer,
                                       nan_retry=params.nan_retry, on_result=clock.save,
                                       halving=_schedule(params))
        result = gentune(toolbox, rng, generations=params.generations, population_size=params.population,
                         pc=params.pc, pm=params.pm, evaluate_many=evaluator, strategy=strategy,
                         journal=_Reporting(ledger, on_generation),
                         stop=lambda: halt.is_set() or evaluator.idle_batches >= IDLE_BATCHES, start=checkpoint)
        if params.rescore and not result.interrupted and not halt.is_set():
            result.interrupted = not _rescore(ledger, setting, evaluator, params)
    finally:
        clock.save()
        if cache is not None:
            cache.close()
    budget_spent = clock.expired() and not stop.is_set()
    ledger.set_status(RunStatus.INTERRUPTED if result.interrupted and not budget_spent else RunStatus.FINISHED)
    return RunSummary(run_dir, result, ledger.best(), len(ledger.candidates()), params, ledger.records(),
                      budget_spent)


def _schedule(params: TuneParams) -> Schedule | None:
    """Successive halving's schedule, or None for one full-budget training per candidate."""
    if params.fidelity not in FIDELITIES:
        raise UserError(f"fidelity: unknown {params.fidelity!r} (one of: {', '.join(FIDELITIES)})")
    return Schedule(params.eta, params.rungs) if params.fidelity == SUCCESSIVE_HALVING else None


def _rescore(ledger: Ledger, setting: Setting, evaluator: CandidateEvaluator, params: TuneParams) -> bool:
    """--rescore: the top candidates retrained at `params.rescore` other Caffe seeds
    (the ledger keeps every score; `Ledger.best` then ranks by their mean). False
    when stopped first (a resume reads back the rescores that finished)."""
    ok = [row for row in ledger.candidates() if row.outcome.ok]
    top = sorted(ok, key=lambda row: -row.outcome.fitness)[: params.rescore_top]
    trainings = []
    for row in top:
        candidate = prepare(row.genotype, setting)
        if row.outcome.note == NAN_RETRY_NOTE:
            candidate = retry_candidate(candidate)  # the learning rate it trained at
        trainings += rescorings(candidate, setting, params.rescore)
    ledger.generation = -1  # after the last generation
    outcomes = evaluator.train_many(trainings)
    return all(t.key in outcomes for t in trainings)


def _check_dataset(setting: Setting) -> None:
    """Refuse up front a dataset no training can use (no train or validation
    samples, a single item class), and one the run would have to write but cannot: a
    window of the space not derived yet, or the repeat path's map. Otherwise every
    such candidate would fail as "invalid" and steer the search away from it."""
    root = setting.data.path
    m = setting.data.manifest
    if m.train_samples == 0 or m.val_samples == 0:
        raise UserError(f"--data {root}: {m.train_samples} train and {m.val_samples} validation samples; "
                        "tuning needs both (a larger log, or another --split)")
    if m.items < 2:
        raise UserError(f"--data {root}: N={m.items} item class; there is nothing to rank")
    if os.access(root, os.W_OK):
        return
    states = setting.space.states
    missing = [w for w in range(states.low, states.high + 1) if not (root / f"w{w}" / INDEX_FILE).is_file()]
    needs_map = uses_fixed_maps(setting.base) or any(setting.space.repeat)
    if missing or needs_map:
        what = f"the windows w={','.join(map(str, missing))}" if missing else "the fixed page->item maps (R, Q)"
        raise UserError(f"--data {root}: read-only, but this run must write {what} there; "
                        "make it writable, or run on a writable copy")


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
