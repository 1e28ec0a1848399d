"""`drnngen draw`: the net as a Graphviz picture.

`to_dot` is pure; `render_picture` runs Graphviz's `dot` for .svg/.png. One
cluster per state, the history state first, states left to right; data flow
in solid edges, shared parameters as dashed edges labelled with the blob name.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

from drnngen.codegen.build import write
from drnngen.codegen.config import DRNNConfig
from drnngen.codegen.graph import Layer, NetGraph, build_graph
from drnngen.errors import EnvironmentProblem, UserError

FORMATS = (".svg", ".png", ".dot")


def _group(layer: Layer) -> str:
    head = layer.name.split("_", 1)[0]
    if head == "hist" or (head.startswith("s") and head[1:].isdigit()) or head == "fnn":
        return head
    return "io"


def _label(group: str) -> str:
    if group == "hist":
        return "history state"
    if group == "fnn":
        return "FNN (CF)"
    return f"state {group[1:]}"


def _dot_string(text: str) -> str:
    """A DOT quoted string of `text`, the net's name, which is the user's: DOT has no
    escape that protects a trailing backslash, so quotes, backslashes and unprintable
    characters become `_` (it is only the picture's title)."""
    return '"' + "".join(ch if ch.isprintable() and ch not in '"\\' else "_" for ch in text) + '"'


def to_dot(graph: NetGraph) -> str:
    """DOT text of the TRAIN-phase graph."""
    layers = [layer for layer in graph.layers if layer.phase != "TEST" and not _in_place(layer)]
    producer = {top: layer.name for layer in layers for top in layer.tops}
    groups: dict[str, list[Layer]] = defaultdict(list)
    for layer in layers:
        groups[_group(layer)].append(layer)
    lines = [f"digraph {_dot_string(graph.name)} {{", "  rankdir=BT; newrank=true; node [shape=box, fontsize=10];"]
    for group, members in groups.items():
        if group == "io":
            lines += [f'  "{m.name}" [label="{m.name}\\n{m.type}", shape=ellipse];' for m in members]
            continue
        lines.append(f'  subgraph "cluster_{group}" {{ label="{_label(group)}";')
        lines += [f'    "{m.name}" [label="{m.name}\\n{m.type}"];' for m in members]
        lines.append("  }")
    for layer in layers:
        for bottom in layer.bottoms:
            source = producer.get(bottom)
            if source is not None and source != layer.name:
                lines.append(f'  "{source}" -> "{layer.name}";')
    lines += _shared_edges(layers)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _in_place(layer: Layer) -> bool:
    return bool(layer.bottoms) and layer.bottoms == layer.tops


def _shared_edges(layers: list[Layer]) -> list[str]:
    users: dict[str, list[str]] = defaultdict(list)
    for layer in layers:
        for param in layer.params:
            if param.name:
                users[param.name].append(layer.name)
    edges = []
    for name, names in users.items():
        for left, right in itertools.pairwise(names):
            edges.append(
                f'  "{left}" -> "{right}" [style=dashed, dir=none, constraint=false, '
                f'color=gray40, fontsize=8, label="{name}"];'
            )
    return edges


DOT_TIMEOUT_S = 120


def render_picture(cfg: DRNNConfig, output: Path) -> None:
    """Write the picture; the suffix of `output` picks the format."""
    suffix = output.suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"{output}: unknown picture format {suffix or '(none)'} (use {', '.join(FORMATS)})")
    dot_text = to_dot(build_graph(cfg))
    if suffix == ".dot":
        write({output.name: dot_text}, output.parent)
        return
    dot = shutil.which("dot")
    if dot is None:
        raise EnvironmentProblem("Graphviz `dot` not found; install it (make system-deps) or write a .dot file")
    try:
        # dot writes to stdout, not the file: a failure or a full disk leaves no partial picture
        result = subprocess.run([dot, f"-T{suffix[1:]}"], input=dot_text.encode(), capture_output=True,
                                check=False, timeout=DOT_TIMEOUT_S)
    except subprocess.TimeoutExpired:  # run() kills the child: none is left behind
        raise UserError(f"{output}: Graphviz took over {DOT_TIMEOUT_S} s on this net "
                        f"({cfg.model.states} states); draw fewer states, or write a .dot file") from None
    if result.returncode != 0:
        raise UserError(f"dot failed: {result.stderr.decode(errors='replace').strip().splitlines()[-1:]}")
    write({output.name: result.stdout}, output.parent)
