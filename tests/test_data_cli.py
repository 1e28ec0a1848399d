"""`drnngen synth` and `drnngen prepare` through click's CliRunner, in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from drnngen.cli import cli
from drnngen.cli.data import parse_size
from drnngen.errors import UserError
from tests.data_support import OTTO_SAMPLE, read_split, write_tsv


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("log_format", "files", "prepare_args"),
    [
        ("yoochoose", ["buys.dat", "clicks.dat", "users.csv"],
         ["clicks.dat", "--buys", "buys.dat", "--users", "users.csv"]),
        ("gru4rec", ["buys.tsv", "sessions.tsv", "users.csv"],
         ["sessions.tsv", "--buys", "buys.tsv", "--users", "users.csv", "--target", "next-item"]),
        ("otto", ["sessions.jsonl", "users.csv"], ["sessions.jsonl", "--users", "users.csv"]),
    ],
)
def test_synth_then_prepare(tmp_path: Path, log_format: str, files: list[str], prepare_args: list[str]) -> None:
    log = tmp_path / "log"
    code, out, err = _run("synth", "--sessions", "400", "--seed", "7", "--format", log_format, "-o", str(log))
    assert code == 0, err
    assert sorted(p.name for p in log.iterdir() if not p.name.startswith(".")) == files  # and the marker
    assert f"wrote {log / files[0]}" in out and "next: drnngen prepare" in out
    assert "generated 400 sessions" in err  # progress goes to stderr

    args = [str(log / a) if not a.startswith("-") and "." in a else a for a in prepare_args]
    code, out, err = _run("prepare", *args, "--window", "2", "--max-pages", "300", "-o", str(tmp_path / "data"))
    assert code == 0, err
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["format"] == log_format and manifest["pages"] <= 300 and manifest["window"] == 2
    assert f"M={manifest['pages']} pages (Embed input_dim {manifest['pages'] + 1})" in out
    assert f"train {manifest['train_samples']:,}" in out
    assert "reading" in err and "window 2" in err
    rows = read_split(tmp_path / "data" / "w2" / "train.txt")
    assert len(rows["label"]) == manifest["train_samples"] > 0


def test_quiet_prepare_prints_only_the_summary(tmp_path: Path) -> None:
    _run("synth", "--sessions", "200", "-o", str(tmp_path / "log"), "-q")
    code, out, err = _run("prepare", str(tmp_path / "log" / "clicks.dat"), "--buys", str(tmp_path / "log" / "buys.dat"),
                          "-o", str(tmp_path / "data"), "-q")
    assert code == 0 and err == ""
    assert out.startswith(f"wrote {tmp_path / 'data'}: M=")


def test_synth_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    assert _run("synth", "--sessions", "50", "-o", str(tmp_path / "log"), "-q")[0] == 0
    code, _, err = _run("synth", "--sessions", "60", "-o", str(tmp_path / "log"))
    assert code == 2 and err.strip() == f"error: {tmp_path / 'log'}: already exists; pass --force to replace it"
    assert _run("synth", "--sessions", "60", "-o", str(tmp_path / "log"), "--force", "-q")[0] == 0


def test_prepare_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "clicks.dat").write_text("1,2014-04-07T10:51:09.277Z,214536502,0\n1,oops,3,0\n")
    code, out, err = _run("prepare", str(tmp_path / "clicks.dat"), "--target", "next-item", "-o", str(tmp_path / "o"))
    assert code == 2 and out == ""
    assert err == f"error: {tmp_path / 'clicks.dat'}:2: timestamp: expected a date-time like " \
                  "2014-04-07T10:51:09.277Z, found 'oops'\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clicks.dat"]


@pytest.mark.skipif(not OTTO_SAMPLE.is_file(), reason=f"the OTTO sample is not beside the repository ({OTTO_SAMPLE})")
def test_prepare_the_otto_sample_with_the_format_guessed(tmp_path: Path) -> None:
    code, out, err = _run("prepare", str(OTTO_SAMPLE), "-o", str(tmp_path / "otto"))
    assert code == 0, err
    assert "samples train 3 / val 0 / test 0" in out
    assert "warning: the val split has no samples" in err


def test_help_lists_the_data_commands() -> None:
    code, out, _ = _run("--help")
    assert code == 0 and "prepare" in out and "synth" in out


@pytest.mark.parametrize(("text", "size"), [("4GiB", 4 << 30), ("256MiB", 256 << 20), ("1e9", 10**9),
                                            ("512k", 512 << 10), ("1.5 GB", 1_500_000_000)])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text, "--x") == size


def test_bad_size() -> None:
    with pytest.raises(UserError, match="--x: not a size: '4 parsecs'"):
        parse_size("4 parsecs", "--x")


def test_default_vocabulary_covers_every_train_item_of_a_70k_click_log(tmp_path: Path) -> None:
    """Issue 12's acceptance: `--max-pages all --max-items all` by default, so no train page
    view is out of vocabulary and no train purchase is dropped for its item; the old caps
    (2,000 pages, 1,000 items) would have cut this log."""
    log = tmp_path / "log"
    assert _run("synth", "--sessions", "8800", "--items", "12000", "--categories", "120", "--seed", "4",
                "-o", str(log), "-q")[0] == 0
    clicks = sum(1 for _ in (log / "clicks.dat").open())
    assert 65_000 <= clicks <= 75_000
    code, _, err = _run("prepare", str(log / "clicks.dat"), "--buys", str(log / "buys.dat"), "-o",
                        str(tmp_path / "data"), "-q")
    assert code == 0, err
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    train = manifest["splits"]["train"]
    assert train["oov_page_views"] == 0 and train["dropped_oov_label"] == 0, train
    assert manifest["pages"] > 2000 and manifest["items"] > 1000  # beyond the old default caps
    assert manifest["parameters"]["max_pages"] is None and manifest["layout"]["history"] == "sparse"
    print(f"{clicks:,} clicks: M={manifest['pages']:,}, N={manifest['items']:,}, "
          f"test OOV page views {manifest['splits']['test']['oov_page_views']:,}")
    capped = _run("prepare", str(log / "clicks.dat"), "--buys", str(log / "buys.dat"), "-o",
                  str(tmp_path / "capped"), "--max-pages", "2000", "--max-items", "1000", "-q")
    assert capped[0] == 0, capped[2]
    old = json.loads((tmp_path / "capped" / "manifest.json").read_text())["splits"]["train"]
    assert old["oov_page_views"] > 0 and old["dropped_oov_label"] > 0


def test_layout_options(tmp_path: Path) -> None:
    """--dense-history writes the dense rows and a manifest without `layout` (what every
    dataset before the sparse layout has); --history-k/--user-items-k size the sparse rows."""
    from drnngen.bind import bind_dataset
    from drnngen.codegen.config import parse_config
    from drnngen.data.manifest import load_manifest

    log = tmp_path / "log"
    _run("synth", "--sessions", "300", "--seed", "2", "-o", str(log), "-q")
    base = [str(log / "clicks.dat"), "--buys", str(log / "buys.dat"), "--users", str(log / "users.csv"), "-q"]
    assert _run("prepare", *base, "-o", str(tmp_path / "dense"), "--dense-history")[0] == 0
    assert _run("prepare", *base, "-o", str(tmp_path / "sparse"), "--history-k", "5", "--user-items-k", "3")[0] == 0
    dense, sparse = load_manifest(tmp_path / "dense"), load_manifest(tmp_path / "sparse")
    assert "layout" not in dense.data and not dense.layout.sparse
    assert (sparse.layout.history_k, sparse.layout.user_items_k) == (5, 3)
    rows = read_split(tmp_path / "sparse" / "w4" / "train.txt")
    assert rows["history_ids"].shape[1:] == rows["history_weights"].shape[1:] == (1, 5)
    assert rows["user_items"].shape[1:] == (1, 3) and rows["user_items"].max() == sparse.items  # N pads
    assert read_split(tmp_path / "dense" / "w4" / "train.txt")["history"].shape[1] == dense.pages + 1
    cfg = parse_config({"model": {"fnn": {"layers": 1}}})
    bound = bind_dataset(cfg, tmp_path / "dense").data, bind_dataset(cfg, tmp_path / "sparse").data
    assert (bound[0].history_k, bound[0].user_items_k, bound[1].history_k, bound[1].user_items_k) == (0, 0, 5, 3)
    code, _, err = _run("prepare", *base, "-o", str(tmp_path / "bad"), "--history-k", "0")
    assert code == 2 and err.startswith("error: ") and "--history-k" in err and len(err.splitlines()) == 1
    code, _, err = _run("prepare", *base, "-o", str(tmp_path / "bad"), "--max-pages", "some")
    assert code == 2 and "--max-pages" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--history-k", "65537"], "'--history-k': 65537 is not in the range 1<=x<=65536"),
        (["--user-items-k", "65537"], "'--user-items-k': 65537 is not in the range 1<=x<=65536"),
        (["--dense-history", "--history-k", "8"], "--history-k sizes the sparse layout; --dense-history has none"),
        (["--dense-history", "--user-items-k", "8"], "--user-items-k sizes the sparse layout"),
    ],
)
def test_layout_options_that_cannot_hold_are_one_line(tmp_path: Path, extra: list[str], message: str) -> None:
    """K and U are capped as the config caps data.history_k/user_items_k; with the dense layout
    a K or U given would be ignored, so it is refused."""
    log = write_tsv(tmp_path / "log.tsv", [(1, 10, 0), (1, 11, 5), (2, 10, 9), (2, 12, 12)])
    code, _, err = _run("prepare", str(log), "--target", "next-item", *extra, "-q", "-o", str(tmp_path / "d"))
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "d").exists()
