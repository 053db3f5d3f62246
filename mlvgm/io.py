"""Writing results safely: every file appears whole or not at all, and bad output paths fail early.

Files are written to a temporary sibling and moved into place with os.replace (atomic on POSIX), so a
crash or Ctrl-C never leaves a half-written figure, table or checkpoint where a reader expects one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import stat
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


# --- reading files a user was handed ------------------------------------------------------------------
# Run folders, walkers and weights travel between people as checkpoints do, so every reader treats them as
# untrusted: a path must be a regular file (a FIFO or device would block or never end), a name a run folder
# gives stays inside it, and a side file is read with a size cap and a nesting cap before anything trusts it.

JSON_MAX_BYTES = 16 * 2**20  # our largest side file (a benchmark JSON) is about 1 MB
JSON_MAX_DEPTH = 32  # our files nest at most 6 deep


def check_regular_file(path: str | os.PathLike, *, what: str = "file", fix: str = "give a regular file") -> Path:
    """`path` if it is a regular file (a symlink to one counts), else InputError naming `what` and `fix`:
    missing, a folder, or a FIFO, socket or device, which would block or never end when read."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist: {fix}") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path} ({exc.strerror}): {fix}") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{what} {path} is a folder, not a file: {fix}")
    if not stat.S_ISREG(mode):
        raise InputError(f"{what} {path} is not a regular file (a FIFO, socket or device): {fix}")
    return path


def inside(folder: str | os.PathLike, name: object, *, what: str, fix: str, pattern: str | None = None) -> Path:
    """folder/name, where `name` (read from a file in `folder`) is a bare file name, matching the regular
    expression `pattern` when given, and the path, symlinks resolved, is still inside `folder`. Anything
    else (an absolute or ../ name, a link out of the folder) is InputError: a shared folder must not make us
    read, overwrite or delete files elsewhere."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise InputError(f"{what} names {name!r}, which is not a file name inside {folder}: {fix}")
    if pattern is not None and not re.fullmatch(pattern, name):
        raise InputError(f"{what} names {name!r}, not a name of the form this folder holds: {fix}")
    path = Path(folder) / name
    if path.is_symlink() or path.exists():
        real, root = path.resolve(), Path(folder).resolve()
        if real.parent != root:
            raise InputError(f"{what} {path} is a link to {real}, outside {folder}: {fix}")
    return path


def read_bytes_capped(path: str | os.PathLike, max_bytes: int, *, what: str = "file", fix: str = "") -> bytes:
    """The bytes of the regular file `path`, or InputError when it holds more than `max_bytes` (read no
    further: /dev/zero or a huge file costs nothing)."""
    path = check_regular_file(path, what=what, fix=fix or "give a regular file")
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"cannot read {what} {path} ({exc.strerror}): {fix}") from None
    if len(data) > max_bytes:
        raise InputError(f"{what} {path} is larger than {max_bytes:,} bytes, more than such a file ever holds: {fix}")
    return data


def read_json(
    path: str | os.PathLike,
    *,
    what: str = "JSON file",
    fix: str = "give the file mlvgm wrote",
    max_bytes: int = JSON_MAX_BYTES,
    max_depth: int = JSON_MAX_DEPTH,
    finite: bool = True,  # reject NaN and Infinity, which JSON itself does not have
) -> object:
    """A JSON file a user may have been handed: a regular file, at most `max_bytes`, valid UTF-8 JSON nested at
    most `max_depth` deep, without NaN or Infinity when `finite`. Every failure is one InputError line."""
    data = read_bytes_capped(path, max_bytes, what=what, fix=fix)

    def no_constants(token: str):
        raise ValueError(f"{token} is not a JSON number")

    try:
        value = json.loads(data, parse_constant=no_constants if finite else None)
    except RecursionError:
        raise InputError(f"{what} {path} is nested too deeply: {fix}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{what} {path} is not valid JSON ({getattr(exc, 'msg', exc)}): {fix}") from None
    if json_depth(value) > max_depth:
        raise InputError(f"{what} {path} is nested more than {max_depth} deep: {fix}")
    return value


def json_depth(value: object) -> int:
    """How deeply lists and objects nest in a JSON value (a scalar: 0), without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        todo.extend((child, depth + 1) for child in children)
    return deepest


_KINDS = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    list: "a list",
    dict: "an object",
}


def field(
    record: dict,
    key: str,
    kind: type,
    *,
    where: str,  # the file (and place in it) the record came from
    fix: str,
    low: float | None = None,  # inclusive bounds for numbers, and for the length of a list or string
    high: float | None = None,
    default: object = ...,  # returned when the key is absent (else absence is an error)
):
    """record[key] checked to be of `kind` (an int is a float; a bool is neither) and within [low, high]:
    the one place each reader validates what it parsed, so a wrong type or range is one InputError line."""
    if not isinstance(record, dict):
        raise InputError(f"{where} must be a JSON object, got {type(record).__name__}: {fix}")
    if key not in record:
        if default is not ...:
            return default
        raise InputError(f"{where} has no {key!r}: {fix}")
    value = record[key]
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        raise InputError(f"{where}: {key} must be {_KINDS.get(kind, kind.__name__)}, got {_short(value)}: {fix}")
    size = len(value) if isinstance(value, list | str | dict) else value
    if (low is not None and size < low) or (high is not None and size > high):
        span = f"between {low:g} and {high:g}" if low is not None and high is not None else (
            f"at least {low:g}" if low is not None else f"at most {high:g}")  # fmt: skip
        measure = "its length" if isinstance(value, list | str | dict) else key
        raise InputError(f"{where}: {measure} must be {span}, got {_short(value)}: {fix}")
    return float(value) if kind is float else value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."
