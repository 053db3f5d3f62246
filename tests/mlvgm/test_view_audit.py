"""The view audit (mlvgm.view_audit), its rule (mlvgm.view_rule), `python -m mlvgm.audit`, and the views a
quantification suggests through them (mlvgm.view_calibration): the numbers against literal loops on a
generator made by hand, the rule on sweeps made by hand, and the issue's acceptance on the shapes world."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mlvgm.cli import run as run_cli
from mlvgm.generators import load_generator
from mlvgm.generators.base import MLVGM
from mlvgm.strategies.random import RandomViews
from mlvgm.view_audit import SATURATION_TOLERANCE, audit_views, level_noise, make_anchors, measure, perturbed
from mlvgm.view_calibration import calibrate, kept_units, rejudged, views_of
from mlvgm.view_rule import MEASURABLE, RULE, SATURATION_MARGIN, choose, sigma_for

ROOT = Path(__file__).resolve().parents[2]
QUANTIFIED = ROOT / "results" / "quantify"


class Ramp(MLVGM):
    """4 x 4 images: pixel p of channel c is 0.5 + 0.3 z1[0] + 0.2 (p / 15) z2[0] - 0.1 c, clamped to [0, 1];
    its one factor is the sign of z1[0]."""

    level_dims = (2, 2)
    resolution = 4
    level_names = ("a", "b")
    factor_classes = {"sign": 2}

    def forward(self, latents):
        z1, z2 = latents
        p = torch.arange(16, dtype=torch.float32) / 15
        c = torch.arange(3, dtype=torch.float32)[:, None]
        x = 0.5 + 0.3 * z1[:, :1, None] + 0.2 * p * z2[:, :1, None] - 0.1 * c
        return x.clamp(0, 1).view(-1, 3, 4, 4)

    def factors(self, latents):
        return {"sign": (latents[0][:, 0] > 0).long()}


def literal(z1: np.ndarray, z2: np.ndarray) -> list[list[float]]:
    """Ramp's images, one value at a time."""
    images = []
    for a, b in zip(z1, z2, strict=True):
        values = []
        for c in range(3):
            for p in range(16):
                values.append(min(1.0, max(0.0, 0.5 + 0.3 * a[0] + 0.2 * (p / 15) * b[0] - 0.1 * c)))
        images.append(values)
    return images


def test_the_numbers_match_a_literal_loop():
    g = Ramp()
    anchors = make_anchors(g, 300, truncation=3.0, seed=4, net=None)
    noise = level_noise(g, anchors, (0, 1), t=2.0, seed=4)
    positives = perturbed(anchors.latents, (0, 1), noise, 1.5)
    got = measure(g, anchors, positives, None)

    x = literal(anchors.latents[0].numpy(), anchors.latents[1].numpy())
    y = literal(positives[0].numpy(), positives[1].numpy())
    change = sum(abs(b - a) for xi, yi in zip(x, y, strict=False) for a, b in zip(xi, yi, strict=False)) / (300 * 48)

    def share(images):
        return sum(v <= SATURATION_TOLERANCE or v >= 1 - SATURATION_TOLERANCE for im in images for v in im) / (300 * 48)

    signs = zip(anchors.latents[0].tolist(), positives[0].tolist(), strict=True)
    flips = sum((a[0] > 0) != (b[0] > 0) for a, b in signs) / 300
    assert got["pixel_change"] == pytest.approx(change, rel=1e-4)
    assert got["saturated_anchor"] == pytest.approx(share(x), abs=1e-6)
    assert got["saturated_positive"] == pytest.approx(share(y), abs=1e-6)
    assert got["saturated_excess"] == pytest.approx(share(y) - share(x), abs=1e-6)
    assert got["flip_sign"] == pytest.approx(flips) and 0.1 < flips < 0.6
    assert math.isnan(got["feature_change"])
    # the noise is e ~ N^t(0, 1, 2), one draw per unit, scaled by sigma
    e = torch.cat(noise, dim=1)
    assert e.abs().max() <= 2.0 and 0.7 < e.std() < 1.0


