"""A command's bad argument is answered before torch loads: `python -m mlvgm.<command>` checks its arguments
with torch-free modules (mlvgm.config, mlvgm.options, the command's own config) and imports the model
stack only once they pass, so the one-line error costs a Python start, not the ~6 s and ~850 MB of torch.

Each case runs the command as `python -m` does (runpy, in a fresh interpreter) and checks the exit status,
the one line, and that neither torch nor pandas was imported. The time it takes is measured, not asserted
(docs/design.md, "Commands check their arguments first")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "pandas", "torchvision", "scipy", "matplotlib")

# module -> a value its own config refuses (the universal case, a misspelt flag, runs for every module too)
COMMANDS = {
    "mlvgm.train": ["--batch_size", "0"],
    "mlvgm.evaluate": ["--run", "no-such-run"],
    "mlvgm.quantify": ["--batch_size", "0"],
    "mlvgm.experiments": ["--seeds", "-1"],
    "mlvgm.backbone": ["--run", "no-such-run", "--out", "encoder.safetensors"],
    "mlvgm.grid": ["--out", "grid.png", "--anchors", "0"],
    "mlvgm.audit": ["--out", "audit", "--levels", "3", "--pairs", "0"],
    "mlvgm.data.export": ["--out", "data", "--n", "10", "--val_fraction", "1"],
    "mlvgm.zoo.train": ["--steps", "0"],
    "mlvgm.zoo.evidence": ["--images", "0"],
    "mlvgm.zoo.control": ["--level", "6"],
}

_PROBE = """
import json, runpy, sys
module, argv = sys.argv[1], sys.argv[2:]
sys.argv = [module] + argv
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    code = 0
except SystemExit as exc:
    code = exc.code
sys.stdout.write("\\n" + json.dumps({"code": code, "loaded": sorted(m for m in sys.modules if "." not in m)}))
"""


def fast_error(module: str, argv: list[str], cwd: Path) -> tuple[int, list[str], set[str]]:
    """(exit status, stderr lines, top-level modules loaded) of `python -m module argv` in cwd."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, module, *argv], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd)},
    )  # fmt: skip
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["code"], done.stderr.strip().splitlines(), set(report["loaded"])


@pytest.mark.parametrize("module", sorted(COMMANDS))
@pytest.mark.parametrize("case", ["own check", "misspelt flag"])
def test_a_bad_argument_is_one_line_before_torch_loads(module, case, tmp_path):
    argv = COMMANDS[module] if case == "own check" else ["--no_such_flag", "1"]
    code, lines, loaded = fast_error(module, argv, tmp_path)
    assert code == 2, lines
    assert len(lines) == 1 and ": error: " in lines[0], lines
    assert not loaded & set(HEAVY), f"{module} imported {sorted(loaded & set(HEAVY))} before checking its arguments"
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_probe_sees_torch_when_a_module_imports_it(tmp_path):
    """The check above can fail: a module that imports torch at the top is caught."""
    (tmp_path / "heavy_cmd.py").write_text(
        "import sys\nimport torch\nprint('x: error: bad', file=sys.stderr)\nsys.exit(2)\n"
    )
    code, _, loaded = fast_error("heavy_cmd", [], tmp_path)
    assert code == 2 and "torch" in loaded


def test_every_command_of_the_package_is_checked_here():
    """A new `python -m mlvgm.<command>` joins COMMANDS (and so must answer bad arguments before torch loads)."""
    found = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in (ROOT / "mlvgm").rglob("*.py")
        if 'if __name__ == "__main__":' in path.read_text() and path.name != "cli.py"
    }
    assert found == set(COMMANDS)
