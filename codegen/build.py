"""Generation end to end: config → the three prototxt files, validated.

`generate` is pure (returns text); `write` is the one place that decides where
the bytes go.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from drnngen.codegen.config import DRNNConfig
from drnngen.codegen.graph import build_deploy_graph, build_graph, input_shapes
from drnngen.codegen.render import render_net, render_solver
from drnngen.codegen.validate import check_net, check_solver
from drnngen.errors import UserError

NET, SOLVER, DEPLOY = "net.prototxt", "solver.prototxt", "deploy.prototxt"


class GenerationError(UserError):
    """The generated files fail Caffe's schema or Net::Init's checks."""


def generate(cfg: DRNNConfig, source: str = "config") -> dict[str, str]:
    """File name → text of net, solver and deploy prototxt, checked before returned."""
    files = {
        NET: render_net(build_graph(cfg), source, NET),
        SOLVER: render_solver(cfg, source, SOLVER),
        DEPLOY: render_net(build_deploy_graph(cfg), source, DEPLOY),
    }
    problems = check_files(cfg, files)
    if problems:
        raise GenerationError("; ".join(problems))
    return files


def check_files(cfg: DRNNConfig, files: dict[str, str]) -> list[str]:
    """Schema and structural problems of generated files (empty when sound)."""
    shapes = input_shapes(cfg, 1)
    return [
        *check_net(files[NET], NET, shapes),
        *check_solver(files[SOLVER], SOLVER),
        *check_net(files[DEPLOY], DEPLOY, shapes),
    ]


def write(files: dict[str, str], out_dir: Path) -> list[Path]:
    """Write each file atomically (temp file + rename) into out_dir."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out_dir}: cannot create output folder ({exc.strerror})") from None
    written = []
    for name, text in files.items():
        target = out_dir / name
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
        written.append(target)
    return written
