"""Plots of a tuning run and a Markdown summary that embeds them.

The input is a :class:`RunHistory` — plain values read from the run ledger
by :mod:`drnngen.evaluation.run_folder` — so plotting never touches SQLite,
and tests build histories by hand. Figures are drawn with matplotlib's
object API on the Agg canvas: no pyplot global state, no display needed.

Every figure has a title, axis labels with units and a legend where more than
one thing is drawn. Fitness is the paper's ``accuracy + 1 / (1 + loss)`` on the
validation split (accuracy: top-1 share; loss: softmax cross-entropy in nats).
"""

from __future__ import annotations

import io
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from drnngen.codegen.build import write
from drnngen.evaluation.caffe_log import TrainingCurve

PLOTS = {
    "fitness": "fitness.png",
    "accuracy_loss": "accuracy_vs_loss.png",
    "training_time": "training_time.png",
    "genes": "gene_frequencies.png",
    "curve": "training_curve.png",
}
RESCORE_PLOT = "rescore.png"  # only for a run with `tune --rescore`
_DPI = 110


@dataclass(frozen=True)
class CandidateView:
    """One trained chromosome as the ledger records it."""

    key: str
    generation: int  # the generation it was first trained in (0: the initial population)
    genes: Mapping[str, Any]  # gene name → value, in chromosome order
    fitness: float | None = None
    accuracy: float | None = None  # validation top-1 accuracy
    loss: float | None = None  # validation loss
    seconds: float | None = None  # training time
    status: str = "ok"


@dataclass(frozen=True)
class Member:
    """One chromosome of a generation's population (the same chromosome may appear twice)."""

    genes: Mapping[str, Any]
    fitness: float | None


@dataclass(frozen=True)
class RunHistory:
    """What a report shows: every candidate, each generation's population, the best one."""

    name: str
    candidates: Sequence[CandidateView]
    populations: Mapping[int, Sequence[Member]]  # generation → its population when it finished
    best: CandidateView | None = None
    best_curve: TrainingCurve = field(default_factory=TrainingCurve)
    test_metrics: Mapping[str, Any] | None = None  # evaluation.json of `drnngen evaluate`, when present
    scores: Mapping[str, Sequence[float]] = field(default_factory=dict)  # `--rescore`: key → fitness per seed


def write_report(history: RunHistory, out: Path) -> list[Path]:
    """All PNGs and ``report.md`` into ``out``; returns the files written."""
    drawers = {
        "fitness": plot_fitness,
        "accuracy_loss": plot_accuracy_loss,
        "training_time": plot_training_time,
        "genes": plot_gene_frequencies,
        "curve": plot_training_curve,
    }
    files: dict[str, str | bytes] = {}
    for key, draw in drawers.items():
        files[PLOTS[key]] = _png(draw(history))
    if history.scores:
        files[RESCORE_PLOT] = _png(plot_rescore(history))
    files["report.md"] = markdown_summary(history)
    # all files staged, then renamed: a full disk leaves the old report, no 0-byte PNG
    return write(files, out)


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)  # attach the Agg canvas: savefig then needs no pyplot
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=_DPI, bbox_inches="tight")
    return png.getvalue()


# --- figures ------------------------------------------------------------------------------


def plot_fitness(history: RunHistory) -> Figure:
    """Best-so-far and mean fitness of the population per generation."""
    fig, ax = _figure(f"Fitness per generation — {history.name}")
    gens = sorted(history.populations)
    means, bests = [], []
    best_so_far = -math.inf
    for gen in gens:
        values = _finite_values(member.fitness for member in history.populations[gen])
        means.append(float(np.mean(values)) if values else math.nan)
        seen = _finite_values(c.fitness for c in history.candidates if c.generation <= gen)
        best_so_far = max([best_so_far, *seen])
        bests.append(best_so_far if math.isfinite(best_so_far) else math.nan)
    ax.plot(gens, bests, marker="o", label="best so far")
    ax.plot(gens, means, marker="s", linestyle="--", label="population mean")
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness = accuracy + 1/(1+loss)  (validation, unitless)")
    ax.set_xticks(gens)
    ax.legend()
    return fig


