"""Bad input: one line `error: <file>:<line>: ...`, exit code 2, nothing left in the output folder."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from drnngen.cli import cli
from drnngen.data.manifest import load_manifest
from drnngen.data.windows import DENSE
from drnngen.errors import UserError
from tests.data_support import run_prepare, synth_log, yoochoose_spec

CLICKS = "1,2014-04-07T10:51:09.277Z,214536502,0\n1,2014-04-07T10:52:09.277Z,214536500,0\n" \
         "2,2014-04-07T11:00:00.000Z,214536502,0\n"
BUYS = "1,2014-04-07T10:53:00.000Z,214536500,100,1\n"
TSV = "SessionId\tItemId\tTime\n1\t10\t1396867869.5\n1\t11\t1396867900\n"
OTTO = '{"session":1,"events":[{"aid":5,"ts":1659304800025,"type":"clicks"},' \
       '{"aid":6,"ts":1659304900025,"type":"orders"}]}\n'

# name: (files to write, extra CLI arguments, expected fragment of the one-line error)
CASES: dict[str, tuple[dict[str, str], list[str], str]] = {
    "field_count": ({"clicks.dat": CLICKS + "3,2014-04-07T11:00:00.000Z\n", "buys.dat": BUYS},
                    ["clicks.dat", "--buys", "buys.dat"], "clicks.dat:4: expected 4 fields separated by ','"),
    "not_an_integer": ({"clicks.dat": CLICKS.replace("214536500", "21x536500"), "buys.dat": BUYS},
                       ["clicks.dat", "--buys", "buys.dat"], "clicks.dat:2: item id: expected an integer"),
    "bad_timestamp": ({"clicks.dat": CLICKS.replace("T11:00", "T25:00"), "buys.dat": BUYS},
                      ["clicks.dat", "--buys", "buys.dat"], "clicks.dat:3: timestamp: expected a date-time"),
    "bad_buys_line": ({"clicks.dat": CLICKS, "buys.dat": BUYS + "2,2014-04-07T11:00:00.000Z,7\n"},
                      ["clicks.dat", "--buys", "buys.dat"], "buys.dat:2: expected 5 fields"),
    "empty_file": ({"clicks.dat": ""}, ["clicks.dat", "--target", "next-item"], "clicks.dat: empty file"),
    "blank_lines_only": ({"clicks.dat": "\n\n"}, ["clicks.dat", "--target", "next-item"], "clicks.dat: no events"),
    "no_purchases": ({"clicks.dat": CLICKS}, ["clicks.dat"], "clicks.dat: no purchases in the log"),
    "missing_column": ({"s.tsv": TSV.replace("ItemId", "Item")}, ["s.tsv", "--target", "next-item"],
                       "s.tsv:1: missing column 'ItemId'"),
    "header_only": ({"s.tsv": "SessionId\tItemId\tTime\n"}, ["s.tsv", "--target", "next-item"], "s.tsv: no events"),
    "bad_number": ({"s.tsv": TSV + "2\t12\t13968679OO\n"}, ["s.tsv", "--target", "next-item"],
                   "s.tsv:4: column 'time': expected a number"),
    "csv_without_mapping": ({"log.csv": "sid,iid,ts\na,b,1\n"}, ["log.csv", "--target", "next-item"],
                            "--columns must name the session, item, time column"),
    "csv_bad_mapping": ({"log.csv": "sid,iid,ts\na,b,1\n"}, ["log.csv", "--columns", "session=sid,itm=iid"],
                        "--columns: expected ROLE=COLUMN"),
    "otto_broken_json": ({"s.jsonl": OTTO + '{"session":2,"events":[{"aid":5\n'}, ["s.jsonl"],
                         "s.jsonl:2: not valid JSON"),
    "otto_missing_key": ({"s.jsonl": OTTO + '{"session":2,"events":[{"aid":5,"type":"clicks"}]}\n'}, ["s.jsonl"],
                         "s.jsonl:2: event 0: expected integer 'aid' and 'ts'"),
    "otto_bad_type": ({"s.jsonl": OTTO.replace('"clicks"', '"views"')}, ["s.jsonl"],
                      "s.jsonl:1: event 0: 'type' must be one of clicks, carts, orders"),
    "otto_no_orders": ({"s.jsonl": OTTO.replace('"orders"', '"carts"')}, ["s.jsonl"], "no purchases in the log"),
    "users_missing_column": ({"clicks.dat": CLICKS, "buys.dat": BUYS, "users.csv": "session,person\n1,a\n"},
                             ["clicks.dat", "--buys", "buys.dat", "--users", "users.csv"],
                             "users.csv:1: missing column 'user'"),
    "missing_input": ({}, ["nowhere.dat"], "nowhere.dat: cannot read"),
    "unknown_suffix": ({"log.parquet": "x"}, ["log.parquet"], "cannot tell the format from the name"),
    "bad_split": ({"clicks.dat": CLICKS, "buys.dat": BUYS}, ["clicks.dat", "--buys", "buys.dat", "--split", "0.5,0.5"],
                  "--split: expected three fractions"),
    "bad_size": ({"clicks.dat": CLICKS, "buys.dat": BUYS},
                 ["clicks.dat", "--buys", "buys.dat", "--memory-budget", "lots"], "--memory-budget: not a size"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    files, args, expected = CASES[case]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    result = CliRunner().invoke(cli, ["prepare", *args, "-o", "out", "-q"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0]
    assert set(tmp_path.iterdir()) == before  # no output folder, no temporary folder


def test_gzip_logs_report_line_numbers_too(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "clicks.dat.gz", "wt") as handle:
        handle.write(CLICKS + "x\n")
    result = CliRunner().invoke(cli, ["prepare", str(tmp_path / "clicks.dat.gz"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "clicks.dat.gz:4: expected 4 fields" in result.stderr


def test_memory_guard_states_the_size_and_suggests_max_pages(tmp_path: Path) -> None:
    log = synth_log(tmp_path / "log", sessions=300)
    expected = r"would take \d+\.\d MiB uncompressed .* over the 0\.0 MiB budget; lower --max-pages \(M is \d+\)"
    with pytest.raises(UserError, match=expected):
        run_prepare(yoochoose_spec(log), tmp_path / "out", memory_budget=10_000, layout=DENSE)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log"]


def test_memory_guard_of_the_sparse_layout_names_k(tmp_path: Path) -> None:
    log = synth_log(tmp_path / "log", sessions=300)
    expected = (r"would take \d+\.\d MiB uncompressed \([\d,]+ samples of [\d,]+ bytes, sparse history K=32\), "
                r"over the 0\.0 MiB budget; lower --history-k/--user-items-k or raise --memory-budget")
    with pytest.raises(UserError, match=expected):
        run_prepare(yoochoose_spec(log), tmp_path / "out", memory_budget=10_000)
    assert not (tmp_path / "out").exists()


def test_an_existing_output_needs_force(tmp_path: Path) -> None:
    log = synth_log(tmp_path / "log", sessions=200)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="already exists; pass --force"):
        run_prepare(yoochoose_spec(log), tmp_path / "out")
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"
    with pytest.raises(UserError, match="not a drnngen dataset"):  # --force replaces only a dataset
        run_prepare(yoochoose_spec(log), tmp_path / "out", force=True)
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"
    (tmp_path / "out" / "mine.txt").unlink()
    run_prepare(yoochoose_spec(log), tmp_path / "out")  # an empty folder needs no --force
    run_prepare(yoochoose_spec(log), tmp_path / "out", force=True)  # a dataset is replaced
    assert (tmp_path / "out" / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log", "out"]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    log = synth_log(tmp_path / "log", sessions=200)
    return run_prepare(yoochoose_spec(log), tmp_path / "data", window=2).manifest.root


def _edit_manifest(root: Path, change: dict) -> None:
    data = json.loads((root / "manifest.json").read_text())
    data.update(change)
    (root / "manifest.json").write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"format_version": 99}, "format_version 99 is not 1"),
        ({"pages": "many"}, "missing or invalid key 'pages' (expected int)"),
        ({"items": 0}, "key 'items' must be at least 1"),
        ({"dwell": {}}, "missing or invalid key 'cap_s'"),
        ({"train_samples": None}, "missing or invalid key 'train_samples'"),
    ],
)
def test_a_broken_manifest_is_one_line(dataset: Path, change: dict, expected: str) -> None:
    _edit_manifest(dataset, change)
    with pytest.raises(UserError, match=re.escape(expected)) as info:
        load_manifest(dataset)
    assert "\n" not in str(info.value)


def test_manifest_problems_name_the_file(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no manifest\.json here"):
        load_manifest(tmp_path / "nothing")
    (dataset / "manifest.json").write_text('{"pages": 3,\n oops}')
    with pytest.raises(UserError, match=r"manifest.json:2: not valid JSON"):
        load_manifest(dataset / "manifest.json")


def test_a_missing_or_changed_store_is_refused(dataset: Path) -> None:
    manifest = load_manifest(dataset)
    with (dataset / "store.h5").open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(UserError, match=r"store\.h5: does not match manifest\.json"):
        manifest.sources(3)
    (dataset / "store.h5").unlink()
    with pytest.raises(UserError, match=r"sample store store\.h5 beside it is missing"):
        load_manifest(dataset)


@pytest.mark.parametrize("window", [0, -1, 1000, 2.5, True])
def test_sources_refuses_impossible_windows(dataset: Path, window: object) -> None:
    with pytest.raises(UserError, match="window must be an integer"):
        load_manifest(dataset).sources(window)  # type: ignore[arg-type]


def test_a_broken_window_index_says_how_to_recover(dataset: Path) -> None:
    (dataset / "w2" / "index.json").write_text('{"files": {"train": []}}')
    with pytest.raises(UserError, match=r"w2/index\.json: unreadable .*; delete .*w2 to rebuild it"):
        load_manifest(dataset).sources(2)
