"""`prepare TRAIN --valid-log VALID --test-log TEST`: the splits as given, session-rec's filters,
and header names in every spelling public copies of the data use."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from drnngen.cli import cli
from drnngen.data.readers import LogSpec, read_log
from drnngen.data.sessions import BuildOptions
from drnngen.errors import UserError
from tests.data_support import Event, quiet, read_split, run_prepare, session_rec_trio, write_tsv


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def _trio_args(folder: Path) -> list[str]:
    return [str(folder / "shop_train_tr.txt"), "--valid-log", str(folder / "shop_train_valid.txt"),
            "--test-log", str(folder / "shop_test.txt")]


def test_a_session_rec_trio_gives_the_splits_of_its_files(tmp_path: Path) -> None:
    events = session_rec_trio(tmp_path)
    code, out, err = _run("prepare", *_trio_args(tmp_path), "--target", "next-item", "--max-items", "100",
                          "--min-item-support", "5", "--min-session-length", "2", "-o", str(tmp_path / "data"))
    assert code == 0, err
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["parameters"]["splits_from"] == "files" and manifest["parameters"]["split"] is None
    assert [f["split"] for f in manifest["sources"]] == ["train", "val", "test"]
    for split, name in (("train", "train"), ("val", "valid"), ("test", "test")):
        counts, file_events = manifest["splits"][split], events[name]
        lengths = Counter(s for s, _, _ in file_events)
        assert counts["file_events"] == counts["events"] == counts["page_views"] == len(file_events)
        assert counts["file_sessions"] == counts["sessions"] == len(lengths)
        assert counts["dropped_unseen_item_events"] == counts["dropped_filtered_events"] == 0
        # next-item: one sample per event after a session's first, every item being a class
        assert manifest[f"{split}_samples"] == counts["samples"] == sum(n - 1 for n in lengths.values())
    assert "samples train" in out
    # the test rows predict the test file's items, session by session in time order
    rows = read_split(tmp_path / "data" / "w4" / "test.txt")
    items = json.loads((tmp_path / "data" / "items.json").read_text())["keys"]
    expected = [i for s in sorted({s for s, _, _ in events["test"]})
                for i in [i for s2, i, _ in sorted(events["test"], key=lambda e: e[2]) if s2 == s][1:]]
    assert [items[int(c)] for c in rows["label"]] == expected


def test_the_vocabulary_is_fitted_on_train_only(tmp_path: Path) -> None:
    train = write_tsv(tmp_path / "a_train_tr.txt", [(1, 10, 0), (1, 11, 5), (2, 11, 9), (2, 12, 20)])
    valid = write_tsv(tmp_path / "a_train_valid.txt", [(3, 12, 30), (3, 11, 40), (3, 99, 50)])
    test = write_tsv(tmp_path / "a_test.txt", [(4, 98, 60), (4, 10, 70), (4, 12, 80), (5, 97, 90), (5, 10, 95)])
    report = run_prepare(LogSpec("gru4rec", train, valid=valid, test=test), tmp_path / "data",
                         build=BuildOptions(target="next-item"))
    manifest = report.manifest
    assert sorted(manifest.page_keys()[2:]) == [10, 11, 12] and sorted(manifest.item_keys()) == [10, 11, 12]
    splits = manifest.data["splits"]
    # session-rec's loader: events of items the train file lacks are dropped (99; 98 and 97)
    assert splits["val"]["dropped_unseen_item_events"] == 1 and splits["val"]["events"] == 2
    assert splits["test"]["dropped_unseen_item_events"] == 2 and splits["test"]["events"] == 3
    assert splits["test"]["file_events"] == 5 and splits["test"]["file_sessions"] == 2
    # session 5 keeps one event (no sample); session 4 is 10, 12 (one sample: 12)
    assert manifest.test_samples == 1 and splits["test"]["sessions"] == 2
    rows = read_split(report.sources["test"])
    assert manifest.item_keys()[int(rows["label"][0])] == 12


def test_min_session_length_drops_sessions_left_short(tmp_path: Path) -> None:
    train = write_tsv(tmp_path / "a_train_tr.txt", [(1, 10, 0), (1, 11, 5), (2, 11, 9), (2, 12, 20), (6, 10, 21)])
    valid = write_tsv(tmp_path / "a_train_valid.txt", [(3, 12, 30), (3, 11, 40)])
    test = write_tsv(tmp_path / "a_test.txt", [(4, 98, 60), (4, 10, 70), (4, 12, 80), (5, 97, 90), (5, 10, 95)])
    report = run_prepare(LogSpec("gru4rec", train, valid=valid, test=test), tmp_path / "data",
                         build=BuildOptions(target="next-item", min_session_length=2))
    splits = report.manifest.data["splits"]
    assert splits["train"]["sessions"] == 2 and splits["train"]["dropped_filtered_events"] == 1
    assert splits["test"]["sessions"] == 1 and splits["test"]["dropped_filtered_events"] == 1


def session_rec_filter(events: list[Event], min_support: int, min_length: int) -> list[Event]:
    """session-rec's `filter_data` (preprocessing/preprocess_rsc15.py), restated in plain Python:
    sessions under the length go, then items under the support, then sessions left under the
    length (GRU4Rec's preprocess.py does the same with the length 2)."""
    def by_length(rows: list[Event]) -> list[Event]:
        lengths = Counter(s for s, _, _ in rows)
        return [e for e in rows if lengths[e[0]] >= min_length]

    rows = by_length(events)
    support = Counter(i for _, i, _ in rows)
    return by_length([e for e in rows if support[e[1]] >= min_support])


@pytest.mark.parametrize(("support", "length"), [(5, 2), (3, 3), (1, 2), (2, 1)])
def test_the_filters_on_one_log_are_session_rec_s(tmp_path: Path, support: int, length: int) -> None:
    rng = np.random.default_rng(support * 10 + length)
    events = [(s, int(rng.zipf(1.6)) % 60, s * 100 + j) for s in range(400) for j in range(int(rng.integers(1, 6)))]
    log = write_tsv(tmp_path / "log.tsv", events)
    report = run_prepare(LogSpec("gru4rec", log), tmp_path / "data",
                         build=BuildOptions(target="next-item", min_item_support=support, min_session_length=length,
                                            max_pages=1000, max_items=1000))
    kept = session_rec_filter(events, support, length)
    counts = report.manifest.data["counts"]
    assert counts["events"] == len(kept) and counts["filtered_events"] == len(events) - len(kept)
    assert counts["sessions"] == len({s for s, _, _ in kept})


@pytest.mark.parametrize("given", [True, False])
@pytest.mark.parametrize("option", ["--min-session-length", "--min-item-support"])
def test_filters_that_leave_nothing_are_one_line(tmp_path: Path, given: bool, option: str) -> None:
    session_rec_trio(tmp_path)
    splits = ["--valid-log", str(tmp_path / "shop_train_valid.txt"), "--test-log", str(tmp_path / "shop_test.txt")]
    code, _, err = _run("prepare", str(tmp_path / "shop_train_tr.txt"), *(splits if given else []), "--target",
                        "next-item", option, "100000", "-q", "-o", str(tmp_path / "d"))
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert "no events left" in err and f"{option} 100000" in err, err
    assert not (tmp_path / "d").exists()


def test_identical_split_files_are_warned_about(tmp_path: Path) -> None:
    """A test file that is the validation file (a copy-paste slip) still prepares, with one warning line."""
    session_rec_trio(tmp_path)
    valid = tmp_path / "shop_train_valid.txt"
    copy = tmp_path / "copy_test.txt"
    copy.write_bytes(valid.read_bytes())
    code, _, err = _run("prepare", str(tmp_path / "shop_train_tr.txt"), "--valid-log", str(valid), "--test-log",
                        str(copy), "--target", "next-item", "-q", "-o", str(tmp_path / "d"))
    assert code == 0, err
    assert err.count("\n") == 1 and err.startswith("warning: ") and "same content" in err, err
    assert str(valid.resolve()) in err and str(copy.resolve()) in err
    code, _, err = _run("prepare", str(tmp_path / "shop_train_tr.txt"), "--valid-log", str(valid), "--test-log",
                        str(tmp_path / "shop_test.txt"), "--target", "next-item", "-q", "-o", str(tmp_path / "e"))
    assert code == 0 and err == "", err


def test_a_test_view_of_an_item_train_only_bought_is_unseen(tmp_path: Path) -> None:
    """The unseen-item filter uses the page vocabulary's set (train views) for views: item 60
    was bought in train but never viewed there, so a test view of it goes (a test purchase of
    it stays: train holds the item). recommend filters a log by the same sets."""
    from drnngen.data.manifest import load_manifest
    from drnngen.data.prefixes import read_prefixes

    def csv(name: str, rows: list[tuple[int, int, int, str]]) -> Path:
        path = tmp_path / name
        path.write_text("s,i,t,k\n" + "".join(f"{a},{b},{c},{d}\n" for a, b, c, d in rows))
        return path

    train = csv("tr.csv", [(1, 10, 0, "v"), (1, 11, 5, "v"), (1, 60, 9, "buy"), (2, 11, 20, "v"), (2, 10, 25, "v")])
    valid = csv("va.csv", [(3, 10, 30, "v"), (3, 11, 40, "v")])
    test = csv("te.csv", [(4, 10, 60, "v"), (4, 60, 70, "v"), (4, 11, 80, "v"), (4, 60, 90, "buy")])
    reading = ["--format", "csv", "--columns", "session=s,item=i,time=t,type=k", "--time-unit", "s",
               "--purchase-values", "buy"]
    code, _, err = _run("prepare", str(train), "--valid-log", str(valid), "--test-log", str(test), *reading,
                        "--target", "next-item", "-q", "-o", str(tmp_path / "d"))
    assert code == 0, err
    manifest = load_manifest(tmp_path / "d")
    assert manifest.data["splits"]["test"]["dropped_unseen_item_events"] == 1
    assert manifest.data["splits"]["test"]["oov_page_views"] == 0 and manifest.test_samples == 1
    spec = LogSpec("csv", test, columns={"session": "s", "item": "i", "time": "t", "type": "k"}, time_unit="s",
                   purchase_values=("buy",))
    assert read_prefixes(spec, manifest, quiet).samples.samples == manifest.test_samples == 1


def test_a_split_left_empty_by_the_filters_is_one_line(tmp_path: Path) -> None:
    write_tsv(tmp_path / "a_train_tr.txt", [(1, 10, 0), (1, 11, 5)])
    write_tsv(tmp_path / "a_train_valid.txt", [(3, 10, 30), (3, 11, 40)])
    write_tsv(tmp_path / "a_test.txt", [(4, 98, 60), (4, 97, 70)])
    code, _, err = _run("prepare", str(tmp_path / "a_train_tr.txt"), "--valid-log",
                        str(tmp_path / "a_train_valid.txt"), "--test-log", str(tmp_path / "a_test.txt"),
                        "--target", "next-item", "-q", "-o", str(tmp_path / "d"))
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert "a_test.txt: no events left in the test split after filtering" in err
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--valid-log", "{valid}"], "--valid-log and --test-log go together"),
        (["--valid-log", "{valid}", "--test-log", "{csv}"], "the split files must share one format"),
        (["--valid-log", "{valid}", "--test-log", "{missing}"], "missing.txt"),
        (["--valid-log", "{valid}", "--test-log", "{test}", "--split", "0.5,0.25,0.25"], "--split cuts one log"),
        (["--valid-log", "{valid}", "--test-log", "{test}", "--buys", "{valid}"], "--buys does not combine"),
        (["--valid-log", "{valid}", "--test-log", "{test}", "--min-item-support", "0"], "--min-item-support"),
    ],
)
def test_bad_split_options_are_one_line(tmp_path: Path, extra: list[str], message: str) -> None:
    session_rec_trio(tmp_path)
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    names = {"valid": tmp_path / "shop_train_valid.txt", "test": tmp_path / "shop_test.txt",
             "csv": tmp_path / "other.csv", "missing": tmp_path / "missing.txt"}
    args = [a.format(**names) for a in extra]
    code, _, err = _run("prepare", str(tmp_path / "shop_train_tr.txt"), *args, "--target", "next-item", "-q",
                        "-o", str(tmp_path / "d"))
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err


