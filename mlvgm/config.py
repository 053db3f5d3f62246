"""One command-line style for every entry point: a frozen dataclass, its presets, `--key value` overrides.

Each command declares one frozen dataclass whose fields carry their help text (nanoGPT's config idea,
without exec; gpt-fast's presets):

    @dataclass(frozen=True, kw_only=True)
    class GridConfig:
        out: str = option(help="PNG to write")                    # no default: required
        anchors: int = option(4, "number of anchor rows")
        sigma: float = option(1.0, "std of the noise vector")

`parse_config` builds the command line from the fields:
- `--key value` for every field, spelled with underscores (as in config files and config.json) or
  hyphens (`--base_lr` and `--base-lr` are the same flag); `option(..., positional=True)` for a
  command's operands; booleans take true/false, or nothing for true (`--overwrite`); tuples are
  comma-separated (`--view_levels 2,3,4`);
- with presets: `--preset NAME` chooses the starting values and `--config FILE.json` applies a JSON
  object of keys over them, under the keys typed on the command line;
- `--help` lists every field once with the default that a run with those flags would use (the
  chosen preset's, not the dataclass's);
- every mistake is one line naming the problem and the fix, with the nearest valid names for a
  misspelt key or preset: an `InputError`, which `mlvgm.cli.run` prints with exit status 2.
Values are checked by the dataclass itself (`__post_init__`), so a config built in Python is held
to the same rules as one typed on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from mlvgm.errors import InputError
from mlvgm.io import read_json

_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def option(default: object = dataclasses.MISSING, help: str = "", *, positional: bool = False) -> dataclasses.Field:
    """A config field with its help text; without a default it is required on the command line."""
    return dataclasses.field(default=default, metadata={"help": help, "positional": positional})


DEVICE_HELP = "auto, cpu, cuda or cuda:N"


def device_option(note: str = "") -> dataclasses.Field:
    """The `device` key every command has: auto (CUDA where there is one), cpu, cuda or cuda:N."""
    return option("auto", f"{DEVICE_HELP} ({note})" if note else DEVICE_HELP)


AMP_MODES = ("auto", "on", "off")


def amp_option() -> dataclasses.Field:
    """The `amp` key of every command that trains (the rule is mlvgm.train_step.use_bf16)."""
    return option("auto", "bf16 autocast: auto (CUDA, and CPUs with native bf16), on, off")


def check_choices(config: object, choices: Mapping[str, Sequence[str]], *, flag: str = "") -> None:
    """One line for the first key of `choices` whose value is not among its valid values."""
    for key, valid in choices.items():
        if getattr(config, key) not in valid:
            raise InputError(f"{flag}{key} must be one of {', '.join(valid)}, got {getattr(config, key)!r}")


def check_ranges(config: object, *, positive: Sequence[str] = (), nonnegative: Sequence[str] = (), flag: str = "",
                 note: str = "") -> None:  # fmt: skip
    """One line for the first key of `positive` that is not > 0, then of `nonnegative` that is not >= 0 (NaN is
    neither): "{flag}{key} must be > 0, got {value}", with `note` after the bound where given."""
    for keys, bound in ((positive, "> 0"), (nonnegative, ">= 0")):
        for key in keys:
            value = getattr(config, key)
            if not (value > 0 if bound == "> 0" else value >= 0):
                raise InputError(f"{flag}{key} must be {bound}{f' ({note})' if note else ''}, got {value}")


class InputErrorParser(argparse.ArgumentParser):
    """argparse whose mistakes raise InputError (one line, exit status 2 through mlvgm.cli.run), whose help
    shows each flag once (its underscore spelling) and never repeats a default the help text states."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _OneSpellingFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        raise InputError(f"{message} (see --help)")


class _OneSpellingFormatter(argparse.HelpFormatter):
    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings:
            return super()._format_action_invocation(action)
        flag = action.option_strings[0]
        if action.nargs == 0:
            return flag
        return f"{flag} {self._format_args(action, self._get_default_metavar_for_optional(action))}"


def _converter(annotation) -> Callable[[str], object]:
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return _parse_bool
    if annotation is float:
        return _parse_float
    if annotation in (int, str):
        return annotation
    if origin is tuple:
        convert = _converter(typing.get_args(annotation)[0])
        return lambda text: tuple(convert(part.strip()) for part in text.split(",") if part.strip())
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        convert = _converter(inner)
        return lambda text: None if text.lower() in ("none", "") else convert(text)
    raise TypeError(f"unsupported config field type {annotation!r}")


