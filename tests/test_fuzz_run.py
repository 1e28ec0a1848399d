"""Fuzz suite (issue #13), run folders: a damaged ledger (bytes: truncated, bit
flips, garbage; rows: tampered values, paths leading out of the run) and damaged
candidate files through `best`, `report`, `evaluate`, `tune --resume`; and bad values
of every option of `evaluate`, `best`, `report`, `build`, `draw` and `tune`.
The promise is tests/fuzz_support.py's.

The run is made by the real tuner around tests/tuner_support.FakeTrainer (no
Caffe). `report` draws its plots in seconds, so its cases that get past the
ledger are marked slow; `evaluate` cases that get to the net need Caffe.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.data_support import TUNER_DATA
from tests.fuzz_support import FLOAT_VALUES, INT_VALUES, Case, params, run_case
from tests.golden_tool import EXAMPLES
from tests.tuner_support import FakeTrainer, run

DATASET = TUNER_DATA
LEDGER = "ledger.sqlite"
SMALL = str(EXAMPLES / "small.yaml")

Damage = Callable[[Path], None]


def _bytes(change: Callable[[bytes], bytes]) -> Damage:
    def damage(run_dir: Path) -> None:
        path = run_dir / LEDGER
        path.write_bytes(change(path.read_bytes()))
    return damage


def _flip(offset: int) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        at = offset % len(data)
        return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]
    return change


def _sql(statement: str) -> Damage:
    def damage(run_dir: Path) -> None:
        with sqlite3.connect(run_dir / LEDGER) as db:
            db.execute(statement)
        db.close()
    return damage


def _replace(name: str, content: bytes | None) -> Damage:
    """Every candidate's file `name` replaced by `content` (None: removed)."""
    def damage(run_dir: Path) -> None:
        for folder in (run_dir / "candidates").iterdir():
            target = folder / name
            if content is None:
                target.unlink(missing_ok=True)
            else:
                target.write_bytes(content)
    return damage


def _ledger_dir(run_dir: Path) -> None:
    (run_dir / LEDGER).unlink()
    (run_dir / LEDGER).mkdir()


def _ledger_link(run_dir: Path) -> None:
    (run_dir / LEDGER).unlink()
    (run_dir / LEDGER).symlink_to(run_dir / LEDGER)  # a loop


