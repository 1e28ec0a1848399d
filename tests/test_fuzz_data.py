"""Fuzz suite (issue #13), click logs: every input file of every log format × every
kind of damage (truncated, binary garbage, wrong delimiter, bad gzip, empty, huge
fields, bad numbers and dates...) through `prepare`, and bad values of every
option of `prepare` and `synth`. The promise is tests/fuzz_support.py's."""

from __future__ import annotations

import datetime
import gzip
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drnngen.data.synth import SynthOptions, synthesize
from tests.data_support import quiet
from tests.fuzz_support import FLOAT_VALUES, INT_VALUES, Case, params, run_case

Damage = Callable[[bytes], bytes]


def _lines(change: Callable[[list[bytes]], list[bytes]]) -> Damage:
    return lambda good: b"\n".join(change(good.split(b"\n")))


def _at_line(n: int, change: Callable[[bytes], bytes]) -> Damage:
    """Change the n-th data line (after the header, if any)."""
    def damage(good: bytes) -> bytes:
        lines = good.split(b"\n")
        lines[min(n, len(lines) - 2)] = change(lines[min(n, len(lines) - 2)])
        return b"\n".join(lines)
    return damage


def _field(index: int, value: bytes) -> Callable[[bytes], bytes]:
    """One field of a delimited line replaced (the delimiter guessed: tab, ';' or ',')."""
    def change(line: bytes) -> bytes:
        sep = next((s for s in (b"\t", b";", b",") if s in line), b",")
        parts = line.split(sep)
        parts[min(index, len(parts) - 1)] = value
        return sep.join(parts)
    return change


def _gzip(good: bytes) -> bytes:
    return gzip.compress(good, mtime=0)


_GARBAGE = random.Random(13).randbytes(4096)

