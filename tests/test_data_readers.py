"""Readers of every format give the same events; the parsers' edge cases."""

from __future__ import annotations

import datetime
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from drnngen.data.events import MISSING_USER, PURCHASE, VIEW
from drnngen.data.readers import LogSpec, guess_format, read_log
from drnngen.data.sessions import BuildOptions
from drnngen.data.textscan import Chunk, parse_datetime, parse_float, parse_int, parse_key, split_fields
from drnngen.errors import UserError
from tests.data_support import quiet, read_split, run_prepare, synth_log


def _column(text: str, index: int = 0, delimiter: str = ",", fields: int = 1):  # type: ignore[no-untyped-def]
    return split_fields(Chunk(text.encode(), 7), delimiter, fields, "f.csv").column(index, "x")


def _events(log) -> list[tuple]:  # type: ignore[no-untyped-def]
    return list(zip(log.session.tolist(), log.item.tolist(), np.round(log.time, 3).tolist(), log.kind.tolist(),
                    strict=True))


def test_integers_including_signs_and_widths() -> None:
    values = ["0", "7", "-12", "123456789012345678", "-5", "0042"]
    assert parse_int(_column("\n".join(values) + "\n")).tolist() == [int(v) for v in values]


@pytest.mark.parametrize("bad", ["", "1.5", "12a", "-", "1234567890123456789", " 1"])
def test_integer_errors_name_the_line(bad: str) -> None:
    """Line 8 of the file (the chunk starts at line 7); an empty field is an error too."""
    with pytest.raises(UserError, match=r"^f\.csv:8: x: expected an integer"):
        parse_int(_column(f"1;a\n{bad};b\n3;c\n", 0, ";", fields=2))


def test_floats() -> None:
    values = ["1396867869.277", "0", "-2.5", "7", "0.125", "123456789012345678.5"]
    got = parse_float(_column("\n".join(values) + "\n"))
    assert got.tolist() == [1396867869 + 0.277, 0.0, -2.5, 7.0, 0.125, 123456789012345678.5]
    for bad in ("12.", ".5", "1e3", "1.2.3", "x"):
        with pytest.raises(UserError, match="expected a number"):
            parse_float(_column(f"{bad}\n"))


@pytest.mark.parametrize(
    "text",
    ["2014-04-07T10:51:09.277Z", "2014-04-07", "2014-04-07 10:51:09", "2014-04-07T10:51:09+02:00",
     "2014-04-07T10:51:09.5-01:30", "1970-01-01T00:00:00Z", "2016-02-29T23:59:59.123456Z", "1999-12-31T23:59:59",
     "2000-02-29", "2014-01-31", "2014-12-31T00:00:00Z"],
)
def test_iso_datetimes_match_the_standard_library(text: str) -> None:
    parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    assert parse_datetime(_column(text + "\n"))[0] == pytest.approx(parsed.timestamp(), abs=1e-6)


@pytest.mark.parametrize("bad", ["2014-4-07", "2014-04-07T10:51", "2014-04-07T25:00:00Z", "2014-13-01",
                                 "2014-02-31", "2014-02-29T00:00:00Z", "1900-02-29", "2014-04-31",
                                 "2014-04-07T10:51:09.Z", "2014-04-07T10:51:09.277ZZ", "yesterday"])
def test_iso_errors(bad: str) -> None:
    with pytest.raises(UserError, match=r"f\.csv:7: x: expected a date-time"):
        parse_datetime(_column(bad + "\n"))


def test_keys_blank_lines_crlf_and_quotes() -> None:
    table = split_fields(Chunk(b'a,"b,c"\r\n\r\n"x""y",z\n', 1), ",", 2, "f.csv", quoted=True)
    assert parse_key(table.column(0, "k")).tolist() == [b"a", b'x"y']
    assert parse_key(table.column(1, "k")).tolist() == [b"b,c", b"z"]
    assert table.lines.tolist() == [1, 3]


def test_format_is_guessed_from_the_name() -> None:
    assert [guess_format(Path(n)) for n in ("clicks.dat", "s.tsv", "x.jsonl.gz", "log.csv",
                                             "train-item-views.csv")] == [
        "yoochoose", "gru4rec", "otto", "csv", "diginetica"]


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("formats")
    for log_format in ("yoochoose", "gru4rec", "otto"):
        synth_log(base / log_format, sessions=250, seed=3, log_format=log_format)
    return base


def _spec(base: Path, log_format: str) -> LogSpec:
    folder = base / log_format
    return {
        "yoochoose": LogSpec("yoochoose", folder / "clicks.dat", buys=folder / "buys.dat", users=folder / "users.csv"),
        "gru4rec": LogSpec("gru4rec", folder / "sessions.tsv", buys=folder / "buys.tsv", users=folder / "users.csv"),
        "otto": LogSpec("otto", folder / "sessions.jsonl", users=folder / "users.csv"),
    }[log_format]


def test_the_same_log_in_three_formats_reads_the_same(synth_dir: Path) -> None:
    logs = {f: read_log(_spec(synth_dir, f), quiet) for f in ("yoochoose", "gru4rec", "otto")}
    reference = sorted(_events(logs["yoochoose"]))
    assert {f: sorted(_events(log)) == reference for f, log in logs.items()} == dict.fromkeys(logs, True)
    users = {f: np.unique(log.user).size for f, log in logs.items()}
    assert len(set(users.values())) == 1 and users["otto"] > 10


