"""Round trip: a small synthetic log → prepare → HDF5, against arrays rebuilt by hand.

The reference below is written from the spec (README `## Data`, shared MODEL.md) in plain
Python over the events — dicts, lists, loops — sharing no code with drnngen.data, and
the HDF5 rows must match it exactly (ids, labels, multi-hot) or to float32 precision
(dwell, history), in the dense layout and in the sparse one (K largest history pairs,
renormalised; the U latest distinct earlier purchases), with K and U small enough to cut.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from drnngen.data.sessions import BuildOptions
from drnngen.data.windows import DENSE, SampleLayout
from tests.data_support import read_split, run_prepare, synth_log, yoochoose_spec

CAP = 600.0  # small, so that the synthetic log's long breaks are capped


def _iso(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _events(folder: Path) -> list[dict[str, Any]]:
    rows = []
    with (folder / "clicks.dat").open() as handle:
        for row in csv.reader(handle):
            rows.append({"session": int(row[0]), "time": _iso(row[1]), "kind": 0, "item": int(row[2])})
    with (folder / "buys.dat").open() as handle:
        for row in csv.reader(handle):
            rows.append({"session": int(row[0]), "time": _iso(row[1]), "kind": 1, "item": int(row[2])})
    for order, row in enumerate(rows):
        row["order"] = order
    return rows


def _users(folder: Path) -> dict[int, str]:
    with (folder / "users.csv").open() as handle:
        return {int(row["session"]): row["user"] for row in csv.DictReader(handle)}


def _top(counter: Counter[int], limit: int) -> list[int]:
    return [key for key, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]


def reference(folder: Path, target: str, max_pages: int, max_items: int, window: int) -> dict[str, Any]:
    """Expected HDF5 rows per split, computed event by event."""
    sessions: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in _events(folder):
        sessions[event["session"]].append(event)
    for events in sessions.values():
        events.sort(key=lambda e: (e["time"], e["kind"], e["order"]))
    ordered = sorted(sessions, key=lambda s: (sessions[s][0]["time"], s))
    n = len(ordered)
    cut1, cut2 = round(n * 0.6), round(n * (0.6 + 0.2))
    split_of = {s: ("train" if i < cut1 else "val" if i < cut2 else "test") for i, s in enumerate(ordered)}
    train = [s for s in ordered if split_of[s] == "train"]

    # dwell: gap to the next event of the session, clipped to [0, CAP]; last event: median train gap
    theta: dict[tuple[int, int], float] = {}
    observed = []
    for s in ordered:
        events = sessions[s]
        for k in range(len(events) - 1):
            gap = min(max(events[k + 1]["time"] - events[k]["time"], 0.0), CAP)
            theta[s, k] = gap
            if split_of[s] == "train" and events[k]["kind"] == 0:
                observed.append(gap)
    last = statistics.median(observed)
    for s in ordered:
        theta[s, len(sessions[s]) - 1] = last
    train_logs = [math.log1p(theta[s, k]) for s in train for k, e in enumerate(sessions[s]) if e["kind"] == 0]
    lo, hi = min(train_logs), max(train_logs)

    views = Counter(e["item"] for s in train for e in sessions[s] if e["kind"] == 0)
    page_id = {item: 2 + rank for rank, item in enumerate(_top(views, max_pages - 1))}
    wanted = 1 if target == "purchase" else 0
    targets = Counter(e["item"] for s in train for e in sessions[s] if e["kind"] == wanted)
    class_of = {item: rank for rank, item in enumerate(_top(targets, max_items))}

    users = _users(folder)
    bought: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for s in ordered:
        for e in sessions[s]:
            if e["kind"] == 1 and e["item"] in class_of and s in users:
                bought[users[s]].append((e["time"], class_of[e["item"]]))

    rows: dict[str, list[dict[str, Any]]] = {"train": [], "val": [], "test": []}
    for s in ordered:
        events = sessions[s]
        indexed = [(k, e) for k, e in enumerate(events) if e["kind"] == 0]
        start = events[0]["time"]
        earlier = [(t, c) for t, c in bought.get(users.get(s, ""), []) if t < start]
        latest: dict[int, tuple[float, int]] = {}  # each class's latest purchase (sessions overlap in time)
        for order, (t, c) in enumerate(sorted(earlier, key=lambda tc: tc[0])):
            latest[c] = max(latest.get(c, (-math.inf, -1)), (t, order))
        history_classes = sorted(latest, key=lambda c: (-latest[c][0], -latest[c][1]))  # latest first
        for prefix, label in _candidates(events, indexed, target, class_of):
            rows[split_of[s]].append(_row(s, prefix, label, page_id, theta, (lo, hi), window, history_classes))
    return {"rows": rows, "pages": len(page_id) + 1, "items": len(class_of), "page_keys": list(page_id),
            "item_keys": list(class_of)}


def _candidates(
    events: list[dict[str, Any]], indexed: list[tuple[int, dict[str, Any]]], target: str, class_of: dict[int, int]
) -> list[tuple[list[tuple[int, dict[str, Any]]], int]]:
    """(visible page views, label class) of every sample of one session."""
    if target == "next-item":
        return [(indexed[:k], class_of[indexed[k][1]["item"]]) for k in range(1, len(indexed))
                if indexed[k][1]["item"] in class_of]
    purchases = [k for k, e in enumerate(events) if e["kind"] == 1]
    if not purchases:
        return []
    prefix = [(k, e) for k, e in indexed if k < purchases[0]]
    labels = [class_of[events[k]["item"]] for k in purchases if events[k]["item"] in class_of]
    return [(prefix, labels[0])] if prefix and labels else []


def _row(
    session: int,
    prefix: list[tuple[int, dict[str, Any]]],
    label: int,
    page_id: dict[int, int],
    theta: dict[tuple[int, int], float],
    scale: tuple[float, float],
    window: int,
    history_classes: list[int],
) -> dict[str, Any]:
    lo, hi = scale
    pages = [page_id.get(e["item"], 1) for _, e in prefix]
    dwell = [theta[session, k] for k, _ in prefix]
    pad = max(0, window - len(pages))
    shown = [0] * pad + pages[-window:]
    shown_dwell = [0.0] * pad + [min(max((math.log1p(d) - lo) / (hi - lo), 0.0), 1.0) for d in dwell[-window:]]
    older, older_dwell = pages[: max(0, len(pages) - window)], dwell[: max(0, len(pages) - window)]
    total = sum(older_dwell)
    weights = [d / total for d in older_dwell] if total > 0 else [1.0 / len(older) for _ in older]
    history: dict[int, float] = defaultdict(float)
    for page, weight in zip(older, weights, strict=True):
        history[page] += weight
    return {"pages": shown, "dwell": shown_dwell, "history": dict(history), "users": history_classes,
            "label": label}


def _compare(got: dict[str, np.ndarray], expected: list[dict[str, Any]], window: int, shape: tuple[int, int],
             layout: SampleLayout) -> float:
    """Assert the rows; returns the history mass the sparse layout dropped."""
    pages, items = shape
    assert len(got.get("label", [])) == len(expected)
    if not expected:
        return 0.0
    for t in range(window):
        assert got[f"page_{t}"].shape == (len(expected),)
        assert got[f"dwell_{t}"].shape == (len(expected), 1)
        np.testing.assert_array_equal(got[f"page_{t}"], [row["pages"][t] for row in expected])
        np.testing.assert_allclose(got[f"dwell_{t}"][:, 0], [row["dwell"][t] for row in expected], atol=1e-6)
    np.testing.assert_array_equal(got["label"], [row["label"] for row in expected])
    if layout.sparse:
        return _compare_sparse(got, expected, items, layout)
    assert got["history"].shape == (len(expected), pages + 1)
    assert got["user_items"].shape == (len(expected), items)
    history = np.zeros((len(expected), pages + 1))
    user_items = np.zeros((len(expected), items))
    for i, row in enumerate(expected):
        for page, weight in row["history"].items():
            history[i, page] = weight
        user_items[i, row["users"]] = 1
    np.testing.assert_allclose(got["history"], history, atol=1e-6)
    np.testing.assert_array_equal(got["user_items"], user_items)
    sums = got["history"].sum(axis=1)
    assert np.all((np.abs(sums - 1) < 1e-5) | (sums == 0))
    assert not got["history"][:, 0].any()
    return 0.0


def _compare_sparse(got: dict[str, np.ndarray], expected: list[dict[str, Any]], items: int,
                    layout: SampleLayout) -> float:
    k, u = layout.history_k, layout.user_items_k
    assert got["history_ids"].shape == got["history_weights"].shape == (len(expected), 1, k)
    assert got["user_items"].shape == (len(expected), 1, u)
    dropped = 0.0
    for i, row in enumerate(expected):
        ids, weights = got["history_ids"][i, 0].astype(int), got["history_weights"][i, 0]
        ranked = sorted(row["history"].items(), key=lambda pw: (-pw[1], pw[0]))
        kept, cut = ranked[:k], ranked[k:]
        assert list(ids[: len(kept)]) == [page for page, _ in kept]  # largest first, ties: smaller id
        assert not ids[len(kept):].any() and not weights[len(kept):].any()  # padding: (0, 0)
        mass = sum(weight for _, weight in kept)
        np.testing.assert_allclose(weights[: len(kept)], [w / mass for _, w in kept], atol=1e-6)
        dropped += sum(weight for _, weight in cut)
        classes = got["user_items"][i, 0].astype(int)
        shown = row["users"][:u]
        assert list(classes[: len(shown)]) == shown and (classes[len(shown):] == items).all()
    return dropped


@pytest.fixture(scope="module")
def log_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_log(tmp_path_factory.mktemp("roundtrip") / "log", sessions=400, seed=11, items=300, categories=12)


LAYOUTS = {"dense": DENSE, "sparse": SampleLayout(3, 2)}  # K and U small: rows get cut


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize(("target", "max_pages", "max_items"), [("purchase", 60, 25), ("next-item", 80, 40)])
def test_hdf5_rows_match_a_hand_rebuild(log_folder: Path, tmp_path: Path, target: str, max_pages: int,
                                        max_items: int, layout: str) -> None:
    expected_by_window = {w: reference(log_folder, target, max_pages, max_items, w) for w in (1, 3)}
    build = BuildOptions(target=target, max_pages=max_pages, max_items=max_items, dwell_cap=CAP)
    # a tiny file bound: every split spans several HDF5 files, read back through the list files
    report = run_prepare(yoochoose_spec(log_folder), tmp_path / "data", build=build, window=3,
                         file_bytes=8_000 if layout == "dense" else 800, layout=LAYOUTS[layout])
    manifest = report.manifest
    assert manifest.layout == LAYOUTS[layout]
    for window, expected in expected_by_window.items():
        assert (manifest.pages, manifest.items) == (expected["pages"], expected["items"])
        assert manifest.page_keys()[2:] == expected["page_keys"]
        assert manifest.item_keys() == expected["item_keys"]
        sources = manifest.sources(window)
        index = json.loads((sources["train"].parent / "index.json").read_text())
        for split, rows in expected["rows"].items():
            assert manifest.samples[split] == len(rows)
            dropped = _compare(read_split(sources[split]), rows, window, (manifest.pages, manifest.items),
                               LAYOUTS[layout])
            if layout == "sparse":  # the index (and for prepare's window the manifest) records the cut
                recorded = index["dropped"][split]
                assert recorded["history_mass_mean"] * len(rows) == pytest.approx(dropped, abs=1e-6)
                if window == 3:
                    assert manifest.data["layout"]["dropped"][split] == recorded
    assert len(report.sources["train"].read_text().splitlines()) > 1


def test_the_reference_exercises_the_edge_cases(log_folder: Path) -> None:
    """Guard on the fixture: padding, OOV pages, history rows and user history all occur."""
    rows = [r for rows in reference(log_folder, "purchase", 60, 25, 3)["rows"].values() for r in rows]
    assert any(r["pages"][0] == 0 for r in rows)  # left padding
    assert any(1 in r["pages"] for r in rows)  # out-of-vocabulary page
    assert any(r["history"] for r in rows) and any(not r["history"] for r in rows)
    assert any(r["users"] for r in rows) and any(not r["users"] for r in rows)
    # the sparse layout's cuts happen: more older pages than K = 3, more classes than U = 2
    assert any(len(r["history"]) > 3 for r in rows) and any(len(r["users"]) > 2 for r in rows)
