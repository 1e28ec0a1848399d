"""`drnngen recommend` and `drnngen score` without Caffe: recommend's input rows are prepare's
rows, the CSV is session-rec's, score is session-rec's HitRate/MRR, and with one scoring
function recommend + score give evaluate's Recall@K and MRR@K (the net's test with real
Caffe is tests/test_recommend_caffe.py)."""

from __future__ import annotations

import errno
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from click.testing import CliRunner

from drnngen.bind import bind_dataset
from drnngen.cli import cli
from drnngen.codegen.build import DEPLOY, generate
from drnngen.codegen.config import load_config
from drnngen.data.manifest import load_manifest
from drnngen.data.prefixes import read_prefixes, write_prefix_rows
from drnngen.data.readers import LogSpec
from drnngen.data.samples import hdf5_files
from drnngen.data.sessions import BuildOptions
from drnngen.data.windows import DENSE, SampleLayout
from drnngen.evaluation import recommend as recommend_module
from drnngen.evaluation.evaluate import NetUnderTest, evaluate_net
from drnngen.evaluation.recommend import HEADER, NetScorer, recommend, top_k
from drnngen.evaluation.score import read_lists, score
from tests.data_support import quiet, read_split, run_prepare, session_rec_trio, synth_log, write_tsv, yoochoose_spec
from tests.fault_support import fill_disk_at

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "small.yaml"


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def _rows(list_files: list[Path]) -> dict[str, np.ndarray]:
    parts = [read_split(path) for path in list_files]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _flat(rows: dict[str, np.ndarray], keep: npt.NDArray[np.bool_] | None = None) -> list[bytes]:
    """Each row as the bytes of all its datasets (every dataset of the layout, whatever it is)."""
    names = sorted(rows)
    n = len(rows["label"])
    matrix = np.concatenate([rows[name].reshape(n, -1) for name in names], axis=1)
    return [row.tobytes() for row in (matrix if keep is None else matrix[keep])]


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A session-rec-style trio and its dataset (next-item, window 3, every item a class)."""
    root = tmp_path_factory.mktemp("trio")
    session_rec_trio(root, seed=4)
    spec = LogSpec("gru4rec", root / "shop_train_tr.txt", valid=root / "shop_train_valid.txt",
                   test=root / "shop_test.txt")
    run_prepare(spec, root / "data", build=BuildOptions(target="next-item", max_items=100), window=3)
    return root, root / "data"


@pytest.fixture(scope="module")
def foreign_trio(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A trio whose test file holds items train lacks, prepared with --min-session-length 2:
    prepare drops events and sessions of the test file that recommend and score must drop too."""
    root = tmp_path_factory.mktemp("foreign")
    session_rec_trio(root, seed=4, foreign=True)
    spec = LogSpec("gru4rec", root / "shop_train_tr.txt", valid=root / "shop_train_valid.txt",
                   test=root / "shop_test.txt")
    report = run_prepare(spec, root / "data", build=BuildOptions(target="next-item", max_items=100,
                                                                  min_session_length=2), window=3)
    test = report.manifest.data["splits"]["test"]
    assert test["dropped_unseen_item_events"] == 2 and test["dropped_filtered_events"] == 1  # not vacuous
    return root, root / "data"


def test_recommend_rows_are_prepare_rows_on_the_same_log(tmp_path: Path) -> None:
    """One log with purchases and users: every sample prepare makes of it (every split) is a
    row recommend makes, byte for byte (window, dwell, history, user items, OOV pages, label)."""
    log = synth_log(tmp_path / "log", sessions=300, seed=3, items=80)
    spec = yoochoose_spec(log)
    report = run_prepare(spec, tmp_path / "data", build=BuildOptions(target="next-item", max_pages=40,
                                                                      max_items=30), window=3)
    manifest = report.manifest
    prepared = [r for split in ("train", "val", "test") for r in _flat(read_split(report.sources[split]))]
    prefixes = read_prefixes(spec, manifest, quiet)
    rows = _rows(write_prefix_rows(prefixes, manifest, 3, tmp_path / "rows", 50, quiet).chunks)
    labelled = rows["label"] >= 0
    assert 0 < len(prepared) == int(labelled.sum()) < len(labelled)  # some next views are no class
    assert _flat(rows, labelled) == prepared  # the same rows in the same order: sessions in time order, positions
    # not vacuous: history and user items hold something (whatever the layout names them), OOV pages occur
    assert all(np.any(values != 0) for values in rows.values()) and np.any(rows["page_0"] == 1)


