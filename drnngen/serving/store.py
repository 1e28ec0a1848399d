"""Where live sessions and users' purchases are kept: SQLite (default) or Redis.

`--store sqlite:PATH` is one file in WAL mode; every acknowledged event is committed
before the answer goes out, so a killed server restarts with every session as it was
(synchronous=NORMAL: safe against a crash of the process; a power cut may lose the last
commits). So a commit never fsyncs: the WAL is copied back into the database (a
checkpoint, the one step that fsyncs) by a background thread on its own connection, not by
whichever request's commit crosses SQLite's 1000-page mark; that took a request 5 ms at
the 99.9th percentile and up to 160 ms on this busy disk (a loop of 6,000 saves).
`--store redis://HOST:PORT/DB` lets several server processes share sessions; Redis
expires idle sessions itself. Both hold the same JSON documents.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from drnngen.errors import UserError
from drnngen.serving.state import SessionState

_CHECKPOINT_S = 0.5
_WAL_BYTES = 64 << 20
_CATCH_UP = 4

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, state TEXT NOT NULL, seen REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_seen ON sessions (seen);
CREATE TABLE IF NOT EXISTS purchases (user TEXT NOT NULL, time REAL NOT NULL, item INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS purchases_user ON purchases (user, time);
"""


class StateStore(ABC):
    """Sessions by id (with their last-seen wall time) and purchases by user."""

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s

    @abstractmethod
    def load(self, session: str) -> SessionState | None:
        """The session, or None when unknown or idle past the timeout."""

    @abstractmethod
    def save(self, session: str, state: SessionState, purchase: tuple[str, float, int] | None = None) -> None:
        """Store the session (and a purchase of its user) as one change."""

    @abstractmethod
    def user_items(self, user: str, before: float) -> list[int]:
        """Item classes `user` bought strictly before `before`, each once, in the order of
        its latest purchase (oldest first), as `prepare` orders a user's purchases."""

    @abstractmethod
    def expire(self) -> int:
        """Drop sessions idle past the timeout; how many went."""

    @abstractmethod
    def count(self) -> int:
        """Live sessions."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


class SqliteStore(StateStore):
    def __init__(self, path: Path, idle_s: float) -> None:
        super().__init__(idle_s)
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA wal_autocheckpoint=0")  # `_checkpoints` does it
            self._db.execute(f"PRAGMA journal_size_limit={_WAL_BYTES}")  # the WAL file, once reused
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"--store sqlite:{path}: cannot open the state store ({exc})") from None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoints, daemon=True, name="sqlite-checkpoint")
        self._checkpointer.start()

    def _checkpoints(self) -> None:
        """PASSIVE checkpoints every _CHECKPOINT_S: they copy what no reader needs and never
        block the writer. SQLite starts the WAL over only once a checkpoint has caught up
        with the last commit while no other connection is checkpointing, which under steady
        load seldom happens (commits land while it fsyncs): once the WAL is over _WAL_BYTES
        (about 17 s of events at 300/s), the last few frames are copied and the WAL emptied
        under the writer's lock, a stall of one small checkpoint every few seconds instead
        of an unbounded WAL."""
        try:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        except sqlite3.Error:
            return  # the serving connection's own errors say what is wrong
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            while not self._stop.wait(_CHECKPOINT_S):
                with contextlib.suppress(sqlite3.Error, OSError):  # busy now: the next round copies it
                    for _ in range(_CATCH_UP):
                        _, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                        if copied >= frames:
                            break
                    if wal.stat().st_size > _WAL_BYTES:
                        with self._lock:  # what is left is a few frames: a short stall
                            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            db.close()

    def load(self, session: str) -> SessionState | None:
        with self._lock:
            row = self._db.execute("SELECT state, seen FROM sessions WHERE id = ?", (session,)).fetchone()
        if row is None or row[1] < time.time() - self.idle_s:
            return None
        return SessionState.from_json(json.loads(row[0]))

    def save(self, session: str, state: SessionState, purchase: tuple[str, float, int] | None = None) -> None:
        text = json.dumps(state.to_json(), separators=(",", ":"))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # an upsert changes the row in place: half the WAL bytes of INSERT OR REPLACE
                # (a delete and an insert, which rewrites the id index too)
                self._db.execute("INSERT INTO sessions VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE "
                                 "SET state = excluded.state, seen = excluded.seen", (session, text, time.time()))
                if purchase is not None:
                    self._db.execute("INSERT INTO purchases VALUES (?, ?, ?)", purchase)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def user_items(self, user: str, before: float) -> list[int]:
        with self._lock:
            rows = self._db.execute("SELECT item FROM purchases WHERE user = ? AND time < ? GROUP BY item "
                                    "ORDER BY MAX(time), MAX(rowid)", (user, before)).fetchall()
        return [int(item) for (item,) in rows]

    def expire(self) -> int:
        with self._lock:
            return self._db.execute("DELETE FROM sessions WHERE seen < ?", (time.time() - self.idle_s,)).rowcount

    def count(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM sessions WHERE seen >= ?",
                                   (time.time() - self.idle_s,)).fetchone()
        return int(row[0])

    def close(self) -> None:
        self._stop.set()
        self._checkpointer.join()
        with self._lock:
            self._db.close()  # the last connection out checkpoints the rest


class RedisStore(StateStore):
    """Keys `<prefix>s:<id>` (the session, with a TTL of the idle timeout) and
    `<prefix>u:<user>` (a list of [time, item] purchases)."""

    def __init__(self, url: str, idle_s: float, prefix: str = "drnngen:") -> None:
        super().__init__(idle_s)
        import redis

        self.prefix = prefix
        try:
            self._redis: Any = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
            self._redis.ping()
        except (redis.RedisError, ValueError) as exc:
            raise UserError(f"--store {url}: cannot reach Redis ({exc})") from None

    def _ttl(self) -> int:
        return max(1, round(self.idle_s))

    def load(self, session: str) -> SessionState | None:
        text = self._redis.get(self.prefix + "s:" + session)
        return None if text is None else SessionState.from_json(json.loads(text))

    def save(self, session: str, state: SessionState, purchase: tuple[str, float, int] | None = None) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self.prefix + "s:" + session, json.dumps(state.to_json(), separators=(",", ":")), ex=self._ttl())
        if purchase is not None:
            user, when, item = purchase
            pipe.rpush(self.prefix + "u:" + user, json.dumps([when, item]))
        pipe.execute()

    def user_items(self, user: str, before: float) -> list[int]:
        latest: dict[int, tuple[float, int]] = {}
        for order, record in enumerate(self._redis.lrange(self.prefix + "u:" + user, 0, -1)):
            when, item = json.loads(record)
            if when < before:
                latest[int(item)] = max(latest.get(int(item), (when, order)), (when, order))
        return sorted(latest, key=latest.__getitem__)

    def expire(self) -> int:
        return 0  # the TTL does it

    def count(self) -> int:
        return sum(1 for _ in self._redis.scan_iter(match=self.prefix + "s:*", count=1000))

    def close(self) -> None:
        self._redis.close()


def check_store_url(url: str) -> str:
    """The store's kind, `sqlite` or `redis`; one line for anything else."""
    if url.startswith("sqlite:"):
        return "sqlite"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UserError(f"--store {url!r}: {exc}") from None
    if parts.scheme in ("redis", "rediss") and parts.hostname and (port is None or port > 0):
        return "redis"
    raise UserError(f"--store {url!r}: expected sqlite:PATH or redis://HOST:PORT/DB")


def open_store(url: str, default_dir: Path, idle_s: float) -> StateStore:
    """`sqlite:PATH`, `sqlite:` (RUN/serving/state.sqlite) or `redis://HOST:PORT/DB`."""
    if check_store_url(url) == "sqlite":
        path = url[len("sqlite:"):]
        return SqliteStore(Path(path) if path else default_dir / "state.sqlite", idle_s)
    return RedisStore(url, idle_s)
