"""The service with the real net: scores equal Caffe's deploy forward on `prepare`'s rows,
`drnngen serve` survives a kill -9, and update + reload keep every session."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from drnngen.cli import cli
from drnngen.codegen.config import load_config, to_mapping
from drnngen.data.manifest import load_manifest
from drnngen.data.sessions import BuildOptions
from drnngen.runner import forward_scores
from drnngen.runner.numpy_net import NumpyNet
from drnngen.runner.run import CaffeError
from drnngen.runner.serving import ForwardServer
from drnngen.serving.model import load_model, read_current
from drnngen.serving.samples import SampleLog
from drnngen.serving.service import ApiError, SessionService
from drnngen.serving.store import SqliteStore
from tests.data_support import read_split, run_prepare, synth_log, yoochoose_spec
from tests.golden_tool import EXAMPLES
from tests.serve_support import call, free_port, replay, wait_for

pytestmark = pytest.mark.caffe
DRNNGEN = [sys.executable, "-c", "from drnngen.cli import main; main()"]


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_log(tmp_path_factory.mktemp("serve-caffe-log"), sessions=500, seed=6, items=60, categories=5)


def _tuned(log: Path, root: Path, **model: Any) -> Path:
    """A real tuning run of two candidates with the FNN on (so the users' purchases count)
    and `model`'s further keys."""
    from drnngen.tuner import Resources, TuneParams, tune
    from drnngen.tuner.space import IntRange, SearchSpace, space_mapping

    run_prepare(yoochoose_spec(log), root / "data", window=3, build=BuildOptions(max_pages=50, max_items=20))
    base = to_mapping(load_config(EXAMPLES / "small.yaml"))
    base["model"].update(fnn={"layers": 1, "widths": [16]}, **model)
    space = SearchSpace(states=IntRange(3, 3), layers=IntRange(1, 2), shortcut=IntRange(0, 0),
                        activations=("ReLU", "TanH"), widths=(16,))
    params = TuneParams(data=str(root / "data"), generations=0, population=2, pc=0.8, pm=0.3, strategy="literal",
                        seed=3, iterations=150, epochs=None, mode="cpu", timeout_s=300.0, base=base,
                        space=space_mapping(space))
    summary = tune(root / "run", params, Resources(workers=1, cache_dir=root / "cache"))
    assert summary.best is not None and summary.best.outcome.ok
    return root / "run"


@pytest.fixture(scope="module")
def tuned_run(log: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The paper's net with the FNN."""
    return _tuned(log, tmp_path_factory.mktemp("serve-caffe-run"))


@pytest.fixture(scope="module")
def tuned_options_run(log: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """With the options the tuner's default base turns on for shop logs: the repeat and neighbour paths."""
    return _tuned(log, tmp_path_factory.mktemp("serve-caffe-options"), repeat=True, neighbours=True)


@pytest.mark.parametrize("engine", ["numpy", "caffe"])
@pytest.mark.parametrize("run", ["tuned_run", "tuned_options_run"])
def test_scores_equal_caffes_deploy_forward_on_prepares_rows(run: str, engine: str, log: Path, tmp_path: Path,
                                                             request: pytest.FixtureRequest) -> None:
    """Both engines: the NumPy one `serve` uses by default, and the Caffe child."""
    tuned_run: Path = request.getfixturevalue(run)
    model = load_model(tuned_run)
    if run == "tuned_options_run":
        assert model.config.model.repeat and model.config.model.neighbours
    manifest = model.manifest
    forward: ForwardServer | NumpyNet = (NumpyNet(model.deploy, model.weights) if engine == "numpy"
                                         else ForwardServer(model.deploy, model.weights))
    try:
        service = SessionService(model, forward.scores, SqliteStore(tmp_path / "state.sqlite", 1e9),
                                 SampleLog(tmp_path / "samples.jsonl"))
        answers: dict[tuple[str, float], list[tuple[str, float]]] = {}
        where: dict[str, tuple[int, int]] = {}
        for replayed in replay(yoochoose_spec(log)):
            where[replayed.session] = (replayed.split, replayed.rank)
            if replayed.split != 2 and replayed.event.kind == "view":
                continue  # of the other splits' sessions only the users' purchases count
            try:
                answer = service.event(replayed.session, replayed.event, manifest.items)
            except ApiError as exc:  # a view after the purchase
                assert exc.status == 409
                continue
            answers[(replayed.session, replayed.event.time)] = answer
    finally:
        forward.close()
    lines = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    lines = [line for line in lines if where[line["session"]][0] == 2]
    lines.sort(key=lambda line: where[line["session"]])
    test_list = manifest.sources(model.window)["test"]
    expected = forward_scores(model.deploy, model.weights, test_list, "prob")
    assert len(lines) == len(expected) == manifest.test_samples > 20
    assert np.count_nonzero(read_split(test_list)["user_items"]) > 0
    names = service.item_names
    for line, row in zip(lines, expected, strict=True):
        got = dict(answers[(line["session"], line["time"])])
        np.testing.assert_allclose([got[name] for name in names], row, rtol=0, atol=1e-5)


def test_micro_batched_forwards_equal_single_ones(tuned_run: Path) -> None:
    """Requests that wait while the child computes share one forward pass; each row's
    scores are those of its own batch-1 forward (and so Caffe's, as the test above checks)."""
    model = load_model(tuned_run)
    rows = read_split(model.manifest.sources(model.window)["test"])
    count = min(40, len(rows["label"]))
    one = [{name: values[i:i + 1] for name, values in rows.items()} for i in range(count)]
    forward = ForwardServer(model.deploy, model.weights, max_batch=16)
    try:
        single = np.concatenate([forward.scores(row) for row in one])
        before = forward.forwards
        futures = [forward.submit(row) for row in one]  # queued faster than the child answers
        batched = np.concatenate([future.result(timeout=120) for future in futures])
        passes = forward.forwards - before
    finally:
        forward.close()
    assert count / 16 <= passes < count, passes
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-5)


def test_a_dead_child_fails_its_batch_and_the_next_starts_another(tuned_run: Path) -> None:
    model = load_model(tuned_run)
    rows = read_split(model.manifest.sources(model.window)["test"])
    one = {name: values[:1] for name, values in rows.items()}
    forward = ForwardServer(model.deploy, model.weights)
    try:
        first = forward.scores(one)
        pid = forward.child_pid
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        with pytest.raises(CaffeError, match="stopped"):
            forward.scores(one)
        np.testing.assert_allclose(forward.scores(one), first, rtol=0, atol=1e-6)
        assert forward.child_pid not in (None, pid)
    finally:
        forward.close()


def test_the_served_model(tuned_run: Path) -> None:
    model = load_model(tuned_run)
    described = model.describe()
    assert (described["w"], described["M"], described["N"]) == (3, 50, 20)
    assert described["update"] == 0 and described["fitness"] > 0


@pytest.fixture
def server(tuned_run: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, list[str]]]:
    """`drnngen serve` on the tuned run: its URL and [pid]; with `--engine` the test's
    parameter names (indirect), else the default engine."""
    port = free_port()
    engine = ["--engine", request.param] if hasattr(request, "param") else []
    args = [*DRNNGEN, "serve", str(tuned_run), "--port", str(port),
            "--store", f"sqlite:{tmp_path / 'state.sqlite'}", "--samples", str(tmp_path / "samples.jsonl"), *engine]
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        procs.append(subprocess.Popen(args, start_new_session=True, stderr=subprocess.DEVNULL))
        wait_for(f"http://127.0.0.1:{port}/health")

    start()
    try:
        yield f"http://127.0.0.1:{port}", [str(procs[-1].pid)]
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)


