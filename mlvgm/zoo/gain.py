"""How strongly each level of a generator moves its image: the Jacobian of the image with respect to the level's
latent, its largest singular value and its RMS over random directions. `python -m mlvgm.zoo.evidence` reports it
per level; the positive control (`python -m mlvgm.zoo.control`) and Table 1 on the embedded VAE test
quantification's ordering against it (docs/embedded.md).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.func import jvp, vjp

from mlvgm.generators.base import sample_anchors
from mlvgm.streams import Stream


def level_influence(g, n: int = 16, iters: int = 30, seed: int = 0) -> list[dict[str, float]]:
    """How strongly each level moves the image: per level, the largest singular value of d image / d z_i (power
    iteration with forward- and reverse-mode products, per anchor) and the root-mean-square gain over random
    directions (||J||_F / sqrt(d_i), by Hutchinson's estimate); both the mean over n anchors at truncation 2."""

    anchors = sample_anchors(g, n, truncation=2.0, generator=Stream(seed, purpose="zoo-influence").at(0))
    noise = torch.Generator(device=anchors[0].device).manual_seed(seed)
    out = []
    for i in range(len(g.level_dims)):

        def image(z_i: Tensor, i: int = i) -> Tensor:
            return g([z_i if j == i else z for j, z in enumerate(anchors)]).flatten(1)  # (n, pixels)

        v = torch.randn(anchors[i].shape, generator=noise, device=anchors[i].device)
        for _ in range(iters):  # v <- J^T J v, per anchor: the images are independent, so J is block-diagonal
            v = v / v.norm(dim=1, keepdim=True)
            _, jv = jvp(image, (anchors[i],), (v,))
            v = vjp(image, anchors[i])[1](jv)[0]
        v = v / v.norm(dim=1, keepdim=True)
        top = jvp(image, (anchors[i],), (v,))[1].norm(dim=1)  # (n,)
        probes = [jvp(image, (anchors[i],), (torch.randn(anchors[i].shape, generator=noise),))[1] for _ in range(8)]
        frobenius = torch.stack([p.pow(2).sum(1) for p in probes]).mean(0).sqrt()  # (n,)
        rms = frobenius / math.sqrt(g.level_dims[i])
        out.append({"top_singular": float(top.mean()), "rms_gain": float(rms.mean())})
    return out