_GARBAGE = bytes(range(256)) * 64
# Damage that makes the ledger unreadable as a whole: every command stops at its door.
BYTE_DAMAGE: dict[str, Damage] = {
    "empty": _bytes(lambda d: b""), "truncated-half": _bytes(lambda d: d[: len(d) // 2]),
    "truncated-100": _bytes(lambda d: d[:100]), "header-flip": _bytes(_flip(0)), "page-size-flip": _bytes(_flip(16)),
    "page2-flip": _bytes(_flip(4096)), "last-page-flip": _bytes(_flip(-4000)), "garbage": _bytes(lambda d: _GARBAGE),
    "zeros": _bytes(lambda d: bytes(len(d))), "text": _bytes(lambda d: b"not a ledger\n"),
    "a-folder": _ledger_dir, "a-link-loop": _ledger_link, "missing": lambda r: (r / LEDGER).unlink(),
    "other-db": _bytes(lambda d: b""), "schema-gone": _sql("DROP TABLE candidates"),
}
# Tampered rows: the ledger opens, a value in it is hostile.
ROW_DAMAGE: dict[str, Damage] = {
    "params-garbage": _sql("UPDATE meta SET value = '{not json' WHERE key = 'params'"),
    "params-list": _sql("UPDATE meta SET value = '[1, 2]' WHERE key = 'params'"),
    "params-missing": _sql("DELETE FROM meta WHERE key = 'params'"),
    "status-unknown": _sql("UPDATE meta SET value = '\"exploded\"' WHERE key = 'status'"),
    "schema-version-99": _sql("UPDATE meta SET value = '99' WHERE key = 'schema_version'"),
    "fitness-nan": _sql("UPDATE candidates SET fitness = 'nan'"),
    "fitness-text": _sql("UPDATE candidates SET fitness = 'high'"),
    "genotype-garbage": _sql("UPDATE candidates SET genotype = '{['"),
    "genotype-huge": _sql("UPDATE candidates SET genotype = '[' || replace(hex(zeroblob(50000)), '00', '1,') || '1]'"),
    "config-alias-bomb": _sql("UPDATE candidates SET config = 'a: &a [x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a]\n"
                              "c: &c [*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c]'"),
    "config-garbage": _sql("UPDATE candidates SET config = ':: not yaml ['"),
    "metrics-garbage": _sql("UPDATE candidates SET metrics = 'nope'"),
    "validations-garbage": _sql("UPDATE candidates SET validations = '[{\"iteration\": \"x\"}]'"),
    "status-unknown-row": _sql("UPDATE candidates SET status = 'exploded'"),
    "caffemodel-etc-passwd": _sql("UPDATE candidates SET caffemodel = '/etc/passwd'"),
    "caffemodel-escapes": _sql("UPDATE candidates SET caffemodel = '../../../outside.caffemodel'"),
    "folder-escapes": _sql("UPDATE candidates SET folder = '../../..'"),
    "folder-root": _sql("UPDATE candidates SET folder = '/'"),
    "record-garbage": _sql("UPDATE generations SET record = '{'"),
    "population-garbage": _sql("UPDATE generations SET population_end = '[1, 2'"),
    "rng-garbage": _sql("UPDATE generations SET rng_start = '\"x\"'"),
    "evaluations-dangling": _sql("INSERT INTO evaluations (generation, position, key, source) "
                                 "VALUES (0, 99, 'no-such-key', 'trained')"),
    "no-candidates": _sql("DELETE FROM candidates"),
    "no-generations": _sql("DELETE FROM generations"),
    "iterations-negative": _sql("UPDATE candidates SET iterations = -5"),
    "accuracy-huge": _sql("UPDATE candidates SET accuracy = 1e308, loss = -1e308"),
}
FILE_DAMAGE: dict[str, Damage] = {
    "caffemodel-gone": _replace("model.caffemodel", None), "caffemodel-garbage": _replace("model.caffemodel", _GARBAGE),
    "deploy-gone": _replace("deploy.prototxt", None), "deploy-garbage": _replace("deploy.prototxt", _GARBAGE),
    "net-gone": _replace("net.prototxt", None), "config-gone": _replace("config.yaml", None),
    "caffe-log-garbage": _replace("caffe.log", _GARBAGE), "candidates-gone": lambda r: shutil.rmtree(r / "candidates"),
}
DAMAGE = {"ledger-bytes": BYTE_DAMAGE, "ledger-rows": ROW_DAMAGE, "files": FILE_DAMAGE}
_SLOW = (pytest.mark.slow,)
_CAFFE = (pytest.mark.caffe,)


def _damage_cases() -> Iterator[Case]:
    for category, damages in DAMAGE.items():
        for name in damages:
            damage = (("damage", f"{category}|{name}".encode()),)
            yield Case("best", category, name, ("best", "{run}", "-o", "{out}"), damage)
            yield Case("report", category, name, ("report", "{run}", "-o", "{out}"), damage,
                       marks=() if category == "ledger-bytes" else _SLOW)
            yield Case("evaluate", category, name, ("evaluate", "{run}", "--data", "{data}", "-o", "{out}"), damage,
                       marks=() if category == "ledger-bytes" else _CAFFE)
            yield Case("tune", f"resume-{category}", name, ("tune", "--resume", "{run}", "--no-cache"), damage,
                       marks=() if category == "ledger-bytes" else _SLOW)


def _option_cases() -> Iterator[Case]:
    evaluate = ("evaluate", "{run}", "--data", "{data}", "-o", "{out}")
    ks = {"zero": "0", "negative": "-1", "word": "a,b", "empty": "", "commas": ",,", "nan": "nan", "float": "1.5",
          "huge": "9" * 30, "1e400": "1e400", "many": ",".join(map(str, range(1, 5000))), "twice": "5,5",
          "space": " 1, 5 "}
    for name, value in ks.items():
        yield Case("evaluate", "option-k", f"--k={name}", (*evaluate, "--k", value), marks=_CAFFE)
    for option in ("--sknn-k", "--sknn-sample"):
        for name, value in INT_VALUES.items():
            yield Case("evaluate", "option-int", f"{option}={name}", (*evaluate, option, value), marks=_CAFFE)
    for name, value in FLOAT_VALUES.items():
        yield Case("evaluate", "option-float", f"--shrink={name}", (*evaluate, "--shrink", value), marks=_CAFFE)
    texts = {
        "--candidate": {"unknown": "c999", "empty": "", "sql": "' OR 1=1 --", "path": "../../etc", "long": "x" * 5000},
        "--data": {"missing": "{in}/nope", "a-file": "{in}/f", "the-run": "{run}", "empty": ""},
        "--deploy": {"garbage": "{in}/f", "missing": "{in}/nope"},
    }
    for option, values in texts.items():
        for name, value in values.items():
            args = list(evaluate)
            if option in args:
                args[args.index(option) + 1] = value
            else:
                args += [option, value]
            yield Case("evaluate", "option-text", f"{option}={name}", tuple(args), (("f", _GARBAGE),))
    yield Case("evaluate", "option-text", "--weights=garbage",
               ("evaluate", "--deploy", "{in}/f", "--weights", "{in}/f", "--data", "{data}", "-o", "{out}"),
               (("f", _GARBAGE),))
    yield Case("evaluate", "option-text", "no-run", ("evaluate", "--data", "{data}"))
    outputs = {"a-file": "{in}/f", "under-a-file": "{in}/f/x", "empty": "", "long-name": "{out}/" + "n" * 300}
    for command in ("best", "report"):
        for name, value in outputs.items():
            yield Case(command, "option-output", f"-o={name}", (command, "{run}", "-o", value), (("f", b"x"),),
                       marks=_SLOW if command == "report" else ())
        for name, value in {"a-file": "{in}/f", "missing": "{in}/nope", "empty": "", "root": "/"}.items():
            yield Case(command, "option-run", f"run={name}", (command, value, "-o", "{out}"), (("f", b"x"),))
    for command, extra in (("build", ()), ("draw", ())):
        out = "{out}/net.dot" if command == "draw" else "{out}"
        for name, value in {**outputs, "a-folder": "{in}", "bad-suffix": "{out}/net.jpg"}.items():
            if command == "build" and name in ("bad-suffix", "a-folder"):  # build -o DIR writes into DIR
                continue
            yield Case(command, "option-output", f"-o={name}", (command, SMALL, "-o", value, *extra), (("f", b"x"),))
        for name, value in {"missing": "{in}/nope", "a-file": "{in}/f", "the-run": "{run}", "empty": ""}.items():
            yield Case(command, "option-data", f"--data={name}", (command, SMALL, "-o", out, "--data", value),
                       (("f", _GARBAGE),))
        for name, value in {"missing": "{in}/nope.yaml", "a-folder": "{in}", "dev-zero": "/dev/zero",
                            "empty-name": ""}.items():
            yield Case(command, "option-config", f"config={name}", (command, value, "-o", out))


# `tune` with an up-front stopper: this dataset has no validation split, so every
# option that gets past its own check ends in one line before any training.
TUNE = ("tune", "--config", SMALL, "--data", "{novalid}", "--no-cache", "-o", "{out}")


def _tune_option_cases() -> Iterator[Case]:
    ints = ("--generations", "--population", "--iters", "--patience", "--workers", "--seed")
    floats = ("--epochs", "--time-budget", "--validate-every", "--train-minutes", "--pc", "--pm", "--timeout")
    for option in ints:
        for name, value in INT_VALUES.items():
            yield Case("tune", "option-int", f"{option}={name}", (*TUNE, option, value))
    for option in floats:
        for name, value in FLOAT_VALUES.items():
            yield Case("tune", "option-float", f"{option}={name}", (*TUNE, option, value))
    texts = {
        "--gpus": {"word": "a,b", "negative": "-1", "empty": "", "commas": ",,", "huge": "9" * 30, "twice": "0,0"},
        "--scheduler": {"not-a-url": "not a url", "no-port": "tcp://host", "bad-port": "tcp://h:99999",
                        "http": "http://h:1", "empty": "", "path": "tcp://h:1/x"},
        "--strategy": {"unknown": "random"}, "--mode": {"unknown": "tpu"},
        "--cache-dir": {"a-file": "{in}/f", "under-a-file": "{in}/f/x"},
        "--resume": {"missing": "{in}/nope", "a-file": "{in}/f", "empty": "", "with-options": "{run}"},
        "--data": {"missing": "{in}/nope", "a-file": "{in}/f", "empty": ""},
        "-o": {"a-file": "{in}/f", "under-a-file": "{in}/f/x", "long-name": "{out}/" + "n" * 300},
    }
    for option, values in texts.items():
        for name, value in values.items():
            args = list(TUNE)
            if option in args:
                args[args.index(option) + 1] = value
            else:
                args += [option, value]
            yield Case("tune", "option-text", f"{option}={name}", tuple(args), (("f", b"x"),))
    yield Case("tune", "option-text", "--resume=with-no-cache", ("tune", "--resume", "{run}", "--no-cache",
                                                                  "--cache-dir", "{in}/f"), (("f", b"x"),))
    yield Case("tune", "option-text", "no-data", ("tune", "-o", "{out}"))
    yield Case("tune", "option-text", "iters-and-epochs", (*TUNE, "--iters", "5", "--epochs", "1"))
    # (`drnngen` alone prints the help, on purpose: drnngen/cli/__init__.py)
    for name, args in {"unknown-command": ("fly",), "unknown-option": ("--bogus",),
                       "sub-unknown-option": ("build", SMALL, "--bogus")}.items():
        yield Case("drnngen", "usage", name, args)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, dataset: Path) -> Path:
    root = tmp_path_factory.mktemp("fuzz-run")
    summary = run(root, dataset, "run", FakeTrainer(), changes={"generations": 1})
    assert summary.best is not None
    return root / "run"


@pytest.fixture(scope="module")
def no_validation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset with no validation samples (tune refuses it up front)."""
    from drnngen.data.prepare import PrepareOptions, prepare
    from drnngen.data.sessions import BuildOptions
    from tests.data_support import quiet, synth_log, yoochoose_spec

    root = tmp_path_factory.mktemp("fuzz-novalid")
    log = synth_log(root / "log", sessions=300, items=40, categories=4)
    options = PrepareOptions(build=BuildOptions(max_pages=50, max_items=10, split=(0.8, 0.0, 0.2)), window=3)
    prepare(yoochoose_spec(log, users=False), options, root / "data", quiet)
    return root / "data"


def _lay_out(case: Case, finished_run: Path, root: Path) -> Path:
    """A copy of the finished run under root, damaged as the case says."""
    run_dir = root / "run"
    shutil.copytree(finished_run, run_dir, symlinks=True)
    spec = dict(case.files).get("damage")
    if spec is not None:
        category, name = spec.decode().split("|")
        if name == "other-db":
            os.remove(run_dir / LEDGER)
            with sqlite3.connect(run_dir / LEDGER) as db:
                db.execute("CREATE TABLE meta (x INTEGER)")
            db.close()
        else:
            DAMAGE[category][name](run_dir)
    return run_dir


def _without_damage(case: Case) -> Case:
    return Case(case.command, case.category, case.detail, case.args,
                tuple((n, c) for n, c in case.files if n != "damage"))


@pytest.mark.parametrize("case", params([*_damage_cases(), *_option_cases(), *_tune_option_cases()]))
def test_hostile_run_folder_or_option(case: Case, tmp_path: Path, finished_run: Path, dataset: Path,
                                      no_validation: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_dir = _lay_out(case, finished_run, tmp_path)
    fill = {"run": run_dir, "data": dataset, "novalid": no_validation}
    # `tune --resume` and `evaluate` write into RUN (the ledger, evaluation.json): RUN is their output there
    writes_run = case.command == "tune" and "--resume" in case.args
    watch = [dataset, no_validation]
    if writes_run:
        moved = tmp_path / "out"
        run_dir.rename(moved)
        fill["run"] = moved
    # evaluate regenerates a deploy.prototxt its candidate folder lacks into RUN/evaluation/ (documented)
    documented = [fill["run"] / "evaluation"] if case.command == "evaluate" else []
    run_case(_without_damage(case), tmp_path, fill, watch=watch, documented=documented)
