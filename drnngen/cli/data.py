"""`drnngen prepare` and `drnngen synth`: click logs in, Caffe HDF5 datasets out."""

from __future__ import annotations

import re
import time
from pathlib import Path

import click
from click.core import ParameterSource

from drnngen.cli.params import count_or_all, finite
from drnngen.codegen.config import MAX_WIDTH  # the cap of data.history_k and data.user_items_k
from drnngen.data.manifest import MAX_WINDOW
from drnngen.data.prepare import DEFAULT_FILE_BYTES, DEFAULT_MEMORY_BUDGET, PrepareOptions, prepare
from drnngen.data.readers import CSV_ROLES, DEFAULT_PURCHASE_VALUES, FORMATS, TIME_UNITS, LogSpec, guess_format
from drnngen.data.sessions import TARGETS, BuildOptions
from drnngen.data.synth import (
    MAX_ITEMS,
    MAX_SESSIONS,
    MAX_USERS,
    PREPARE_HINTS,
    SYNTH_FORMATS,
    SynthOptions,
    synthesize,
)
from drnngen.data.windows import DEFAULT_HISTORY_K, DEFAULT_USER_ITEMS_K, DENSE, SampleLayout
from drnngen.errors import UserError

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 1000, "m": 1 << 20, "mib": 1 << 20, "mb": 10**6,
          "g": 1 << 30, "gib": 1 << 30, "gb": 10**9, "t": 1 << 40, "tib": 1 << 40, "tb": 10**12}
_FILE = click.Path(dir_okay=False, path_type=Path)
_MAX_SIZE = 1 << 60  # bytes: beyond any disk, and far from float's infinity


