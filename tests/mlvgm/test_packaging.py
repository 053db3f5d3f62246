"""The wheel: mlvgm with its kernels as mlvgm.kernels, no top-level `kernels` (PyPI's `kernels` package owns
that name) and no `bench` or `tests`; installed in a clean virtual environment beside a package named
`kernels`, both import and mlvgm's fused ops run."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from the tracked files (a copy, so the build leaves nothing in the checkout)."""
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools (pip install mlvgm[dev])")
    work = tmp_path_factory.mktemp("wheel")
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False).stdout.split()
    if not files:
        pytest.skip("not a git checkout: the wheel is built from the tracked files")
    source = work / "src"
    for name in files:
        if name.startswith(("mlvgm/", "kernels/")) or name in ("pyproject.toml", "README.md"):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(work), "."],
        cwd=source, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # a package setuptools finds but pyproject does not list (the embedded weights' folder) is a warning block
    assert "absent from the `packages` configuration" not in result.stdout + result.stderr
    (built,) = work.glob("mlvgm-*.whl")
    return built


def test_the_wheel_ships_the_kernels_under_mlvgm_and_nothing_at_top_level_but_mlvgm(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"mlvgm"}
    for module in ("infonce", "perturb", "dispatch", "__init__"):
        assert f"mlvgm/kernels/{module}.py" in names
    # every tracked module of the library, so a new subpackage missing from pyproject's `packages` fails here
    tracked = subprocess.run(["git", "ls-files", "mlvgm"], cwd=ROOT, capture_output=True, text=True, check=True)
    modules = [name for name in tracked.stdout.split() if name.endswith(".py")]
    assert "mlvgm/methods/simclr.py" in modules and "mlvgm/strategies/random.py" in modules
    assert [name for name in modules if name not in names] == []


def test_the_wheel_works_in_a_clean_venv_beside_a_kernels_package(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", purelib, str(wheel)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    # an unrelated distribution that installs the top-level package `kernels`, as PyPI's does
    other = Path(purelib) / "kernels"
    other.mkdir()
    (other / "__init__.py").write_text('WHO = "another project"\n')
    (Path(purelib) / "kernels-0.1.dist-info").mkdir()
    (Path(purelib) / "kernels-0.1.dist-info" / "METADATA").write_text("Name: kernels\nVersion: 0.1\n")
    # torch and the other dependencies from this environment's site-packages, as plain path entries (no
    # .pth of theirs runs, so this checkout's editable install stays out)
    deps = [p for p in {sysconfig.get_paths()["purelib"], *site.getsitepackages()} if os.path.isdir(p)]
    (Path(purelib) / "deps.pth").write_text("\n".join(deps) + "\n")
    code = (
        "import kernels, mlvgm, torch\n"
        "from mlvgm.losses import info_nce\n"
        "import mlvgm.kernels.infonce as fused\n"
        "assert kernels.WHO == 'another project', kernels.__file__\n"
        "assert fused.__file__.startswith(mlvgm.__path__[0]), fused.__file__\n"
        "z = torch.randn(6, 4)\n"
        "a = info_nce(z[:3], z[3:], 0.1, impl='torch')\n"
        "b = info_nce(z[:3], z[3:], 0.1, impl='compiled')\n"
        "assert torch.allclose(a, b, atol=1e-5), (a, b)\n"
        "from mlvgm.plugins import method_names, strategy_names\n"  # plug-ins are found by their files
        "assert set(method_names()) >= {'simclr', 'simsiam', 'byol'}, method_names()\n"
        "assert set(strategy_names()) >= {'none', 'random', 'learned'}, strategy_names()\n"
        "print(mlvgm.__file__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().startswith(purelib)
