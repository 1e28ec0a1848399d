"""Helpers shared by the serving tests and the serving benchmark (not a test module)."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from drnngen.codegen.config import load_config
from drnngen.data.events import MISSING_USER, PURCHASE, EventLog
from drnngen.data.manifest import load_manifest
from drnngen.data.readers import LogSpec, read_log
from drnngen.data.sessions import _event_order
from drnngen.serving.model import ServedModel
from drnngen.serving.service import Event
from tests.data_support import quiet
from tests.golden_tool import EXAMPLES


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def model_without_net(dataset: Path, window: int) -> ServedModel:
    """A ServedModel of `dataset` whose net files are never read (for a scorer stand-in)."""
    config = load_config(EXAMPLES / "small.yaml")
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, states=window))
    return ServedModel(dataset, "none", 0.0, dataset / "deploy.prototxt", dataset / "none.caffemodel", config,
                       load_manifest(dataset), 0)


@dataclasses.dataclass(frozen=True)
class Replayed:
    session: str
    event: Event
    rank: int  # the session's place in time order (how `prepare` orders sessions)
    split: int  # 0 train, 1 val, 2 test


def replay(spec: LogSpec, split: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Iterator[Replayed]:
    """Every event of the log in time order (sessions interleaved, each session's events
    in `prepare`'s order), with the user the users file gives its session."""
    log: EventLog = read_log(spec, quiet)
    order = _event_order(log)
    order = order[np.argsort(log.time[order], kind="stable")]
    session, time, item, kind, user = log.session, log.time, log.item, log.kind, log.user
    firsts: dict[int, tuple[float, int]] = {}
    for s, t in zip(session.tolist(), time.tolist(), strict=True):
        if s not in firsts or t < firsts[s][0]:
            firsts[s] = (t, s)
    ranked = sorted(firsts, key=lambda s: firsts[s])
    rank = {s: r for r, s in enumerate(ranked)}
    cuts = np.round(np.cumsum(split)[:2] * len(ranked)).astype(np.int64)
    users: dict[int, int] = {}
    for s, u in zip(session.tolist(), user.tolist(), strict=True):
        users[s] = max(users.get(s, MISSING_USER), u)
    for i in order.tolist():
        s = int(session[i])
        u = users[s]
        event = Event(str(int(item[i])), float(time[i]), "purchase" if kind[i] == PURCHASE else "view",
                      None if u == MISSING_USER else f"u{u}")
        yield Replayed(str(s), event, rank[s], int(np.searchsorted(cuts, rank[s], side="right")))


def call(method: str, url: str, body: object = None, headers: dict[str, str] | None = None,
         raw: bytes | None = None) -> tuple[int, Any]:
    """One HTTP request; (status, the JSON answer)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class ServerThread:
    """A real uvicorn server for `app` on a free loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


def wait_for(url: str, seconds: float = 120.0) -> None:
    """Until GET url answers 200."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{url} did not come up"
        time.sleep(0.1)
