"""The run ledger: `ledger.sqlite` in the run folder, the record a run resumes from.

Every write is one transaction, made the moment its fact exists: a candidate
right after its evaluation, a generation's start (population and RNG state)
before its first random draw, its end (population, logbook record, best, RNG
state) after its last evaluation. A crash or `kill -9` therefore loses at most
the trainings in flight. Resuming replays the unfinished generation from its
recorded start; its operators draw the same r-values from the same RNG state,
and every candidate already in the ledger is read back instead of trained,
so a resumed run ends where the uninterrupted one would have.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from drnngen.errors import UserError
from drnngen.tuner.fitness import Outcome
from drnngen.tuner.gentune import Checkpoint, RngState
from drnngen.vocabulary import Source

LEDGER_FILE = "ledger.sqlite"
SCHEMA_VERSION = 3
# Columns schema 2 added to `candidates`; a schema-1 ledger gains them (NULL) when opened.
_V2_COLUMNS = (("best_iteration", "INTEGER"), ("stop_reason", "TEXT"), ("validations", "TEXT"), ("note", "TEXT"))


class RunStatus(str, Enum):
    """meta.status: where a run stands."""

    RUNNING = "running"  # also what a crashed run says: --resume continues it
    INTERRUPTED = "interrupted"
    FINISHED = "finished"


_TRAININGS_TABLE = """
CREATE TABLE IF NOT EXISTS trainings (     -- schema 3: the rungs of successive halving and --rescore's seeds
    key          TEXT PRIMARY KEY,         -- the training's own key (tuner.fidelity)
    candidate    TEXT NOT NULL,            -- the candidate (candidates.key) it trained or rescored
    kind         TEXT NOT NULL,            -- rung | rescore
    rung         INTEGER,                  -- 0 = the first rung; null for a rescore
    budget       INTEGER NOT NULL,         -- iterations from scratch at its end
    random_seed  INTEGER,                  -- Caffe's
    fitness      REAL NOT NULL,
    solver_seconds REAL NOT NULL,
    outcome      TEXT NOT NULL,            -- Outcome as JSON; its caffemodel relative to the run folder
    source       TEXT NOT NULL,            -- trained | cache
    generation   INTEGER NOT NULL,         -- the generation that asked for it (-1: after the last)
    evaluated_at REAL NOT NULL,
    seq          INTEGER NOT NULL          -- order of evaluation in this run
);
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (          -- run parameters and state, one JSON value per key
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS candidates (    -- every distinct network this run evaluated
    key            TEXT PRIMARY KEY,       -- canonical hash: net + solver (seed included) + data
    genotype       TEXT NOT NULL,          -- JSON chromosome [w, l, h, a_1..a_l, E_1..E_l, ...]
    config         TEXT NOT NULL,          -- the candidate's full config, YAML
    status         TEXT NOT NULL,          -- vocabulary.Status: ok|failed|timeout|nan|invalid|lost|killed
    fitness        REAL NOT NULL,          -- accuracy + 1/(1+loss); 0 when not ok
    accuracy       REAL,                   -- top-1, last state, validation split
    loss           REAL,                   -- last state's loss, validation split
    metrics        TEXT NOT NULL,          -- JSON: every accuracy blob (top-1, top-K)
    iterations     INTEGER NOT NULL,       -- where training stopped
    random_seed    INTEGER,                -- Caffe's, derived from --seed and the network
    solver_seconds REAL NOT NULL,          -- time inside solver.step
    wall_seconds   REAL NOT NULL,          -- whole evaluation: files, child process, test
    error          TEXT,                   -- Caffe's own message when not ok
    folder         TEXT,                   -- candidate folder (prototxt, config, log), relative to the run folder
    caffemodel     TEXT,                   -- trained weights: relative (in the run folder) or absolute (cache)
    source         TEXT NOT NULL,          -- trained | cache (trained by an earlier run) | invalid
    generation     INTEGER NOT NULL,       -- first generation that asked for it
    evaluated_at   REAL NOT NULL,
    seq            INTEGER NOT NULL,       -- order of first evaluation in this run
    best_iteration INTEGER,                -- iteration of the kept snapshot (the best validation point)
    stop_reason    TEXT,                   -- max_iter | patience | deadline | nan
    validations    TEXT,                   -- JSON [{iteration, loss, accuracy: {blob: value}}]
    note           TEXT                    -- what the tuner changed to get it (a NaN retry's lower lr)
);
CREATE TABLE IF NOT EXISTS evaluations (   -- every evaluation the loop asked for, in order
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    generation INTEGER NOT NULL,
    position   INTEGER NOT NULL,           -- index in the generation's batch
    key        TEXT NOT NULL REFERENCES candidates(key),
    source     TEXT NOT NULL               -- drnngen.vocabulary.Source: trained | cache | ledger | duplicate | invalid
);
CREATE TABLE IF NOT EXISTS generations (   -- 0 = the initial random population
    generation       INTEGER PRIMARY KEY,
    rng_start        TEXT NOT NULL,        -- random.Random.getstate() before the generation, JSON
    population_start TEXT NOT NULL,        -- JSON [{genotype, fitness}], before
    best_start       TEXT,                 -- JSON {genotype, fitness} best before, or null
    started_at       REAL NOT NULL,
    rng_end          TEXT,                 -- the rest is null until the generation finished
    population_end   TEXT,                 -- JSON [{genotype, fitness, key}], after
    record           TEXT,                 -- logbook record, JSON
    finished_at      REAL
);
""" + _TRAININGS_TABLE


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _reads(method: Callable[Concatenate[Ledger, _P], _R]) -> Callable[Concatenate[Ledger, _P], _R]:
    """A read of the ledger's rows: a tampered or damaged value (bad JSON, an unknown
    status, text where a number belongs, bytes that are not UTF-8) is one line."""
    def reading(self: Ledger, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except UserError:
            raise
        except (sqlite3.Error, ValueError, TypeError, KeyError, IndexError) as exc:
            message = f"{self.path}: a damaged ledger ({type(exc).__name__}: {str(exc)[:160]}); start the run again"
            raise UserError(message) from None
    functools.update_wrapper(reading, method)
    return reading


@dataclass(frozen=True)
class CandidateRow:
    """One row of `candidates`, as `drnngen best` and the tests read it."""

    key: str
    genotype: list[Any]
    config: str
    outcome: Outcome
    random_seed: int | None
    folder: str | None
    source: str
    generation: int


@dataclass(frozen=True)
class TrainingRow:
    """One row of `trainings`: a rung of successive halving or a rescore."""

    key: str
    candidate: str
    kind: str
    rung: int | None
    budget: int
    random_seed: int | None
    outcome: Outcome
    source: str
    generation: int


class Ledger:
    """The run's SQLite record; also the loop's `Journal`."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self.generation = 0
        self._rungs = True  # False: a schema-2 ledger opened read-only (no `trainings` table)

    # --- opening ---------------------------------------------------------------

    @classmethod
    def create(cls, run_dir: Path, params: dict[str, Any]) -> Ledger:
        """A new ledger in a new (or empty) run folder."""
        path = Path(run_dir) / LEDGER_FILE
        if path.exists():
            raise UserError(f"{run_dir}: already holds a run; continue it with --resume {run_dir}")
        try:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{run_dir}: cannot create the run folder ({exc.strerror})") from None
        # Built complete under a temporary name, then renamed into place: a full disk
        # or a read-only folder leaves no ledger at all (never a 0-byte one that neither
        # a new run nor --resume can get past).
        meta = {"schema_version": SCHEMA_VERSION, "params": params, "status": RunStatus.RUNNING.value,
                "created_at": time.time()}
        fd, name = _temp_beside(path)
        os.close(fd)
        try:
            db = sqlite3.connect(name, isolation_level=None)
            try:
                db.executescript(SCHEMA)
                db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                               [(k, json.dumps(v)) for k, v in meta.items()])
            finally:
                db.close()
            os.replace(name, path)
        except (OSError, sqlite3.Error) as exc:
            Path(name).unlink(missing_ok=True)
            raise UserError(f"{run_dir}: cannot create the ledger ({exc}); nothing was written") from None
        return cls(_connect(path), path)

    @classmethod
    def open(cls, run_dir: Path, read_only: bool = False) -> Ledger:
        """The ledger of an existing run (for --resume, and `read_only` for `best`,
        `report` and `evaluate`: those then write nothing into the run folder, not even
        SQLite's WAL files, unless a run is writing it right now)."""
        path = Path(run_dir) / LEDGER_FILE
        try:
            found = path.is_file()
        except OSError as exc:  # a link loop, say
            raise UserError(f"{path}: cannot read ({exc.strerror})") from None
        if not found:
            raise UserError(f"{run_dir}: no {LEDGER_FILE} here; is it a `drnngen tune` run folder?")
        _check_untouched(path)  # before connecting, which writes (WAL files, and a database into an empty file)
        quiet = read_only and not path.with_name(path.name + "-wal").exists()  # no writer, nothing uncommitted
        ledger = cls(_connect_immutable(path) if quiet else _connect(path), path)
        try:
            # A damaged file (a bit flip, a copy cut short) fails here in one line, not
            # later in whichever query first touches the damaged page.
            check = ledger._db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            version = ledger.meta("schema_version")
        except (sqlite3.Error, ValueError, UserError) as exc:
            ledger.close()
            raise UserError(f"{path}: not a complete ledger ({exc}); start the run again") from None
        if version == 1 and quiet:
            ledger.close()
            return cls.open(run_dir)  # an old ledger is upgraded in place, once
        if version == 1:
            ledger._upgrade_from_1()
            version = 2
        if version == 2 and quiet:
            ledger._rungs = False  # read as a run without rungs or rescores; nothing written
        elif version == 2:
            ledger._upgrade_from_2()
        elif version != SCHEMA_VERSION:
            ledger.close()
            raise UserError(f"{path}: ledger schema {str(version)[:40]!r}, this drnngen reads {SCHEMA_VERSION}")
        return ledger

    def _upgrade_from_1(self) -> None:
        with self._transaction() as db:
            for name, kind in _V2_COLUMNS:
                db.execute(f"ALTER TABLE candidates ADD COLUMN {name} {kind}")
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (json.dumps(2),))

    def _upgrade_from_2(self) -> None:
        """Schema 3 only adds the `trainings` table: a schema-2 run reads as one without rungs."""
        with self._transaction() as db:
            db.execute(_TRAININGS_TABLE)
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (json.dumps(SCHEMA_VERSION),))

    def close(self) -> None:
        self._db.close()

    # --- meta --------------------------------------------------------------------

    @_reads
    def meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    @property
    def params(self) -> dict[str, Any]:
        params = self.meta("params")
        if not isinstance(params, dict):
            raise UserError(f"{self.path}: a damaged ledger (its params are {type(params).__name__}, not a mapping)")
        return params

    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def set_params(self, params: dict[str, Any]) -> None:
        """Replace the run's parameters (a resume that extends the generations)."""
        self.set_meta("params", params)

    @property
    def status(self) -> RunStatus:
        status = self.meta("status")
        try:
            return RunStatus(status)
        except ValueError:
            raise UserError(f"{self.path}: a damaged ledger (status {str(status)[:40]!r})") from None

    def set_status(self, status: RunStatus) -> None:
        self.set_meta("status", status.value)

    # --- the loop's journal -----------------------------------------------------

    def generation_started(self, gen: int, population: Sequence[Any], rng_state: RngState) -> None:
        self.generation = gen
        best = self._best_before(gen)
        with self._transaction() as db:
            # A replayed generation starts from the same state: keep the first record.
            db.execute(
                "INSERT OR IGNORE INTO generations (generation, rng_start, population_start, best_start, started_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (gen, json.dumps(rng_state), _population(population), best, time.time()),
            )

    def generation_finished(self, gen: int, population: Sequence[Any], rng_state: RngState,
                            record: dict[str, Any], best: Any) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE generations SET rng_end = ?, population_end = ?, record = ?, finished_at = ?"
                " WHERE generation = ?",
                (json.dumps(rng_state), self._keyed(population),
                 json.dumps({**record, "best_individual": _one(best)}), time.time(), gen),
            )

    @_reads
    def checkpoint(self, make: Callable[[list[Any]], Any]) -> Checkpoint | None:
        """Where to resume: the unfinished generation's start, or after the last
        finished one. `make` turns a genotype list into a DEAP individual."""
        row = self._db.execute(
            "SELECT generation, rng_start, population_start, best_start, rng_end, population_end, record"
            " FROM generations ORDER BY generation DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        gen, rng_start, pop_start, best_start, rng_end, pop_end, record = row
        if record is None:
            return Checkpoint(gen, _individuals(pop_start, make), _rng(rng_start), _individual(best_start, make))
        best = json.loads(record)["best_individual"]
        return Checkpoint(gen + 1, _individuals(pop_end, make), _rng(rng_end), _individual(json.dumps(best), make))

    @_reads
    def records(self) -> list[dict[str, Any]]:
        """The logbook records of the finished generations, in order."""
        rows = self._db.execute("SELECT record FROM generations WHERE record IS NOT NULL ORDER BY generation"
                                ).fetchall()  # all fetched first: a bad row then leaves no statement open
        return [json.loads(r[0]) for r in rows]

    @_reads
    def populations(self) -> dict[int, list[dict[str, Any]]]:
        """Each finished generation's final population: [{genotype, fitness, key}]."""
        rows = self._db.execute("SELECT generation, population_end FROM generations"
                                " WHERE population_end IS NOT NULL ORDER BY generation").fetchall()
        return {int(gen): [m for m in json.loads(text) if m is not None] for gen, text in rows}

    # --- candidates ----------------------------------------------------------------

    @_reads
    def outcome(self, key: str) -> Outcome | None:
        row = self._db.execute(f"SELECT {_OUTCOME_COLUMNS} FROM candidates WHERE key = ?", (key,)).fetchone()
        return None if row is None else self._absolute(_outcome(row))

    def record_candidate(self, key: str, genotype: Sequence[Any], config: str, outcome: Outcome, *,
                         random_seed: int | None, folder: Path | None, source: Source) -> None:
        """One evaluated network, in its own transaction."""
        with self._transaction() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM candidates").fetchone()[0]
            db.execute(
                "INSERT OR REPLACE INTO candidates (key, genotype, config, status, fitness, accuracy, loss, metrics,"
                " iterations, random_seed, solver_seconds, wall_seconds, error, folder, caffemodel, source,"
                " generation, evaluated_at, seq, best_iteration, stop_reason, validations, note)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, json.dumps(list(genotype)), config, outcome.status.value, outcome.fitness, outcome.accuracy,
                 outcome.loss, json.dumps(dict(outcome.metrics)), outcome.iterations, random_seed,
                 outcome.solver_seconds, outcome.wall_seconds, outcome.error,
                 self._relative(folder), self._relative(outcome.caffemodel), Source(source).value, self.generation,
                 time.time(), seq, outcome.best_iteration, outcome.stop_reason,
                 json.dumps([dict(v) for v in outcome.validations]), outcome.note),
            )

    def record_evaluations(self, rows: Sequence[tuple[int, str, Source]]) -> None:
        """(position, key, source) of each evaluation of the current generation's batch."""
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO evaluations (generation, position, key, source) VALUES (?, ?, ?, ?)",
                [(self.generation, pos, key, Source(source).value) for pos, key, source in rows],
            )

    @_reads
    def candidates(self) -> list[CandidateRow]:
        """Every candidate, in the order first evaluated."""
        rows = self._db.execute(
            f"SELECT key, genotype, config, random_seed, folder, source, generation, {_OUTCOME_COLUMNS}"
            " FROM candidates ORDER BY seq"
        ).fetchall()
        return [CandidateRow(r[0], json.loads(r[1]), r[2], self._absolute(_outcome(r[7:])), r[3],
                             self._resolve(r[4]), r[5], r[6]) for r in rows]

    def best(self) -> CandidateRow | None:
        """The fittest successful candidate (of equal fitnesses, the first evaluated);
        once `--rescore` has run, the rescored one of the highest mean fitness."""
        ok = [c for c in self.candidates() if c.outcome.ok]
        scores = self.scores()
        if scores:
            ok = [c for c in ok if c.key in scores]
            return max(ok, key=lambda c: _mean(scores[c.key]), default=None)
        if not ok:
            return None
        return max(ok, key=lambda c: c.outcome.fitness)  # max() keeps the first of equals

    # --- trainings: rungs and rescores ----------------------------------------------

    @_reads
    def training(self, key: str) -> TrainingRow | None:
        """A rung or a rescore, when this run has it."""
        rows = self._trainings("WHERE key = ?", (key,))
        return rows[0] if rows else None

    def record_training(self, key: str, candidate: str, kind: str, rung: int | None, budget: int,
                        random_seed: int | None, outcome: Outcome, source: Source) -> None:
        """One rung or rescore training, in its own transaction (the moment it is back)."""
        stored = replace(outcome, caffemodel=self._relative(outcome.caffemodel), state=self._relative(outcome.state))
        with self._transaction() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM trainings").fetchone()[0]
            db.execute(
                "INSERT OR REPLACE INTO trainings (key, candidate, kind, rung, budget, random_seed, fitness,"
                " solver_seconds, outcome, source, generation, evaluated_at, seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, candidate, kind, rung, budget, random_seed, outcome.fitness, outcome.solver_seconds,
                 json.dumps(stored.to_dict()), Source(source).value, self.generation, time.time(), seq),
            )

    @_reads
    def trainings(self) -> list[TrainingRow]:
        """Every rung and rescore, in the order evaluated."""
        return self._trainings("ORDER BY seq", ())

    def _trainings(self, where: str, args: tuple[Any, ...]) -> list[TrainingRow]:
        if not self._rungs:
            return []
        rows = self._db.execute("SELECT key, candidate, kind, rung, budget, random_seed, outcome, source, generation"
                                f" FROM trainings {where}", args)
        return [TrainingRow(r[0], r[1], r[2], r[3], r[4], r[5], self._absolute(Outcome.from_dict(json.loads(r[6]))),
                            r[7], r[8]) for r in rows]

    @_reads
    def scores(self) -> dict[str, list[float]]:
        """The fitnesses of each rescored candidate: its own first, then each other seed's."""
        if not self._rungs:
            return {}
        rows = self._db.execute(
            "SELECT t.candidate, c.fitness, t.fitness FROM trainings t JOIN candidates c ON c.key = t.candidate"
            " WHERE t.kind = 'rescore' ORDER BY t.seq")
        scores: dict[str, list[float]] = {}
        for key, own, other in rows:
            scores.setdefault(key, [float(own)]).append(float(other))
        return scores

    # --- plumbing --------------------------------------------------------------------

    # Paths inside the run folder are stored relative to it, so a run folder can be
    # moved or copied (a copy reads its own weights); others (the shared cache) stay absolute.

    def _relative(self, path: str | Path | None) -> str | None:
        if path is None:
            return None
        run_dir = self.path.parent.resolve()
        absolute = Path(path).resolve() if Path(path).is_absolute() else run_dir / path
        return str(absolute.relative_to(run_dir)) if absolute.is_relative_to(run_dir) else str(path)

    def _resolve(self, stored: str | None) -> str | None:
        if stored is None or Path(stored).is_absolute():
            return stored
        return str(self.path.parent.resolve() / stored)

    def _absolute(self, outcome: Outcome) -> Outcome:
        return replace(outcome, caffemodel=self._resolve(outcome.caffemodel), state=self._resolve(outcome.state))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _keyed(self, population: Sequence[Any]) -> str:
        """The population as JSON, each member with its candidate key (for reports)."""
        members = []
        for ind in population:
            row = self._db.execute("SELECT key FROM candidates WHERE genotype = ?", (json.dumps(list(ind)),)).fetchone()
            members.append({**(_one(ind) or {}), "key": None if row is None else row[0]})
        return json.dumps(members)

    def _best_before(self, gen: int) -> str | None:
        row = self._db.execute("SELECT record FROM generations WHERE generation = ?", (gen - 1,)).fetchone()
        if row is None or row[0] is None:
            return None
        return json.dumps(json.loads(row[0])["best_individual"])


