"""bench/gpu_check.py is run by hand on a GPU machine; its --smoke mode keeps it from rotting here."""

from __future__ import annotations

import json

import pytest
import torch

from bench import gpu_check
from mlvgm.cli import run


def test_gpu_check_smoke_writes_its_tables(tmp_path, capsys):
    """Tiny shapes on CPU (Triton interpreter, set by conftest.py): every section filled, Triton agreeing
    with the reference."""
    assert run(gpu_check.main, "python bench/gpu_check.py", ["--smoke", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "gpu-check.json").read_text())
    assert record["provenance"]["git"]["sha"]
    assert all(r["loss_rel_error"] < 1e-5 and r["grad_cosine"] > 0.99999 for r in record["infonce_check"])
    assert {r["impl"] for r in record["infonce_time"]} == {"paper", "torch", "compiled", "triton"}
    assert record["perturb_check"]["max_abs_diff_positives_vs_cpu_compiled"] < 1e-5
    assert "## InfoNCE forward+backward" in (tmp_path / "gpu-check.md").read_text()
    assert "## InfoNCE forward+backward" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the full check")
def test_gpu_check_without_a_gpu_asks_for_smoke(tmp_path, capsys):
    assert run(gpu_check.main, "python bench/gpu_check.py", ["--out", str(tmp_path)]) == 2
    assert "use --smoke" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
