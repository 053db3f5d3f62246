"""The generator protocol as base.py's docstring states it: a plain torch module that has never heard of
mlvgm's Draws works in quantify, train and views, and a level its forward ignores is a finding."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from torch import nn

from mlvgm import cli, generators
from mlvgm.generators.base import MLVGM, sample_anchors
from mlvgm.streams import Stream
from mlvgm.testing import check_mlvgm


class Plain(nn.Module):
    """Written from base.py's docstring alone: no MLVGM, no Draws; sample_latents the obvious way.

    forward unpacks z4 and never uses it, so no graph edge reaches it.
    """

    level_dims = (4, 3, 2, 5)
    resolution = 16

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(9, 64), nn.Tanh(), nn.Linear(64, 3 * 16 * 16))

    def sample_latents(self, n, *, truncation=None, generator=None):
        device = self.net[0].weight.device
        z = [torch.randn(n, d, generator=generator, device=device) for d in self.level_dims]
        return z if truncation is None else [zi.clamp(-truncation, truncation) for zi in z]

    def forward(self, latents):
        z1, z2, z3, _ = latents
        return torch.sigmoid(self.net(torch.cat([z1, z2, z3], dim=1))).view(-1, 3, 16, 16)


class NoSampler(nn.Module):
    """The least a module can be: level_dims, resolution, forward; the library draws its latents."""

    level_dims = (2, 2)
    resolution = 8

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(4, 3 * 8 * 8)

    def forward(self, latents):
        return torch.sigmoid(self.net(torch.cat(list(latents), dim=1))).view(-1, 3, 8, 8)


@pytest.fixture
def plain_spec(monkeypatch):
    """'plain' in the generator registry for this test only."""
    monkeypatch.setattr(generators, "_REGISTRY", dict(generators._REGISTRY))
    torch.manual_seed(0)
    weights = Plain().state_dict()

    def factory(argument: str) -> Plain:
        g = Plain()
        g.load_state_dict(weights)
        return g

    generators.register_generator("plain", factory)
    return "plain"


def test_a_plain_sample_latents_gets_a_torch_generator_derived_from_the_stream():
    g = Plain()
    stream = Stream(3, purpose="anchors")
    a = sample_anchors(g, 5, generator=stream.at(7))
    assert [tuple(z.shape) for z in a] == [(5, 4), (5, 3), (5, 2), (5, 5)]
    b = sample_anchors(g, 5, generator=stream.at(7))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))  # reproducible: a function of the key
    c = sample_anchors(g, 5, generator=stream.at(8))
    d = sample_anchors(g, 5, generator=Stream(3, rank=1, purpose="anchors").at(7))
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], d[0])  # steps and ranks differ
    e = sample_anchors(g, 5, truncation=0.5, generator=stream.at(7))
    assert max(float(z.abs().max()) for z in e) <= 0.5


def test_the_library_generators_still_receive_the_draws_themselves():
    """MLVGM's sample_latents takes Draws (counter-based all the way); the numbers are unchanged by the
    dispatch, which would not hold if it were handed a derived torch.Generator."""

    class Sub(MLVGM):
        level_dims = (3, 2)
        resolution = 4

    g = Sub()
    direct = g.sample_latents(4, truncation=2.0, generator=Stream(0).at(1))
    dispatched = sample_anchors(g, 4, truncation=2.0, generator=Stream(0).at(1))
    assert all(torch.equal(x, y) for x, y in zip(direct, dispatched, strict=True))


def test_a_module_without_sample_latents_gets_standard_normal_latents():
    g = NoSampler()
    z = sample_anchors(g, 3000, truncation=2.0, generator=Stream(0).at(0))
    assert [tuple(zi.shape) for zi in z] == [(3000, 2), (3000, 2)]
    flat = torch.cat(z).flatten()
    assert flat.abs().max() <= 2.0 and abs(float(flat.mean())) < 0.05 and 0.8 < float(flat.std()) < 0.95
    assert check_mlvgm(g).zero_grad_levels == []


def test_check_mlvgm_reports_the_unused_level_of_a_plain_module():
    report = check_mlvgm(Plain())
    assert report.unconnected_levels == [4] and report.zero_grad_levels == [4]


def run_cli(module, argv, capsys):
    code = cli.run(module.main, f"python -m {module.__name__}", argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    return out


def test_quantify_calls_the_unconnected_level_under_used(plain_spec, tmp_path, capsys):
    from mlvgm import quantify

    out = tmp_path / "q"
    argv = ["--generator", plain_spec, "--out", str(out), "--batch_size", "8", "--min_samples", "16",
            "--max_samples", "48", "--mc_samples", "64", "--hidden", "8", "--critic", "tiny"]  # fmt: skip
    run_cli(quantify, argv, capsys)
    rows = pd.read_csv(out / "table1.csv").to_dict("records")
    z4 = next(r for r in rows if str(r["level"]).startswith("z4"))
    assert z4["stop"] == "zero gradient: the images do not depend on this unit"
    assert z4["verdict"] == "under-used" and z4["reason"].startswith("zero gradient")
    assert all(not str(r["stop"]).startswith("zero") for r in rows if not str(r["level"]).startswith("z4"))


def test_train_and_views_run_on_the_plain_module(plain_spec, tmp_path, capsys):
    from mlvgm import grid, train

    run = tmp_path / "run"
    run_cli(train, ["--generator", plain_spec, "--out", str(run), "--epochs", "1", "--epoch_images", "16",
                    "--batch_size", "8", "--width", "8", "--evaluate", "false", "--view_levels", "2,4",
                    "--amp", "off", "--budget_minutes", "0"], capsys)  # fmt: skip
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2
    grid_png = tmp_path / "grid.png"
    run_cli(grid, ["--generator", plain_spec, "--out", str(grid_png), "--anchors", "2", "--levels", "4"], capsys)
    assert grid_png.exists()
