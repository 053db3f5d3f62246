"""Non-finite numbers are refused where config values are typed (issue 27): NaN passes every `x >= 0` check a
dataclass makes, so the float converter and `coerce` refuse it once, for every command and config file."""

from __future__ import annotations

import dataclasses
import os

import pytest

from mlvgm.config import coerce, option, parse_config
from mlvgm.errors import InputError


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    budget: float = option(1.0, "minutes")
    sigmas: tuple[float, ...] = option((1.0,), "per level")
    cap: float | None = option(None, "optional")
    steps: int = option(1, "steps")


def parse(argv):
    return parse_config(Config, {"p": {}}, argv, prog="t", description="", default_preset="p")[0]


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "1e400", "infinity"])
@pytest.mark.parametrize("flag", ["--budget", "--sigmas", "--cap"])
def test_non_finite_command_line_numbers_are_refused(flag, text):
    with pytest.raises(InputError, match=f"{flag} must be a finite number, got '{text}'"):
        parse([f"{flag}={text}"])  # one word: argparse reads a bare -inf as a flag


def test_finite_numbers_still_parse():
    config = parse(["--budget", "2.5", "--sigmas", "1,2e-3", "--cap", "none", "--steps", "3"])
    assert (config.budget, config.sigmas, config.cap, config.steps) == (2.5, (1.0, 0.002), None, 3)
    with pytest.raises(InputError, match="--budget must be a number, got 'x'"):
        parse(["--budget", "x"])


@pytest.mark.parametrize("values", [{"budget": float("nan")}, {"sigmas": [1.0, float("inf")]}, {"cap": -float("inf")}])
def test_coerce_refuses_non_finite_values_from_any_file(values):
    """A run folder's config.json read with a lenient json.loads still meets this check."""
    with pytest.raises(InputError, match="must be a finite number, got"):
        coerce(Config, values, source="run/config.json")


@pytest.mark.parametrize(
    ("text", "match"),
    [('{"budget": NaN}', r"is not valid JSON \(NaN is not a JSON number\)"),
     ('{"budget": ' * 50_000 + "1" + "}" * 50_000, "is nested too deeply"),
     ('{"budget": ' + "[" * 40 + "1" + "]" * 40 + "}", "nested more than 32 deep")],
)  # fmt: skip
def test_a_config_file_that_is_deep_or_non_finite_is_one_line(tmp_path, text, match):
    (tmp_path / "c.json").write_text(text)
    with pytest.raises(InputError, match=match):
        parse(["--config", str(tmp_path / "c.json")])


def test_a_fifo_config_file_is_one_line_not_a_hang(tmp_path):
    os.mkfifo(tmp_path / "c.json")
    with pytest.raises(InputError, match=r"c\.json is not a regular file"):
        parse(["--config", str(tmp_path / "c.json")])
