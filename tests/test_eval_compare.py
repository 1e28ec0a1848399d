"""Reading prepared splits and comparing the DRNN with the baselines on the same rows."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from drnngen.data.samples import Sessions, load_sessions
from drnngen.errors import UserError
from drnngen.evaluation.baselines import Pop
from drnngen.evaluation.compare import (
    compare,
    deploy_window,
    standard_baselines,
    write_outputs,
)

PAGE_ITEM = np.array([-1, 0, 1, 2, 3, -1, -1])
N = 4


def _write_split(folder: Path, name: str, pages: list[list[int]], labels: list[int],
                 history: np.ndarray | None = None) -> Path:
    """An HDF5 file in the layout of docs/ARCHITECTURE.md, and its source list."""
    path = folder / f"{name}.h5"
    arr = np.array(pages, dtype=np.float32)
    with h5py.File(path, "w") as f:
        for t in range(arr.shape[1]):
            f[f"page_{t}"] = arr[:, t]
            f[f"dwell_{t}"] = np.ones((len(arr), 1), np.float32)
        f["history"] = history if history is not None else np.zeros((len(arr), 7), np.float32)
        f["label"] = np.array(labels, dtype=np.float32)
    listing = folder / f"{name}.txt"
    listing.write_text(f"{path.name}\n")  # relative: resolved from the list's folder
    return listing


def test_load_sessions_across_files_keeps_order_and_older_pages(tmp_path: Path) -> None:
    h1 = np.zeros((2, 7), np.float32)
    h1[1, 3] = 1.0
    h2 = np.zeros((1, 7), np.float32)
    h2[0, 2], h2[0, 5] = 0.25, 0.75
    a = _write_split(tmp_path, "a", [[0, 1, 2], [1, 1, 4]], [1, 3], h1)
    b = _write_split(tmp_path, "b", [[0, 0, 3]], [2], h2)
    both = tmp_path / "both.txt"
    both.write_text(f"{tmp_path / 'a.h5'}\n\n{tmp_path / 'b.h5'}\n")
    sessions = load_sessions(both)
    assert sessions.pages.tolist() == [[0, 1, 2], [1, 1, 4], [0, 0, 3]]
    assert sessions.labels.tolist() == [1, 3, 2]
    assert sessions.older_rows.tolist() == [1, 2, 2]
    assert sessions.older_pages.tolist() == [3, 2, 5]
    assert len(load_sessions(a)) == 2 and len(load_sessions(b)) == 1


def test_compare_scores_every_model_on_the_same_labels(tmp_path: Path) -> None:
    train = load_sessions(_write_split(tmp_path, "train", [[0, 1, 2], [0, 2, 5], [0, 0, 4], [0, 6, 4]], [1, 1, 3, 3]))
    test = load_sessions(_write_split(tmp_path, "test", [[0, 2, 2], [0, 0, 3], [0, 0, 1]], [1, 2, 0]))
    # A perfect "net": the target always scores highest.
    perfect = np.full((3, N), 0.1)
    perfect[np.arange(3), test.labels] = 0.7
    result = compare(test, [1, 2], standard_baselines(train, PAGE_ITEM, N, shrink=0.0), perfect,
                     context={"split": "test"})
    assert list(result.results) == ["DRNN", "POP", "S-POP", "item-kNN", "SKNN", "V-SKNN"]
    assert result.results["DRNN"].accuracy == {1: 1.0, 2: 1.0}
    # POP counts [0, 2, 0, 2]: item 1 ties with item 3 → rank 2; items 0 and 2 tie at rank 4.
    assert result.results["POP"].accuracy == pytest.approx({1: 0.0, 2: 1 / 3})
    # S-POP: each test session views exactly its target's page → all first.
    assert result.results["S-POP"].accuracy == {1: 1.0, 2: 1.0}


def test_compare_rejects_scores_of_the_wrong_shape() -> None:
    test = Sessions(np.zeros((3, 2), dtype=np.int64), np.array([0, 1, 2]))
    with pytest.raises(UserError, match=r"shape \(2, 4\) for 3 test samples"):
        compare(test, [1], [], np.zeros((2, 4)))


def test_outputs_json_markdown_text(tmp_path: Path) -> None:
    train = Sessions(np.array([[1], [2], [2]]), np.array([0, 1, 1]))  # POP counts [1, 2, 0]
    test = Sessions(np.array([[1], [2]]), np.array([0, 1]))
    scores = np.array([[0.9, 0.1, 0.0], [0.9, 0.0, 0.1]])  # target ranks 1 and 3
    result = compare(test, "1,2", [Pop(train, 3)], scores, context={"weights": "w.caffemodel"})
    json_path, md_path = write_outputs(result, tmp_path)
    doc = json.loads(json_path.read_text())
    assert doc["ks"] == [1, 2]
    assert doc["context"] == {"weights": "w.caffemodel"}
    assert doc["models"]["DRNN"]["accuracy@1"] == 0.5
    assert doc["models"]["DRNN"]["mrr@2"] == 0.5
    assert doc["models"]["POP"]["mrr@2"] == pytest.approx((1 / 2 + 1) / 2)
    md = md_path.read_text()
    assert "## Top-K accuracy" in md and "## Recall@K" in md and "## MRR@K" in md
    # The best of a column in bold (all of them on a tie).
    accuracy_table = md.split("## Recall@K")[0]
    assert "| DRNN | **0.5000** | 0.5000 |" in accuracy_table
    assert "| POP | **0.5000** | **1.0000** |" in accuracy_table
    text = result.to_text()
    assert text.splitlines()[1].split() == ["model", "Acc@1", "Rec@1", "MRR@1", "Acc@2", "Rec@2", "MRR@2"]
    assert text.splitlines()[3].split() == ["POP", "0.5000", "0.5000", "0.5000", "1.0000", "1.0000", "0.7500"]


def test_deploy_window(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text('layer { name: "page_0" type: "Input" top: "page_0" }\n'
                      'layer { name: "page_1" type: "Input" top: "page_1" }\n'
                      'layer { name: "e" type: "Embed" bottom: "page_1" top: "e1" }\n')
    assert deploy_window(deploy) == 2
    deploy.write_text('layer { name: "x" type: "Input" top: "data" }\n')
    with pytest.raises(UserError, match="page_0"):
        deploy_window(deploy)


def test_unreadable_inputs_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read the HDF5 source list"):
        load_sessions(tmp_path / "missing.txt")
    listing = tmp_path / "bad.txt"
    (tmp_path / "bad.h5").write_text("not hdf5")
    listing.write_text("bad.h5\n")
    with pytest.raises(UserError, match="cannot read HDF5"):
        load_sessions(listing)