@pytest.mark.parametrize("which", ["trio", "foreign_trio"])
def test_recommend_rows_on_the_test_file_are_prepare_s_test_rows(which: str, tmp_path: Path,
                                                                  request: pytest.FixtureRequest) -> None:
    """Row by row in order, also where prepare's filters dropped events and sessions of the test file."""
    root, data = request.getfixturevalue(which)
    manifest = load_manifest(data)
    prefixes = read_prefixes(LogSpec("gru4rec", root / "shop_test.txt"), manifest, quiet)
    rows = _rows(write_prefix_rows(prefixes, manifest, 3, tmp_path, 10_000, quiet).chunks)
    expected = read_split(manifest.sources(3)["test"])
    assert sorted(rows) == sorted(expected)
    for name, values in expected.items():
        np.testing.assert_array_equal(rows[name], values, err_msg=name)  # same rows, same order


@pytest.mark.parametrize("filtered", [True, False])
def test_a_csv_log_reads_under_a_dataset_of_integer_ids(foreign_trio: tuple[Path, Path], tmp_path: Path,
                                                       filtered: bool) -> None:
    """The dataset's keys are the TSV's integers, a CSV log's ids are text: the same items all the same."""
    root, data = foreign_trio
    manifest = load_manifest(data)
    tsv = root / "shop_test.txt"
    csv = tmp_path / "test.csv"
    csv.write_text(tsv.read_text().replace("\t", ","))
    spec = LogSpec("csv", csv, columns={"session": "SessionId", "item": "ItemId", "time": "Time"}, time_unit="s")
    ours = read_prefixes(spec, manifest, quiet, filtered)
    theirs = read_prefixes(LogSpec("gru4rec", tsv), manifest, quiet, filtered)
    assert ours.known_views == theirs.known_views > 0
    for name in ("page", "label", "theta", "start", "end"):
        np.testing.assert_array_equal(getattr(ours.samples, name), getattr(theirs.samples, name), err_msg=name)


def _csv_trio(root: Path, folder: Path) -> dict[str, Path]:
    """The trio of `root` as `;`-separated CSVs with their own column names and a type column
    (every seventh event an `order`, a purchase only under --purchase-values order)."""
    paths = {}
    for name in ("shop_train_tr.txt", "shop_train_valid.txt", "shop_test.txt"):
        lines = (root / name).read_text().splitlines()[1:]
        rows = [f"{line.replace(chr(9), ';')};{'order' if n % 7 == 3 else 'click'}" for n, line in enumerate(lines)]
        paths[name] = folder / name.replace(".txt", ".csv")
        paths[name].write_text("sess;art;ts;kind\n" + "\n".join(rows) + "\n")
    return paths


def test_recommend_and_score_read_the_log_as_prepare_did(foreign_trio: tuple[Path, Path], tmp_path: Path) -> None:
    """--columns, --delimiter, --time-unit and --purchase-values default to the dataset's."""
    paths = _csv_trio(foreign_trio[0], tmp_path)
    reading = ["--columns", "session=sess,item=art,time=ts,type=kind", "--delimiter", ";", "--time-unit", "s",
               "--purchase-values", "order"]
    code, _, err = _run("prepare", str(paths["shop_train_tr.txt"]), "--valid-log", str(paths["shop_train_valid.txt"]),
                        "--test-log", str(paths["shop_test.txt"]), "--format", "csv", *reading, "--target",
                        "next-item", "--min-session-length", "2", "-q", "-o", str(tmp_path / "d"))
    assert code == 0, err
    manifest = load_manifest(tmp_path / "d")
    assert manifest.data["counts"]["purchases"] > 0  # the orders are purchases: not vacuous
    recs, test_log = tmp_path / "recs.csv", str(paths["shop_test.txt"])
    code, out, err = _run("recommend", "--model", "POP", "--data", str(tmp_path / "d"), "--log", test_log,
                          "-o", str(recs), "-q")
    assert code == 0 and f"{manifest.test_samples:,} lists" in out, err
    code, out, err = _run("score", str(recs), "--log", test_log, "--data", str(tmp_path / "d"), "-q")
    assert code == 0 and f"{manifest.test_samples:,} positions" in out, err
    code, out, err = _run("recommend", "--model", "POP", "--data", str(tmp_path / "d"), "--log", test_log,
                          "-o", str(recs), "-q", "--purchase-values", "none")  # given: orders are views now
    assert code == 0 and "lists" in out and f"{manifest.test_samples:,} lists" not in out, err


