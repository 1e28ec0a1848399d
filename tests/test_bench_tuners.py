"""`make bench-tuners`' pure parts: the traces, the two ratios, Optuna's draw of the space, the redraw."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.bench_tuners import SPACE, Point, Trace, load_traces, markdown, ratios, suggest, write_results
from drnngen.tuner.codec import violations


def _trace(method: str, seed: int, points: list[tuple[float, float]]) -> Trace:
    return Trace(method, seed, [Point(s, f, None, "") for s, f in points], wall_s=1.0, test_recall20=0.5)


def test_a_trace_counts_only_what_fits_in_the_budget() -> None:
    t = _trace("literal", 1, [(2.0, 0.3), (5.0, 0.5), (9.0, 0.4), (12.0, 0.9)])
    assert t.best_at(1.0) != t.best_at(1.0)  # nothing trained yet: NaN
    assert t.best_at(10.0) == 0.5 and t.best_at(12.0) == 0.9
    assert t.reaches(0.45, 10.0) == 5.0 and t.reaches(0.95, 12.0) == math.inf


def test_the_ratios_pair_the_seeds() -> None:
    traces = {
        "literal": [_trace("literal", 1, [(4.0, 0.5), (8.0, 0.6)])],
        "elitist": [_trace("elitist", 1, [(5.0, 0.55)])],
        "literal+SH": [_trace("literal+SH", 1, [(1.0, 0.4), (2.0, 0.61)])],
        "random": [_trace("random", 1, [(3.0, 0.5)])],
        "optuna": [_trace("optuna", 1, [(2.0, 0.5), (9.0, 0.65)])],
    }
    figures = ratios(traces, 10.0)
    assert figures["time_ratio"] == [2.0 / 8.0] and figures["time_of_budget"] == [0.2]
    assert figures["best_option"] == "literal+SH" and figures["optuna_ratio"] == [0.61 / 0.65]
    assert figures["optuna_ratio_half"] == [0.61 / 0.5]
    table = markdown(traces, 10.0, figures, [5.0, 10.0])
    assert "| literal+SH | 0.610 [0.610, 0.610] | 0.610 [0.610, 0.610] | 2 | 1 | 0.500 [0.500, 0.500] |" in table


def test_the_table_and_plot_can_be_redrawn_from_the_json(tmp_path: Path) -> None:
    runs = {m: [{"method": m, "seed": 1, "points": [[1.0, 0.4], [3.0, 0.5 + i / 100]], "wall_s": 2.0,
                 "test_recall20": 0.7}] for i, m in enumerate(("literal", "elitist", "literal+SH", "random",
                                                               "optuna"))}
    (tmp_path / "tuners.json").write_text(json.dumps({"budget": 4.0, "traces": runs}))
    traces, budget = load_traces(tmp_path / "tuners.json")
    write_results(traces, budget, tmp_path)
    assert (tmp_path / "tuners.png").read_bytes()[:4] == b"\x89PNG"
    assert "Optuna ratio" in (tmp_path / "tuners.md").read_text()


def test_optuna_draws_legal_chromosomes_of_the_same_space() -> None:
    optuna = pytest.importorskip("optuna")  # the `bench` extra
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    drawn: list[list[object]] = []
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(lambda trial: drawn.append(suggest(trial, SPACE)) or 0.0, n_trials=60)
    assert all(violations(c, SPACE) == [] for c in drawn)
    assert {c[1] for c in drawn} == {1, 2} and {c[0] for c in drawn} == {2, 3, 4}
    assert {c[-1] for c in drawn} == set(SPACE.base_lr)  # the optional gene is drawn too
