"""Fuzz suite (issue #13), `recommend` and `score`: a damaged --log, a damaged RECS
file and bad values of every option, with a baseline model (POP, item-kNN...: no
Caffe). The promise is tests/fuzz_support.py's."""

from __future__ import annotations

import dataclasses
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.data_support import TUNER_DATA, synth_log
from tests.fuzz_support import FLOAT_VALUES, INT_VALUES, Case, params, run_case

# recommend writes next-view lists: it takes next-item datasets only
DATASET = dataclasses.replace(TUNER_DATA, target="next-item")
_GARBAGE = random.Random(5).randbytes(3000)

Damage = Callable[[bytes], bytes]


def _line(n: int, new: bytes) -> Damage:
    def damage(good: bytes) -> bytes:
        lines = good.split(b"\n")
        lines[min(n, len(lines) - 2)] = new
        return b"\n".join(lines)
    return damage


LOG_DAMAGE: dict[str, Damage] = {
    "empty": lambda g: b"", "truncated": lambda g: g[: len(g) // 2 + 5], "garbage": lambda g: _GARBAGE,
    "garbage-line": _line(2, _GARBAGE[:200]), "nul": lambda g: g.replace(b"\n", b"\x00\n"),
    "cr-only": lambda g: g.replace(b"\n", b"\r"), "semicolons": lambda g: g.replace(b",", b";"),
    "huge-field": _line(2, b"1,2014-04-01T00:00:00.000Z," + b"9" * (1 << 20) + b",1"),
    "bad-date": _line(2, b"1,2014-02-31T00:00:00.000Z,5,1"), "id-5000-digits": _line(2, b"7" * 5000 + b",x,5,1"),
    "utf16": lambda g: g.decode().encode("utf-16"),
}
_HEADER = b"SessionId;Position;Recommendations;Scores\n"
RECS_DAMAGE: dict[str, Damage] = {
    "empty": lambda g: b"", "header-only": lambda g: _HEADER, "garbage": lambda g: _GARBAGE,
    "truncated": lambda g: g[: len(g) // 2 + 3], "commas": lambda g: g.replace(b";", b","),
    "position-word": _line(1, b"1;first;5,6;1,1"), "position-negative": _line(1, b"1;-4;5,6;1,1"),
    "position-huge": _line(1, b"1;" + b"9" * 40 + b";5,6;1,1"), "scores-nan": _line(1, b"1;0;5,6;nan,inf"),
    "scores-short": _line(1, b"1;0;5,6,7;1"), "items-empty": _line(1, b"1;0;;"),
    "missing-column": _line(1, b"1;0"), "extra-columns": _line(1, b"1;0;5;1;x;y"),
    "session-unknown": _line(1, b"99999999;0;5;1"), "huge-list": _line(1, b"1;0;" + b"5," * 200_000 + b"5;1"),
    "duplicated": lambda g: g + g.split(b"\n", 1)[1], "nul": lambda g: g.replace(b";", b"\x00", 5),
    "cr-only": lambda g: g.replace(b"\n", b"\r"), "bom": lambda g: b"\xef\xbb\xbf" + g,
}

RECOMMEND = ("recommend", "--log", "{in}/clicks.dat", "--data", "{data}", "--model", "POP", "-o", "{out}/recs.csv",
             "-q")
SCORE = ("score", "{in}/recs.csv", "--log", "{in}/clicks.dat", "-q")


def _cases() -> Iterator[Case]:
    for name in LOG_DAMAGE:
        yield Case("recommend", "log", name, RECOMMEND, (("damage", f"log|{name}".encode()),))
        yield Case("score", "log", name, SCORE, (("damage", f"log|{name}".encode()),))
    for name in RECS_DAMAGE:
        yield Case("score", "recs", name, SCORE, (("damage", f"recs|{name}".encode()),))
    for name, value in INT_VALUES.items():
        yield Case("recommend", "option-int", f"-k={name}", (*RECOMMEND, "-k", value))
        yield Case("recommend", "option-int", f"--window={name}", (*RECOMMEND, "--window", value))
        for option in ("--sknn-k", "--sknn-sample"):
            yield Case("recommend", "option-int", f"{option}={name}", (*RECOMMEND, "--model", "SKNN", option, value))
        yield Case("score", "option-int", f"-k={name}", (*SCORE, "-k", value))
    for name, value in FLOAT_VALUES.items():
        yield Case("recommend", "option-float", f"--shrink={name}", (*RECOMMEND, "--model", "item-kNN", "--shrink",
                                                                    value))
    texts = {"--model": {"unknown": "GPT", "empty": ""}, "--format": {"unknown": "parquet"},
             "--columns": {"bad": "session"}, "--delimiter": {"two": "ab", "empty": ""},
             "--data": {"missing": "{in}/nope", "a-file": "{in}/clicks.dat", "empty": ""},
             "--candidate": {"without-run": "abc"}, "--deploy": {"garbage": "{in}/users.csv"}}
    for option, values in texts.items():
        for name, value in values.items():
            yield Case("recommend", "option-text", f"{option}={name}", (*RECOMMEND, option, value))
    outputs = {"a-folder": "{in}", "under-a-file": "{in}/clicks.dat/x.csv", "empty": "",
               "long-name": "{out}/" + "n" * 300, "missing-folder": "{out}/a/b/c.csv"}
    for name, value in outputs.items():
        args = list(RECOMMEND)
        args[args.index("-o") + 1] = value
        yield Case("recommend", "option-output", f"-o={name}", tuple(args))
    for name, value in {"missing": "{in}/nope.csv", "a-folder": "{in}", "dev-zero": "/dev/zero"}.items():
        yield Case("score", "option-text", f"recs={name}", ("score", value, "--log", "{in}/clicks.dat", "-q"))
        yield Case("score", "option-text", f"log={name}", ("score", "{in}/recs.csv", "--log", value, "-q"))
        yield Case("recommend", "option-text", f"log={name}", (*RECOMMEND, "--log", value))
    for name, value in {"word": "a,b", "zero": "0", "empty": "", "many": ",".join(map(str, range(1, 3000)))}.items():
        yield Case("score", "option-text", f"-k={name}", (*SCORE, "-k", value))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, dataset: Path) -> Path:
    """A small log of the dataset's kind and POP's recommendations for it."""
    from click.testing import CliRunner

    from drnngen.cli import cli

    root = tmp_path_factory.mktemp("fuzz-recs")
    log = synth_log(root / "log", sessions=40, seed=1, items=60, categories=6)
    (log / ".drnngen-synth.json").unlink()
    done = CliRunner().invoke(cli, ["recommend", "--log", str(log / "clicks.dat"), "--data", str(dataset),
                                    "--model", "POP", "-k", "5", "-o", str(log / "recs.csv"), "-q"])
    assert done.exit_code == 0, done.output
    return log


@pytest.mark.parametrize("case", params(_cases()))
def test_hostile_recommend_or_score(case: Case, tmp_path: Path, inputs: Path, dataset: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(inputs, tmp_path / "in")
    spec = dict(case.files).get("damage")
    if spec is not None:
        which, name = spec.decode().split("|")
        target = tmp_path / "in" / ("clicks.dat" if which == "log" else "recs.csv")
        target.write_bytes((LOG_DAMAGE if which == "log" else RECS_DAMAGE)[name](target.read_bytes()))
    plain = Case(case.command, case.category, case.detail, case.args)
    run_case(plain, tmp_path, {"data": dataset}, watch=[dataset])
