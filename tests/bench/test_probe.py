"""bench.probe's import hook: the measured tree's mlvgm and its kernels (top-level kernels/, installed as
mlvgm.kernels) are the ones imported, not the installed checkout's, or the probe refuses to measure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tree(root: Path, who: str) -> Path:
    (root / "mlvgm").mkdir(parents=True)
    (root / "kernels").mkdir()
    (root / "mlvgm" / "__init__.py").write_text(f"WHO = {who!r}\n")
    (root / "kernels" / "__init__.py").write_text(f"WHO = {who!r}\n")
    (root / "kernels" / "infonce.py").write_text(f"WHO = {who!r}\n")
    return root


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_use_tree_imports_mlvgm_and_its_kernels_from_the_tree(tmp_path):
    tree = _tree(tmp_path / "base", "base tree")
    result = _run(
        "from pathlib import Path\n"
        "from bench.probe import use_tree\n"
        f"use_tree(Path({str(tree)!r}))\n"
        "import mlvgm, mlvgm.kernels, mlvgm.kernels.infonce\n"
        "print(mlvgm.WHO, '|', mlvgm.kernels.WHO, '|', mlvgm.kernels.infonce.WHO)\n"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "base tree | base tree | base tree"


def test_use_tree_refuses_when_mlvgm_is_already_imported(tmp_path):
    tree = _tree(tmp_path / "base", "base tree")
    result = _run(
        f"from pathlib import Path\nimport mlvgm\nfrom bench.probe import use_tree\nuse_tree(Path({str(tree)!r}))\n"
    )
    assert result.returncode != 0
    assert "mlvgm was imported before use_tree" in result.stderr


def test_the_probe_refuses_incomplete_arguments_in_one_line():
    result = subprocess.run([sys.executable, "-m", "bench.probe", "--tree", "."], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "python -m bench.probe: error: give --tree DIR --out FILE [--proxies true|false]"
    ]
