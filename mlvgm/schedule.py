"""The learning-rate schedule of every trainer (mlvgm.train, mlvgm.zoo.train), without torch: the configs'
modules compute it, and the training step (mlvgm.train_step) applies it."""

from __future__ import annotations

import math


def warmup_cosine(step: int, *, peak: float, warmup: int, total: int, floor: float = 0.0) -> float:
    """Linear warm-up to `peak` over `warmup` steps (step 0 at peak / warmup), then cosine decay to floor x peak at
    step `total` (the warm-up is shortened to total - 1 steps where it would not leave one step of decay)."""
    warm = min(warmup, max(total - 1, 0))
    if step < warm:
        return peak * (step + 1) / warm
    progress = min((step - warm) / max(1, total - warm), 1.0)
    return peak * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))
