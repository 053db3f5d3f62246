"""The one exception type for bad user input.

Every check of a spec, config value, CLI flag or path raises `InputError` with a message that names
the problem and the fix in one line. The command-line entry points turn it into that line on stderr
and exit status 2 (see `mlvgm.cli`); library callers get an ordinary `ValueError` subclass.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from a user: the message is one line naming the problem and how to fix it.

    The one line is kept whatever a message quotes (a value read from a file may hold newlines or be
    long): line breaks become spaces, and past MAX_CHARS the middle gives way to " ... ", keeping the
    problem at the start and the fix at the end.
    """

    MAX_CHARS = 600

    def __init__(self, message: object = "") -> None:
        text = " ".join(line.strip() for line in str(message).splitlines())
        if len(text) > self.MAX_CHARS:
            text = f"{text[: self.MAX_CHARS - 200]} ... {text[-195:]}"
        super().__init__(text)


def check_positive_int(name: str, value: object) -> int:
    """`value` as an int > 0, or InputError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_nonnegative_int(name: str, value: object) -> int:
    """`value` as an int >= 0, or InputError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{name} must be an integer >= 0, got {value!r}")
    return value
