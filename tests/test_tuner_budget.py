"""The run-level protocol around a cheap deterministic trainer: --time-budget
(no training starts once it is spent, resume gets what is left), the NaN retry
at a tenth of the learning rate, the optional genes and the data-aware
defaults."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from drnngen.codegen.config import parse_config
from drnngen.data.manifest import load_manifest
from drnngen.errors import UserError
from drnngen.runner import TrainJob, TrainResult
from drnngen.tuner import Resources, tune
from drnngen.tuner.codec import decode, describe, encode, random_genes, to_list, violations
from drnngen.tuner.defaults import batch_for, default_base, default_space, net_row_bytes, repeat_fits
from drnngen.tuner.ledger import Ledger, RunStatus
from drnngen.tuner.lifecycle import ELAPSED
from drnngen.tuner.space import IntRange, SearchSpace, parse_space, space_mapping
from drnngen.vocabulary import Status
from tests.data_support import TUNER_DATA
from tests.tuner_support import FakeTrainer, run

DATASET = TUNER_DATA


def test_no_training_starts_once_the_budget_is_spent(tmp_path: Path, dataset: Path) -> None:
    trainer = FakeTrainer(delay=0.3)
    started = time.monotonic()
    summary = run(tmp_path, dataset, "r", trainer, resources=Resources(workers=1),
                  changes={"generations": 1000, "time_budget_s": 1.5})
    took = time.monotonic() - started
    assert summary.budget_spent and not summary.params.generations <= summary.result.generations_done
    ledger = Ledger.open(tmp_path / "r")
    assert ledger.status == RunStatus.FINISHED  # a spent budget finishes the run; it is no interruption
    trained = len(trainer.trained)
    assert 1 <= trained <= math.ceil(1.5 / 0.3) + 1  # one slot: at most the trainings the budget held, +1 in flight
    assert took < 1.5 + 2 * 0.3 + 2.0  # stopped at the budget, not after 1000 generations
    assert float(ledger.meta(ELAPSED)) == pytest.approx(took, abs=1.0)
    # every training was told the deadline: trainings in flight stop at it with their best snapshot
    assert summary.best is not None


def test_resume_gets_what_is_left_of_the_budget(tmp_path: Path, dataset: Path) -> None:
    run(tmp_path, dataset, "r", FakeTrainer(delay=0.2), resources=Resources(workers=1),
        changes={"generations": 1000, "time_budget_s": 1.0})
    ledger = Ledger.open(tmp_path / "r")
    spent = float(ledger.meta(ELAPSED))
    assert spent >= 1.0
    again = FakeTrainer()
    resumed = tune(tmp_path / "r", None, Resources(), trainer=again)
    assert resumed.budget_spent and again.trained == []  # nothing left: nothing trained


class Diverging(FakeTrainer):
    """NaN for a learning rate above 0.01, else FakeTrainer's metrics; records the lrs it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.rates: list[float] = []

    def __call__(self, job: TrainJob) -> TrainResult:
        solver = (job.workdir / "solver.prototxt").read_text()
        lr = float(next(line.split(":")[1] for line in solver.splitlines() if line.startswith("base_lr")))
        self.rates.append(lr)
        if lr > 0.01:
            return TrainResult(Status.NAN, iterations_done=3, error="the training loss became NaN or infinite")
        return super().__call__(job)


def test_a_nan_candidate_is_retried_once_at_a_tenth_of_its_learning_rate(tmp_path: Path, dataset: Path) -> None:
    trainer = Diverging()
    summary = run(tmp_path, dataset, "r", trainer, changes={"generations": 0, "nan_retry": True})
    rows = Ledger.open(tmp_path / "r").candidates()
    assert rows and all(r.outcome.ok for r in rows)  # small.yaml's lr 0.05 diverges; 0.005 trains
    assert all(r.outcome.note == "retried at lr x0.1 after NaN" for r in rows)
    assert sorted(set(trainer.rates)) == pytest.approx([0.005, 0.05])
    assert trainer.rates.count(0.05) == trainer.rates.count(0.005) == len(rows)  # once each, no more
    assert all(yaml.safe_load(r.config)["solver"]["base_lr"] == pytest.approx(0.005) for r in rows)
    assert summary.best is not None


