"""The recipe and the trainer: presets, config overrides and their errors, reproducibility, exact resume
on CPU (also of a run stopped before its first checkpoint), the time budget, two-process data parallelism
over gloo, and the files a run writes (and, on bad input, does not)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from mlvgm.cli import run
from mlvgm.config import make_config
from mlvgm.errors import InputError
from mlvgm.recipe import build_source, build_views, learning_rate
from mlvgm.train import main
from mlvgm.train_config import PRESETS, TrainConfig, check_inputs
from mlvgm.training import steps_in_budget, train

TINY = {
    "generator": "shapes:resolution=32", "epochs": 1, "epoch_images": 32, "batch_size": 8, "checkpoint_every": 2,
    "log_every": 1, "evaluate": False, "proj_hidden": 32, "proj_dim": 16, "pred_hidden": 8, "results": "",
}  # fmt: skip


def tiny(**overrides) -> TrainConfig:
    return TrainConfig(**{**TINY, **overrides})


def weights(run_dir) -> dict[str, torch.Tensor]:
    record = json.loads((run_dir / "checkpoint.json").read_text())
    return load_file(str(run_dir / record["file"]))


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def cli(argv, capsys):
    try:
        code = run(main, "python -m mlvgm.train", argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    return code, capsys.readouterr().err


# -- presets and config ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_a_valid_config(name):
    config = make_config(TrainConfig, PRESETS, name, {})
    assert isinstance(config, TrainConfig)


def test_paper_presets_carry_the_papers_hyperparameters():
    ml = make_config(TrainConfig, PRESETS, "bigbigan-simclr-ml-random", {})
    assert (ml.batch_size, ml.warmup_epochs, ml.truncation, ml.epochs, ml.base_lr) == (1024, 10, 2.0, 100, 0.05)
    assert ml.view_levels == ("2", "3", "4", "5", "6") and ml.view_sigma == (1.0,) and ml.augment == "no_color"
    jahanian = make_config(TrainConfig, PRESETS, "bigbigan-simsiam-random", {})
    assert jahanian.view_sigma == (0.2,) and len(jahanian.view_levels) == 6 and jahanian.augment == "simclr"
    assert (jahanian.proj_dim, jahanian.pred_hidden) == (2048, 512)
    byol = make_config(TrainConfig, PRESETS, "stylegan2-byol-ml-random", {})
    assert (byol.batch_size, byol.warmup_epochs, byol.truncation, byol.view_t) == (512, 0, 0.9, 1.0)
    assert byol.view_sigma == (0.2,) * 4 + (0.1,) * 4 + (0.8,) * 8 and byol.byol_momentum == 0.996
    real = make_config(TrainConfig, PRESETS, "stylegan2-byol-real", {})
    assert real.source == "imagefolder" and real.views == "none" and real.augment == "simclr"


def test_view_options_reach_the_perturbation():
    """view_sigma / view_sigma_max / view_p / kernels become the RandomViews the run uses."""
    from mlvgm.generators import load_generator

    g = load_generator("shapes")
    views = build_views(tiny(view_levels=("2", "4"), view_sigma=(0.5, 1.0), view_sigma_max=(1.5,), view_p=0.25,
                             kernels="torch"), g)  # fmt: skip
    p = views.params
    assert views.impl == "torch" and p.multi
    assert p.sigma == (0.0, 0.5, 0.0, 1.0, 0.0, 0.0) and p.sigma_max == (0.0, 1.5, 0.0, 1.5, 0.0, 0.0)
    assert p.p[1] == p.p[3] == 0.25 and p.t[1] == TINY.get("view_t", 2.0)
    assert not build_views(tiny(), g).params.multi


def test_a_config_file_sits_between_the_preset_and_the_command_line(tmp_path):
    """--config FILE.json (what mlvgm.quantify writes as views.json) applies its keys over the preset;
    keys typed on the command line win; a bad file is one clear error."""
    from mlvgm.config import parse_config

    path = tmp_path / "views.json"
    path.write_text(json.dumps({"view_levels": ["2", "4"], "view_sigma": [0.5, 2.0], "view_t": 1.0}))
    argv = ["--config", str(path), "--view_t", "1.5"]
    config, overrides, _ = parse_config(
        TrainConfig, PRESETS, argv, prog="t", description="", default_preset="quickstart"
    )
    assert overrides["view_levels"] == ("2", "4")  # file keys count as typed (a resume checks them)
    assert config.view_levels == ("2", "4") and config.view_sigma == (0.5, 2.0) and config.view_t == 1.5
    assert config.optimizer == PRESETS["quickstart"]["optimizer"]
    for text, match in [("{", "is not valid JSON"), ("[1]", "must hold a JSON object"),
                        ('{"view_sigmas": [1]}', "unknown key 'view_sigmas': did you mean view_sigma")]:  # fmt: skip
        path.write_text(text)
        with pytest.raises(InputError, match=match):
            parse_config(TrainConfig, PRESETS, ["--config", str(path)], prog="t", description="",
                         default_preset="quickstart")  # fmt: skip
    with pytest.raises(InputError, match="cannot read it"):
        parse_config(TrainConfig, PRESETS, ["--config", str(tmp_path / "none.json")], prog="t", description="",
                     default_preset="quickstart")  # fmt: skip


def test_learned_views_train_from_the_walkers_file(tmp_path):
    """--views learned --walkers PATH: the run perturbs with the trained walkers; missing flags or files
    fail before anything is written."""
    from mlvgm.generators import load_generator
    from mlvgm.walkers import LevelWalkers

    path = LevelWalkers(load_generator("shapes"), seed=1).save(tmp_path / "walkers")
    (tmp_path / "run").mkdir()
    summary = train(tiny(views="learned", walkers=str(path), view_levels=("2", "3")), tmp_path / "run", progress=False)
    assert summary["steps"] == 4
    with pytest.raises(InputError, match="--views learned needs --walkers PATH"):
        check_inputs(tiny(views="learned"))
    with pytest.raises(InputError, match="does not exist"):
        check_inputs(tiny(views="learned", walkers=str(tmp_path / "nope.safetensors")))
    assert {"bigbigan-simclr-learned", "stylegan2-byol-ml-learned"} <= set(PRESETS)


def test_learning_rate_warms_up_then_decays_by_cosine():
    config = tiny(epochs=10, warmup_epochs=2, base_lr=0.1, batch_size=512)
    peak = 0.1 * 512 / 256
    assert learning_rate(config, 0, 10) == pytest.approx(peak / 20)
    assert learning_rate(config, 19, 10) == pytest.approx(peak)
    assert learning_rate(config, 20, 10) == pytest.approx(peak)
    assert learning_rate(config, 60, 10) == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * 40 / 80)))
    assert learning_rate(config, 99, 10) < 0.01 * peak


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"method": "moco"}, "method must be one of simclr, simsiam, byol"),
        ({"batch_size": 0}, "batch_size must be > 0"),
        ({"view_sigma": (1.0, 2.0)}, "view_sigma has 2 values for 4 view_levels"),
        ({"view_sigma_max": (1.0, 2.0)}, "view_sigma_max has 2 values for 4 view_levels"),
        ({"view_p": 1.5}, r"view_p must be in \[0, 1\]"),
        ({"kernels": "cuda"}, "kernels must be one of auto, torch, compiled, triton"),
        ({"warmup_epochs": 5, "epochs": 5}, "warmup_epochs"),
        ({"byol_momentum": 1.0}, "byol_momentum"),
        ({"render_chunk": -1}, "render_chunk must be >= 0"),
    ],
)
def test_bad_config_values(overrides, match):
    with pytest.raises(InputError, match=match):
        tiny(**overrides)


def test_render_chunk_reaches_continuous_sampling():
    cpu = torch.device("cpu")
    assert build_source(tiny(render_chunk=16), rank=0, world=1, device=cpu).render_chunk == 16
    assert build_source(tiny(), rank=0, world=1, device=cpu).render_chunk is None  # 0: one forward


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--base_lrr", "0.1"], "unknown option '--base_lrr': did you mean --base_lr"),
        (["--epochs", "many"], "--epochs must be an integer, got 'many'"),
        (["--small_stem", "maybe"], "--small_stem must be true or false"),
        (["--preset", "imagenet-sota"], "unknown preset 'imagenet-sota'"),
        (["--method", "moco"], "method must be one of"),
        (["--preset", "bigbigan-simclr-ml-random"], "needs its weights: pass --checkpoint PATH"),
        (["--preset", "bigbigan-simclr-ml-random", "--checkpoint", "/nope/BigBiGAN_x1.pth"], "does not exist"),
        (["--source", "imagefolder", "--out", "{tmp}/r"], "needs --data PATH"),
        (["--resume", "{tmp}"], "is not a run folder"),
        (["--generator", "shapse", "--out", "{tmp}/r"], "unknown generator spec 'shapse'"),
        (["--view_levels", "2,7", "--out", "{tmp}/r"], "level 7 is out of range"),
        (["--out", "{tmp}/r", "--results", "/proc/version/x"], "is a file, not a folder"),
    ],
)
def test_bad_command_lines_are_one_line_and_exit_2(argv, message, tmp_path, capsys):
    code, err = cli([a.format(tmp=tmp_path) for a in argv], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "r").exists()


def test_help_lists_every_field_with_its_default(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(TrainConfig):
        assert f"--{f.name}" in text
    assert "(default: 0.004)" in text and "(default: quickstart)" in text  # the preset a bare run uses


def test_batch_must_divide_over_ranks(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(InputError, match="batch_size 8 is not divisible by the world size 3"):
        train(tiny(), tmp_path)


# -- runs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["simclr", "simsiam", "byol"])
def test_same_seed_same_weights_and_resume_is_exact(method, tmp_path):
    config = tiny(method=method)
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    train(config, tmp_path / "a")
    train(config, tmp_path / "b")
    assert_same_weights(tmp_path / "a", tmp_path / "b")

    train(config, tmp_path / "c", stop_at=2)  # interrupted after the step-2 checkpoint
    assert json.loads((tmp_path / "c" / "checkpoint.json").read_text())["step"] == 2
    train(config, tmp_path / "c", resume=True)
    assert_same_weights(tmp_path / "a", tmp_path / "c")  # bit for bit
    steps = [line.split(",")[0] for line in (tmp_path / "c" / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2", "3", "4"]


def test_a_training_step_that_cannot_be_captured_runs_eagerly_with_the_same_weights(tmp_path, monkeypatch, caplog):
    """--cuda_graphs on compiles the step with CUDA graphs (CUDA only); where that fails on the first step, the run
    says why in one line and goes on with the eager model, leaving no gradient of the failed attempt behind."""
    import mlvgm.training as trainer

    def failing_capture(model, config, device):
        def forward(view_a, view_b):
            loss, _ = model(view_a, view_b)
            (loss * 1e3).backward()  # gradients the eager retry must not add to
            raise RuntimeError("CUDA graph capture failed: operation not permitted when stream is capturing")

        return forward

    train(tiny(), tmp_path / "eager")
    monkeypatch.setattr(trainer, "step_forward", failing_capture)
    with caplog.at_level(logging.WARNING, logger="mlvgm.train"):
        train(tiny(), tmp_path / "fallback")
    assert_same_weights(tmp_path / "eager", tmp_path / "fallback")
    lines = [r.message for r in caplog.records if "--cuda_graphs" in r.message]
    assert lines == ["--cuda_graphs: the training step runs without CUDA graphs (RuntimeError: CUDA graph capture "
                     "failed: operation not permitted when stream is capturing)"]  # fmt: skip


def test_a_run_writes_its_files_and_resume_rejects_another_config(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [f"--{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in TINY.items()]
    code, err = cli([*argv, "--out", str(out), "--evaluate", "true", "--eval_train", "64", "--eval_test", "32"], capsys)
    assert code == 0, err
    files = ("config.json", "metrics.csv", "checkpoint.json", "summary.json", "loss.png", "probes.csv", "probes.md",
             "views_audit.json")  # fmt: skip
    for name in files:
        assert (out / name).exists(), name
    audit = json.loads((out / "views_audit.json").read_text())  # the quickstart's views keep the image
    assert audit["pairs"] == 512 and not audit["destroyed"] and 0 < audit["pixel_change"] < 0.2
    assert audit["flip_shape"] == 0.0 and audit["flip_color"] > 0  # z2-z5 move colour, never the shape (z1)
    if importlib.util.find_spec("tensorboard") is not None:
        assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["batch_size"] == 8 and record["git"]["sha"] and record["preset"] == "quickstart"
    assert record["kernels"] == {"infonce": "compiled", "perturb": "compiled"}  # what impl="auto" ran on CPU
    # 4 planned steps: too few to repay the compile on a CPU, so auto runs the eager step, and says why
    assert record["cs_path"]["mode"] == "eager"
    assert "4 planned steps of 8 pairs at 32 px would not repay" in record["cs_path"]["why"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cs_mode"] == "eager"
    probes = summary["probes"]
    assert {(p["factor"], p["encoder"]) for p in probes} == {
        (f, e) for f in ("shape", "position", "color", "background") for e in ("trained", "random init")
    }
    from mlvgm.evaluate import main as evaluate

    (out / "probes.md").unlink()
    evaluate(["--run", str(out), "--device", "cpu"])
    assert (out / "probes.md").read_text().startswith("| factor |")
    with pytest.raises(InputError, match="not a run folder"):
        evaluate(["--run", str(tmp_path)])
    code, err = cli(["--resume", str(out), "--epochs", "3"], capsys)
    assert code == 2 and "was made with epochs=1, not 3" in err
    code, err = cli([*argv, "--out", str(out)], capsys)
    assert code == 2 and "already holds a run" in err


def test_bad_input_leaves_no_run_folder_behind(tmp_path, monkeypatch, capsys):
    """The default run folder (runs/<preset>-<time>) is created only once every input has been checked."""
    monkeypatch.chdir(tmp_path)
    for argv in (["--generator", "shapse"], ["--view_levels", "2,7"], ["--preset", "bigbigan-simclr-ml-random"]):
        code, err = cli([*argv, "--epochs", "1"], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_a_run_stopped_before_its_first_checkpoint_can_be_resumed(tmp_path, capsys):
    """No checkpoint yet: reusing --out says to --resume, and --resume starts the run again with its config."""
    argv = [f"--{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in TINY.items()]
    out = tmp_path / "run"
    config = tiny(checkpoint_every=100)
    train(config, out, stop_at=1)  # interrupted before any checkpoint
    assert (out / "config.json").exists() and not (out / "checkpoint.json").exists()
    code, err = cli([*argv, "--checkpoint_every", "100", "--out", str(out)], capsys)
    assert code == 2 and f"stopped before its first checkpoint: --resume {out}" in err
    code, err = cli(["--resume", str(out)], capsys)
    assert code == 0, err
    train(config, tmp_path / "whole")
    assert_same_weights(out, tmp_path / "whole")


def test_a_resumed_run_reports_this_session_and_keeps_its_clock(tmp_path, capsys):
    out = tmp_path / "run"
    first = train(tiny(), out, stop_at=2)
    assert first["steps"] == first["steps_this_session"] == 2
    assert run(main, "python -m mlvgm.train", ["--resume", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["steps_this_session"] == 2
    assert summary["elapsed_s"] >= first["elapsed_s"] + summary["wall_s"] - 0.5
    assert "trained 2 steps in" in printed and "this session (4 of 4 in all)" in printed
    rows = [line.split(",") for line in (out / "metrics.csv").read_text().splitlines()[1:]]
    elapsed = [float(row[5]) for row in rows]
    assert elapsed == sorted(elapsed) and elapsed[2] > elapsed[1]  # the clock continues across the resume


def test_a_diverged_run_is_one_line_and_claims_nothing(tmp_path, capsys):
    """The issue's repro: --base_lr 1e12 gave NaN weights, exit status 0 and a probe table of 100%."""
    out = tmp_path / "run"
    argv = [f"--{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in TINY.items()]
    code, err = cli([*argv, "--width", "8", "--base_lr", "1e12", "--evaluate", "true", "--eval_train", "64",
                     "--eval_test", "32", "--out", str(out)], capsys)  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "training diverged: the loss became nan at step" in err and "a lower --base_lr (this run's is 1e+12)" in err
    for name in ("probes.csv", "probes.md", "summary.json", "loss.png"):
        assert not (out / name).exists(), name
    if (out / "checkpoint.json").exists():  # a checkpoint from before the divergence holds finite weights only
        assert all(torch.isfinite(t).all() for t in weights(out).values() if t.is_floating_point())


def poison(monkeypatch, first: int, *, loss: bool = True) -> None:
    """From the `first` step of this session on, NaN gradients (so NaN weights after the step) and, with
    `loss`, a NaN loss: a divergence at a step of our choosing."""
    from mlvgm.train_step import TrainStep

    real, calls = TrainStep.forward_backward, []

    def forward_backward(self, *args, **kwargs):
        value, metrics = real(self, *args, **kwargs)
        calls.append(None)
        if len(calls) >= first:
            for group in self.optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.fill_(math.nan)
            value = value * math.nan if loss else value
        return value, metrics

    monkeypatch.setattr(TrainStep, "forward_backward", forward_backward)


def test_a_divergence_between_log_steps_keeps_the_last_good_checkpoint_and_resumes_exactly(tmp_path, monkeypatch):
    """The loss is watched on the device and read at log steps and checkpoints: a NaN at step 3 (no log step)
    is caught before the step-4 checkpoint, named by its own step, and the step-2 checkpoint stays resumable."""
    from mlvgm.training import TrainingDiverged

    config = tiny(log_every=100)
    train(config, tmp_path / "whole")
    poison(monkeypatch, 3)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 3 \(the last finite loss was [0-9.]+ at step "
                       r"2\); stopped with nothing evaluated, the checkpoint of step 2 is kept"):  # fmt: skip
        train(config, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
    assert record["step"] == 2 and (tmp_path / "run" / record["file"]).exists()
    assert not (tmp_path / "run" / "summary.json").exists()
    monkeypatch.undo()
    train(config, tmp_path / "run", resume=True)
    assert_same_weights(tmp_path / "whole", tmp_path / "run")


def test_weights_that_went_nan_under_a_finite_loss_are_not_checkpointed(tmp_path, monkeypatch):
    from mlvgm.training import TrainingDiverged

    poison(monkeypatch, 4, loss=False)  # the last step's update breaks the weights; its loss was fine
    with pytest.raises(TrainingDiverged, match="the weights became NaN or infinite by step 4"):
        train(tiny(), tmp_path / "run")
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["step"] == 2


def test_checkpoints_also_come_with_time(tmp_path):
    train(tiny(checkpoint_every=100, checkpoint_minutes=1e-9), tmp_path / "run", stop_at=3)
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["step"] == 3


@pytest.mark.parametrize(
    ("budget", "elapsed", "step_s", "done", "planned", "eval_s", "expected"),
    [
        (600.0, 10.0, 1.0, 6, 240, 30.0, 240),  # fits: 10 + 234 + 30 < 600
        (600.0, 10.0, 2.5, 6, 240, 30.0, 6 + 224),  # (600 - 10 - 30) / 2.5 = 224 more
        (60.0, 10.0, 1.0, 6, 240, 100.0, 6),  # the evaluation alone overruns: stop where it is
        (600.0, 10.0, 0.1, 6, 240, 0.0, 240),  # never more than planned
    ],
)
def test_steps_in_budget(budget, elapsed, step_s, done, planned, eval_s, expected):
    got = steps_in_budget(budget_s=budget, elapsed_s=elapsed, step_s=step_s, done=done, planned=planned,
                          eval_s=eval_s)  # fmt: skip
    assert got == expected


def test_a_time_budget_cuts_the_run_and_its_schedule(tmp_path, caplog):
    """A budget the first steps show cannot hold: the run ends after the probe steps, its cosine ends
    there too, the cut is recorded, and a resume keeps the cut."""
    import logging

    config = tiny(epoch_images=96, checkpoint_every=100, budget_minutes=1e-6)  # 12 steps planned
    with caplog.at_level(logging.INFO, logger="mlvgm"):
        summary = train(config, tmp_path / "run")
    assert summary["planned_steps"] == 12 and summary["steps"] == summary["total_steps"] == 6  # 1 + PROBE_STEPS
    assert "budget: training 6 steps instead" in caplog.text
    record = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
    assert record["step"] == 6 and record["total_steps"] == 6
    again = train(config, tmp_path / "run", resume=True)
    assert again["steps"] == 6 and again["steps_this_session"] == 0


def test_a_shorter_run_ends_its_cosine_at_its_last_step():
    config = tiny(epochs=10, warmup_epochs=2, base_lr=0.1, batch_size=512)
    peak = 0.1 * 512 / 256
    assert learning_rate(config, 0, 10, 50) == pytest.approx(peak / 20)  # the warm-up is unchanged
    assert learning_rate(config, 35, 10, 50) == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * 15 / 30)))
    assert learning_rate(config, 49, 10, 50) < 0.01 * peak
    assert learning_rate(config, 3, 10, 5) == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * 0 / 1)))


