"""`drnngen synth`: seeded, realistic, and with a signal a session model can learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from drnngen.data.synth import ORDER, SynthOptions, generate
from drnngen.errors import UserError
from tests.data_support import read_split, run_prepare, synth_log, yoochoose_spec


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("log_format", ["yoochoose", "gru4rec", "otto"])
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, log_format: str) -> None:
    a = _files(synth_log(tmp_path / "a", sessions=150, seed=4, log_format=log_format))
    b = _files(synth_log(tmp_path / "b", sessions=150, seed=4, log_format=log_format))
    c = _files(synth_log(tmp_path / "c", sessions=150, seed=5, log_format=log_format))
    assert a == b
    assert a.keys() == c.keys() and a != c
    assert "users.csv" in a


def test_the_log_looks_like_a_shop() -> None:
    log = generate(SynthOptions(sessions=3000, seed=2))
    sessions, lengths = np.unique(log.session, return_counts=True)
    assert len(sessions) == 3000 and 5 < lengths.mean() < 12 and lengths.max() > 30
    buyers = np.unique(log.session[log.tag == ORDER])
    assert 0.3 < len(buyers) / 3000 < 0.5  # the default buy rate is 0.4
    assert len(buyers) < np.sum(log.tag == ORDER)  # some orders hold two items
    starts = log.time[np.r_[0, np.flatnonzero(np.diff(log.session)) + 1]]
    assert np.all(np.diff(starts) >= 0)  # session ids follow start time, as on real logs
    within = np.diff(log.time)[np.diff(log.session) == 0]
    assert within.min() >= 0 and 10 < np.median(within) < 60  # dwell: tens of seconds
    _, views = np.unique(log.item[log.tag != ORDER], return_counts=True)
    assert views.max() > 20 * np.median(views)  # long-tailed popularity
    _, visits = np.unique(log.session_user[log.session_user >= 0], return_counts=True)
    assert visits.max() >= 10  # heavy users come back: repeat buyers for the FNN


def test_bad_options_are_user_errors() -> None:
    with pytest.raises(UserError, match="--categories cannot exceed --items"):
        generate(SynthOptions(sessions=10, items=5, categories=6))


def test_a_session_model_beats_popularity_and_users_repeat(tmp_path: Path) -> None:
    """On the prepared data: scoring items by their pages in the session (window and history)
    hits the bought item far more often than the train split's most popular items do."""
    log = synth_log(tmp_path / "log", sessions=3000, seed=8)
    report = run_prepare(yoochoose_spec(log), tmp_path / "data", window=4)
    manifest = report.manifest
    train, test = read_split(report.sources["train"]), read_split(report.sources["test"])
    classes = {key: c for c, key in enumerate(manifest.item_keys())}
    page_class = np.array([classes.get(key, -1) for key in manifest.page_keys()])
    popularity = np.bincount(train["label"].astype(int), minlength=manifest.items)
    scores = np.tile(popularity / popularity.sum() * 1e-3, (len(test["label"]), 1))  # popularity breaks ties
    rows = np.arange(len(test["label"]))
    pages = np.column_stack([test[f"page_{t}"] for t in range(4)]).astype(int)
    for t in range(4):
        cls = page_class[pages[:, t]]
        known = (pages[:, t] > 1) & (cls >= 0)
        np.add.at(scores, (rows[known], cls[known]), 1.0 + test[f"dwell_{t}"][known, 0])
    # the older pages (the sparse history's pairs) add their weights to their items' scores
    older = test["history_ids"][:, 0].astype(int)
    cls = page_class[older]
    known = cls >= 0  # a page and a class can be the same item
    np.add.at(scores, (np.broadcast_to(rows[:, None], older.shape)[known], cls[known]),
              test["history_weights"][:, 0][known])
    top = np.argsort(-scores, axis=1)[:, :10]
    label = test["label"].astype(int)
    session_recall = np.mean([label[i] in top[i] for i in rows])
    popular_recall = np.isin(label, np.argsort(-popularity)[:10]).mean()
    print(f"recall@10: session {session_recall:.2f}, popularity {popular_recall:.2f}")
    assert session_recall > 2 * popular_recall and session_recall > 0.5, (session_recall, popular_recall)
    assert (test["user_items"][:, 0] < manifest.items).any(axis=1).mean() > 0.3  # known repeat buyers