def test_without_retry_a_nan_candidate_is_a_recorded_failure(tmp_path: Path, dataset: Path) -> None:
    trainer = Diverging()
    run(tmp_path, dataset, "r", trainer, changes={"generations": 0, "nan_retry": False})
    rows = Ledger.open(tmp_path / "r").candidates()
    assert rows and all(r.outcome.status == Status.NAN and r.outcome.fitness == 0.0 for r in rows)
    assert set(trainer.rates) == {0.05}


OPTIONAL = SearchSpace(IntRange(2, 3), IntRange(1, 2), IntRange(0, 1), ("ReLU",), (16, 32),
                       base_lr=(0.001, 0.01), solver_type=("SGD", "Adam"), weight_decay=(0.0, 0.0005),
                       dropout=(0.0, 0.3), repeat=(True, False))


def test_optional_genes_decode_into_the_config_and_encode_back() -> None:
    import random

    base = default_base(100, 20, 1000, "purchase")
    rng = random.Random(4)
    for _ in range(50):
        genes = random_genes(rng, OPTIONAL)
        chromosome = to_list(genes, OPTIONAL)
        assert violations(chromosome, OPTIONAL) == []
        cfg = decode(chromosome, base, OPTIONAL)
        assert (cfg.solver.base_lr, cfg.solver.type, cfg.solver.weight_decay) == (
            genes.base_lr, genes.solver_type, genes.weight_decay)
        assert cfg.model.dropout == (genes.dropout,) and cfg.model.repeat is genes.repeat
        assert encode(cfg, OPTIONAL) == chromosome
        text = describe(chromosome, OPTIONAL)
        assert f"solver={genes.solver_type}" in text and f"repeat={str(genes.repeat).lower()}" in text
    broken = [2, 1, 0, "ReLU", 16, 0.001, "Adam", 0.0, 0.9, True]
    assert violations(broken, OPTIONAL) == ["dropout 0.9 not in the space"]


def test_space_files_take_the_optional_genes_and_refuse_bad_ones() -> None:
    space = parse_space({"solver_type": ["adam", "SGD"], "dropout": [0, 0.5], "weight_decay": [0, 1e-4],
                         "repeat": [True, False]})
    assert space.solver_type == ("Adam", "SGD") and space.dropout == (0.0, 0.5) and space.repeat == (True, False)
    assert parse_space(space_mapping(space)) == space
    with pytest.raises(Exception, match="dropout: expected finite values in") as info:
        parse_space({"dropout": [1.0], "solver_type": ["sgdx"], "repeat": ["yes"], "weight_decay": [-1]})
    message = str(info.value)
    assert "solver_type: unknown solver 'sgdx'" in message and "repeat: expected true/false" in message
    assert "weight_decay: expected finite values >= 0" in message


def test_cell_gene_candidates_are_recorded_with_their_cell(tmp_path: Path, dataset: Path) -> None:
    """`cell: [drnn, gru]` in the space: candidates of both cells, each config naming its cell."""
    space = SearchSpace(IntRange(2, 3), IntRange(1, 2), IntRange(0, 1), ("ReLU", "TanH"), (8, 16),
                        cell=("drnn", "gru"))
    run(tmp_path, dataset, "cells", FakeTrainer(), changes={"space": space_mapping(space), "generations": 1})
    rows = Ledger.open(tmp_path / "cells").candidates()
    cells = [(row.genotype[-1], yaml.safe_load(row.config)["model"]["cell"]) for row in rows]
    assert all(gene == cell for gene, cell in cells) and {gene for gene, _ in cells} == {"drnn", "gru"}
    for row in rows:
        assert describe(row.genotype, space).endswith(f" cell={row.genotype[-1]}")
        net = (Path(row.folder or "") / "net.prototxt").read_text()
        assert ('name: "s1_nz0"' in net) == (row.genotype[-1] == "gru")  # 1 − z: every gru state has an h
    # `make quality` reports the best candidate of each cell with its validation fitness
    from benchmarks.bench_quality import best_by_cell, cells_line

    best = best_by_cell(tmp_path / "cells")
    for cell in ("drnn", "gru"):
        fittest = max((row for row in rows if row.genotype[-1] == cell), key=lambda row: row.outcome.fitness)
        found = best[cell]
        assert found is not None and (found.fitness, found.key) == (fittest.outcome.fitness, fittest.key[:16])
        assert found.genotype == describe(fittest.genotype, space)
    line = cells_line(best)
    assert line.startswith("best gru candidate: fitness ") and "; best drnn candidate: fitness " in line
    plain = run(tmp_path, dataset, "plain", FakeTrainer(), changes={"generations": 0})
    assert plain.result is not None
    assert cells_line(best_by_cell(tmp_path / "plain")).startswith("no gru candidate; best drnn candidate: ")


