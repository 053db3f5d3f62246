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
        "python -m bench.probe: error: give --tree DIR --out FILE [--proxies true|false], or --tree DIR --serve true"
    ]


class _Measures:
    """Probe's interface with numbered answers."""

    meta = {"batch": 32, "steps_per_epoch": 3962}

    def __init__(self) -> None:
        self.n = 0
        self.closed = False

    def data_round(self) -> float:
        self.n += 1
        return 1000.0 * self.n

    def step(self) -> float:
        self.n += 1
        return 0.5 * self.n

    def energy(self) -> dict:
        return {"cs_co2_g_per_1k_images": 0.03, "co2_method": "m"}

    def counts(self) -> dict:
        return {"cs_ops_outside_graphs": 1}

    def close(self) -> None:
        self.closed = True


def test_serve_answers_each_command_with_one_marked_line_until_quit():
    import io
    import json

    from bench.probe import REPLY, serve

    made = []

    def make():
        made.append(_Measures())
        return made[0]

    out = io.StringIO()
    serve(io.StringIO("data\nstep\nbogus\nenergy\ncounts\nquit\nstep\n"), out, make=make)
    replies = [json.loads(line[len(REPLY) :]) for line in out.getvalue().splitlines()]
    assert all(line.startswith(REPLY) for line in out.getvalue().splitlines())
    assert replies[0]["ready"] and replies[0]["steps_per_epoch"] == 3962
    assert replies[1:3] == [{"rate": 1000.0}, {"seconds": 1.0}]
    assert "unknown command 'bogus'" in replies[3]["error"]
    assert replies[4:] == [
        {"cs_co2_g_per_1k_images": 0.03, "co2_method": "m"},
        {"counts": {"cs_ops_outside_graphs": 1}},
    ]
    assert made[0].closed  # and the step after quit was never measured
