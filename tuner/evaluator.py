"""The GA's `evaluate_many`: ledger first (never train twice in a run), then the
shared cache, then training on the executor, each result written the moment
it exists."""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import yaml

from drnngen.codegen.config import to_mapping
from drnngen.codegen.graph import model_outputs
from drnngen.errors import UserError
from drnngen.runner import TrainResult
from drnngen.tuner.cache import ResultCache
from drnngen.tuner.candidate import (
    TRAIN_LOSS_FILE,
    Candidate,
    Setting,
    prepare,
    retry_candidate,
    train_job,
    write_files,
)
from drnngen.tuner.executors import Executor
from drnngen.tuner.fidelity import RUNG, Schedule, Training, successive_halving
from drnngen.tuner.fitness import Outcome, invalid, outcome_of
from drnngen.tuner.gentune import Evaluation, Interrupted
from drnngen.tuner.ledger import Ledger
from drnngen.tuner.order import longest_first, training_cost
from drnngen.tuner.payload import Trainer, run_training
from drnngen.vocabulary import Source, Status, candidate_folder

INVALID_PREFIX = "invalid:"
NAN_RETRY_NOTE = "retried at lr x0.1 after NaN"


class Progress(Protocol):
    """The CLI's progress bar (one per generation)."""

    def start(self, gen: int, total: int) -> None: ...

    def advance(self, done: int = 1) -> None: ...

    def finish(self) -> None: ...


