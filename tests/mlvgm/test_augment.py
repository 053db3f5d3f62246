"""The fused random resized crop and flip of T_x against literal references; PixelAugment's two impls."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mlvgm.augment import CROP_RATIO, CROP_SCALE, CROP_TRIES, PixelAugment, crop_flip, crop_params
from mlvgm.errors import InputError
from mlvgm.latents import uniform
from mlvgm.streams import Stream


def draws(step=0):
    return Stream(3, purpose="test-augment").at(step)


def test_crop_boxes_follow_torchvisions_rule_literally():
    """The same uniforms (a fresh Draws at the same step replays them), the rule as a plain loop."""
    n = 64
    boxes, flip = crop_params(n, draws())
    u = uniform((n, 2 * CROP_TRIES + 3), generator=draws()).double().tolist()
    fell_back = 0
    for i in range(n):
        w = h = 1.0
        for t in range(CROP_TRIES):
            area_u, ratio_u = u[i][2 * t], u[i][2 * t + 1]
            area = CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * area_u
            ratio = math.exp(math.log(CROP_RATIO[0]) + (math.log(CROP_RATIO[1]) - math.log(CROP_RATIO[0])) * ratio_u)
            tw, th = math.sqrt(area * ratio), math.sqrt(area / ratio)
            if tw <= 1 and th <= 1:
                w, h = tw, th
                break
        else:
            fell_back += 1
        corner = u[i][2 * CROP_TRIES : 2 * CROP_TRIES + 2]
        assert boxes[i].tolist() == pytest.approx([corner[0] * (1 - w), corner[1] * (1 - h), w, h], abs=1e-6)
        assert bool(flip[i]) == (u[i][-1] < 0.5)
    assert fell_back < n  # the draws exercise the accepted branch


def test_crop_boxes_fall_back_to_the_whole_image_when_nothing_fits(monkeypatch):
    import mlvgm.augment as augment

    monkeypatch.setattr(augment, "CROP_SCALE", (1.0, 1.0))  # area 1 fits only at ratio exactly 1
    boxes, _ = augment.crop_params(16, draws())
    whole = (boxes[:, 2] == 1) & (boxes[:, 3] == 1) & (boxes[:, 0] == 0) & (boxes[:, 1] == 0)
    assert bool(whole.all())


def test_crop_flip_on_pixel_aligned_boxes_is_slicing():
    """A box whose size equals the output lands every sample on a pixel centre: exact crop and mirror."""
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[4 / 16, 2 / 16, 8 / 16, 8 / 16], [0.0, 8 / 16, 8 / 16, 8 / 16]])
    flip = torch.tensor([False, True])
    out = crop_flip(images, boxes, flip, 8)
    torch.testing.assert_close(out[0], images[0, :, 2:10, 4:12], rtol=0, atol=1e-6)
    torch.testing.assert_close(out[1], images[1, :, 8:16, 0:8].flip(-1), rtol=0, atol=1e-6)


def test_crop_flip_of_the_whole_image_is_bilinear_resizing():
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    whole = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand(3, 4)
    out = crop_flip(images, whole, torch.zeros(3, dtype=torch.bool), 56)
    expected = F.interpolate(images, size=(56, 56), mode="bilinear", align_corners=False, antialias=False)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_fused_views_are_keyed_per_sample_and_flip_half_the_time():
    augment = PixelAugment("no_color", 24, normalize=False)
    ramp = torch.linspace(0, 1, 32).expand(3, 32, 32)  # brightness grows to the right: a flip reverses it
    batch = ramp.expand(512, -1, -1, -1).contiguous()
    out = augment(batch, draws(5))
    assert out.shape == (512, 3, 24, 24)
    assert torch.equal(out, augment(batch, draws(5))) and not torch.equal(out, augment(batch, draws(6)))
    flipped = (out[:, 0, :, 0].mean(dim=1) > out[:, 0, :, -1].mean(dim=1)).float().mean()
    assert 0.42 < float(flipped) < 0.58
    zoom = out[:, 0, 0, -1] - out[:, 0, 0, 0]  # how much of the ramp a view spans: the crop's width
    assert float(zoom.abs().min()) < 0.6 < float(zoom.abs().max())  # crops of many sizes


def test_fused_and_kornia_impls_make_views_of_the_same_family():
    batch = torch.rand(256, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    for preset in ("simclr", "no_color", "no_crop", "none"):
        fused = PixelAugment(preset, 24)(batch, draws(1))
        kornia = PixelAugment(preset, 24, impl="kornia")(batch, draws(1))
        assert fused.shape == kornia.shape == (256, 3, 24, 24)
        assert abs(float(fused.mean() - kornia.mean())) < 0.1  # same normalisation and colour statistics
    assert not PixelAugment("none", 24).fused and PixelAugment("simclr", 24).rest is not None
    with pytest.raises(InputError, match="unknown augmentation impl 'cuda'"):
        PixelAugment("simclr", 24, impl="cuda")


def test_none_preset_is_a_centre_crop_normalised_literally():
    from mlvgm.augment import IMAGENET_MEAN, IMAGENET_STD

    x = torch.rand(2, 3, 36, 36, generator=torch.Generator().manual_seed(4))
    out = PixelAugment("none", 32)(x, draws())
    for c in range(3):
        expected = (x[:, c, 2:34, 2:34] - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        torch.testing.assert_close(out[:, c], expected, rtol=0, atol=1e-5)


def test_compiled_fused_view_equals_eager():
    batch = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    for preset in ("no_color", "simclr"):
        eager = PixelAugment(preset, 24)(batch, draws(7))
        compiled = PixelAugment(preset, 24, compile=True)(batch, draws(7))
        torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-4)
