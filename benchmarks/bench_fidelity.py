"""How well a short training ranks networks: the fidelity successive halving relies on.

The same genotypes of `bench_tuners`' space, data and base (`make bench-tuners`) are
trained from scratch at 30, 90 and 270 iterations (its rungs at eta 3); printed: the
Spearman rank correlation of each short budget's fitness with the full budget's, where
the full budget's best network ranks at the short budgets, and every network's three
fitnesses. A rung promotes the top 1/eta of its batch by the short budget's ranking, so
a full-budget best that ranks outside it is never trained to the full budget.

    python -m benchmarks fidelity            # part of `make bench`; about 2 minutes
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

BUDGETS = (30, 90, 270)
NETWORKS = 18
SEED = 11


def _fitnesses(root: Path, data: Path, iterations: int) -> dict[tuple[Any, ...], float]:
    """Genotype → validation fitness of a population of NETWORKS trained at `iterations`
    (the random strategy's generation 0: the same genotypes at every budget)."""
    from benchmarks import bench_tuners
    from drnngen.tuner import Resources, tune
    from drnngen.tuner.ledger import Ledger

    params = dataclasses.replace(bench_tuners.ga_params(data, "random", SEED, iterations), generations=0,
                                 population=NETWORKS)
    tune(root / f"r{iterations}", params, Resources(workers=1))
    ledger = Ledger.open(root / f"r{iterations}")
    try:
        return {tuple(r.genotype): r.outcome.fitness for r in ledger.candidates() if r.source == "trained"}
    finally:
        ledger.close()


def _ranks(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values))


def main() -> None:
    from benchmarks import bench_tuners

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="bench-fidelity-") as tmp:
        root = Path(tmp)
        data = bench_tuners.make_data(root, 3000)
        found = {b: _fitnesses(root, data, b) for b in BUDGETS}
    keys = sorted(set.intersection(*(set(f) for f in found.values())), key=str)
    fit = {b: np.array([found[b][k] for k in keys]) for b in BUDGETS}
    full = BUDGETS[-1]
    best = int(np.argmax(fit[full]))
    print(f"{len(keys)} networks of bench_tuners' space, trained at {', '.join(map(str, BUDGETS))} iterations")
    for b in BUDGETS[:-1]:
        rho = float(np.corrcoef(_ranks(fit[b]), _ranks(fit[full]))[0, 1])
        ahead = int((fit[b] > fit[b][best]).sum())
        print(f"  {b} vs {full} iterations: Spearman {rho:.3f}; the {full}-iteration best ranks {ahead + 1} "
              f"of {len(keys)} at {b}")
    print("  genotype: fitness at " + " / ".join(map(str, BUDGETS)))
    for j in np.argsort(-fit[full]):
        print(f"  {keys[j]}: " + " / ".join(f"{fit[b][j]:.3f}" for b in BUDGETS))


if __name__ == "__main__":
    main()