def plot_rescore(history: RunHistory) -> Figure:
    """`--rescore`: each rescored candidate's fitness over its Caffe seeds, mean ± one
    standard deviation, every seed's score as a dot."""
    fig, ax = _figure(f"Rescored candidates: fitness over Caffe seeds — {history.name}")
    ranked = sorted(history.scores.items(), key=lambda kv: -float(np.mean(kv[1])))
    for x, (_, values) in enumerate(ranked):
        ax.scatter([x] * len(values), values, color="grey", s=14, zorder=2)
    ax.errorbar(range(len(ranked)), [float(np.mean(v)) for _, v in ranked],
                yerr=[float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for _, v in ranked],
                fmt="o", capsize=6, color="C0", zorder=3, label="mean ± 1 sd")
    ax.set_xticks(range(len(ranked)), [key for key, _ in ranked])
    ax.set_xlabel("candidate (ranked by mean fitness)")
    ax.set_ylabel("fitness = accuracy + 1/(1+loss)  (validation, unitless)")
    ax.legend()
    return fig


def plot_accuracy_loss(history: RunHistory) -> Figure:
    """Every candidate's validation accuracy against its loss, over contours of equal fitness."""
    fig, ax = _figure(f"Candidates: accuracy vs loss — {history.name}")
    done = [c for c in history.candidates if _is_num(c.accuracy) and _is_num(c.loss)]
    losses = np.array([c.loss for c in done], dtype=float)
    accuracies = np.array([c.accuracy for c in done], dtype=float)
    top = max([*losses, 1.0]) * 1.1
    grid_loss, grid_acc = np.meshgrid(np.linspace(0, top, 200), np.linspace(0, 1, 200))
    contours = ax.contour(grid_loss, grid_acc, grid_acc + 1 / (1 + grid_loss), levels=8,
                          colors="grey", linewidths=0.7)
    ax.clabel(contours, fmt="%.2f", fontsize=7)
    if done:
        points = ax.scatter(losses, accuracies,
                            c=[c.generation for c in done], cmap="viridis", edgecolors="black",
                            linewidths=0.4, label="candidate")
        bar = fig.colorbar(points, ax=ax, label="generation first trained")
        bar.set_ticks(sorted({c.generation for c in done}))  # generations are whole numbers
    best = history.best
    if best is not None and best.accuracy is not None and best.loss is not None and _is_num(best.loss):
        ax.scatter([best.loss], [best.accuracy], marker="*", s=260, color="red", edgecolors="black",
                   label=f"best ({best.key})", zorder=3)
    ax.plot([], [], color="grey", linewidth=0.7, label="equal fitness")  # legend entry for the contours
    ax.set_xlabel("validation loss (softmax cross-entropy, nats)")
    ax.set_ylabel("validation top-1 accuracy (fraction)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper right")
    return fig


def plot_training_time(history: RunHistory) -> Figure:
    """Training time of every candidate, in the order they were trained, coloured by generation."""
    fig, ax = _figure(f"Training time per candidate — {history.name}")
    cands = [c for c in history.candidates if _is_num(c.seconds)]
    gens = sorted({c.generation for c in cands})
    colours = _colours(len(gens))
    for gen, colour in zip(gens, colours, strict=True):
        idx = [i for i, c in enumerate(cands) if c.generation == gen]
        ax.bar(idx, [cands[i].seconds or 0.0 for i in idx], color=colour, label=f"generation {gen}")
    failed = [i for i, c in enumerate(cands) if c.status != "ok"]
    if failed:
        ax.scatter(failed, [cands[i].seconds or 0.0 for i in failed], marker="x", color="red",
                   zorder=3, label="failed / NaN")
    ax.set_xlabel("candidate (in training order)")
    ax.set_ylabel("training time (s)")
    if cands:
        ax.legend(fontsize=8, ncol=2)
    return fig