# Damage to any file: name → function of the good bytes.
DAMAGE: dict[str, dict[str, Damage]] = {
    "empty": {"empty": lambda g: b"", "header-only": lambda g: g.split(b"\n")[0] + b"\n",
              "blank-lines": lambda g: b"\n\n\n"},
    "truncated": {"mid-line": lambda g: g[: len(g) // 2 + 7], "one-byte": lambda g: g[:1],
                  "no-last-newline": lambda g: g.rstrip(b"\n")},
    "binary": {"garbage": lambda g: _GARBAGE, "garbage-line": _at_line(3, lambda line: _GARBAGE[:300]),
               "nul-bytes": lambda g: g.replace(b"\n", b"\x00\n"), "utf16": lambda g: g.decode().encode("utf-16"),
               "latin1": _at_line(2, lambda line: line + b"\xe9\xff"), "bom": lambda g: b"\xef\xbb\xbf" + g},
    "delimiter": {"semicolon": lambda g: g.replace(b",", b";").replace(b"\t", b";"),
                  "pipe": lambda g: g.replace(b",", b"|").replace(b"\t", b"|").replace(b";", b"|"),
                  "crlf": lambda g: g.replace(b"\n", b"\r\n"), "cr-only": lambda g: g.replace(b"\n", b"\r")},
    "fields": {"huge-field": _at_line(2, lambda line: line + b"x" * (2 << 20)),
               "many-columns": _at_line(2, lambda line: line + b",1" * 20_000),
               "missing-columns": _lines(lambda ls: [x.rsplit(b",", 1)[0].rsplit(b"\t", 1)[0] for x in ls]),
               "unbalanced-quote": _at_line(2, lambda line: b'"' + line),
               "long-line": lambda g: g + b"9" * (3 << 20) + b"\n"},
    "values": {"id-word": _at_line(2, _field(0, b"abc")), "id-negative": _at_line(2, _field(0, b"-5")),
               "id-5000-digits": _at_line(2, _field(0, b"7" * 5000)), "item-empty": _at_line(2, _field(2, b"")),
               "item-float": _at_line(2, _field(2, b"1.5")), "item-huge": _at_line(2, _field(2, b"9" * 40)),
               "time-nan": _at_line(2, _field(1, b"nan")), "time-inf": _at_line(2, _field(1, b"inf")),
               "time-1e30": _at_line(2, _field(1, b"1e30")), "time-negative": _at_line(2, _field(1, b"-1e12")),
               "date-feb31": _at_line(2, _field(1, b"2014-02-31T00:00:00.000Z")),
               "date-garbage": _at_line(2, _field(1, b"9999-99-99T99:99")),
               "every-time-nan": _lines(lambda ls: [_field(1, b"nan")(x) if x else x for x in ls])},
    "order": {"reversed": _lines(lambda ls: ls[::-1]), "doubled": lambda g: g + g},
}
GZIP_DAMAGE: dict[str, Damage] = {
    "not-gzip": lambda g: g, "truncated-gzip": lambda g: _gzip(g)[: len(_gzip(g)) // 2],
    "garbage-tail": lambda g: _gzip(g) + _GARBAGE[:100], "gzip-of-garbage": lambda g: _gzip(_GARBAGE),
    "empty-gzip": lambda g: _gzip(b""),
}
# Damage only a JSON-lines file can have (otto).
JSON_DAMAGE: dict[str, Damage] = {
    "deep": _at_line(1, lambda line: b'{"session":1,"events":' + b"[" * 5000 + b"]" * 5000 + b"}"),
    "ts-1e30": _at_line(1, lambda line: b'{"session":1,"events":[{"aid":5,"ts":1e30,"type":"clicks"}]}'),
    "ts-nan": _at_line(1, lambda line: b'{"session":1,"events":[{"aid":5,"ts":NaN,"type":"clicks"}]}'),
    "ts-string": _at_line(1, lambda line: b'{"session":1,"events":[{"aid":5,"ts":"now","type":"clicks"}]}'),
    "session-5000-digits": _at_line(1, lambda line: b'{"session":' + b"9" * 5000 + b',"events":[]}'),
    "aid-float": _at_line(1, lambda line: b'{"session":1,"events":[{"aid":5.5,"ts":1,"type":"clicks"}]}'),
    "aid-negative": _at_line(1, lambda line: b'{"session":1,"events":[{"aid":-5,"ts":1,"type":"clicks"}]}'),
    "type-unknown": _at_line(1, lambda line: b'{"session":1,"events":[{"aid":5,"ts":1,"type":"likes"}]}'),
    "events-not-list": _at_line(1, lambda line: b'{"session":1,"events":{"aid":5}}'),
    "events-of-numbers": _at_line(1, lambda line: b'{"session":1,"events":[1,2,3]}'),
    "not-an-object": _at_line(1, lambda line: b"[1, 2, 3]"),
    "duplicate-keys": _at_line(1, lambda line: b'{"session":1,"session":2,"events":[]}'),
    "trailing-comma": _at_line(1, lambda line: b'{"session":1,"events":[],}'),
    "missing-events": _at_line(1, lambda line: b'{"session":1}'),
}


def _write_logs(root: Path) -> dict[str, Path]:
    """One small good log per format (synth writes three, the other two are converted)."""
    folders = {}
    for log_format in ("yoochoose", "gru4rec", "otto"):
        synthesize(SynthOptions(sessions=60, seed=3, items=40, categories=4), log_format, root / log_format, False,
                   quiet)
        folders[log_format] = root / log_format
    rows = [line.split("\t") for line in (root / "gru4rec" / "sessions.tsv").read_text().splitlines()[1:]]
    buys = [line.split("\t") for line in (root / "gru4rec" / "buys.tsv").read_text().splitlines()[1:]]
    digi, csv = root / "diginetica", root / "csv"
    digi.mkdir()
    csv.mkdir()

    def day_and_ms(t: str) -> tuple[str, int]:
        when = datetime.datetime.fromtimestamp(float(t), datetime.timezone.utc)
        start = when.replace(hour=0, minute=0, second=0, microsecond=0)
        return when.date().isoformat(), int((when - start).total_seconds() * 1000)

    views = ["sessionId;userId;itemId;timeframe;eventdate"]
    views += [f"{s};NA;{i};{day_and_ms(t)[1]};{day_and_ms(t)[0]}" for s, i, t in rows]
    bought = ["sessionId;userId;timeframe;eventdate;ordernumber;itemId"]
    bought += [f"{s};NA;{day_and_ms(t)[1]};{day_and_ms(t)[0]};{n};{i}" for n, (s, i, t) in enumerate(buys)]
    (digi / "train-item-views.csv").write_text("\n".join(views) + "\n")
    (digi / "train-purchases.csv").write_text("\n".join(bought) + "\n")
    table = ["session,item,time,type"] + [f"{s},{i},{t},view" for s, i, t in rows]
    table += [f"{s},{i},{t},buy" for s, i, t in buys]
    (csv / "log.csv").write_text("\n".join(table) + "\n")
    folders.update(diginetica=digi, csv=csv)
    return folders


# Per format: the files of its log (role → name) and the extra arguments of `prepare`.
FORMATS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "yoochoose": ({"events": "clicks.dat", "buys": "buys.dat", "users": "users.csv"}, ()),
    "gru4rec": ({"events": "sessions.tsv", "buys": "buys.tsv"}, ()),
    "diginetica": ({"events": "train-item-views.csv", "buys": "train-purchases.csv"}, ()),
    "otto": ({"events": "sessions.jsonl", "users": "users.csv"}, ()),
    "csv": ({"events": "log.csv"}, ("--columns", "session=session,item=item,time=time,type=type",
                                    "--time-unit", "s")),
}
_OPTION = {"buys": "--buys", "users": "--users"}


def _prepare_args(log_format: str, names: dict[str, str]) -> tuple[str, ...]:
    """`prepare` of the files under {in} (named per role in `names`)."""
    roles, extra = FORMATS[log_format]
    args = ["prepare", "{in}/" + names["events"], "--format", log_format, "-o", "{out}", "-q",
            "--max-pages", "50", "--max-items", "10", *extra]
    for role in roles:
        if role != "events":
            args += [_OPTION[role], "{in}/" + names[role]]
    return tuple(args)


def _log_cases() -> Iterator[Case]:
    for log_format, (roles, _) in FORMATS.items():
        for role in roles:
            tables = {**DAMAGE, **({"json": JSON_DAMAGE} if log_format == "otto" and role == "events" else {})}
            if role == "users" and log_format != "yoochoose":  # read the same way for every format: once
                continue
            for category, damages in tables.items():
                for name in damages:
                    yield Case("prepare", f"{log_format}-{category}", f"{role}={name}",
                               _prepare_args(log_format, roles), (("damage", f"{role}|{category}|{name}".encode()),))
            if role == "events" or log_format == "yoochoose":
                gz_names = {**roles, role: roles[role] + ".gz"}
                for name in GZIP_DAMAGE:
                    yield Case("prepare", f"{log_format}-gzip", f"{role}={name}", _prepare_args(log_format, gz_names),
                               (("damage", f"{role}|gzip|{name}".encode()),))


def _option_cases() -> Iterator[Case]:
    base = _prepare_args("yoochoose", FORMATS["yoochoose"][0])
    for option in ("--window", "--max-pages", "--max-items"):
        for name, value in INT_VALUES.items():
            yield Case("prepare", "option-int", f"{option}={name}", (*base, option, value))
    for name, value in FLOAT_VALUES.items():
        yield Case("prepare", "option-float", f"--dwell-cap={name}", (*base, "--dwell-cap", value))
    sizes = {**FLOAT_VALUES, "unit-zz": "1zz", "1e400GiB": "1e400GiB", "2EiB": "2048PiB", "kib": "0.5kib",
             "spaces": " 1 GiB "}
    for option in ("--memory-budget", "--file-size"):
        for name, value in sizes.items():
            yield Case("prepare", "option-size", f"{option}={name}", (*base, option, value))
    splits = {"two": "0.5,0.5", "sum-2": "1,0.5,0.5", "negative": "-1,1,1", "nan": "nan,0.5,0.5", "inf": "inf,0,0",
              "zeros": "0,0,0", "no-val": "0.8,0,0.2", "no-train": "0,0.5,0.5", "words": "a,b,c", "empty": "",
              "commas": ",,", "1e400": "1e400,0,0", "all-test": "0,0,1"}
    for name, value in splits.items():
        yield Case("prepare", "option-split", f"--split={name}", (*base, "--split", value))
    texts = {
        "--delimiter": {"empty": "", "two": "ab", "newline": "\n", "e-acute": "é", "quote": '"', "nul": "\x01"},
        "--columns": {"no-equals": "session", "unknown-role": "color=red", "empty": "", "empty-name": "session=",
                      "twice": "session=a,session=b", "commas": ",,,"},
        "--purchase-values": {"empty": "", "commas": ",,,", "long": "x" * 100_000},
        "--format": {"unknown": "parquet", "empty": ""},
        "--time-unit": {"unknown": "days"},
        "--target": {"unknown": "everything"},
    }
    for option, values in texts.items():
        for name, value in values.items():
            yield Case("prepare", "option-text", f"{option}={name}", (*base, option, value))
    outputs = {"dot": ".", "dotdot": "..", "empty": "", "a-file": "{in}/clicks.dat",
               "under-a-file": "{in}/clicks.dat/x", "the-input-folder": "{in}",
               "long-name": "{out}/" + "n" * 300, "newline": "{out}/a\nb",
               "proc": "/proc/drnngen-fuzz"}
    for name, value in outputs.items():
        args = list(base)
        args[args.index("-o") + 1] = value
        yield Case("prepare", "option-output", f"-o={name}", (*args, "--force"))
    missing = list(base)
    missing[1] = "{in}/nope.dat"
    yield Case("prepare", "option-input", "log=missing", tuple(missing))
    folder = list(base)
    folder[1] = "{in}"
    yield Case("prepare", "option-input", "log=a-folder", tuple(folder))
    yield Case("prepare", "option-input", "log=dev-null", ("prepare", "/dev/null", "--format", "yoochoose", "-o",
                                                           "{out}", "-q"))
    yield Case("prepare", "option-input", "log=unknown-suffix", ("prepare", "{in}/users.csv.bak", "-o", "{out}"))


def _synth_cases() -> Iterator[Case]:
    base = ("synth", "--sessions", "30", "--items", "20", "-o", "{out}", "-q")
    for option in ("--sessions", "--seed", "--items", "--categories", "--users"):
        for name, value in INT_VALUES.items():
            args = [a for a in base]
            if option in args:
                args[args.index(option) + 1] = value
            else:
                args += [option, value]
            yield Case("synth", "option-int", f"{option}={name}", tuple(args))
    for option in ("--buy-rate", "--mean-length"):
        for name, value in {**FLOAT_VALUES, "above-1": "1.5"}.items():
            yield Case("synth", "option-float", f"{option}={name}", (*base, option, value))
    for name, value in {"unknown": "parquet", "empty": "", "case": "YOOCHOOSE"}.items():
        yield Case("synth", "option-text", f"--format={name}", (*base, "--format", value))
    for name, value in {"dot": ".", "empty": "", "long-name": "{out}/" + "n" * 300, "a-file": "{in}/f",
                        "under-a-file": "{in}/f/x"}.items():
        args = list(base)
        args[args.index("-o") + 1] = value
        yield Case("synth", "option-output", f"-o={name}", (*args, "--force"), (("f", b"not a folder"),))


@pytest.fixture(scope="module")
def good_logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _write_logs(tmp_path_factory.mktemp("fuzz-logs"))


def _lay_out(case: Case, good_logs: dict[str, Path], root: Path) -> Case:
    """Copy the good log of the case's format into root/in, damaged as the case says."""
    log_format = next((f for f in FORMATS if case.args[3:4] == (f,)), "yoochoose")
    shutil.copytree(good_logs[log_format], root / "in")
    (root / "in" / ".drnngen-synth.json").unlink(missing_ok=True)
    spec = dict(case.files).get("damage")
    if spec is None:
        return case
    role, category, name = spec.decode().split("|")
    target = root / "in" / FORMATS[log_format][0][role]
    good = target.read_bytes()
    if category == "gzip":
        target.unlink()
        (root / "in" / (target.name + ".gz")).write_bytes(GZIP_DAMAGE[name](good))
    else:
        damage = JSON_DAMAGE[name] if category == "json" else DAMAGE[category][name]
        target.write_bytes(damage(good))
    return Case(case.command, case.category, case.detail, case.args)


@pytest.mark.parametrize("case", params([*_log_cases(), *_option_cases()]))
def test_hostile_log(case: Case, tmp_path: Path, good_logs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_case(_lay_out(case, good_logs, tmp_path), tmp_path, {})


@pytest.mark.parametrize("case", params(_synth_cases()))
def test_hostile_synth_option(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_case(case, tmp_path, {})
