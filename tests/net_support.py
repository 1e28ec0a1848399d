"""Generated nets with data: random well-formed rows in the HDF5 layout, the fixed maps'
weights file, random valid configs (test_caffe_codegen, test_numpy_net)."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from drnngen.bind import write_fixed_map
from drnngen.codegen.build import generate, write
from drnngen.codegen.config import ACTIVATIONS, DRNNConfig, parse_config
from drnngen.codegen.graph import fixed_map_layers, input_shapes

ROOT = Path(__file__).resolve().parent.parent
# The bundled net configs are the ones with a golden record (examples/ also
# holds other YAML, such as search spaces).
EXAMPLES = sorted(ROOT / "examples" / f"{golden.name}.yaml"
                  for golden in (ROOT / "tests" / "golden").iterdir() if golden.is_dir())
ROWS = 24


def dataset(cfg: DRNNConfig, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Rows in the HDF5 layout of docs/ARCHITECTURE.md, random but well-formed."""
    m, n = cfg.data.pages, cfg.data.items
    columns: dict[str, np.ndarray] = {}
    for top, shape in input_shapes(cfg, rows).items():
        if top.startswith("page_"):
            values = rng.integers(0, m + 1, size=shape)
        elif top == "label":
            values = rng.integers(0, n, size=shape)
        elif top == "history":
            weights = rng.random(shape) * (rng.random(shape) < 0.2)
            totals = weights.sum(axis=1, keepdims=True)
            values = np.divide(weights, totals, out=np.zeros(shape), where=totals > 0)
        elif top == "user_items" and cfg.data.user_items_k:  # class ids, N pads
            values = np.where(rng.random(shape) < 0.5, rng.integers(0, n, size=shape), n)
        elif top == "user_items":
            values = rng.random(shape) < 0.3
        elif top == "history_ids":
            values = rng.integers(0, m + 1, size=shape)
        elif top == "history_weights":
            weights = rng.random(shape) * (rng.random(shape) < 0.5)
            totals = weights.sum(axis=2, keepdims=True)
            values = np.divide(weights, totals, out=np.zeros(shape), where=totals > 0)
        else:  # dwell_t
            values = rng.random(shape)
        columns[top] = values.astype(np.float32)
    return columns


def materialize(cfg: DRNNConfig, folder: Path, seed: int = 0) -> Path:
    """The three prototxt files plus train/val HDF5 data where the net looks."""
    write(generate(cfg), folder)
    rng = np.random.default_rng(seed)
    for source in (cfg.data.train_source, cfg.data.test_source):
        listing = folder / source
        listing.parent.mkdir(parents=True, exist_ok=True)
        h5 = listing.with_suffix(".h5")
        with h5py.File(h5, "w") as data:
            for name, values in dataset(cfg, ROWS, rng).items():
                data[name] = values
        listing.write_text(f"{h5.resolve()}\n")
    return folder


FIXED_MAP = "repeat_map.caffemodel.h5"


def page_classes(cfg: DRNNConfig, seed: int) -> np.ndarray:
    """A random page → item-class map ([M+1], -1 = no item; padding and OOV never are)."""
    classes = np.random.default_rng(seed).integers(-1, cfg.data.items, size=cfg.data.pages + 1)
    classes[:2] = -1
    return classes


def neighbour_table(cfg: DRNNConfig, seed: int) -> np.ndarray | None:
    """A random neighbour map Q ([M+1, N] in [0, 1), zero rows for pages of no item)
    for nets with the neighbour path, else None."""
    if not cfg.model.neighbours:
        return None
    table = np.random.default_rng(seed + 1).random((cfg.data.pages + 1, cfg.data.items)).astype(np.float32)
    table[page_classes(cfg, seed) < 0] = 0.0
    return table


def with_fixed_map(cfg: DRNNConfig, folder: Path, seed: int = 0) -> Path | None:
    """The weights file of R and Q (drnngen.bind's layout) in `folder`, for nets that have them."""
    if not fixed_map_layers(cfg):
        return None
    return write_fixed_map(cfg, [int(c) for c in page_classes(cfg, seed)], folder / FIXED_MAP,
                           neighbours=neighbour_table(cfg, seed))


def small_batches(cfg: DRNNConfig) -> DRNNConfig:
    """Same net, batches of 4: the structure is what is checked, not 9000-row memory."""
    return dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, batch_size=4, test_batch_size=4)
    )


def random_configs(count: int, seed: int) -> list[DRNNConfig]:
    """Valid configs drawn from the whole space (widths, depths, shortcut, activations,
    history, FNN, vocabulary sizes, batch sizes)."""
    rng = random.Random(seed)
    acts = sorted(ACTIVATIONS.values())
    configs = []
    while len(configs) < count:
        layers = rng.randint(1, 4)
        model: dict[str, Any] = {
            "states": rng.randint(1, 5),
            "layers": layers,
            "shortcut": rng.randint(0, layers - 1),
            "widths": [rng.randint(1, 24) for _ in range(layers)],
            "activations": [rng.choice(acts) for _ in range(layers)],
            "history": rng.random() < 0.5,
            "top_k": rng.randint(1, 3),
        }
        if rng.random() < 0.4:
            model["fnn"] = {"layers": rng.randint(1, 2), "widths": rng.randint(1, 12),
                            "activations": rng.choice(acts)}
        # the options beyond the paper (MODEL.md section 17)
        model["dropout"] = [rng.choice([0.0, 0.0, 0.25, 0.5]) for _ in range(layers)]
        model["repeat"] = rng.random() < 0.4
        model["neighbours"] = rng.random() < 0.3
        model["tied"] = rng.random() < 0.3
        model["cell"] = rng.choice(["drnn", "gru"])  # MODEL.md section 18
        if model["tied"]:
            model["widths"][-1] = model["widths"][0]
        data = {"pages": rng.randint(1, 200), "items": rng.randint(3, 30),
                "batch_size": rng.randint(1, 6), "test_batch_size": rng.randint(1, 6),
                "deploy_batch_size": rng.randint(1, 3)}
        if rng.random() < 0.5:  # the sparse layout (MODEL.md section 11)
            data.update(history_k=rng.randint(1, 6), user_items_k=rng.randint(1, 4))
        configs.append(parse_config({"name": f"r{len(configs)}", "model": model, "data": data}))
    return configs