# --- header variants ----------------------------------------------------------------------------

GRU4REC_HEADERS = ["SessionId\tItemId\tTime", "session_id\titem_id\ttime", "sessionid\titemid\tTIME",
                   "SESSION_ID\tITEM_ID\tTime", "Session_Id\tItemID\ttime"]


@pytest.mark.parametrize("header", GRU4REC_HEADERS)
def test_gru4rec_header_variants(tmp_path: Path, header: str) -> None:
    write_tsv(tmp_path / "s.tsv", [(1, 10, 100), (1, 11, 160), (2, 10, 170)], header)
    log = read_log(LogSpec("gru4rec", tmp_path / "s.tsv"), quiet)
    assert log.session.tolist() == [1, 1, 2] and log.item.tolist() == [10, 11, 10]
    assert log.time.tolist() == [100.0, 160.0, 170.0]


@pytest.mark.parametrize("header", ["SessionId\tUserId\tItemId\tTime", "session_id\tuser_id\titem_id\ttime"])
def test_gru4rec_user_column_variants(tmp_path: Path, header: str) -> None:
    (tmp_path / "s.tsv").write_text(header + "\n1\tu1\t10\t100\n2\tNA\t10\t170\n")
    log = read_log(LogSpec("gru4rec", tmp_path / "s.tsv"), quiet)
    assert log.user[0] >= 0 and log.user[1] < 0


