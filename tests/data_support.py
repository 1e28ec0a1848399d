"""Helpers shared by the tests of drnngen.data, and the synthetic datasets the
other tests prepare (not a test module)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from drnngen.data.prepare import PrepareOptions, PrepareReport, prepare
from drnngen.data.readers import LogSpec
from drnngen.data.synth import SynthOptions, synthesize

REPO = Path(__file__).resolve().parent.parent
OTTO_SAMPLE = REPO.parent / "shared" / "data" / "otto-sample" / "train.jsonl"


def quiet(_: str) -> None:
    """A progress sink that drops everything."""


def synth_log(folder: Path, sessions: int = 300, seed: int = 5, log_format: str = "yoochoose", **kw: object) -> Path:
    """A small synthetic log written to `folder` (returned)."""
    synthesize(SynthOptions(sessions=sessions, seed=seed, **kw), log_format, folder, False, quiet)
    return folder


def yoochoose_spec(folder: Path, users: bool = True) -> LogSpec:
    return LogSpec("yoochoose", folder / "clicks.dat", buys=folder / "buys.dat",
                   users=folder / "users.csv" if users else None)


def run_prepare(spec: LogSpec, output: Path, **options: object) -> PrepareReport:
    return prepare(spec, PrepareOptions(**options), output, quiet)


def synthetic_dataset(root: Path, *, sessions: int, seed: int = 1, items: int, categories: int,
                      max_pages: int, max_items: int, window: int, target: str = "purchase") -> Path:
    """`drnngen synth` + `prepare` through the Python API: root/log → root/data (returned)."""
    from drnngen.data.sessions import BuildOptions

    log = synth_log(root / "log", sessions=sessions, seed=seed, items=items, categories=categories)
    build = BuildOptions(max_pages=max_pages, max_items=max_items, target=target)
    options = PrepareOptions(build=build, window=window, force=True)
    prepare(yoochoose_spec(log, users=False), options, root / "data", quiet)
    return root / "data"


@dataclass(frozen=True)
class SyntheticData:
    """A small synthetic prepared dataset: the arguments of `synthetic_dataset`.
    A test module names its own in DATASET for the `dataset` fixture (tests/conftest.py)."""

    sessions: int
    items: int
    categories: int
    max_pages: int
    max_items: int
    window: int
    seed: int = 1
    target: str = "purchase"

    def make(self, root: Path) -> Path:
        """The dataset prepared under `root`: root/log → root/data (returned)."""
        return synthetic_dataset(root, sessions=self.sessions, seed=self.seed, items=self.items,
                                 categories=self.categories, max_pages=self.max_pages, max_items=self.max_items,
                                 window=self.window, target=self.target)


# The tuner's tests: 60 items, window 3.
TUNER_DATA = SyntheticData(sessions=3000, items=60, categories=6, max_pages=100, max_items=20, window=3)
# The evaluation's tests: a log whose sessions drift toward the item bought (300 items, window 3).
EVAL_DATA = SyntheticData(sessions=4000, items=300, categories=12, max_pages=400, max_items=100, window=3)


def read_split(list_file: Path) -> dict[str, np.ndarray]:
    """All rows of a split: every HDF5 file of a Caffe list file, concatenated in order."""
    parts: dict[str, list[np.ndarray]] = {}
    for line in list_file.read_text().splitlines():
        path = Path(line)
        assert path.is_absolute(), line
        with h5py.File(path, "r") as h5:
            for name, dataset in h5.items():
                assert dataset.dtype == np.float32, name
                parts.setdefault(name, []).append(dataset[...])
    return {name: np.concatenate(arrays) for name, arrays in parts.items()}


# --- given split files (session-rec's layout) -------------------------------------------------

Event = tuple[int, int, int]  # session, item, time


def write_tsv(path: Path, events: list[Event], header: str = "SessionId\tItemId\tTime") -> Path:
    path.write_text(header + "\n" + "".join(f"{s}\t{i}\t{t}\n" for s, i, t in events))
    return path


def session_rec_trio(folder: Path, seed: int = 0, foreign: bool = False) -> dict[str, list[Event]]:
    """Events like session-rec's preprocessing writes them (GRU4Rec's TSV layout): every session
    of at least 2 events, validation and test items all seen in train, later sessions later.

    `foreign`: the test file also holds items train lacks (prepare drops their events), one
    session left a single event by that (gone under --min-session-length 2), and train a
    one-event session (gone too)."""
    rng = np.random.default_rng(seed)
    events: dict[str, list[Event]] = {}
    session = 1000
    for name, count, items in (("train", 150, 40), ("valid", 30, 25), ("test", 40, 25)):
        events[name] = []
        for _ in range(count):
            session += 1
            start = 1_400_000_000 + session * 600
            for j in range(int(rng.integers(2, 7))):
                events[name].append((session, 5000 + int(rng.integers(0, items)), start + 20 * j))
    # every train item at least 5 times, so session-rec's filters keep the files as they are
    for item in range(5000, 5040):
        for j in range(5):
            events["train"].append((90_000 + item, item, 1_400_000_000 + j))
            events["train"].append((90_000 + item, 5000, 1_400_000_000 + j + 1))
    if foreign:
        last = 1_400_000_000 + session * 600 + 600
        a, b = session + 1, session + 2
        events["test"][5:5] = [(a, 5001, last), (a, 7777, last + 20), (a, 5002, last + 40), (a, 5003, last + 60),
                               (b, 7778, last + 600), (b, 5004, last + 620)]
        events["train"].append((80_000, 5005, 1_400_000_000))
    for name, suffix in (("train", "train_tr"), ("valid", "train_valid"), ("test", "test")):
        write_tsv(folder / f"shop_{suffix}.txt", events[name])
    return events
