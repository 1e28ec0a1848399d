"""A run's best candidate, and its export (`drnngen best`, and the end of `tune`)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml

from drnngen.codegen.build import generate, write
from drnngen.codegen.config import parse_config
from drnngen.errors import UserError
from drnngen.tuner.candidate import CONFIG_FILE, MODEL_FILE
from drnngen.tuner.codec import describe
from drnngen.tuner.ledger import CandidateRow, Ledger
from drnngen.tuner.params import TuneParams

BEST_FILE = "best.json"


def best_candidate(run_dir: Path) -> tuple[CandidateRow, TuneParams]:
    """The run's fittest successful candidate, or UserError when there is none."""
    ledger = Ledger.open(Path(run_dir), read_only=True)
    try:
        best, params = ledger.best(), TuneParams.from_json(ledger.params)
    finally:
        ledger.close()
    if best is None:
        raise UserError(f"{run_dir}: no candidate has trained successfully yet")
    return best, params


def export_best(run_dir: Path, out_dir: Path) -> tuple[CandidateRow, list[Path]]:
    """config.yaml, net/solver/deploy prototxt, model.caffemodel and best.json of
    the best candidate, into `out_dir`."""
    best, params = best_candidate(run_dir)
    cfg = parse_config(yaml.safe_load(best.config))
    model = best.outcome.caffemodel
    if model is None or not Path(model).is_file():
        raise UserError(f"{run_dir}: the best candidate's weights {model} are gone")
    summary = {
        "key": best.key, "genotype": best.genotype,
        "genotype_text": describe(best.genotype, params.search_space()),
        **best.outcome.to_dict(), "random_seed": best.random_seed,
    }
    target = out_dir / MODEL_FILE
    staged = _stage_copy(Path(model), target)
    try:
        # best.json goes first and comes back last: a folder holding a best.json
        # holds the whole export it describes, also after a kill -9 halfway
        (out_dir / BEST_FILE).unlink(missing_ok=True)
        written = write({**generate(cfg, source=CONFIG_FILE), CONFIG_FILE: best.config}, out_dir)
        os.replace(staged, target)
        written += write({BEST_FILE: json.dumps(summary, indent=2) + "\n"}, out_dir)
    finally:
        staged.unlink(missing_ok=True)
    return best, [*written[:-1], target, written[-1]]


def _stage_copy(source: Path, target: Path) -> Path:
    """`source` copied to a temporary file beside `target` (a full disk: one line, nothing changed)."""
    what = f"{target.parent}: cannot write {target.name}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in target.parent.glob(f".{target.name}.*"):  # left by an export that was killed
            stale.unlink(missing_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    except OSError as exc:
        raise UserError(f"{what} ({exc.strerror}); nothing was changed") from None
    os.close(fd)
    staged = Path(name)
    try:
        shutil.copyfile(source, staged)
    except OSError as exc:
        staged.unlink(missing_ok=True)
        raise UserError(f"{what} ({exc.strerror}); nothing was changed") from None
    return staged