def test_a_run_that_slows_down_is_cut_again_to_stay_within_its_budget(tmp_path, caplog):
    """The budget is checked again every BUDGET_CHECK_EVERY steps at the mean pace: a run whose steps get
    slower after the probe (another job took the cores) trains fewer steps than the probe planned."""
    import logging

    class SlowingClock:
        """Steps 1-10 take 0.01 s, later ones 1 s: the run reads the clock at its start, at its session's, and
        once at the end of every step."""

        def __init__(self) -> None:
            self.readings, self.now = 0, 0.0

        def __call__(self) -> float:
            step = self.readings - 2  # the step (0-based) that this reading ends
            if step >= 0:
                self.now += 0.01 if step < 10 else 1.0
            self.readings += 1
            return self.now

    # 40 steps planned in 12 s; at step 21, 11.1 s gone at a mean 0.55 s a step: one more fits
    config = tiny(epoch_images=320, checkpoint_every=100, budget_minutes=0.2)
    with caplog.at_level(logging.INFO, logger="mlvgm"):
        summary = train(config, tmp_path / "run", clock=SlowingClock())
    assert "training ends in about" in caplog.text  # the probe saw a fast run: no cut then
    assert "budget now holds" in caplog.text
    assert summary["planned_steps"] == 40 and summary["steps"] == summary["total_steps"] == 22
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["total_steps"] == summary["steps"]


