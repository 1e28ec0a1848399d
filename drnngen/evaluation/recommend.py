"""`drnngen recommend`'s library half: the top-K items after every prefix of a log's
sessions, from a trained net or a baseline, in session-rec's CSV layout.

The layout is what session-rec's `Saver` metric writes and its `ResultFile` model reads
back (``pd.read_csv(file, sep=';')``)::

    SessionId;Position;Recommendations;Scores
    11;0;214829888,214821371,…;0.0812,0.0633,…

one row per session and position p (the list shown after the session's first p + 1 page
views, to be judged against view p + 1), items best first, as many as K.

The input rows come from the data package (`drnngen.data.prefixes`): the same code that
makes `prepare`'s rows. The net runs in Caffe's child process through
:func:`drnngen.runner.forward_scores`, one chunk of rows at a time, so the ``[rows, N]``
score matrix never has to fit in memory whole; the baselines are fitted on the dataset's
train split as `drnngen evaluate` fits them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from drnngen.data.manifest import Manifest, load_manifest
from drnngen.data.prefixes import PrefixRows, read_prefixes, write_prefix_rows
from drnngen.data.readers import LogSpec
from drnngen.data.samples import load_sessions
from drnngen.data.windows import layout
from drnngen.errors import UserError
from drnngen.evaluation.baselines import SKNN_K, SKNN_SAMPLE, Baseline
from drnngen.evaluation.compare import BLOCK, deploy_inputs, deploy_window, standard_baselines
from drnngen.evaluation.evaluate import SCORE_BLOB, NetUnderTest, ScoreFn, page_item_map

HEADER = "SessionId;Position;Recommendations;Scores"
#: Score matrix bytes of one chunk of rows (float32): bounds the memory of a recommend run.
SCORE_BYTES = 256 << 20
BASELINES = ("POP", "S-POP", "item-kNN", "SKNN", "V-SKNN")
DRNN = "DRNN"
Progress = Callable[[str], None]
FloatArray = npt.NDArray[np.float64]


class Scorer(ABC):
    """A model that scores all N item classes for every row of a chunk of prefix rows."""

    name: str
    window: int

    @abstractmethod
    def scores(self, chunk: Path) -> Iterator[npt.NDArray[Any]]:
        """Score blocks ``[b, N]`` of the rows the HDF5 list file `chunk` names, in order."""


class NetScorer(Scorer):
    """A trained DRNN: its deploy net's softmax, through Caffe in a child process."""

    name = DRNN

    def __init__(self, net: NetUnderTest, items: int, *, mode: str = "cpu",
                 scores_of: ScoreFn | None = None) -> None:
        for path, what in ((net.deploy, "deploy net"), (net.weights, "weights")):
            if not path.is_file():
                raise UserError(f"{path}: no such {what} file")
        self.net = net
        self.items = items
        self.mode = mode
        self.window = deploy_window(net.deploy)
        self._scores_of = scores_of

    def check_inputs(self, manifest: Manifest) -> None:
        """A one-line UserError when the deploy net reads rows of another layout than the
        dataset's (Caffe would fail later, in a shape check deep inside a layer)."""
        rows = layout(self.window, manifest.pages, manifest.items, manifest.layout)
        where = (f"sparse layout, K={manifest.layout.history_k}, U={manifest.layout.user_items_k}"
                 if manifest.layout.sparse else "dense layout")
        for name, shape in deploy_inputs(self.net.deploy).items():
            if name not in rows:
                raise UserError(f"{self.net.deploy}: the net reads {name}, which the dataset's rows lack ({where}); "
                                "build the net for this dataset (`drnngen build --data`)")
            if shape != rows[name]:
                raise UserError(f"{self.net.deploy}: the net's {name} is {list(shape)} a row, the dataset's "
                                f"{list(rows[name])} ({where}); build the net for this dataset "
                                "(`drnngen build --data`)")

    def scores(self, chunk: Path) -> Iterator[npt.NDArray[Any]]:
        if self._scores_of is not None:
            scores = self._scores_of(self.net.deploy, self.net.weights, chunk, SCORE_BLOB)
        else:
            from drnngen.runner import forward_scores
            from drnngen.runner.jobs import check_mode

            scores = forward_scores(self.net.deploy, self.net.weights, chunk, SCORE_BLOB, mode=check_mode(self.mode))
        if scores.ndim != 2 or scores.shape[1] != self.items:
            raise UserError(f"{self.net.deploy}: the net scores {scores.shape[-1]} items but the dataset has "
                            f"N={self.items}; was it built for this dataset (`drnngen build --data`)?")
        yield scores


