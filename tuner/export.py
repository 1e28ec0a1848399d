"""A run's best candidate, and its export (`drnngen best`, and the end of `tune`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from drnngen.codegen.build import generate, write
from drnngen.codegen.config import parse_config
from drnngen.errors import UserError
from drnngen.tuner.candidate import CONFIG_FILE, MODEL_FILE
from drnngen.tuner.codec import describe
from drnngen.tuner.ledger import CandidateRow, Ledger
from drnngen.tuner.params import TuneParams


def best_candidate(run_dir: Path) -> tuple[CandidateRow, TuneParams]:
    """The run's fittest successful candidate, or UserError when there is none."""
    ledger = Ledger.open(Path(run_dir))
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
    written = write({**generate(cfg, source=CONFIG_FILE), CONFIG_FILE: best.config,
                     "best.json": json.dumps(summary, indent=2) + "\n"}, out_dir)
    target = out_dir / MODEL_FILE
    shutil.copyfile(model, target)
    return best, [*written, target]
