"""Shared pytest setup for tests/ and bench/: markers that skip with a visible reason, scratch folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

_ROOT = Path(__file__).resolve().parent
# torch.compile writes its cache here unless the caller (make, .ci/run) chose a folder already.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(_ROOT / ".cache" / "inductor"))
# Without a GPU, Triton kernels run in its interpreter on CPU tensors. The switch is read when
# triton.language defines its own jit functions, so it must be set before anything imports triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_slow = config.getoption("--run-slow")
    has_gpu = torch.cuda.is_available()
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow test: run with --run-slow"))
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU: none on this machine"))
        if "interpret" in item.keywords and not has_gpu and os.environ.get("TRITON_INTERPRET") != "1":
            item.add_marker(pytest.mark.skip(reason="Triton without a GPU needs TRITON_INTERPRET=1 before import"))
    # run_last: after every other test, in their own order (a benchmark that leaves the process changed)
    items[:] = [i for i in items if "run_last" not in i.keywords] + [i for i in items if "run_last" in i.keywords]


@pytest.fixture
def read_only_folder(tmp_path: Path):
    """read_only_folder(): a folder this process cannot write in, even as root (root ignores chmod: then the
    read-only sysfs); skips the test where there is none."""

    def make() -> Path:
        folder = tmp_path / "locked"
        folder.mkdir(exist_ok=True)
        folder.chmod(0o555)
        try:
            (folder / "probe").touch()
        except OSError:
            return folder
        (folder / "probe").unlink()
        if os.path.isdir("/sys") and _cannot_write("/sys"):  # sysfs is mounted read-only in containers
            return Path("/sys")
        pytest.skip("no read-only folder available to this user")

    return make


def _cannot_write(folder: str) -> bool:
    try:
        with open(os.path.join(folder, ".mlvgm-probe"), "w"):
            pass
    except OSError:
        return True
    os.unlink(os.path.join(folder, ".mlvgm-probe"))
    return False
