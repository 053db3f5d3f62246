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
    assert provenance_line(record).startswith("git ")
