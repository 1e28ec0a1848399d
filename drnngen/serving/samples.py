"""The durable log of completed sessions' training samples (`drnngen update --samples`).

One JSON line per sample: the prefix the net sees (window pages and dwell, the history
aggregate, the user's earlier purchases) and its label. A line is written whole, flushed
and fsynced before the session's answer goes out (the HTTP route fsyncs in a thread, so
the event loop never waits on the disk); a reader skips a last line cut short by a crash.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from drnngen.data.live import LivePrefix
from drnngen.errors import UserError
from drnngen.serving.state import prefix_from_json, prefix_to_json

SAMPLES_FILE = "samples.jsonl"


class SampleLog:
    """Appends samples to `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.written = 0  # lines appended so far
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"{path}: cannot open the sample log ({exc.strerror})") from None

    def append(self, session: str, prefix: LivePrefix, label: int, time: float, sync: bool = True) -> None:
        """Append one sample; `sync=False` leaves the fsync to a later `sync()`."""
        line = json.dumps({"session": session, "time": time, "label": label, "prefix": prefix_to_json(prefix)},
                          separators=(",", ":")) + "\n"
        with self._lock:
            os.write(self._fd, line.encode())
            self.written += 1
        if sync:
            self.sync()

    def sync(self) -> None:
        """Every line appended so far is on disk."""
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


def read_samples(path: Path) -> Iterator[tuple[LivePrefix, int]]:
    """(prefix, label) of every complete line of a sample log."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"--samples {path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"--samples {path}: not UTF-8 text; is it a sample log `serve` wrote?") from None
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        if not line.endswith("\n"):
            return  # cut short by a crash while it was written
        try:
            doc: dict[str, Any] = json.loads(line)
            yield prefix_from_json(doc["prefix"]), int(doc["label"])
        except (ValueError, KeyError, TypeError, RecursionError) as exc:  # RecursionError: nested too deeply
            raise UserError(f"--samples {path}:{number}: not a sample line ({str(exc)[:160]})") from None
