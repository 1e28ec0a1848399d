"""The recommendation service without HTTP: events in, recommendations out.

Each event loads the session from the store, changes it in place (`SessionState.view`),
stores it, builds the one row the net needs through `drnngen.data.live` (the code
`prepare`'s rows come from) and scores it: with the NumPy engine
(`drnngen.runner.numpy_net.NumpyNet`, `inline`) right there, a millisecond of NumPy on
the event loop; with the Caffe engine in the Caffe child
(`drnngen.runner.serving.ForwardServer`), where `event_async` (the HTTP route) does the
store and row work inline and awaits the score, so the event loop serves other requests
while the child computes, and the child can batch the rows that wait. `event` blocks on
the score. A session completes on `end`, or on a purchase when
the dataset's target is `purchase`; its training sample goes to the sample log.
Samples, as `prepare` makes them:

* target `purchase`: the views before the first purchase, labelled with the earliest
  bought item that is one of the N classes (none when no view came before it);
* target `next-item`: every view that follows a view labels the views before it.
"""

from __future__ import annotations

import asyncio
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from drnngen.data.live import LivePrefix, live_rows, newest_dwell
from drnngen.data.sessions import OOV_PAGE
from drnngen.errors import UserError
from drnngen.runner.serving import ForwardClosed
from drnngen.serving.model import ServedModel
from drnngen.serving.samples import SampleLog
from drnngen.serving.state import SessionState
from drnngen.serving.store import StateStore

Float32s = npt.NDArray[np.float32]
Scorer = Callable[[Mapping[str, Float32s]], Float32s]
KINDS = ("view", "purchase")
_LOCKS = 256


