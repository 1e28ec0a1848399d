"""`evaluate_net` and the `drnngen evaluate` command on a real prepared dataset, with the
net's scores faked (the real-Caffe run is in test_eval_caffe.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from drnngen.cli import cli
from drnngen.data.manifest import load_manifest
from drnngen.data.samples import hdf5_files
from drnngen.errors import UserError
from drnngen.evaluation.evaluate import NetUnderTest, evaluate_net, page_item_map
from tests.data_support import EVAL_DATA

DATASET = EVAL_DATA  # the `dataset` fixture (tests/conftest.py)
WINDOW = EVAL_DATA.window


def _deploy(folder: Path, window: int = WINDOW) -> NetUnderTest:
    folder.mkdir(parents=True, exist_ok=True)
    deploy = folder / "deploy.prototxt"
    deploy.write_text("".join(f'layer {{ name: "page_{t}" type: "Input" top: "page_{t}" }}\n' for t in range(window)))
    weights = folder / "model.caffemodel"
    weights.write_bytes(b"weights")
    return NetUnderTest(deploy, weights, {"run": "r1"})


def last_page_scores(page_item: np.ndarray, items: int) -> Any:
    """A fake net: the item of the newest window page scores 1, everything else 0."""
    def scores_of(deploy: Path, weights: Path, sources: Path, blob: str) -> np.ndarray:
        assert blob == "prob" and deploy.name == "deploy.prototxt"
        rows = []
        for path in hdf5_files(sources):
            with h5py.File(path, "r") as f:
                rows.append(np.asarray(f[f"page_{WINDOW - 1}"]).astype(int))
        last = page_item[np.concatenate(rows)]
        out = np.zeros((len(last), items), dtype=np.float32)
        out[np.flatnonzero(last >= 0), last[last >= 0]] = 1.0
        return out
    return scores_of


def _test_rows(dataset: Path) -> tuple[np.ndarray, np.ndarray]:
    sources = load_manifest(dataset).sources(WINDOW)
    pages, labels = [], []
    for path in hdf5_files(sources["test"]):
        with h5py.File(path, "r") as f:
            pages.append(np.asarray(f[f"page_{WINDOW - 1}"]).astype(int))
            labels.append(np.asarray(f["label"]).astype(int))
    return np.concatenate(pages), np.concatenate(labels)


def test_page_item_map_relates_pages_and_classes_by_raw_id(dataset: Path) -> None:
    manifest = load_manifest(dataset)
    page_item = page_item_map(manifest)
    pages, items = manifest.page_keys(), manifest.item_keys()
    assert len(page_item) == manifest.pages + 1
    assert page_item[0] == page_item[1] == -1  # padding and OOV
    mapped = np.flatnonzero(page_item >= 0)
    assert len(mapped) == manifest.items  # every bought item was also viewed in this log
    for page in mapped:
        assert str(pages[page]) == str(items[page_item[page]])


def test_evaluate_net_scores_the_net_on_the_test_rows_in_order(dataset: Path, tmp_path: Path) -> None:
    manifest = load_manifest(dataset)
    page_item = page_item_map(manifest)
    result = evaluate_net(_deploy(tmp_path), dataset, [1, 20], scores_of=last_page_scores(page_item, manifest.items))
    assert list(result.results) == ["DRNN", "POP", "S-POP", "item-kNN", "SKNN", "V-SKNN"]
    # Worked out independently: a hit at K=1 exactly when the newest page is the bought item's page
    # (then it alone scores 1; otherwise the target ties with the other zeros, pessimistically).
    pages, labels = _test_rows(dataset)
    expected = float(np.mean(page_item[pages] == labels))
    assert result.results["DRNN"].accuracy[1] == pytest.approx(expected)
    assert result.results["DRNN"].samples == manifest.test_samples
    assert result.context["window"] == WINDOW and result.context["run"] == "r1"
    # The synthetic sessions drift toward the goal: reading the session beats popularity.
    pop, spop, knn, sknn, vsknn = (result.results[m].recall[20] for m in ("POP", "S-POP", "item-kNN", "SKNN", "V-SKNN"))
    assert spop > pop + 0.2 and knn > pop + 0.2 and sknn > pop + 0.2 and vsknn > pop + 0.2
    assert (result.context["sknn_k"], result.context["sknn_sample"]) == (100, 500)


def test_evaluate_net_rejects_a_net_of_another_dataset(dataset: Path, tmp_path: Path) -> None:
    def wrong_width(deploy: Path, weights: Path, sources: Path, blob: str) -> np.ndarray:
        return np.zeros((load_manifest(dataset).test_samples, 7))
    with pytest.raises(UserError, match=r"scores 7 items but .* has N=100"):
        evaluate_net(_deploy(tmp_path), dataset, [1], scores_of=wrong_width)


def test_evaluate_net_missing_files(dataset: Path, tmp_path: Path) -> None:
    net = NetUnderTest(tmp_path / "deploy.prototxt", tmp_path / "w.caffemodel", {})
    with pytest.raises(UserError, match="no such deploy net"):
        evaluate_net(net, dataset, [1])


def test_cli_evaluate_with_deploy_and_weights(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = load_manifest(dataset)
    monkeypatch.setattr("drnngen.evaluation.evaluate._runner_scores",
                        last_page_scores(page_item_map(manifest), manifest.items))
    net = _deploy(tmp_path / "net")
    result = CliRunner().invoke(cli, ["evaluate", "--data", str(dataset), "--k", "20,1", "--sknn-k", "50",
                                      "--sknn-sample", "200", "--deploy", str(net.deploy), "--weights",
                                      str(net.weights)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{manifest.test_samples} test samples; Acc = top-K accuracy, Rec = Recall@K, MRR = MRR@K"
    assert [line.split()[0] for line in lines[2:8]] == ["DRNN", "POP", "S-POP", "item-kNN", "SKNN", "V-SKNN"]
    written = tmp_path / "net" / "evaluation.json"  # beside the weights when there is no RUN
    assert f"wrote {written}" in result.output
    doc = json.loads(written.read_text())
    assert doc["ks"] == [1, 20] and set(doc["models"]) == {"DRNN", "POP", "S-POP", "item-kNN", "SKNN", "V-SKNN"}
    assert (doc["context"]["sknn_k"], doc["context"]["sknn_sample"]) == (50, 200)
    assert "## MRR@K" in (tmp_path / "net" / "evaluation.md").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--k", "0"], "error: --k: every K must be >= 1"),
    (["--sknn-k", "0"], "error: --sknn-k: the number of neighbours must be >= 1, got 0"),
    (["--sknn-k", "-5"], "error: --sknn-k: the number of neighbours must be >= 1, got -5"),
    (["--sknn-sample", "0"], "error: --sknn-sample: the number of candidate sessions must be >= 1, got 0"),
    (["--sknn-sample", "-1", "--deploy", "d", "--weights", "w"], "error: --sknn-sample"),
    (["--deploy", "x.prototxt"], "error: --deploy and --weights go together"),
    ([], "error: give RUN (a tuning run folder) or --deploy and --weights"),
    (["--deploy", "d", "--weights", "w", "--candidate", "c1"], "does not combine"),
])
def test_cli_evaluate_user_errors(dataset: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["evaluate", "--data", str(dataset), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_evaluate_help_shows_the_sknn_defaults() -> None:
    result = CliRunner().invoke(cli, ["evaluate", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "--sknn-k INTEGER" in text and "[default: 100]" in text
    assert "--sknn-sample INTEGER" in text and "[default: 500]" in text
