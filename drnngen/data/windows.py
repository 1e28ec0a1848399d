"""Per-window HDF5 files in the layout Caffe's HDF5Data layer reads (one row per sample).

Datasets of every file (all float32, as HDF5Data requires):

    page_0 … page_{w-1}   [n]        page ids of the last w views, oldest first, 0 = padding
    dwell_0 … dwell_{w-1} [n, 1]     normalised dwell of those views, 0 for padding
    history               [n, M+1]   dwell-weighted mixture V̄ of the one-hot pages older
                                     than the window (rows sum to 1, or are all 0)
    user_items            [n, N]     multi-hot of the user's purchases before the session
    label                 [n]        class index of the item to predict

Files are cut at a size bound on their dense rows (HDF5Data loads one whole file at a
time) and listed, one absolute path a line, in `<split>.txt` — the `source` of an HDF5Data
layer. `history` and `user_items` are almost all zeros, so unless told otherwise they are
stored deflate-compressed in chunks of whole rows (HDF5's standard gzip filter, which
Caffe reads unchanged): a window then takes about a hundredth of the disk.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from drnngen.data.sessions import SPLITS, DwellScale, SplitSamples, ranges
from drnngen.data.textscan import Ints
from drnngen.errors import UserError

INDEX_FILE = "index.json"
try:  # ISA-L: the same zlib stream format as zlib, about ten times faster on these rows
    from isal.isal_zlib import compress as _compress

    _LEVEL = 0
except ImportError:  # pragma: no cover - a platform without isal wheels
    from zlib import compress as _compress

    _LEVEL = 1

_BATCH_BYTES = 16 << 20  # rows built in memory at once; bounds the conversion's peak memory
_CHUNK_BYTES = 1 << 20  # HDF5 chunk of a compressed dataset (whole rows)
_COMPRESSED = ("history", "user_items")
_GIB = float(1 << 30)
Progress = Callable[[str], None]
Float32s = npt.NDArray[np.float32]


def layout(window: int, pages: int, items: int) -> dict[str, tuple[int, ...]]:
    """Dataset name → shape of one row, in the order the datasets are written."""
    shapes: dict[str, tuple[int, ...]] = {f"page_{t}": () for t in range(window)}
    shapes.update({f"dwell_{t}": (1,) for t in range(window)})
    shapes.update({"history": (pages + 1,), "user_items": (items,), "label": ()})
    return shapes


def row_bytes(window: int, pages: int, items: int) -> int:
    """Bytes of one sample row (float32 everywhere)."""
    return 4 * sum(int(np.prod(shape)) for shape in layout(window, pages, items).values())


def check_budget(samples: int, window: int, pages: int, items: int, budget: int) -> int:
    """Estimated bytes of one window's files; a one-line UserError when over `budget`."""
    total = samples * row_bytes(window, pages, items)
    if total > budget:
        raise UserError(
            f"the HDF5 data for window {window} would take {_size(total)} uncompressed "
            f"({samples:,} samples; the {pages + 1:,}-column history dominates), over the "
            f"{_size(budget)} budget; lower --max-pages (M is {pages}) or raise --memory-budget"
        )
    return total


@dataclass(frozen=True)
class WindowFiles:
    """What one window's files hold and how they are cut."""

    window: int
    pages: int  # M
    items: int  # N
    dwell: DwellScale
    file_bytes: int  # bound on the dense rows of one file
    compress: bool = True

    @property
    def row_bytes(self) -> int:
        return row_bytes(self.window, self.pages, self.items)


def _size(count: int) -> str:
    return f"{count / _GIB:.1f} GiB" if count >= _GIB else f"{count / (1 << 20):.1f} MiB"


