"""A run folder is a boundary: resuming or evaluating a folder someone sent never reads, writes or deletes a file
outside it (absolute, ../ and linked names are refused, links in it are replaced rather than written through, a
stored --results is ignored), and every damaged file in it is one line naming the problem, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mlvgm.checkpoint import save_checkpoint
from mlvgm.cli import run
from mlvgm.recipe import build_method, build_optimizer, peak_lr
from mlvgm.runs import load_run_config
from mlvgm.train_config import TrainConfig
from mlvgm.training import train

SMALL = {
    "generator": "shapes:resolution=32", "epochs": 1, "epoch_images": 32, "batch_size": 8, "checkpoint_every": 2,
    "log_every": 1, "evaluate": False, "width": 8, "proj_hidden": 16, "proj_dim": 8, "eval_train": 64,
    "eval_test": 32, "checkpoint_minutes": 0.0, "optimizer": "adam", "base_lr": 0.004,
}  # fmt: skip
CKPT = "checkpoint-00000002.safetensors"
MTIME_NS = 1_500_000_000_000_000_000  # 2017: a time no write during the test can give


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A run stopped after its step-2 checkpoint (of 4)."""
    folder = tmp_path_factory.mktemp("template") / "run"
    train(TrainConfig(**SMALL), folder, stop_at=2, progress=False)
    assert json.loads((folder / "checkpoint.json").read_text())["file"] == CKPT
    return folder


@pytest.fixture
def work(template, tmp_path) -> tuple[Path, Path]:
    """(a fresh copy of the run, a folder beside it whose files must survive everything done to the run)."""
    run_dir = Path(shutil.copytree(template, tmp_path / "run"))
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copyfile(run_dir / CKPT, outside / CKPT)  # loadable: only the boundary keeps a command from using it
    shutil.copyfile(run_dir / "config.json", outside / "config.json")
    shutil.copyfile(run_dir / "checkpoint.json", outside / "checkpoint.json")
    for name in ("metrics.csv", "probes.csv", "probes.md", "summary.json", "secret.txt"):
        (outside / name).write_text(f"someone else's {name}\n")
    for path in outside.iterdir():
        os.utime(path, ns=(MTIME_NS, MTIME_NS))
    return run_dir, outside


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def untouched(outside: Path) -> bool:
    files = snapshot(outside)
    return all(mtime == MTIME_NS for _, mtime in files.values()) and set(files) == {
        CKPT, "config.json", "checkpoint.json", "metrics.csv", "probes.csv", "probes.md", "summary.json", "secret.txt"
    }  # fmt: skip


def command(name: str, argv: list[str], capsys) -> tuple[int, str]:
    from mlvgm import evaluate, train

    module = {"train": train, "evaluate": evaluate}[name]
    code = run(module.main, f"python -m mlvgm.{name}", argv)
    return code, capsys.readouterr().err


def resume(run_dir: Path, capsys, *extra: str) -> tuple[int, str]:
    return command("train", ["--resume", str(run_dir), *extra], capsys)


def evaluate(run_dir: Path, capsys) -> tuple[int, str]:
    return command("evaluate", ["--run", str(run_dir), "--device", "cpu"], capsys)


def edit_json(path: Path, **changes) -> None:
    record = json.loads(path.read_text())
    record.update(changes)
    path.write_text(json.dumps(record))


def edit_config(run_dir: Path, **changes) -> None:
    saved = json.loads((run_dir / "config.json").read_text())
    saved["config"].update(changes)
    (run_dir / "config.json").write_text(json.dumps(saved))


def relink(path: Path, target: Path) -> None:
    path.unlink(missing_ok=True)
    path.symlink_to(target)


# -- names and links that lead out of the folder --------------------------------------------------------

HOSTILE = {
    "absolute checkpoint name": (
        lambda r, o: edit_json(r / "checkpoint.json", file=str(o / CKPT)), "not a file name inside"),
    "../ checkpoint name": (
        lambda r, o: edit_json(r / "checkpoint.json", file=f"../outside/{CKPT}"), "not a file name inside"),
    "checkpoint linked out": (lambda r, o: relink(r / CKPT, o / CKPT), "outside"),
    "checkpoint named like another file": (
        lambda r, o: edit_json(r / "checkpoint.json", file="config.json"), "not a name of the form"),
    "record linked out": (lambda r, o: relink(r / "checkpoint.json", o / "checkpoint.json"), "outside"),
    "config linked out": (lambda r, o: relink(r / "config.json", o / "config.json"), "outside"),
}  # fmt: skip


