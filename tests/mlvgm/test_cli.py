"""Every command line: one style (dataclass configs, `--key value`, underscores or hyphens), `--help` with
each default once, and bad input answered with one clear line on stderr, exit status 2 and nothing
written. Run in-process through mlvgm.cli.run, as `python -m` runs them; a few cases start a real
process, where the process is what they test (the `python -m` entry points, the recorded command)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mlvgm import cli
from mlvgm.data import export
from mlvgm.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = ["mlvgm.train", "mlvgm.quantify", "mlvgm.evaluate", "mlvgm.grid", "mlvgm.data.export",
                "bench.compare", "bench.figure5", "bench.kernels.report", "mlvgm.experiments"]  # fmt: skip


def call(module, argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `python -m module argv`, in this process."""
    try:
        code = cli.run(module.main, f"python -m {module.__name__}", argv)
    except SystemExit as exc:  # --help
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def views():
    from mlvgm import grid as views

    return views


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("views", ["--generator", "nope", "--out", "{tmp}/g.png"], "unknown generator spec 'nope'"),
        ("views", ["--out", "{tmp}/g.png", "--levels", "7"], "level 7 is out of range"),
        ("views", ["--out", "{tmp}/g.png", "--sigma", "-1"], "--sigma must be > 0"),
        ("views", ["--out", "{tmp}/g.png", "--t", "0"], "--t must be > 0"),
        ("views", ["--out", "{tmp}/g.png", "--truncation", "0"], "--truncation must be > 0"),
        ("views", ["--out", "{tmp}/g.png", "--anchors", "0"], "--anchors must be a positive integer"),
        ("views", ["--out", "{tmp}/g.png", "--anchors", "two"], "--anchors must be an integer, got 'two'"),
        ("views", ["--out", "{readonly}/g.png"], "cannot write in folder"),
        ("views", ["--out", "{readonly}/new/g.png"], "cannot write in folder"),
        ("views", ["--out", "{tmp}/g.jpg"], "must end in .png"),
        ("views", ["--out", "{tmp}/g.png", "--device", "cuda:7"], "device cuda:7"),
        ("views", ["--out", "{tmp}/g.png", "--bogus"], "unknown option '--bogus'"),
        ("views", ["--out", "{tmp}/g.png", "--sigmaa", "1"], "did you mean --sigma"),
        ("views", ["--anchors", "2"], "--out is required"),
        ("export", ["--n", "0", "--out", "{tmp}/ds"], "--n must be a positive integer"),
        ("export", ["--n", "5", "--out", "{readonly}/ds"], "cannot write in folder"),
        ("export", ["--n", "5", "--out", "{tmp}/ds", "--generator", "shapes:resolution=8"], "resolution must be"),
        ("export", ["--n", "5", "--out", "{tmp}/ds", "--val_fraction", "2"], "val fraction must be in [0, 1)"),
        ("export", ["--n", "5", "--out", "{tmp}/ds", "--val-fraction", "2"], "val fraction must be in [0, 1)"),
        ("export", ["--n", "5", "--out", "{tmp}/ds", "--format", "tar"], "--format must be imagefolder or ffcv"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    tmp_path, capsys, views, command, args, message, read_only_folder
):
    module = {"views": views, "export": export}[command]
    work = tmp_path / "work"
    work.mkdir()
    needs_readonly = any("{readonly}" in a for a in args)
    readonly = read_only_folder() if needs_readonly else tmp_path
    args = [a.format(tmp=work, readonly=readonly) for a in args]
    code, _, err = call(module, args, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0] and "Traceback" not in err
    assert list(work.iterdir()) == []


def test_output_folders_are_created_with_their_parents(tmp_path, capsys, views):
    """Every command creates the folder it writes to (after checking its input), the same way."""
    out = tmp_path / "new" / "sub" / "grid.png"
    code, _, err = call(views, ["--out", str(out), "--anchors", "1", "--levels", "6"], capsys)
    assert code == 0, err
    assert out.exists() and out.with_suffix(".json").exists()
    data = tmp_path / "more" / "ds"
    code, _, err = call(export, ["--n", "3", "--out", str(data), "--val_fraction", "0"], capsys)
    assert code == 0, err
    assert (data / "manifest.json").exists()
    mode = data.stat().st_mode & 0o777
    assert mode == 0o777 & ~_umask(), oct(mode)  # not mkdtemp's 0700


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_existing_dataset_is_refused_and_kept(tmp_path, capsys):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = call(export, ["--n", "5", "--out", str(out)], capsys)
    assert code == 2 and "already exists" in err
    assert (out / "keep.txt").read_text() == "mine" and len(list(tmp_path.iterdir())) == 1