def _fake_net(data: Path, tmp_path: Path) -> tuple[NetUnderTest, Any]:
    """A deploy net for the dataset, and a deterministic stand-in for Caffe's scores: a fixed
    function of each row's inputs, so equal rows get equal scores."""
    cfg = bind_dataset(load_config(EXAMPLE), data)
    (tmp_path / DEPLOY).write_text(generate(cfg)[DEPLOY])
    (tmp_path / "model.caffemodel").write_bytes(b"unused")
    items = load_manifest(data).items
    mix = np.random.default_rng(0).normal(size=(2 * cfg.model.states, items))

    def scores_of(deploy: Path, weights: Path, sources: Path, blob: str) -> npt.NDArray[Any]:
        rows = read_split(sources)
        inputs = np.stack([rows[f"page_{t}"] for t in range(cfg.model.states)]
                          + [rows[f"dwell_{t}"].ravel() for t in range(cfg.model.states)], axis=1)
        return np.sin(inputs @ mix).astype(np.float32)

    return NetUnderTest(tmp_path / DEPLOY, tmp_path / "model.caffemodel", {}), scores_of


@pytest.mark.parametrize("which", ["trio", "foreign_trio"])
def test_recommend_and_score_give_evaluate_s_recall_and_mrr(which: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             request: pytest.FixtureRequest) -> None:
    root, data = request.getfixturevalue(which)
    net, scores_of = _fake_net(data, tmp_path)
    monkeypatch.setattr(recommend_module, "SCORE_BYTES", 4 * 40 * 7)  # 7 rows a chunk: many chunks
    test_log = LogSpec("gru4rec", root / "shop_test.txt")
    scorer = NetScorer(net, load_manifest(data).items, scores_of=scores_of)
    report = recommend(test_log, data, scorer, 20, tmp_path / "recs.csv", quiet)
    assert report.rows == load_manifest(data).test_samples
    ours = score(tmp_path / "recs.csv", test_log, "5,20", quiet, dataset=load_manifest(data))
    theirs = evaluate_net(net, data, "5,20", scores_of=scores_of).results["DRNN"]
    assert ours.positions == theirs.samples
    for k in (5, 20):
        assert ours.hit_rate[k] == pytest.approx(theirs.recall[k], abs=1e-12)
        assert ours.mrr[k] == pytest.approx(theirs.mrr[k], abs=1e-12)
    assert 0 < ours.hit_rate[5] < ours.hit_rate[20] < 1


def test_the_csv_is_session_rec_s_layout(trio: tuple[Path, Path], tmp_path: Path) -> None:
    root, data = trio
    code, out, err = _run("recommend", "--model", "POP", "--data", str(data), "--log", str(root / "shop_test.txt"),
                          "-k", "7", "-o", str(tmp_path / "pop.csv"), "-q")
    assert code == 0, err
    lines = (tmp_path / "pop.csv").read_text().splitlines()
    assert lines[0] == HEADER == "SessionId;Position;Recommendations;Scores"
    lengths = Counter(line.split("\t")[0] for line in (root / "shop_test.txt").read_text().splitlines()[1:])
    assert len(lines) - 1 == sum(n - 1 for n in lengths.values())
    assert f"wrote {tmp_path / 'pop.csv'}: {len(lines) - 1:,} lists of 7 items (POP)" in out
    seen: dict[str, list[int]] = {}
    for line in lines[1:]:
        session, position, items, scores = line.split(";")
        seen.setdefault(session, []).append(int(position))
        values = [float(v) for v in scores.split(",")]
        assert len(items.split(",")) == len(values) == 7 and values == sorted(values, reverse=True)
        assert items == lines[1].split(";")[2]  # POP: one list for all
    assert {s: len(p) for s, p in seen.items()} == {s: n - 1 for s, n in lengths.items()}
    assert all(p == list(range(len(p))) for p in seen.values())  # positions 0 … L-2
    assert read_lists(tmp_path / "pop.csv")[(lines[1].split(";")[0], 0)] == lines[1].split(";")[2].split(",")


