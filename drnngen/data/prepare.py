"""`drnngen prepare`: click log → sample store + manifest (+ the HDF5 files of one window).

Everything, the window's HDF5 files included, is written into a temporary folder beside
the output and swapped into place at the end (`drnngen.data.output`), so an error or an
interrupt leaves no half-written dataset and an old one (`--force`) as it was.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from drnngen.data.manifest import (
    ITEM_IDS_FILE,
    MANIFEST_FILE,
    MAX_WINDOW,
    PAGE_IDS_FILE,
    TRAIN_ITEMS_FILE,
    Manifest,
    file_sha256,
    load_manifest,
    manifest_dict,
)
from drnngen.data.output import check_output, dataset_problem, output_lock, swap_into_place, temp_folder
from drnngen.data.readers import LogSpec, read_log
from drnngen.data.sessions import OOV_PAGE, BuildOptions, Dataset, build_dataset
from drnngen.data.store import STORE_FILE, save_store
from drnngen.data.windows import INDEX_FILE, SPARSE, SampleLayout, check_budget
from drnngen.errors import UserError

Progress = Callable[[str], None]
DEFAULT_FILE_BYTES = 256 << 20
DEFAULT_MEMORY_BUDGET = 4 << 30
_KIND = "a dataset drnngen prepare made"


@dataclass(frozen=True)
class PrepareOptions:
    """Everything `prepare` needs besides the input files."""

    build: BuildOptions = field(default_factory=BuildOptions)
    window: int = 4  # the window materialised right away (paper: 4 states)
    file_bytes: int = DEFAULT_FILE_BYTES  # bound on one HDF5 file's dense rows (HDF5Data loads a whole file)
    compress: bool = True  # gzip the dense layout's wide, sparse history and user_items datasets
    layout: SampleLayout = SPARSE  # K (page, weight) pairs and U item ids; DENSE: `--dense-history`
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
    """Convert the log of `spec` into a dataset folder at `output` (one `prepare` at a time)."""
    with output_lock(output, "drnngen prepare"):
        return _prepare(spec, options, output, progress)


def _prepare(spec: LogSpec, options: PrepareOptions, output: Path, progress: Progress) -> PrepareReport:
    if not 1 <= options.window <= MAX_WINDOW:
        raise UserError(f"--window must lie in 1..{MAX_WINDOW}, not {options.window}")
    inputs = spec.inputs()
    check_output(output, options.force, _KIND, dataset_problem, inputs)
    clock = _Clock()
    log = read_log(spec, progress)
    events, files = len(log), log.files
    _warn_identical_splits(files, progress)
    clock.lap("read")
    dataset = build_dataset(log, options.build, progress)
    del log
    clock.lap("sessions")
    total = sum(split.samples for split in dataset.splits.values())
    check_budget(total, options.window, dataset.pages, dataset.items, options.memory_budget, options.layout)
    _warn_empty(dataset, progress)
    tmp = temp_folder(output)
    try:
        _write(dataset, spec, options, tmp, (events, files))
        clock.lap("store")
        load_manifest(tmp).sources(options.window, progress)  # the window's files, before the swap
        _record_dropped(tmp, options)
        clock.lap("window")
        check_output(output, options.force, _KIND, dataset_problem, inputs)  # again: minutes have passed
        swap_into_place(tmp, output)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"{output}: cannot write the dataset ({_reason(exc)})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest = load_manifest(output)
    sources = manifest.sources(options.window, progress)  # the list files name the final folder
    return PrepareReport(manifest, sources, events, clock.laps)


def _reason(exc: OSError) -> str:
    """An OSError's reason in a few words; HDF5's own carry a whole report (times, buffers)."""
    if exc.strerror:
        return exc.strerror
    text = str(exc)
    return "No space left on device" if "No space left on device" in text else text[:200]


class _Clock:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now


def _warn_identical_splits(files: list[dict[str, Any]], progress: Progress) -> None:
    """One line when two given split files hold the same bytes (a copy-paste slip, most likely)."""
    seen: dict[str, dict[str, Any]] = {}
    for entry in files:
        if "split" not in entry:
            continue
        first = seen.setdefault(entry["sha256"], entry)
        if first is not entry:
            progress(f"warning: the {first['split']} file {first['path']} and the {entry['split']} file "
                     f"{entry['path']} have the same content (sha256 {entry['sha256'][:12]}…); are they the "
                     "splits you meant?")


def _warn_empty(dataset: Dataset, progress: Progress) -> None:
    for name, split in dataset.splits.items():
        if split.samples == 0:
            progress(f"warning: the {name} split has no samples; Caffe cannot read an empty {name}.txt")


def _record_dropped(folder: Path, options: PrepareOptions) -> None:
    """Copy what the sparse layout dropped at prepare's window into the manifest (other
    windows keep theirs in w<w>/index.json)."""
    if not options.layout.sparse:
        return
    index = json.loads((folder / f"w{options.window}" / INDEX_FILE).read_text())
    content = json.loads((folder / MANIFEST_FILE).read_text())
    content["layout"]["dropped"] = {"window": options.window, **index["dropped"]}
    _write_json(folder / MANIFEST_FILE, content)


def _write(
    dataset: Dataset, spec: LogSpec, options: PrepareOptions, folder: Path, read: tuple[int, list[dict[str, Any]]]
) -> None:
    events, sources = read
    save_store(dataset, folder / STORE_FILE)
    _write_json(folder / PAGE_IDS_FILE, {"first_id": OOV_PAGE + 1, "padding_id": 0, "oov_id": OOV_PAGE,
                                         "keys": dataset.page_keys})
    _write_json(folder / ITEM_IDS_FILE, {"first_id": 0, "keys": dataset.item_keys})
    id_maps = [STORE_FILE, PAGE_IDS_FILE, ITEM_IDS_FILE]
    if dataset.train_item_keys is not None:  # recommend and score filter other logs by it, as prepare did
        viewed, bought_only = dataset.train_item_keys
        _write_json(folder / TRAIN_ITEMS_FILE, {"keys": viewed, "purchase_only_keys": bought_only})
        id_maps.append(TRAIN_ITEMS_FILE)
    hashes = {name: file_sha256(folder / name) for name in id_maps}
    parameters: dict[str, Any] = {
        **asdict(options.build),
        "window": options.window,
        "file_bytes": options.file_bytes,
        "compress": options.compress,
        **({"history_k": options.layout.history_k, "user_items_k": options.layout.user_items_k}
           if options.layout.sparse else {}),
        "memory_budget": options.memory_budget,
        "columns": dict(spec.columns),
        "delimiter": spec.delimiter,
        "time_unit": spec.time_unit,
        "purchase_values": list(spec.purchase_values),
        "splits_from": "files" if spec.given_splits else "fractions",
    }
    if spec.given_splits:  # the files are the splits; the fractions were never used
        parameters["split"] = None
    content = manifest_dict(dataset, log_format=spec.format, target=options.build.target,
                            window=options.window, sources=sources, hashes=hashes, parameters=parameters,
                            sample_layout=options.layout)
    content["counts"] = {**content["counts"], "events_read": events}
    _write_json(folder / MANIFEST_FILE, content)


def _write_json(path: Path, content: Any) -> None:
    path.write_text(json.dumps(content, indent=1) + "\n")
