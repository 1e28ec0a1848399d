"""Binding a net config to a prepared dataset (the manifest written by `drnngen prepare`).

The config's `data` section then carries the dataset's M, N, training-row
count and the absolute HDF5 list files for the config's window w (derived
once per w and cached by the dataset).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from drnngen.codegen.config import DRNNConfig, parse_config, to_mapping
from drnngen.data.manifest import load_manifest


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
        train_source=str(sources["train"]),
        test_source=str(sources["val"]),
    )
    # re-validate: e.g. top_k must still be <= the dataset's N
    return parse_config(to_mapping(dataclasses.replace(cfg, data=data)))
