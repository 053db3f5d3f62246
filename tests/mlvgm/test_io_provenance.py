"""Atomic writes, output-path checks and provenance records."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mlvgm.errors import InputError
from mlvgm.io import atomic_path, atomic_write_json, check_output_dir, check_output_file
from mlvgm.provenance import provenance, provenance_line


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]
    atomic_write_json(target, {"a": 1})
    assert target.read_text() == '{\n  "a": 1\n}\n' and [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_written_files_get_the_mode_open_would_give_even_from_writers_that_recreate_them(tmp_path):
    """mkstemp makes 0600 files, and safetensors' save_file recreates the file it is given as 0600: a
    checkpoint or walkers file must still be readable by the group and others, as open() would make it."""
    import os

    import torch
    from safetensors.torch import save_file

    mask = os.umask(0o022)
    os.umask(mask)
    with atomic_path(tmp_path / "weights.safetensors") as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp))
    atomic_write_json(tmp_path / "record.json", {})
    for name in ("weights.safetensors", "record.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


def test_creatable_checks_without_creating(tmp_path):
    from mlvgm.io import check_creatable, make_output_dir

    assert check_creatable(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == []  # checked, nothing made
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        check_creatable(tmp_path / "file" / "sub")
    assert make_output_dir(tmp_path / "a" / "b").is_dir()


def test_output_checks(tmp_path):
    assert check_output_dir(tmp_path) == tmp_path
    with pytest.raises(InputError, match="does not exist"):
        check_output_dir(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is not a folder"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(InputError, match=r"must end in \.png"):
        check_output_file(tmp_path / "x.jpg", suffixes=(".png",))
    with pytest.raises(InputError, match="is a folder"):
        check_output_file(tmp_path)
    assert check_output_file(tmp_path / "x.PNG", suffixes=(".png",)).name == "x.PNG"


def test_provenance_names_the_commit_and_machine():
    record = provenance({"lr": 0.1})
    assert record["config"] == {"lr": 0.1}
    assert record["hardware"]["cpu_cores"] >= 1 and record["software"]["torch"]
    root = Path(__file__).resolve().parents[2]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    if head.returncode == 0:
        assert record["git"]["sha"] == head.stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True).stdout.splitlines()  # fmt: skip
        assert record["git"]["changed"] == sorted(line[3:] for line in status)[:20]  # the same checkout, now
        assert record["git"]["changed_count"] == len(status) and record["git"]["dirty"] == bool(status)
    assert provenance_line(record).startswith("git ")
