"""python -m mlvgm.zoo.train and python -m mlvgm.zoo.evidence: a tiny training that is killed and resumes
exactly, its weights loaded by load_generator, and the evidence's numbers against a literal count."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from mlvgm.errors import InputError
from mlvgm.generators import load_generator
from mlvgm.generators.shapes import SHAPE_CLASSES
from mlvgm.zoo import evidence as evidence_module
from mlvgm.zoo import train as zoo_train
from mlvgm.zoo import training
from mlvgm.zoo.judging import criteria, judge, judge_shapes
from mlvgm.zoo.train import ZooTrainConfig, learning_rate

TINY = ["--steps", "4", "--batch_size", "4", "--eval_images", "4", "--checkpoint_every", "2", "--log_every", "2",
        "--warmup", "2", "--kl_warmup", "2", "--amp", "off", "--device", "cpu"]  # fmt: skip


def test_a_progressive_training_enters_one_level_every_progressive_steps():
    from mlvgm.zoo.configs import active_levels

    assert active_levels(ZooTrainConfig(steps=100), 0) is None  # no schedule: every level from the start
    c = ZooTrainConfig(steps=100, progressive=10)
    assert [active_levels(c, s) for s in (0, 9, 10, 19, 20, 39, 40, 99)] == [1, 1, 2, 2, 3, 4, 5, 5]
    with pytest.raises(InputError, match=r"--progressive must be 0 .off. or a step count whose 4 entries end"):
        ZooTrainConfig(steps=40, progressive=10)


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    c = ZooTrainConfig(steps=1000, warmup=100, lr=1.0)
    assert learning_rate(c, 0) == pytest.approx(0.01) and learning_rate(c, 99) == pytest.approx(1.0)
    assert learning_rate(c, 100) == pytest.approx(1.0) and learning_rate(c, 999) == pytest.approx(0.1, abs=1e-4)
    assert learning_rate(c, 550) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way down the cosine


def test_a_killed_training_resumes_exactly_and_ships_loadable_weights(tmp_path, monkeypatch, caplog):
    args = [*TINY, "--steps", "6", "--progressive", "1", "--free_nats", "1,1,0,0,0"]  # resumed mid-schedule
    whole = tmp_path / "whole"
    zoo_train.main([*args, "--out", str(whole), "--publish", str(tmp_path / "shipped")])
    real_images = training.images

    def dies_at_step_2(world, stream, step, n, truncation):
        if step == 2:
            raise KeyboardInterrupt
        return real_images(world, stream, step, n, truncation)

    killed = tmp_path / "killed"
    monkeypatch.setattr(training, "images", dies_at_step_2)
    with pytest.raises(KeyboardInterrupt):
        zoo_train.main([*args, "--out", str(killed)])
    assert json.loads((killed / "checkpoint.json").read_text())["step"] == 2
    monkeypatch.setattr(training, "images", real_images)
    with caplog.at_level("INFO", logger="mlvgm.zoo.train"):
        zoo_train.main([*args, "--out", str(killed)])
    assert "resumed" in caplog.text and "differs" not in caplog.text  # its own config, tuples and all
    a, b = load_file(str(whole / "embedded.safetensors")), load_file(str(killed / "embedded.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    meta = json.loads((whole / "embedded.json").read_text())
    assert meta["steps"] == 6 and len(meta["kl_nats"]) == 5 and meta["hvae"]["resolution"] == 32
    metrics = (whole / "metrics.csv").read_text().splitlines()
    assert metrics[0].startswith("step,lr") and len(metrics) == 4  # a row every 2 steps
    first = pd.read_csv(whole / "metrics.csv").iloc[0]  # steps 1-2: z1 and z2 entered, z3-z5 their prior mean
    assert first["kl1"] > 0 and first["kl2"] > 0 and first["kl3"] == first["kl4"] == first["kl5"] == 0
    assert (killed / "metrics.csv").read_text().splitlines()[1:] == metrics[1:]
    for name in ("loss.png", "samples.png"):
        assert (whole / name).read_bytes()[:4] == b"\x89PNG"
    g = load_generator(f"embedded:weights={tmp_path / 'shipped' / 'embedded.safetensors'}")
    assert g.level_dims == (16, 32, 64, 256, 512)


def test_judge_shapes_counts_classes_and_confidence_literally():
    classes = [0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 5, 5]
    probs = torch.zeros(12, len(SHAPE_CLASSES))
    for i, c in enumerate(classes):  # class-0 images are sure; the others split 0.9 / 0.1 with class 0
        probs[i, c] = 1.0 if c == 0 else 0.9
        probs[i, 0] += 0.0 if c == 0 else 0.1
    result = judge_shapes(probs)
    shares = [3, 2, 1, 4, 0, 2] + [0] * 6
    assert result["shares"] == pytest.approx([s / 12 for s in shares], abs=1e-5)  # rounded to 5 places
    assert result["empty_classes"] == [SHAPE_CLASSES[i] for i in (4, 6, 7, 8, 9, 10, 11)]
    assert result["confidence"] == pytest.approx((3 * 1.0 + 9 * 0.9) / 12, abs=1e-6)
    assert result["min_share"] == 0.0


def test_judge_marginals_total_variation_and_share_ratios_literally():
    def onehot(labels, n):
        return torch.nn.functional.one_hot(torch.tensor(labels), n).float()

    features = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    real = {"features": features, "shape": onehot([0, 0, 1, 1, 2, 2, 3, 3], 12), "color": onehot([0] * 4 + [1] * 4, 2)}
    fake = {"features": features + 0.01, "shape": onehot([0, 0, 0, 0, 1, 1, 2, 3], 12),
            "color": onehot([0] * 6 + [1] * 2, 2)}  # fmt: skip
    out = judge(fake, real)
    assert out["share_ratio"][:4] == pytest.approx([2.0, 1.0, 0.5, 0.5])
    assert math.isinf(out["share_ratio"][4])  # a class real images never get: an infinite ratio, never "within"
    assert out["tv"]["color"] == pytest.approx(0.25) and out["tv"]["shape"] == pytest.approx(0.25)
    assert out["marginals"]["color"] == pytest.approx([0.75, 0.25])
    assert out["precision"] == 1.0 and out["recall"] == 1.0 and out["frechet"] == pytest.approx(3 * 0.01**2, rel=1e-3)
    assert [c["criterion"] for c in criteria(out) if not c["holds"]] == ["every shape class 0.5x-2.0x its real share"]


def test_evidence_writes_its_figures_and_numbers(tmp_path, capsys):
    weights = tmp_path / "w"
    zoo_train.main([*TINY, "--out", str(weights)])
    out = tmp_path / "evidence"
    spec = f"embedded:weights={weights}/embedded.safetensors"
    result = evidence_module.main(["--out", str(out), "--generator", spec, "--baseline", spec, "--run", str(weights),
                                   "--classifier_steps", "3", "--images", "40", "--temperatures", "0.5,1",
                                   "--pairs", "6", "--device", "cpu"])  # fmt: skip
    names = {p.name for p in out.iterdir()}
    expected = {"samples.png", "classes.png", "kl.png", "views.png", "flips.png", "flips.csv", "reconstructions.png",
                "classifier.csv", "evidence.json", "README.md", "training-loss.png", "depth.png"}  # fmt: skip
    assert expected <= names
    assert set(result["generated"]) == {"0.5", "1"} == set(result["baseline"]["generated"])
    assert set(result["classifier_accuracy"]) == {"shape", "position", "color", "background"}
    # the same weights as their own baseline, judged on the same images: the same numbers
    assert result["baseline"]["generated"]["1"]["frechet"] == result["generated"]["1"]["frechet"]
    assert sum(result["real_marginals"]["position"]) == pytest.approx(1.0)
    assert 0 <= result["reconstruction"]["mse"] < 1 and result["reconstruction"]["images"] == 64
    assert set(result["depth"]) == {"shape", "position", "color", "background"}
    assert all(len(v) == 6 and all(0 <= a <= 1 for a in v) for v in result["depth"].values())  # k = 0..5
    flips = pd.read_csv(out / "flips.csv")
    assert set(flips["generator"]) == {"embedded", "baseline", "shapes (classifier)", "shapes (ground truth)"}
    assert len(flips[flips["generator"] == "embedded"]) == 5 * 5  # 5 levels x 5 sigmas
    assert set(result["shape_selective"]["shapes (ground truth)"]) == {f"z{i} {n}" for i, n in enumerate(
        ["identity", "geometry", "color", "background", "texture", "unused"], start=1)}  # fmt: skip
    readme = (out / "README.md").read_text()
    assert "## Which levels fix a real image's factors" in readme and "| shape | " in readme
    assert "| generated, temperature 0.5 |" in readme and "| z5 fine | 2x16x16 = 512 |" in readme
    assert "| baseline, temperature 1 |" in readme and "## Reconstructions of held-out real images" in readme


def test_evidence_refuses_a_generator_that_is_not_embedded(tmp_path):
    from mlvgm.errors import InputError

    with pytest.raises(InputError, match="is not an embedded generator"):
        evidence_module.main(["--out", str(tmp_path / "e"), "--generator", "shapes", "--device", "cpu"])


def test_control_trains_quantifies_and_judges_each_variant(tmp_path, monkeypatch):
    from mlvgm.zoo import control as control_module
    from mlvgm.zoo import control_runs

    # tiny trainings and quantifications: the wiring, not the science (the science is results/embedded/control)
    real_train_config = control_module.ControlConfig.train_config

    def tiny(self, seed):
        c = real_train_config(self, seed)
        return dataclasses.replace(c, batch_size=4, eval_images=4, checkpoint_every=2, log_every=2, warmup=2,
                                   kl_warmup=2, amp="off")  # fmt: skip

    monkeypatch.setattr(control_module.ControlConfig, "train_config", tiny)
    monkeypatch.setattr(control_runs, "table1_fields", lambda samples, seed: {
        "generator": "", "critic": "tiny", "batch_size": 4, "min_samples": 8, "max_samples": samples, "seed": seed,
        "mc_samples": 16, "mc_batch": 8, "audit_pairs": 4, "log_every": 1})  # fmt: skip
    out, runs = tmp_path / "out", tmp_path / "runs"
    argv = ["--out", str(out), "--runs", str(runs), "--seeds", "2", "--steps", "4", "--quantify_samples", "16",
            "--device", "cpu"]  # fmt: skip
    result = control_module.main(argv)
    assert [s["seed"] for s in result["seeds"]] == [0, 1] and result["seeds"][0]["target"] == "z2 layout"
    shipped = ZooTrainConfig().level_kl_weights or (1.0,) * 5  # the variant: the shipped weights, z2's at 50
    assert json.loads((runs / "s1" / "embedded.json").read_text())["training"]["level_kl_weights"] == [
        50 if i == 1 else w for i, w in enumerate(shipped)
    ]
    rows = pd.read_csv(out / "control.csv")
    assert len(rows) == 2 * 5 and {"kl_nats", "collapsed", "verdict", "rms_gain", "mu_per_coordinate"} <= set(rows)
    assert result["overall"]["passes"] == (result["overall"]["agreement"] == result["overall"]["precondition"] == 2)
    readme = (out / "README.md").read_text()
    assert "## Seed 1" in readme and (out / "control.png").read_bytes()[:4] == b"\x89PNG"
    assert "Quantification (its table1.md):" in readme and "mu per coordinate (mu / sqrt(d)): z1 global" in readme
    summaries = json.loads((out / "control.json").read_text())["seeds"]
    assert {"largest_mu_per_coordinate", "target_over_next_mu_per_coordinate"} <= set(summaries[1])
    assert 0 <= result["overall"]["stands_out"] <= 1  # seed 1 alone: seed 0 is where the prediction was made
    stamp = (runs / "s0" / "quantify" / "quantify.json").stat().st_mtime_ns
    control_module.main(argv)  # everything done: reused, not redone
    assert (runs / "s0" / "quantify" / "quantify.json").stat().st_mtime_ns == stamp


def test_stands_out_reads_mu_per_coordinate_not_mu():
    from mlvgm.zoo.control_runs import stands_out

    # seed 0's numbers: by mu z2 leads z4 by 3.1x, by mu per coordinate (d = 16, 32, 64, 256, 512) z3 by 5.8x
    mu, dims = [4.83, 521.0, 126.6, 169.1, 81.7], [16, 32, 64, 256, 512]
    levels = ["z1 global", "z2 layout", "z3 parts", "z4 detail", "z5 fine"]
    rows = pd.DataFrame({"level": levels, "mu_per_coordinate": [m / d**0.5 for m, d in zip(mu, dims, strict=True)]})
    out = stands_out(rows, "z2 layout")
    assert out["largest_mu_per_coordinate"] == "z2 layout"
    assert out["target_over_next_mu_per_coordinate"] == pytest.approx((521.0 / 32**0.5) / (126.6 / 8))
    # a target that does not lead: the ratio falls under 1 and the leader is named
    low = stands_out(rows, "z1 global")
    assert low["largest_mu_per_coordinate"] == "z2 layout" and low["target_over_next_mu_per_coordinate"] < 1


def test_the_control_variant_changes_only_its_levels_weight_and_free_nats():
    from mlvgm.zoo.configs import ControlConfig
    from mlvgm.zoo.control_runs import variant_command

    # the shipped free nats would let the level keep them however dear its KL: the variant must take them away
    shipped = ZooTrainConfig()
    assert shipped.level_kl_weights == (1, 1, 1000, 1000, 1000) and shipped.free_nats == (12, 12, 4, 4, 4)
    control = ControlConfig(level=3, weight=50, steps=77, runs="r", amp="off")
    variant = control.train_config(2)
    assert variant.level_kl_weights == (1, 1, 50, 1000, 1000) and variant.free_nats == (12, 12, 0, 4, 4)
    assert (variant.sigma_x, variant.position_bias, variant.steps, variant.seed) == (0.1, True, 77, 2)
    assert variant.out == str(Path("r") / "s2") and variant.amp == "off"
    # every other field is the shipped training's
    differs = {f.name for f in dataclasses.fields(variant) if getattr(variant, f.name) != getattr(shipped, f.name)}
    assert differs == {"level_kl_weights", "free_nats", "steps", "seed", "out", "amp"}
    assert variant_command(control) == (
        "python -m mlvgm.zoo.train --steps 77 --level_kl_weights 1,1,50,1000,1000 --free_nats 12,12,0,4,4 --seed S"
    )
    default = ControlConfig().train_config(0)  # the control as it runs: z2, at 50, with none of its 12 nats free
    assert default.level_kl_weights == (1, 50, 1000, 1000, 1000) and default.free_nats == (12, 0, 4, 4, 4)


def test_the_shipped_weights_were_trained_by_todays_defaults():
    from mlvgm.generators.embedded import read_meta
    from mlvgm.zoo.configs import training_command

    # "trained by python -m mlvgm.zoo.train from its defaults": the shipped JSON names nothing else
    assert training_command(read_meta()["training"]) == "python -m mlvgm.zoo.train"


def test_the_training_command_names_what_differs_from_todays_defaults():
    from mlvgm.zoo.configs import training_command

    first = {"out": "", "steps": ZooTrainConfig().steps, "seed": 0, "device": "cpu", "log_every": 7}
    expected = ["python -m mlvgm.zoo.train"]  # the first weights' JSON names none of these: their values then
    for flag, then, shown in (("sigma_x", 0.0, "0"), ("groups", 1, "1"), ("position_bias", False, "false"),
                              ("strided", False, "false"), ("level_kl_weights", (), "''"), ("free_nats", (), "''"),
                              ("progressive", 0, "0")):  # in the config's order  # fmt: skip
        expected += [f"--{flag} {shown}"] if getattr(ZooTrainConfig(), flag) != then else []
    assert training_command(first) == " ".join(expected)
    changed = {
        "steps": 123,
        "lr": 0.5,
        "level_kl_weights": [1, 50, 1, 1, 1],
        "likelihood": "logistic_mixture",
        "sigma_x": ZooTrainConfig().sigma_x,
        "free_nats": list(ZooTrainConfig().free_nats),
        "publish": "x",
        "position_bias": not ZooTrainConfig().position_bias,
        "strided": True,
    }
    flipped = str(not ZooTrainConfig().position_bias).lower()
    assert training_command(changed) == (
        "python -m mlvgm.zoo.train --steps 123 --lr 0.5 --likelihood logistic_mixture "
        f"--position_bias {flipped} --strided true --level_kl_weights 1,50,1,1,1"
    )


def test_every_architecture_flag_reaches_the_vae():
    from mlvgm.generators.hvae import HVAEConfig
    from mlvgm.zoo.training import hvae_config

    changed = {"likelihood": "logistic_mixture", "mixtures": 5, "cells": 2, "sigma_x": 0.1, "groups": 2,
               "position_bias": True, "strided": True}  # fmt: skip
    got = hvae_config(ZooTrainConfig(**changed, width=2.0))
    assert {k: getattr(got, k) for k in changed} == changed
    assert got.widths == tuple((r, 2 * c) for r, c in HVAEConfig().widths)
