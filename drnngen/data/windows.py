"""Per-window HDF5 files in the layout Caffe's HDF5Data layer reads (one row per sample).

Datasets of every file (all float32, as HDF5Data requires), in one of two layouts
(`SampleLayout`; docs/MODEL.md section 11):

    page_0 … page_{w-1}   [n]        page ids of the last w views, oldest first, 0 = padding
    dwell_0 … dwell_{w-1} [n, 1]     normalised dwell of those views, 0 for padding
    label                 [n]        class index of the item to predict
  sparse (the default of new datasets):
    history_ids           [n, 1, K]  the K pages of largest weight in V̄ (the views older
                                     than the window), 0 = padding
    history_weights       [n, 1, K]  their weights, renormalised to sum 1 (0 for padding)
    user_items            [n, 1, U]  class ids of the user's U latest distinct purchases
                                     before the session, padded with N
  dense (`prepare --dense-history`, and every dataset made before the sparse layout):
    history               [n, M+1]   dwell-weighted mixture V̄ of the one-hot pages older
                                     than the window (rows sum to 1, or are all 0)
    user_items            [n, N]     multi-hot of the user's purchases before the session

`build_rows` is the one function that turns samples (session prefixes: a range of page
views, and of the user's earlier purchases) into these rows; `prepare` and anything that
must feed a net the same inputs (e.g. a recommender over a new log) call it.

Files are cut at a size bound on their rows (HDF5Data loads one whole file at a time) and
listed, one absolute path a line, in `<split>.txt` — the `source` of an HDF5Data layer.
The dense `history` and `user_items` are almost all zeros, so unless told otherwise they
are stored deflate-compressed in chunks of whole rows (HDF5's standard gzip filter, which
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

from drnngen.data.sessions import PAD_PAGE, SPLITS, DwellScale, SplitSamples, ranges
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
Float64s = npt.NDArray[np.float64]
DEFAULT_HISTORY_K = 32  # pairs kept of V̄: a session's older views rarely span more pages
DEFAULT_USER_ITEMS_K = 32  # latest distinct earlier purchases kept per sample


@dataclass(frozen=True)
class SampleLayout:
    """How `history` and `user_items` are stored: dense rows (both 0) or sparse lists.

    The user-items pad id is N (one past the last class); the history's is page 0 with
    weight 0. A manifest without a `layout` key is a dense dataset (made before this).
    """

    history_k: int = 0  # K: (page id, weight) pairs per sample; 0 = the dense [M+1] row
    user_items_k: int = 0  # U: class ids per sample, padded with N; 0 = the dense N-wide multi-hot

    def __post_init__(self) -> None:
        if (self.history_k > 0) != (self.user_items_k > 0) or min(self.history_k, self.user_items_k) < 0:
            raise UserError(f"--history-k and --user-items-k must both be at least 1 (sparse) or both 0 (dense), "
                            f"not {self.history_k} and {self.user_items_k}")

    @property
    def sparse(self) -> bool:
        return self.history_k > 0

    def manifest_entry(self) -> dict[str, Any]:
        """The manifest's `layout` value (readers: `from_manifest`)."""
        if not self.sparse:
            return {"history": "dense"}
        return {"history": "sparse", "history_k": self.history_k, "history_pad_id": PAD_PAGE,
                "user_items_k": self.user_items_k, "user_items_pad_id": "N"}

    @classmethod
    def from_manifest(cls, entry: Any) -> SampleLayout:
        """The layout a manifest's `layout` value names (None: dense, the layout before it existed)."""
        if entry is None or entry == {"history": "dense"}:
            return DENSE
        if not isinstance(entry, dict) or entry.get("history") != "sparse":
            raise ValueError(f"unknown layout {entry!r}")
        k: Any = entry.get("history_k")
        u: Any = entry.get("user_items_k")
        if not (_count(k) and _count(u)):
            raise ValueError(f"layout needs history_k and user_items_k >= 1, not {k!r} and {u!r}")
        return cls(int(k), int(u))


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


DENSE = SampleLayout()
SPARSE = SampleLayout(DEFAULT_HISTORY_K, DEFAULT_USER_ITEMS_K)