def test_the_cli_filters_the_log_as_prepare_did_unless_told_not_to(foreign_trio: tuple[Path, Path],
                                                                    tmp_path: Path) -> None:
    root, data = foreign_trio
    test_log, recs = str(root / "shop_test.txt"), tmp_path / "recs.csv"
    code, out, err = _run("recommend", "--model", "POP", "--data", str(data), "--log", test_log, "-o", str(recs))
    assert code == 0, err
    rows = load_manifest(data).test_samples
    assert f"{rows:,} lists" in out and "3 events dropped by the dataset's filters" in err
    code, out, err = _run("score", str(recs), "--log", test_log, "--data", str(data), "-q")
    assert code == 0 and f"{rows:,} positions" in out, err
    code, _, err = _run("score", str(recs), "--log", test_log, "-q")  # unfiltered: positions recs lacks
    assert code == 2 and "no list for session" in err
    code, out, err = _run("recommend", "--model", "POP", "--data", str(data), "--log", test_log, "-o", str(recs),
                          "--no-filter", "-q")
    assert code == 0 and f"{rows + 2:,} lists" in out, err  # 7777 and 7778 as OOV pages: 2 more positions
    code, out, err = _run("score", str(recs), "--log", test_log, "-q")
    assert code == 0 and f"{rows + 2:,} positions" in out, err


@pytest.mark.parametrize("model", ["S-POP", "item-kNN", "SKNN", "V-SKNN"])
def test_every_baseline_writes_a_list_file_that_scores(trio: tuple[Path, Path], tmp_path: Path, model: str) -> None:
    root, data = trio
    recs = tmp_path / "recs.csv"
    code, _, err = _run("recommend", "--model", model, "--data", str(data), "--log", str(root / "shop_test.txt"),
                        "-o", str(recs), "-q")
    assert code == 0, err
    code, out, err = _run("score", str(recs), "--log", str(root / "shop_test.txt"), "-k", "20", "-q")
    assert code == 0, err
    assert "HR@K" in out and out.splitlines()[2].split()[0] == "20"


def test_top_k_orders_ties_by_index_and_nan_last() -> None:
    scores = np.array([[0.1, np.nan, 0.5, 0.5, 0.2], [1, 2, 3, 4, 5]], dtype=np.float32)
    top, values = top_k(scores, 3)
    assert top.tolist() == [[2, 3, 4], [4, 3, 2]]
    assert values[0].tolist() == pytest.approx([0.5, 0.5, 0.2])
    top, _ = top_k(scores, 9)
    assert top.tolist() == [[2, 3, 4, 0, 1], [4, 3, 2, 1, 0]]


# --- score ----------------------------------------------------------------------------------


def _log(tmp_path: Path) -> Path:
    # session 1: a b c d (targets b c d at positions 0 1 2); session 2: e a (target a at 0); session 3: one view
    return write_tsv(tmp_path / "t.tsv", [(1, 1, 0), (1, 2, 1), (1, 3, 2), (1, 4, 3), (2, 5, 9), (2, 1, 10),
                                           (3, 7, 20)])


RECS = [HEADER, "1;0;2,9;0.9,0.1", "1;1;9,8,3;0.5,0.4,0.3", "1;2;9,8;0.5,0.4", "2;0;5,6,7,1;4,3,2,1"]