DIGINETICA_HEADERS = [
    ("sessionId;userId;itemId;timeframe;eventdate", "sessionId;userId;timeframe;eventdate;ordernumber;itemId"),
    ("session_id;user_id;item_id;timeframe;eventdate", "session_id;user_id;timeframe;eventdate;ordernumber;item_id"),
    ("SessionId;UserId;ItemId;Timeframe;EventDate", "SESSIONID;USERID;TIMEFRAME;EVENTDATE;ORDERNUMBER;ITEMID"),
    ("sessionid;userid;itemid;timeframe;event_date", "session_id;userId;timeframe;eventdate;ordernumber;itemid"),
]


@pytest.mark.parametrize(("views", "buys"), DIGINETICA_HEADERS)
def test_diginetica_header_variants(tmp_path: Path, views: str, buys: str) -> None:
    (tmp_path / "train-item-views.csv").write_text(
        views + "\n1;NA;81766;526309;2016-05-09\n1;NA;31331;1031018;2016-05-09\n2;278;32118;0;2016-05-10\n")
    (tmp_path / "train-purchases.csv").write_text(buys + "\n1;NA;1100000;2016-05-09;8;31331\n")
    log = read_log(LogSpec("diginetica", tmp_path / "train-item-views.csv",
                           buys=tmp_path / "train-purchases.csv"), quiet)
    assert log.session.tolist() == [1, 1, 2, 1] and log.item.tolist() == [81766, 31331, 32118, 31331]
    assert log.user[0] < 0 <= log.user[2]


