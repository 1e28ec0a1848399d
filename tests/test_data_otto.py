"""The real OTTO sample (../shared/data/otto-sample) converts, and the manifest's numbers match
a hand count of its sessions and orders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from drnngen.data.readers import LogSpec, read_log
from tests.data_support import OTTO_SAMPLE, quiet, read_split, run_prepare

pytestmark = pytest.mark.skipif(not OTTO_SAMPLE.is_file(),
                                reason=f"the OTTO sample is not beside the repository ({OTTO_SAMPLE})")


def _sessions() -> list[dict]:
    with OTTO_SAMPLE.open() as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_manifest_matches_a_hand_count(tmp_path: Path) -> None:
    sessions = _sessions()
    events = [e for s in sessions for e in s["events"]]
    orders = [e for e in events if e["type"] == "orders"]
    # split: sessions by first event time (ties by id), 60/20/20
    ordered = sorted(sessions, key=lambda s: (min(e["ts"] for e in s["events"]), s["session"]))
    cut1, cut2 = round(len(ordered) * 0.6), round(len(ordered) * 0.8)
    splits = {"train": ordered[:cut1], "val": ordered[cut1:cut2], "test": ordered[cut2:]}
    # classes: the items ordered in the train split (all of them: far fewer than --max-items)
    train_items = {e["aid"] for s in splits["train"] for e in s["events"] if e["type"] == "orders"}

    def samples(split: list[dict]) -> list[int]:
        """Label (aid) of every sample: cut before the first order, first ordered aid in vocabulary."""
        labels = []
        for s in split:
            timeline = sorted(enumerate(s["events"]), key=lambda p: (p[1]["ts"], p[1]["type"] == "orders", p[0]))
            kinds = [e["type"] for _, e in timeline]
            if "orders" not in kinds:
                continue
            first = kinds.index("orders")
            known = [e["aid"] for _, e in timeline if e["type"] == "orders" and e["aid"] in train_items]
            if first > 0 and known:
                labels.append(known[0])
        return labels

    report = run_prepare(LogSpec("otto", OTTO_SAMPLE), tmp_path / "otto", window=3)
    data = report.manifest.data
    assert (len(sessions), len(events), len(orders)) == (20, 862, 10)  # as the sample's README says
    assert data["counts"]["sessions"] == len(sessions)
    assert data["counts"]["events"] == len(events)
    assert data["counts"]["purchases"] == len(orders)
    assert data["counts"]["page_views"] == len(events) - len(orders)  # clicks and carts are page views
    assert report.manifest.items == len(train_items)
    item_keys = report.manifest.item_keys()
    for name, split in splits.items():
        labels = samples(split)
        assert data["splits"][name]["sessions"] == len(split)
        assert data["splits"][name]["purchase_sessions"] == sum(
            any(e["type"] == "orders" for e in s["events"]) for s in split)
        assert report.manifest.samples[name] == len(labels)
        got = read_split(report.sources[name]).get("label", np.empty(0))
        assert [item_keys[int(c)] for c in got] == labels
    assert report.manifest.train_samples == 3  # sessions 0, 3 and 4 end in orders, all in train


def test_every_sample_ends_right_before_its_first_order(tmp_path: Path) -> None:
    report = run_prepare(LogSpec("otto", OTTO_SAMPLE), tmp_path / "otto", window=2)
    page_keys = report.manifest.page_keys()
    rows = read_split(report.sources["train"])
    first_orders = []
    for s in _sessions():
        kinds = [e["type"] for e in s["events"]]
        if "orders" in kinds:
            before = [e["aid"] for e in s["events"][: kinds.index("orders")]]
            first_orders.append(before[-2:])
    shown = [[page_keys[int(rows[f"page_{t}"][i])] for t in range(2)] for i in range(len(rows["label"]))]
    assert shown == first_orders


def test_non_canonical_json_lines_read_the_same(tmp_path: Path) -> None:
    """Spaces, other key order and escapes go through json.loads and give the same events."""
    lines = OTTO_SAMPLE.read_text().splitlines()
    odd = [json.dumps(json.loads(line)) if i % 2 else line for i, line in enumerate(lines)]  # ", " and ": "
    odd[3] = json.dumps({"events": json.loads(lines[3])["events"], "session": json.loads(lines[3])["session"]})
    path = tmp_path / "odd.jsonl"
    path.write_text("\n".join(odd) + "\n")
    canonical = read_log(LogSpec("otto", OTTO_SAMPLE), quiet)
    mixed = read_log(LogSpec("otto", path), quiet)
    key = lambda log: sorted(zip(log.session.tolist(), log.time.tolist(), log.item.tolist(), log.kind.tolist(),  # noqa: E731
                                 strict=True))
    assert key(mixed) == key(canonical)


def test_canonical_lines_take_the_vectorised_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from drnngen.data import otto

    def refuse(*_: object) -> None:
        raise AssertionError("a canonical line went through json.loads")

    monkeypatch.setattr(otto, "_parse_line", refuse)
    assert len(read_log(LogSpec("otto", OTTO_SAMPLE), quiet)) == 862
