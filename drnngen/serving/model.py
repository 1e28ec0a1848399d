"""Which net a run serves: the tuned best, or the weights `drnngen update` swapped in.

`RUN/serving/current.json` names the served weights once an update has replaced the
tuned ones (written to a temporary file and renamed, so a reader sees the old or the new
pointer, never half of one); without it the ledger's best candidate is served.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from drnngen.codegen.config import DRNNConfig, parse_config
from drnngen.data.manifest import Manifest, load_manifest
from drnngen.data.windows import WindowFiles
from drnngen.errors import UserError
from drnngen.evaluation.run_folder import trained_net
from drnngen.tuner.export import best_candidate
from drnngen.vocabulary import short_key

SERVING_DIR = "serving"
CURRENT_FILE = "current.json"


@dataclass(frozen=True)
class ServedModel:
    """The net `drnngen serve RUN` answers with, and the dataset it was trained on."""

    run: Path
    candidate: str  # the tuned candidate's key (short)
    fitness: float  # on the validation split
    deploy: Path
    weights: Path
    config: DRNNConfig
    manifest: Manifest
    update: int  # 0: the tuned weights; n: the n-th update swapped in

    @property
    def window(self) -> int:
        return self.config.model.states

    @property
    def window_files(self) -> WindowFiles:
        """What `prepare` writes this net's rows with (w, M, N, the dwell scale, the layout:
        dense history or sparse pairs)."""
        return self.manifest.window_files(self.window)

    def describe(self) -> dict[str, Any]:
        """What `GET /model` answers."""
        return {"run": str(self.run), "candidate": self.candidate, "fitness": self.fitness,
                "M": self.manifest.pages, "N": self.manifest.items, "w": self.window,
                "weights": str(self.weights), "update": self.update, "target": self.manifest.target}


def serving_dir(run: Path) -> Path:
    return Path(run) / SERVING_DIR


def load_model(run: Path) -> ServedModel:
    """RUN's served net (see the module docstring); one-line UserError when RUN has none."""
    run = Path(run)
    if not run.is_dir():
        raise UserError(f"{run}: no such run folder")
    row, params = best_candidate(run)
    net = trained_net(run, row.key)
    config = parse_config(yaml.safe_load(row.config))
    manifest = load_manifest(Path(params.data))
    weights, fitness, update = net.weights, float(row.outcome.fitness), 0
    pointer = read_current(run)
    if pointer is not None:
        weights, fitness, update = Path(pointer["weights"]), float(pointer["fitness"]), int(pointer["update"])
        if not weights.is_file():
            raise UserError(f"{serving_dir(run) / CURRENT_FILE}: names weights {weights} that are gone")
    return ServedModel(run, short_key(row.key), fitness, net.deploy, weights, config, manifest, update)


def read_current(run: Path) -> dict[str, Any] | None:
    """The pointer `drnngen update` wrote, or None."""
    path = serving_dir(run) / CURRENT_FILE
    if not path.is_file():
        return None
    try:
        pointer: dict[str, Any] = json.loads(path.read_text())
        pointer["weights"] = str(serving_dir(run) / pointer["weights"])
        float(pointer["fitness"]), int(pointer["update"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: unreadable ({exc}); remove it to serve the tuned weights") from None
    return pointer


def write_current(run: Path, weights: Path, fitness: float, update: int) -> None:
    """Point RUN's server at `weights` (inside RUN/serving), atomically."""
    folder = serving_dir(run)
    text = json.dumps({"weights": weights.name, "fitness": fitness, "update": update}, indent=1) + "\n"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{CURRENT_FILE}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, folder / CURRENT_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