@pytest.mark.parametrize("name", ["train", "evaluate"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_names_leading_out_of_the_run_folder_are_refused(case, name, work, capsys):
    run_dir, outside = work
    damage, message = HOSTILE[case]
    damage(run_dir, outside)
    code, err = resume(run_dir, capsys) if name == "train" else evaluate(run_dir, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert untouched(outside)


def test_a_metrics_file_linked_out_is_refused_not_truncated(work, capsys):
    run_dir, outside = work
    relink(run_dir / "metrics.csv", outside / "metrics.csv")
    code, err = resume(run_dir, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "metrics file" in err and "outside" in err, err
    assert untouched(outside)


def test_a_metrics_file_linked_inside_the_folder_is_replaced_by_a_file(work, capsys):
    """A link that stays in the folder is read, then replaced (never written through): its target keeps its text."""
    run_dir, _ = work
    (run_dir / "old.csv").write_bytes((run_dir / "metrics.csv").read_bytes())
    relink(run_dir / "metrics.csv", run_dir / "old.csv")
    before = (run_dir / "old.csv").read_bytes()
    code, err = resume(run_dir, capsys)
    assert code == 0, err
    assert not (run_dir / "metrics.csv").is_symlink() and (run_dir / "old.csv").read_bytes() == before
    steps = [line.split(",")[0] for line in (run_dir / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2", "3", "4"]


def test_a_stored_results_folder_is_ignored_unless_given_again(work, tmp_path, capsys):
    run_dir, outside = work
    edit_config(run_dir, results=str(outside))
    assert load_run_config(run_dir)[0].results == ""
    code, err = resume(run_dir, capsys)
    assert code == 0, err
    assert untouched(outside)
    mine = tmp_path / "mine"
    code, err = resume(run_dir, capsys, "--results", str(mine))  # typed again: the user's choice
    assert code == 0, err
    assert (mine / "metrics.csv").read_bytes() == (run_dir / "metrics.csv").read_bytes()
    assert untouched(outside)


def test_evaluate_replaces_table_links_instead_of_writing_through_them(work, capsys):
    run_dir, outside = work
    relink(run_dir / "probes.csv", outside / "probes.csv")
    relink(run_dir / "probes.md", outside / "probes.md")
    code, err = evaluate(run_dir, capsys)
    assert code == 0, err
    assert untouched(outside)
    assert not (run_dir / "probes.md").is_symlink() and (run_dir / "probes.md").read_text().startswith("| factor |")


@pytest.mark.parametrize("previous", ["absolute", "../", "config.json", "link"])
def test_a_checkpoint_never_deletes_what_the_previous_record_names_outside_its_own(previous, work):
    """save_checkpoint removes the previous tensors file only when the record names one of its own in the folder."""
    run_dir, outside = work
    names = {"absolute": str(outside / CKPT), "../": f"../outside/{CKPT}", "config.json": "config.json", "link": CKPT}
    if previous == "link":
        relink(run_dir / CKPT, outside / CKPT)
    edit_json(run_dir / "checkpoint.json", file=names[previous])
    config = TrainConfig(**SMALL)
    method = build_method(config)
    save_checkpoint(run_dir, method, build_optimizer(config, method.param_groups(peak_lr(config))), step=3, extra={})
    assert untouched(outside)
    assert (run_dir / "config.json").is_file()
    assert json.loads((run_dir / "checkpoint.json").read_text())["file"] == "checkpoint-00000003.safetensors"


# -- damaged files: one line each -----------------------------------------------------------------------


def rewrite_tensors(run_dir: Path, change) -> None:
    tensors = load_file(str(run_dir / CKPT))
    change(tensors)
    save_file(tensors, str(run_dir / CKPT))


def reshaped(key: str):
    def change(tensors):
        tensors[key] = torch.zeros(3, 5)

    return change


def poisoned(tensors):
    tensors["model/backbone.conv1.weight"][0, 0, 0, 0] = float("nan")


def stray(tensors):
    tensors["optim/x/y"] = torch.zeros(1)


def record(**changes):
    return lambda r: edit_json(r / "checkpoint.json", **changes)


def group(**changes):
    def damage(r):
        saved = json.loads((r / "checkpoint.json").read_text())
        saved["param_groups"][0].update(changes)
        (r / "checkpoint.json").write_text(json.dumps(saved))

    return damage


DAMAGED = {
    "step a string": (record(step="two"), "names no checkpoint file and step"),
    "step negative": (record(step=-1), "step must be at least 0"),
    "step past the end": (record(step=9), "past total_steps"),
    "total_steps zero": (record(total_steps=0), "total_steps must be at least 1"),
    "elapsed_s negative": (record(elapsed_s=-5), "elapsed_s must be at least 0"),
    "elapsed_s a string": (record(elapsed_s="long"), "elapsed_s must be a number"),
    "epoch a list": (record(epoch=[1]), "epoch must be a number"),
    "param_groups a string": (record(param_groups="all"), "param_groups must be a list"),
    "param_groups of numbers": (record(param_groups=[1]), "param_groups[0] must be an object"),
    "param_groups empty": (record(param_groups=[]), "has 0 param groups, this optimizer 1"),
    "param_groups other params": (group(params=[0, 1]), "holds other parameters"),
    "lr a string": (group(lr="fast"), "param_groups[0].lr must be like"),
    "betas of one": (group(betas=[0.9]), "param_groups[0].betas must be like"),
    "record NaN": (lambda r: (r / "checkpoint.json").write_text('{"file": "x", "step": NaN}'), "NaN is not a JSON"),
    "tensor of another shape": (lambda r: rewrite_tensors(r, reshaped("model/backbone.conv1.weight")),
                                "tensor model/backbone.conv1.weight has shape [3, 5]"),
    "optimizer tensor of another shape": (lambda r: rewrite_tensors(r, reshaped("optim/0/exp_avg")),
                                          "tensor optim/0/exp_avg has shape [3, 5]"),
    "optimizer tensor of no parameter": (lambda r: rewrite_tensors(r, stray),
                                         "optim/x/y is not the state of a parameter"),
    "NaN tensor": (lambda r: rewrite_tensors(r, poisoned), "holds NaN or infinite values"),
    "metrics step not an integer": (lambda r: (r / "metrics.csv").write_text("step,epoch,loss\nx,0.5,1.0\n"),
                                    "line 2: step must be an integer, got 'x'"),
    "metrics loss not a number": (lambda r: (r / "metrics.csv").write_text("step,epoch,loss\n1,0.5,low\n"),
                                  "line 2: loss must be a number"),
    "metrics short row": (lambda r: (r / "metrics.csv").write_text("step,epoch,loss\n1\n"), "one value per column"),
    "metrics a folder": (lambda r: ((r / "metrics.csv").unlink(), (r / "metrics.csv").mkdir()), "is a folder"),
    "config epochs negative": (lambda r: edit_config(r, epochs=-1), "epochs must be > 0, got -1"),
    "config a list": (lambda r: (r / "config.json").write_text("[]"), "is not a run's config"),
    "config's config a list": (lambda r: (r / "config.json").write_text('{"config": []}'), "is not a run's config"),
    "config preset a number": (lambda r: edit_json(r / "config.json", preset=3), "preset must be a string"),
    "config too deep": (lambda r: (r / "config.json").write_text("[" * 100 + "]" * 100), "nested"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_a_damaged_run_folder_is_one_line_on_resume(case, work, capsys):
    run_dir, outside = work
    damage, message = DAMAGED[case]
    damage(run_dir)
    code, err = resume(run_dir, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert "Traceback" not in err and untouched(outside)


@pytest.mark.parametrize("case", ["tensor of another shape", "NaN tensor", "config epochs negative", "step negative"])
def test_a_damaged_run_folder_is_one_line_on_evaluate(case, work, capsys):
    run_dir, _ = work
    damage, message = DAMAGED[case]
    damage(run_dir)
    code, err = evaluate(run_dir, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_the_undamaged_copy_resumes(work, capsys):
    """The cases above fail because of their damage: the same run, untouched, resumes to its end."""
    run_dir, _ = work
    code, err = resume(run_dir, capsys)
    assert code == 0, err
    assert json.loads((run_dir / "checkpoint.json").read_text())["step"] == 4
    assert not (run_dir / CKPT).exists()  # the previous tensors file, removed once the new one was committed