def test_an_eta_is_logged_after_the_first_steps(tmp_path, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="mlvgm"):
        train(tiny(epoch_images=64), tmp_path / "run")
    assert "training ends in about" in caplog.text


def _ddp_worker(rank: int, world: int, port: int, run_dir, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from mlvgm.distributed import init_distributed

    config = tiny(epoch_images=16, device="cpu")
    init_distributed(config.device, config.batch_size)
    summary = train(config, run_dir)
    source = build_source(config, rank=rank, world=world, device=torch.device("cpu"))
    g = source.generator
    anchors = torch.cat(g.sample_latents(4, truncation=config.truncation, generator=source.anchors.at(0)), dim=1)
    out[rank] = (summary["steps"], anchors)
    dist.destroy_process_group()


def test_two_process_gloo_training(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(2, port, tmp_path, out), nprocs=2, join=True)
    assert out[0][0] == out[1][0] == 2  # 16 images per epoch / global batch 8, 4 per rank
    assert out[0][1].shape == (4, 48)
    assert torch.cdist(out[0][1], out[1][1]).min() > 0.5  # the ranks' latents are disjoint
    assert (tmp_path / "checkpoint.json").exists() and (tmp_path / "metrics.csv").exists()


def test_torchrun_command_line(tmp_path):
    """The documented multi-process command: torchrun starts 2 CPU ranks over gloo."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    flags = [f"--{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in TINY.items()]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command = [*launcher, "-m", "mlvgm.train", *flags, "--epoch_images", "16", "--device", "cpu"]
    command += ["--out", str(tmp_path / "run")]
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["world_size"] == 2 and (tmp_path / "run" / "checkpoint.json").exists()
    assert result.stdout.count("trained 2 steps") == 1  # only rank 0 reports
    missing_out = subprocess.run(command[:-2], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert missing_out.returncode != 0 and "pass --out RUN_DIR" in missing_out.stderr