def test_score_is_session_rec_s_hit_rate_and_mrr(tmp_path: Path) -> None:
    (tmp_path / "recs.csv").write_text("\n".join(RECS) + "\n")
    result = score(tmp_path / "recs.csv", LogSpec("gru4rec", _log(tmp_path)), "1,3,20", quiet)
    # places: 1, 3, miss, 4
    assert result.positions == 4 and result.sessions == 2 and result.short_lists == 4  # 2, 3, 2, 4 items < 20
    assert result.hit_rate == {1: 0.25, 3: 0.5, 20: 0.75}
    assert result.mrr == pytest.approx({1: 0.25, 3: (1 + 1 / 3) / 4, 20: (1 + 1 / 3 + 1 / 4) / 4})
    code, out, _ = _run("score", str(tmp_path / "recs.csv"), "--log", str(tmp_path / "t.tsv"), "-k", "3", "-q")
    assert code == 0 and "4 positions in 2 sessions" in out and "0.5000    0.3333" in out
    assert out.splitlines()[-1] == "note: 2 lists hold fewer than 3 items"


@pytest.mark.parametrize(
    ("recs", "message"),
    [
        (["SessionId;Recommendations;Scores", "1;0;1;1"], "expected session-rec's header"),
        ([HEADER, *RECS[1:3], "1;2;9"], ":4: 3 fields, the header has 4"),
        ([HEADER, *RECS[1:], "1;x;1;1"], "Position must be a whole number"),
        ([HEADER, *RECS[1:], "1;0;1;1"], "a second row for session 1 position 0"),
        ([HEADER, *RECS[1:3], RECS[4]], "no list for session 1 position 2"),
        ([*RECS, "3;0;1;1"], "session 3 position 0 is not a position of"),
        ([HEADER, *RECS[1:], "2;1;1,2;1"], "2 recommendations but a different number of scores"),
    ],
)
def test_a_malformed_or_foreign_list_file_is_one_line(tmp_path: Path, recs: list[str], message: str) -> None:
    (tmp_path / "recs.csv").write_text("\n".join(recs) + "\n")
    code, _, err = _run("score", str(tmp_path / "recs.csv"), "--log", str(_log(tmp_path)), "-q")
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and message in err, err


@pytest.mark.parametrize(("ks", "message"), [("0", "error: -k: every K must be >= 1, got 0"),
                                             ("x", "error: -k: expected comma-separated integers")])
def test_a_bad_k_of_score_names_its_option(tmp_path: Path, ks: str, message: str) -> None:
    (tmp_path / "recs.csv").write_text("\n".join(RECS) + "\n")
    code, _, err = _run("score", str(tmp_path / "recs.csv"), "--log", str(_log(tmp_path)), "-k", ks, "-q")
    assert code == 2 and err.count("\n") == 1 and err.startswith(message), err


def test_score_of_a_missing_file_is_one_line(tmp_path: Path) -> None:
    code, _, err = _run("score", str(tmp_path / "none.csv"), "--log", str(_log(tmp_path)), "-q")
    assert code == 2 and err.count("\n") == 1 and "none.csv: cannot read" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--log", "{log}", "-o", "{out}"], "--data: name the prepared dataset"),
        (["--log", "{log}", "-o", "{out}", "--data", "{data}"], "give RUN (a tuning run folder)"),
        (["--log", "{log}", "-o", "{out}", "--data", "{data}", "--deploy", "{log}"], "--deploy and --weights go"),
        (["--log", "{log}", "-o", "{log}", "--data", "{data}", "--model", "POP"], "is an input of this command"),
        (["--log", "{log}", "-o", "{data}", "--data", "{data}", "--model", "POP"], "is a directory"),
        (["--log", "{log}", "-o", "{out}", "--data", "{data}", "--model", "POP", "--deploy", "{log}"],
         "is a baseline"),
        (["--log", "{missing}", "-o", "{out}", "--data", "{data}", "--model", "POP"], "missing.txt"),
        (["--log", "{log}", "-o", "{out}", "--data", "{missing}", "--model", "POP"], "no manifest.json"),
        (["--log", "{log}", "-o", "{out}", "--data", "{data}", "--model", "POP", "--format", "otto"], "t.tsv"),
    ],
)
def test_bad_recommend_input_is_one_line(trio: tuple[Path, Path], tmp_path: Path, args: list[str],
                                         message: str) -> None:
    _, data = trio
    names = {"log": _log(tmp_path), "out": tmp_path / "recs.csv", "data": data, "missing": tmp_path / "missing.txt"}
    code, _, err = _run("recommend", *[a.format(**names) for a in args], "-q")
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "recs.csv").exists()