def _parse_float(text: str) -> float:
    """float(text), finite: every float option is a size, rate or budget, and NaN passes every `x >= 0` check."""
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(text)
    return value


class _NonFinite(ValueError):
    """A number that parsed but is NaN or infinite: its message says 'finite', not just 'a number'."""


def _parse_bool(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(text)


def _type_name(annotation) -> str:
    if annotation is bool:
        return "true or false"
    if typing.get_origin(annotation) is tuple:
        item = typing.get_args(annotation)[0]
        return "comma-separated " + {int: "integers", float: "numbers", str: "strings"}.get(item, str(item))
    return {int: "an integer", float: "a number", str: "a string"}.get(annotation, str(annotation))


def coerce(
    cls, values: Mapping[str, object], *, source: str = "config", fix: str = "fix the file"
) -> dict[str, object]:
    """JSON-loaded values back to the field types (lists -> tuples); a value of another type (a string where
    a number goes) is an InputError naming `source`, the file the values came from, and the `fix`."""
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in values.items():
        if typing.get_origin(hints.get(key)) is tuple and isinstance(value, list):
            value = tuple(value)
        if key in hints and not _fits(hints[key], value):
            finite = "a finite number" if _non_finite(value) else _type_name(hints[key])
            raise InputError(f"{source}: {key} must be {finite}, got {value!r}: {fix}")
        out[key] = value
    return out


def _fits(annotation, value: object) -> bool:
    """Whether a JSON-loaded value has the field's type (an int does for a float field)."""
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is float:  # NaN and inf too: the one place JSON-loaded floats are checked
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if annotation in (int, str):
        return isinstance(value, annotation) and not isinstance(value, bool)
    if typing.get_origin(annotation) is tuple:
        return isinstance(value, tuple) and all(_fits(typing.get_args(annotation)[0], v) for v in value)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return value is None or any(_fits(a, value) for a in typing.get_args(annotation) if a is not type(None))
    return True


def _non_finite(value: object) -> bool:
    """Whether a JSON-loaded value, or any item of a list of them, is a NaN or infinite float."""
    items = value if isinstance(value, tuple | list) else (value,)
    return any(isinstance(v, float) and not math.isfinite(v) for v in items)


def did_you_mean(word: str, choices: Sequence[str], *, what: str) -> str:
    """'unknown WHAT 'word': did you mean X?' or, with nothing close, the valid choices."""
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    if close:
        return f"unknown {what} {word!r}: did you mean {' or '.join(close)}?"
    if len(choices) <= 12:
        return f"unknown {what} {word!r}: choose one of {', '.join(choices)}"
    return f"unknown {what} {word!r}: see --help for the {len(choices)} valid ones"


def _preset_in(argv: Sequence[str], default: str | None) -> str | None:
    """The --preset a command line names (for --help's defaults), without parsing the rest."""
    for i, arg in enumerate(argv):
        if arg == "--preset" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--preset="):
            return arg.split("=", 1)[1]
    return default


def _shown(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else "(none)"
    if value == "":
        return '""'
    return str(value).lower() if isinstance(value, bool) else str(value)


def build_parser(
    cls,
    presets: Mapping[str, Mapping[str, object]] | None,
    *,
    prog: str,
    description: str,
    preset: str | None,
) -> argparse.ArgumentParser:
    """The parser of `cls`'s fields; defaults in the help are `preset`'s when there are presets."""
    epilog = None
    if presets:
        epilog = f"defaults shown are those of preset {preset}; --preset NAME --help shows another preset's"
    positional = [f.name.upper() for f in dataclasses.fields(cls) if f.metadata.get("positional")]
    usage = " ".join([prog, *(["[--preset NAME]"] if presets else []), "[--KEY VALUE ...]", *positional])
    parser = InputErrorParser(prog=prog, usage=usage, description=description, epilog=epilog,
                              argument_default=argparse.SUPPRESS)  # fmt: skip
    values = dict(presets.get(preset, {})) if presets else {}
    if presets:
        parser.add_argument("--preset", metavar="NAME", default=preset,
                            help=f"named configuration: {', '.join(sorted(presets))} (default: {preset})")  # fmt: skip
        parser.add_argument(
            "--config", dest="config_file", metavar="FILE.json",
            help="a JSON object of config keys, applied over the preset and under command-line keys",
        )  # fmt: skip
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        default = values.get(f.name, f.default if f.default is not dataclasses.MISSING else None)
        if f.default_factory is not dataclasses.MISSING and f.name not in values:
            default = f.default_factory()
        text = f.metadata.get("help", "")
        is_tuple = typing.get_origin(hints[f.name]) is tuple
        if f.metadata.get("positional"):  # a command's operands: always required
            parser.add_argument(f.name, nargs="+" if is_tuple else None, help=text, metavar=f.name.upper())
            continue
        flags = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        state = "required" if _required(f) else f"default: {_shown(default)}"
        kwargs: dict[str, object] = {"dest": f.name, "help": f"{text} ({state})"}
        if hints[f.name] is bool:
            kwargs.update(nargs="?", const="true", metavar="true|false")
        else:
            kwargs["metavar"] = "A,B" if is_tuple else "VALUE"
        parser.add_argument(*flags, **kwargs)
    return parser


def parse_config(
    cls,
    presets: Mapping[str, Mapping[str, object]] | None,
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
    default_preset: str | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> tuple[object, dict[str, object], argparse.Namespace]:
    """(config, the keys the user gave, on the command line or in --config, typed; the parsed namespace,
    for `extra` flags that are not config keys, such as train's --resume)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    preset = _preset_in(argv, default_preset) if presets else None
    if presets and preset not in presets:
        raise InputError(did_you_mean(str(preset), sorted(presets), what="preset"))
    parser = build_parser(cls, presets, prog=prog, description=description, preset=preset)
    if extra is not None:
        extra(parser)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        flags = [action.option_strings[0] for action in parser._actions if action.option_strings]  # one spelling
        word = unknown[0].split("=")[0]
        if not word.startswith("-"):
            raise InputError(f"unexpected argument {word!r}: options are written --key value (see --help)")
        raise InputError(did_you_mean(word, flags, what="option") + " (see --help)")
    hints = typing.get_type_hints(cls)
    given: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if f.name not in vars(args):
            continue
        raw = getattr(args, f.name)
        flag = f.name if f.metadata.get("positional") else f"--{f.name}"
        if isinstance(raw, list):  # a positional tuple: one value per word
            raw = ",".join(raw)
        try:
            given[f.name] = _converter(hints[f.name])(raw)
        except _NonFinite:
            raise InputError(f"{flag} must be a finite number, got {raw!r}") from None
        except (ValueError, TypeError):
            raise InputError(f"{flag} must be {_type_name(hints[f.name])}, got {raw!r}") from None
    if getattr(args, "config_file", None):
        given = {**_config_file(cls, args.config_file), **given}
    missing = [f.name for f in dataclasses.fields(cls) if _required(f) and f.name not in given]
    if missing and not (presets and all(m in presets[preset] for m in missing)):
        name = missing[0]
        field = next(f for f in dataclasses.fields(cls) if f.name == name)
        shown = name.upper() if field.metadata.get("positional") else f"--{name}"
        raise InputError(f"{shown} is required: {field.metadata.get('help', '')} (see --help)")
    config = make_config(cls, presets or {None: {}}, preset, given)
    return config, given, args


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _config_file(cls, path: str) -> dict[str, object]:
    """The keys of a --config JSON file, typed like the config's fields (a key starting with _ is a note, not
    read); InputError naming the problem."""
    fix = "give a JSON file of keys"
    if not Path(path).exists():  # the two common mistakes keep their short messages
        raise InputError(f"--config {path}: cannot read it (No such file or directory): {fix}")
    if Path(path).is_dir():
        raise InputError(f"--config {path}: cannot read it (Is a directory): {fix}")
    # a FIFO, a 1 GB file, nesting 10**6 deep or NaN: one line each (read_json's caps), never a hang
    data = read_json(path, what="--config", fix="fix the file")
    if not isinstance(data, dict):
        raise InputError(f"--config {path} must hold a JSON object of config keys, got {type(data).__name__}")
    data = {key: value for key, value in data.items() if not key.startswith("_")}  # notes (views.json's _audit)
    names = [f.name for f in dataclasses.fields(cls)]
    bad = [key for key in data if key not in names]
    if bad:
        raise InputError(f"--config {path}: " + did_you_mean(bad[0], names, what="key"))
    return coerce(cls, data, source=f"--config {path}")


def make_config(cls, presets: Mapping[str | None, Mapping[str, object]], preset: str | None, overrides: Mapping):
    """The preset's config with `overrides` applied; InputError for unknown presets or keys."""
    if preset not in presets:
        raise InputError(did_you_mean(str(preset), sorted(p for p in presets if p), what="preset"))
    names = [f.name for f in dataclasses.fields(cls)]
    bad = [key for key in overrides if key not in names]
    if bad:
        raise InputError(did_you_mean(bad[0], names, what="config key"))
    return cls(**{**presets[preset], **overrides})
