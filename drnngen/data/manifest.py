"""`manifest.json`: what `drnngen prepare` made, and the per-window HDF5 cache behind it.

`load_manifest(path).sources(w)` is how `build` and `tune` get Caffe's HDF5 list files for
a window w: the first request derives `w<w>/` from the sample store, later ones reuse it.
Derivation runs under a lock file (a second process asking for the same window waits,
then reuses the result) and writes into a temporary folder renamed into place at the end,
so a crash never leaves a half-written window behind.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drnngen import __version__
from drnngen.data.sessions import OOV_PAGE, PAD_PAGE, SPLITS, BuildOptions, Dataset, DwellScale
from drnngen.data.store import STORE_FILE, load_store
from drnngen.data.windows import DENSE, INDEX_FILE, SampleLayout, WindowFiles, check_budget, write_window
from drnngen.errors import UserError

MANIFEST_FILE = "manifest.json"
PAGE_IDS_FILE = "pages.json"
ITEM_IDS_FILE = "items.json"
TRAIN_ITEMS_FILE = "train_items.json"  # given splits only: the items of the filtered train file
FORMAT_VERSION = 1
MAX_WINDOW = 256
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    """Default progress sink: say nothing."""


@dataclass(frozen=True)
class Manifest:
    """A prepared dataset. `pages` is M (Embed input_dim M+1), `items` is N (classes 0..N-1)."""

    root: Path
    format: str
    target: str
    pages: int
    items: int
    train_samples: int
    val_samples: int
    test_samples: int
    window: int  # the window `prepare` materialised; any other is derived on request
    dwell: DwellScale
    file_bytes: int
    compress: bool
    memory_budget: int
    store_sha256: str
    data: Mapping[str, Any] = field(repr=False, compare=False)
    layout: SampleLayout = DENSE  # dense unless the manifest names a sparse layout

    @property
    def embed_input_dim(self) -> int:
        """Caffe Embed input_dim: the M page ids plus the padding id 0."""
        return self.pages + 1

    @property
    def samples(self) -> dict[str, int]:
        return {"train": self.train_samples, "val": self.val_samples, "test": self.test_samples}

    def sources(self, window: int, progress: Progress = _quiet) -> dict[str, Path]:
        """Absolute paths of the train/val/test HDF5 list files for `window` (derived once, cached)."""
        if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= MAX_WINDOW:
            raise UserError(f"window must be an integer in 1..{MAX_WINDOW}, not {window!r}")
        folder = self.root / f"w{window}"
        if not (folder / INDEX_FILE).is_file():
            with _locked(self.root / f".w{window}.lock"):
                if not (folder / INDEX_FILE).is_file():
                    self._derive(window, folder, progress)
        return _list_files(folder)

    def window_files(self, window: int) -> WindowFiles:
        """How this dataset's rows for `window` are built (`windows.build_rows`'s spec)."""
        return WindowFiles(window, self.pages, self.items, self.dwell, self.file_bytes, self.compress, self.layout)

    def page_keys(self) -> list[Any]:
        """Raw page id of every page id (index = id; None for padding and OOV)."""
        return [None, None, *self._ids(PAGE_IDS_FILE)]

    def item_keys(self) -> list[Any]:
        """Raw item id of every class index."""
        return self._ids(ITEM_IDS_FILE)

    def train_item_keys(self) -> tuple[list[Any], list[Any]] | None:
        """Raw ids of the items viewed in the (filtered) train file of a dataset made from
        given split files, and of those only bought there; None for one cut from a single log."""
        if self.data.get("parameters", {}).get("splits_from") != "files":
            return None
        if not (self.root / TRAIN_ITEMS_FILE).is_file():
            raise UserError(f"{self.root}: no {TRAIN_ITEMS_FILE} (prepared by an older drnngen); prepare it "
                            "again, or pass --no-filter")
        try:
            bought_only = list(json.loads((self.root / TRAIN_ITEMS_FILE).read_text())["purchase_only_keys"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{self.root / TRAIN_ITEMS_FILE}: unreadable id map ({exc})") from exc
        return self._ids(TRAIN_ITEMS_FILE), bought_only

    def filters(self) -> BuildOptions:
        """The filters `prepare` ran (`--min-item-support`, `--min-session-length`)."""
        params = self.data.get("parameters", {})
        return BuildOptions(min_item_support=int(params.get("min_item_support", 1)),
                            min_session_length=int(params.get("min_session_length", 1)))

    def _ids(self, name: str) -> list[Any]:
        try:
            keys = json.loads((self.root / name).read_text())["keys"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{self.root / name}: unreadable id map ({exc})") from exc
        return list(keys)

    def _derive(self, window: int, folder: Path, progress: Progress) -> None:
        total = sum(self.samples.values())
        check_budget(total, window, self.pages, self.items, self.memory_budget, self.layout)
        store = self.root / STORE_FILE
        if file_sha256(store) != self.store_sha256:
            raise UserError(f"{store}: does not match {MANIFEST_FILE} (changed since prepare?); prepare again")
        for stale in self.root.glob(f".w{window}.tmp-*"):  # left by a crash; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        try:
            tmp = make_temp_dir(f".w{window}.tmp-", self.root)
        except OSError as exc:
            raise UserError(f"{self.root}: cannot write the window-{window} files ({exc.strerror})") from exc
        try:
            splits, user_items = load_store(store)
            index = write_window(splits, user_items, tmp, self.window_files(window), progress)
            for name in SPLITS:
                _write_list(tmp / f"{name}.txt", [folder / f for f in index["files"][name]])
            os.rename(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed) for the block."""
    try:
        handle = path.open("a")
    except OSError as exc:
        raise UserError(f"{path.parent}: cannot write the window cache ({exc.strerror})") from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _list_files(folder: Path) -> dict[str, Path]:
    """The list files of a window folder, rewritten if the dataset was moved since."""
    try:
        files = json.loads((folder / INDEX_FILE).read_text())["files"]
        names = {split: [folder.resolve() / str(f) for f in files[split]] for split in SPLITS}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{folder / INDEX_FILE}: unreadable ({exc}); delete {folder} to rebuild it") from exc
    lists = {}
    for name, wanted in names.items():
        target = folder / f"{name}.txt"
        if not target.is_file() or target.read_text() != _list_text(wanted):
            _write_list(target, wanted)
        lists[name] = target.resolve()
    return lists


