"""Speedup of 2 Dask workers over 1 on the same run, with real Caffe (CPU).

Each cluster is `dask scheduler` + N `dask worker --nthreads 1` processes on
loopback (tests.dask_support), so the figures include what a real cluster
costs: task submission, the cluster-wide stop check per task, results coming
back to the client's ledger. The run is bench_tuner's speedup run (8
trainings, same seed), so the two benchmarks compare. OPENBLAS_NUM_THREADS=1
in every worker: two workers, two cores. Figures are printed, never asserted.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.bench_tuner import SPACE, _params, _seconds, _timed
from drnngen.tuner import Resources, RunSummary, TuneParams


def _on_cluster(root: Path, name: str, workers: int, params: TuneParams) -> tuple[float, RunSummary]:
    from tests.dask_support import LoopbackCluster

    with LoopbackCluster(root / f"cluster-{name}", workers, env={"OPENBLAS_NUM_THREADS": "1"}) as cluster:
        return _timed(root / name, params, Resources(scheduler=cluster.address))


def main() -> None:
    from tests.tuner_support import make_dataset

    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        root = Path(tmp)
        data = make_dataset(root, sessions=20000)
        params = _params(data, SPACE, population=8, generations=0)  # 8 trainings: 4 even rounds of 2
        wall1, one = _on_cluster(root, "d1", 1, params)
        solver1, _ = _seconds(root / "d1")
        print(f"1 Dask worker: {one.evaluated} trainings, wall {wall1:.2f} s, solver {solver1:.2f} s, "
              f"wall / solver = {wall1 / solver1:.3f}")
        wall2, two = _on_cluster(root, "d2", 2, params)
        solver2, _ = _seconds(root / "d2")
        same = one.best is not None and two.best is not None and one.best.key == two.best.key
        print(f"2 Dask workers: wall {wall2:.2f} s, solver {solver2:.2f} s, speedup {wall1 / wall2:.2f}x "
              f"(ideal 2.00x on 2 free cores; Σ solver / wall {solver2 / wall2:.2f} trainings at once); "
              f"same best: {same}")


if __name__ == "__main__":
    main()