def sweep_of(levels: dict[str, tuple[list[float], list[float]]], sigmas=(1.0, 2.0, 4.0, 8.0)) -> pd.DataFrame:
    rows = []
    for level, (changes, excess) in levels.items():
        rows += [{"level": level, "sigma": s, "pixel_change": c, "saturated_excess": x}
                 for s, c, x in zip(sigmas, changes, excess, strict=True)]  # fmt: skip
    return pd.DataFrame(rows)


def test_the_rule_on_a_sweep_made_by_hand():
    """a saturates past 2 points at sigma 8 (largest admissible change 0.04 at 4); b never saturates (0.03 at 8);
    c never changes the image by 1/255; d saturates at the smallest sigma. Target 0.03: a at the sigma where
    0.02 -> 0.04 (a doubling per doubling) crosses 0.03, 2 x 1.5 = 3; b at 8."""
    sweep = sweep_of({
        "a": ([0.01, 0.02, 0.04, 0.08], [0.0, 0.0, 0.01, 0.05]),
        "b": ([0.005, 0.01, 0.02, 0.03], [0.0, 0.0, 0.0, 0.0]),
        "c": ([0.0005, 0.001, 0.002, 0.0035], [0.0, 0.0, 0.0, 0.0]),
        "d": ([0.1, 0.2, 0.3, 0.4], [0.3, 0.4, 0.5, 0.6]),
    })  # fmt: skip
    chosen = choose(sweep).set_index("level")
    assert list(chosen["kept"]) == [True, True, False, False]
    assert chosen.loc["a", "sigma"] == pytest.approx(3.0) and chosen.loc["b", "sigma"] == pytest.approx(8.0)
    assert chosen.loc["a", "largest_admissible_change"] == 0.04 and chosen["target_change"].iloc[0] == 0.03
    assert "does not change the image measurably" in chosen.loc["c", "reason"]
    assert "the grid needs smaller sigmas" in chosen.loc["d", "reason"]
    assert math.isnan(chosen.loc["c", "sigma"])
    # saturation that dips back under the margin at a larger sigma does not make that sigma admissible
    wavy = choose(sweep_of({"w": ([0.01, 0.02, 0.04, 0.08], [0.0, 0.03, 0.0, 0.0]),
                            "b": ([0.005, 0.01, 0.02, 0.03], [0.0] * 4)})).set_index("level")  # fmt: skip
    assert wavy.loc["w", "largest_admissible_sigma"] == 1.0 and wavy.loc["w", "sigma"] == 1.0
    assert wavy.loc["b", "sigma"] == pytest.approx(2.0)


def test_sigma_for_interpolates_log_log_and_stays_on_the_grid():
    sigmas, changes = np.array([1.0, 2.0, 4.0]), np.array([0.01, 0.04, 0.05])
    assert sigma_for(sigmas, changes, 0.02) == pytest.approx(2**0.5)  # change ~ sigma^2 there
    assert sigma_for(sigmas, changes, 0.005) == 1.0 and sigma_for(sigmas, changes, 0.09) == 4.0


@pytest.mark.parametrize("name", ["shapes", "shapes-quick"])
def test_the_shapes_worlds_suggested_views_leave_z1_and_z6_alone_and_keep_the_positive(name):
    """The issue's acceptance, from either committed quantification (full budget and half): the kept levels are
    z3-z5; at their chosen sigmas the positives have at most 5 points more saturated pixels than the anchors
    (the rule's margin is 2), the shape changes in under 5% of pairs, and each level changes the image by at
    least 1/255 on average."""
    table = rejudged(QUANTIFIED / name)
    units = kept_units(table)
    assert list(units) == ["z3 color", "z4 background", "z5 texture"]
    g = load_generator("shapes:resolution=32")
    calibration = calibrate(g, units, pairs=256, features=False)
    views = calibration.views()
    assert views["view_levels"] == ["3", "4", "5"] and views["_audit"]["rule"] == RULE
    chosen = calibration.chosen.set_index("level")
    assert chosen["kept"].all()
    assert (chosen["saturated_excess"] <= 0.05).all()
    assert (chosen["saturated_excess"] <= SATURATION_MARGIN + 0.005).all()
    assert (chosen["flip_shape"] < 0.05).all()
    assert (chosen["pixel_change"] >= MEASURABLE).all()
    # the same change for every level: within 15% of the target
    assert np.allclose(chosen["pixel_change"], chosen["target_change"], rtol=0.15)


