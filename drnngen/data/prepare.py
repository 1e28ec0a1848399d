"""`drnngen prepare`: click log → sample store + manifest (+ the HDF5 files of one window).

Everything is written into a temporary folder beside the output and renamed into place
at the end, so an error or an interrupt leaves no half-written dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from drnngen.data.manifest import (
    ITEM_IDS_FILE,
    MANIFEST_FILE,
    PAGE_IDS_FILE,
    Manifest,
    file_sha256,
    load_manifest,
    make_temp_dir,
    manifest_dict,
)
from drnngen.data.readers import LogSpec, read_log
from drnngen.data.sessions import OOV_PAGE, BuildOptions, Dataset, build_dataset
from drnngen.data.store import STORE_FILE, save_store
from drnngen.data.windows import check_budget
from drnngen.errors import UserError

Progress = Callable[[str], None]
DEFAULT_FILE_BYTES = 256 << 20
DEFAULT_MEMORY_BUDGET = 4 << 30


@dataclass(frozen=True)
class PrepareOptions:
    """Everything `prepare` needs besides the input files."""

    build: BuildOptions = field(default_factory=BuildOptions)
    window: int = 4  # the window materialised right away (paper: 4 states)
    file_bytes: int = DEFAULT_FILE_BYTES  # bound on one HDF5 file's dense rows (HDF5Data loads a whole file)
    compress: bool = True  # gzip the wide, sparse history and user_items datasets
    memory_budget: int = DEFAULT_MEMORY_BUDGET  # bound on one window's HDF5 data
    force: bool = False  # replace an existing output folder


@dataclass(frozen=True)
class PrepareReport:
    """What `prepare` made, with the seconds each stage took."""

    manifest: Manifest
    sources: dict[str, Path]
    events: int
    seconds: dict[str, float]


def prepare(spec: LogSpec, options: PrepareOptions, output: Path, progress: Progress) -> PrepareReport:
    """Convert the log of `spec` into a dataset folder at `output`."""
    _check_output(output, options.force)
    if options.window < 1:
        raise UserError("--window must be at least 1")
    clock = _Clock()
    log = read_log(spec, progress)
    events, files = len(log), log.files
    clock.lap("read")
    dataset = build_dataset(log, options.build, progress)
    del log
    clock.lap("sessions")
    total = sum(split.samples for split in dataset.splits.values())
    check_budget(total, options.window, dataset.pages, dataset.items, options.memory_budget)
    _warn_empty(dataset, progress)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(f".{output.name}.tmp-", output.parent)
    try:
        _write(dataset, spec, options, tmp, (events, files))
        _move_into_place(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    clock.lap("store")
    manifest = load_manifest(output)
    sources = manifest.sources(options.window, progress)
    clock.lap("window")
    return PrepareReport(manifest, sources, events, clock.laps)


class _Clock:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now


def _check_output(output: Path, force: bool) -> None:
    if output.exists() and not force and (output.is_file() or any(output.iterdir())):
        raise UserError(f"{output}: already exists; pass --force to replace it")
    if output.is_file():
        raise UserError(f"{output}: is a file, not a folder")


def _warn_empty(dataset: Dataset, progress: Progress) -> None:
    for name, split in dataset.splits.items():
        if split.samples == 0:
            progress(f"warning: the {name} split has no samples; Caffe cannot read an empty {name}.txt")


def _write(
    dataset: Dataset, spec: LogSpec, options: PrepareOptions, folder: Path, read: tuple[int, list[dict[str, Any]]]
) -> None:
    events, sources = read
    save_store(dataset, folder / STORE_FILE)
    _write_json(folder / PAGE_IDS_FILE, {"first_id": OOV_PAGE + 1, "padding_id": 0, "oov_id": OOV_PAGE,
                                         "keys": dataset.page_keys})
    _write_json(folder / ITEM_IDS_FILE, {"first_id": 0, "keys": dataset.item_keys})
    hashes = {name: file_sha256(folder / name) for name in (STORE_FILE, PAGE_IDS_FILE, ITEM_IDS_FILE)}
    parameters: dict[str, Any] = {
        **asdict(options.build),
        "window": options.window,
        "file_bytes": options.file_bytes,
        "compress": options.compress,
        "memory_budget": options.memory_budget,
        "columns": dict(spec.columns),
        "delimiter": spec.delimiter,
        "time_unit": spec.time_unit,
        "purchase_values": list(spec.purchase_values),
    }
    content = manifest_dict(dataset, log_format=spec.format, target=options.build.target,
                            window=options.window, sources=sources, hashes=hashes, parameters=parameters)
    content["counts"] = {**content["counts"], "events_read": events}
    _write_json(folder / MANIFEST_FILE, content)


def _write_json(path: Path, content: Any) -> None:
    path.write_text(json.dumps(content, indent=1) + "\n")


def _move_into_place(tmp: Path, output: Path) -> None:
    """Rename the finished folder to `output`, replacing what was there (checked before)."""
    if not output.exists():
        os.rename(tmp, output)
        return
    old = output.with_name(f".{output.name}.old-{os.getpid()}")
    os.rename(output, old)
    os.rename(tmp, output)
    shutil.rmtree(old, ignore_errors=True)