def test_data_aware_defaults_suit_the_dataset(dataset: Path) -> None:
    m = load_manifest(dataset)
    base = default_base(m.pages, m.items, m.train_samples, m.target)
    assert base.solver.type == "Adam" and base.solver.lr_policy == "fixed"
    assert base.data.batch_size == batch_for(m.train_samples) and 32 <= base.data.batch_size <= 512
    assert base.model.repeat == repeat_fits(m.pages, m.items)
    assert [batch_for(n) for n in (100, 5000, 20000, 10**6)] == [32, 64, 256, 512]
    space = default_space(m.pages, m.items, m.target)
    assert space.repeat == () and space.tied == () and space.cell == ("drnn", "gru")
    assert (base.model.repeat_init, base.model.repeat_lr_mult) == ((5.0, 10.0) if base.model.repeat else (1.0, 1.0))
    assert not repeat_fits(200_000, 1000)  # a 763 MiB map: the defaults leave the repeat path out
    assert not default_base(200_000, 1000, 10_000, "purchase").model.repeat
    # the neighbour path rides with the repeat path where both maps fit, and costs its share of memory
    assert base.model.neighbours == repeat_fits(m.pages, m.items, maps=2) and base.model.neighbours_lr_mult == 10
    both = default_base(50_000, 1000, 10_000, "purchase")  # one 191 MiB map fits, two do not
    assert both.model.repeat and not both.model.neighbours
    assert net_row_bytes(2000, 1000, 32, 2) > net_row_bytes(2000, 1000, 32, 1) > net_row_bytes(2000, 1000, 32, 0)
    # the maps' six copies (data, diff, Adam's blobs) come off the budget before the batches are sized:
    # 2 × 80 MB maps × 6 leave 140 MiB of the 1.1 GiB half
    kwargs = {"history_k": 32, "memory_budget": 2200 << 20}
    with_maps = default_base(20_000, 1000, 100_000, "purchase", repeats=0.5, **kwargs)
    without = default_base(20_000, 1000, 100_000, "purchase", repeats=0.0, **kwargs)
    assert with_maps.model.neighbours and not without.model.repeat
    assert with_maps.data.batch_size * net_row_bytes(20_000, 1000, 32, 2) <= (1100 << 20) - 6 * 2 * 20_001 * 4000
    assert with_maps.data.batch_size < without.data.batch_size
    # every point of the default space decodes (is a net codegen accepts) on this dataset's dimensions
    parse_config({**yaml.safe_load(yaml.safe_dump({"data": {"pages": m.pages, "items": m.items}}))})
    import random

    rng = random.Random(0)
    bound = replace(base, data=replace(base.data, pages=m.pages, items=m.items))
    for _ in range(30):
        decode(to_list(random_genes(rng, space), space), bound, space)


