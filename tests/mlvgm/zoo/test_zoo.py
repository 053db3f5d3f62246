"""python -m mlvgm.zoo.train and python -m mlvgm.zoo.evidence: a tiny training that is killed and resumes
exactly, its weights loaded by load_generator, and the evidence's numbers against a literal count."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from mlvgm.generators import load_generator
from mlvgm.generators.shapes import SHAPE_CLASSES
from mlvgm.zoo import evidence as evidence_module
from mlvgm.zoo import train as zoo_train
from mlvgm.zoo import training
from mlvgm.zoo.judging import judge
from mlvgm.zoo.train import ZooTrainConfig, learning_rate

TINY = ["--steps", "4", "--batch_size", "4", "--eval_images", "4", "--checkpoint_every", "2", "--log_every", "2",
        "--warmup", "2", "--kl_warmup", "2", "--amp", "off", "--device", "cpu"]  # fmt: skip


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    c = ZooTrainConfig(steps=1000, warmup=100, lr=1.0)
    assert learning_rate(c, 0) == pytest.approx(0.01) and learning_rate(c, 99) == pytest.approx(1.0)
    assert learning_rate(c, 100) == pytest.approx(1.0) and learning_rate(c, 999) == pytest.approx(0.1, abs=1e-4)
    assert learning_rate(c, 550) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way down the cosine


def test_a_killed_training_resumes_exactly_and_ships_loadable_weights(tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    zoo_train.main([*TINY, "--out", str(whole), "--publish", str(tmp_path / "shipped")])
    real_images = training.images

    def dies_at_step_2(world, stream, step, n, truncation):
        if step == 2:
            raise KeyboardInterrupt
        return real_images(world, stream, step, n, truncation)

    killed = tmp_path / "killed"
    monkeypatch.setattr(training, "images", dies_at_step_2)
    with pytest.raises(KeyboardInterrupt):
        zoo_train.main([*TINY, "--out", str(killed)])
    assert json.loads((killed / "checkpoint.json").read_text())["step"] == 2
    monkeypatch.setattr(training, "images", real_images)
    zoo_train.main([*TINY, "--out", str(killed)])
    a, b = load_file(str(whole / "embedded.safetensors")), load_file(str(killed / "embedded.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    meta = json.loads((whole / "embedded.json").read_text())
    assert meta["steps"] == 4 and len(meta["kl_nats"]) == 5 and meta["hvae"]["resolution"] == 32
    metrics = (whole / "metrics.csv").read_text().splitlines()
    assert metrics[0].startswith("step,lr") and len(metrics) == 3  # a row every 2 steps
    assert (killed / "metrics.csv").read_text().splitlines()[1:] == metrics[1:]
    for name in ("loss.png", "samples.png"):
        assert (whole / name).read_bytes()[:4] == b"\x89PNG"
    g = load_generator(f"embedded:weights={tmp_path / 'shipped' / 'embedded.safetensors'}")
    assert g.level_dims == (16, 32, 64, 256, 512)


class Fixed(torch.nn.Module):
    """A 'classifier' whose answer is written in the image: class = round(first pixel * 11), confidence 0.9."""

    def forward(self, x):
        classes = (x[:, 0, 0, 0] * 11).round().long()
        logits = torch.full((len(x), len(SHAPE_CLASSES)), -20.0)
        logits[torch.arange(len(x)), classes] = 20.0
        logits[:, 0] = torch.where(classes == 0, 20.0, 20.0 + torch.log(torch.tensor(1 / 9)))
        return logits


def test_judge_counts_classes_and_confidence_literally():
    images = torch.zeros(12, 3, 2, 2)
    for i, c in enumerate([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 5, 5]):
        images[i, 0, 0, 0] = c / 11
    result = judge(Fixed(), [images[:5], images[5:]])
    shares = [3, 2, 1, 4, 0, 2] + [0] * 6
    assert result["shares"] == pytest.approx([s / 12 for s in shares], abs=1e-5)  # rounded to 5 places
    assert result["empty_classes"] == [SHAPE_CLASSES[i] for i in (4, 6, 7, 8, 9, 10, 11)]
    # class-0 images are sure (1.0); the others split 0.9 / 0.1 between their class and class 0
    assert result["confidence"] == pytest.approx((3 * 1.0 + 9 * 0.9) / 12, abs=1e-4)
    assert result["min_share"] == 0.0


def test_evidence_writes_its_figures_and_numbers(tmp_path, capsys):
    weights = tmp_path / "w"
    zoo_train.main([*TINY, "--out", str(weights)])
    out = tmp_path / "evidence"
    result = evidence_module.main(["--out", str(out), "--generator", f"embedded:weights={weights}/embedded.safetensors",
                                   "--classifier_steps", "3", "--images", "40", "--temperatures", "0.5,1",
                                   "--device", "cpu"])  # fmt: skip
    names = {p.name for p in out.iterdir()}
    expected = {"samples.png", "classes.png", "kl.png", "views.png", "classifier.csv", "evidence.json", "README.md"}
    assert expected <= names
    assert set(result["generated"]) == {"0.5", "1"} and 0 <= result["classifier_accuracy"] <= 1
    assert sum(result["real"]["shares"]) == pytest.approx(1.0)
    readme = (out / "README.md").read_text()
    assert "| generated, temperature 0.5 |" in readme and "| z5 fine | 2x16x16 = 512 |" in readme


def test_evidence_refuses_a_generator_that_is_not_embedded(tmp_path):
    from mlvgm.errors import InputError

    with pytest.raises(InputError, match="is not an embedded generator"):
        evidence_module.main(["--out", str(tmp_path / "e"), "--generator", "shapes", "--device", "cpu"])
