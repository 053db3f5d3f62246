"""load_generator: spec strings, options, unknown specs, user registrations, level resolution."""

from __future__ import annotations

import pytest
import torch

from mlvgm.errors import InputError
from mlvgm.generators import ShapesWorld, available_generators, load_generator, register_generator, resolve_levels
from mlvgm.generators.base import MLVGM


def test_shapes_default_and_options():
    g = load_generator("shapes")
    assert isinstance(g, ShapesWorld) and g.resolution == 64 and not g.training
    assert not any(p.requires_grad for p in g.parameters())
    assert load_generator("shapes:resolution=32").resolution == 32


def test_unknown_spec_is_a_value_error_listing_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown generator spec 'stylegan9'.*valid specs are shapes"):
        load_generator("stylegan9")


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("shapes:size=3", "bad option 'size=3'.*valid options are resolution=<int>"),
        ("shapes:resolution", "bad option 'resolution'"),
        ("shapes:resolution=big", "option resolution of generator 'shapes' must be int"),
        ("shapes:resolution=512", "resolution must be an integer from 32 to 128"),
    ],
)
def test_bad_options(spec, match):
    with pytest.raises(InputError, match=match):
        load_generator(spec)


def test_spec_must_be_a_string():
    with pytest.raises(InputError, match="must be a string"):
        load_generator(None)


class Tiny(MLVGM):
    level_dims = (2, 3)
    resolution = 4

    def __init__(self, gain: str = "") -> None:
        super().__init__()
        self.gain = float(gain or 1.0)

    def forward(self, latents):
        z = torch.cat(latents, dim=1).sum(dim=1)
        return torch.sigmoid(self.gain * z)[:, None, None, None].expand(-1, 3, 4, 4)


def test_users_register_their_own_generators():
    register_generator("tiny", Tiny, usage="tiny[:GAIN]")
    assert "tiny[:GAIN]" in available_generators()
    g = load_generator("tiny:2.5")
    assert isinstance(g, Tiny) and g.gain == 2.5
    with pytest.raises(InputError, match="contain no ':'"):
        register_generator("a:b", Tiny)


def test_resolve_levels_by_number_name_and_group():
    g = load_generator("shapes")
    assert resolve_levels(g, None) == (0, 1, 2, 3, 4, 5)
    assert resolve_levels(g, [3, "geometry", "1", 3]) == (0, 1, 2)
    assert resolve_levels(g, "unused") == (5,)
    with pytest.raises(InputError, match=r"level 9 is out of range: choose levels 1-6 \(1=identity"):
        resolve_levels(g, 9)
    with pytest.raises(InputError, match="not a level"):
        resolve_levels(g, True)
