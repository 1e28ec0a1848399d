"""Fuzz suite (issue #13), `serve` and `update`: bad values of every option and a
damaged RUN, each in a real process (a server that starts would never return in
process). The promise is tests/fuzz_support.py's, with one more outcome: a
server still running after START_S seconds started fine (it is stopped, and
counts as a success). Their documented output is RUN/serving."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.data_support import TUNER_DATA
from tests.fuzz_support import FLOAT_VALUES, INT_VALUES, MAX_LINE, Case, params, snapshot
from tests.tuner_support import FakeTrainer, run

pytestmark = pytest.mark.slow  # a real process per case, about 1.5 s each
DATASET = TUNER_DATA
START_S = 20.0
CLI = [sys.executable, "-c", "from drnngen.cli import main; main()"]
SERVE = ("serve", "{run}", "--port", "{port}", "--store", "sqlite:{out}/state.sqlite", "--samples",
         "{out}/samples.jsonl")


def _cases() -> Iterator[Case]:
    for option in ("--port", "-k", "--max-events"):
        for name in ("zero", "negative", "huge", "word", "empty", "nan"):
            yield Case("serve", "option-int", f"{option}={name}", (*SERVE, option, INT_VALUES[name]))
    for name in ("zero", "negative", "nan", "inf", "1e400", "word"):
        yield Case("serve", "option-float", f"--idle={name}", (*SERVE, "--idle", FLOAT_VALUES[name]))
    texts = {"--host": {"word": "not a host", "empty": "", "colons": "::::", "long": "h" * 300},
             "--store": {"ftp": "ftp://x", "redis-port": "redis://h:99999/0", "sqlite-proc": "sqlite:/proc/x/y",
                         "sqlite-folder": "sqlite:{in}", "empty": "", "redis-db": "redis://127.0.0.1:1/x"},
             "--samples": {"a-folder": "{in}", "under-a-file": "{in}/f/x.jsonl", "empty": ""},
             "--admin-token": {"empty": ""}}
    for option, values in texts.items():
        for name, value in values.items():
            yield Case("serve", "option-text", f"{option}={name}", (*SERVE, option, value), (("f", b"x"),))
    yield Case("serve", "option-text", "--engine=word", (*SERVE, "--engine", "word"))
    yield Case("serve", "option-text", "--engine=numpy-on-gpu", (*SERVE, "--engine", "numpy", "--gpu"))
    for name, value in {"missing": "{in}/nope", "a-file": "{in}/f", "empty": ""}.items():
        args = list(SERVE)
        args[1] = value
        yield Case("serve", "option-run", f"run={name}", tuple(args), (("f", b"x"),))
    yield Case("serve", "option-run", "run=empty-ledger", SERVE, (("empty-ledger", b""),))
    update = ("update", "{run}", "--samples", "{in}/samples.jsonl")
    for name in ("zero", "negative", "huge", "word"):
        yield Case("update", "option-int", f"--iters={name}", (*update, "--iters", INT_VALUES[name]),
                   (("samples.jsonl", b"{}\n"),))
    for name in ("zero", "negative", "nan", "inf", "1e400"):
        yield Case("update", "option-float", f"--lr-factor={name}", (*update, "--lr-factor", FLOAT_VALUES[name]),
                   (("samples.jsonl", b"{}\n"),))
    for name, content in {"empty": b"", "garbage": bytes(range(256)) * 8, "not-json": b"{not json\n",
                          "deep": b"[" * 5000 + b"]" * 5000 + b"\n", "huge-number": b'{"k": 1e999}\n'}.items():
        yield Case("update", "samples", name, update, (("samples.jsonl", content),))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, dataset: Path) -> Path:
    root = tmp_path_factory.mktemp("fuzz-serve")
    run(root, dataset, "run", FakeTrainer(), changes={"generations": 0})
    return root / "run"


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("case", params(_cases()))
def test_hostile_serve_or_update(case: Case, tmp_path: Path, finished_run: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, content in case.files:
        if name == "empty-ledger":
            (run_dir / "ledger.sqlite").write_bytes(b"")
        else:
            (inputs / name).write_bytes(content)
    out = tmp_path / "out"
    out.mkdir()
    values = {"in": str(inputs), "out": str(out), "run": str(run_dir), "port": str(_free_port())}
    args = [arg.format(**values) for arg in case.args]
    documented = [out, run_dir / "serving"]  # serve's and update's own folder
    before = snapshot(tmp_path, documented)
    child = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=tmp_path, start_new_session=True)
    try:
        out_text, err_text = child.communicate(timeout=START_S)
    except subprocess.TimeoutExpired:  # a server that started: a success; stop it as SIGTERM does
        os.killpg(child.pid, signal.SIGTERM)
        try:
            child.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
        assert case.command == "serve", (case.id, "update never ended")
        return
    said = out_text + err_text
    assert "Traceback" not in said, (case.id, said[-2000:])
    if child.returncode != 0:
        lines = err_text.splitlines()
        assert child.returncode == 2, (case.id, child.returncode, said[-2000:])
        assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) <= MAX_LINE, (case.id, err_text)
    assert snapshot(tmp_path, documented) == before, (case.id, "wrote outside its output or changed an input")
