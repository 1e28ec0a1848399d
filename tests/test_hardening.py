"""Issue #13: bad input ends in one line `error: ...` and exit code 2 — never a
traceback, never lost or half-written results, never a deleted input.

1. `--force` replaces only what drnngen made, never an input, and only once the
   new folder is complete.
2. Every mistake click catches itself is one `error:` line, on every command.
3. Configs are read by one bounded YAML loader (drnngen.safe_yaml).
4. No string of a config can add fields to a prototxt.
5. Numbers are finite and bounded where they come in.
"""

from __future__ import annotations

import hashlib
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drnngen.cli import cli
from drnngen.codegen import render, schema
from drnngen.codegen.build import generate
from drnngen.codegen.config import parse_config
from drnngen.codegen.draw import to_dot
from drnngen.codegen.graph import build_graph
from drnngen.errors import UserError
from drnngen.safe_yaml import MAX_BYTES, load_yaml, loads_yaml, short_repr
from tests.golden_tool import EXAMPLES

SMALL = EXAMPLES / "small.yaml"


# --- helpers ------------------------------------------------------------------------------------

def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _one_error_line(result: Result, fragment: str = "") -> str:
    """The single `error:` line of a failed command (exit 2, nothing else said)."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # not an escaped exception
    assert "Traceback" not in result.output and "Usage:" not in result.output, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0], (fragment, lines[0])
    assert len(lines[0]) < 600, lines[0]  # no huge value spelled out
    return lines[0]


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under `root` with its sha256 and mtime; folders by name."""
    files: dict[str, tuple[str, int]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            files[str(path.relative_to(root))] = (hashlib.sha256(path.read_bytes()).hexdigest(),
                                                  path.stat().st_mtime_ns)
        else:
            files[str(path.relative_to(root))] = ("folder", 0)
    return files


def _leftovers(folder: Path) -> list[str]:
    """Temporary or set-aside folders a command left beside its output."""
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


@pytest.fixture(scope="module")
def log_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic YOOCHOOSE log written by `drnngen synth` (copied per test)."""
    folder = tmp_path_factory.mktemp("hardening") / "logs"
    assert _run("synth", "--sessions", "200", "--seed", "3", "-o", str(folder), "-q").exit_code == 0
    return folder


@pytest.fixture
def logs(tmp_path: Path, log_template: Path) -> Path:
    shutil.copytree(log_template, tmp_path / "logs")
    return tmp_path / "logs"


def _prepare(logs: Path, output: Path, *extra: str) -> Result:
    return _run("prepare", str(logs / "clicks.dat"), "--buys", str(logs / "buys.dat"), "-o", str(output), "-q",
                *extra)


# --- 1. --force -------------------------------------------------------------------------------

def test_prepare_force_into_the_folder_of_its_inputs_deletes_nothing(tmp_path: Path, logs: Path) -> None:
    before = _snapshot(tmp_path)
    line = _one_error_line(_prepare(logs, logs, "--force"), "an input of this command")
    assert "clicks.dat" in line
    assert _snapshot(tmp_path) == before and _leftovers(tmp_path) == []


def test_prepare_force_refuses_a_folder_of_someone_elses_files(tmp_path: Path, logs: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    (mine / "data").mkdir()
    before = _snapshot(tmp_path)
    _one_error_line(_prepare(logs, mine, "--force"), "not a drnngen dataset")
    assert _snapshot(tmp_path) == before and _leftovers(tmp_path) == []


def test_prepare_force_refuses_a_synth_log_even_without_inputs_in_it(tmp_path: Path, logs: Path) -> None:
    other = tmp_path / "other-logs"
    shutil.copytree(logs, other)
    before = _snapshot(tmp_path)
    _one_error_line(_prepare(logs, other, "--force"), "not a drnngen dataset")
    assert _snapshot(tmp_path) == before


def test_synth_force_refuses_a_folder_of_someone_elses_files(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "clicks.dat").write_text("my real clicks\n")
    (mine / "notes.txt").write_text("keep me\n")
    before = _snapshot(tmp_path)
    _one_error_line(_run("synth", "--sessions", "50", "-o", str(mine), "--force", "-q"), "not a log drnngen synth")
    assert _snapshot(tmp_path) == before and _leftovers(tmp_path) == []


def test_synth_force_refuses_a_dataset_and_a_log_with_an_extra_file(tmp_path: Path, logs: Path) -> None:
    assert _prepare(logs, tmp_path / "data").exit_code == 0
    (logs / "my-notes.txt").write_text("keep me\n")
    before = _snapshot(tmp_path)
    _one_error_line(_run("synth", "--sessions", "50", "-o", str(tmp_path / "data"), "--force", "-q"),
                    "not a log drnngen synth")
    _one_error_line(_run("synth", "--sessions", "50", "-o", str(logs), "--force", "-q"), "my-notes.txt")
    assert _snapshot(tmp_path) == before


def test_force_replaces_what_drnngen_made(tmp_path: Path, logs: Path) -> None:
    before = _snapshot(logs)
    result = _run("synth", "--sessions", "60", "--seed", "9", "-o", str(logs), "--force", "-q")
    assert result.exit_code == 0, result.output
    assert _snapshot(logs)["clicks.dat"] != before["clicks.dat"]
    assert _prepare(logs, tmp_path / "data", "--max-pages", "50").exit_code == 0
    result = _prepare(logs, tmp_path / "data", "--max-pages", "40", "--force")
    assert result.exit_code == 0, result.output
    assert '"max_pages": 40' in (tmp_path / "data" / "manifest.json").read_text()
    assert (tmp_path / "data" / "w4" / "train.txt").read_text().startswith(str((tmp_path / "data").resolve()))
    assert _leftovers(tmp_path) == []


def test_a_failing_prepare_force_keeps_the_old_dataset(tmp_path: Path, logs: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The new dataset is complete (its window's HDF5 files too) before the old one goes."""
    assert _prepare(logs, tmp_path / "data").exit_code == 0
    before = _snapshot(tmp_path)

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise UserError("no space left on device (simulated)")

    monkeypatch.setattr("drnngen.data.manifest.write_window", disk_full)
    _one_error_line(_prepare(logs, tmp_path / "data", "--window", "3", "--force"), "simulated")
    assert _snapshot(tmp_path) == before and _leftovers(tmp_path) == []


@pytest.mark.parametrize("window", ["257", "300"])
def test_a_window_beyond_256_leaves_nothing_behind(tmp_path: Path, logs: Path, window: str) -> None:
    before = _snapshot(tmp_path)
    _one_error_line(_prepare(logs, tmp_path / "data", "--window", window), "--window")
    assert not (tmp_path / "data").exists() and _snapshot(tmp_path) == before


def test_a_window_beyond_256_through_the_library_keeps_the_old_dataset(tmp_path: Path, logs: Path) -> None:
    from drnngen.data.prepare import PrepareOptions, prepare
    from drnngen.data.readers import LogSpec

    assert _prepare(logs, tmp_path / "data").exit_code == 0
    before = _snapshot(tmp_path)
    spec = LogSpec("yoochoose", logs / "clicks.dat", buys=logs / "buys.dat")
    with pytest.raises(UserError, match="window"):
        prepare(spec, PrepareOptions(window=257, force=True), tmp_path / "data", lambda _: None)
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("output", [".", "..", "sub/.."])
def test_prepare_and_synth_refuse_an_output_without_a_name(tmp_path: Path, logs: Path, output: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    before = _snapshot(tmp_path)
    _one_error_line(_prepare(logs, Path(output), "--force"), "name the folder")
    _one_error_line(_run("synth", "--sessions", "20", "-o", output, "--force", "-q"), "name the folder")
    assert _snapshot(tmp_path) == before


# --- 2. click's own mistakes: one line on every command -----------------------------------------

# name: (arguments, with {dir} a folder, {file} a file and {cfg} a valid config; a fragment of the line)
CLICK_MISTAKES: dict[str, tuple[list[str], str]] = {
    "top_unknown_option": (["--bogus"], "--bogus"),
    "top_unknown_command": (["bulid", "x.yaml"], "bulid"),
    "build_folder_as_config": (["build", "{dir}"], "'CONFIG'"),
    "build_missing_config": (["build"], "'CONFIG'"),
    "build_output_is_a_file": (["build", "{cfg}", "-o", "{file}"], "'--output'"),
    "build_data_without_value": (["build", "{cfg}", "--data"], "'--data'"),
    "build_unknown_option": (["build", "{cfg}", "--dryrun"], "--dryrun"),
    "draw_missing_output": (["draw", "{cfg}"], "'--output'"),
    "draw_output_is_a_folder": (["draw", "{cfg}", "-o", "{dir}"], "'--output'"),
    "prepare_folder_as_log": (["prepare", "{dir}", "-o", "{dir}/out"], "'LOG'"),
    "prepare_missing_output": (["prepare", "{file}"], "'--output'"),
    "prepare_output_is_a_file": (["prepare", "{file}", "-o", "{file}"], "'--output'"),
    "prepare_window_zero": (["prepare", "{file}", "-o", "{dir}/out", "--window", "0"], "'--window'"),
    "prepare_window_not_int": (["prepare", "{file}", "-o", "{dir}/out", "--window", "four"], "'--window'"),
    "prepare_dwell_cap_zero": (["prepare", "{file}", "-o", "{dir}/out", "--dwell-cap", "0"], "'--dwell-cap'"),
    "prepare_max_pages_one": (["prepare", "{file}", "-o", "{dir}/out", "--max-pages", "1"], "'--max-pages'"),
    "prepare_bad_format": (["prepare", "{file}", "-o", "{dir}/out", "--format", "parquet"], "'--format'"),
    "prepare_bad_target": (["prepare", "{file}", "-o", "{dir}/out", "--target", "clicks"], "'--target'"),
    "prepare_buys_is_a_folder": (["prepare", "{file}", "--buys", "{dir}", "-o", "{dir}/out"], "'--buys'"),
    "synth_missing_sessions": (["synth", "-o", "{dir}/out"], "'--sessions'"),
    "synth_sessions_zero": (["synth", "--sessions", "0", "-o", "{dir}/out"], "'--sessions'"),
    "synth_buy_rate_above_one": (["synth", "--sessions", "5", "--buy-rate", "2", "-o", "{dir}/out"], "'--buy-rate'"),
    "synth_bad_format": (["synth", "--sessions", "5", "--format", "csv", "-o", "{dir}/out"], "'--format'"),
    "synth_output_is_a_file": (["synth", "--sessions", "5", "-o", "{file}"], "'--output'"),
    "tune_iters_zero": (["tune", "--data", "{dir}", "--iters", "0"], "'--iters'"),
    "tune_population_one": (["tune", "--data", "{dir}", "--population", "1"], "'--population'"),
    "tune_pc_above_one": (["tune", "--data", "{dir}", "--pc", "1.5"], "'--pc'"),
    "tune_bad_mode": (["tune", "--data", "{dir}", "--mode", "tpu"], "'--mode'"),
    "tune_bad_strategy": (["tune", "--data", "{dir}", "--strategy", "greedy"], "'--strategy'"),
    "tune_folder_as_config": (["tune", "--data", "{dir}", "--config", "{dir}"], "'--config'"),
    "tune_folder_as_space": (["tune", "--data", "{dir}", "--space", "{dir}"], "'--space'"),
    "tune_negative_generations": (["tune", "--data", "{dir}", "--generations", "-1"], "'--generations'"),
    "best_missing_run": (["best"], "'RUN'"),
    "best_run_is_a_file": (["best", "{file}"], "'RUN'"),
    "evaluate_missing_data": (["evaluate", "{dir}"], "'--data'"),
    "evaluate_run_is_a_file": (["evaluate", "{file}", "--data", "{dir}"], "'[RUN]'"),
    "evaluate_sknn_k_not_int": (["evaluate", "{dir}", "--data", "{dir}", "--sknn-k", "many"], "'--sknn-k'"),
    "report_missing_run": (["report"], "'RUN'"),
    "report_output_is_a_file": (["report", "{dir}", "-o", "{file}"], "'--output'"),
    "doctor_bad_mode": (["doctor", "--mode", "tpu"], "'--mode'"),
    "recommend_missing_log": (["recommend", "{dir}", "-o", "{dir}/recs.csv"], "'--log'"),
    "recommend_k_zero": (["recommend", "{dir}", "--log", "{file}", "-k", "0", "-o", "{dir}/r.csv"], "'-k'"),
    "recommend_bad_model": (["recommend", "{dir}", "--log", "{file}", "--model", "GRU", "-o", "{dir}/r.csv"],
                            "'--model'"),
    "score_missing_log": (["score", "{file}"], "'--log'"),
    "score_recs_is_a_folder": (["score", "{dir}", "--log", "{file}"], "'RECS'"),
    "prepare_min_support_zero": (["prepare", "{file}", "--min-item-support", "0", "-o", "{dir}/d"],
                                 "'--min-item-support'"),
    "serve_run_is_a_file": (["serve", "{file}"], "'RUN'"),
    "serve_port_zero": (["serve", "{dir}", "--port", "0"], "'--port'"),
    "serve_k_zero": (["serve", "{dir}", "-k", "0"], "'-k'"),
    "serve_idle_zero": (["serve", "{dir}", "--idle", "0"], "'--idle'"),
    "update_missing_samples": (["update", "{dir}"], "'--samples'"),
    "update_iters_zero": (["update", "{dir}", "--samples", "{file}", "--iters", "0"], "'--iters'"),
    "update_lr_factor_above_one": (["update", "{dir}", "--samples", "{file}", "--lr-factor", "2"], "'--lr-factor'"),
}


def _fill(args: list[str], tmp_path: Path) -> list[str]:
    (tmp_path / "afile.txt").write_text("x\n")
    shutil.copy(SMALL, tmp_path / "small.yaml")
    places = {"{dir}": str(tmp_path), "{file}": str(tmp_path / "afile.txt"), "{cfg}": str(tmp_path / "small.yaml")}
    out = []
    for arg in args:
        for key, value in places.items():
            arg = arg.replace(key, value)
        out.append(arg)
    return out


@pytest.mark.parametrize("case", sorted(CLICK_MISTAKES))
def test_a_mistake_click_catches_is_one_line(case: str, tmp_path: Path) -> None:
    args, fragment = CLICK_MISTAKES[case]
    before = _snapshot(tmp_path)
    _one_error_line(_run(*_fill(args, tmp_path)), fragment)
    assert set(_snapshot(tmp_path)) == set(before) | {"afile.txt", "small.yaml"}  # nothing written


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_config_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "secret.yaml"
    config.write_text("name: x\n")
    config.chmod(0)
    _one_error_line(_run("build", str(config), "-o", str(tmp_path / "out")), "readable")


@pytest.mark.parametrize("command", ["", "build", "draw", "prepare", "synth", "tune", "best", "evaluate", "report",
                                     "doctor", "recommend", "score", "serve", "update"])
def test_help_still_prints_the_help(command: str) -> None:
    result = _run(*([command] if command else []), "--help")
    assert result.exit_code == 0 and result.stdout.startswith("Usage: ") and result.stderr == ""


# --- 3. one bounded YAML loader ------------------------------------------------------------------

LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(9)
) + "model:\n  widths: *j\n"
WIDE = "a: &a [" + ", ".join(["1"] * 4000) + "]\nmodel:\n  widths: [*a, *a, *a, *a]\n"

# name: (file content, fragment of the one error line)
YAML_MISTAKES: dict[str, tuple[bytes, str]] = {
    "second_model_section": (b"model:\n  states: 4\nmodel:\n  layers: 2\n", "duplicate key 'model'"),
    "duplicate_key_in_section": (b"solver:\n  base_lr: 0.1\n  base_lr: 0.01\n", "duplicate key 'base_lr'"),
    "billion_laughs": (LAUGHS.encode(), "aliases"),
    "wide_alias_expansion": (WIDE.encode(), "expanded"),
    "recursive_alias": (b"model: &m\n  fnn: *m\n", "recursive alias"),
    "deep_flow_nesting": (b"model: " + b"[" * 50_000 + b"]" * 50_000 + b"\n", "nested more than"),
    "deep_block_nesting": ("".join("  " * i + f"k{i}:\n" for i in range(300)).encode(), "nested more than"),
    "huge_integer": (b"model:\n  states: " + b"9" * 100_000 + b"\n", "an integer of 100000 characters"),
    "huge_hex_integer": (b"model:\n  states: 0x" + b"f" * 100_000 + b"\n", "an integer of"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data"),
    "utf16": ("model:\n  states: 4\n".encode("utf-16"), "UTF-16"),
    "utf32": ("model:\n  states: 4\n".encode("utf-32"), "UTF-32"),
    "latin1": ("name: café\n".encode("latin-1"), "not UTF-8"),
    "control_character": (b"name: a\x07b\n", "control character"),
    "python_tag": (b"name: !!python/object/apply:os.system [echo hi]\n", "could not determine a constructor"),
    "too_large": (b"# " + b"x" * MAX_BYTES + b"\n", "larger than 1 MiB"),
    "many_unknown_keys": (("model:\n" + "".join(f"  key{i}: 1\n" for i in range(3000))).encode(),
                          "and 2995 more: unknown keys"),
    "long_per_layer_list": (b"model:\n  widths: [" + b", ".join([b"8"] * 5000) + b"]\n", "at most one per layer"),
    "huge_value_in_message": (b"model:\n  states: [" + b", ".join([b"word" * 50] * 3000) + b"]\n",
                              "model.states: expected int"),
}


@pytest.mark.parametrize("case", sorted(YAML_MISTAKES))
def test_a_hostile_config_is_one_line_and_quick(case: str, tmp_path: Path) -> None:
    content, fragment = YAML_MISTAKES[case]
    config = tmp_path / "bad.yaml"
    config.write_bytes(content)
    start = time.monotonic()
    _one_error_line(_run("build", str(config), "-o", str(tmp_path / "out")), fragment)
    assert time.monotonic() - start < 10
    assert not (tmp_path / "out").exists()


def _limited() -> None:
    """A child that would read a device or wait on a pipe gets little memory to do it with."""
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def _build_in_a_child(config: str, out: Path) -> subprocess.CompletedProcess[str]:
    code = "from drnngen.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, "build", config, "-o", str(out)], capture_output=True,
                          text=True, timeout=60, preexec_fn=_limited, check=False)


def test_a_fifo_as_config_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    done = _build_in_a_child(str(fifo), tmp_path / "out")  # waiting for a writer would time out
    assert done.returncode == 2 and done.stderr == f"error: {fifo}: not a regular file (a pipe or a device?); " \
                                                   "give a config file\n"


def test_dev_zero_as_config_is_refused_without_reading(tmp_path: Path) -> None:
    done = _build_in_a_child("/dev/zero", tmp_path / "out")
    assert done.returncode == 2 and done.stderr.startswith("error: /dev/zero: not a regular file"), done.stderr


def test_aliases_within_the_limits_still_work(tmp_path: Path) -> None:
    config = tmp_path / "ok.yaml"
    config.write_text("model:\n  layers: 2\n  widths: &w [16, 16]\n  fnn:\n    layers: 2\n    widths: *w\n"
                      "data:\n  pages: 50\n  items: 10\n")
    result = _run("build", str(config), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_any_text_loads_or_is_one_line(text: str) -> None:
    try:
        loads_yaml(text, "t.yaml")
    except UserError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("t.yaml:") and len(str(exc)) < 400


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_any_bytes_load_or_are_one_line(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "f.yaml"
    path.write_bytes(data)
    try:
        load_yaml(path, "config")
    except UserError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(path))


_YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(st.sampled_from(["name", "model", "data", "solver", "other"]), _YAML_VALUES, max_size=4))
def test_any_parsed_yaml_is_a_config_or_one_line(raw: dict[str, Any]) -> None:
    try:
        parse_config(raw)
    except UserError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 2000


def test_short_repr_does_not_walk_a_huge_shared_tree() -> None:
    tree: Any = [1] * 10
    for _ in range(40):  # 10**40 leaves if walked
        tree = [tree] * 10
    text = short_repr(tree)
    assert len(text) <= 80 and text.startswith("[[")
    assert short_repr(10**5000).startswith("<an integer of")


# --- 4. prototxt injection -------------------------------------------------------------------------

INJECTED = 'x" force_backward: true debug_info: true #'


def test_a_quote_in_the_name_adds_no_field(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(SMALL.read_text().replace("name: small\n", f"name: '{INJECTED}'\n"))
    result = _run("build", str(config), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    for name in ("net.prototxt", "deploy.prototxt"):
        net = schema.parse((tmp_path / "out" / name).read_text(), "NetParameter", name)
        assert net.name == INJECTED
        assert not net.HasField("force_backward") and not net.HasField("debug_info")


def test_a_line_break_in_the_config_file_name_adds_no_field(tmp_path: Path) -> None:
    config = tmp_path / "a\nforce_backward: true\nb.yaml"
    shutil.copy(SMALL, config)
    result = _run("build", str(config), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    net = schema.parse((tmp_path / "out" / "net.prototxt").read_text(), "NetParameter", "net")
    assert not net.HasField("force_backward")


# any text, with the characters that end a string or a line or start a comment drawn often
_ANY_STRING = st.text(st.one_of(st.sampled_from(['"', "\\", "\n", "\r", "#", "'", ":", "}", "\x00"]), st.characters()),
                      min_size=1, max_size=40)


@settings(max_examples=40, deadline=None)
@given(name=_ANY_STRING, train=_ANY_STRING, prefix=_ANY_STRING, source=_ANY_STRING)
def test_every_string_reads_back_as_given(name: str, train: str, prefix: str, source: str) -> None:
    raw = {"name": name, "model": {"states": 2, "layers": 1, "shortcut": 0, "widths": 4, "top_k": 1},
           "data": {"pages": 5, "items": 3, "train_source": train}, "solver": {"snapshot_prefix": prefix}}
    if any(_lone_surrogate(text) for text in (name, train, prefix)):
        # a YAML "\ud800" escape: no UTF-8 file (so no prototxt) can hold it
        with pytest.raises(UserError, match="must be valid Unicode text"):
            parse_config(raw)
        return
    cfg = parse_config(raw)
    files = generate(cfg, source=source)
    net = schema.parse(files["net.prototxt"], "NetParameter", "net")
    solver = schema.parse(files["solver.prototxt"], "SolverParameter", "solver")
    assert net.name == name and solver.snapshot_prefix == prefix
    assert train in {layer.hdf5_data_param.source for layer in net.layer if layer.type == "HDF5Data"}
    assert not net.HasField("force_backward") and not solver.HasField("debug_info")


def _lone_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


def test_a_lone_surrogate_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text('name: "\\ud800"\n')
    result = CliRunner().invoke(cli, ["build", str(config), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "must be valid Unicode text" in result.output
    assert not (tmp_path / "out").exists()


def test_a_broken_escape_is_caught_by_reading_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "quote", lambda value: '"' + str(value) + '"')  # no escaping at all
    with pytest.raises(UserError, match="reads back differently"):
        generate(parse_config({"name": INJECTED}))


def test_the_name_cannot_break_out_of_the_dot_file() -> None:
    dot = to_dot(build_graph(parse_config({"name": 'x" ] ; evil [ label="\\'})))
    assert dot.splitlines()[0] == 'digraph "x_ ] ; evil [ label=__" {'


# --- 5. numbers: finite and bounded where they come in ---------------------------------------------

# name: (config, the key the one line names)
NUMBER_MISTAKES: dict[str, tuple[str, str]] = {
    **{f"{key}_{word}": (f"{section}:\n  {key}: {value}\n", f"{section}.{key}: must be a finite number")
       for section, key in (("solver", "base_lr"), ("solver", "gamma"), ("solver", "momentum"),
                            ("solver", "weight_decay"), ("solver", "stepsize_epochs"), ("solver", "power"),
                            ("model", "bias_value"), ("model", "weight_std"), ("model", "repeat_init"))
       for word, value in (("nan", ".nan"), ("inf", ".inf"), ("minus_inf", "-.inf"))},
    "dropout_nan": ("model:\n  dropout: [.nan]\n", "model.dropout: must be a finite number"),
    "lr_beyond_float32": ("solver:\n  base_lr: 1.0e+39\n", "solver.base_lr: must be at most"),
    "states_23_digits": ("model:\n  states: 99999999999999999999999\n", "model.states: must be <= 256"),
    "states_100000": ("model:\n  states: 100000\n", "model.states: must be <= 256"),
    "states_257": ("model:\n  states: 257\n", "model.states: must be <= 256"),
    "layers_1000": ("model:\n  layers: 1000\n", "model.layers: must be <= 16"),
    "width_million": ("model:\n  widths: 1000000\n", "model.widths: must be <= 65536"),
    "fnn_layers_1000": ("model:\n  fnn:\n    layers: 1000\n", "model.fnn.layers: must be <= 16"),
    "batch_beyond_int32": ("data:\n  batch_size: 4294967296\n", "data.batch_size: must be <= 2147483647"),
    "max_iter_beyond_int32": ("solver:\n  max_iter: 2147483648\n", "solver.max_iter: must be <= 2147483647"),
    "seed_beyond_int64": ("solver:\n  random_seed: 18446744073709551616\n", "solver.random_seed: must be <="),
    "stepsize_beyond_int32": ("solver:\n  stepsize_epochs: 1.0e+30\n", "solver.stepsize_epochs: 1e+30 epochs"),
}


@pytest.mark.parametrize("case", sorted(NUMBER_MISTAKES))
def test_a_number_out_of_bounds_is_one_line_naming_the_key(case: str, tmp_path: Path) -> None:
    text, fragment = NUMBER_MISTAKES[case]
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    start = time.monotonic()
    _one_error_line(_run("build", str(config), "-o", str(tmp_path / "out")), fragment)
    assert time.monotonic() - start < 10 and not (tmp_path / "out").exists()


def test_the_cap_on_states_is_the_longest_window_prepare_writes() -> None:
    from drnngen.codegen.config import MAX_STATES
    from drnngen.data.manifest import MAX_WINDOW

    assert MAX_STATES == MAX_WINDOW


_FLOAT_KEYS = [("solver", "base_lr"), ("solver", "gamma"), ("solver", "momentum"), ("solver", "weight_decay"),
               ("solver", "stepsize_epochs"), ("model", "bias_value"), ("model", "weight_std")]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_FLOAT_KEYS), st.floats(allow_nan=True, allow_infinity=True))
def test_every_float_key_is_finite_or_refused(where: tuple[str, str], value: float) -> None:
    section, key = where
    try:
        cfg = parse_config({section: {key: value}})
    except UserError as exc:
        assert f"{section}.{key}" in str(exc)
        return
    assert math.isfinite(getattr(getattr(cfg, section), key))


# name: (arguments, with {log} a synthetic log folder and {dir} an empty folder; a fragment of the line)
CLI_NUMBER_MISTAKES: dict[str, tuple[list[str], str]] = {
    "prepare_memory_budget_1e400": (["prepare", "{log}/clicks.dat", "--buys", "{log}/buys.dat", "-o", "{dir}/d",
                                     "--memory-budget", "1e400"], "--memory-budget"),
    "prepare_file_size_1e400": (["prepare", "{log}/clicks.dat", "--buys", "{log}/buys.dat", "-o", "{dir}/d",
                                 "--file-size", "1e400"], "--file-size"),
    "prepare_output_dot": (["prepare", "{log}/clicks.dat", "--buys", "{log}/buys.dat", "-o", "."],
                           "name the folder"),
    "prepare_dwell_cap_nan": (["prepare", "{log}/clicks.dat", "-o", "{dir}/d", "--dwell-cap", "nan"],
                              "'--dwell-cap'"),
    "synth_seed_minus_one": (["synth", "--sessions", "5", "--seed", "-1", "-o", "{dir}/s"], "'--seed'"),
    "synth_buy_rate_nan": (["synth", "--sessions", "5", "--buy-rate", "nan", "-o", "{dir}/s"], "'--buy-rate'"),
    "synth_mean_length_inf": (["synth", "--sessions", "5", "--mean-length", "inf", "-o", "{dir}/s"],
                              "'--mean-length'"),
    "synth_items_beyond_catalogue": (["synth", "--sessions", "5", "--items", "2000000", "-o", "{dir}/s"],
                                     "'--items'"),
    "tune_timeout_nan": (["tune", "--data", "{dir}", "--timeout", "nan"], "'--timeout'"),
    "tune_time_budget_inf": (["tune", "--data", "{dir}", "--time-budget", "inf"], "'--time-budget'"),
    "tune_epochs_nan": (["tune", "--data", "{dir}", "--epochs", "nan"], "'--epochs'"),
    "tune_pc_nan": (["tune", "--data", "{dir}", "--pc", "nan"], "'--pc'"),
    "tune_pm_nan": (["tune", "--data", "{dir}", "--pm", "nan"], "'--pm'"),
    "tune_validate_every_nan": (["tune", "--data", "{dir}", "--validate-every", "nan"], "'--validate-every'"),
    "tune_iters_beyond_int32": (["tune", "--data", "{dir}", "--iters", "2147483648"], "'--iters'"),
    "evaluate_shrink_nan": (["evaluate", "{dir}", "--data", "{dir}", "--shrink", "nan"], "'--shrink'"),
    "evaluate_shrink_negative": (["evaluate", "{dir}", "--data", "{dir}", "--shrink", "-1"], "'--shrink'"),
}


@pytest.mark.parametrize("case", sorted(CLI_NUMBER_MISTAKES))
def test_a_number_option_out_of_bounds_is_one_line(case: str, tmp_path: Path, logs: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    args, fragment = CLI_NUMBER_MISTAKES[case]
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    filled = [a.replace("{log}", str(logs)).replace("{dir}", str(tmp_path / "empty")) for a in args]
    before = _snapshot(tmp_path)
    _one_error_line(_run(*filled), fragment)
    assert _snapshot(tmp_path) == before


# --- hostile logs -------------------------------------------------------------------------------

_DEEP = '{"session": 1, "events": ' + "[" * 5000 + "]" * 5000 + "}\n"
_LONG_ID = '{"session": ' + "9" * 5000 + ', "events": [{"aid": 1, "ts": 1, "type": "clicks"}]}\n'
_WIDE_ID = '{"session": ' + "9" * 25 + ', "events": [{"aid": 1, "ts": 1, "type": "clicks"}]}\n'


@pytest.mark.parametrize(("text", "fragment"), [
    (_DEEP, "nested too deeply, or a number too long"),
    (_LONG_ID, "nested too deeply, or a number too long"),
    (_WIDE_ID, "expected an object with an integer 'session'"),
])
def test_a_hostile_otto_line_is_one_line(tmp_path: Path, text: str, fragment: str) -> None:
    log = tmp_path / "s.jsonl"
    log.write_text(text)
    line = _one_error_line(_run("prepare", str(log), "--format", "otto", "-o", str(tmp_path / "out")), fragment)
    assert line.startswith(f"error: {log}:1: ")
    assert not (tmp_path / "out").exists()


def test_a_yoochoose_log_with_a_bom_is_read(tmp_path: Path) -> None:
    clicks, buys = tmp_path / "clicks.dat", tmp_path / "buys.dat"
    clicks.write_bytes(b"\xef\xbb\xbf1,2014-04-07T10:51:09.277Z,214536502,0\n1,2014-04-07T10:52:09.277Z,214536503,0\n")
    buys.write_bytes(b"\xef\xbb\xbf1,2014-04-07T10:53:09.277Z,214536503,1,1\n")
    result = _run("prepare", str(clicks), "--buys", str(buys), "--format", "yoochoose", "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
