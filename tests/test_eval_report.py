"""`write_report`: every PNG is a real, non-trivial picture and report.md embeds each."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from drnngen.errors import UserError
from drnngen.evaluation.caffe_log import TrainingCurve
from drnngen.evaluation.report import PLOTS, CandidateView, Member, RunHistory, markdown_summary, write_report
from tests.fault_support import fill_disk_at


def _history(seed: int = 5, generations: int = 4, size: int = 6) -> RunHistory:
    """A plausible run: 6 candidates per generation, fitness creeping up, one NaN failure."""
    rng = random.Random(seed)
    candidates: list[CandidateView] = []
    populations: dict[int, list[Member]] = {}
    current: list[CandidateView] = []
    for gen in range(generations):
        fresh = size if gen == 0 else 3
        for _ in range(fresh):
            layers = rng.choice([1, 2, 3])
            genes: dict[str, object] = {"states": rng.choice([2, 3, 4]), "layers": layers,
                                        "shortcut": rng.randrange(layers)}
            genes.update({f"activation_{i + 1}": rng.choice(["ReLU", "TanH", "Sigmoid"]) for i in range(layers)})
            genes.update({f"width_{i + 1}": rng.choice([32, 64, 128]) for i in range(layers)})
            loss = rng.uniform(1.2, 3.0) - 0.15 * gen
            accuracy = min(0.95, max(0.0, 0.9 - 0.25 * loss + rng.uniform(-0.05, 0.05)))
            key = f"c{len(candidates):03d}"
            failed = len(candidates) == 10  # one candidate of generation 2 went NaN
            candidates.append(CandidateView(
                key=key, generation=gen, genes=genes,
                fitness=None if failed else accuracy + 1 / (1 + loss),
                accuracy=None if failed else accuracy, loss=None if failed else loss,
                seconds=rng.uniform(5, 40), status="nan" if failed else "ok"))
            current = [*current[1:], candidates[-1]] if gen else [*current, candidates[-1]]
        populations[gen] = [Member(c.genes, c.fitness) for c in current]
    best = max((c for c in candidates if c.fitness is not None), key=lambda c: c.fitness or 0.0)
    curve = TrainingCurve(
        train_loss=tuple((i, 3.0 * 0.97 ** (i / 10)) for i in range(0, 501, 10)),
        test={"accuracy": tuple((i, 0.6 * (1 - 0.99 ** i)) for i in range(0, 501, 100)),
              "s2_loss": tuple((i, 2.9 * 0.975 ** (i / 10) + 0.2) for i in range(0, 501, 100))})
    test_metrics = {"ks": [1, 20], "models": {
        "DRNN": {"accuracy@1": 0.31, "recall@1": 0.31, "mrr@1": 0.31, "accuracy@20": 0.8, "recall@20": 0.8,
                 "mrr@20": 0.45},
        "POP": {"accuracy@1": 0.05, "recall@1": 0.05, "mrr@1": 0.05, "accuracy@20": 0.3, "recall@20": 0.3,
                "mrr@20": 0.1}}}
    return RunHistory("demo-run", candidates, populations, best, curve, test_metrics)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def test_report_writes_every_plot_and_embeds_it(tmp_path: Path) -> None:
    written = write_report(_history(), tmp_path)
    assert {p.name for p in written} == {*PLOTS.values(), "report.md"}
    markdown = (tmp_path / "report.md").read_text()
    for name in PLOTS.values():
        path = tmp_path / name
        width, height = _png_size(path)
        # A real figure: several hundred pixels a side and many kilobytes of drawing.
        assert width >= 400 and height >= 300, (name, width, height)
        assert path.stat().st_size > 15_000, (name, path.stat().st_size)
        assert f"]({name})" in markdown


def test_markdown_names_the_best_genotype_and_metrics() -> None:
    history = _history()
    markdown = markdown_summary(history)
    assert history.best is not None
    assert f"## Best candidate: `{history.best.key}`" in markdown
    for gene, value in history.best.genes.items():
        assert f"| {gene} | {value} |" in markdown
    assert f"| fitness | {history.best.fitness:.4f} |" in markdown
    assert "| DRNN | 0.3100 | 0.3100 | 0.3100 | 0.8000 | 0.8000 | 0.4500 |" in markdown
    assert "candidates trained" in markdown


def test_report_of_a_run_without_finished_candidates(tmp_path: Path) -> None:
    failed = CandidateView("c0", 0, {"states": 2}, status="failed")
    empty = RunHistory("empty", [failed], {0: [Member(failed.genes, None)]})
    write_report(empty, tmp_path)
    assert "No candidate finished training." in (tmp_path / "report.md").read_text()
    for name in PLOTS.values():
        assert _png_size(tmp_path / name)[0] >= 400


def test_a_full_disk_leaves_the_old_report_and_no_partial_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_report(_history(), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    fill_disk_at(monkeypatch, 3)
    with pytest.raises(UserError, match=r"No space left on device.*nothing was changed"):
        write_report(_history(seed=9), tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_rescored_run_gets_error_bars_and_a_table_of_every_score(tmp_path: Path) -> None:
    import dataclasses

    from drnngen.evaluation.report import RESCORE_PLOT

    scores = {"c003": [0.61, 0.55, 0.58], "c007": [0.64, 0.49, 0.52]}
    written = write_report(dataclasses.replace(_history(), scores=scores), tmp_path)
    assert {p.name for p in written} == {*PLOTS.values(), RESCORE_PLOT, "report.md"}
    width, height = _png_size(tmp_path / RESCORE_PLOT)
    assert width > 300 and height > 200
    markdown = (tmp_path / "report.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| `c00")]
    assert rows == ["| `c003` | 3 | 0.5800 | 0.0300 | 0.6100, 0.5500, 0.5800 |",  # highest mean first
                    "| `c007` | 3 | 0.5500 | 0.0794 | 0.6400, 0.4900, 0.5200 |"]
    assert f"]({RESCORE_PLOT})" in markdown
