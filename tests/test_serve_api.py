"""The HTTP API over a real server on a loopback port, a real SQLite file and a real
redis-server; the net is a stand-in scorer (a fixed random projection of the row), so
these tests need no Caffe (tests/test_serve_caffe.py runs the real net)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from drnngen.cli import cli
from drnngen.data.sessions import BuildOptions
from drnngen.runner.serving import ForwardClosed
from drnngen.serving.app import MAX_BODY_BYTES, create_app
from drnngen.serving.samples import SampleLog, read_samples
from drnngen.serving.service import Event, SessionService
from drnngen.serving.state import SessionState
from drnngen.serving.store import RedisStore, SqliteStore, StateStore
from tests.data_support import run_prepare, synth_log, yoochoose_spec
from tests.serve_support import ServerThread, call, free_port, model_without_net

WINDOW = 3


class Projection:
    """Scores that depend on every input of the row."""

    def __init__(self, items: int) -> None:
        self.items = items
        self.weights: np.ndarray | None = None

    def __call__(self, rows: Mapping[str, np.ndarray]) -> np.ndarray:
        x = np.concatenate([np.asarray(rows[k], np.float64).reshape(1, -1) for k in sorted(rows) if k != "label"], 1)
        if self.weights is None:
            self.weights = np.random.default_rng(0).normal(size=(x.shape[1], self.items))
        z = x @ self.weights
        e = np.exp(z - z.max())
        return (e / e.sum()).astype(np.float32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve-api")
    log = synth_log(root / "log", sessions=300, seed=4, items=60, categories=5)
    run_prepare(yoochoose_spec(log), root / "data", window=WINDOW, build=BuildOptions(max_pages=50, max_items=20))
    return root / "data"


def make_service(dataset: Path, store: StateStore, samples: Path) -> SessionService:
    model = model_without_net(dataset, WINDOW)
    return SessionService(model, Projection(model.manifest.items), store, SampleLog(samples), max_events=50)


@pytest.fixture
def server(dataset: Path, tmp_path: Path) -> Iterator[tuple[str, SessionService]]:
    service = make_service(dataset, SqliteStore(tmp_path / "state.sqlite", 3600), tmp_path / "samples.jsonl")
    reloads: list[int] = []

    def reload() -> dict[str, object]:
        reloads.append(1)
        return {"reloaded": True, "count": len(reloads)}

    with ServerThread(create_app(service, reload, default_k=5, admin_token=None)) as running:
        yield running.url, service


def items(dataset: Path) -> list[str]:
    return [str(k) for k in json.loads((dataset / "pages.json").read_text())["keys"]]


def test_a_session_from_events_to_end(server: tuple[str, SessionService], dataset: Path) -> None:
    url, _ = server
    pages = items(dataset)
    status, body = call("POST", f"{url}/sessions/s1/events", {"item": pages[0], "time": 1000, "user": "u1"})
    assert status == 200 and body["session"] == "s1" and len(body["recommendations"]) == 5
    status, again = call("POST", f"{url}/sessions/s1/events?k=3", {"item": pages[1], "time": "1970-01-01T00:17:00Z"})
    assert status == 200 and len(again["recommendations"]) == 3
    assert again["recommendations"] != body["recommendations"][:3]  # the state moved
    status, same = call("GET", f"{url}/sessions/s1/recommendations?k=3")
    assert status == 200 and same == again
    scores = [r["score"] for r in same["recommendations"]]
    assert scores == sorted(scores, reverse=True)
    status, ended = call("POST", f"{url}/sessions/s1/end")
    assert status == 200 and ended == {"session": "s1", "ended": True, "events": 2}
    status, model = call("GET", f"{url}/model")
    assert status == 200 and (model["w"], model["M"], model["N"]) == (WINDOW, 50, 20) and model["live_sessions"] == 1
    assert call("GET", f"{url}/health") == (200, {"status": "ok", "update": 0})
    assert call("POST", f"{url}/admin/reload") == (200, {"reloaded": True, "count": 1})  # from loopback


def test_a_purchase_completes_the_session_and_logs_its_sample(server: tuple[str, SessionService],
                                                              dataset: Path, tmp_path: Path) -> None:
    url, service = server
    pages, bought = items(dataset), service.item_names[0]
    for step, page in enumerate(pages[:5]):
        assert call("POST", f"{url}/sessions/b/events", {"item": page, "time": 100 + 7 * step})[0] == 200
    status, _ = call("POST", f"{url}/sessions/b/events", {"item": bought, "time": 140, "type": "purchase"})
    assert status == 200
    [(prefix, label)] = list(read_samples(tmp_path / "samples.jsonl"))
    assert label == 0 and len(prefix.window_pages) == WINDOW and sum(prefix.history_views.values()) == 2
    assert prefix.window_theta[-1] == 12.0  # the newest view's dwell: the gap to the purchase
    status, body = call("POST", f"{url}/sessions/b/events", {"item": pages[0], "time": 150})
    assert status == 409 and "ended" in body["error"]


@pytest.mark.parametrize(("path", "body", "status", "words"), [
    ("/sessions/x/events", {"time": 1}, 422, "item"),
    ("/sessions/x/events", {"item": ["a"], "time": 1}, 422, "item"),
    ("/sessions/x/events", {"item": "1", "time": True}, 422, "time"),
    ("/sessions/x/events", {"item": "1", "time": "yesterday"}, 422, "date-time"),
    ("/sessions/x/events", {"item": "1", "time": 1, "type": "click"}, 422, "type"),
    ("/sessions/x/events", {"item": "1", "time": 1, "colour": "red"}, 422, "colour"),
    ("/sessions/x/events?k=0", {"item": "1", "time": 1}, 422, "k"),
    ("/sessions/x/events?k=abc", {"item": "1", "time": 1}, 422, "k"),
    ("/sessions/x/events", None, 422, "body"),
    ("/sessions/x/events", "[1, 2]", 422, "body"),
])
def test_bad_requests_are_one_line_4xx(server: tuple[str, SessionService], path: str, body: object,
                                       status: int, words: str) -> None:
    url, _ = server
    raw = body.encode() if isinstance(body, str) else None
    got, answer = call("POST", url + path, None if raw else body, raw=raw)
    assert got == status, answer
    assert set(answer) == {"error"} and "\n" not in answer["error"] and words in answer["error"], answer


def test_a_refused_event_changes_nothing(server: tuple[str, SessionService]) -> None:
    url, service = server
    assert call("POST", f"{url}/sessions/q/events?k=999", {"item": "1", "time": 5})[0] == 422
    assert service.store.load("q") is None
    assert call("POST", f"{url}/sessions/q/events", {"item": "1", "time": 5})[0] == 200
    assert call("POST", f"{url}/sessions/q/events", {"item": "1", "time": 4})[0] == 422
    state = service.store.load("q")
    assert state is not None and state.events == 1


def test_time_going_backwards_unknown_sessions_and_sizes(server: tuple[str, SessionService]) -> None:
    url, _ = server
    assert call("POST", f"{url}/sessions/t/events", {"item": "nope", "time": 50})[0] == 200  # OOV page
    status, answer = call("POST", f"{url}/sessions/t/events", {"item": "nope", "time": 49})
    assert status == 422 and "before" in answer["error"]
    assert call("GET", f"{url}/sessions/never/recommendations")[0] == 404
    assert call("POST", f"{url}/sessions/never/end")[0] == 404
    status, answer = call("POST", f"{url}/sessions/t/events", raw=b'{"item": "' + b"a" * MAX_BODY_BYTES + b'"}')
    assert status == 413 and "bytes" in answer["error"]
    for step in range(49):
        assert call("POST", f"{url}/sessions/t/events", {"item": "nope", "time": 50 + step})[0] == 200
    status, answer = call("POST", f"{url}/sessions/t/events", {"item": "nope", "time": 200})
    assert status == 413 and "50 events" in answer["error"]


def test_the_docs_describe_the_hand_checked_event_route(server: tuple[str, SessionService]) -> None:
    url, _ = server
    status, docs = call("GET", f"{url}/openapi.json")
    route = docs["paths"]["/sessions/{session}/events"]["post"]
    schema = route["requestBody"]["content"]["application/json"]["schema"]
    assert status == 200 and set(schema["required"]) == {"item", "time"} and "user" in schema["properties"]
    assert {p["name"] for p in route["parameters"]} == {"session", "k"}
    status, answer = call("POST", f"{url}/sessions/%01/events", {"item": "1", "time": 1})
    assert status == 422 and answer["error"].startswith("session:")


def test_admin_routes_want_the_token_when_one_is_set(dataset: Path, tmp_path: Path) -> None:
    service = make_service(dataset, SqliteStore(tmp_path / "s.sqlite", 60), tmp_path / "samples.jsonl")
    app = create_app(service, lambda: {"reloaded": True}, admin_token="sesame")
    with ServerThread(app) as running:
        assert call("POST", f"{running.url}/admin/reload")[0] == 401
        assert call("POST", f"{running.url}/admin/reload", headers={"Authorization": "Bearer nope"})[0] == 401
        assert call("POST", f"{running.url}/admin/reload", headers={"Authorization": "Bearer sesame"})[0] == 200
        assert call("GET", f"{running.url}/openapi.json")[1]["info"]["title"] == "drnngen serve"


def drive(service: SessionService, dataset: Path) -> list[tuple[str, float]]:
    pages = items(dataset)
    for step in range(6):
        service.event("r", Event(pages[step % 4], 10.0 * step, user="u9"), 5)
    return service.recommendations("r", 5)


def test_a_restart_on_the_same_sqlite_file_keeps_the_session(dataset: Path, tmp_path: Path) -> None:
    first = make_service(dataset, SqliteStore(tmp_path / "state.sqlite", 3600), tmp_path / "samples.jsonl")
    before = drive(first, dataset)
    first.store.close()
    second = make_service(dataset, SqliteStore(tmp_path / "state.sqlite", 3600), tmp_path / "samples.jsonl")
    assert second.recommendations("r", 5) == before
    state = second.store.load("r")
    assert state is not None and state.events == 6 and state.user == "u9"


def test_a_request_racing_a_reload_asks_the_new_scorer(dataset: Path, tmp_path: Path) -> None:
    service = make_service(dataset, SqliteStore(tmp_path / "state.sqlite", 3600), tmp_path / "samples.jsonl")
    fresh = Projection(service.model.manifest.items)

    def closed(_: Mapping[str, np.ndarray]) -> np.ndarray:
        service.swap(service.model, fresh)  # the reload lands while this request holds the old scorer
        raise ForwardClosed("closed")

    service.swap(service.model, closed)
    assert len(service.event("z", Event(items(dataset)[0], 1.0), 4)) == 4
    service.swap(service.model, closed)  # the HTTP route's path, awaiting the score
    assert len(asyncio.run(service.event_async("z", Event(items(dataset)[0], 2.0), 4))) == 4


def check_purchase_order(store: StateStore) -> None:
    """A user's classes once each, in the order of their latest purchase (how `prepare`
    orders them: the sparse layout keeps the latest U)."""
    state = SessionState(start=0.0, last=0.0)
    for when, item in ((1.0, 3), (2.0, 1), (3.0, 3), (9.0, 4)):
        store.save(f"buy{when}", state, ("w", when, item))
    assert store.user_items("w", 5.0) == [1, 3] and store.user_items("w", 10.0) == [1, 3, 4]
    assert store.user_items("w", 1.0) == [] and store.user_items("nobody", 10.0) == []


def test_sqlite_keeps_purchases_in_order(tmp_path: Path) -> None:
    check_purchase_order(SqliteStore(tmp_path / "state.sqlite", 60))


def test_idle_sessions_expire(dataset: Path, tmp_path: Path) -> None:
    service = make_service(dataset, SqliteStore(tmp_path / "state.sqlite", 0.5), tmp_path / "samples.jsonl")
    drive(service, dataset)
    assert service.store.count() == 1
    time.sleep(0.7)
    assert service.store.load("r") is None and service.store.expire() == 1 and service.store.count() == 0


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (`make system-deps` installs it)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 20
        while True:
            try:
                RedisStore(url, 60).close()
                break
            except Exception:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_two_servers_share_sessions_through_redis(dataset: Path, tmp_path: Path, redis_url: str) -> None:
    one = make_service(dataset, RedisStore(redis_url, 3600), tmp_path / "a.jsonl")
    two = make_service(dataset, RedisStore(redis_url, 3600), tmp_path / "b.jsonl")
    before = drive(one, dataset)
    assert two.recommendations("r", 5) == before
    sqlite = make_service(dataset, SqliteStore(tmp_path / "s.sqlite", 3600), tmp_path / "c.jsonl")
    assert drive(sqlite, dataset) == before  # the same state, whichever store keeps it
    # a purchase of u9 counts for u9's later sessions, on the other server too
    one.event("p", Event(one.item_names[3], 500.0, "purchase", "u9"), 5)
    two.event("later", Event(items(dataset)[0], 600.0, user="u9"), 5)
    state = two.store.load("later")
    assert state is not None and state.user_items == [3]


def test_redis_keeps_purchases_in_order(redis_url: str) -> None:
    check_purchase_order(RedisStore(redis_url, 60))


def test_redis_expires_idle_sessions(dataset: Path, tmp_path: Path, redis_url: str) -> None:
    service = make_service(dataset, RedisStore(redis_url, 1), tmp_path / "a.jsonl")
    drive(service, dataset)
    assert service.store.count() == 1
    time.sleep(2.2)
    assert service.store.load("r") is None and service.store.count() == 0


@pytest.mark.parametrize(("args", "words"), [
    (["serve", "{tmp}/nothing-here"], "no such run folder"),
    (["serve", "{tmp}", "--store", "postgres://x"], "expected sqlite:PATH or redis://"),
    (["serve", "{tmp}", "--store", "redis://h:99999/0"], "--store"),
    (["serve", "{tmp}", "--port", "{busy}"], "in use"),
    (["serve", "{tmp}", "--port", "0"], "--port"),
    (["update", "{tmp}/nothing-here", "--samples", "{tmp}/x.jsonl"], "no such run folder"),
    (["update", "{tmp}", "--samples", "{tmp}/x.jsonl", "--iters", "0"], "--iters"),
])
def test_cli_mistakes_are_one_line_exit_2(tmp_path: Path, args: list[str], words: str) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        filled = [a.format(tmp=tmp_path, busy=busy.getsockname()[1]) for a in args]
        result = CliRunner().invoke(cli, filled)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], result.output
