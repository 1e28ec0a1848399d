"""The output folder of `prepare` and `synth`: what `--force` may replace, and the swap.

A command writes everything into a temporary folder beside its output and swaps it
in at the end (`swap_into_place`): the old folder is renamed aside, the new one
renamed into place, and only then is the old one removed, so a failure at any
point leaves the old folder as it was and nothing half-written.

`--force` replaces only a folder drnngen made for the same command — a dataset
(its `manifest.json` says drnngen made it) or a synthetic log (the marker file
`synth` writes, or exactly the files it writes) — and never a folder that holds
one of the command's input files. An empty folder needs no `--force`.

One command at a time writes an output folder (`output_lock`): a second `prepare`
or `synth -o SAME` while one runs is one line, not a race over the swap.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from drnngen.data.manifest import MANIFEST_FILE, make_temp_dir
from drnngen.errors import UserError

SYNTH_MARKER = ".drnngen-synth.json"
_MANIFEST_LIMIT = 16 << 20  # a manifest.json is a few KiB; a larger one is not ours
_MAX_NAME = 200  # bytes of -o's name: NAME_MAX is 255, and the temporary and lock names add to it


@contextmanager
def output_lock(output: Path, command: str) -> Iterator[None]:
    """Hold the lock of `output` while `command` writes it. The lock file sits beside
    the folder (the folder itself is swapped), is the kernel's (flock: a killed command
    leaves no lock, only a file the next one reuses) and is removed on the way out."""
    _check_name(output)
    path = output.parent / f".{output.name}.drnngen-lock"
    made = [folder for folder in (output.parent, *output.parent.parents) if not folder.exists()]
    try:
        with _locked(path, output, command):
            yield
    finally:
        if not output.exists():  # a failed first write leaves no empty parents behind
            for folder in made:
                try:
                    folder.rmdir()
                except OSError:
                    break


@contextmanager
def _locked(path: Path, output: Path, command: str) -> Iterator[None]:
    while True:
        handle = _open_lock(path, output)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read(200).strip() or "another process"
            handle.close()
            raise UserError(f"{output}: another drnngen is writing it right now ({holder}); "
                            "wait for it to end, or write to another folder") from None
        if _same_file(handle, path):
            break
        handle.close()  # the holder removed it just before we locked: lock the new one
    with handle:
        _say_holder(handle, f"{command}, pid {os.getpid()}")
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # while still held: no one can lock the removed file
            fcntl.flock(handle, fcntl.LOCK_UN)


def _say_holder(handle: TextIO, holder: str) -> None:
    """Write who holds the lock into its file, for the next one's message. Best effort:
    on a full disk the lock holds all the same (it is the flock, not the text)."""
    try:  # unbuffered: a failed write leaves nothing for close() to fail on again
        os.ftruncate(handle.fileno(), 0)
        os.pwrite(handle.fileno(), (holder + "\n").encode(), 0)
    except OSError:
        pass


def _open_lock(path: Path, output: Path) -> TextIO:
    _check_name(output)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("a+", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{output.parent}: cannot create the output folder there ({exc.strerror})") from None


def _same_file(handle: TextIO, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), path.stat())
    except OSError:
        return False


def check_output(output: Path, force: bool, kind: str, recognise: Callable[[Path], str],
                 inputs: Iterable[Path | None] = ()) -> None:
    """Raise a one-line UserError unless `output` may be written (or, with `force`,
    replaced). `recognise(folder)` says why a non-empty folder is not one this
    command may replace (empty when it may); `kind` names such a folder."""
    _check_name(output)
    if output.is_symlink():
        raise UserError(f"{output}: is a link; name a real folder (or the folder it points to)")
    if not output.exists():
        return
    if not output.is_dir():
        raise UserError(f"{output}: is a file, not a folder")
    if not any(output.iterdir()):
        return
    if not force:
        raise UserError(f"{output}: already exists; pass --force to replace it")
    for path in inputs:
        if path is not None and _within(path, output):
            raise UserError(f"{output}: holds {path}, an input of this command; --force would delete it, "
                            "so write to another folder")
    problem = recognise(output)
    if problem:
        raise UserError(f"{output}: {problem}; --force replaces only {kind} — remove it yourself or "
                        "write to another folder")


def _check_name(output: Path) -> None:
    name = Path(output).name
    if name in ("", ".", ".."):
        raise UserError(f"-o {output}: name the folder to create (e.g. -o data), not {str(output)!r}")
    if len(name.encode(errors="surrogateescape")) > _MAX_NAME:  # the temporary names beside it are longer
        raise UserError(f"-o {name[:40]}...: a folder name of at most {_MAX_NAME} bytes, please")


def dataset_problem(folder: Path) -> str:
    """Why `folder` is not a dataset `prepare` made (empty when it is)."""
    manifest = folder / MANIFEST_FILE
    try:
        if not manifest.is_file() or manifest.stat().st_size > _MANIFEST_LIMIT:
            return f"not a drnngen dataset (no {MANIFEST_FILE} of drnngen's)"
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"not a drnngen dataset (its {MANIFEST_FILE} is unreadable)"
    if not (isinstance(data, dict) and str(data.get("created_by", "")).startswith("drnngen")):
        return f"not a drnngen dataset (its {MANIFEST_FILE} is not drnngen's)"
    return ""


def synth_problem(folder: Path, file_sets: Iterable[Iterable[str]]) -> str:
    """Why `folder` is not a log `synth` made (empty when it is): it holds the marker
    and only files the marker lists, or (a log of an older drnngen) exactly the files
    of one format."""
    entries = {p.name: p for p in folder.iterdir()}
    if any(not p.is_file() or p.is_symlink() for p in entries.values()):
        return "not a log drnngen synth wrote (it holds folders or links)"
    if SYNTH_MARKER in entries:
        try:
            listed = json.loads(entries[SYNTH_MARKER].read_text(encoding="utf-8"))["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return f"not a log drnngen synth wrote (its {SYNTH_MARKER} is unreadable)"
        extra = sorted(set(entries) - {SYNTH_MARKER} - {str(name) for name in listed})
        return f"holds {extra[0]}, which drnngen synth did not write" if extra else ""
    if any(set(entries) == set(names) for names in file_sets):
        return ""
    return f"not a log drnngen synth wrote (no {SYNTH_MARKER})"


def temp_folder(output: Path) -> Path:
    """A fresh temporary folder beside `output` (its parents made)."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        return make_temp_dir(f".{output.name}.tmp-", output.parent)
    except OSError as exc:
        raise UserError(f"{output.parent}: cannot create the output folder there ({exc.strerror})") from None


def swap_into_place(tmp: Path, output: Path) -> None:
    """Rename the finished `tmp` to `output`. An existing `output` (the caller checked
    it may go) is renamed aside first and removed only once the new one is in place;
    if the swap fails, it is put back."""
    if not output.exists() or (output.is_dir() and not any(output.iterdir())):
        _rename(tmp, output)  # rename(2) also replaces an empty folder
        return
    old = make_temp_dir(f".{output.name}.old-", output.parent)  # a unique empty name to rename onto
    try:
        os.rename(output, old)
    except OSError as exc:
        old.rmdir()
        raise UserError(f"{output}: cannot move the old folder aside ({exc.strerror})") from None
    try:
        _rename(tmp, output)
    except BaseException:
        os.rename(old, output)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _rename(tmp: Path, output: Path) -> None:
    try:
        os.rename(tmp, output)
    except OSError as exc:
        raise UserError(f"{output}: cannot move the new folder into place ({exc.strerror}); "
                        "did something else write there meanwhile?") from None


def _within(path: Path, folder: Path) -> bool:
    """Whether `path` lies inside `folder` (links resolved)."""
    try:
        return Path(path).resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return True  # cannot tell: do not risk it
