"""The one in-memory form every reader produces: a columnar event log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from drnngen.data.textscan import Floats, Ints

VIEW = 0  # a page view (a click; OTTO's carts too: they happen on the item's page)
PURCHASE = 1

Kinds = npt.NDArray[np.int8]
Keys = npt.NDArray[np.bytes_]
MISSING_USER = -1
_MISSING_WORDS = (b"", b"NA", b"na", b"null", b"NULL", b"None", b"nan", b"NaN", b"-")


@dataclass
class EventChunk:
    """Events parsed from one chunk. Ids are integers (the file's own) or raw bytes keys."""

    session: Ints | Keys
    item: Ints | Keys
    time: Floats
    kind: Kinds
    user: Keys | None = None


@dataclass
class EventLog:
    """All events of a log, one entry per event, in file order.

    `session` and `item` hold the file's integer ids, or dense codes when the file's ids
    are not integers (then `item_names[code]` and `session_names[code]` are the original
    ids). `split` is set when the splits come as files: 0 train, 1 val, 2 test.
    """

    session: Ints
    item: Ints
    time: Floats
    kind: Kinds
    user: Ints  # dense user code, MISSING_USER where unknown
    item_names: list[str] | None
    files: list[dict[str, Any]] = field(default_factory=list)
    split: npt.NDArray[np.int8] | None = None
    session_names: list[str] | None = None

    def keep(self, mask: npt.NDArray[np.bool_]) -> None:
        """Drop the events where `mask` is False (the filters of `prepare`)."""
        self.session, self.item, self.time = self.session[mask], self.item[mask], self.time[mask]
        self.kind, self.user = self.kind[mask], self.user[mask]
        if self.split is not None:
            self.split = self.split[mask]

    def __len__(self) -> int:
        return len(self.time)


class KeyTable:
    """Dense integer codes for ids that are not integers; the names are kept for decoding."""

    def __init__(self) -> None:
        self._codes: dict[bytes, int] = {}

    def encode(self, keys: Keys) -> Ints:
        """Codes of `keys`, adding new ones (Python work per distinct key, not per event)."""
        uniques, inverse = np.unique(keys, return_inverse=True)
        codes = self._codes
        mapped = np.fromiter(
            (codes.setdefault(key, len(codes)) for key in uniques.tolist()), dtype=np.int64, count=len(uniques)
        )
        return mapped[inverse.ravel()]

    def lookup(self, keys: Keys) -> Ints:
        """Codes of `keys` without adding any (-1 where unknown)."""
        uniques, inverse = np.unique(keys, return_inverse=True)
        mapped = np.fromiter((self._codes.get(key, -1) for key in uniques.tolist()), np.int64, len(uniques))
        return mapped[inverse.ravel()]

    def names(self) -> list[str]:
        """Original ids in code order."""
        return [key.decode("utf-8", errors="replace") for key in self._codes]


def encode_users(table: KeyTable, keys: Keys) -> Ints:
    """User codes; empty and NA-like values mean an unknown user."""
    codes = table.encode(keys)
    return np.where(np.isin(keys, np.array(_MISSING_WORDS)), MISSING_USER, codes)
