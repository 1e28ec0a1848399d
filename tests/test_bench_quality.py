"""`make quality`'s pure parts: MovieLens .inter → GRU4Rec log, and the table/verdict from evaluation.json."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from benchmarks import movielens
from benchmarks.bench_quality import (
    DRNN,
    LogResult,
    minutes_arg,
    quality_table,
    render_markdown,
    render_text,
    to_document,
    verdict_line,
)

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "7\t30\t4\t300\n"
    "3\t10\t5\t200\n"
    "7\t31\t1\t100\n"
    "3\t11\t3\t100\n"
    "7\t32\t2\t300\n"  # same second as item 30: file order stays
    "3\t12\t3\t150.0\n"
)


def _views(events: list[movielens.Event]) -> list[tuple[int, int, int, int]]:
    return [(e.session, e.item, e.time, e.user) for e in events]


def test_header_is_read_by_field_name_whatever_the_order_and_types() -> None:
    where = movielens.parse_header("timestamp:float\trating:float\titem_id:token\tuser_id:token\r\n")
    assert (where["user_id"], where["item_id"], where["timestamp"]) == (3, 2, 0)
    ratings = movielens.read_inter(["item_id:token\ttimestamp:float\tuser_id:token\n", "5\t9.0\t2\n"])
    assert ratings == [(2, 5, 9)]


def test_a_header_without_a_needed_field_is_refused() -> None:
    with pytest.raises(movielens.InterError, match="line 1: the header lacks timestamp"):
        movielens.parse_header("user_id:token\titem_id:token\trating:float\n")
    with pytest.raises(movielens.InterError, match="line 3"):
        movielens.read_inter([INTER.splitlines()[0], "1\t2\t3\t4", "1\tx\t3\t4"])
    with pytest.raises(movielens.InterError, match="empty"):
        movielens.read_inter([])


def test_each_users_ratings_sorted_by_time_are_one_session() -> None:
    events = movielens.to_sessions(movielens.read_inter(INTER.splitlines(keepends=True)))
    assert _views(events) == [
        (3, 11, 100, 3), (3, 12, 150, 3), (3, 10, 200, 3),
        (7, 31, 100, 7), (7, 30, 300, 7), (7, 32, 300, 7),
    ]


def test_chunks_cut_long_users_into_numbered_sessions() -> None:
    events = movielens.to_sessions(movielens.read_inter(INTER.splitlines()), chunk=2)
    assert [(e.session, e.user, e.item) for e in events] == [
        (1, 3, 11), (1, 3, 12), (2, 3, 10), (3, 7, 31), (3, 7, 30), (4, 7, 32)]
    with pytest.raises(ValueError):
        movielens.to_sessions([], chunk=-1)


def test_convert_writes_the_gru4rec_layout(tmp_path: Path) -> None:
    inter = tmp_path / "ml.inter"
    inter.write_text(INTER)
    out = tmp_path / "log" / "sessions.tsv"
    assert movielens.convert(inter, out) == (6, 2)
    lines = out.read_text().splitlines()
    assert lines[0].split("\t") == ["SessionId", "ItemId", "Time", "UserId"]
    assert lines[1:4] == ["3\t11\t100\t3", "3\t12\t150\t3", "3\t10\t200\t3"]


def test_fetch_uses_the_cache_and_extracts_only_the_member(tmp_path: Path) -> None:
    cached = movielens.cached_inter(tmp_path)
    assert cached == tmp_path / "datasets" / "ml-100k.inter"
    cached.parent.mkdir(parents=True)
    cached.write_text(INTER)
    assert movielens.fetch_ml100k(tmp_path, python="/nonexistent/python") == (cached, False)

    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(movielens.MEMBER, INTER)
        z.writestr("recbole/other.py", "x")
    target = tmp_path / "got.inter"
    movielens.extract_member(wheel, movielens.MEMBER, target)
    assert target.read_text() == INTER and [p.name for p in tmp_path.iterdir() if p.suffix == ".part"] == []
    with pytest.raises(RuntimeError, match="no member"):
        movielens.extract_member(wheel, "recbole/nope.inter", target)


def _evaluation(models: dict[str, tuple[float, float]]) -> dict[str, Any]:
    return {"context": {"window": 4, "items": 100}, "ks": [5, 20],
            "models": {name: {"samples": 50, "recall@5": 0.0, "recall@20": r, "mrr@5": 0.0, "mrr@20": m}
                       for name, (r, m) in models.items()}}


def test_the_verdict_compares_with_the_best_baseline_per_metric() -> None:
    table = quality_table(_evaluation({DRNN: (0.30, 0.10), "POP": (0.10, 0.02), "item-kNN": (0.25, 0.12),
                                       "SKNN": (0.28, 0.05)}))
    assert [row.model for row in table.rows] == [DRNN, "POP", "item-kNN", "SKNN"]
    recall, mrr = table.margins
    assert (recall.baseline, mrr.baseline) == ("SKNN", "item-kNN")
    assert recall.margin == pytest.approx(0.02) and recall.ok
    assert mrr.margin == pytest.approx(-0.02) and not mrr.ok
    assert not table.ok and table.samples == 50
    assert verdict_line(table) == "DRNN >= best baseline: no (Recall@20 +0.0200 vs SKNN, MRR@20 -0.0200 vs item-kNN)"


def test_a_tie_with_the_best_baseline_is_a_yes_and_the_first_of_equal_baselines_names_it() -> None:
    table = quality_table(_evaluation({"POP": (0.2, 0.1), "S-POP": (0.2, 0.1), DRNN: (0.2, 0.1)}))
    assert table.ok and [m.baseline for m in table.margins] == ["POP", "POP"]
    assert table.rows[0].model == DRNN  # the DRNN first, whatever the file's order


def test_evaluations_the_table_cannot_use_are_refused() -> None:
    with pytest.raises(ValueError, match="no DRNN"):
        quality_table(_evaluation({"POP": (0.1, 0.1)}))
    with pytest.raises(ValueError, match="no baseline"):
        quality_table(_evaluation({DRNN: (0.1, 0.1)}))
    with pytest.raises(ValueError, match="recall@10"):
        quality_table(_evaluation({DRNN: (0.1, 0.1), "POP": (0.1, 0.1)}), k=10)
    with pytest.raises(ValueError, match="no models"):
        quality_table({"models": {}})


def test_renderings_carry_the_rows_the_tuning_time_and_the_verdict() -> None:
    document = _evaluation({DRNN: (0.5, 0.25), "POP": (0.1, 0.05), "V-SKNN": (0.4, 0.2)})
    result = LogResult("shop-purchase", "synthetic shop", "purchase", quality_table(document), 15.0,
                       {"prepare": 2.0, "tune": 903.4, "evaluate": 5.0}, document["context"])
    text = render_text(result)
    assert "15 min 03 s" in text and "--time-budget 15 " in text and "V-SKNN" in text
    assert text.rstrip().endswith("DRNN >= best baseline: yes (Recall@20 +0.1000 vs V-SKNN, MRR@20 +0.0500 vs V-SKNN)")
    md = render_markdown([result], 15.0)
    assert "| DRNN | **0.5000** | **0.2500** | 15 min 03 s |" in md
    assert "| POP | 0.1000 | 0.0500 |  |" in md
    losing = quality_table(_evaluation({DRNN: (0.3, 0.25), "S-POP": (0.4, 0.05)}))
    other = render_markdown([LogResult("x", "x", "next-item", losing, 1.0, {"tune": 1.0})], 1.0)
    assert "| DRNN | 0.3000 | **0.2500** | 1.0 s |" in other and "| S-POP | **0.4000** | 0.0500 |  |" in other
    assert "| shop-purchase | purchase | yes | +0.1000 (vs V-SKNN) | +0.0500 (vs V-SKNN) | 15 min 03 s |" in md
    doc = json.loads(json.dumps(to_document([result], 15.0)))
    log = doc["logs"][0]
    assert log["verdict"]["drnn_at_least_best_baseline"] is True
    assert log["verdict"]["mrr@20"]["best_baseline"] == "V-SKNN"
    assert [m["model"] for m in log["models"]] == [DRNN, "POP", "V-SKNN"] and log["seconds"]["tune"] == 903.4


def test_the_budget_is_written_as_the_cli_reads_it() -> None:
    assert (minutes_arg(15.0), minutes_arg(2.5), minutes_arg(1)) == ("15", "2.5", "1")
