"""The shapes world: protocol conformance, exact level-6 absence, each level controls what it claims,
ground-truth factors against what the pixels show, outlines against an independent point-in-polygon."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
import torch
from matplotlib.path import Path as PolygonPath

from mlvgm.errors import InputError
from mlvgm.generators import load_generator
from mlvgm.generators.shapes import (
    FACTOR_CLASSES,
    HARMONICS,
    REFERENCE_POLYGONS,
    SHAPE_CLASSES,
    ShapesWorld,
    outline_coefficients,
)
from mlvgm.streams import Stream
from mlvgm.testing import check_mlvgm


@pytest.fixture(scope="module")
def g():
    return load_generator("shapes")


@pytest.fixture(scope="module")
def local():
    """The world without z1..z4's coarse patterns: each level's pixels are confined to its factor."""
    return ShapesWorld(pyramid=False)


def anchors(g, n, seed=0, truncation=2.0):
    return g.sample_latents(n, truncation=truncation, generator=Stream(seed, purpose="test").at(0))


def perturbed(latents, level, delta):
    out = [z.clone() for z in latents]
    out[level] = out[level] + delta
    return out


def test_conforms_to_the_protocol(g):
    report = check_mlvgm(g, n=6)
    assert report.zero_grad_levels == [6]
    assert all(v > 0 for v in report.grad_norms[:5])
    assert g.level_dims == (8,) * 6 and g.resolution == 64


@pytest.mark.parametrize("resolution", [32, 48, 128])
def test_other_resolutions_conform(resolution):
    g = load_generator(f"shapes:resolution={resolution}")
    check_mlvgm(g, n=2)
    assert g(anchors(g, 2)).shape == (2, 3, resolution, resolution)


@pytest.mark.parametrize("resolution", [16, 31, 129, 256])
def test_resolution_out_of_range(resolution):
    with pytest.raises(InputError, match="resolution must be an integer from 32 to 128"):
        ShapesWorld(resolution)


def test_gradient_reaches_levels_1_to_5_and_is_exactly_zero_for_level_6(g):
    z = [x.requires_grad_(True) for x in anchors(g, 16)]
    weights = torch.rand(16, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    (g(z) * weights).sum().backward()
    for level in range(5):
        per_sample = z[level].grad.norm(dim=1)
        assert (per_sample > 0).all(), f"level {level + 1} has a sample with no gradient"
    assert z[5].grad is not None and torch.equal(z[5].grad, torch.zeros_like(z[5].grad))


def test_every_direction_of_levels_1_to_5_matters(g):
    """No null space: each of the 8 coordinates of each used level moves the image (directional derivative)."""
    z = anchors(g, 32)
    for level in range(5):
        for dim in range(8):
            direction = torch.zeros(8)
            direction[dim] = 1.0
            tangents = [torch.zeros_like(x) for x in z]
            tangents[level] = direction.expand_as(z[level])
            _, jvp = torch.func.jvp(lambda *latents: g(list(latents)), tuple(z), tuple(tangents))
            assert jvp.abs().amax() > 1e-3, f"z{level + 1}[{dim}] does not change any image"


def test_level_6_changes_nothing_bitwise(g):
    z = anchors(g, 8)
    assert torch.equal(g(perturbed(z, 5, 100.0 * torch.randn(8, 8))), g(z))


def test_deterministic(g):
    z = anchors(g, 8)
    assert torch.equal(g(z), g([x.clone() for x in z]))


# -- each level controls what it claims ---------------------------------------------------------------


def _changed_factors(g, z, level, scale=1.5, seed=1):
    delta = scale * torch.randn(z[0].shape[0], 8, generator=torch.Generator().manual_seed(seed))
    before, after = g.factors(z), g.factors(perturbed(z, level, delta))
    return {k: float((before[k] != after[k]).float().mean()) for k in before}


@pytest.mark.parametrize(
    ("level", "controls"),
    [(0, {"shape"}), (1, {"position"}), (2, {"color"}), (3, {"background"}), (4, set()), (5, set())],
)
def test_each_level_changes_only_its_own_factors(g, level, controls):
    changed = _changed_factors(g, anchors(g, 512), level)
    for factor, fraction in changed.items():
        if factor in controls:
            assert fraction > 0.3, f"perturbing z{level + 1} changed {factor} in only {fraction:.0%} of images"
        else:
            assert fraction == 0.0, f"perturbing z{level + 1} changed {factor} ({fraction:.0%})"


def test_color_changes_the_object_not_the_background(local):
    z = anchors(local, 32)
    image, mask = local.render(z)
    image2, _ = local.render(perturbed(z, 2, 1.5 * torch.ones(8)))
    diff = (image2 - image).abs().amax(dim=1)  # (B, H, W)
    assert diff[mask < 1e-4].max() < 1e-3
    assert diff[mask > 0.99].mean() > 0.02


def test_background_changes_the_background_not_the_object(local):
    z = anchors(local, 32)
    image, mask = local.render(z)
    image2, _ = local.render(perturbed(z, 3, 1.5 * torch.ones(8)))
    diff = (image2 - image).abs().amax(dim=1)
    assert diff[mask > 1 - 1e-4].max() < 1e-3
    assert diff[mask < 1e-4].mean() > 0.02


def test_texture_is_fine_and_small(g):
    z = anchors(g, 32)
    image, mask = g.render(z)
    image2, mask2 = g.render(perturbed(z, 4, torch.randn(32, 8, generator=torch.Generator().manual_seed(3))))
    diff = image2 - image
    assert torch.equal(mask, mask2)
    assert 0.005 < float(diff.abs().mean()) < 0.05 and float(diff.abs().max()) < 0.25
    # "fine": most of the change's energy is at high spatial frequency (periods of a few pixels)
    spectrum = torch.fft.rfft2(diff.mean(dim=1)).abs() ** 2  # (B, 64, 33)
    fy = torch.fft.fftfreq(64).abs()[:, None]
    fx = torch.fft.rfftfreq(64)[None, :]
    high = (torch.maximum(fy, fx) >= 4 / 64).float()  # periods of 16 px or less
    assert float((spectrum * high).sum() / spectrum.sum()) > 0.9


def _pattern_jvp(g, local, z, level, direction):
    """The pyramid's pattern change (B, H, W) along `direction` of a level: the pixel derivative of the
    world minus that of the world without the pyramid (they differ only by the linear patterns)."""
    tangents = [torch.zeros_like(x) for x in z]
    tangents[level] = direction.expand_as(z[level])
    outs = [torch.func.jvp(lambda *zs, w=w: w(list(zs)), tuple(z), tuple(tangents))[1] for w in (g, local)]
    return (outs[0] - outs[1]).mean(dim=1)  # luminance: the same in every channel


def test_pattern_pyramid_is_coarse_to_fine_and_falls_by_the_ratio(g, local):
    """Each of z1..z4 adds a pattern one octave coarser and PATTERN_RATIO (1.5) stronger than the next
    level's (z5's is the texture). Read off the pixels, summed over the 8 directions of a level (its
    gratings' cos and sin pairs, so the sums are flat over the frame): the pattern's rms per unit of
    latent, and its frequency sqrt(sum |grad d|^2 / sum d^2) / 2 pi, in cycles per image."""
    z = [x * 0.1 for x in anchors(g, 4, truncation=None)]  # near-mid-grey images: no pixel clamps
    image = g(z)
    assert 0.0 < float(image.min()) and float(image.max()) < 1.0
    rms, cycles = [], []
    for level in range(5):
        energy = slope = 0.0
        for dim in range(8):
            direction = torch.zeros(8)
            direction[dim] = 1.0
            if level < 4:
                d = _pattern_jvp(g, local, z, level, direction)[0]
            else:  # z5's pattern is the texture, present in both worlds: read it from g alone
                tangents = [torch.zeros_like(x) for x in z]
                tangents[4] = direction.expand_as(z[4])
                d = torch.func.jvp(lambda *zs: g(list(zs)), tuple(z), tuple(tangents))[1].mean(dim=1)[0]
            energy += float((d**2).mean())
            slope += float((d.diff(dim=0) ** 2).mean() + (d.diff(dim=1) ** 2).mean())  # per pixel step
        rms.append(math.sqrt(energy))
        cycles.append(math.sqrt(slope / energy) * 64 / (2 * math.pi))
    for level in range(4):
        assert rms[level] / rms[level + 1] == pytest.approx(1.5, rel=0.05), rms
        assert cycles[level + 1] / cycles[level] == pytest.approx(2.0, rel=0.05), cycles
    assert cycles[4] == pytest.approx(8.0, rel=0.1)  # the texture: gratings at 6 to 10 cycles per image


def test_without_the_pyramid_only_the_patterns_differ(g, local):
    z = anchors(g, 8)
    none = [torch.zeros_like(x) for x in z[:4]] + z[4:]  # z1..z4 = 0: their patterns vanish
    assert torch.allclose(g(none), local(none), atol=1e-6)
    assert float((g(z) - local(z)).abs().mean()) > 0.02


def test_a_large_perturbation_drowns_the_image_sooner_the_earlier_the_level(g):
    """What quantification measures: at equal norm, an early level's pattern covers more of the image
    with clamped pixels than a later one's."""
    z = anchors(g, 64)
    delta = 25.0 * torch.nn.functional.normalize(torch.randn(64, 8, generator=torch.Generator().manual_seed(2)), dim=1)
    clamped = []
    for level in range(5):
        x = g(perturbed(z, level, delta))
        clamped.append(float(((x <= 0) | (x >= 1)).float().mean()))
    assert clamped == sorted(clamped, reverse=True) and clamped[0] > 2 * clamped[4], clamped


def test_geometry_moves_the_object(g):
    z = anchors(g, 64)
    _, mask = g.render(z)
    _, mask2 = g.render(perturbed(z, 1, 1.5 * torch.randn(64, 8, generator=torch.Generator().manual_seed(4))))
    moved = (_centroid(mask2) - _centroid(mask)).norm(dim=1)
    assert float(moved.median()) > 3.0  # pixels


# -- ground-truth factors against what the pixels show ------------------------------------------------


def _centroid(mask):  # (B, H, W) -> (B, 2) as (x, y) in pixels
    h, w = mask.shape[1:]
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    total = mask.sum(dim=(1, 2))
    return torch.stack([(mask * xs).sum(dim=(1, 2)) / total, (mask * ys).sum(dim=(1, 2)) / total], dim=1)


def test_position_factor_matches_the_rendered_centroid(g):
    z = anchors(g, 400, seed=5, truncation=None)
    _, mask = g.render(z)
    position = g.factors(z)["position"]
    c = _centroid(mask) / 64 * 2 - 1  # in [-1, 1]
    cell = lambda v: torch.clamp(((v / 0.7 + 0.5) * 3).long(), 0, 2)  # noqa: E731  centres span [-0.35, 0.35]
    from_pixels = cell(c[:, 1]) * 3 + cell(c[:, 0])
    assert float((from_pixels == position).float().mean()) > 0.9


def test_color_factor_matches_the_object_pixels(g):
    z = anchors(g, 300, seed=6, truncation=None)
    image, mask = g.render(z)
    color = g.factors(z)["color"]
    agree = seen = 0
    for b in range(300):
        inside = mask[b] > 0.95
        if inside.sum() < 20:  # an object mostly out of the frame
            continue
        rgb = image[b][:, inside].mean(dim=1).tolist()
        hue = colorsys.rgb_to_hsv(*rgb)[0]  # the standard library's own HSV, independent of ours
        bin_from_pixels = min(int(hue * 8), 7)
        agree += min((bin_from_pixels - int(color[b])) % 8, (int(color[b]) - bin_from_pixels) % 8) <= 1
        seen += 1
    assert seen > 270 and agree / seen > 0.97


def test_background_factor_matches_the_background_pixels(g):
    z = anchors(g, 300, seed=7, truncation=None)
    z[4] = torch.zeros_like(z[4])  # no texture: read the background colour cleanly
    image, mask = g.render(z)
    background = g.factors(z)["background"]
    agree = 0
    for b in range(300):
        # the gradient's midline holds the first colour exactly; away from it the hue shifts a little
        outside = mask[b] < 1e-4
        rgb = image[b][:, outside].mean(dim=1).tolist()
        hue = colorsys.rgb_to_hsv(*rgb)[0]
        bin_from_pixels = min(int(hue * 6), 5)
        agree += min((bin_from_pixels - int(background[b])) % 6, (int(background[b]) - bin_from_pixels) % 6) <= 1
    assert agree / 300 > 0.9


def test_factor_classes_are_balanced_and_shapes_near_discrete(g):
    z = g.sample_latents(24_000, generator=Stream(8).at(0))
    factors = g.factors(z)
    for name, classes in FACTOR_CLASSES.items():
        freq = torch.bincount(factors[name], minlength=classes).double() / 24_000
        assert freq.numel() == classes
        assert float((freq - 1.0 / classes).abs().max()) < 0.12 / classes, name
    confidence = g.scene(z)["shape_confidence"]
    assert float(confidence.median()) > 0.9


# -- outlines against an independent point-in-polygon ------------------------------------------------


@pytest.mark.parametrize("name", sorted(REFERENCE_POLYGONS))
def test_outline_series_matches_the_polygon(name):
    vertices = np.array(REFERENCE_POLYGONS[name], dtype=np.float64)
    x, y = vertices[:, 0], vertices[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))  # shoelace
    vertices = vertices * math.sqrt(math.pi / area)  # the library normalises every class to the unit disc's area
    grid = np.linspace(-1.8, 1.8, 241)
    gx, gy = np.meshgrid(grid, grid)
    points = np.stack([gx.ravel(), gy.ravel()], axis=1)
    truth = PolygonPath(vertices).contains_points(points)

    coef = outline_coefficients()[SHAPE_CLASSES.index(name)].numpy()
    theta = np.arctan2(points[:, 1], points[:, 0])
    k = np.arange(1, HARMONICS + 1)
    r = (
        coef[0]
        + np.cos(np.outer(theta, k)) @ coef[1 : HARMONICS + 1]
        + np.sin(np.outer(theta, k)) @ coef[HARMONICS + 1 :]
    )
    series = np.hypot(points[:, 0], points[:, 1]) < r
    iou = (truth & series).sum() / (truth | series).sum()
    assert iou > 0.95, f"{name}: IoU {iou:.3f}"


def test_at_least_ten_classes():
    assert len(SHAPE_CLASSES) >= 10 and len(set(SHAPE_CLASSES)) == len(SHAPE_CLASSES)


def test_wrong_number_of_levels(g):
    with pytest.raises(InputError, match="6 latent levels"):
        g(anchors(g, 2)[:5])


def test_compiled_matches_eager(g):
    z = anchors(g, 16)
    compiled = torch.compile(g, fullgraph=True, dynamic=False)
    with torch.no_grad():
        torch.testing.assert_close(compiled(z), g(z), atol=1e-5, rtol=0)