@pytest.mark.parametrize("header", ["visit,product,when", "VISIT,Product,WHEN", "vis_it,pro_duct,wh_en"])
def test_csv_columns_match_whatever_their_case(tmp_path: Path, header: str) -> None:
    (tmp_path / "log.csv").write_text(header + "\ns-1,shoe,1\ns-1,sock,2\n")
    spec = LogSpec("csv", tmp_path / "log.csv", columns={"session": "visit", "item": "product", "time": "when"})
    log = read_log(spec, quiet)
    assert [log.item_names[i] for i in log.item] == ["shoe", "sock"]  # type: ignore[index]


@pytest.mark.parametrize("header", ["session,user", "session_id,user_id", "SessionId,UserId", "Session,User"])
def test_users_file_header_variants(tmp_path: Path, header: str) -> None:
    write_tsv(tmp_path / "s.tsv", [(1, 10, 100), (2, 10, 170)])
    (tmp_path / "users.csv").write_text(header + "\n1,ann\n")
    log = read_log(LogSpec("gru4rec", tmp_path / "s.tsv", users=tmp_path / "users.csv"), quiet)
    assert log.user[0] >= 0 and log.user[1] < 0


def test_two_columns_matching_one_name_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "s.tsv").write_text("session_id\tSESSIONID\tItemId\tTime\n1\t1\t10\t100\n")
    with pytest.raises(UserError, match=r"s\.tsv:1: the columns 'session_id', 'SESSIONID' all match 'SessionId'"):
        read_log(LogSpec("gru4rec", tmp_path / "s.tsv"), quiet)


def test_exact_name_wins_over_a_variant(tmp_path: Path) -> None:
    """A header holding both `SessionId` and `session_id` is read by the exact name."""
    (tmp_path / "s.tsv").write_text("session_id\tSessionId\tItemId\tTime\n7\t1\t10\t100\n7\t2\t11\t101\n")
    log = read_log(LogSpec("gru4rec", tmp_path / "s.tsv"), quiet)
    assert log.session.tolist() == [1, 2]
