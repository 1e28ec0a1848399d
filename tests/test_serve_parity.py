"""The service's features equal `prepare`'s rows, for every prefix of every session.

A synthetic log (with users, so the FNN's user_items count) is prepared for both targets;
then every event is replayed through the service, sessions interleaved in time order.
The samples the service logs (the prefix held when the next event makes the newest dwell
known) must be `prepare`'s rows, row for row, in every split; and the row it scores after
each event must be that prefix with the newest dwell given by the last-event rule.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from drnngen.data.live import live_rows, newest_dwell, parse_time, view_dwell
from drnngen.data.sessions import BuildOptions, DwellScale
from drnngen.data.windows import DENSE, SPARSE, SampleLayout, WindowFiles
from drnngen.errors import UserError
from drnngen.serving.samples import SampleLog, read_samples
from drnngen.serving.service import ApiError, SessionService
from drnngen.serving.state import SessionState, prefix_from_json
from drnngen.serving.store import SqliteStore
from tests.data_support import read_split, run_prepare, synth_log, yoochoose_spec
from tests.serve_support import model_without_net, replay

WINDOW = 3
SPLITS = ("train", "val", "test")
ROUNDED = ("history", "history_weights")  # the history mixture's weights (dense row or sparse pairs)


class Recorder:
    """A scorer stand-in: keeps the last row it was asked to score, answers uniform scores."""

    def __init__(self, items: int) -> None:
        self.items = items
        self.last: dict[str, np.ndarray] = {}

    def __call__(self, rows: Mapping[str, np.ndarray]) -> np.ndarray:
        self.last = {name: np.array(values) for name, values in rows.items()}
        return np.full((1, self.items), 1.0 / self.items, np.float32)


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_log(tmp_path_factory.mktemp("serve-log"), sessions=400, seed=3, items=80, categories=6)


@pytest.mark.parametrize(("target", "layout"), [("purchase", SPARSE), ("next-item", SPARSE), ("purchase", DENSE),
                                               ("next-item", SampleLayout(2, 1))])
def test_every_prefix_equals_prepares_row(log: Path, tmp_path: Path, target: str, layout: SampleLayout) -> None:
    """Both targets, in the sparse layout (also with K and U small enough to cut) and the dense one."""
    check_parity(log, tmp_path, BuildOptions(target=target, max_pages=60, max_items=25), WINDOW, layout)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["purchase", "next-item"])
def test_every_prefix_of_the_demo_log(tmp_path: Path, target: str) -> None:
    """The same on `make demo`'s log: synth --sessions 4000 --seed 7 --items 300, prepare
    --max-pages 400 --max-items 60, window 4."""
    log = synth_log(tmp_path / "log", sessions=4000, seed=7, items=300)
    check_parity(log, tmp_path, BuildOptions(target=target, max_pages=400, max_items=60), 4)


def check_parity(log: Path, tmp_path: Path, options: BuildOptions, window: int,
                 layout: SampleLayout = SPARSE) -> None:
    spec, target = yoochoose_spec(log), options.target
    report = run_prepare(spec, tmp_path / "data", window=window, build=options, layout=layout)
    manifest = report.manifest
    model = model_without_net(tmp_path / "data", window)
    recorder = Recorder(manifest.items)
    service = SessionService(model, recorder, SqliteStore(tmp_path / "state.sqlite", 1e9),
                             SampleLog(tmp_path / "samples.jsonl"))
    where: dict[str, tuple[int, int]] = {}
    held: dict[tuple[str, float], dict[str, np.ndarray]] = {}  # row scored after each view
    previous: dict[str, dict[str, np.ndarray]] = {}

    for replayed in replay(spec):
        where[replayed.session] = (replayed.split, replayed.rank)
        try:
            service.event(replayed.session, replayed.event, 5)
        except ApiError as exc:
            assert exc.status == 409 and target == "purchase", exc  # a view after the purchase
            continue
        if replayed.session in previous:
            held[(replayed.session, replayed.event.time)] = previous[replayed.session]
        if replayed.event.kind == "view":
            previous[replayed.session] = recorder.last

    lines = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    ordered = sorted(range(len(lines)), key=lambda i: (where[lines[i]["session"]], i))
    for number, name in enumerate(SPLITS):
        mine = [lines[i] for i in ordered if where[lines[i]["session"]][0] == number]
        expected = read_split(report.sources[name])
        assert len(mine) == len(expected["label"]) == manifest.samples[name] > 0
        got = live_rows([prefix_from_json(line["prefix"]) for line in mine], model.window_files)
        got["label"] = np.array([line["label"] for line in mine], np.float32)
        assert set(got) == set(expected)
        for key, values in expected.items():
            if key in ROUNDED:  # the aggregate sums in another order: float32 rounding
                np.testing.assert_allclose(got[key], values, rtol=0, atol=2e-7, err_msg=key)
            else:
                np.testing.assert_array_equal(got[key], values, err_msg=f"{name}: {key}")
        weights = next(expected[key] for key in ROUNDED if key in expected)
        assert np.count_nonzero(weights) > 0 and len(np.unique(expected["user_items"])) > 1

    # the row scored after the view: the same, with the newest dwell by the last-event rule
    last = manifest.dwell.normalise(np.float32(newest_dwell(manifest.dwell)))
    checked = 0
    for line in lines:
        row = held.get((line["session"], line["time"]))
        if row is None:
            continue
        sample = live_rows([prefix_from_json(line["prefix"])], model.window_files)
        sample[f"dwell_{window - 1}"][:] = last
        assert set(row) == set(sample)
        for key in sample:
            if key in ROUNDED:
                np.testing.assert_allclose(row[key], sample[key], rtol=0, atol=2e-7, err_msg=key)
            else:
                np.testing.assert_array_equal(row[key], sample[key], err_msg=key)
        checked += 1
    assert checked > len(lines) // 2


def test_state_survives_its_json_form_and_costs_o_w_per_event() -> None:
    state = SessionState(start=0.0, last=0.0)
    for step, page in enumerate([5, 6, 5, 7, 8, 5, 9]):
        state.view(page, 10.0 * step, WINDOW, 1800.0)
        assert len(state.pages) <= WINDOW and len(state.theta) == len(state.pages) - 1
    assert state.pages == [8, 5, 9]
    assert state.history_theta == {5: 20.0, 6: 10.0, 7: 10.0} and state.history_views == {5: 2, 6: 1, 7: 1}
    again = SessionState.from_json(json.loads(json.dumps(state.to_json())))
    assert again == state


def test_dwell_rules() -> None:
    scale = DwellScale(cap=100.0, last_event=42.5, log_min=0.0, log_max=5.0)
    assert view_dwell(250.0, 100.0) == 100.0 and view_dwell(-1.0, 100.0) == 0.0
    assert newest_dwell(scale) == 42.5


def test_uniform_history_when_every_old_dwell_is_zero() -> None:
    state = SessionState(start=0.0, last=0.0)
    for page in [4, 4, 6, 2, 3, 5]:
        state.view(page, 0.0, WINDOW, 1800.0)  # all at one instant: θ = 0
    rows = live_rows([state.prefix(1.0)], WindowFiles(WINDOW, 10, 3, DwellScale(1800.0, 1.0, 0.0, 7.0), 1))
    history = rows["history"][0]
    assert history[4] == pytest.approx(2 / 3) and history[6] == pytest.approx(1 / 3) and history.sum() == 1.0


def test_times() -> None:
    assert parse_time("2014-04-07T10:51:09.277Z") == pytest.approx(1396867869.277)
    assert parse_time(12.5) == 12.5
    for bad in ("yesterday", "2014-02-31T00:00:00Z", True, float("nan"), ""):
        with pytest.raises(UserError):
            parse_time(bad)  # type: ignore[arg-type]


def test_sample_log_skips_a_line_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    samples = SampleLog(path)
    state = SessionState(start=0.0, last=0.0)
    state.view(3, 0.0, WINDOW, 1800.0)
    samples.append("a", state.prefix(2.0), 4, 1.0)
    samples.close()
    with path.open("a") as out:
        out.write('{"session": "b", "lab')
    assert [(p.window_pages, label) for p, label in read_samples(path)] == [((3,), 4)]