def layout(window: int, pages: int, items: int, sample_layout: SampleLayout = DENSE) -> dict[str, tuple[int, ...]]:
    """Dataset name → shape of one row, in the order the datasets are written."""
    shapes: dict[str, tuple[int, ...]] = {f"page_{t}": () for t in range(window)}
    shapes.update({f"dwell_{t}": (1,) for t in range(window)})
    if sample_layout.sparse:
        k, u = sample_layout.history_k, sample_layout.user_items_k
        shapes.update({"history_ids": (1, k), "history_weights": (1, k), "user_items": (1, u)})
    else:
        shapes.update({"history": (pages + 1,), "user_items": (items,)})
    shapes["label"] = ()
    return shapes


def row_bytes(window: int, pages: int, items: int, sample_layout: SampleLayout = DENSE) -> int:
    """Bytes of one sample row (float32 everywhere)."""
    return 4 * sum(int(np.prod(shape)) for shape in layout(window, pages, items, sample_layout).values())


def check_budget(samples: int, window: int, pages: int, items: int, budget: int,
                 sample_layout: SampleLayout = DENSE) -> int:
    """Estimated bytes of one window's files; a one-line UserError when over `budget`."""
    total = samples * row_bytes(window, pages, items, sample_layout)
    if total <= budget:
        return total
    if sample_layout.sparse:
        why = (f"{samples:,} samples of {row_bytes(window, pages, items, sample_layout):,} bytes, sparse history "
               f"K={sample_layout.history_k}"), "lower --history-k/--user-items-k or raise --memory-budget"
    else:
        why = (f"{samples:,} samples; the {pages + 1:,}-column history dominates",
               f"lower --max-pages (M is {pages}), drop --dense-history or raise --memory-budget")
    raise UserError(f"the HDF5 data for window {window} would take {_size(total)} uncompressed ({why[0]}), "
                    f"over the {_size(budget)} budget; {why[1]}")


@dataclass(frozen=True)
class WindowFiles:
    """What one window's files hold and how they are cut."""

    window: int
    pages: int  # M
    items: int  # N
    dwell: DwellScale
    file_bytes: int  # bound on the rows of one file
    compress: bool = True
    layout: SampleLayout = DENSE

    @property
    def row_bytes(self) -> int:
        return row_bytes(self.window, self.pages, self.items, self.layout)

    @property
    def compressed(self) -> tuple[str, ...]:
        """The datasets stored deflate-compressed: only the dense layout's wide, sparse rows."""
        return _COMPRESSED if self.compress and not self.layout.sparse else ()


def _size(count: int) -> str:
    return f"{count / _GIB:.1f} GiB" if count >= _GIB else f"{count / (1 << 20):.1f} MiB"


