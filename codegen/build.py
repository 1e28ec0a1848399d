"""Generation end to end: config → the three prototxt files, validated.

`generate` is pure (returns text); `write` is the one place that decides where
the bytes go.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
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


def write(files: Mapping[str, str | bytes], out_dir: Path) -> list[Path]:
    """Write the files into out_dir as one change: every file goes to a temporary
    file first, and only when all are written are they renamed into place. A full
    disk or a read-only folder is a one-line UserError that leaves out_dir as it
    was (no mix of old and new files, no temporary file). Modes follow the umask."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out_dir}: cannot create output folder ({exc.strerror})") from None
    staged: list[tuple[str, Path]] = []
    try:
        for name, text in files.items():
            fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.")
            staged.append((tmp, out_dir / name))
            with os.fdopen(fd, "wb") as handle:
                handle.write(text if isinstance(text, bytes) else text.encode("utf-8"))
            os.chmod(tmp, 0o666 & ~_UMASK)
    except OSError as exc:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise UserError(f"{out_dir}: cannot write {name} ({exc.strerror}); nothing was changed") from None
    for tmp, target in staged:
        os.replace(tmp, target)
    return [target for _, target in staged]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()
