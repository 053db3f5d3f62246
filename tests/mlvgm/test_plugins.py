"""mlvgm.plugins: a new method and a new view strategy, defined here, registered and trained through the public API
without touching a library file; the built-ins found by file name; the labelled-generator protocol."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from mlvgm.encoders import backbone
from mlvgm.errors import InputError
from mlvgm.generators import load_generator
from mlvgm.plugins import Method, ViewStrategy, method, method_names, register_method, register_views, strategy_names
from mlvgm.recipe import build_views, kernels_used, metric_names
from mlvgm.testing import MLVGMConformanceError, check_mlvgm
from mlvgm.train_config import TrainConfig
from mlvgm.training import train
from mlvgm.view_strategies import Views

ROOT = Path(__file__).resolve().parents[2]


class Agreement(nn.Module):
    """A toy method: pull the two views' features together, push the batch's features apart (variance term)."""

    def __init__(self, config) -> None:
        super().__init__()
        self.backbone, features = backbone(config.arch, small_stem=config.small_stem, width=config.width)
        self.head = nn.Linear(features, config.proj_dim)

    def forward(self, view_a, view_b):
        za, zb = self.head(self.backbone(view_a)), self.head(self.backbone(view_b))
        agreement = (za - zb).pow(2).sum(dim=1).mean()
        spread = torch.relu(1 - za.std(dim=0)).mean()
        return agreement + spread, {"agreement": agreement.detach()}

    def after_step(self, step: int, total_steps: int) -> None:
        self.steps_seen = step + 1

    def param_groups(self, lr: float) -> list[dict]:
        return [{"params": list(self.parameters()), "lr": lr}]


class ShiftFirstLevel:
    """A toy T_z: the positive moves level 1 by a constant."""

    def __init__(self, g, shift: float) -> None:
        self.shift, self.levels = shift, len(g.level_dims)

    def __call__(self, anchors, generator=None) -> Views:
        anchors = list(anchors)
        positives = [anchors[0] + self.shift, *anchors[1:]]
        norms = torch.zeros(anchors[0].shape[0], self.levels)
        norms[:, 0] = (positives[0] - anchors[0]).norm(dim=1)
        return Views(anchors, positives, norms)


@pytest.fixture(scope="module")
def registered():
    register_method(Method("agreement", build=Agreement, keys=("proj_dim",), metrics=("agreement",),
                           chance_loss=lambda batch: 1.0))  # fmt: skip
    register_views(ViewStrategy("shift", build=lambda config, g: ShiftFirstLevel(g, config.view_t)))
    return True


def test_a_method_and_a_view_strategy_from_outside_the_library_train(registered, tmp_path):
    assert "agreement" in method_names() and "shift" in strategy_names()
    config = TrainConfig(method="agreement", views="shift", view_t=0.5, generator="shapes:resolution=32", epochs=1,
                         epoch_images=16, batch_size=8, width=8, proj_dim=4, log_every=1, evaluate=False,
                         augment="none")  # fmt: skip
    summary = train(config, tmp_path / "run")
    assert summary["steps"] == 2
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",")[-1] == "agreement" and len(rows) == 3  # its metric logged beside the loss
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["config"]["method"] == "agreement" and record["kernels"] == {}  # it runs none of ours
    assert metric_names(config) == ["agreement"]
    views = build_views(config, load_generator("shapes:resolution=32"))
    assert isinstance(views, ShiftFirstLevel) and views.shift == 0.5


def test_unknown_names_list_the_choices():
    with pytest.raises(InputError, match="method must be one of simclr, simsiam, byol"):
        TrainConfig(method="nope")
    with pytest.raises(InputError, match="views must be one of none, random, learned"):
        TrainConfig(views="nope")
    with pytest.raises(InputError, match="a method name must be letters"):
        register_method(Method("bad name", build=Agreement))


def test_the_built_ins_are_found_by_file_name_without_torch():
    code = ("import sys; from mlvgm.plugins import method_names, strategy_names; "
            "print(method_names()[:3], strategy_names()[:3], 'torch' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "('simclr', 'simsiam', 'byol') ('none', 'random', 'learned') False"


def test_each_built_in_names_config_keys_that_exist_and_its_kernels():
    fields = set(TrainConfig.__dataclass_fields__)
    for name in ("simclr", "simsiam", "byol"):
        assert set(method(name).keys) <= fields, name
    assert method("simclr").kernels == ("infonce",) and method("simclr").chance_loss(64) == pytest.approx(4.8442, 1e-4)
    assert kernels_used(TrainConfig(method="byol", views="none", cs_compile="off"), torch.device("cpu")) == {}


class HalfLabelled(nn.Module):
    """A generator that declares factors but not their classes."""

    level_dims, resolution = (2,), 4

    def forward(self, latents):
        return torch.sigmoid(latents[0].sum(dim=1)).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).contiguous()

    def factors(self, latents):
        return {"sign": (latents[0][:, 0] > -1e9).long()}  # 1 for every image


class WrongLabels(HalfLabelled):
    factor_classes = {"sign": 1}  # its one class is 0, but the factor says 1


def test_check_mlvgm_checks_the_labelled_protocol():
    with pytest.raises(MLVGMConformanceError, match="declares both a factors"):
        check_mlvgm(HalfLabelled())
    with pytest.raises(MLVGMConformanceError, match=r"factor 'sign' must lie in \[0, 1\)"):
        check_mlvgm(WrongLabels())
    report = check_mlvgm(load_generator("shapes:resolution=32"))
    assert any(line.startswith("factors: shape (") for line in report.checks)
