"""The words a training's result is told in, shared by the runner, the tuner's
fitness and ledger, the cache and the reports: one spelling each, stored as
the plain strings below (ledger rows, cache entries and JSON keep them).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path


class Status(str, Enum):
    """How a candidate's training ended."""

    OK = "ok"  # trained and validated: fitness from the kept snapshot
    FAILED = "failed"  # Caffe refused the net or crashed (CHECK, abort, segfault)
    TIMEOUT = "timeout"  # ran past --timeout and was killed
    NAN = "nan"  # the loss became NaN/inf before any finite validation point
    INVALID = "invalid"  # codegen refused the genotype; never trained
    LOST = "lost"  # a Dask task whose workers kept dying under it
    KILLED = "killed"  # the Caffe child was SIGKILLed from outside (out of memory, kill -9)

    def __str__(self) -> str:
        return self.value


class Source(str, Enum):
    """Where an evaluation's result came from."""

    TRAINED = "trained"  # trained by this run
    CACHE = "cache"  # trained by an earlier run (the shared result cache)
    LEDGER = "ledger"  # this run's ledger already held it (a resume, a repeated genotype)
    DUPLICATE = "duplicate"  # the same network twice in one batch: trained once
    INVALID = "invalid"  # refused by codegen

    def __str__(self) -> str:
        return self.value


# Results that depend on the machine's load or the cluster, not on the network:
# never served from the cross-run cache.
UNCACHEABLE = frozenset({Status.TIMEOUT, Status.LOST, Status.KILLED})

CANDIDATES_DIR = "candidates"
KEY_CHARS = 16  # a candidate's folder name: the first characters of its canonical key


def short_key(key: str) -> str:
    """The name a candidate goes by in folders, reports and --candidate."""
    return key[:KEY_CHARS]


def candidate_folder(run_dir: Path, key: str) -> Path:
    """RUN/candidates/<short key>: the candidate's prototxt, config, log and weights."""
    return Path(run_dir) / CANDIDATES_DIR / short_key(key)
