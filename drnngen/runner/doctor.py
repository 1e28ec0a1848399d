"""`drnngen doctor`'s checks: where Caffe is, what it can do, what is missing.

Every check adds report lines; a failed check also adds a problem carrying
its one-line fix. Caffe is examined in a child process, like every Caffe run.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field

from drnngen.codegen.validate import layer_types
from drnngen.errors import EnvironmentProblem
from drnngen.runner.jobs import CaffeInfo
from drnngen.runner.locate import CaffeInstall, locate_caffe
from drnngen.runner.run import caffe_info, require_mode


@dataclass
class Diagnosis:
    """Report lines (label, value) and the problems found, each with its fix."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, label: str, value: str) -> None:
        self.lines.append((label, value))

    def fail(self, label: str, value: str, problem: str) -> None:
        self.lines.append((label, value))
        self.problems.append(problem)

    @property
    def ok(self) -> bool:
        return not self.problems


def diagnose(mode: str = "cpu") -> Diagnosis:
    """Run every check; ``mode`` "gpu" also requires a CUDA build."""
    report = Diagnosis()
    try:
        install = locate_caffe()
    except EnvironmentProblem as exc:
        report.fail("caffe", "not found", str(exc))
    else:
        _check_caffe(install, mode, report)
    _check_dot(report)
    return report


def _check_caffe(install: CaffeInstall, mode: str, report: Diagnosis) -> None:
    report.add("caffe", f"{install.root or install.package_dir} (from {install.source})")
    try:
        info = caffe_info(install)
    except EnvironmentProblem as exc:
        report.fail("import", "fails", str(exc))
        return
    build = install.build_info or {}
    package = f" (brocolli-caffe {build['version']})" if "version" in build else ""
    report.add("version", f"{info.version}{package}")
    report.add("build", _build_kind(install, info))
    report.add("tool", str(install.tool) if install.tool else "no `caffe` tool found")
    _check_layers(info, report)
    built_with = f" (built against {build['numpy']})" if "numpy" in build else ""
    report.add("numpy", f"{info.numpy}{built_with}")
    report.add("protobuf", info.protobuf)
    report.add("python", info.python)
    try:
        report.add("mode", require_mode(mode, install))
    except EnvironmentProblem as exc:
        report.fail("mode", f"{mode}: not available", str(exc))


def _build_kind(install: CaffeInstall, info: CaffeInfo) -> str:
    cuda = (install.build_info or {}).get("cuda")
    if info.gpu_capable is False:
        return "CPU only"
    if info.gpu_capable:
        return f"CUDA {cuda}" if cuda else "CUDA"
    return "unknown (cannot tell on this OS)"


def _check_layers(info: CaffeInfo, report: Diagnosis) -> None:
    needed = sorted(layer_types())
    missing = [kind for kind in needed if kind not in info.layer_types]
    summary = f"{len(info.layer_types)} types; the {len(needed)} drnngen emits"
    if missing:
        report.fail("layers", f"{summary}: missing {', '.join(missing)}",
                    f"this Caffe lacks layer types {', '.join(missing)}: run `make caffe` "
                    "and unset DRNNGEN_CAFFE_ROOT")
    else:
        report.add("layers", f"{summary}: all present")


def _check_dot(report: Diagnosis) -> None:
    dot = shutil.which("dot")
    if dot is None:
        report.fail("dot", "not found",
                    "Graphviz `dot` not found (`drnngen draw` needs it): run `make system-deps`")
        return
    version = subprocess.run([dot, "-V"], capture_output=True, text=True, check=False)
    report.add("dot", f"{dot} ({version.stderr.strip() or 'version unknown'})")