def make_temp_dir(prefix: str, parent: Path) -> Path:
    """A fresh folder in `parent` with the permissions of a normally created one (not 0700)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    tmp.chmod(_normal_mode(0o777))
    return tmp


def _normal_mode(mode: int) -> int:
    """`mode` under the process umask: what open()/mkdir() would have given."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def _list_text(paths: list[Path]) -> str:
    return "".join(f"{p.resolve()}\n" for p in paths)


def _write_list(target: Path, paths: list[Path]) -> None:
    """Atomically write a Caffe HDF5 list file (one absolute path a line)."""
    try:
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise UserError(f"{target}: cannot write the list file ({exc.strerror})") from exc
    with os.fdopen(handle, "w") as out:
        out.write(_list_text(paths))
    os.chmod(name, _normal_mode(0o666))  # mkstemp makes it private
    os.replace(name, target)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from exc
    return digest.hexdigest()


def manifest_dict(
    dataset: Dataset,
    *,
    log_format: str,
    target: str,
    window: int,
    sources: list[dict[str, Any]],
    hashes: dict[str, str],
    parameters: dict[str, Any],
    sample_layout: SampleLayout = DENSE,
) -> dict[str, Any]:
    """The content of `manifest.json` for a freshly built dataset (a dense one has no
    `layout` key, as before the sparse layout existed)."""
    samples = {name: split.samples for name, split in dataset.splits.items()}
    extra = {"layout": sample_layout.manifest_entry()} if sample_layout.sparse else {}
    return {
        "format_version": FORMAT_VERSION,
        "created_by": f"drnngen {__version__}",
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "format": log_format,
        "target": target,
        "pages": dataset.pages,
        "items": dataset.items,
        "embed_input_dim": dataset.pages + 1,
        "padding_page_id": PAD_PAGE,
        "oov_page_id": OOV_PAGE,
        "window": window,
        **{f"{name}_samples": count for name, count in samples.items()},
        "splits": {name: split.counts for name, split in dataset.splits.items()},
        "counts": dataset.counts,
        "dwell": {
            "rule": "gap to the session's next event (view or purchase), capped; last event: median train gap",
            "cap_s": dataset.dwell.cap,
            "last_event_s": dataset.dwell.last_event,
            "log1p_min": dataset.dwell.log_min,
            "log1p_max": dataset.dwell.log_max,
        },
        "files": {"store": STORE_FILE, "page_ids": PAGE_IDS_FILE, "item_ids": ITEM_IDS_FILE},
        "hashes": hashes,
        "sources": sources,
        "parameters": parameters,
        **extra,
    }