def serve_again(tuned_run: Path, tmp_path: Path, url: str, engine: str) -> subprocess.Popen[bytes]:
    port = url.rsplit(":", 1)[1]
    proc = subprocess.Popen([*DRNNGEN, "serve", str(tuned_run), "--port", port,
                             "--store", f"sqlite:{tmp_path / 'state.sqlite'}",
                             "--samples", str(tmp_path / "samples.jsonl"), "--engine", engine],
                            start_new_session=True, stderr=subprocess.DEVNULL)
    wait_for(f"{url}/health")
    return proc


def pages_of(tuned_run: Path) -> list[str]:
    manifest = load_manifest(load_model(tuned_run).manifest.root)
    return [str(k) for k in manifest.page_keys()[2:]]


@pytest.mark.parametrize("server", ["numpy", "caffe"], indirect=True)
def test_kill_9_then_restart_loses_no_acknowledged_event(server: tuple[str, list[str]], tuned_run: Path,
                                                         tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url, (pid,) = server
    pages = pages_of(tuned_run)
    acknowledged = 0
    for session in range(5):
        for step in range(4 + session):
            status, _ = call("POST", f"{url}/sessions/k{session}/events",
                             {"item": pages[(session + step) % len(pages)], "time": 100 + 9 * step, "user": "u1"})
            assert status == 200
            acknowledged += 1
    before = {s: call("GET", f"{url}/sessions/k{s}/recommendations?k=20")[1] for s in range(5)}
    os.killpg(int(pid), signal.SIGKILL)
    proc = serve_again(tuned_run, tmp_path, url, request.node.callspec.params["server"])
    try:
        after = {s: call("GET", f"{url}/sessions/k{s}/recommendations?k=20")[1] for s in range(5)}
        assert after == before
        store = SqliteStore(tmp_path / "state.sqlite", 1e9)
        assert sum(store.load(f"k{s}").events for s in range(5)) == acknowledged  # type: ignore[union-attr]
        store.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_update_then_reload_keeps_every_session(server: tuple[str, list[str]], tuned_run: Path,
                                                tmp_path: Path) -> None:
    url, _ = server
    pages, bought = pages_of(tuned_run), [str(k) for k in load_model(tuned_run).manifest.item_keys()]
    for session in range(12):  # completed sessions: their samples go to the log
        for step in range(3):
            call("POST", f"{url}/sessions/c{session}/events", {"item": pages[(session * 3 + step) % len(pages)],
                                                               "time": 10 * step})
        assert call("POST", f"{url}/sessions/c{session}/events",
                    {"item": bought[session % len(bought)], "time": 40, "type": "purchase"})[0] == 200
    for step in range(3):  # a live session across the update
        assert call("POST", f"{url}/sessions/live/events", {"item": pages[step], "time": 5 * step})[0] == 200
    before = call("GET", f"{url}/sessions/live/recommendations?k=20")[1]
    result = CliRunner().invoke(cli, ["update", str(tuned_run), "--samples", str(tmp_path / "samples.jsonl"),
                                      "--iters", "20"])
    assert result.exit_code == 0, result.output
    assert "12 samples" in result.output
    swapped = "swapped in" in result.output
    pointer = read_current(tuned_run)
    assert (pointer is not None) == swapped
    statuses: list[int] = []

    def traffic() -> None:  # events keep coming while the net is swapped
        for step in range(40):
            statuses.append(call("POST", f"{url}/sessions/busy/events", {"item": pages[step % 7], "time": step})[0])

    busy = threading.Thread(target=traffic)
    busy.start()
    status, reloaded = call("POST", f"{url}/admin/reload")
    busy.join()
    assert status == 200 and reloaded["update"] == (1 if swapped else 0)
    assert statuses == [200] * 40
    status, after = call("GET", f"{url}/sessions/live/recommendations?k=20")
    assert status == 200 and len(after["recommendations"]) == 20
    if not swapped:
        assert after == before
    assert call("POST", f"{url}/sessions/live/events", {"item": pages[5], "time": 30})[0] == 200
    assert call("GET", f"{url}/model")[1]["update"] == (1 if swapped else 0)


def test_update_mistakes_are_one_line(tuned_run: Path, tmp_path: Path) -> None:
    from drnngen.serving.model import serving_dir
    from drnngen.serving.update import _update_lock

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("not json\n")
    cases = [(empty, "no complete sample"), (garbage, "not a sample line"), (tmp_path / "absent.jsonl", "cannot read")]
    for samples, words in cases:
        result = CliRunner().invoke(cli, ["update", str(tuned_run), "--samples", str(samples)])
        assert result.exit_code == 2 and words in result.output and len(result.output.splitlines()) == 1, result.output
    with _update_lock(serving_dir(tuned_run)):
        result = CliRunner().invoke(cli, ["update", str(tuned_run), "--samples", str(empty)])
    assert result.exit_code == 2 and "another `drnngen update`" in result.output, result.output