def test_help_lists_every_flag_once_with_its_default_once(capsys, views):
    code, out, _ = call(views, ["--help"], capsys)
    assert code == 0
    for flag in ("--generator", "--out", "--anchors", "--sigma", "--t", "--truncation", "--levels", "--seed"):
        assert flag in out
    text = " ".join(out.split())  # argparse wraps lines
    assert "(default: shapes)" in text and "(default: 4)" in text and "--out VALUE PNG to write" in text
    assert text.count("(default:") == text.count("(default: ") == 8  # every field but --out, once each
    assert "--val-fraction" not in call(export, ["--help"], capsys)[1]  # one spelling shown


def test_hyphens_and_underscores_name_the_same_key(tmp_path, capsys):
    from mlvgm.config import parse_config
    from mlvgm.train_config import PRESETS, TrainConfig

    for flag in ("--base-lr", "--base_lr", "--base-lr=0.5", "--base_lr=0.5"):
        argv = [flag] if "=" in flag else [flag, "0.5"]
        config, given, _ = parse_config(TrainConfig, PRESETS, argv, prog="t", description="",
                                        default_preset="quickstart")  # fmt: skip
        assert config.base_lr == 0.5 and given == {"base_lr": 0.5}
    config, _, _ = parse_config(TrainConfig, PRESETS, ["--evaluate", "false", "--overlap"], prog="t",
                                description="", default_preset="quickstart")  # fmt: skip
    assert config.evaluate is False and config.overlap is True  # a bare boolean flag means true


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--preset", "quikstart"], "unknown preset 'quikstart': did you mean quickstart?"),
        (["--preset", "zzz"], "unknown preset 'zzz': see --help for the"),
        (["--epochz", "3"], "unknown option '--epochz': did you mean --epochs"),
        (["--epochs", "many"], "--epochs must be an integer, got 'many'"),
        (["--small_stem", "maybe"], "--small_stem must be true or false, got 'maybe'"),
        (["--view_sigma", "1,x"], "--view_sigma must be comma-separated numbers"),
        (["--method", "moco"], "method must be one of simclr, simsiam, byol"),
        (["stray"], "unexpected argument 'stray'"),
    ],
)
def test_train_config_errors_are_one_line(argv, message):
    from mlvgm.config import parse_config
    from mlvgm.train_config import PRESETS, TrainConfig

    with pytest.raises(InputError, match=None) as info:
        parse_config(TrainConfig, PRESETS, argv, prog="t", description="", default_preset="quickstart")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_help_shows_the_defaults_of_the_preset_that_runs(capsys):
    """A bare run uses the quickstart preset: --help shows its values, not the dataclass's; --preset X
    --help shows X's."""
    from mlvgm import train

    code, out, _ = call(train, ["--help"], capsys)
    text = " ".join(out.split())
    assert code == 0
    assert "--epochs VALUE epochs (default: 4)" in text and "--optimizer VALUE" in text
    assert "(default: adam)" in text and "(default: 100)" not in text.split("--epochs")[1][:60]
    code, out, _ = call(train, ["--preset", "shapes-synth", "--help"], capsys)
    text = " ".join(out.split())
    assert "--epochs VALUE epochs (default: 100)" in text and "preset shapes-synth" in text


def test_the_cuda_home_notice_is_dropped_on_machines_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("the notice is only dropped where CUDA is missing")
    cli.setup_logging()
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger = logging.getLogger("torch.utils.cpp_extension")
    logger.addHandler(handler)
    try:
        logger.warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local")
        logger.warning("something else")
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in seen] == ["something else"]


def test_library_logs_reach_the_command_output(capsys):
    cli.setup_logging()
    logging.getLogger("mlvgm.anything").info("a line from the library")
    assert capsys.readouterr().out == "a line from the library\n"


def python_m(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_every_entry_point_has_help(module, tmp_path):
    result = python_m(module, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: python {'-m ' if not module.endswith('.py') else ''}{module}")
    assert result.stderr == ""


def test_views_command_records_itself_and_prints_no_noise(tmp_path):
    result = python_m("mlvgm.grid", "--out", str(tmp_path / "grid.png"), "--anchors", "1", "--levels", "6",
                      cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "grid.json").read_text())
    assert record["command"].startswith("python -m mlvgm.grid --out")
    assert record["columns"]["z6 unused"] == 0.0
    assert "CUDA_HOME" not in result.stdout + result.stderr


def test_an_input_error_is_one_line_whatever_it_quotes():
    """A value read from a file may hold newlines (a tensor's repr) or be huge: the message stays one line
    and keeps its start (the problem) and its end (the fix)."""
    quoted = repr(torch.arange(40.0).reshape(20, 2))
    error = InputError(f"refused to load {quoted}: use the original file")
    assert "\n" not in str(error) and str(error).startswith("refused to load tensor([[ 0.,  1.], [ 2.,")
    long = InputError("problem " + "x" * 5000 + " the fix")
    assert len(str(long)) <= InputError.MAX_CHARS and str(long).startswith("problem x")
    assert str(long).endswith("x the fix") and " ... " in str(long)
