"""Dense against sparse history: peak RSS and seconds per iteration of one training.

One synthetic log whose train split views more than 100,000 distinct pages is prepared
twice for each M in 2,000, 20,000 and 100,000 (`--max-pages M`): with the dense layout
(`--dense-history`, the (M+1)-wide history row) and the sparse one (the K = 32 largest
(page id, weight) pairs). N is capped at 1,000 items in both, so that the figures show
what the history costs: the N-wide score blobs are the same in both layouts (README,
"Memory of a training").

The same net trains on each: the tuner's default shape without the repeat path (4
states, 2 layers of 128, shortcut 1, batch 512, Adam), ITERATIONS iterations, each
training in a fresh spawned process, so that the Caffe child's peak RSS
(RUSAGE_CHILDREN) is that training's own. Seconds per iteration are Caffe's solver time
(no start-up, no net set-up) divided by the iterations. One BLAS thread. Figures only;
nothing is asserted.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from drnngen.bind import bind_dataset
from drnngen.codegen.build import generate, write
from drnngen.codegen.config import parse_config
from drnngen.codegen.graph import model_outputs
from drnngen.data.prepare import PrepareOptions, prepare
from drnngen.data.readers import LogSpec
from drnngen.data.sessions import BuildOptions
from drnngen.data.synth import SynthOptions, synthesize
from drnngen.data.windows import DENSE, SPARSE, SampleLayout
from drnngen.runner import TrainJob, train

PAGES = (2_000, 20_000, 100_000)
ITEMS = 1_000
ITERATIONS = 8
# ~1.6 M clicks over 250,000 long-tailed items: > 100,000 distinct pages in the train
# split; a low buy rate keeps the samples (and the dense rows at M = 100,000) few.
LOG = SynthOptions(sessions=200_000, items=250_000, categories=500, seed=1, buy_rate=0.1)
NET = {
    "model": {"states": 4, "layers": 2, "shortcut": 1, "widths": 128, "activations": "ReLU", "top_k": 20},
    "data": {"batch_size": 512, "test_batch_size": 512},
    "solver": {"type": "Adam", "base_lr": 0.002, "lr_policy": "fixed", "weight_decay": 0.0, "display": 0,
               "random_seed": 1},
}


def _train(folder: str) -> dict[str, float]:
    """Run in a spawned child: one training; its Caffe child's peak RSS and solver time."""
    workdir = Path(folder)
    loss = (workdir / "loss_blob").read_text()
    result = train(TrainJob(workdir=workdir, iterations=ITERATIONS, loss_blob=loss, log_file=None))
    if not result.ok:
        raise RuntimeError(f"{workdir}: {result.error}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    return {"rss_gib": peak_kib / 2**20, "s_per_iter": result.solver_seconds / max(result.iterations_done, 1)}


def _prepare(log: Path, out: Path, pages: int, layout: SampleLayout) -> dict[str, Any]:
    start = time.perf_counter()
    report = prepare(
        LogSpec("yoochoose", log / "clicks.dat", buys=log / "buys.dat"),
        PrepareOptions(build=BuildOptions(max_pages=pages, max_items=ITEMS), window=4, layout=layout,
                       memory_budget=64 << 30),
        out,
        lambda _: None,
    )
    disk = sum(p.stat().st_size for p in (out / "w4").rglob("*.h5"))
    return {"manifest": report.manifest, "seconds": time.perf_counter() - start, "disk_mib": disk / 2**20}


def _net(dataset: Path, folder: Path) -> Path:
    cfg = bind_dataset(parse_config(NET), dataset)
    write(generate(cfg), folder)
    (folder / "loss_blob").write_text(model_outputs(cfg)[0])
    return folder


def main() -> None:
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"  # inherited by the children
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="drnngen-bench-sparse-") as tmp:
        base = Path(tmp)
        start = time.perf_counter()
        synthesize(LOG, "yoochoose", base / "log", False, lambda _: None)
        print(f"synthetic log: {LOG.sessions:,} sessions over {LOG.items:,} items "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
        for pages in PAGES:
            figures = {}
            for label, layout in (("dense", DENSE), ("sparse", SPARSE)):
                data = base / f"{label}-{pages}"
                made = _prepare(base / "log", data, pages, layout)
                folder = _net(data, base / f"net-{label}-{pages}")
                with spawn.Pool(1) as pool:
                    run = pool.apply(_train, (str(folder),))
                figures[label] = run
                m = made["manifest"]
                print(f"M={m.pages:,} N={m.items:,} {label:>6}: peak RSS {run['rss_gib']:.2f} GiB, "
                      f"{run['s_per_iter']:.3f} s/iteration (train {m.train_samples:,} samples; prepare "
                      f"{made['seconds']:.0f} s, window files {made['disk_mib']:.0f} MiB)", flush=True)
                for path in (data, folder):  # the dense rows at M = 100,000 are large: keep the disk free
                    _remove(path)
            dense, sparse = figures["dense"], figures["sparse"]
            print(f"M={pages:,} dense/sparse: memory {dense['rss_gib'] / sparse['rss_gib']:.2f}x, "
                  f"time per iteration {dense['s_per_iter'] / sparse['s_per_iter']:.2f}x", flush=True)


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