class ProgressLines:
    """Progress lines on stderr: a new stage at once, repeats of a stage at most every second."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.stage = ""
        self.last = 0.0

    def __call__(self, message: str) -> None:
        if self.quiet and not message.startswith("warning:"):
            return
        stage = message.split(":", 1)[0]
        now = time.monotonic()
        if stage != self.stage or now - self.last >= 1.0 or message.startswith("warning:"):
            click.echo(message, err=True)
            self.stage, self.last = stage, now


def parse_size(text: str, option: str) -> int:
    """Bytes of a size like `4GiB`, `256MiB`, `1e9` or `512k`."""
    found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    unit = _UNITS.get(found.group(2).lower()) if found else None
    if found is None or unit is None:
        raise UserError(f"{option}: not a size: {text!r} (e.g. 4GiB, 256MiB)")
    size = float(found.group(1)) * unit
    if not size <= _MAX_SIZE:
        raise UserError(f"{option}: {text!r} is more than the 1 EiB drnngen accepts")
    return int(size)


def parse_columns(text: str | None) -> dict[str, str]:
    """`session=sid,item=iid,time=ts` → {"session": "sid", ...}."""
    if not text:
        return {}
    mapping: dict[str, str] = {}
    for part in text.split(","):
        role, sep, name = part.partition("=")
        role = role.strip()
        if not sep or role not in CSV_ROLES or not name.strip():
            raise UserError(f"--columns: expected ROLE=COLUMN with ROLE in {', '.join(CSV_ROLES)}, got {part!r}")
        mapping[role] = name.strip()
    return mapping


def parse_split(text: str) -> tuple[float, float, float]:
    """`0.6,0.2,0.2` → (0.6, 0.2, 0.2)."""
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise UserError(f"--split: expected three fractions like 0.6,0.2,0.2, got {text!r}")
    return parts[0], parts[1], parts[2]


@click.command("prepare")
@click.argument("log", type=_FILE)
@click.option("--format", "log_format", type=click.Choice(["auto", *FORMATS]), default="auto", show_default=True,
              help="Log format; auto guesses from the name (.dat yoochoose, .tsv/.txt gru4rec, .jsonl otto, "
              ".csv csv).")
@click.option("--valid-log", type=_FILE, help="Given validation split (LOG is then the train split; "
              "same format). Needs --test-log.")
@click.option("--test-log", type=_FILE, help="Given test split (e.g. session-rec's *_test.txt). Test and "
              "validation events whose item the train split lacks are dropped, as session-rec does.")
@click.option("--min-item-support", type=click.IntRange(1), default=1, show_default=True,
              help="Drop events of items with fewer train events (session-rec and GRU4Rec use 5).")
@click.option("--min-session-length", type=click.IntRange(1), default=1, show_default=True,
              help="Drop sessions with fewer events, before and after the item filter (session-rec and "
              "GRU4Rec use 2).")
@click.option("--buys", type=_FILE, help="Purchases file (YOOCHOOSE buys.dat, DIGINETICA train-purchases.csv, "
              "a GRU4Rec-style TSV, or a CSV with the same --columns).")
@click.option("--users", type=_FILE, help="CSV with columns session,user: who each session belongs to (FNN input).")
@click.option("--target", type=click.Choice(TARGETS), default="purchase", show_default=True,
              help="purchase: the item bought in the session (paper); next-item: every prefix's next click.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Dataset folder to create.")
@click.option("--window", type=click.IntRange(1, MAX_WINDOW), default=4, show_default=True,
              help="Window w whose HDF5 files are written now (others are derived on demand).")
@click.option("--max-pages", type=count_or_all(2), default="all", show_default=True,
              help="M: page vocabulary, the out-of-vocabulary id included (Embed input_dim is M+1); "
              "all: every page viewed in the train split.")
@click.option("--max-items", type=count_or_all(1), default="all", show_default=True,
              help="N: item classes; all: every item of the train split's targets.")
@click.option("--history-k", type=click.IntRange(1, MAX_WIDTH), default=DEFAULT_HISTORY_K, show_default=True,
              help="K: the history keeps the K (page id, weight) pairs of largest weight, renormalised "
              "(the manifest records the mass dropped).")
@click.option("--user-items-k", type=click.IntRange(1, MAX_WIDTH), default=DEFAULT_USER_ITEMS_K, show_default=True,
              help="U: the FNN input keeps the user's U latest distinct earlier purchases (class ids, padded with N).")
@click.option("--dense-history", is_flag=True,
              help="The dense layout: an (M+1)-wide history row and an N-wide user-items row per sample "
              "(what drnngen wrote before the sparse layout).")
@click.option("--dwell-cap", type=finite(min=0, min_open=True), default=1800.0, show_default=True,
              help="Cap on a dwell time, seconds (a longer gap means the user left).")
@click.option("--split", "split_text", default="0.6,0.2,0.2", show_default=True,
              help="Train,validation,test fractions of the sessions, in time order (not with --test-log).")
@click.option("--memory-budget", default="4GiB", show_default=True,
              help="Refuse when one window's HDF5 data would be larger than this, uncompressed.")
@click.option("--file-size", default="256MiB", show_default=True,
              help="Bound on one HDF5 file's rows, uncompressed (Caffe's HDF5Data loads a whole file at a time).")
@click.option("--compress/--no-compress", default=True, show_default=True,
              help="With --dense-history: compress the wide, mostly-zero history and user_items datasets "
              "(HDF5's gzip filter, which Caffe reads).")
@click.option("--columns", help="csv: ROLE=COLUMN pairs for session, item, time and optionally user, type.")
@click.option("--delimiter", help="csv/gru4rec: field separator (default ',' / tab).")
@click.option("--time-unit", type=click.Choice(TIME_UNITS), help="csv/gru4rec: time column in s, ms or ISO 8601.")
@click.option("--purchase-values", default=",".join(DEFAULT_PURCHASE_VALUES), show_default=True,
              help="csv: values of the type column that mark a purchase.")
@click.option("--force", is_flag=True, help="Replace the output folder if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def prepare_command(
    log: Path, log_format: str, valid_log: Path | None, test_log: Path | None, min_item_support: int,
    min_session_length: int, buys: Path | None, users: Path | None, target: str, output: Path, window: int,
    max_pages: int | None, max_items: int | None, history_k: int, user_items_k: int, dense_history: bool,
    dwell_cap: float, split_text: str, memory_budget: str, file_size: str,
    compress: bool, columns: str | None, delimiter: str | None, time_unit: str | None, purchase_values: str,
    force: bool, quiet: bool,
) -> None:
    """Convert a click log into Caffe HDF5 training data (sessions → windows, dwell, history).

    Writes OUTPUT/manifest.json, the sample store, id maps, and OUTPUT/w<WINDOW>/ with the
    train/val/test HDF5 files and list files. Other windows are derived on first use.

    With --valid-log and --test-log, LOG is the train split and the three files are the
    splits as given (e.g. session-rec's *_train_tr.txt, *_train_valid.txt, *_test.txt).
    """
    given = valid_log is not None or test_log is not None
    context = click.get_current_context()
    if given and context.get_parameter_source("split_text") != ParameterSource.DEFAULT:
        raise UserError("--split cuts one log; with --valid-log/--test-log the files are the splits")
    for name in ("history_k", "user_items_k"):  # the dense layout has no K or U: a given one would be ignored
        if dense_history and context.get_parameter_source(name) != ParameterSource.DEFAULT:
            option = "--" + name.replace("_", "-")
            raise UserError(f"{option} sizes the sparse layout; --dense-history has none (drop one of the two)")
    spec = log_spec(log, split_format(log, (valid_log, test_log)) if log_format == "auto" else log_format,
                    columns=columns, delimiter=delimiter, time_unit=time_unit, purchase_values=purchase_values,
                    buys=buys, users=users, valid=valid_log, test=test_log)
    options = PrepareOptions(
        build=BuildOptions(target=target, max_pages=max_pages, max_items=max_items, dwell_cap=dwell_cap,
                           split=parse_split(split_text), min_item_support=min_item_support,
                           min_session_length=min_session_length),
        window=window,
        file_bytes=parse_size(file_size, "--file-size") or DEFAULT_FILE_BYTES,
        compress=compress,
        layout=DENSE if dense_history else SampleLayout(history_k, user_items_k),
        memory_budget=parse_size(memory_budget, "--memory-budget") or DEFAULT_MEMORY_BUDGET,
        force=force,
    )
    report = prepare(spec, options, output, ProgressLines(quiet))
    manifest = report.manifest
    samples = " / ".join(f"{name} {count:,}" for name, count in manifest.samples.items())
    click.echo(f"wrote {output}: M={manifest.pages} pages (Embed input_dim {manifest.embed_input_dim}), "
               f"N={manifest.items} items, samples {samples}")
    click.echo(f"window {window}: {report.sources['train'].parent}/{{train,val,test}}.txt")


def log_spec(log: Path, log_format: str, *, columns: str | None = None, delimiter: str | None = None,
             time_unit: str | None = None, purchase_values: str = ",".join(DEFAULT_PURCHASE_VALUES),
             buys: Path | None = None, users: Path | None = None, valid: Path | None = None,
             test: Path | None = None) -> LogSpec:
    """How to read a log, from the options every command that reads one shares."""
    if delimiter is not None and len(delimiter.encode()) != 1:
        raise UserError(f"--delimiter must be one character, got {delimiter!r}")
    return LogSpec(format=log_format, events=log, buys=buys, users=users, columns=parse_columns(columns),
                   delimiter=delimiter, time_unit=time_unit,
                   purchase_values=tuple(v for v in purchase_values.split(",") if v), valid=valid, test=test)


def split_format(train: Path, others: tuple[Path | None, ...]) -> str:
    """The format the names of all split files imply; a one-line error when they differ."""
    found = guess_format(train)
    for path in others:
        if path is not None and guess_format(path) != found:
            raise UserError(f"{path}: looks like {guess_format(path)}, but {train} like {found}; the split "
                            "files must share one format (or pass --format)")
    return found


@click.command("synth")
@click.option("--sessions", type=click.IntRange(1, MAX_SESSIONS), required=True, help="Number of sessions.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Random seed, >= 0 (same seed, same files).")
@click.option("--format", "log_format", type=click.Choice(SYNTH_FORMATS), default="yoochoose", show_default=True,
              help="yoochoose: clicks.dat + buys.dat; gru4rec: sessions.tsv + buys.tsv; otto: sessions.jsonl. "
              "Always users.csv.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to create.")
@click.option("--items", type=click.IntRange(2, MAX_ITEMS), default=2000, show_default=True, help="Catalogue size.")
@click.option("--categories", type=click.IntRange(1), default=40, show_default=True, help="Item categories.")
@click.option("--users", type=click.IntRange(0, MAX_USERS), default=0, help="Number of users (default: sessions / 6).")
@click.option("--buy-rate", type=finite(0, 1), default=0.4, show_default=True,
              help="Share of sessions that end in a purchase.")
@click.option("--mean-length", type=finite(1, 1e6, max_open=True), default=8.0, show_default=True,
              help="Mean page views per session.")
@click.option("--force", is_flag=True, help="Replace the output folder if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def synth_command(
    sessions: int, seed: int, log_format: str, output: Path, items: int, categories: int, users: int,
    buy_rate: float, mean_length: float, force: bool, quiet: bool,
) -> None:
    """Write a seeded, realistic synthetic click log (users with tastes, views drifting
    toward the item bought, dwell times, repeat buyers)."""
    options = SynthOptions(sessions=sessions, seed=seed, items=items, categories=categories, users=users,
                           buy_rate=buy_rate, mean_length=mean_length)
    for path in synthesize(options, log_format, output, force, ProgressLines(quiet)):
        click.echo(f"wrote {path}")
    click.echo("next: " + PREPARE_HINTS[log_format].format(o=output) + f" -o {output}-data")
