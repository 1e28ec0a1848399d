"""Binding a net config to a prepared dataset (the manifest written by `drnngen prepare`).

The config's `data` section then carries the dataset's M, N, sample layout
(sparse K and U, or dense), training-row count and the absolute HDF5 list files for the config's window w (derived
once per w and cached by the dataset).

A net with the repeat path or tied embeddings (`model.repeat`, `model.tied`)
also needs the dataset's fixed page → item map R, and one with the neighbour
path (`model.neighbours`) the map Q of each page's item's neighbours, which no
filler can express: `repeat_weights` writes them once per dataset as a Caffe
weights file, to be loaded like `caffe train --weights` (`TrainJob.init_weights`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from drnngen.codegen.config import DRNNConfig, parse_config, to_mapping
from drnngen.codegen.graph import FIXED_MAPS, NEIGHBOUR_MAP, REPEAT_MAP, fixed_map_layers
from drnngen.codegen.itemmap import NO_ITEM, PageItemError, page_item
from drnngen.data.cooccurrence import cosine_similarity
from drnngen.data.manifest import Manifest, load_manifest
from drnngen.data.samples import load_sessions

FIXED_MAP_FORMAT = 1  # part of the file name's digest: a new layout never reuses an old file
NEIGHBOUR_SHRINK = 20.0  # Q's cosine shrinkage λ: item-kNN's default (`drnngen evaluate --shrink`)


def bind_dataset(cfg: DRNNConfig, dataset: str | Path | None = None) -> DRNNConfig:
    """`cfg` with data.* filled from `dataset` (or from cfg.data.manifest); unchanged if neither."""
    where = dataset if dataset is not None else cfg.data.manifest
    if where is None:
        return cfg
    manifest = load_manifest(Path(where))
    sources = manifest.sources(cfg.model.states)
    data = dataclasses.replace(
        cfg.data,
        manifest=str(manifest.root),
        pages=manifest.pages,
        items=manifest.items,
        train_samples=manifest.train_samples,
        history_k=manifest.layout.history_k,  # 0 for a dense dataset: the (M+1)-wide row
        user_items_k=manifest.layout.user_items_k,
        train_source=str(sources["train"]),
        test_source=str(sources["val"]),
    )
    # re-validate: e.g. top_k must still be <= the dataset's N
    return parse_config(to_mapping(dataclasses.replace(cfg, data=data)))


# --- the fixed maps: R of `repeat` and `tied`, Q of `neighbours` --------------------


def repeat_weights(cfg: DRNNConfig, dataset: str | Path | None = None) -> Path | None:
    """The weights file holding R and Q for `cfg`'s net, in `dataset`'s folder (default
    cfg.data.manifest); None when the net has neither (no `repeat`, `tied` or `neighbours`).

    Caffe's `.caffemodel.h5` layout: dataset `data/<layer>/<j>` (float32) is the
    j-th parameter blob of layer <layer>. The file holds the layers that own the
    shared `repeat_map` (the first to declare it) in the TRAIN/TEST net and in the
    deploy net; CopyTrainedLayersFromHDF5 fills every other holder through the
    sharing and skips layers the net lacks. It is written once (temporary file,
    then rename) under a name that digests its content, and reused while current.
    `cfg` must be bound to the dataset (`bind_dataset`).
    """
    if not fixed_map_layers(cfg):
        return None
    where = dataset if dataset is not None else cfg.data.manifest
    if where is None:
        raise PageItemError("model.repeat/model.tied/model.neighbours: the fixed page→item map needs a prepared "
                            "dataset (--data)")
    manifest = load_manifest(Path(where))
    if (manifest.pages, manifest.items) != (cfg.data.pages, cfg.data.items):
        raise PageItemError(f"{manifest.root}: the config has M={cfg.data.pages}, N={cfg.data.items} but the dataset "
                        f"M={manifest.pages}, N={manifest.items}; bind the config to it first")
    classes = dataset_page_items(manifest)
    spec = _fixed_map_spec(cfg, classes, manifest)
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    target = manifest.root / f"repeat_map-{digest}.caffemodel.h5"
    if not target.is_file():
        q = neighbour_map(manifest, classes) if cfg.model.neighbours else None
        write_fixed_map(cfg, classes, target, neighbours=q)
    return target


def repeat_share(manifest: Manifest, rows: int = 20_000) -> float:
    """The share of the first `rows` train samples whose target item is among the items of
    the session's own pages (the window's, and the history's where it holds any): how
    much a repeat path could score directly. 0 when the dataset has no train samples."""
    classes = np.asarray(dataset_page_items(manifest), dtype=np.int64)
    listing = manifest.sources(manifest.window)["train"]
    hits = seen = 0
    for name in listing.read_text().split():
        with h5py.File(name, "r") as part:
            count = min(rows - seen, part["label"].shape[0])
            if count <= 0:
                break
            label = part["label"][:count].astype(np.int64)
            own = np.stack([classes[part[f"page_{t}"][:count].astype(np.int64).ravel()]
                            for t in range(manifest.window)], axis=1)
            hits += int(((own == label[:, None]).any(axis=1) | _in_history(part, classes, label, count)).sum())
            seen += count
    return hits / seen if seen else 0.0


def _in_history(part: h5py.File, classes: npt.NDArray[np.int64], label: npt.NDArray[np.int64],
                count: int) -> npt.NDArray[np.bool_]:
    """Per sample: whether the label is the item of a page the history holds (weight > 0)."""
    if "history_ids" in part:  # sparse: [n, 1, K] ids and weights
        ids = part["history_ids"][:count].reshape(count, -1).astype(np.int64)
        held = part["history_weights"][:count].reshape(count, -1) > 0
        return np.asarray((held & (classes[ids] == label[:, None])).any(axis=1))
    dense = part["history"][:count].reshape(count, -1) > 0  # [n, M+1] dwell shares
    return np.asarray((dense & (classes[None, :dense.shape[1]] == label[:, None])).any(axis=1))


def dataset_page_items(manifest: Manifest) -> list[int]:
    """The item class of each page id of a prepared dataset (codegen.itemmap.page_item)."""
    keys = manifest.page_keys()
    if len(keys) != manifest.pages + 1:
        raise PageItemError(f"{manifest.root}: the page id map has {len(keys) - 2} ids, the manifest says "
                        f"M={manifest.pages} (M counts the OOV id)")
    return page_item(keys, manifest.item_keys())


def fixed_map(classes: Sequence[int], items: int) -> npt.NDArray[np.float32]:
    """R, [M+1, N] float32: row p is the one-hot of page p's item class, zero for NO_ITEM."""
    index = np.asarray(classes, dtype=np.int64)
    if index.ndim != 1 or (index.size and (index.min() < NO_ITEM or index.max() >= items)):
        raise PageItemError(f"page→item map: classes must lie in [0, {items}) or be {NO_ITEM}")
    matrix = np.zeros((index.size, items), dtype=np.float32)
    rows = np.flatnonzero(index != NO_ITEM)
    matrix[rows, index[rows]] = 1.0
    return matrix