_OUTCOME_COLUMNS = ("status, fitness, accuracy, loss, metrics, iterations, solver_seconds, wall_seconds, error,"
                    " caffemodel, best_iteration, stop_reason, validations, note")


def _outcome(row: Sequence[Any]) -> Outcome:
    status, fit, acc, loss, metrics, iterations, solver_s, wall_s, error, model, best_it, reason, vals, note = row
    fit, acc, loss = float(fit), _number(acc), _number(loss)  # a tampered 'high' fails here, not in a format
    return Outcome(status, fit, acc, loss, json.loads(metrics), iterations, solver_s, wall_s, error, model,
                   best_it, reason, tuple(json.loads(vals or "[]")), note)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


_TABLES = ("meta", "candidates", "evaluations", "generations")


def _check_untouched(path: Path) -> None:
    """Refuse a file that is not a whole ledger, reading it without writing anything
    (SQLite's immutable mode: no WAL or lock files beside it, no header written)."""
    try:
        with path.open("rb") as handle:
            header = handle.read(16)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    if header != b"SQLite format 3\x00":
        raise UserError(f"{path}: not a complete ledger (not an SQLite file); start the run again")
    try:
        db = _connect_immutable(path)
        try:
            # A damaged file (a bit flip, a copy cut short) fails here in one line, not
            # later in whichever query first touches the damaged page.
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            missing = [name for name in _TABLES if name not in tables]
            if missing:
                raise sqlite3.DatabaseError(f"no table {missing[0]}")
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise UserError(f"{path}: not a complete ledger ({str(exc)[:160]}); start the run again") from None


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _temp_beside(path: Path) -> tuple[int, str]:
    try:
        return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise UserError(f"{path.parent}: cannot create the ledger ({exc.strerror}); nothing was written") from None


