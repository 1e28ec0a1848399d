"""The window-independent sample store (`store.h5`) that per-window HDF5 files derive from.

It holds, per split, the page ids and dwell seconds the samples need plus the samples as
index ranges — a few bytes per page view — so any window w is one cheap pass away.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from drnngen.data.sessions import SPLITS, Dataset, SplitSamples
from drnngen.errors import UserError

STORE_FILE = "store.h5"
_ARRAYS = ("page", "theta", "start", "end", "label", "ui_lo", "ui_hi")


def save_store(dataset: Dataset, path: Path) -> None:
    """Write the samples of every split and the users' purchase list."""
    with h5py.File(path, "w") as h5:
        h5.create_dataset("user_items", data=dataset.user_items)
        for name, split in dataset.splits.items():
            group = h5.create_group(name)
            for key in _ARRAYS:
                group.create_dataset(key, data=getattr(split, key))


def load_store(path: Path) -> tuple[dict[str, SplitSamples], np.ndarray]:
    """Read a store back: the splits (without their counts) and the users' purchase list."""
    try:
        with h5py.File(path, "r") as h5:
            user_items = np.asarray(h5["user_items"][...])
            splits = {name: _split(h5[name]) for name in SPLITS}
    except (OSError, KeyError) as exc:
        raise UserError(f"{path}: not a readable sample store ({exc}); run `drnngen prepare` again") from exc
    return splits, user_items


def _split(group: h5py.Group) -> SplitSamples:
    def read(key: str) -> np.ndarray:
        return np.asarray(group[key][...])

    return SplitSamples(read("page"), read("theta"), read("start"), read("end"), read("label"),
                        read("ui_lo"), read("ui_hi"))
