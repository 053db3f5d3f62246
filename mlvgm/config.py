"""Frozen dataclass configs with named presets and `--key value` overrides (nanoGPT's idea, no exec).

Each entry point declares one frozen dataclass whose fields carry their help text:

    @dataclass(frozen=True)
    class TrainConfig:
        lr: float = field(default=0.05, metadata={"help": "base learning rate"})

and a dict of presets (name -> field overrides). `parse_config` builds the command line from the
fields, so `--help` lists every field with its default and meaning, unknown keys are rejected with
the closest valid names, and values are converted to the field's type (bool: true/false; tuples:
comma-separated). It returns the preset with the overrides applied and which keys were given.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence

from mlvgm.errors import InputError

_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def _converter(annotation) -> typing.Callable[[str], object]:
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return _parse_bool
    if annotation in (int, float, str):
        return annotation
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        convert = _converter(item)
        return lambda text: tuple(convert(part.strip()) for part in text.split(",") if part.strip())
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        convert = _converter(inner)
        return lambda text: None if text.lower() in ("none", "") else convert(text)
    raise TypeError(f"unsupported config field type {annotation!r}")


def _parse_bool(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(text)


def coerce(cls, values: Mapping[str, object]) -> dict[str, object]:
    """JSON-loaded values back to the field types (lists -> tuples)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in values.items():
        if typing.get_origin(hints.get(key)) is tuple and isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return out


def build_parser(cls, presets: Mapping[str, Mapping[str, object]], *, prog: str, description: str, default_preset: str):
    from mlvgm.cli import ArgumentParser

    parser = ArgumentParser(prog=prog, description=description, argument_default=argparse.SUPPRESS, allow_abbrev=False)
    parser.add_argument(
        "--preset", default=default_preset, choices=sorted(presets), metavar="NAME",
        help=f"named configuration: {', '.join(sorted(presets))} (default: {default_preset})",
    )  # fmt: skip
    parser.add_argument(
        "--config", dest="config_file", metavar="FILE.json",
        help="a JSON object of config keys, applied over the preset and under command-line keys",
    )  # fmt: skip
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        parser.add_argument(
            f"--{f.name}", dest=f.name, metavar="A,B" if typing.get_origin(hints[f.name]) is tuple else "VALUE",
            help=f"{f.metadata.get('help', '')} (default: {shown})", type=str,
        )  # fmt: skip
    return parser


def parse_config(
    cls,
    presets: Mapping[str, Mapping[str, object]],
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
    default_preset: str,
    extra: typing.Callable[[argparse.ArgumentParser], None] | None = None,
) -> tuple[object, dict[str, object], argparse.Namespace]:
    """(config, the overrides the user typed, the parsed namespace for any extra flags)."""
    parser = build_parser(cls, presets, prog=prog, description=description, default_preset=default_preset)
    if extra is not None:
        extra(parser)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        names = [f"--{f.name}" for f in dataclasses.fields(cls)] + ["--preset"]
        flag = unknown[0].split("=")[0]
        close = difflib.get_close_matches(flag, names, n=3)
        hint = f": did you mean {' or '.join(close)}?" if close else ": see --help for the valid keys"
        parser.error(f"unknown key {flag}{hint}")
    hints = typing.get_type_hints(cls)
    overrides: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if f.name in vars(args):
            text = getattr(args, f.name)
            try:
                overrides[f.name] = _converter(hints[f.name])(text)
            except (ValueError, TypeError):
                kind = getattr(hints[f.name], "__name__", str(hints[f.name]))
                parser.error(f"--{f.name} must be {kind}, got {text!r}")
    if getattr(args, "config_file", None):
        overrides = {**_config_file(cls, args.config_file), **overrides}
    config = make_config(cls, presets, args.preset, overrides)
    return config, overrides, args


def _config_file(cls, path: str) -> dict[str, object]:
    """The keys of a --config JSON file, typed like the config's fields; InputError naming the problem."""
    import json
    from pathlib import Path

    try:
        data = json.loads(Path(path).read_text())
    except OSError as error:
        raise InputError(f"--config {path}: cannot read it ({error.strerror})") from error
    except ValueError as error:
        raise InputError(f"--config {path} is not valid JSON ({error}): fix the file") from error
    if not isinstance(data, dict):
        raise InputError(f"--config {path} must hold a JSON object of config keys, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    bad = [key for key in data if key not in names]
    if bad:
        close = difflib.get_close_matches(bad[0], sorted(names), n=1)
        raise InputError(
            f"--config {path}: unknown key {bad[0]!r}" + (f": did you mean {close[0]!r}?" if close else "")
        )
    return coerce(cls, data)


def make_config(cls, presets: Mapping[str, Mapping[str, object]], preset: str, overrides: Mapping[str, object]):
    """The preset's config with `overrides` applied; InputError for unknown presets or keys."""
    if preset not in presets:
        raise InputError(f"unknown preset {preset!r}: choose one of {', '.join(sorted(presets))}")
    names = {f.name for f in dataclasses.fields(cls)}
    bad = [key for key in overrides if key not in names]
    if bad:
        raise InputError(f"unknown config key {bad[0]!r}: see --help for the valid keys")
    return cls(**{**presets[preset], **overrides})
