"""Tuner overhead, parallel speedup and cache hits, with real Caffe (CPU).

* overhead: wall time of a 1-worker run ÷ Σ solver time of its trainings
  (target ≤ 1.05: the GA, codegen, ledger and process starts cost little);
* speedup: wall time with 1 worker ÷ with 2 workers, same seed, same
  candidates (target ≥ 1.8× on 2 free cores);
* cache: evaluations, trainings and hits of a run whose small space makes
  the population repeat networks, then a second run on the same cache.

Each Caffe child gets OPENBLAS_NUM_THREADS=1 so two workers use two cores
instead of fighting over them. Figures are printed, never asserted.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from drnngen.codegen.config import load_config, to_mapping
from drnngen.tuner import Resources, RunSummary, TuneParams, tune
from drnngen.tuner.ledger import Ledger
from drnngen.tuner.space import IntRange, SearchSpace, space_mapping

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SPACE = SearchSpace(IntRange(3, 4), IntRange(1, 2), IntRange(0, 1), ("ReLU", "TanH"), (64, 128))
REPEATING = SearchSpace(IntRange(3, 3), IntRange(1, 1), IntRange(0, 0), ("ReLU", "TanH"), (16,))


def _params(data: Path, space: SearchSpace, **changes: Any) -> TuneParams:
    base = to_mapping(load_config(EXAMPLES / "small.yaml"))
    base["data"]["batch_size"] = 256
    values: dict[str, Any] = {
        "data": str(data), "generations": 1, "population": 4, "pc": 0.8, "pm": 0.3, "strategy": "literal",
        "seed": 3, "iterations": 1500, "epochs": None, "mode": "cpu", "timeout_s": None, "base": base,
        "space": space_mapping(space),
    }
    return TuneParams(**{**values, **changes})


def _timed(run_dir: Path, params: TuneParams, resources: Resources) -> tuple[float, RunSummary]:
    start = time.perf_counter()
    summary = tune(run_dir, params, resources)
    return time.perf_counter() - start, summary


def _seconds(run_dir: Path) -> tuple[float, float]:
    """(Σ solver seconds, Σ evaluation wall seconds) of the run's trainings."""
    ledger = Ledger.open(run_dir)
    try:
        trained = [r.outcome for r in ledger.candidates() if r.source == "trained"]
    finally:
        ledger.close()
    return sum(o.solver_seconds for o in trained), sum(o.wall_seconds for o in trained)


def _what_holds_back(n: int, one: tuple[float, float, float], two: tuple[float, float]) -> None:
    """Where the 2-worker speedup goes, from the ledgers' seconds over the same n trainings:
    (wall, Σ solver, Σ evaluation wall) of the 1-worker run, (Σ solver, Σ evaluation wall)
    of the 2-worker one.

    * the solver itself runs slower when two trainings share the machine (memory
      bandwidth, shared cache, one BLAS thread each already): Σ solver 2 / Σ solver 1;
    * each training's time outside the solver (process start and `import caffe`, net
      set-up, which reads the HDF5 files into memory, validation passes) runs in
      parallel too, but is paid per training;
    * the client's own time (GA, codegen, writing files, ledger commits) is serial.
    """
    wall1, solver1, eval1 = one
    solver2, eval2 = two
    print(f"  what holds it back: solver time per training x{solver2 / solver1:.3f} with 2 at once "
          f"(caps the speedup at {2 * solver1 / solver2:.2f}x); outside the solver per training "
          f"{(eval1 - solver1) / n:.3f} s alone, {(eval2 - solver2) / n:.3f} s with 2 at once; "
          f"client's serial time {wall1 - eval1:.2f} s of {wall1:.2f} s")


def _idle(wall: float, run_dir: Path, serial: float) -> None:
    """The 2-worker run's idle worker seconds: 2 x wall less every training's wall time and
    the client's serial time (which both workers wait for)."""
    idle = 2 * wall - _seconds(run_dir)[1] - 2 * serial
    print(f"  workers idle {idle:.1f} s of 2 x {wall:.1f} s (a batch's last trainings running alone)")


def _in_population_order(run_dir: Path, params: TuneParams) -> float:
    """The 2-worker run's wall time with the batch sent in the population's order, the
    order before `tuner.order.longest_first` (swapped out for this one comparison)."""
    from drnngen.tuner import evaluator

    longest_first = evaluator.longest_first
    evaluator.longest_first = lambda items, cost, workers: list(items)
    try:
        wall, _ = _timed(run_dir, params, Resources(workers=2))
    finally:
        evaluator.longest_first = longest_first
    return wall


def main() -> None:
    from tests.tuner_support import make_dataset

    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # inherited by every Caffe child
    with tempfile.TemporaryDirectory(prefix="bench-tuner-") as tmp:
        root = Path(tmp)
        data = make_dataset(root, sessions=20000)
        params = _params(data, SPACE, population=8, generations=0)  # 8 trainings: 4 even rounds of 2
        wall1, one = _timed(root / "w1", params, Resources(workers=1))
        solver1, evaluations1 = _seconds(root / "w1")
        n = one.evaluated
        print(f"1 worker: {n} trainings, wall {wall1:.2f} s, solver {solver1:.2f} s, "
              f"wall / solver = {wall1 / solver1:.3f} (target <= 1.05)")
        print(f"  per training: {(evaluations1 - solver1) / n:.3f} s outside the solver (child start, net set-up, "
              f"validation); GA + codegen + ledger: {(wall1 - evaluations1) / n:.3f} s")
        wall2, two = _timed(root / "w2", params, Resources(workers=2))
        same = one.best is not None and two.best is not None and one.best.key == two.best.key
        # A generation's trainings run in rounds of 2: an odd count leaves a worker idle.
        per_gen = [r["evals"] - r["cached"] for r in one.records]
        ideal = sum(per_gen) / sum(-(-k // 2) for k in per_gen)
        print(f"2 workers: wall {wall2:.2f} s, speedup {wall1 / wall2:.2f}x (target >= 1.8x; "
              f"ideal for trainings per generation {per_gen}: {ideal:.2f}x); same best: {same}")
        _what_holds_back(n, (wall1, solver1, evaluations1), _seconds(root / "w2"))
        _idle(wall2, root / "w2", wall1 - evaluations1)
        wall2_given = _in_population_order(root / "w2-given", params)
        print(f"2 workers, the batch in the population's order instead of longest first: wall {wall2_given:.2f} s, "
              f"speedup {wall1 / wall2_given:.2f}x (longest first: {wall1 / wall2:.2f}x); solver time per training "
              f"x{_seconds(root / 'w2-given')[0] / solver1:.3f} of the 1-worker run's")
        _idle(wall2_given, root / "w2-given", wall1 - evaluations1)
        cache = Resources(workers=1, cache_dir=root / "cache")
        repeat = _params(data, REPEATING, population=6, generations=3, iterations=50)
        _, first = _timed(root / "c1", repeat, cache)
        evals = sum(r["evals"] for r in first.records)
        hits = sum(r["cached"] for r in first.records)
        print(f"repeating population: {evals} evaluations, {first.evaluated} trainings, {hits} cache hits")
        _, second = _timed(root / "c2", repeat, cache)
        print(f"second run, same cache: {sum(r['evals'] for r in second.records)} evaluations, "
              f"{sum(r['cached'] for r in second.records)} cache hits, "
              f"{sum(1 for r in Ledger.open(root / 'c2').candidates() if r.source == 'trained')} trainings")


if __name__ == "__main__":
    main()