def write_window(
    splits: dict[str, SplitSamples], user_items: Ints, folder: Path, spec: WindowFiles, progress: Progress
) -> dict[str, Any]:
    """Write every split's files for one window into `folder`; returns the window's index."""
    rows_per_file = max(1, spec.file_bytes // spec.row_bytes)
    files: dict[str, list[str]] = {}
    for name in SPLITS:
        split = splits[name]
        files[name] = []
        for number, first in enumerate(range(0, split.samples, rows_per_file)):
            stop = min(split.samples, first + rows_per_file)
            file_name = f"{name}-{number:04d}.h5"
            _write_file(folder / file_name, split, user_items, (first, stop), spec)
            files[name].append(file_name)
            progress(f"window {spec.window}: {file_name} ({stop - first:,} rows)")
    index = {"window": spec.window, "pages": spec.pages, "items": spec.items, "compressed": spec.compress,
             "files": files, "rows": {name: splits[name].samples for name in SPLITS}}
    (folder / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n")
    return index


def _write_file(path: Path, split: SplitSamples, user_items: Ints, rows: tuple[int, int], spec: WindowFiles) -> None:
    first, stop = rows
    # one chunk height for the compressed datasets; batches are whole chunks (the last one aside)
    chunk = min(stop - first, max(1, _CHUNK_BYTES // (4 * max(spec.pages + 1, spec.items))))
    batch = max(1, _BATCH_BYTES // spec.row_bytes // chunk) * chunk
    with h5py.File(path, "w") as h5:
        datasets = {}
        for key, row in layout(spec.window, spec.pages, spec.items).items():
            options: dict[str, Any] = {}
            if spec.compress and key in _COMPRESSED:  # declares HDF5's deflate filter for readers
                options = {"chunks": (chunk, *row), "compression": "gzip"}
            datasets[key] = h5.create_dataset(key, shape=(stop - first, *row), dtype="f4", **options)
        for lo in range(first, stop, batch):
            hi = min(stop, lo + batch)
            for key, values in build_rows(split, user_items, (lo, hi), spec).items():
                if datasets[key].compression:
                    _write_chunks(datasets[key], values, lo - first, chunk)
                else:
                    datasets[key][lo - first : hi - first] = values


def _write_chunks(dataset: h5py.Dataset, values: Float32s, offset: int, chunk: int) -> None:
    """Write rows as pre-compressed chunks (zlib format, which HDF5's deflate filter reads).

    Compressing here rather than in HDF5's filter lets a faster deflate do the work: the
    dense rows are almost all zeros, and zlib at level 1 would be the slowest step.
    """
    for top in range(0, len(values), chunk):
        block = values[top : top + chunk]
        if len(block) < chunk:  # the last chunk of a file is stored whole, padded with zeros
            block = np.concatenate([block, np.zeros((chunk - len(block), *block.shape[1:]), np.float32)])
        dataset.id.write_direct_chunk((offset + top, *[0] * (block.ndim - 1)), _deflate(np.ascontiguousarray(block)))


def _deflate(rows: Float32s) -> bytes:
    """A zlib stream of the rows' bytes (what HDF5's deflate filter stores)."""
    return _compress(rows.data.cast("B"), _LEVEL)


def build_rows(split: SplitSamples, user_items: Ints, rows: tuple[int, int], spec: WindowFiles) -> dict[str, Float32s]:
    """The HDF5 arrays of samples rows[0]..rows[1]-1 of a split (see the module docstring)."""
    lo, hi = rows
    window, pages, items, dwell = spec.window, spec.pages, spec.items, spec.dwell
    start, end = split.start[lo:hi], split.end[lo:hi]
    out: dict[str, Float32s] = {}
    for t in range(window):
        at = end - window + t
        valid = at >= start
        safe = np.where(valid, at, 0)
        out[f"page_{t}"] = np.where(valid, split.page[safe], 0).astype(np.float32)
        out[f"dwell_{t}"] = np.where(valid, dwell.normalise(split.theta[safe]), 0).astype(np.float32)[:, None]
    out["history"] = _history(split, start, np.maximum(end - window, start), pages)
    out["user_items"] = _multi_hot(user_items, split.ui_lo[lo:hi], split.ui_hi[lo:hi], items)
    out["label"] = split.label[lo:hi].astype(np.float32)
    return out


def _history(split: SplitSamples, start: Ints, stop: Ints, pages: int) -> Float32s:
    """V̄ = Σ ε_i V_i over the views in [start, stop) of every row, ε_i = θ_i / Σ θ.

    When every older view has θ = 0 the weights are uniform, so a row with older views
    still sums to 1. Dense [rows, M+1]; column 0 (padding) is never hit.
    """
    n = len(start)
    counts = stop - start
    row = np.repeat(np.arange(n, dtype=np.int64), counts)
    at = ranges(start, counts)
    theta = split.theta[at].astype(np.float64)
    total = np.bincount(row, theta, minlength=n)[row]
    share = np.where(total > 0, theta / np.where(total > 0, total, 1.0), 1.0 / np.maximum(counts[row], 1))
    cells = row * (pages + 1) + split.page[at]
    dense = np.bincount(cells, share, minlength=n * (pages + 1))
    return dense.reshape(n, pages + 1).astype(np.float32)


def _multi_hot(user_items: Ints, lo: Ints, hi: Ints, items: int) -> Float32s:
    """Rows with a 1 at every class in user_items[lo:hi]."""
    counts = hi - lo
    dense = np.zeros((len(lo), items), dtype=np.float32)
    dense[np.repeat(np.arange(len(lo)), counts), user_items[ranges(lo, counts)]] = 1.0
    return dense
