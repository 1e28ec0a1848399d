"""GenTune: the paper's Algorithm 2 on DEAP, one job per module.

    space          search space (examples/space.yaml): which values each gene may take
    codec          genotype (w, l, h, a_1..a_l, E_1..E_l [, lr] [, batch]) <-> DRNNConfig
    operators      cx* / mut* / sel* functions that keep every constraint
    gentune        the loop: Algorithm 2 literally (default) or another Strategy
    candidate      genotype -> config -> files -> the TrainJob a worker runs
    payload        what a worker slot runs: TrainJob in, TrainResult out (drnngen.runner)
    fitness        TrainResult -> Outcome (fitness = accuracy + 1/(1+loss))
    evaluator      the GA's evaluate_many: ledger -> cache -> executor
    fidelity       successive halving's rungs and --rescore's seeds: trainings of their own
    cache          canonical net + solver + data hash -> result, shared across runs
    ledger         the run's SQLite record: every candidate, generation, RNG state
    executors      where trainings run (local worker slots, one per GPU; dask_executor)
    params         what decides a run (TuneParams) and how it executes (Resources)
    lifecycle      a run: start or resume, the loop over the evaluator, its status
    export         the best candidate and `drnngen best`

The names below are the package's public API (the CLI, the benchmarks and
evaluation use them).
"""

from drnngen.tuner.export import best_candidate, export_best
from drnngen.tuner.lifecycle import RunSummary, tune
from drnngen.tuner.params import Resources, TuneParams

__all__ = ["Resources", "RunSummary", "TuneParams", "best_candidate", "export_best", "tune"]