def test_a_training_runs_views_say_when_they_destroy_the_positive():
    g = load_generator("shapes:resolution=32")
    wild = audit_views(g, RandomViews.uniform(g, [3, 4, 5], sigma=64.0), pairs=128)
    assert wild["destroyed"] and wild["saturated_excess"] > 0.5
    gentle = audit_views(g, RandomViews.uniform(g, [3, 4, 5], sigma=0.25), pairs=128)
    assert not gentle["destroyed"] and gentle["flip_shape"] == 0.0 and gentle["flip_color"] > 0
    assert set(gentle["norm_per_level"]) == {f"z{i + 1} {n}" for i, n in enumerate(g.level_names)}
    assert gentle["norm_per_level"]["z1 identity"] == 0.0 and gentle["norm_per_level"]["z3 color"] > 0


def test_experiments_refuse_a_row_whose_views_destroy_the_positive():
    from mlvgm.paper_jobs import Job, MissingInput, refuse_destroyed_views
    from mlvgm.train_config import TrainConfig

    job = Job("train", "table2/simclr/ml-random/s0", {})
    base = {"generator": "shapes:resolution=32", "views": "random", "view_levels": ("3", "4", "5")}
    with pytest.raises(MissingInput, match="its views destroy the positive"):
        refuse_destroyed_views(job, TrainConfig(**base, view_sigma=(64.0,)), "cpu")
    refuse_destroyed_views(job, TrainConfig(**base, view_sigma=(0.5,)), "cpu")


def test_views_made_by_an_earlier_rule_are_made_again(tmp_path, monkeypatch):
    """A quantification folder whose views.json predates the rule (mu / sqrt(d) sigmas) gets new views, written
    back; a second call reads them without auditing again."""
    folder = tmp_path / "q"
    shutil.copytree(QUANTIFIED / "shapes-quick", folder, ignore=shutil.ignore_patterns("audit"))
    old = {"views": "random", "view_levels": ["1", "2", "3"], "view_sigma": [0.807888, 2.510235, 46.915436],
           "view_t": 2.0}  # what this run's views.json was before the rule  # fmt: skip
    (folder / "views.json").write_text(json.dumps(old))
    g = load_generator("shapes:resolution=32")
    views = views_of(folder, g, pairs=128, features=False)
    assert views["_audit"]["rule"] == RULE and views["view_levels"] == ["3", "4", "5"]
    assert max(views["view_sigma"]) < 10
    assert json.loads((folder / "views.json").read_text()) == views
    import mlvgm.view_calibration as calibration

    monkeypatch.setattr(calibration, "calibrate", lambda *a, **k: pytest.fail("audited again"))
    assert views_of(folder, g) == views


def test_a_views_json_with_its_audit_is_a_training_config(tmp_path):
    from mlvgm.config import parse_config
    from mlvgm.train_config import PRESETS, TrainConfig

    path = tmp_path / "views.json"
    path.write_text(json.dumps({"views": "random", "view_levels": ["3"], "view_sigma": [0.5], "view_t": 2.0,
                                "_audit": {"rule": RULE, "chosen": []}}))  # fmt: skip
    config, given, _ = parse_config(TrainConfig, PRESETS, ["--config", str(path)], prog="t", description="",
                                    default_preset="quickstart")  # fmt: skip
    assert config.view_levels == ("3",) and config.view_sigma == (0.5,) and "_audit" not in given


# --- python -m mlvgm.audit ---------------------------------------------------------------------------


