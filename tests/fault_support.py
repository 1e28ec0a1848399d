"""Faults the tests inject (not a test module): a disk that fills up mid-write."""

from __future__ import annotations

import errno
import os
from typing import Any

import pytest


def fill_disk_at(monkeypatch: pytest.MonkeyPatch, nth: int) -> None:
    """Make the `nth` os.fdopen from now on fail with ENOSPC (its descriptor closed), as a
    full disk does when the staged writer opens its next temporary file."""
    real_fdopen, calls = os.fdopen, []

    def filling(fd: int, *args: Any, **kwargs: Any) -> Any:
        calls.append(fd)
        if len(calls) == nth:
            os.close(fd)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", filling)