class ApiError(UserError):
    """A client's mistake: an HTTP status and one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Event:
    item: str
    time: float
    kind: str = "view"
    user: str | None = None


class SessionService:
    """Sessions of one served model (the model and its scorer can be swapped: `swap`)."""

    def __init__(self, model: ServedModel, scorer: Scorer, store: StateStore, samples: SampleLog,
                 max_events: int = 10_000) -> None:
        self.store, self.samples, self.max_events = store, samples, max_events
        self._model_lock = threading.Lock()
        self._locks = [threading.Lock() for _ in range(_LOCKS)]
        self.swap(model, scorer)

    def swap(self, model: ServedModel, scorer: Scorer) -> None:
        """Serve another model of the same dataset (an update's weights); sessions stay."""
        manifest = model.manifest
        page_of = {str(key): page for page, key in enumerate(manifest.page_keys()) if key is not None}
        names = [str(key) for key in manifest.item_keys()]
        with self._model_lock:
            self.model, self.scorer = model, scorer
            self.page_of, self.item_names = page_of, names
            self.class_of = {name: c for c, name in enumerate(names)}

    def _lock(self, session: str) -> threading.Lock:
        return self._locks[zlib.crc32(session.encode()) % _LOCKS]

    # --- the API's operations ------------------------------------------------------------

    def event(self, session: str, event: Event, k: int) -> list[tuple[str, float]]:
        """Apply one event; the recommendations after it."""
        prefix, sampled = self.record(session, event, k)
        if sampled:
            self.samples.sync()
        return self._recommend(prefix, k)

    async def event_async(self, session: str, event: Event, k: int) -> list[tuple[str, float]]:
        """`event`, awaiting the score instead of blocking on it (and the sample log's
        fsync, when the event wrote a sample, in a thread: the event loop never waits on
        the disk)."""
        prefix, sampled = self.record(session, event, k)
        if sampled:
            await asyncio.to_thread(self.samples.sync)
        rows = self.rows(prefix)
        for _ in range(3):
            with self._model_lock:
                scorer, names = self.scorer, self.item_names
            submit = getattr(scorer, "submit", None)  # a ForwardServer: batched, a future
            try:
                if getattr(scorer, "inline", False):  # the NumPy engine: a millisecond, no I/O
                    scores = scorer(rows)
                elif submit is not None:
                    scores = await asyncio.wrap_future(submit(rows))
                else:  # a plain callable (tests' stand-ins): off the event loop
                    scores = await asyncio.to_thread(scorer, rows)
                return _top(scores[0].ravel(), names, k)
            except ForwardClosed:
                continue  # a reload swapped the scorer meanwhile: ask the new one
        raise ApiError(503, "the model is being reloaded; try again")

    def record(self, session: str, event: Event, k: int) -> tuple[LivePrefix, bool]:
        """Check and store one event; the prefix to score after it, and whether it wrote a
        sample (not yet fsynced: the caller syncs the log before it answers)."""
        if event.kind not in KINDS:
            raise ApiError(422, f"type: expected one of {', '.join(KINDS)}, found {event.kind!r}")
        self._check_k(k)  # before the event is stored: a refused request changes nothing
        with self._lock(session):
            state = self.store.load(session)
            if state is None:
                state = SessionState(start=event.time, last=event.time)
            self._check(session, state, event)
            if state.user is None and event.user is not None:
                state.user, state.user_items = event.user, self.store.user_items(event.user, state.start)
            written = self.samples.written
            prefix, purchase = self._apply(session, state, event)
            self.store.save(session, state, purchase)
        return prefix, self.samples.written != written  # another thread's line: one fsync too many, never one too few

    def recommendations(self, session: str, k: int) -> list[tuple[str, float]]:
        self._check_k(k)
        state = self._existing(session)
        return self._recommend(state.prefix(newest_dwell(self.model.manifest.dwell)), k)

    def end(self, session: str) -> SessionState:
        """Complete the session (no sample: a session without a purchase labels nothing)."""
        with self._lock(session):
            state = self._existing(session)
            state.ended = True
            self.store.save(session, state)
        return state

    def _existing(self, session: str) -> SessionState:
        state = self.store.load(session)
        if state is None:
            raise ApiError(404, f"session {session!r}: unknown (never seen, or expired after "
                                f"{self.store.idle_s:g} s idle)")
        return state

    # --- pieces ----------------------------------------------------------------------

    def _check(self, session: str, state: SessionState, event: Event) -> None:
        if event.time < state.last:
            raise ApiError(422, f"time: {event.time:.3f} is before the session's latest event ({state.last:.3f}); "
                                "events of a session come in time order")
        if state.ended and event.kind == "view":
            raise ApiError(409, f"session {session!r} has ended; start a new session id")
        if state.events >= self.max_events:
            raise ApiError(413, f"session {session!r} has {state.events} events, the most one session may have")
        if event.user is not None and state.user is not None and event.user != state.user:
            raise ApiError(409, f"session {session!r} belongs to user {state.user!r}, not {event.user!r}")

    def _apply(self, session: str, state: SessionState,
               event: Event) -> tuple[LivePrefix, tuple[str, float, int] | None]:
        """Change `state` by `event`; the prefix to score, and the purchase to record."""
        model = self.model
        cap, label = model.manifest.dwell.cap, self.class_of.get(event.item, -1)
        known = state.known_prefix(event.time, cap)  # the newest view's dwell is now known
        purchase = None
        if event.kind == "purchase":
            if state.user is not None and label >= 0:
                purchase = (state.user, event.time, label)
            if model.manifest.target == "purchase":
                # the first purchase closes the views; the earliest bought item that is a
                # class labels them (as `prepare` labels a purchase session)
                state.ended = True
                if state.pages and label >= 0 and not state.sampled:
                    self.samples.append(session, known, label, event.time, sync=False)
                    state.sampled = True
            state.purchase(event.time, cap)
            return known, purchase
        if model.manifest.target == "next-item" and state.pages and label >= 0:
            self.samples.append(session, known, label, event.time, sync=False)
        state.view(self.page_of.get(event.item, OOV_PAGE), event.time, model.window, cap)
        return state.prefix(newest_dwell(model.manifest.dwell)), None

    def rows(self, prefix: LivePrefix) -> dict[str, Float32s]:
        """The sample row of a prefix, as `prepare` writes rows."""
        return live_rows([prefix], self.model.window_files)

    def _check_k(self, k: int) -> None:
        if not 1 <= k <= len(self.item_names):
            raise ApiError(422, f"k: expected 1..{len(self.item_names)}, found {k}")

    def _recommend(self, prefix: LivePrefix, k: int) -> list[tuple[str, float]]:
        rows = self.rows(prefix)
        for _ in range(3):
            with self._model_lock:
                scorer, names = self.scorer, self.item_names
            try:
                scores = scorer(rows)[0].ravel()
                break
            except ForwardClosed:
                continue  # a reload swapped the scorer between the two lines above: ask the new one
        else:
            raise ApiError(503, "the model is being reloaded; try again")
        return _top(scores, names, k)

    def describe(self) -> dict[str, Any]:
        return {**self.model.describe(), "live_sessions": self.store.count()}


def _top(scores: Float32s, names: list[str], k: int) -> list[tuple[str, float]]:
    best = np.argsort(-scores, kind="stable")[:k]
    return [(names[c], float(scores[c])) for c in best.tolist()]