def test_recommend_refuses_a_purchase_dataset(tmp_path: Path) -> None:
    """Its classes are items bought; lists at every next view of a session would judge them as next clicks."""
    log = synth_log(tmp_path / "log", sessions=200, seed=3, items=60)
    run_prepare(yoochoose_spec(log), tmp_path / "data", window=3)
    code, _, err = _run("recommend", "--model", "POP", "--data", str(tmp_path / "data"), "--log",
                        str(log / "clicks.dat"), "--buys", str(log / "buys.dat"), "-o", str(tmp_path / "r.csv"), "-q")
    assert code == 2 and err.count("\n") == 1 and "--target purchase" in err and "next-item" in err, err
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize(("layout", "message"), [
    (DENSE, "the net reads history, which the dataset's rows lack (sparse layout, K=32, U=32)"),
    (SampleLayout(8, 4), "the net's history_ids is [1, 8] a row, the dataset's [1, 32]"),
])
def test_a_net_of_another_sample_layout_is_one_line(trio: tuple[Path, Path], tmp_path: Path, layout: SampleLayout,
                                                    message: str) -> None:
    """Before Caffe starts (whose own message would be a shape check deep in a layer)."""
    root, data = trio
    other = run_prepare(LogSpec("gru4rec", root / "shop_train_tr.txt", valid=root / "shop_train_valid.txt",
                                test=root / "shop_test.txt"), tmp_path / "other",
                        build=BuildOptions(target="next-item", max_items=100), window=3, layout=layout)
    net, _ = _fake_net(tmp_path / "other", tmp_path)
    args = ["recommend", "--data", str(data), "--log", str(root / "shop_test.txt"), "-o", str(tmp_path / "r.csv")]
    code, _, err = _run(*args, "--deploy", str(net.deploy), "--weights", str(net.weights), "-q")
    assert other.manifest.layout == layout
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "r.csv").exists()


def test_a_failing_model_leaves_the_old_list_file(trio: tuple[Path, Path], tmp_path: Path) -> None:
    root, data = trio
    net, _ = _fake_net(data, tmp_path)
    (tmp_path / "recs.csv").write_text("old\n")

    def broken(*_: object) -> npt.NDArray[Any]:
        return np.zeros((3, 2), dtype=np.float32)  # the wrong width: another dataset's net

    scorer = NetScorer(net, load_manifest(data).items, scores_of=broken)
    with pytest.raises(Exception, match="the net scores 2 items"):
        recommend(LogSpec("gru4rec", root / "shop_test.txt"), data, scorer, 20, tmp_path / "recs.csv", quiet)
    assert (tmp_path / "recs.csv").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([DEPLOY, "model.caffemodel", "recs.csv"])


def test_hdf5_rows_of_each_chunk_are_one_file(trio: tuple[Path, Path], tmp_path: Path) -> None:
    root, data = trio
    manifest = load_manifest(data)
    prefixes = read_prefixes(LogSpec("gru4rec", root / "shop_test.txt"), manifest, quiet)
    chunks = write_prefix_rows(prefixes, manifest, 2, tmp_path, 16, quiet).chunks
    assert len(chunks) == -(-prefixes.samples.samples // 16)
    assert all(len(hdf5_files(chunk)) == 1 for chunk in chunks)


@pytest.mark.parametrize("where", ["opening", "writing"])
def test_a_full_disk_leaves_the_old_list_file(trio: tuple[Path, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    root, data = trio
    out = tmp_path / "recs.csv"
    out.write_text("old\n")
    if where == "opening":
        fill_disk_at(monkeypatch, 1)  # the staged list file's
    else:
        def filling(handle: Any, *_: object) -> int:
            handle.write("1;0;1;1\n" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(recommend_module, "_write_lists", filling)
    code, _, err = _run("recommend", "--model", "POP", "--data", str(data), "--log", str(root / "shop_test.txt"),
                        "-o", str(out), "-q")
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err, err
    assert out.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["recs.csv"]