class Silent:
    """No progress shown."""

    def start(self, gen: int, total: int) -> None:
        pass

    def advance(self, done: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


# A genotype codegen refused: its key and its (invalid) outcome.
Refused = tuple[str, Outcome]


class CandidateEvaluator:
    """The GA's `evaluate_many`: ledger → cache → training, results in order."""

    def __init__(self, setting: Setting, ledger: Ledger, cache: ResultCache | None, executor: Executor,
                 run_dir: Path, stop: threading.Event, progress: Progress | None = None,
                 trainer: Trainer | None = None, *, nan_retry: bool = False,
                 on_result: Callable[[], None] = lambda: None, halving: Schedule | None = None) -> None:
        self.setting, self.ledger, self.cache, self.executor = setting, ledger, cache, executor
        self.run_dir, self.stop, self.trainer = run_dir, stop, trainer
        self.progress: Progress = progress or Silent()
        self.nan_retry, self.on_result = nan_retry, on_result
        self.halving = halving  # None: every candidate trains once at the full budget
        self.idle_batches = 0  # consecutive batches that trained nothing (an exhausted space)
        self._prepared: dict[tuple[Any, ...], Candidate | Refused] = {}
        self._served: dict[str, set[str]] = {}  # candidate key -> where its trainings' results came from
        self._cached: set[str] = set()  # candidates whose every rung came from the cache

    def __call__(self, individuals: Sequence[Any]) -> list[Evaluation]:
        items = [self._prepare(ind) for ind in individuals]
        keys = [item.key if isinstance(item, Candidate) else item[0] for item in items]
        results: dict[str, Outcome] = {}
        sources: list[Source] = []
        todo: list[Candidate] = []
        for item, key in zip(items, keys, strict=True):
            if key in results or any(c.key == key for c in todo):
                sources.append(Source.DUPLICATE)
            else:
                sources.append(self._known(item, key, results, todo))
        self._train_all(todo, results)
        # a candidate whose every rung came from the cache was not trained by this run
        sources = [Source.CACHE if k in self._cached and s == Source.TRAINED else s
                   for k, s in zip(keys, sources, strict=True)]
        self.idle_batches = 0 if todo else self.idle_batches + 1
        self.ledger.record_evaluations(
            [(pos, key, src) for pos, (key, src) in enumerate(zip(keys, sources, strict=True))]
        )
        return [Evaluation(results[key].fitness, cached=src != Source.TRAINED, failed=not results[key].ok)
                for key, src in zip(keys, sources, strict=True)]

    def _prepare(self, individual: Any) -> Candidate | Refused:
        genotype = tuple(individual)
        if genotype not in self._prepared:
            try:
                self._prepared[genotype] = prepare(genotype, self.setting)
            except UserError as exc:  # codegen refused it: a failure of this genotype, not of the run
                self._prepared[genotype] = (INVALID_PREFIX + json.dumps(list(genotype)), invalid(str(exc)))
        return self._prepared[genotype]

    def _known(self, item: Candidate | Refused, key: str, results: dict[str, Outcome],
               todo: list[Candidate]) -> Source:
        """Fill `results` from the ledger or the cache, or queue the training; the source."""
        known = self.ledger.outcome(key)
        if known is not None:
            results[key] = known
            return Source.LEDGER
        if not isinstance(item, Candidate):
            results[key] = item[1]
            self.ledger.record_candidate(key, json.loads(key.removeprefix(INVALID_PREFIX)), "", item[1],
                                         random_seed=None, folder=None, source=Source.INVALID)
            return Source.INVALID
        # Under successive halving the cache serves rungs (train_many), not whole
        # candidates: a full training cached by another run would skip the batch's
        # ranking and make the result depend on what the cache holds.
        cached = self.cache.get(key) if self.cache is not None and self.halving is None else None
        if cached is not None:
            results[key] = cached
            self._record(item, cached, Source.CACHE)
            return Source.CACHE
        todo.append(item)
        return Source.TRAINED

    def _train_all(self, todo: list[Candidate], results: dict[str, Outcome]) -> None:
        if self.halving is not None and todo:
            self._halve(todo, self.halving, results)
            return
        self.progress.start(self.ledger.generation, len(todo))
        try:
            diverged = self._train(todo, results)
            if self.nan_retry and diverged:
                # one retry at a tenth of the learning rate, recorded under the candidate's key
                self._train([retry_candidate(c) for c in diverged], results, note=NAN_RETRY_NOTE)
        finally:
            self.progress.finish()
        if any(c.key not in results for c in todo):
            raise Interrupted  # the stop event skipped trainings that had not started

    def _train(self, todo: list[Candidate], results: dict[str, Outcome], note: str | None = None) -> list[Candidate]:
        """Train `todo` on the executor, recording each result; the candidates that diverged."""
        todo = longest_first(todo, lambda c: training_cost(c.config, c.iterations, c.test_iterations),
                             self.executor.workers)
        jobs = []
        for candidate in todo:
            folder = self.folder(candidate.key).resolve()
            write_files(candidate, folder)
            jobs.append(train_job(candidate, folder, self.setting))
        run = functools.partial(run_training, trainer=self.trainer)
        diverged = []
        for index, result in self.executor.imap_unordered(run, jobs, stop=self.stop):
            candidate = todo[index]
            outcome = self._outcome(candidate, result, note)
            if outcome.status == Status.NAN and note is None and self.nan_retry:
                diverged.append(candidate)  # recorded once its retry is back
                continue
            self._record(candidate, outcome, Source.TRAINED)
            self._trained(candidate.key, outcome, results)
        return diverged

    def _trained(self, key: str, outcome: Outcome, results: dict[str, Outcome]) -> None:
        """A training of this run is back and recorded: into the cache, `results` and the progress."""
        if self.cache is not None:
            self.cache.put(key, outcome)
        results[key] = outcome
        self.progress.advance()
        self.on_result()

    def _halve(self, todo: list[Candidate], schedule: Schedule, results: dict[str, Outcome]) -> None:
        """The batch by successive halving (tuner.fidelity). The candidates' rows are
        written once the whole batch is decided: a resume then replays its rungs from the
        ledger and ranks them exactly as before."""
        self.progress.start(self.ledger.generation, schedule.trainings(len(todo), todo[0].iterations))
        try:
            finals = successive_halving(todo, schedule, self.train_many)
        finally:
            self.progress.finish()
        for candidate in todo:
            source = Source.CACHE if self._served.pop(candidate.key, set()) == {Source.CACHE} else Source.TRAINED
            if source == Source.CACHE:
                self._cached.add(candidate.key)
            self._record(candidate, finals[candidate.key], source)
            results[candidate.key] = finals[candidate.key]

    def train_many(self, trainings: Sequence[Training]) -> dict[str, Outcome]:
        """Each training's outcome (key → Outcome): this run's ledger, else the cache,
        else trained on the executor and recorded the moment it is back. Trainings the
        stop event skipped are missing."""
        outcomes: dict[str, Outcome] = {}
        pending: list[Training] = []
        for training in trainings:
            known = self.ledger.training(training.key)
            cached = None if known is not None or self.cache is None else self.cache.get(training.key)
            served = self._served.setdefault(training.owner, set()) if training.kind == RUNG else set()
            if known is not None:
                outcomes[training.key] = known.outcome
                served.add(Source(known.source))
            elif cached is not None:
                self._record_training(training, cached, Source.CACHE)
                outcomes[training.key] = cached
                served.add(Source.CACHE)
            else:
                pending.append(training)
                served.add(Source.TRAINED)
        pending = longest_first(pending, lambda t: training_cost(t.candidate.config, t.stop - t.start,
                                                                 t.candidate.test_iterations),
                                self.executor.workers)
        jobs = []
        for training in pending:
            folder = self.folder(training.candidate.key).resolve()
            write_files(training.candidate, folder)
            jobs.append(training.job(folder, self.setting))
        run = functools.partial(run_training, trainer=self.trainer)
        for index, result in self.executor.imap_unordered(run, jobs, stop=self.stop):
            training = pending[index]
            if training.kind == RUNG and result.train_losses:
                self._extend_losses(training, result)
            outcome = outcome_of(result, model_outputs(training.candidate.config)[1])
            self._record_training(training, outcome, Source.TRAINED)
            self._trained(training.key, outcome, outcomes)
        return outcomes

    def _extend_losses(self, training: Training, result: TrainResult) -> None:
        """The report's train-loss curve of a candidate over its rungs, counted from scratch."""
        path = self.folder(training.candidate.key) / TRAIN_LOSS_FILE
        before = json.loads(path.read_text()) if training.start > 0 and path.is_file() else []
        kept = [p for p in before if p[0] <= training.start]
        path.write_text(json.dumps(kept + [[int(i) + training.start, float(v)] for i, v in result.train_losses]))

    def _record_training(self, training: Training, outcome: Outcome, source: Source) -> None:
        self.ledger.record_training(training.key, training.owner, training.kind,
                                    training.rung if training.kind == RUNG else None, training.stop,
                                    training.candidate.random_seed, outcome, source)

    def _outcome(self, candidate: Candidate, result: TrainResult, note: str | None) -> Outcome:
        """The ledger's outcome of a training; its train losses go beside it for the report."""
        if result.train_losses:
            (self.folder(candidate.key) / TRAIN_LOSS_FILE).write_text(
                json.dumps([[int(i), float(v)] for i, v in result.train_losses]))
        outcome = outcome_of(result, model_outputs(candidate.config)[1])
        return outcome if note is None else dataclasses.replace(outcome, note=note)

    def folder(self, key: str) -> Path:
        return candidate_folder(self.run_dir, key)

    def _record(self, candidate: Candidate, outcome: Outcome, source: Source) -> None:
        self.ledger.record_candidate(
            candidate.key, candidate.genotype, yaml.safe_dump(to_mapping(candidate.config), sort_keys=False),
            outcome, random_seed=candidate.random_seed, folder=self.folder(candidate.key), source=source,
        )

