"""Results by canonical network key, shared by every run that uses the same
cache folder: a network already trained (same net + solver, seed included,
same data) is never trained again.

One SQLite file (`results.sqlite`) plus the trained weights under `models/`
(and a rung's solver state, so a cached rung can be continued; hard-linked
from the run folder when possible, else copied), so a run can export a best
candidate that another run trained. Timeouts, lost Dask tasks
and trainings cut short by a time budget are not cached: they say more about
the machine's load than about the network.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

from drnngen.errors import UserError
from drnngen.runner import state_weights
from drnngen.tuner.fitness import Outcome
from drnngen.vocabulary import UNCACHEABLE

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key        TEXT PRIMARY KEY,   -- tuner.candidate.canonical_hash
    outcome    TEXT NOT NULL,      -- Outcome.to_dict() as JSON; caffemodel points into models/
    created_at REAL NOT NULL
);
"""


class ResultCache:
    """key → Outcome, across runs."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        try:
            (self.directory / "models").mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.directory / "results.sqlite", timeout=60, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"--cache-dir {self.directory}: cannot use it as a result cache ({exc})") from None

    def get(self, key: str) -> Outcome | None:
        """The cached outcome, or None (also when its weights have gone missing)."""
        row = self._db.execute("SELECT outcome FROM results WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        outcome = Outcome.from_dict(json.loads(row[0]))
        files: list[str | Path | None] = [outcome.caffemodel]
        if outcome.state is not None:  # a rung that can be continued: only with its state
            files += [outcome.state, state_weights(outcome.state)]
        if any(f is not None and not Path(f).is_file() for f in files):
            return None
        return outcome

    def put(self, key: str, outcome: Outcome) -> None:
        """Remember a result (weights included); timeouts, lost tasks and trainings
        cut by a time limit (the run's budget, or the training's own) are skipped."""
        if outcome.status in UNCACHEABLE or outcome.stop_reason in ("deadline", "time_limit"):
            return
        if outcome.caffemodel is not None:
            outcome = replace(outcome, caffemodel=str(self._keep(outcome.caffemodel, f"{key}.caffemodel")))
        if outcome.state is not None:  # a rung's solver state, its weights beside it
            self._keep(state_weights(outcome.state), f"{key}.last.caffemodel")
            outcome = replace(outcome, state=str(self._keep(outcome.state, f"{key}.last.solverstate")))
        self._db.execute(
            "INSERT OR REPLACE INTO results (key, outcome, created_at) VALUES (?, ?, ?)",
            (key, json.dumps(outcome.to_dict()), time.time()),
        )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def _keep(self, model: str | Path, name: str) -> Path:
        target = self.directory / "models" / name
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        try:
            os.link(model, tmp)
        except OSError:  # another file system: copy instead
            shutil.copy2(model, tmp)
        os.replace(tmp, target)
        return target
