"""A tuning run folder (``drnngen tune``) as evaluation and reports need it.

Candidates, their outcomes, the run parameters and each generation's final
population come through the tuner's :class:`drnngen.tuner.ledger.Ledger`,
the only code that reads or writes the ledger's tables.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from drnngen.codegen.build import DEPLOY, generate
from drnngen.codegen.config import parse_config
from drnngen.codegen.graph import model_outputs
from drnngen.errors import UserError
from drnngen.evaluation.caffe_log import TrainingCurve, parse_caffe_log
from drnngen.evaluation.evaluate import NetUnderTest
from drnngen.evaluation.report import CandidateView, Member, RunHistory
from drnngen.tuner.candidate import TRAIN_LOSS_FILE
from drnngen.tuner.codec import describe, from_list
from drnngen.tuner.ledger import CandidateRow, Ledger
from drnngen.tuner.params import TuneParams
from drnngen.tuner.space import SearchSpace
from drnngen.vocabulary import short_key

#: What `drnngen evaluate RUN` writes; `drnngen report RUN` embeds it when present.
EVALUATION_JSON = "evaluation.json"
CAFFE_LOG = "caffe.log"


def trained_net(run: Path, candidate: str | None = None) -> NetUnderTest:
    """The best candidate of ``run`` (or the one whose key starts with ``candidate``) as a net to evaluate."""
    ledger = Ledger.open(run, read_only=True)
    try:
        rows, space = ledger.candidates(), _space(ledger)
        row = _pick(rows, candidate, run) if candidate else ledger.best()
    finally:
        ledger.close()
    if row is None:
        raise UserError(f"{run}: no candidate has trained successfully yet")
    if not row.outcome.ok:
        raise UserError(f"{run}: candidate {short_key(row.key)} did not train "
                        f"({row.outcome.status}: {row.outcome.error})")
    weights = Path(row.outcome.caffemodel or "")
    if not weights.is_file():
        raise UserError(f"{run}: the weights of candidate {short_key(row.key)} ({weights}) are gone")
    label = {"run": str(run), "candidate": short_key(row.key), "genotype": describe(row.genotype, space),
             "validation_fitness": row.outcome.fitness}
    return NetUnderTest(_deploy_of(row, run), weights, label)


def run_dataset(run: Path) -> Path:
    """The prepared dataset a tuning run trained on (`drnngen tune --data`)."""
    ledger = Ledger.open(run)
    try:
        return Path(TuneParams.from_json(ledger.params).data)
    finally:
        ledger.close()


def run_history(run: Path) -> RunHistory:
    """Everything `drnngen report` plots, read from the run folder."""
    ledger = Ledger.open(run, read_only=True)
    try:
        rows, space, best, populations = ledger.candidates(), _space(ledger), ledger.best(), ledger.populations()
        scores = {short_key(key): values for key, values in ledger.scores().items()}
    finally:
        ledger.close()
    _check_rows(run, rows, populations)
    candidates = [_candidate(row, space) for row in rows]
    best_view = next((c for c in candidates if best is not None and c.key == short_key(best.key)), None)
    return RunHistory(
        name=Path(run).resolve().name,
        candidates=candidates,
        populations={gen: [Member(genes_of(m["genotype"], space), _finite_or_none(m.get("fitness")))
                           for m in members] for gen, members in populations.items()},
        best=best_view,
        best_curve=_readable(run, _curve, best),
        test_metrics=_evaluation(run),
        scores=scores,
    )


# --- pieces ---------------------------------------------------------------------------------

def _check_rows(run: Path, rows: Sequence[CandidateRow], populations: dict[int, list[dict[str, Any]]]) -> None:
    """What the plots rely on, checked once: a ledger tampered with (values out of
    range, generations naming candidates it lacks) is one line, not a plotting error."""
    known = {row.key for row in rows}
    for gen, members in populations.items():
        missing = [m.get("key") for m in members if isinstance(m, dict) and m.get("key") not in known]
        if missing:
            raise UserError(f"{run}: a damaged ledger (generation {gen} names candidate "
                            f"{str(missing[0])[:16]}, which it does not hold)")
    for row in rows:
        o = row.outcome
        if not (o.accuracy is None or 0 <= o.accuracy <= 1) or not (o.loss is None or abs(o.loss) < 1e30):
            raise UserError(f"{run}: a damaged ledger (candidate {short_key(row.key)}: accuracy {o.accuracy}, "
                            f"loss {o.loss})")


def _readable(run: Path, read: Any, *args: Any) -> Any:
    """`read(*args)` of what the ledger recorded; a value of the wrong kind is one line."""
    try:
        return read(*args)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UserError(f"{run}: a damaged ledger ({type(exc).__name__}: {str(exc)[:120]})") from None



def _space(ledger: Ledger) -> SearchSpace:
    return TuneParams.from_json(ledger.params).search_space()


def _pick(rows: Sequence[CandidateRow], prefix: str, run: Path) -> CandidateRow:
    found = [row for row in rows if row.key.startswith(prefix)]
    if len(found) != 1:
        what = "no candidate" if not found else f"{len(found)} candidates"
        raise UserError(f"--candidate {prefix[:40]}: {what} of {run} has a key starting so "
                        "(keys are the candidates/ folder names)")
    return found[0]


def _deploy_of(row: CandidateRow, run: Path) -> Path:
    """The candidate's deploy.prototxt; regenerated from its config when its folder lacks one
    (a result taken from the shared cache was never written into this run)."""
    if row.folder and (Path(row.folder) / DEPLOY).is_file():
        return Path(row.folder) / DEPLOY
    target = Path(run) / "evaluation" / short_key(row.key) / DEPLOY
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(generate(parse_config(yaml.safe_load(row.config)))[DEPLOY])
    return target


def genes_of(genotype: Sequence[Any], space: SearchSpace) -> dict[str, Any]:
    """Named genes in chromosome order; per-layer genes numbered from 1."""
    g = from_list(genotype, space)
    genes: dict[str, Any] = {"states": g.states, "layers": g.layers, "shortcut": g.shortcut}
    genes.update({f"activation_{i + 1}": a for i, a in enumerate(g.activations)})
    genes.update({f"width_{i + 1}": e for i, e in enumerate(g.widths)})
    if g.base_lr is not None:
        genes["base_lr"] = g.base_lr
    if g.batch_size is not None:
        genes["batch_size"] = g.batch_size
    if g.cell is not None:  # the hidden layer's update (drnn or gru) when the space makes it a gene
        genes["cell"] = g.cell
    return genes


def _candidate(row: CandidateRow, space: SearchSpace) -> CandidateView:
    out = row.outcome
    return CandidateView(key=short_key(row.key), generation=row.generation, genes=genes_of(row.genotype, space),
                     fitness=out.fitness if out.ok else None, accuracy=out.accuracy, loss=out.loss,
                     seconds=out.solver_seconds, status=out.status)


def _curve(best: CandidateRow | None) -> TrainingCurve:
    """The best candidate's curve: train losses (its caffe.log, else what the runner
    recorded), every validation point the runner made (from the ledger), the kept
    snapshot and where training stopped.

    A ledger without validation points (a run from before they were recorded)
    shows the final validation test alone.
    """
    if best is None or not best.outcome.ok:
        return TrainingCurve()
    curve = TrainingCurve()
    if best.folder and (Path(best.folder) / CAFFE_LOG).is_file():
        with (Path(best.folder) / CAFFE_LOG).open(errors="replace") as lines:
            curve = parse_caffe_log(lines)
    if not curve.train_loss and best.folder:
        curve = TrainingCurve(_recorded_train_loss(Path(best.folder)), curve.test,
                              "train loss (last state, mean per interval)")
    o = best.outcome
    loss_blob, _ = model_outputs(parse_config(yaml.safe_load(best.config)))
    points = [(int(v["iteration"]), {loss_blob: float(v["loss"]), **v["accuracy"]}) for v in o.validations]
    if not points:
        kept = o.best_iteration or o.iterations
        points = [(kept, {**o.metrics, loss_blob: o.loss})]
    test = dict(curve.test)
    for iteration, values in points:
        for name, value in values.items():
            if value is not None and not any(it == iteration for it, _ in test.get(name, ())):
                test[name] = (*test.get(name, ()), (iteration, float(value)))
    stopped = (o.iterations, o.stop_reason) if o.stop_reason else None
    return TrainingCurve(curve.train_loss, test, curve.train_label, kept=o.best_iteration, stopped=stopped)


def _recorded_train_loss(folder: Path) -> tuple[tuple[int, float], ...]:
    """The train losses the runner measured (written by the tuner), if any."""
    try:
        points = json.loads((folder / TRAIN_LOSS_FILE).read_text())
    except (OSError, ValueError):
        return ()
    return tuple((int(i), float(v)) for i, v in points)


def _evaluation(run: Path) -> dict[str, Any] | None:
    path = Path(run) / EVALUATION_JSON
    if not path.is_file():
        return None
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable ({exc}); run `drnngen evaluate` again") from None
    return doc


def _finite_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None
