"""GenTune: the paper's Algorithm 2 on DEAP, one job per module.

    space      search space (examples/space.yaml): which values each gene may take
    codec      genotype (w, l, h, a_1..a_l, E_1..E_l [, lr] [, batch]) <-> DRNNConfig
    operators  cx* / mut* / sel* functions that keep every constraint
    gentune    the loop: Algorithm 2 literally (default) or another Strategy
    fitness    one candidate: codegen -> files -> Caffe (drnngen.runner) -> fitness
    cache      canonical net + solver + data hash -> result, shared across runs
    ledger     the run's SQLite record: every candidate, generation, RNG state
    executors  where trainings run (local worker slots, one per GPU)
    run        ties them together: a run folder, resume, the best candidate
"""
