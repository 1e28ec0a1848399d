"""One live session's state and how an event changes it, in place.

The state is exactly what the net needs: the last w page ids with their dwell θ, the
views older than the window folded into a page → (Σθ, views) aggregate, and the user's
earlier purchases. An event costs O(w) (one view may leave the window into the
aggregate); nothing is replayed.

Dwell: θ of a view is the gap to the session's next event (view or purchase), capped,
which becomes known when that event arrives. Until then the newest view carries the value
`prepare` gives a session's last event, the median gap of the train split
(`drnngen.data.live.newest_dwell`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drnngen.data.live import LivePrefix, view_dwell


@dataclass
class SessionState:
    """A session as the service keeps it (JSON-serialisable through `to_json`)."""

    start: float  # time of the first event
    last: float  # time of the latest event
    pages: list[int] = field(default_factory=list)  # window, oldest first (<= w)
    theta: list[float] = field(default_factory=list)  # dwell of pages[:-1]; the newest's is not known yet
    history_theta: dict[int, float] = field(default_factory=dict)
    history_views: dict[int, int] = field(default_factory=dict)
    user: str | None = None
    user_items: list[int] = field(default_factory=list)
    events: int = 0
    ended: bool = False
    newest_theta: float | None = None  # the newest view's dwell, once a purchase has fixed it
    sampled: bool = False  # its purchase sample is in the sample log

    def known_prefix(self, time: float, cap: float) -> LivePrefix:
        """The prefix as an event at `time` makes it known: the newest dwell is the gap to it."""
        if self.newest_theta is not None:
            return self.prefix(self.newest_theta)
        return self.prefix(view_dwell(time - self.last, cap))

    def purchase(self, time: float, cap: float) -> None:
        """A purchase at `time`: the newest view's dwell is the gap to it (its next event)."""
        if self.pages and self.newest_theta is None:
            self.newest_theta = view_dwell(time - self.last, cap)
        self.last, self.events = time, self.events + 1

    def view(self, page: int, time: float, window: int, cap: float) -> None:
        """A page view at `time` (not before `last`): the newest view's dwell becomes
        known, the view enters the window, and the oldest may leave it for the history."""
        if self.pages:
            known = self.newest_theta
            self.theta.append(view_dwell(time - self.last, cap) if known is None else known)
        self.newest_theta = None
        self.pages.append(page)
        if len(self.pages) > window:
            old, old_theta = self.pages.pop(0), self.theta.pop(0)
            self.history_theta[old] = self.history_theta.get(old, 0.0) + old_theta
            self.history_views[old] = self.history_views.get(old, 0) + 1
        self.last, self.events = time, self.events + 1

    def prefix(self, newest_theta: float) -> LivePrefix:
        """The session so far as a row's input, the newest view's dwell given (unless a
        purchase has fixed it)."""
        newest = newest_theta if self.newest_theta is None else self.newest_theta
        theta = [*self.theta, newest] if self.pages else []
        return LivePrefix(tuple(self.pages), tuple(theta), dict(self.history_theta), dict(self.history_views),
                      tuple(self.user_items))

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "last": self.last, "pages": self.pages, "theta": self.theta,
                "history": [[p, self.history_theta[p], self.history_views[p]] for p in self.history_theta],
                "user": self.user, "user_items": self.user_items, "events": self.events, "ended": self.ended,
                "newest_theta": self.newest_theta, "sampled": self.sampled}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SessionState:
        history = doc["history"]
        return cls(float(doc["start"]), float(doc["last"]), [int(p) for p in doc["pages"]],
                   [float(t) for t in doc["theta"]], {int(p): float(t) for p, t, _ in history},
                   {int(p): int(n) for p, _, n in history}, doc["user"], [int(c) for c in doc["user_items"]],
                   int(doc["events"]), bool(doc["ended"]), doc.get("newest_theta"),
                   bool(doc.get("sampled", False)))


def prefix_to_json(prefix: LivePrefix) -> dict[str, Any]:
    """A prefix as the sample log stores it."""
    return {"pages": list(prefix.window_pages), "theta": list(prefix.window_theta),
            "history": [[p, prefix.history_theta[p], prefix.history_views[p]] for p in prefix.history_theta],
            "user_items": list(prefix.user_items)}


def prefix_from_json(doc: dict[str, Any]) -> LivePrefix:
    history = doc["history"]
    return LivePrefix(tuple(int(p) for p in doc["pages"]), tuple(float(t) for t in doc["theta"]),
                  {int(p): float(t) for p, t, _ in history}, {int(p): int(n) for p, _, n in history},
                  tuple(int(c) for c in doc["user_items"]))
