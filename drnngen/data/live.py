"""A live session's prefix → its sample row, through the code `prepare` writes its rows with.

The live service (`drnngen serve`) keeps, per session, only what a row needs: the last w
page views with their capped dwell θ, the older views folded into a page → weight
aggregate, and the user's earlier purchases. `live_rows` turns that into the HDF5 row
layout by handing it to `windows.build_rows` as a one-sample split, so a change of the
row layout (e.g. a sparse history) reaches the service without a second implementation.

The aggregate holds, per page older than the window, Σθ of its views and their count.
`build_rows` weighs each view by θ_i / Σθ (uniform when every θ is 0), so one pseudo-view
per page carrying Σθ (or its view count, in the all-zero case) gives the same mixture:
equal to float32 rounding (the sums are taken in another order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from drnngen.data.sessions import DwellScale, SplitSamples
from drnngen.data.textscan import Chunk, parse_datetime, split_fields
from drnngen.data.windows import Float32s, WindowFiles, build_rows
from drnngen.errors import UserError


@dataclass(frozen=True)
class LivePrefix:
    """What the net sees of a session so far (see the module docstring)."""

    window_pages: Sequence[int]  # page ids of the last <= w views, oldest first
    window_theta: Sequence[float]  # their capped dwell seconds
    history_theta: Mapping[int, float]  # page id → Σθ of its views older than the window
    history_views: Mapping[int, int]  # page id → how many such views
    user_items: Sequence[int]  # classes the user bought before the session began, oldest purchase first


def view_dwell(gap: float, cap: float) -> float:
    """θ of a view whose next event came `gap` seconds later: `prepare`'s rule (clipped to
    [0, cap], then float32, as the sample store keeps it)."""
    return float(np.float32(min(max(gap, 0.0), cap)))


def newest_dwell(scale: DwellScale) -> float:
    """θ of the newest view, whose next event has not come: the same value `prepare` gives a
    session's last event, the median gap of the train split (`DwellScale.last_event`)."""
    return view_dwell(scale.last_event, scale.cap)


def live_rows(prefixes: Sequence[LivePrefix], spec: WindowFiles) -> dict[str, Float32s]:
    """The sample rows (one per prefix, label 0) in the layout `prepare` writes for `spec`
    (the dataset's window files: w, M, N, dwell scale, row layout)."""
    page: list[int] = []
    theta: list[float] = []
    start: list[int] = []
    end: list[int] = []
    ui_lo: list[int] = []
    ui_hi: list[int] = []
    user_items: list[int] = []
    for prefix in prefixes:
        older = sorted(prefix.history_theta)
        total = sum(prefix.history_theta[p] for p in older)
        start.append(len(page))
        page.extend(older)
        theta.extend(prefix.history_theta[p] if total > 0 else float(prefix.history_views[p]) for p in older)
        page.extend(prefix.window_pages)
        theta.extend(prefix.window_theta)
        end.append(len(page))
        ui_lo.append(len(user_items))
        user_items.extend(prefix.user_items)
        ui_hi.append(len(user_items))
    page.append(0)  # never a row's view: build_rows gathers (then masks) index 0 of empty prefixes
    theta.append(0.0)
    ints = np.int64
    history_start = np.array(start, ints)
    window_start = history_start + np.array([len(p.history_theta) for p in prefixes], ints)
    split = SplitSamples(
        page=np.array(page, np.int32), theta=np.array(theta, np.float32), start=history_start,
        end=np.array(end, ints), label=np.zeros(len(prefixes), np.int32),
        ui_lo=np.array(ui_lo, ints), ui_hi=np.array(ui_hi, ints),
    )
    _check_window(window_start, split.end, spec.window)
    return build_rows(split, np.array(user_items, np.int64), (0, len(prefixes)), spec)


def _check_window(window_start: np.ndarray, end: np.ndarray, window: int) -> None:
    # build_rows takes the last w views as the window; more than w in it would shift a
    # history pseudo-view into the window
    if np.any(end - window_start > window):
        raise ValueError(f"a prefix holds more than w={window} window pages")


def write_rows(path: Path, rows: Mapping[str, Float32s]) -> None:
    """Rows from `live_rows` (labels filled in) as one HDF5 file Caffe's HDF5Data reads."""
    with h5py.File(path, "w") as h5:
        for name, values in rows.items():
            h5.create_dataset(name, data=np.asarray(values, np.float32))


def parse_time(value: float | int | str) -> float:
    """Unix seconds from a number, or from ISO 8601 text read exactly as `prepare` reads it."""
    if isinstance(value, bool):
        raise UserError("time: expected Unix seconds or an ISO 8601 date-time, found a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        if not text or "\n" in text or "\r" in text or "\x1f" in text:
            raise UserError(f"time: expected a date-time like 2014-04-07T10:51:09.277Z, found {value[:40]!r}")
        table = split_fields(Chunk(text.encode() + b"\n", 1, 1), "\x1f", 1, "the event")
        seconds = float(parse_datetime(table.column(0, "time"))[0])
    if not np.isfinite(seconds) or abs(seconds) > 1e11:
        raise UserError(f"time: {value!r} is not a Unix time in seconds")
    return seconds
