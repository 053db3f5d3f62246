"""What every `python -m mlvgm.*` command shares: one-line errors, exit status 2, logging, device choice.

    if __name__ == "__main__":
        sys.exit(run(main, "python -m mlvgm.grid"))

`run` calls `main(argv)` and turns bad input (an `InputError`, raised by the config parser or any
check) into one line on stderr and exit status 2, never a traceback. It also routes the library's
`logging` messages (mlvgm.*) to stdout as plain lines: the library logs, the commands print.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from mlvgm.errors import InputError

if TYPE_CHECKING:
    import torch


class _NoCudaHomeNotice(logging.Filter):
    """torch's C++ builder warns on every CPU-only compile that it found CUDA_HOME but no CUDA runtime:
    true of every CPU machine with a CUDA toolkit installed, and nothing a user can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No CUDA runtime is found")


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is when a record comes (a redirected or captured stdout included)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ sets it; the property decides
        pass


def setup_logging(level: int = logging.INFO) -> None:
    """mlvgm's log records as plain lines on stdout (once per process); torch's CUDA_HOME notice dropped."""
    logger = logging.getLogger("mlvgm")
    if not any(isinstance(h, _StdoutHandler) for h in logger.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
    # added before torch is imported (a command checks its arguments first); harmless where CUDA runs
    cpp = logging.getLogger("torch.utils.cpp_extension")
    if not any(isinstance(f, _NoCudaHomeNotice) for f in cpp.filters):
        cpp.addFilter(_NoCudaHomeNotice())


def run(main: Callable[[Sequence[str] | None], object], prog: str, argv: Sequence[str] | None = None) -> int:
    """Call main(argv); bad input becomes one line on stderr and exit status 2, Ctrl-C exit status 130.
    main may return an int exit status (a benchmark comparison's 1 for a regression); anything else is 0."""
    setup_logging()
    try:
        result = main(argv)
    except InputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; files already written are complete, nothing is half-written", file=sys.stderr)
        return 130
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def launched_rank() -> int:
    """The rank torchrun gave this process (0 without torchrun), readable before any initialisation."""
    return int(os.environ.get("RANK", "0"))


def launched_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available else cpu; 'cpu', 'cuda', 'cuda:N' checked against this machine."""
    import torch  # here, not at the top: a command's argument errors come before torch loads

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {name} asked for, but CUDA is not available here: use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"device {name} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise InputError(f"device {name!r} is not supported: use auto, cpu, cuda or cuda:N")
    return device
