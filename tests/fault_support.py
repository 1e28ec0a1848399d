"""Faults the tests inject (not a test module): a disk that fills up mid-write."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
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


@contextmanager
def tmpfs(point: Path, size: str) -> Iterator[Path]:
    """A fresh tmpfs of `size` mounted at `point` (made here), lazily unmounted afterwards;
    the test is skipped, with the reason, where mounting is refused (it needs root)."""
    point.mkdir()
    mount = shutil.which("mount")
    if mount is None:
        pytest.skip("no mount(8) here to make a small tmpfs")
    done = subprocess.run([mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)
