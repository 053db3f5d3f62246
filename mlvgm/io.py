"""Writing results safely: every file appears whole or not at all, and bad output paths fail early.

Files are written to a temporary sibling and moved into place with os.replace (atomic on POSIX), so a
crash or Ctrl-C never leaves a half-written figure, table or checkpoint where a reader expects one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mlvgm.errors import InputError

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: files we write get the permissions open() would have given them


def check_output_dir(folder: str | os.PathLike, *, flag: str = "--out") -> Path:
    """`folder` if it exists and we can create files in it, else InputError naming the fix."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"folder {folder} does not exist: create it first or choose another {flag}")
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder: choose another {flag}")
    try:  # os.access lies for root on read-only folders; trying is the only honest check
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise InputError(f"cannot write in folder {folder} ({exc.strerror}): choose another {flag}") from None
    return folder


def check_creatable(folder: str | os.PathLike, *, flag: str = "--out") -> Path:
    """`folder` if it can be written to now or created later, without creating anything: it is a writable
    folder, or its nearest existing parent is. Commands check this first and create the folder only when
    they write, so bad input never leaves an empty folder behind."""
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise InputError(f"{probe} is a file, not a folder: choose another {flag}")
    check_output_dir(probe, flag=flag)
    return folder


def make_output_dir(folder: str | os.PathLike, *, flag: str = "--out") -> Path:
    """Create `folder` (and its parents) if needed; InputError naming the flag when that fails."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {flag} folder {folder} ({exc.strerror}): choose another {flag}") from None
    return check_output_dir(folder, flag=flag)


def check_output_file(path: str | os.PathLike, *, flag: str = "--out", suffixes: tuple[str, ...] = ()) -> Path:
    """`path` if it can be written (its folder exists and is writable, or can be created: see
    check_creatable) and, when given, its suffix is one of `suffixes`."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise InputError(f"{flag} {path} must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise InputError(f"{flag} {path} is a folder: give a file name")
    check_creatable(path.parent if str(path.parent) else Path("."), flag=flag)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on error it is removed. Missing
    parent folders are created (callers check the location first: check_output_file, check_creatable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    try:
        yield Path(tmp)
        # the mode open() would have given: mkstemp makes 0600 files, and so do writers that recreate the
        # file they are handed (safetensors' save_file)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