def _connect_immutable(path: Path) -> sqlite3.Connection:
    try:
        return sqlite3.connect(f"file:{urllib.parse.quote(str(path.resolve()))}?immutable=1", uri=True,
                               isolation_level=None)
    except sqlite3.Error as exc:
        raise UserError(f"{path}: cannot open the ledger ({exc})") from None


def _connect(path: Path) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, timeout=60, isolation_level=None)  # transactions are explicit
        db.execute("PRAGMA journal_mode=WAL")  # readers (tests, `drnngen best`) never block the run
        db.execute("PRAGMA synchronous=FULL")
    except sqlite3.Error as exc:
        raise UserError(f"{path}: cannot open the ledger ({exc})") from None
    return db


def _one(individual: Any) -> dict[str, Any] | None:
    if individual is None:
        return None
    valid = individual.fitness.valid
    return {"genotype": list(individual), "fitness": individual.fitness.values[0] if valid else None}


def _population(population: Sequence[Any]) -> str:
    return json.dumps([_one(ind) for ind in population])


def _individual(text: str | None, make: Callable[[list[Any]], Any]) -> Any:
    data = None if text is None else json.loads(text)
    if data is None:
        return None
    individual = make(data["genotype"])
    if data["fitness"] is not None:
        individual.fitness.values = (data["fitness"],)
    return individual


def _individuals(text: str, make: Callable[[list[Any]], Any]) -> list[Any]:
    return [_individual(json.dumps(item), make) for item in json.loads(text)]


def _rng(text: str) -> RngState:
    version, internal, gauss = json.loads(text)
    return version, tuple(internal), gauss
