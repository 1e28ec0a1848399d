"""Install script for drnngen.

Besides the usual metadata (in setup.cfg) it does one thing at install time:
it compiles Caffe's own ``caffe.proto`` — taken from Caffe's source package on
PyPI, never committed here — into a binary descriptor set shipped inside the
``drnngen.codegen`` package. drnngen validates every prototxt it writes against that
schema, so code generation needs no Caffe build.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

CAFFE_SOURCE = "brocolli-caffe==9.0.2"
PROTO_MEMBER = "src/caffe/proto/caffe.proto"
HERE = Path(__file__).resolve().parent
SCHEMA = HERE / "codegen" / "caffe_schema.desc"


def cache_dir() -> Path:
    return Path(os.environ.get("DRNNGEN_CACHE", Path.home() / ".cache" / "drnngen"))


def caffe_sdist() -> Path:
    """Caffe's source package, downloaded once into the shared cache."""
    src = cache_dir() / "src"
    sdist = src / (CAFFE_SOURCE.replace("==", "-") + ".tar.gz")
    if sdist.exists():
        return sdist
    src.mkdir(parents=True, exist_ok=True)
    # Inside pip's isolated build env PYTHONPATH hides the interpreter's own pip;
    # dropping it lets `python -m pip` run with the index settings the user has.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
         "--no-binary", ":all:", "-d", str(src), CAFFE_SOURCE],
        check=True, env=env,
    )
    return sdist


def extract_proto(sdist: Path, dest: Path) -> Path:
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(PROTO_MEMBER))
        data = tar.extractfile(member)
        assert data is not None
        out = dest / "caffe.proto"
        out.write_bytes(data.read())
    return out


def run_protoc(proto: Path, out: Path) -> None:
    args = [f"-I{proto.parent}", f"--descriptor_set_out={out}", proto.name]
    try:
        from grpc_tools import protoc  # build requirement (pyproject.toml)
    except ImportError:  # plain `python setup.py` without build isolation
        subprocess.run(["protoc", *args], check=True)
        return
    if protoc.main(["protoc", *args]) != 0:
        raise RuntimeError(f"protoc failed on {proto}")


def compile_schema() -> None:
    override = os.environ.get("DRNNGEN_CAFFE_PROTO")
    with tempfile.TemporaryDirectory() as tmp:
        proto = Path(override) if override else extract_proto(caffe_sdist(), Path(tmp))
        run_protoc(proto, SCHEMA)


class BuildWithSchema(build_py):
    """build_py that first makes codegen/caffe_schema.desc (editable installs too)."""

    def run(self) -> None:
        if not SCHEMA.exists() or os.environ.get("DRNNGEN_CAFFE_PROTO"):
            compile_schema()
        super().run()


# One import root. The repository keeps codegen/ and tuner/ at its top; the
# symlinks drnngen/codegen -> ../codegen and drnngen/tuner -> ../tuner make the
# source tree the installed layout (drnngen.codegen, drnngen.tuner), so a
# checkout, an editable install, mypy and pytest all see one package and a
# wheel installs `drnngen` alone. templates/ installs as drnngen/codegen/templates.
setup(
    cmdclass={"build_py": BuildWithSchema},
    packages=[*find_packages(include=["drnngen", "drnngen.*"]), "drnngen.codegen.templates"],
    package_dir={"drnngen.codegen.templates": "templates"},
    package_data={"drnngen.codegen": ["caffe_schema.desc"], "drnngen.codegen.templates": ["*.j2"]},
)