def test_tune_exits_2_when_no_candidate_trained(tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import drnngen.cli.tune as tune_cli
    from drnngen.cli import cli
    from tests.golden_tool import EXAMPLES

    def failing(job: TrainJob) -> TrainResult:
        return TrainResult(Status.FAILED, error="F1201 Check failed: deliberately [fake.cpp:1]")

    real_tune = tune_cli.tune
    monkeypatch.setattr(tune_cli, "_require_local_caffe", lambda mode: None)
    monkeypatch.setattr(tune_cli, "tune", lambda *a, **k: real_tune(*a, **{**k, "trainer": failing}))
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["tune", "--config", str(EXAMPLES / "small.yaml"), "--data", str(dataset),
                                      "--generations", "0", "--population", "2", "--iters", "2", "--no-cache",
                                      "-o", str(run_dir)])
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: no candidate trained successfully (first: failed: F1201 Check failed")
    assert (run_dir / "ledger.sqlite").is_file()  # the record of what failed stays


def test_a_run_being_tuned_refuses_a_second_tune_or_resume(tmp_path: Path, dataset: Path) -> None:
    import fcntl

    from drnngen.errors import UserError
    from drnngen.tuner.lifecycle import LOCK_FILE
    from tests.tuner_support import params

    run(tmp_path, dataset, "r", FakeTrainer(), changes={"generations": 0})
    with (tmp_path / "r" / LOCK_FILE).open("a+") as held:  # what a running `tune` holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.seek(0)
        held.truncate()
        held.write("pid 4242\n")
        held.flush()
        before = Ledger.open(tmp_path / "r").candidates()
        with pytest.raises(UserError, match=r"is being tuned right now \(pid 4242\)"):
            tune(tmp_path / "r", None, Resources(), trainer=FakeTrainer())
        assert Ledger.open(tmp_path / "r").candidates() == before  # nothing written twice
    resumed = tune(tmp_path / "r", None, Resources(), trainer=FakeTrainer())  # the lock is free again
    assert resumed.best is not None
    with pytest.raises(UserError, match="already holds a run"):
        tune(tmp_path / "r", params(dataset), Resources(), trainer=FakeTrainer())


@pytest.mark.parametrize("address", ["not a url", "tcp://", "http://host:8786", "tcp://host", "tcp://host:99999",
                                     "host:port"])
def test_a_malformed_scheduler_address_is_one_line_at_once(tmp_path: Path, dataset: Path, address: str) -> None:
    from click.testing import CliRunner

    from drnngen.cli import cli

    started = time.monotonic()
    result = CliRunner().invoke(cli, ["tune", "--data", str(dataset), "--iters", "2", "--scheduler", address,
                                      "-o", str(tmp_path / "run")])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("error: --scheduler: expected a Dask scheduler address like tcp://HOST:8786")
    assert time.monotonic() - started < 10 and not (tmp_path / "run").exists()


def test_well_formed_scheduler_addresses_pass_the_check() -> None:
    from drnngen.cli.tune import _scheduler_address

    for address in ("tcp://127.0.0.1:8786", "127.0.0.1:8786", "tls://sched.example:8786", "tcp://[::1]:8786"):
        assert _scheduler_address(address) == address


def test_a_read_only_dataset_the_run_must_write_is_refused_up_front(
    tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import shutil

    from drnngen.errors import UserError
    from drnngen.tuner.ledger import LEDGER_FILE

    # a copy with only the window prepare wrote (other tests of the module derive more)
    data = tmp_path / "data"
    shutil.copytree(dataset, data, ignore=lambda folder, names: [n for n in names if n in ("w2", "w4")])
    real_access = os.access
    # root may write anywhere, so the read-only file system is simulated (os.access is all the check asks)
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == data.resolve() and mode == os.W_OK
                        else real_access(path, mode))
    with pytest.raises(UserError, match=r"read-only, but this run must write the windows w=2,4"):
        run(tmp_path, data, "r", FakeTrainer(), changes={"generations": 0})  # the space's w: 2..4, w=3 exists
    assert not (tmp_path / "r" / LEDGER_FILE).exists() or Ledger.open(tmp_path / "r").candidates() == []


@pytest.mark.parametrize(("field", "value", "message"), [
    ("val_samples", 0, "validation samples; tuning needs both"),
    ("train_samples", 0, "0 train and"),
    ("items", 1, "N=1 item class; there is nothing to rank"),
])
def test_a_dataset_no_training_can_use_is_refused_up_front(
    tmp_path: Path, dataset: Path, field: str, value: int, message: str
) -> None:
    import json
    import shutil

    from drnngen.errors import UserError

    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest[field] = value
    (data / "manifest.json").write_text(json.dumps(manifest))
    trainer = FakeTrainer()
    with pytest.raises(UserError, match=message):
        run(tmp_path, data, "r", trainer, changes={"generations": 0})
    assert trainer.trained == []


def test_default_batches_fit_the_memory_budget() -> None:
    """`tune --memory-budget`: the default base config's batches shrink as N grows, so that
    the space's largest net fits half the budget each (TRAIN, TEST); the estimate grows
    with N and, dense, with M; nothing fits: one line with the figure."""
    small = default_base(2000, 100, 100_000, "purchase", history_k=32)
    assert (small.data.batch_size, small.data.test_batch_size) == (512, 2048)  # far from the 4 GiB default
    wide = default_base(2000, 40_000, 100_000, "purchase", history_k=32, memory_budget=4 << 30)
    row = net_row_bytes(2000, 40_000, 32, wide.model.repeat)
    assert wide.data.batch_size * row <= 2 << 30 < 2 * wide.data.batch_size * row
    assert wide.data.batch_size < 512 and wide.data.test_batch_size < 2048
    assert net_row_bytes(100_000, 100, 0, False) > net_row_bytes(2000, 100, 0, False)  # the dense row
    assert net_row_bytes(100_000, 100, 32, False) == net_row_bytes(2000, 100, 32, False)  # sparse: no M
    assert net_row_bytes(2000, 40_000, 32, True) > net_row_bytes(2000, 40_000, 32, False)
    too_much = r"one sample of the default net needs about [\d,.]+ MiB .* over the 0\.5 MiB a net may take"
    with pytest.raises(UserError, match=too_much):
        default_base(2000, 200_000, 100_000, "purchase", history_k=32, memory_budget=1 << 20)
    assert default_base(2000, 40_000, 100_000, "purchase", memory_budget=None).data.batch_size == 512


def _prepared_log(tmp_path: Path, name: str, sessions: list[list[int]]) -> Path:
    """A GRU4Rec TSV of `sessions` (item ids, 60 s apart), prepared for next-item."""
    from click.testing import CliRunner

    from drnngen.cli import cli

    lines = ["SessionId\tItemId\tTime"]
    for s, items in enumerate(sessions):
        lines += [f"{s + 1}\t{item}\t{1_600_000_000 + 86_400 * s + 60 * i}" for i, item in enumerate(items)]
    log = tmp_path / f"{name}.tsv"
    log.write_text("\n".join(lines) + "\n")
    out = tmp_path / name
    result = CliRunner().invoke(cli, ["prepare", str(log), "--format", "gru4rec", "--target", "next-item",
                                      "--window", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_the_repeat_path_is_on_only_where_targets_repeat(tmp_path: Path) -> None:
    """repeat_share counts the train samples whose target is an item of the session's own
    pages; the default base turns the repeat path off below MIN_REPEAT_SHARE."""
    from drnngen.bind import repeat_share
    from drnngen.tuner.defaults import MIN_REPEAT_SHARE

    fresh = _prepared_log(tmp_path, "fresh", [[10 * s + i for i in range(6)] for s in range(40)])
    # every session: a b c a b c (targets b c a b c: the last three were seen, window or history)
    again = _prepared_log(tmp_path, "again", [[3 * (s % 4) + i % 3 for i in range(6)] for s in range(40)])
    shares = {name: repeat_share(load_manifest(folder)) for name, folder in (("fresh", fresh), ("again", again))}
    assert shares == {"fresh": 0.0, "again": pytest.approx(3 / 5)}
    for name, share in shares.items():
        m = load_manifest(fresh if name == "fresh" else again)
        base = default_base(m.pages, m.items, m.train_samples, m.target, repeats=share)
        assert base.model.repeat == base.model.neighbours == (share >= MIN_REPEAT_SHARE)
