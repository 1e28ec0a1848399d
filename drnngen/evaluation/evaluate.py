"""`drnngen evaluate`'s library half: a trained net and a prepared dataset → a Comparison.

The net runs through :func:`drnngen.runner.forward_scores` (Caffe in a child
process) on the test split of the window it was built for; the baselines are
fitted on the train split of the same window and scored on the same test rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from drnngen.codegen.itemmap import page_item
from drnngen.data.manifest import Manifest, load_manifest
from drnngen.data.samples import IntArray, load_sessions
from drnngen.errors import UserError
from drnngen.evaluation.baselines import SKNN_K, SKNN_SAMPLE
from drnngen.evaluation.compare import Comparison, compare, deploy_window, standard_baselines

#: The deploy net's output: softmax of the last state's scores (codegen.graph.build_deploy_graph).
SCORE_BLOB = "prob"

#: ``(deploy, caffemodel, hdf5 list, blob) -> [n, N]``; the runner's, or a fake in tests.
ScoreFn = Callable[[Path, Path, Path, str], npt.NDArray[Any]]


@dataclass(frozen=True)
class NetUnderTest:
    """The trained net to evaluate, and what to call it in the output."""

    deploy: Path
    weights: Path
    label: Mapping[str, Any]  # e.g. {"run": "runs/r1", "candidate": "c017"}


def evaluate_net(net: NetUnderTest, data: Path, ks: Iterable[int] | str, *, shrink: float = 20.0,
                 sknn_k: int = SKNN_K, sknn_sample: int = SKNN_SAMPLE,
                 scores_of: ScoreFn | None = None) -> Comparison:
    """Top-K accuracy, Recall@K and MRR@K of the net and of POP, S-POP, item-kNN, SKNN, V-SKNN on the test split."""
    for path, what in ((net.deploy, "deploy net"), (net.weights, "weights")):
        if not path.is_file():
            raise UserError(f"{path}: no such {what} file")
    manifest = load_manifest(data)
    window = deploy_window(net.deploy)
    sources = manifest.sources(window)
    test = load_sessions(sources["test"])
    if len(test) == 0:
        raise UserError(f"{data}: the test split has no samples")
    scores = (scores_of or _runner_scores)(net.deploy, net.weights, sources["test"], SCORE_BLOB)
    if scores.ndim != 2 or scores.shape[1] != manifest.items:
        raise UserError(f"{net.deploy}: the net scores {scores.shape[-1]} items but {data} has "
                        f"N={manifest.items}; was it built for this dataset (`drnngen build --data`)?")
    baselines = standard_baselines(load_sessions(sources["train"]), page_item_map(manifest),
                                   manifest.items, shrink, sknn_k=sknn_k, sknn_sample=sknn_sample)
    context = {**net.label, "deploy": str(net.deploy), "weights": str(net.weights), "data": str(manifest.root),
               "split": "test", "window": window, "items": manifest.items, "target": manifest.target,
               "item_knn_shrink": shrink, "sknn_k": sknn_k, "sknn_sample": sknn_sample}
    return compare(test, ks, baselines, scores, context)


def page_item_map(manifest: Manifest) -> IntArray:
    """``[M+1]``: the item class of each page id, -1 for padding, OOV and pages of no class.

    Pages and items are both raw item ids of the log (a page view is a view of
    the item's page), so a page id and a class meet in their raw id.
    """
    keys = manifest.page_keys()
    if len(keys) != manifest.pages + 1:
        raise UserError(f"{manifest.root}: the page id map has {len(keys) - 2} ids, the manifest says "
                        f"M={manifest.pages} (M counts the OOV id)")
    return np.array(page_item(keys, manifest.item_keys()), dtype=np.int64)


def _runner_scores(deploy: Path, weights: Path, sources: Path, blob: str) -> npt.NDArray[Any]:
    from drnngen.runner import forward_scores

    scores: npt.NDArray[Any] = forward_scores(deploy, weights, sources, blob)
    return scores