def neighbour_map(manifest: Manifest, classes: Sequence[int]) -> npt.NDArray[np.float32]:
    """Q, [M+1, N] float32 (docs/MODEL.md section 17.5): row p is S[c(p)], zero for NO_ITEM,
    where S is item-kNN's cosine over the train split's samples (shrink NEIGHBOUR_SHRINK)
    with a zero diagonal (the repeat path scores an item itself), each row scaled to a
    maximum of 1 (so the path's scalars start on one scale whatever the catalogue)."""
    index = np.asarray(classes, dtype=np.int64)
    train = load_sessions(manifest.sources(manifest.window)["train"])
    similarity = cosine_similarity(train, index, manifest.items, NEIGHBOUR_SHRINK)
    np.fill_diagonal(similarity, 0.0)
    top = similarity.max(axis=1, keepdims=True)
    similarity = np.divide(similarity, top, out=np.zeros_like(similarity), where=top > 0)
    table = np.zeros((index.size, manifest.items), dtype=np.float32)
    rows = np.flatnonzero(index != NO_ITEM)
    table[rows] = similarity[index[rows]]
    return table


def write_fixed_map(cfg: DRNNConfig, classes: Sequence[int], target: Path,
                    neighbours: npt.NDArray[np.float32] | None = None) -> Path:
    """Write R (from page id → class `classes`) and, for the neighbour path, Q
    (`neighbours`, `neighbour_map`'s) for `cfg`'s net to `target` atomically."""
    if len(classes) != cfg.data.pages + 1:
        raise PageItemError(f"page→item map: {len(classes)} page ids for M+1 = {cfg.data.pages + 1}")
    if cfg.model.neighbours and (neighbours is None or neighbours.shape != (cfg.data.pages + 1, cfg.data.items)):
        raise PageItemError(f"neighbour map: expected [{cfg.data.pages + 1}, {cfg.data.items}] for the neighbour path")
    tables = {REPEAT_MAP: fixed_map(classes, cfg.data.items), NEIGHBOUR_MAP: neighbours}
    try:
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise PageItemError(f"{target.parent}: cannot write the page→item map ({exc.strerror})") from exc
    os.close(handle)
    try:
        with h5py.File(name, "w") as out:
            data = out.create_group("data")
            for layer, blobs in _fixed_map_spec(cfg, classes)["layers"]:
                group = data.create_group(layer)
                for index, blob in enumerate(blobs):
                    table = tables.get(blob[0]) if blob[0] in FIXED_MAPS else None
                    value = table if table is not None else np.full(blob[1], blob[2], dtype=np.float32)
                    group.create_dataset(str(index), data=value)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(name, 0o666 & ~mask)  # mkstemp makes it private
        os.replace(name, target)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return target


def _fixed_map_spec(cfg: DRNNConfig, classes: Sequence[int], manifest: Manifest | None = None) -> dict[str, Any]:
    """What the file holds, as plain data (its digest names the file): per layer,
    each parameter blob is R, Q or a bias at its constant filler value (with
    `tied` alone, R's owner is the top projection, which also owns `out_b`).
    Q is the train split's: with the neighbour path the digest takes the sample
    store's hash (`manifest`), so a dataset prepared anew gets a new file."""
    layers: list[tuple[str, list[tuple[Any, ...]]]] = []
    for layer in fixed_map_layers(cfg):
        blobs: list[tuple[Any, ...]] = []
        for param in layer.params:
            if param.name in FIXED_MAPS:
                blobs.append((param.name,))
                continue
            ip = layer.settings["inner_product_param"]
            filler = ip["bias_filler"]
            assert filler["type"] == "constant", f"{layer.name}: bias filler {filler}"
            blobs.append(("bias", [int(ip["num_output"])], float(filler["value"])))
        layers.append((layer.name, blobs))
    spec = {"format": FIXED_MAP_FORMAT, "pages": cfg.data.pages, "items": cfg.data.items,
            "classes": [int(c) for c in classes], "layers": layers}
    if cfg.model.neighbours and manifest is not None:  # absent otherwise: R's file names stay as they were
        spec["neighbours"] = {"store": manifest.store_sha256, "window": manifest.window, "shrink": NEIGHBOUR_SHRINK}
    return spec
