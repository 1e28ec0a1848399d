"""The per-window cache behind Manifest.sources(w): derived once, reused, safe under concurrency."""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pytest

from drnngen.data.manifest import load_manifest
from drnngen.data.windows import DENSE
from tests.data_support import read_split, run_prepare, synth_log, yoochoose_spec


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("cache")
    log = synth_log(base / "log", sessions=300)
    # the dense layout: its wide rows are what the cache's compression and file bounds are for
    return run_prepare(yoochoose_spec(log), base / "data", window=4, file_bytes=50_000, layout=DENSE).manifest.root


def _stamps(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_prepare_materialises_its_window_only(dataset: Path) -> None:
    assert (dataset / "w4" / "index.json").is_file()
    assert not list(dataset.glob("w[0-35-9]*"))


def test_a_window_is_derived_once_then_reused(tmp_path: Path, dataset: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(dataset, root)
    manifest = load_manifest(root)
    first = manifest.sources(2)
    stamps = _stamps(root / "w2")
    again = load_manifest(root / "manifest.json").sources(2)
    assert again == first
    assert _stamps(root / "w2") == stamps  # nothing rewritten
    assert {path.name for path in first.values()} == {"train.txt", "val.txt", "test.txt"}
    assert all(path.parent == root.resolve() / "w2" for path in first.values())


def test_windows_differ_only_where_they_should(dataset: Path) -> None:
    """Window 1 and 4 share labels and user rows; their last page is the same page."""
    manifest = load_manifest(dataset)
    one, four = read_split(manifest.sources(1)["train"]), read_split(manifest.sources(4)["train"])
    np.testing.assert_array_equal(one["label"], four["label"])
    np.testing.assert_array_equal(one["user_items"], four["user_items"])
    np.testing.assert_array_equal(one["page_0"], four["page_3"])
    # pages 1..3 of window 4 moved out of window 1's view into its history
    assert (one["history"] > 0).sum() >= (four["history"] > 0).sum()


def test_sparse_windows_differ_the_same_way_and_stay_uncompressed(tmp_path: Path) -> None:
    import h5py

    log = synth_log(tmp_path / "log", sessions=300)
    manifest = run_prepare(yoochoose_spec(log), tmp_path / "data", window=4).manifest
    assert manifest.layout.sparse  # the default of a new dataset
    one, four = read_split(manifest.sources(1)["train"]), read_split(manifest.sources(4)["train"])
    np.testing.assert_array_equal(one["user_items"], four["user_items"])
    assert (one["history_weights"] > 0).sum() > (four["history_weights"] > 0).sum()
    with h5py.File(manifest.sources(4)["train"].read_text().splitlines()[0], "r") as h5:
        assert {h5[name].compression for name in h5} == {None}


def _ask(root: str, window: int) -> dict[str, str]:
    return {name: path.read_text() for name, path in load_manifest(root).sources(window).items()}


def test_concurrent_requests_agree_and_leave_no_temporary_files(tmp_path: Path, dataset: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(dataset, root)
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.starmap(_ask, [(str(root), 6)] * 3)
    assert results[0] == results[1] == results[2]
    assert not list(root.glob(".w6.tmp-*"))
    listed = [Path(line) for text in results[0].values() for line in text.splitlines()]
    assert listed and all(path.is_file() for path in listed)


def test_a_crashed_derivation_is_cleaned_up(tmp_path: Path, dataset: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(dataset, root)
    (root / ".w3.tmp-crashed").mkdir()
    (root / ".w3.tmp-crashed" / "train-0000.h5").write_bytes(b"half")
    load_manifest(root).sources(3)
    assert not (root / ".w3.tmp-crashed").exists()


def test_a_moved_dataset_gets_fresh_absolute_paths(tmp_path: Path, dataset: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(dataset, moved)
    lists = load_manifest(moved).sources(4)
    for path in lists.values():
        for line in path.read_text().splitlines():
            assert line.startswith(str(moved.resolve())), line
            assert Path(line).is_file()


def test_a_second_asker_waits_for_the_first_instead_of_deriving_again(
    tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    from drnngen.data import manifest as manifest_module

    calls = []
    real = manifest_module.write_window

    def slow_write(*args: object, **kwargs: object) -> object:
        calls.append(1)
        time.sleep(0.3)  # long enough for the second thread to arrive while we hold the lock
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(manifest_module, "write_window", slow_write)
    root = tmp_path / "copy"
    shutil.copytree(dataset, root)
    results: list[dict[str, Path]] = []
    threads = [threading.Thread(target=lambda: results.append(load_manifest(root).sources(5))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len(results) == 2 and results[0] == results[1]


def test_wide_datasets_are_compressed_unless_told_otherwise(tmp_path: Path, dataset: Path) -> None:
    import h5py

    first = Path(load_manifest(dataset).sources(4)["train"].read_text().splitlines()[0])
    with h5py.File(first, "r") as h5:
        assert {name: h5[name].compression for name in ("history", "user_items", "page_0", "label")} == {
            "history": "gzip", "user_items": "gzip", "page_0": None, "label": None}
    log = synth_log(tmp_path / "log", sessions=150)
    plain = run_prepare(yoochoose_spec(log), tmp_path / "plain", window=2, compress=False, layout=DENSE)
    with h5py.File(plain.sources["train"].read_text().splitlines()[0], "r") as h5:
        assert h5["history"].compression is None and h5["history"].chunks is None
    assert plain.manifest.compress is False


def test_compressed_and_plain_files_hold_the_same_rows(tmp_path: Path) -> None:
    """Rows written as pre-compressed chunks, a padded partial chunk at each file's end, read
    back through HDF5's own filter exactly as the plain files."""
    import h5py

    from drnngen.data.sessions import BuildOptions

    log = synth_log(tmp_path / "log", sessions=1500, seed=9)
    build = BuildOptions(max_pages=3000)  # wide rows: chunks of 87 rows, files of 400
    packed = run_prepare(yoochoose_spec(log), tmp_path / "packed", window=3, build=build, file_bytes=22_000_000,
                         layout=DENSE)
    plain = run_prepare(yoochoose_spec(log), tmp_path / "plain", window=3, build=build, file_bytes=22_000_000,
                        compress=False, layout=DENSE)
    for split in ("train", "val", "test"):
        np.testing.assert_equal(read_split(packed.sources[split]), read_split(plain.sources[split]))
    with h5py.File(packed.sources["train"].read_text().splitlines()[-1], "r") as h5:
        rows, chunk = h5["history"].shape[0], h5["history"].chunks[0]
        assert chunk < rows and rows % chunk


def test_plain_zlib_streams_are_read_the_same(tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without isal the chunks are compressed by zlib; the rows must not change."""
    import zlib

    from drnngen.data import windows

    expected = read_split(load_manifest(dataset).sources(4)["val"])
    monkeypatch.setattr(windows, "_compress", zlib.compress)
    monkeypatch.setattr(windows, "_LEVEL", 1)
    root = tmp_path / "copy"
    shutil.copytree(dataset, root)
    shutil.rmtree(root / "w4")
    np.testing.assert_equal(read_split(load_manifest(root).sources(4)["val"]), expected)
