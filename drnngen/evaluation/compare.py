"""The DRNN and the baselines on one split, side by side.

Reads the samples of a prepared split (the HDF5 files a Caffe source list
names), scores every model on the very same rows and labels with the one
metric function, and renders the result as JSON, Markdown and a terminal
table. Caffe is not touched here: the DRNN's scores come in as an array
(from :func:`drnngen.runner.forward_scores`), so this module tests without it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from drnngen.data.samples import IntArray, Sessions
from drnngen.errors import UserError
from drnngen.evaluation.baselines import (
    SKNN_K,
    SKNN_SAMPLE,
    Baseline,
    ItemKNN,
    Pop,
    SessionKNN,
    SessionPop,
    TrainSessions,
    VSessionKNN,
)
from drnngen.evaluation.metrics import RankingMetrics, metrics_from_ranks, parse_ks, target_ranks

DRNN = "DRNN"
#: Samples scored per block by the baselines: a [block, N] score matrix at a time.
BLOCK = 4096
METRIC_TITLES = (("accuracy", "Top-K accuracy"), ("recall", "Recall@K"), ("mrr", "MRR@K"))


@dataclass(frozen=True)
class Comparison:
    """Metrics of every model on one split; ``context`` says what was evaluated."""

    ks: tuple[int, ...]
    results: Mapping[str, RankingMetrics]  # model name → metrics, in table order
    context: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Machine-readable form (stable keys, one object per model)."""
        doc = {
            "context": dict(self.context),
            "ks": list(self.ks),
            "models": {name: m.as_dict() for name, m in self.results.items()},
        }
        return json.dumps(doc, indent=2, sort_keys=False) + "\n"

    def to_markdown(self) -> str:
        """One table per metric, models as rows, K as columns; the best value of a column in bold."""
        lines = ["# Evaluation", ""]
        lines += [f"- {key}: `{value}`" for key, value in self.context.items()]
        lines.append("")
        for attr, title in METRIC_TITLES:
            lines += [f"## {title}", "", "| model | " + " | ".join(f"@{k}" for k in self.ks) + " |",
                      "| --- |" + " ---: |" * len(self.ks)]
            best = {k: max(getattr(m, attr)[k] for m in self.results.values()) for k in self.ks}
            for name, m in self.results.items():
                cells = [_bold(f"{getattr(m, attr)[k]:.4f}", getattr(m, attr)[k] == best[k]) for k in self.ks]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
        lines.append(NOTE)
        return "\n".join(lines) + "\n"

    def to_text(self) -> str:
        """The terminal table: a row per model, Acc/Recall/MRR per K."""
        headers = ["model"] + [f"{short}@{k}" for k in self.ks for short in ("Acc", "Rec", "MRR")]
        rows = [[name] + [f"{getattr(m, attr)[k]:.4f}" for k in self.ks for attr, _ in METRIC_TITLES]
                for name, m in self.results.items()]
        widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
        samples = next(iter(self.results.values())).samples if self.results else 0
        out = [f"{samples} test samples; Acc = top-K accuracy, Rec = Recall@K, MRR = MRR@K"]
        for row in [headers, *rows]:
            out.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                                 enumerate(zip(row, widths, strict=True))))
        return "\n".join(out) + "\n"


NOTE = ("Ranks are pessimistic on ties (an item scored equal to the target counts as ranked above it, "
        "as in Caffe's Accuracy layer). With one bought item per sample Recall@K equals top-K accuracy. "
        "POP: most bought in train; S-POP: most viewed in the session, then POP; item-kNN: session "
        "co-occurrence cosine to the last viewed item, then POP; SKNN: summed cosine similarities of the k "
        "most similar of the most recent train sessions sharing an item with the session, then POP; "
        "V-SKNN: the same with the session's views weighted by a linear decay of their position, then POP.")


def _bold(text: str, on: bool) -> str:
    return f"**{text}**" if on else text


def compare(test: Sessions, ks: Iterable[int] | str, baselines: Sequence[Baseline],
            drnn_scores: npt.ArrayLike | None = None,
            context: Mapping[str, Any] | None = None) -> Comparison:
    """Every model on the same samples and labels: the DRNN (when given) first, then the baselines."""
    cutoffs = parse_ks(ks)
    results: dict[str, RankingMetrics] = {}
    if drnn_scores is not None:
        scores = np.asarray(drnn_scores)
        if scores.ndim != 2 or scores.shape[0] != len(test):
            raise UserError(f"the net gave scores of shape {scores.shape} for {len(test)} test samples")
        results[DRNN] = metrics_from_ranks(target_ranks(scores, test.labels), cutoffs)
    for model in baselines:
        ranks = [target_ranks(model.scores(block), block.labels) for block in test.blocks(BLOCK)]
        results[model.name] = metrics_from_ranks(np.concatenate(ranks), cutoffs)
    return Comparison(cutoffs, results, dict(context or {}))


def standard_baselines(train: Sessions, page_item: IntArray, items: int, shrink: float = 20.0, *,
                       sknn_k: int = SKNN_K, sknn_sample: int = SKNN_SAMPLE) -> list[Baseline]:
    """POP, S-POP, item-kNN, SKNN and V-SKNN fitted on the train split (SKNN and V-SKNN share one index)."""
    index = TrainSessions.build(train, page_item, items)
    return [Pop(train, items), SessionPop(train, page_item, items), ItemKNN(train, page_item, items, shrink),
            SessionKNN(train, page_item, items, sknn_k, sknn_sample, index=index),
            VSessionKNN(train, page_item, items, sknn_k, sknn_sample, index=index)]


_INPUT_PAGE = re.compile(r'(?:top|input):\s*"page_(\d+)"')


def deploy_window(deploy: Path) -> int:
    """The number of states w of a deploy net: its ``page_t`` inputs."""
    try:
        text = deploy.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{deploy}: cannot read the deploy net ({exc.strerror})") from exc
    except UnicodeDecodeError:
        raise UserError(f"{deploy}: not a deploy.prototxt (not UTF-8 text)") from None
    states = {int(t) for t in _INPUT_PAGE.findall(text)}
    if not states or states != set(range(len(states))):
        raise UserError(f"{deploy}: no inputs page_0 … page_{{w-1}}; is this a drnngen deploy.prototxt?")
    return len(states)


def deploy_inputs(deploy: Path) -> dict[str, tuple[int, ...]]:
    """The deploy net's Input layer: blob name → shape of one row (the batch dim dropped);
    empty when the net declares its inputs otherwise (then nothing is checked)."""
    text = deploy.read_text()
    at = re.search(r'type:\s*"Input"', text)
    if at is None:
        return {}
    start = text.rfind("layer {", 0, at.start())
    end = text.find("\nlayer {", at.end())
    block = text[max(start, 0): end if end >= 0 else len(text)]
    tops = re.findall(r'top:\s*"([^"]+)"', block)
    shapes = [tuple(int(d) for d in re.findall(r"dim:\s*(-?\d+)", body))[1:]
              for body in re.findall(r"shape\s*\{([^}]*)\}", block)]
    return dict(zip(tops, shapes, strict=False)) if len(tops) == len(shapes) else {}


def write_outputs(comparison: Comparison, folder: Path, stem: str = "evaluation") -> list[Path]:
    """``<stem>.json`` and ``<stem>.md`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, text in ((".json", comparison.to_json()), (".md", comparison.to_markdown())):
        path = folder / f"{stem}{suffix}"
        path.write_text(text)
        written.append(path)
    return written
