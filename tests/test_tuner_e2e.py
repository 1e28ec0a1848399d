"""`drnngen tune` end to end with real Caffe on a small synthetic dataset.

Tiny nets and 30 iterations each, so the whole module runs in well under a
minute on 2 cores.
"""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from drnngen.cli import cli
from drnngen.data.manifest import load_manifest
from drnngen.runner import forward_scores
from drnngen.tuner.candidate import TRAIN_LOSS_FILE
from drnngen.tuner.ledger import Ledger
from tests.golden_tool import EXAMPLES
from tests.tuner_support import TuneSetup, kill_when

pytestmark = [pytest.mark.caffe, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
TUNE_GENERATIONS = 3  # the `setup` fixture (tests/conftest.py)


@pytest.fixture(scope="module")
def reference(setup: TuneSetup) -> Path:
    root, _, args = setup
    result = CliRunner().invoke(cli, [*args, "-o", str(root / "ref"), "--workers", "2"])
    assert result.exit_code == 0, result.output
    return root / "ref"


def test_tune_records_every_evaluation_and_its_best_reloads(
    setup: TuneSetup, reference: Path
) -> None:
    root, data, _ = setup
    ledger = Ledger.open(reference)
    rows = {r.key: r for r in ledger.candidates()}
    records = ledger.records()
    assert [r["gen"] for r in records] == [0, 1, 2, 3] and ledger.meta("status") == "finished"
    with sqlite3.connect(reference / "ledger.sqlite") as db:
        asked = db.execute("SELECT key FROM evaluations").fetchall()
    assert len(asked) == sum(r["evals"] for r in records) >= 4
    assert {k for (k,) in asked} == set(rows)  # every evaluation has its candidate row
    assert all(r.outcome.status == "ok" and r.outcome.iterations == 30 for r in rows.values())
    best = ledger.best()
    assert best is not None
    assert best.outcome.fitness == max(r.outcome.fitness for r in rows.values()) == records[-1]["best_fitness"]
    losses = json.loads((Path(best.folder) / TRAIN_LOSS_FILE).read_text())  # for the report's curve
    assert [it for it, _ in losses][-1] == 30 and all(math.isfinite(v) for _, v in losses)

    out = root / "exported"
    result = CliRunner().invoke(cli, ["best", str(reference), "-o", str(out)])
    assert result.exit_code == 0, result.output
    window = best.genotype[0]
    val = load_manifest(data).sources(window)["val"]
    prob = forward_scores(out / "deploy.prototxt", out / "model.caffemodel", val, "prob")
    labels = np.concatenate([h5py.File(line.strip(), "r")["label"][:] for line in val.read_text().splitlines()])
    assert prob.shape == (len(labels), 20)
    true = prob[np.arange(len(labels)), labels.astype(int)]
    # Caffe's Accuracy layer: a hit when no other item scores >= the true one (ties are misses)
    accuracy = float(np.mean((prob >= true[:, None]).sum(axis=1) - 1 < 1))
    assert accuracy == pytest.approx(best.outcome.accuracy, abs=1e-6)


def test_sigkill_mid_generation_and_resume_reach_the_same_best(
    setup: TuneSetup, reference: Path
) -> None:
    root, _, args = setup
    run = root / "killed"
    command = [sys.executable, "-c", "from drnngen.cli import main; main()", *args, "-o", str(run)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def mid_generation_1(db: sqlite3.Connection) -> bool | None:
        gens = db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
        done = db.execute("SELECT COUNT(*) FROM candidates WHERE generation >= 1").fetchone()[0]
        return True if gens >= 2 and done >= 1 else None  # mid-way through generation 1 or later

    kill_when(proc, run / "ledger.sqlite", mid_generation_1)
    assert Ledger.open(run).meta("status") == "running"
    result = CliRunner().invoke(cli, ["tune", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    resumed, uninterrupted = Ledger.open(run).best(), Ledger.open(reference).best()
    assert resumed is not None and uninterrupted is not None
    assert resumed.key == uninterrupted.key
    assert resumed.outcome.fitness == pytest.approx(uninterrupted.outcome.fitness, abs=1e-9)
    assert {r.key for r in Ledger.open(run).candidates()} == {r.key for r in Ledger.open(reference).candidates()}


def test_a_net_that_makes_caffe_abort_is_a_recorded_failure(setup: TuneSetup) -> None:
    root, data, _ = setup
    space = root / "impossible.yaml"
    # A 65536-wide layer (the widest codegen builds) passes drnngen's checks, but its
    # recurrent weight W_i is 65536 x 65536 > INT_MAX values: Caffe's Blob::Reshape CHECK aborts.
    space.write_text("states: 2\nlayers: {min: 1, max: 2}\nshortcut: 0\nactivations: [ReLU]\n"
                     "widths: [8, 65536]\n")
    run = root / "impossible"
    result = CliRunner().invoke(cli, [
        "tune", "--config", str(EXAMPLES / "small.yaml"), "--space", str(space), "--data", str(data),
        "--generations", "1", "--population", "4", "--iters", "10", "--seed", "1", "--no-cache", "-o", str(run)])
    assert result.exit_code == 0, result.output
    ledger = Ledger.open(run)
    failed = [r for r in ledger.candidates() if r.outcome.status == "failed"]
    assert failed, "the seed was chosen so that a 65536-wide candidate appears"
    for row in failed:
        assert 65536 in row.genotype and row.outcome.fitness == 0.0
        assert "Check failed" in (row.outcome.error or "") and "INT_MAX" in (row.outcome.error or "")
    assert ledger.meta("status") == "finished"
