"""The depth diagnostic (mlvgm.zoo.depth): its agreement shares against a literal count over the decodes."""

from __future__ import annotations

import pytest
import torch

from mlvgm.generators.hvae import HierarchicalVAE, HVAEConfig
from mlvgm.zoo.depth import SHOWN, plot_depth, posterior_depth

SMALL = HVAEConfig(resolution=32, widths=((32, 8), (16, 8), (8, 8), (4, 8), (2, 8), (1, 8)),
                   levels=((1, 4), (4, 2), (16, 1)), level_names=("a", "b", "c"))  # fmt: skip


class Reader:
    """A stand-in classifier whose readings vary from image to image: the brightest channel, overall and in a
    corner (an untrained FactorClassifier reads every image alike)."""

    def logits(self, x):
        return {"dominant": x.mean((2, 3)), "corner": x[:, :, :8, :8].mean((2, 3))}


def test_depth_counts_how_often_each_factor_reads_as_the_originals(tmp_path):
    torch.manual_seed(0)
    vae = HierarchicalVAE(SMALL).eval()
    with torch.no_grad():  # latents that move the image: at its start the VAE's decodes barely differ
        for conv in [*vae.decoder.z_in, *vae.decoder.posterior]:
            conv.weight.normal_(0, 1.0)
    classifier = Reader()
    x = torch.rand(12, 3, 32, 32)
    eps = vae.decoder.sample_latents(12, generator=torch.Generator().manual_seed(1))
    agreement, grid = posterior_depth(vae, x, classifier, eps)
    with torch.no_grad():
        original = classifier.logits(x)
        decodes = [vae.decoder(eps), vae.partial(x, 1, eps), vae.partial(x, 2, eps), vae.reconstruct(x)]
        for name, values in agreement.items():
            literal = [sum(int(a == b) for a, b in zip(classifier.logits(d)[name].argmax(1).tolist(),
                                                        original[name].argmax(1).tolist(), strict=True)) / 12
                       for d in decodes]  # fmt: skip
            assert values == pytest.approx(literal, abs=1e-6)
    assert set(agreement) == set(original) and len({v for values in agreement.values() for v in values}) > 2
    assert grid.shape == (5, SHOWN, 3, 32, 32) and torch.equal(grid[0], x[:SHOWN])
    assert torch.allclose(grid[1], decodes[0][:SHOWN]) and torch.allclose(grid[4], decodes[3][:SHOWN])
    plot_depth(grid, agreement, SMALL.level_names, tmp_path / "depth.png")
    assert (tmp_path / "depth.png").read_bytes()[:4] == b"\x89PNG"
