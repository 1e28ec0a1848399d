"""A batch goes to the workers longest first (tuner/order.py): the cost estimate grows
with what makes a training long, one worker keeps the population's order, and with two
the costliest trainings start first and the cheapest last."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import yaml

from drnngen.codegen.config import DRNNConfig, load_config, parse_config
from drnngen.runner import TrainJob, TrainResult
from drnngen.tuner import Resources
from drnngen.tuner.candidate import CONFIG_FILE
from drnngen.tuner.order import longest_first, training_cost
from tests.data_support import TUNER_DATA
from tests.golden_tool import EXAMPLES
from tests.tuner_support import FakeTrainer, run

DATASET = TUNER_DATA


def small(**model: object) -> DRNNConfig:
    cfg = load_config(EXAMPLES / "small.yaml")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **model))


def test_the_cost_grows_with_what_makes_a_training_long() -> None:
    base = training_cost(small(), 100, 2)
    assert training_cost(small(), 200, 2) > base  # iterations
    assert training_cost(small(), 100, 20) > base  # validation batches
    assert training_cost(small(states=small().model.states + 1), 100, 2) > base
    assert training_cost(small(widths=(256,) * small().model.layers), 100, 2) > base
    assert training_cost(small(cell="gru"), 100, 2) > base
    more_items = small()
    more_items = dataclasses.replace(more_items, data=dataclasses.replace(more_items.data, items=5000))
    assert training_cost(more_items, 100, 2) > base


def test_longest_first_only_with_several_workers() -> None:
    items = ["b", "ccc", "a", "dd", "ee"]
    assert longest_first(items, len, 1) == items
    assert longest_first(items, len, 2) == ["ccc", "dd", "ee", "b", "a"]  # ties keep their order


class StartOrder(FakeTrainer):
    """FakeTrainer that notes the cost of each training as it starts."""

    def __init__(self) -> None:
        super().__init__(delay=0.05)
        self.costs: list[float] = []
        self.started = threading.Lock()

    def __call__(self, job: TrainJob) -> TrainResult:
        cfg = parse_config(yaml.safe_load((job.workdir / CONFIG_FILE).read_text()))
        with self.started:
            self.costs.append(training_cost(cfg, job.iterations, job.test_iterations))
        return super().__call__(job)


def test_two_workers_start_the_costliest_first(tmp_path: Path, dataset: Path) -> None:
    trainer = StartOrder()
    run(tmp_path, dataset, "run", trainer, changes={"generations": 0, "population": 8},
        resources=Resources(workers=2))
    costs = trainer.costs
    assert len(costs) == 8 and len(set(costs)) > 2, costs  # a batch of different lengths
    # the trainings start in pairs (the two workers take the next two together, and finish
    # together: the fake's delay is fixed), so the order within a pair is a race; each pair
    # is costlier than every later one
    for k in range(0, len(costs), 2):
        assert min(costs[k:k + 2]) >= max(costs[k + 2:], default=0.0), costs