class BaselineScorer(Scorer):
    """One of `drnngen evaluate`'s baselines, fitted on the dataset's train split of `window`."""

    def __init__(self, name: str, manifest: Manifest, window: int, *, shrink: float = 20.0,
                 sknn_k: int = SKNN_K, sknn_sample: int = SKNN_SAMPLE) -> None:
        if name not in BASELINES:
            raise UserError(f"--model: unknown model {name!r} (one of {DRNN}, {', '.join(BASELINES)})")
        self.name = name
        self.window = window
        train = load_sessions(manifest.sources(window)["train"])
        models = standard_baselines(train, page_item_map(manifest), manifest.items, shrink,
                                    sknn_k=sknn_k, sknn_sample=sknn_sample)
        self.model: Baseline = next(model for model in models if model.name == name)

    def scores(self, chunk: Path) -> Iterator[npt.NDArray[Any]]:
        for block in load_sessions(chunk).blocks(BLOCK):
            yield self.model.scores(block)


@dataclass(frozen=True)
class RecommendReport:
    """What `recommend` wrote."""

    output: Path
    rows: int
    sessions: int
    k: int
    model: str


def recommend(spec: LogSpec, data: Path, scorer: Scorer | Callable[[Manifest], Scorer], k: int, output: Path,
              progress: Progress, filtered: bool = True) -> RecommendReport:
    """Write the top-`k` items of every prefix of `spec`'s log to `output` (session-rec's CSV).

    `scorer` may be a factory called with the dataset's manifest (a baseline needs it).
    `filtered`: the log goes through the dataset's filters first, as prepare's files did.
    """
    if k < 1:
        raise UserError(f"-k: the list length must be >= 1, got {k}")
    _check_output(output, spec)
    manifest = load_manifest(data)
    if manifest.target != "next-item":  # its classes are items bought; the lists judge next clicks
        raise UserError(f"{manifest.root}: prepared with --target {manifest.target}; recommend writes next-view "
                        "lists (session-rec's protocol), so it needs a dataset prepared with --target next-item")
    model = scorer if isinstance(scorer, Scorer) else scorer(manifest)
    if isinstance(model, NetScorer):
        model.check_inputs(manifest)
    item_ids = _item_ids(manifest)
    prefixes = read_prefixes(spec, manifest, progress, filtered)
    rows_per_chunk = max(1, SCORE_BYTES // (4 * manifest.items))
    try:
        with tempfile.TemporaryDirectory(prefix=".drnngen-recommend-", dir=output.parent) as tmp:
            rows = write_prefix_rows(prefixes, manifest, model.window, Path(tmp), rows_per_chunk, progress)
            with _StagedFile(output) as out:
                out.write(HEADER + "\n")
                written = _write_lists(out, rows, model, item_ids, k, progress)
    except OSError as exc:  # the input rows or the list: a full disk, a read-only folder
        raise UserError(f"{output}: cannot write ({exc.strerror or exc}); nothing was changed") from None
    if written != prefixes.samples.samples:
        raise UserError(f"{model.name} scored {written} rows of {prefixes.samples.samples}")  # pragma: no cover
    return RecommendReport(output, written, len(set(prefixes.session)), k, model.name)


def _write_lists(out: IO[str], rows: PrefixRows, model: Scorer, item_ids: npt.NDArray[np.str_], k: int,
                 progress: Progress) -> int:
    sessions, positions = rows.prefixes.session, rows.prefixes.position.tolist()
    _check_ids(sessions, "session")
    done = 0
    for chunk in rows.chunks:
        for scores in model.scores(chunk):
            top, values = top_k(scores, k)
            if done + len(top) > len(sessions):
                raise UserError(f"{model.name} scored more rows than the {len(sessions):,} prefixes")
            ids = item_ids[top]
            text = np.char.mod("%.7g", values)
            for row in range(len(top)):
                out.write(f"{sessions[done]};{positions[done]};{','.join(ids[row])};{','.join(text[row])}\n")
                done += 1
        progress(f"recommend: {done:,} of {len(sessions):,} lists")
    return done


def top_k(scores: npt.ArrayLike, k: int) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """Per row, the indices and scores of the `k` best items (all when fewer), best first;
    equal scores in index order, a NaN score (a diverged net) last."""
    matrix = np.asarray(scores)
    if matrix.dtype.kind != "f":  # float32 scores stay as they are: no [rows, N] float64 copy
        matrix = matrix.astype(np.float64)
    if np.isnan(matrix).any():
        matrix = np.where(np.isnan(matrix), -np.inf, matrix)
    keep = min(k, matrix.shape[1])
    if keep < matrix.shape[1]:
        picked = np.argpartition(-matrix, keep - 1, axis=1)[:, :keep]
    else:
        picked = np.broadcast_to(np.arange(matrix.shape[1]), matrix.shape).copy()
    values = np.take_along_axis(matrix, picked, axis=1).astype(np.float64)
    order = np.lexsort((picked, -values), axis=-1)
    return np.take_along_axis(picked, order, axis=1).astype(np.int64), np.take_along_axis(values, order, axis=1)


def _item_ids(manifest: Manifest) -> npt.NDArray[np.str_]:
    keys = [str(key) for key in manifest.item_keys()]
    if len(keys) != manifest.items:
        raise UserError(f"{manifest.root}: the item id map has {len(keys)} ids, the manifest says N={manifest.items}")
    _check_ids(keys, "item")
    return np.array(keys, dtype=np.str_)


def _check_ids(ids: list[str], what: str) -> None:
    """session-rec's layout has no quoting: an id holding `;` or `,` cannot be written."""
    bad = next((value for value in ids if ";" in value or "," in value or "\n" in value), None)
    if bad is not None:
        raise UserError(f"the {what} id {bad!r} holds ';' or ',', which session-rec's CSV layout cannot quote")


def _check_output(output: Path, spec: LogSpec) -> None:
    if output.is_dir():
        raise UserError(f"-o {output}: is a folder; name the CSV file to write")
    for path in spec.inputs():
        if path is not None and output.resolve() == path.resolve():
            raise UserError(f"-o {output}: is an input of this command; write to another file")
    if not output.parent.is_dir():
        raise UserError(f"-o {output}: no folder {output.parent}")


class _StagedFile:
    """A text file written beside `target` and renamed onto it only when complete, so an
    error or a full disk leaves the old file (or none), never a half-written one."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.handle: IO[str] | None = None
        self.name = ""

    def __enter__(self) -> IO[str]:
        try:
            fd, self.name = tempfile.mkstemp(prefix=f".{self.target.name}.", dir=self.target.parent)
        except OSError as exc:
            raise UserError(f"{self.target}: cannot write ({exc.strerror})") from None
        try:
            self.handle = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        except OSError as exc:
            with contextlib.suppress(OSError):  # closed already where fdopen closed it
                os.close(fd)
            Path(self.name).unlink(missing_ok=True)
            raise UserError(f"{self.target}: cannot write ({exc.strerror}); nothing was changed") from None
        return self.handle

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        assert self.handle is not None
        problem: OSError | None = None
        try:
            self.handle.close()
            if kind is None:
                mask = os.umask(0)
                os.umask(mask)
                os.chmod(self.name, 0o666 & ~mask)  # mkstemp makes it private
                os.replace(self.name, self.target)
        except OSError as exc:
            problem = exc
        if kind is not None or problem is not None:
            Path(self.name).unlink(missing_ok=True)
        if problem is not None:
            raise UserError(f"{self.target}: cannot write ({problem.strerror}); nothing was changed") from None
