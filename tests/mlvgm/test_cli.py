"""Every command line answers bad input with one clear line on stderr, exit status 2, and writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write in, even as root (root ignores chmod)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except OSError:
        return folder
    (folder / "probe").unlink()
    if os.path.isdir("/sys") and _cannot_write("/sys"):  # sysfs is mounted read-only in containers
        return Path("/sys")
    pytest.skip("no read-only folder available to this user")


def _cannot_write(folder: str) -> bool:
    try:
        with open(os.path.join(folder, ".mlvgm-probe"), "w"):
            pass
    except OSError:
        return True
    os.unlink(os.path.join(folder, ".mlvgm-probe"))
    return False


VIEWS = ("mlvgm.views",)
EXPORT = ("mlvgm.data.export",)


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        (VIEWS, ["--generator", "nope", "--out", "{tmp}/g.png"], "unknown generator spec 'nope'"),
        (VIEWS, ["--out", "{tmp}/g.png", "--levels", "7"], "level 7 is out of range"),
        (VIEWS, ["--out", "{tmp}/g.png", "--sigma", "-1"], "argument --sigma: expected a number > 0"),
        (VIEWS, ["--out", "{tmp}/g.png", "--t", "0"], "argument --t: expected a number > 0"),
        (VIEWS, ["--out", "{tmp}/g.png", "--truncation", "0"], "argument --truncation: expected a number > 0"),
        (VIEWS, ["--out", "{tmp}/g.png", "--anchors", "0"], "argument --anchors: expected a positive integer"),
        (VIEWS, ["--out", "{tmp}/missing/g.png"], "does not exist: create it first or choose another --out"),
        (VIEWS, ["--out", "{readonly}/g.png"], "cannot write in folder"),
        (VIEWS, ["--out", "{tmp}/g.jpg"], "must end in .png"),
        (VIEWS, ["--out", "{tmp}/g.png", "--device", "cuda:7"], "device cuda:7"),
        (VIEWS, ["--out", "{tmp}/g.png", "--bogus"], "unrecognized arguments: --bogus"),
        (EXPORT, ["--n", "0", "--out", "{tmp}/ds"], "argument --n: expected a positive integer"),
        (EXPORT, ["--n", "5", "--out", "{tmp}/missing/ds"], "does not exist: create it first"),
        (EXPORT, ["--n", "5", "--out", "{readonly}/ds"], "cannot write in folder"),
        (EXPORT, ["--n", "5", "--out", "{tmp}/ds", "--generator", "shapes:resolution=8"], "resolution must be"),
        (EXPORT, ["--n", "5", "--out", "{tmp}/ds", "--val-fraction", "2"], "val fraction must be in [0, 1)"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, command, args, message):
    work = tmp_path / "work"
    work.mkdir()
    needs_readonly = any("{readonly}" in a for a in args)
    readonly = read_only_folder(tmp_path) if needs_readonly else tmp_path
    args = [a.format(tmp=work, readonly=readonly) for a in args]
    result = run(*command, *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0] and "Traceback" not in result.stderr
    assert list(work.iterdir()) == []


def test_existing_dataset_is_refused_and_kept(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run(*EXPORT, "--n", "5", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 2 and "already exists" in result.stderr
    assert (out / "keep.txt").read_text() == "mine" and len(list(tmp_path.iterdir())) == 1


def test_help_lists_every_flag_with_its_default(tmp_path):
    result = run(*VIEWS, "--help", cwd=tmp_path)
    assert result.returncode == 0
    for flag in ("--generator", "--out", "--anchors", "--sigma", "--t", "--truncation", "--levels", "--seed"):
        assert flag in result.stdout
    text = " ".join(result.stdout.split())  # argparse wraps lines
    assert "(default: shapes)" in text and "(default: 4)" in text


def test_views_cli_succeeds_and_records_its_command(tmp_path):
    import json

    result = run(*VIEWS, "--out", str(tmp_path / "grid.png"), "--anchors", "1", "--levels", "6", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "grid.json").read_text())
    assert record["command"].startswith("python -m mlvgm.views --out")
    assert record["columns"]["z6 unused"] == 0.0
