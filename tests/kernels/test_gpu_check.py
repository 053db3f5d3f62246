"""bench/gpu_check.py is run by hand on a GPU machine; its --smoke mode keeps it from rotting here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_smoke_writes_its_tables(tmp_path):
    """Tiny shapes on CPU (Triton interpreter): every section filled, Triton agreeing with the reference."""
    env = {**os.environ, "TRITON_INTERPRET": "0" if torch.cuda.is_available() else "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "gpu-check.json").read_text())
    assert record["provenance"]["git"]["sha"]
    assert all(r["loss_rel_error"] < 1e-5 and r["grad_cosine"] > 0.99999 for r in record["infonce_check"])
    assert {r["impl"] for r in record["infonce_time"]} == {"paper", "torch", "compiled", "triton"}
    assert record["perturb_check"]["max_abs_diff_positives_vs_cpu_compiled"] < 1e-5
    assert "## InfoNCE forward+backward" in (tmp_path / "gpu-check.md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the full check")
def test_gpu_check_without_a_gpu_asks_for_smoke(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode != 0 and "use --smoke" in done.stderr
