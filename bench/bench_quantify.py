"""Quantification: all units in one run on shared anchors and images (joint) against one unit after
another (the paper's code), at equal work: every unit trains the same number of steps.

The ratio joint / sequential within this run is the figure to quote; extra_info holds unit-steps/s.
"""

from __future__ import annotations

import os

import pytest
import torch

from mlvgm.generators import load_generator
from mlvgm.quantification import train_walkers
from mlvgm.quantify import QuantifyConfig

STEPS = 20  # per unit
BATCH = 64


@pytest.fixture(scope="module")
def world():
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    return load_generator("shapes:resolution=32")


@pytest.mark.parametrize("joint", [True, False], ids=["joint", "sequential"])
@pytest.mark.benchmark(group="quantify-6-levels-shapes-32px")
def test_walker_training(benchmark, world, joint: bool):
    config = QuantifyConfig(critic="tiny", batch_size=BATCH, min_samples=STEPS * BATCH, max_samples=STEPS * BATCH,
                            joint=joint, lr_walk=1e-3, lr_critic=1e-3)  # fmt: skip
    benchmark.pedantic(lambda: train_walkers(world, config, progress=False), rounds=3, warmup_rounds=1)
    benchmark.extra_info["unit_steps_per_s"] = 6 * STEPS / benchmark.stats.stats.median
    benchmark.extra_info["joint"] = joint