def audit_cli(argv, capsys) -> tuple[int, str, str]:
    from mlvgm.audit import main

    code = run_cli(main, "python -m mlvgm.audit", argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_command_writes_the_audit_sheets_and_views(tmp_path, capsys):
    out = tmp_path / "audit"
    argv = ["--generator", "shapes:resolution=32", "--levels", "3,5", "--pairs", "64", "--rows", "2",
            "--sigmas", "0.5,1,2", "--features", "false", "--device", "cpu", "--out", str(out)]  # fmt: skip
    code, stdout, err = audit_cli(argv, capsys)
    assert code == 0, err
    for name in ("audit.csv", "chosen.csv", "audit.md", "audit.png", "sheet-z3.png", "sheet-z5.png", "audit.json",
                 "views.json"):  # fmt: skip
        assert (out / name).exists(), name
    sweep = pd.read_csv(out / "audit.csv")
    assert list(sweep["level"]) == ["z3 color"] * 3 + ["z5 texture"] * 3 and "flip_shape" in sweep
    assert (sweep.groupby("level")["pixel_change"].diff().dropna() > 0).all()  # more sigma, more change
    views = json.loads((out / "views.json").read_text())
    assert views["view_levels"] == ["3", "5"] and "Rule equal-change-v1" in (out / "audit.md").read_text()
    assert "| z3 color |" in stdout and "wrote" in stdout


def test_the_command_audits_what_a_quantification_keeps(tmp_path, capsys):
    out = tmp_path / "audit"
    argv = ["--quantify", str(QUANTIFIED / "shapes-quick"), "--pairs", "64", "--rows", "2", "--sigmas", "0.25,1,4",
            "--features", "false", "--device", "cpu", "--out", str(out)]  # fmt: skip
    code, _stdout, err = audit_cli(argv, capsys)
    assert code == 0, err
    verdicts = (out / "verdicts.md").read_text()
    assert "| z1 identity | 2.29 | yes | over-used | no |" in verdicts
    assert "| z4 background | >= 415 | no | undetermined | yes |" in verdicts
    assert json.loads((out / "views.json").read_text())["view_levels"] == ["3", "4", "5"]


def test_a_generator_without_factors_is_audited_with_a_note(tmp_path, capsys):
    out = tmp_path / "audit"
    argv = ["--generator", "embedded", "--levels", "1", "--pairs", "16", "--rows", "1", "--sigmas", "1",
            "--features", "false", "--device", "cpu", "--out", str(out)]  # fmt: skip
    code, stdout, err = audit_cli(argv, capsys)
    assert code == 0, err
    assert "declares no ground-truth factors, so the audit has no flip rates" in stdout
    assert not [c for c in pd.read_csv(out / "audit.csv").columns if c.startswith("flip_")]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--quantify", "EMPTY"], "no table1.csv there: give the --out folder of python -m mlvgm.quantify"),
        (["--quantify", "MISSING"], "no such folder"),
        (["--levels", "9"], "level 9 is out of range"),
        (["--levels", "3", "--sigmas", ""], "--sigmas is empty"),
        (["--levels", "3", "--sigmas=-1,2"], "--sigmas must all be finite and > 0, got -1"),
        (["--levels", "3", "--sigmas", "2,1"], "--sigmas must ascend"),
        (["--levels", "3", "--quantify", "EMPTY"], "one of the two"),
        ([], "one of the two"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, message, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    argv = [{"EMPTY": str(tmp_path / "empty"), "MISSING": str(tmp_path / "missing")}.get(a, a) for a in argv]
    out = tmp_path / "out"
    code, _, err = audit_cli([*argv, "--generator", "shapes:resolution=32", "--device", "cpu", "--out", str(out)],
                             capsys)  # fmt: skip
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_the_progress_counts_one_per_level_and_sigma(tmp_path, monkeypatch, capsys):
    import mlvgm.view_calibration as calibration
    from mlvgm.progress import Progress

    seen = []

    class Counting(Progress):
        def close(self) -> None:
            seen.append((self.done, self.total))
            super().close()

    monkeypatch.setattr(calibration, "Progress", Counting)
    argv = ["--generator", "shapes:resolution=32", "--levels", "3,4", "--pairs", "16", "--rows", "1",
            "--sigmas", "0.5,1,2", "--features", "false", "--device", "cpu", "--out", str(tmp_path / "a")]  # fmt: skip
    code, _, err = audit_cli(argv, capsys)
    assert code == 0, err
    assert seen == [(6, 6)]
