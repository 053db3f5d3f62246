"""What every `python -m mlvgm.*` command shares: one-line errors, exit status 2, device choice."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import torch

from mlvgm.errors import InputError


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (not usage + error) and exits with status 2."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def run(main: Callable[[Sequence[str] | None], object], prog: str, argv: Sequence[str] | None = None) -> int:
    """Call main(argv); bad input becomes one line on stderr and exit status 2, never a traceback."""
    try:
        main(argv)
    except InputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; files already written are complete, nothing is half-written", file=sys.stderr)
        return 130
    return 0


def add_generator_args(parser: argparse.ArgumentParser, *, seed_help: str) -> None:
    """--generator, --seed and --device, spelled the same in every command."""
    from mlvgm.generators import available_generators

    parser.add_argument("--generator", default="shapes", help=f"generator spec: {', '.join(available_generators())}")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help=seed_help)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available else cpu; 'cpu', 'cuda', 'cuda:N' checked against this machine."""
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


def _typed(convert: Callable[[str], object], accept: Callable, expected: str) -> Callable[[str], object]:
    """An argparse `type=` that converts and range-checks, failing with 'expected ..., got ...'."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    return parse


positive_int = _typed(int, lambda v: v > 0, "a positive integer")
nonnegative_int = _typed(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _typed(float, lambda v: v > 0, "a number > 0")
