"""mlvgm.load_backbone and python -m mlvgm.backbone: the run's own backbone, as the training process held it,
and a torchvision-style file that loads into the network its JSON describes with the same features."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from safetensors.torch import load_file

import mlvgm
from mlvgm.backbone import main, read_backbone
from mlvgm.cli import run
from mlvgm.encoders import backbone as build_backbone
from mlvgm.errors import InputError
from mlvgm.train_config import TrainConfig
from mlvgm.training import train

SMALL = {
    "generator": "shapes:resolution=32", "epochs": 1, "epoch_images": 32, "batch_size": 8, "checkpoint_every": 2,
    "log_every": 1, "evaluate": False, "proj_hidden": 16, "proj_dim": 8, "pred_hidden": 8, "checkpoint_minutes": 0.0,
}  # fmt: skip
IMAGES = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module", params=[
    {"method": "byol", "width": 8},  # a target network beside the online one: the online backbone is the one
    {"method": "simclr", "width": 64, "small_stem": False},  # torchvision's own resnet18
])  # fmt: skip
def trained(request, tmp_path_factory):
    """(run folder, the features of the training process's own backbone at its last checkpoint)."""
    import mlvgm.training as trainer

    folder = tmp_path_factory.mktemp("run") / "run"
    seen = {}
    real = trainer.save_checkpoint

    def spy(run_dir, model, optimizer, *, step, extra):
        model.backbone.eval()  # eval: BN uses its running statistics and leaves them as they are
        with torch.no_grad():
            seen[step] = model.backbone(IMAGES)
        model.backbone.train()
        return real(run_dir, model, optimizer, step=step, extra=extra)

    trainer.save_checkpoint = spy
    try:
        train(TrainConfig(**{**SMALL, **request.param}), folder, progress=False)
    finally:
        trainer.save_checkpoint = real
    return folder, seen[4]


def test_load_backbone_gives_the_runs_own_features(trained):
    folder, features = trained
    net = mlvgm.load_backbone(folder)
    assert not net.training
    with torch.no_grad():
        assert torch.equal(net(IMAGES), features)


def test_the_written_file_loads_into_the_network_its_json_describes(trained, tmp_path, capsys):
    folder, features = trained
    out = tmp_path / "backbone.safetensors"
    assert run(main, "python -m mlvgm.backbone", ["--run", str(folder), "--out", str(out)]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    config = json.loads((folder / "config.json").read_text())["config"]
    assert (meta["arch"], meta["width"], meta["small_stem"]) == (config["arch"], config["width"], config["small_stem"])
    assert meta["step"] == 4 and meta["features"] == features.shape[1]
    state = load_file(str(out))
    # the checkpoint's own online backbone tensors, under torchvision's names
    record = json.loads((folder / "checkpoint.json").read_text())
    saved = load_file(str(folder / record["file"]))
    assert state.keys() == {k.removeprefix("model/backbone.") for k in saved if k.startswith("model/backbone.")}
    net, _ = build_backbone(meta["arch"], small_stem=meta["small_stem"], width=meta["width"])
    net.load_state_dict(state)  # strict: every key, every shape
    with torch.no_grad():
        assert torch.equal(net.eval()(IMAGES), features)
        assert torch.equal(read_backbone(out)(IMAGES), features)
    if meta["width"] == 64 and not meta["small_stem"]:  # torchvision's network, as torchvision builds it
        plain = torchvision.models.resnet18(weights=None)
        plain.fc = torch.nn.Identity()
        plain.load_state_dict(state)
        with torch.no_grad():
            assert torch.equal(plain.eval()(IMAGES), features)


def test_bad_input_is_one_line_and_writes_nothing(trained, tmp_path, capsys):
    folder, _ = trained
    for argv, message in [
        (["--run", str(tmp_path), "--out", str(tmp_path / "b.safetensors")], "is not a run folder"),
        (["--run", str(folder), "--out", str(tmp_path / "b.pt")], "must end in .safetensors"),
        (["--run", str(folder)], "--out is required"),
    ]:
        assert run(main, "python -m mlvgm.backbone", argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not list(tmp_path.glob("b.*"))
    (tmp_path / "x.safetensors").write_bytes(b"junk")
    (tmp_path / "x.json").write_text(json.dumps({"arch": "resnet18", "width": 8, "small_stem": True}))
    with pytest.raises(InputError, match="not a readable safetensors file"):
        read_backbone(tmp_path / "x.safetensors")