def test_the_same_log_in_three_formats_prepares_the_same(synth_dir: Path, tmp_path: Path) -> None:
    rows = {}
    for log_format in ("yoochoose", "gru4rec", "otto"):
        report = run_prepare(_spec(synth_dir, log_format), tmp_path / log_format, window=3)
        rows[log_format] = read_split(report.sources["train"])
    for log_format in ("gru4rec", "otto"):
        for name, values in rows["yoochoose"].items():
            np.testing.assert_array_equal(rows[log_format][name], values, err_msg=f"{log_format} {name}")


def test_gzip_and_chunk_boundaries_do_not_change_anything(synth_dir: Path, tmp_path: Path) -> None:
    folder = synth_dir / "yoochoose"
    with (folder / "clicks.dat").open("rb") as plain, gzip.open(tmp_path / "clicks.dat.gz", "wb") as packed:
        shutil.copyfileobj(plain, packed)
    whole = read_log(LogSpec("yoochoose", folder / "clicks.dat"), quiet)
    small_chunks = read_log(LogSpec("yoochoose", tmp_path / "clicks.dat.gz", chunk_bytes=1000), quiet)
    assert _events(small_chunks) == _events(whole)
    assert small_chunks.files[0]["sha256"] == whole.files[0]["sha256"]


def test_gru4rec_inline_user_column(tmp_path: Path) -> None:
    (tmp_path / "s.tsv").write_text("SessionId\tUserId\tItemId\tTime\n1\tu1\t10\t100.5\n1\tu1\t11\t160\n"
                                    "2\tNA\t10\t170\n")
    log = read_log(LogSpec("gru4rec", tmp_path / "s.tsv"), quiet)
    assert log.item.tolist() == [10, 11, 10]
    assert log.time.tolist() == [100.5, 160.0, 170.0]
    assert log.user[0] == log.user[1] != MISSING_USER and log.user[2] == MISSING_USER


def test_diginetica_views_and_purchases(tmp_path: Path) -> None:
    (tmp_path / "train-item-views.csv").write_text(
        "sessionId;userId;itemId;timeframe;eventdate\n1;NA;81766;526309;2016-05-09\n1;NA;31331;1031018;2016-05-09\n"
        "2;278;32118;0;2016-05-10\n")
    (tmp_path / "train-purchases.csv").write_text(
        "sessionId;userId;timeframe;eventdate;ordernumber;itemId\n1;NA;1100000;2016-05-09;8;31331\n")
    log = read_log(LogSpec("diginetica", tmp_path / "train-item-views.csv",
                           buys=tmp_path / "train-purchases.csv"), quiet)
    day = datetime.datetime(2016, 5, 9, tzinfo=datetime.timezone.utc).timestamp()
    assert log.time.tolist() == [day + 526.309, day + 1031.018, day + 86400, day + 1100]
    assert log.kind.tolist() == [VIEW, VIEW, VIEW, PURCHASE]
    assert log.item[-1] == 31331
    assert log.user[0] == MISSING_USER != log.user[2]


def test_generic_csv_with_string_ids_types_and_milliseconds(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text(
        "visit,product,when,what,who\ns-1,shoe,1000,view,ann\ns-1,sock,61000,view,ann\ns-1,sock,62000,buy,ann\n"
        's-2,"hat, red",5000,view,\ns-2,shoe,9000,view,\n')
    spec = LogSpec("csv", tmp_path / "log.csv", time_unit="ms", purchase_values=("buy",),
                   columns={"session": "visit", "item": "product", "time": "when", "type": "what", "user": "who"})
    log = read_log(spec, quiet)
    assert [log.item_names[i] for i in log.item] == ["shoe", "sock", "sock", "hat, red", "shoe"]  # type: ignore[index]
    assert log.time.tolist() == [1.0, 61.0, 62.0, 5.0, 9.0]
    assert log.kind.tolist() == [VIEW, VIEW, PURCHASE, VIEW, VIEW]
    assert log.user[3] == MISSING_USER != log.user[0]
    report = run_prepare(spec, tmp_path / "out", build=BuildOptions(split=(0.5, 0.5, 0.0)))
    assert report.manifest.item_keys() == ["sock"]
    assert sorted(report.manifest.page_keys()[2:]) == ["shoe", "sock"]


def test_otto_lines_with_no_events_or_extra_keys(tmp_path: Path) -> None:
    (tmp_path / "s.jsonl").write_text(
        '{"session":1,"events":[]}\n'
        '{"session":2,"events":[{"aid":7,"ts":1000,"type":"clicks"},{"aid":8,"ts":2500,"type":"carts"}]}\n'
        '{"session":3,"events":[{"aid":9,"ts":3000,"type":"orders"}],"note":"x"}\n'
        '{"session": 4, "events": [{"type": "clicks", "ts": 4000, "aid": 10}]}\n')
    log = read_log(LogSpec("otto", tmp_path / "s.jsonl"), quiet)
    assert sorted(_events(log)) == [(2, 7, 1.0, VIEW), (2, 8, 2.5, VIEW), (3, 9, 3.0, PURCHASE), (4, 10, 4.0, VIEW)]