def write_window(
    splits: dict[str, SplitSamples], user_items: Ints, folder: Path, spec: WindowFiles, progress: Progress
) -> dict[str, Any]:
    """Write every split's files for one window into `folder`; returns the window's index."""
    rows_per_file = max(1, spec.file_bytes // spec.row_bytes)
    files: dict[str, list[str]] = {}
    dropped = {name: _Dropped() for name in SPLITS}
    for name in SPLITS:
        split = splits[name]
        files[name] = []
        for number, first in enumerate(range(0, split.samples, rows_per_file)):
            stop = min(split.samples, first + rows_per_file)
            file_name = f"{name}-{number:04d}.h5"
            _write_file(folder / file_name, split, user_items, (first, stop), spec, dropped[name])
            files[name].append(file_name)
            progress(f"window {spec.window}: {file_name} ({stop - first:,} rows)")
    index = {"window": spec.window, "pages": spec.pages, "items": spec.items, "compressed": bool(spec.compressed),
             "files": files, "rows": {name: splits[name].samples for name in SPLITS}}
    if spec.layout.sparse:
        index["layout"] = spec.layout.manifest_entry()
        index["dropped"] = {name: dropped[name].summary(splits[name].samples) for name in SPLITS}
    (folder / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n")
    return index


@dataclass
class _Dropped:
    """What the sparse layout left out of one split: history mass past the K pairs, and
    user items past the U latest."""

    mass: float = 0.0
    max_mass: float = 0.0
    rows_cut: int = 0
    items: int = 0

    def add(self, mass: Float64s, items: Ints) -> None:
        self.mass += float(mass.sum())
        self.max_mass = max(self.max_mass, float(mass.max(initial=0.0)))
        self.rows_cut += int(np.count_nonzero(mass > 1e-9))
        self.items += int(items.sum())

    def summary(self, samples: int) -> dict[str, Any]:
        return {"history_mass_mean": round(self.mass / max(samples, 1), 9), "history_mass_max": round(self.max_mass, 9),
                "history_rows_cut": self.rows_cut, "user_items_dropped": self.items}


def _write_file(path: Path, split: SplitSamples, user_items: Ints, rows: tuple[int, int], spec: WindowFiles,
                dropped: _Dropped) -> None:
    first, stop = rows
    # one chunk height for the compressed datasets; batches are whole chunks (the last one aside)
    chunk = min(stop - first, max(1, _CHUNK_BYTES // (4 * max(spec.pages + 1, spec.items))))
    batch = max(1, _BATCH_BYTES // spec.row_bytes // chunk) * chunk
    with h5py.File(path, "w") as h5:
        datasets = {}
        for key, row in layout(spec.window, spec.pages, spec.items, spec.layout).items():
            options: dict[str, Any] = {}
            if key in spec.compressed:  # declares HDF5's deflate filter for readers
                options = {"chunks": (chunk, *row), "compression": "gzip"}
            datasets[key] = h5.create_dataset(key, shape=(stop - first, *row), dtype="f4", **options)
        for lo in range(first, stop, batch):
            hi = min(stop, lo + batch)
            values_of, lost_mass, lost_items = _rows(split, user_items, (lo, hi), spec)
            dropped.add(lost_mass, lost_items)
            for key, values in values_of.items():
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
    """The HDF5 arrays of samples rows[0]..rows[1]-1 of a split (see the module docstring).

    Sample i is the session prefix `split.page[start[i]:end[i]]` (page ids, oldest first,
    with dwell seconds `split.theta`) and its user's earlier purchases
    `user_items[ui_lo[i]:ui_hi[i]]` (classes, oldest first). A caller with other prefixes
    (a new log) builds a `SplitSamples` of them and gets the rows `prepare` would write;
    `Manifest.window_files(w)` gives the dataset's `spec`.
    """
    return _rows(split, user_items, rows, spec)[0]


def _rows(split: SplitSamples, user_items: Ints, rows: tuple[int, int],
          spec: WindowFiles) -> tuple[dict[str, Float32s], Float64s, Ints]:
    """`build_rows`, plus what the sparse layout dropped per row (history mass, user items)."""
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
    shares = _view_shares(split, start, np.maximum(end - window, start))
    ui_lo, ui_hi = split.ui_lo[lo:hi], split.ui_hi[lo:hi]
    if spec.layout.sparse:
        ids, weights, lost_mass = _history_pairs(shares, hi - lo, pages, spec.layout.history_k)
        out["history_ids"], out["history_weights"] = ids, weights
        out["user_items"], lost_items = _item_ids(user_items, ui_lo, ui_hi, items, spec.layout.user_items_k)
    else:
        out["history"] = _history(shares, hi - lo, pages)
        out["user_items"] = _multi_hot(user_items, ui_lo, ui_hi, items)
        lost_mass, lost_items = np.zeros(hi - lo), np.zeros(hi - lo, np.int64)
    out["label"] = split.label[lo:hi].astype(np.float32)
    return out, lost_mass, lost_items


def _view_shares(split: SplitSamples, start: Ints, stop: Ints) -> tuple[Ints, Ints, Float64s]:
    """(row, page id, ε) of every view in [start, stop) of every row: ε_i = θ_i / Σ θ.

    When every older view has θ = 0 the weights are uniform, so a row with older views
    still sums to 1. A page viewed twice appears twice.
    """
    n = len(start)
    counts = stop - start
    row = np.repeat(np.arange(n, dtype=np.int64), counts)
    at = ranges(start, counts)
    theta = split.theta[at].astype(np.float64)
    total = np.bincount(row, theta, minlength=n)[row]
    share = np.where(total > 0, theta / np.where(total > 0, total, 1.0), 1.0 / np.maximum(counts[row], 1))
    return row, split.page[at].astype(np.int64), share


def _history(shares: tuple[Ints, Ints, Float64s], n: int, pages: int) -> Float32s:
    """V̄ = Σ ε_i V_i as dense [rows, M+1]; column 0 (padding) is never hit."""
    row, page, share = shares
    dense = np.bincount(row * (pages + 1) + page, share, minlength=n * (pages + 1))
    return dense.reshape(n, pages + 1).astype(np.float32)


def _history_pairs(shares: tuple[Ints, Ints, Float64s], n: int, pages: int,
                   k: int) -> tuple[Float32s, Float32s, Float64s]:
    """V̄ as its K largest (page id, weight) pairs per row, [rows, 1, K] each, weights
    renormalised to sum 1; pairs past a row's pages are (0, 0). Ties go to the smaller id.
    Also returns each row's dropped mass (1 − the kept weights' sum before renormalising)."""
    row, page, share = shares
    cells, where = np.unique(row * (pages + 1) + page, return_inverse=True)
    weight = np.bincount(where.ravel(), share, minlength=len(cells))
    cell_row, cell_page = cells // (pages + 1), cells % (pages + 1)
    order = np.lexsort((cell_page, -weight, cell_row))
    cell_row, cell_page, weight = cell_row[order], cell_page[order], weight[order]
    rank = np.arange(len(cell_row)) - np.searchsorted(cell_row, cell_row, side="left")
    keep = rank < k
    ids = np.full((n, k), PAD_PAGE, dtype=np.float32)
    kept = np.zeros((n, k), dtype=np.float64)
    ids[cell_row[keep], rank[keep]] = cell_page[keep]
    kept[cell_row[keep], rank[keep]] = weight[keep]
    total = kept.sum(axis=1)
    has = np.bincount(row, minlength=n) > 0
    lost = np.where(has, np.maximum(1.0 - total, 0.0), 0.0)
    weights = (kept / np.where(total > 0, total, 1.0)[:, None]).astype(np.float32)
    return ids[:, None, :], weights[:, None, :], lost


def _multi_hot(user_items: Ints, lo: Ints, hi: Ints, items: int) -> Float32s:
    """Rows with a 1 at every class in user_items[lo:hi]."""
    counts = hi - lo
    dense = np.zeros((len(lo), items), dtype=np.float32)
    dense[np.repeat(np.arange(len(lo)), counts), user_items[ranges(lo, counts)]] = 1.0
    return dense


def _item_ids(user_items: Ints, lo: Ints, hi: Ints, items: int, u: int) -> tuple[Float32s, Ints]:
    """The distinct classes of user_items[lo:hi], latest purchase first, the first U of
    them, as [rows, 1, U] padded with N; and how many distinct classes each row dropped."""
    counts = hi - lo
    n = len(lo)
    row = np.repeat(np.arange(n, dtype=np.int64), counts)
    at = ranges(lo, counts)
    cls = user_items[at].astype(np.int64)
    order = np.lexsort((-at, cls, row))  # per (row, class): the latest purchase first
    row, cls, at = row[order], cls[order], at[order]
    first = np.r_[True, (row[1:] != row[:-1]) | (cls[1:] != cls[:-1])] if len(row) else np.zeros(0, np.bool_)
    row, cls, at = row[first], cls[first], at[first]
    order = np.lexsort((-at, row))  # per row: latest first
    row, cls = row[order], cls[order]
    rank = np.arange(len(row)) - np.searchsorted(row, row, side="left")
    keep = rank < u
    ids = np.full((n, u), items, dtype=np.float32)
    ids[row[keep], rank[keep]] = cls[keep]
    return ids[:, None, :], np.bincount(row[~keep], minlength=n)