def plot_gene_frequencies(history: RunHistory) -> Figure:
    """For each gene, the share of the population holding each value, per generation.

    Per-layer genes (activation, width of layer i) are pooled over the layers,
    so the figure has one panel per kind of gene whatever the depth.
    """
    gens = sorted(history.populations)
    counts = {gene: {gen: Counter[str]() for gen in gens} for gene in _gene_kinds(history)}
    for gen in gens:
        for member in history.populations[gen]:
            for gene, value in member.genes.items():
                counts[_gene_kind(gene)][gen][str(value)] += 1
    panels = len(counts) or 1
    cols = min(3, panels)
    rows = math.ceil(panels / cols)
    fig = Figure(figsize=(4.6 * cols, 3.4 * rows), layout="constrained")
    fig.suptitle(f"Gene values in the population per generation — {history.name}")
    for i, (gene, per_gen) in enumerate(counts.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        values = sorted({v for c in per_gen.values() for v in c}, key=_natural)
        bottom = np.zeros(len(gens))
        for value, colour in zip(values, _colours(len(values)), strict=True):
            share = np.array([per_gen[g][value] / max(1, sum(per_gen[g].values())) for g in gens])
            ax.bar(gens, share, bottom=bottom, color=colour, label=value)
            bottom += share
        ax.set_title(gene)
        ax.set_xlabel("generation")
        ax.set_ylabel("share of population")
        ax.set_xticks(gens)
        ax.set_ylim(0, 1)
        if values:  # a ledger whose generations hold no population has no bars to name
            ax.legend(fontsize=7, title="value", title_fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def plot_training_curve(history: RunHistory) -> Figure:
    """The best candidate's train loss per interval, its validation points (loss and
    accuracy), the snapshot it kept and where its training stopped."""
    name = history.best.key if history.best else "none"
    fig, ax = _figure(f"Training curve of the best candidate ({name}) — {history.name}")
    curve = history.best_curve
    if curve.train_loss:
        # Caffe prints the sum of all loss layers (one per state), the validation curve is the last state's.
        ax.plot(*zip(*curve.train_loss, strict=True), label=curve.train_label)
    loss_names = _model_loss(curve)
    acc_names = [k for k in curve.test if "loss" not in k]
    for key in loss_names:
        ax.plot(*zip(*curve.test[key], strict=True), marker="o", label=f"validation {key}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (softmax cross-entropy, nats)")
    handles, labels = ax.get_legend_handles_labels()
    if acc_names:
        acc_ax = ax.twinx()
        for key, colour in zip(acc_names, ("tab:green", "tab:red", "tab:purple", "tab:brown"), strict=False):
            acc_ax.plot(*zip(*curve.test[key], strict=True), marker="s", linestyle="--", color=colour,
                        label=f"validation {key}")
        acc_ax.set_ylabel("accuracy (fraction)")
        acc_ax.set_ylim(0, 1)
        more_handles, more_labels = acc_ax.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    if curve.kept is not None:
        handles.append(ax.axvline(curve.kept, color="tab:green", linestyle=":",
                                  label=f"kept snapshot (iteration {curve.kept})"))
        labels.append(handles[-1].get_label())
    if curve.stopped is not None:
        handles.append(ax.axvline(curve.stopped[0], color="tab:red", linestyle="-.", alpha=0.6,
                                  label=f"stopped: {curve.stopped[1]} (iteration {curve.stopped[0]})"))
        labels.append(handles[-1].get_label())
    if handles:
        ax.legend(handles, labels, loc="center right")
    else:
        ax.text(0.5, 0.5, "no training curve recorded for this candidate", ha="center", va="center",
                transform=ax.transAxes)
    return fig


# --- Markdown -------------------------------------------------------------------------------


def markdown_summary(history: RunHistory) -> str:
    """The report: best genotype and metrics, run statistics, every plot embedded."""
    lines = [f"# Tuning report — {history.name}", ""]
    trained = [c for c in history.candidates if c.status == "ok"]
    lines += [f"{len(history.candidates)} candidates trained ({len(trained)} ok) over "
              f"{len(history.populations)} generations; "
              f"total training time {sum(c.seconds or 0.0 for c in history.candidates):.1f} s.", ""]
    lines += _best_section(history.best)
    if history.test_metrics:
        lines += ["## Test split (`drnngen evaluate`)", "", *_test_table(history.test_metrics), ""]
    captions = {
        "fitness": "Best-so-far and mean fitness per generation",
        "accuracy_loss": "Validation accuracy vs loss of every candidate, with contours of equal fitness",
        "training_time": "Training time per candidate",
        "genes": "Gene values in the population over the generations",
        "curve": "Training curve of the best candidate",
    }
    for key, caption in captions.items():
        lines += [f"## {caption}", "", f"![{caption}]({PLOTS[key]})", ""]
    if history.scores:
        lines += _rescore_section(history.scores)
    return "\n".join(lines)


def _rescore_section(scores: Mapping[str, Sequence[float]]) -> list[str]:
    caption = "Rescored candidates: fitness over Caffe seeds (mean ± 1 sd)"
    lines = [f"## {caption}", "", "The best candidate is the one of the highest mean.", "",
             "| candidate | seeds | mean fitness | sd | scores |", "| --- | ---: | ---: | ---: | --- |"]
    for key, values in sorted(scores.items(), key=lambda kv: -float(np.mean(kv[1]))):
        sd = float(np.std(values, ddof=1)) if len(values) > 1 else None
        lines.append(f"| `{key}` | {len(values)} | {_fmt(float(np.mean(values)))} | {_fmt(sd)} | "
                     + ", ".join(f"{v:.4f}" for v in values) + " |")
    return [*lines, "", f"![{caption}]({RESCORE_PLOT})", ""]


def _best_section(best: CandidateView | None) -> list[str]:
    if best is None:
        return ["No candidate finished training.", ""]
    lines = [f"## Best candidate: `{best.key}` (generation {best.generation})", "",
             "| gene | value |", "| --- | --- |"]
    lines += [f"| {gene} | {value} |" for gene, value in best.genes.items()]
    lines += ["", "| validation metric | value |", "| --- | ---: |"]
    for label, value in (("fitness", best.fitness), ("top-1 accuracy", best.accuracy), ("loss", best.loss),
                         ("training time (s)", best.seconds)):
        lines.append(f"| {label} | {_fmt(value)} |")
    return [*lines, ""]


def _test_table(metrics: Mapping[str, Any]) -> list[str]:
    ks = list(metrics.get("ks", []))
    models: Mapping[str, Mapping[str, float]] = metrics.get("models", {})
    header = "| model | " + " | ".join(f"{m}@{k}" for k in ks for m in ("Acc", "Recall", "MRR")) + " |"
    lines = [header, "| --- |" + " ---: |" * (3 * len(ks))]
    for name, values in models.items():
        cells = [_fmt(values.get(f"{m}@{k}")) for k in ks for m in ("accuracy", "recall", "mrr")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


# --- helpers ---------------------------------------------------------------------------------


def _figure(title: str) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _model_loss(curve: TrainingCurve) -> list[str]:
    """The last state's loss output (``s{w-1}_loss``): the model's loss, the one fitness uses."""
    states = sorted((int(m.group(1)), k) for k in curve.test if (m := re.fullmatch(r"s(\d+)_loss", k)))
    others = [k for k in curve.test if "loss" in k and not re.fullmatch(r"s\d+_loss", k)]
    return [states[-1][1], *others] if states else others


def _gene_kind(gene: str) -> str:
    # "activation_2" and "width_2" pool with the other layers' genes of their kind.
    head, _, tail = gene.rpartition("_")
    return head if head and tail.isdigit() else gene


def _gene_kinds(history: RunHistory) -> list[str]:
    kinds: list[str] = []
    for cand in history.candidates:
        for gene in cand.genes:
            if _gene_kind(gene) not in kinds:
                kinds.append(_gene_kind(gene))
    return kinds


def _natural(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def _colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "viridis"]
    return [cmap(i if n <= 10 else i / max(1, n - 1)) for i in range(n)]


def _is_num(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _finite_values(values: Any) -> list[float]:
    return [float(v) for v in values if _is_num(v)]


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"