def load_manifest(path: Path | str) -> Manifest:
    """Read a prepared dataset (its folder or its manifest.json); one-line UserError on any problem."""
    path = Path(path)
    try:
        file = path / MANIFEST_FILE if path.is_dir() else path
        found = file.is_file()
    except OSError as exc:  # a name too long, say
        raise UserError(f"{_shown(path)}: cannot read ({exc.strerror})") from None
    if not found:
        raise UserError(f"{_shown(path)}: no {MANIFEST_FILE} here; make the dataset with `drnngen prepare`")
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{file}: cannot read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise UserError(f"{file}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise UserError(f"{file}: expected a JSON object")
    if data.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{file}: format_version {data.get('format_version')!r} is not {FORMAT_VERSION}; "
                        "prepare the dataset again with this drnngen")
    root = file.parent.resolve()
    manifest = _parse(data, root, file)
    if not (root / STORE_FILE).is_file():
        raise UserError(f"{file}: the sample store {STORE_FILE} beside it is missing")
    return manifest


def _shown(path: Path) -> str:
    """A path for a one-line message: a hostile one of 100 KiB is cut."""
    text = str(path)
    return text if len(text) <= 240 else f"{text[:160]}...{text[-60:]}"


def _parse(data: dict[str, Any], root: Path, file: Path) -> Manifest:
    def get(key: str, kind: type, where: Mapping[str, Any] = data, minimum: float | None = None) -> Any:
        value: Any = where.get(key)
        number_ok = kind is float and isinstance(value, int)
        if (isinstance(value, bool) and kind is not bool) or not (isinstance(value, kind) or number_ok):
            raise UserError(f"{file}: missing or invalid key {key!r} (expected {kind.__name__})")
        if minimum is not None and float(value) < minimum:
            raise UserError(f"{file}: key {key!r} must be at least {minimum}, not {value}")
        return value

    dwell, params, hashes = get("dwell", dict), get("parameters", dict), get("hashes", dict)
    try:
        sample_layout = SampleLayout.from_manifest(data.get("layout"))
    except (ValueError, UserError) as exc:
        raise UserError(f"{file}: key 'layout': {exc}") from None
    return Manifest(
        root=root,
        format=get("format", str),
        target=get("target", str),
        pages=get("pages", int, minimum=1),
        items=get("items", int, minimum=1),
        train_samples=get("train_samples", int, minimum=0),
        val_samples=get("val_samples", int, minimum=0),
        test_samples=get("test_samples", int, minimum=0),
        window=get("window", int, minimum=1),
        dwell=DwellScale(get("cap_s", float, dwell), get("last_event_s", float, dwell),
                         get("log1p_min", float, dwell), get("log1p_max", float, dwell)),
        file_bytes=get("file_bytes", int, params, minimum=1),
        compress=get("compress", bool, params),
        memory_budget=get("memory_budget", int, params, minimum=1),
        store_sha256=get(STORE_FILE, str, hashes),
        data=data,
        layout=sample_layout,
    )
