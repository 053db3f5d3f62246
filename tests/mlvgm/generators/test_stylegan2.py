"""StyleGAN2: protocol conformance in both spaces, equivalence with stylegan2-ada-pytorch on recorded
outputs, truncation, noise modes, resizing, checkpoint validation, and torch.compile.

The reference file data/stylegan2_reference.pt holds what NVlabs/stylegan2-ada-pytorch (commit
d72cc7d041b42ec8e806021a205ed9349f87c6a4, torch 2.14.1, CPU, fp32, reference ops) computed for
`REFERENCE_CONFIG` with the weights `seeded_state(..., seed=0)` below: its Generator was built with
the same init kwargs, given `seeded_state(reference_generator)` (the function reads only names and
shapes, which the two module trees share), and run in eval mode on `reference_z()`:

    z          (2, 32)        reference_z()
    ws         (2, 8, 32)     G.mapping(z, None)                                    psi 1
    ws_psi     (2, 8, 32)     G.mapping(z, None, truncation_psi=0.7)
    ws_cutoff  (2, 8, 32)     G.mapping(z, None, truncation_psi=0.7, truncation_cutoff=3)
    img        (2, 3, 32, 32) G(z, None, noise_mode='const')                        conv_clamp 256
    img_clamp  (2, 3, 32, 32) G(z, None, truncation_psi=0.7, noise_mode='none')    conv_clamp 0.5

Images are the reference's raw synthesis output (about [-1, 1]). The reference code is not part of
this repository; the file is the only thing taken from its run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mlvgm.errors import InputError
from mlvgm.generators.stylegan2 import (
    StyleGAN2,
    from_kwargs_and_state,
    setup_filter,
    upsample2d,
    ws_groups,
)
from mlvgm.latents import truncated_normal
from mlvgm.testing import check_mlvgm

REFERENCE_FILE = Path(__file__).parent / "data" / "stylegan2_reference.pt"
REFERENCE_CONFIG = {
    "z_dim": 32,
    "c_dim": 0,
    "w_dim": 32,
    "img_resolution": 32,
    "img_channels": 3,
    "mapping_kwargs": {},
    "synthesis_kwargs": {"channel_base": 1024, "channel_max": 64, "num_fp16_res": 0, "conv_clamp": 256},
}
ATOL = 1e-4


def config(**synthesis) -> dict:
    """REFERENCE_CONFIG with some synthesis_kwargs replaced."""
    return {**REFERENCE_CONFIG, "synthesis_kwargs": {**REFERENCE_CONFIG["synthesis_kwargs"], **synthesis}}


def seeded_state(g: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic weights for every tensor of g's state dict, drawn in sorted-name order.

    N(0, 1) everywhere, rescaled where the reference's init would leave a term inert or degenerate:
    mapping weights are stored divided by lr_multiplier 0.01 (so x100), biases and noise strengths
    get small random values instead of zeros (affine biases around 1, where styles start), and
    resample filters keep their fixed [1, 3, 3, 1] value.
    """
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in sorted(g.state_dict().items()):
        if name.endswith("resample_filter"):
            state[name] = tensor.clone()
            continue
        x = torch.randn(tensor.shape, generator=generator)
        if name.startswith("mapping.fc") and name.endswith("weight"):
            x = 100 * x
        elif name.startswith("mapping.fc") and name.endswith("bias"):
            x = 30 * x  # times bias_gain 0.01: effective biases ~ 0.3
        elif name.endswith("affine.bias"):
            x = 1 + 0.3 * x
        elif name.endswith("bias") or name.endswith("noise_strength"):
            x = 0.3 * x
        state[name] = x
    return state


def reference_z() -> torch.Tensor:
    """The 2 latents the reference run used: (2, 32)."""
    return torch.randn(2, 32, generator=torch.Generator().manual_seed(1))


def seeded(**options) -> StyleGAN2:
    return seeded_from(REFERENCE_CONFIG, **options)


def seeded_from(init_kwargs: dict, **options) -> StyleGAN2:
    g = StyleGAN2(**init_kwargs)
    return from_kwargs_and_state(init_kwargs, seeded_state(g), **options)


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return torch.load(REFERENCE_FILE, weights_only=True)


@pytest.fixture(scope="module")
def g() -> StyleGAN2:
    return seeded()


def anchors(g, n=2, seed=0, truncation=None):
    return g.sample_latents(n, truncation=truncation, generator=torch.Generator().manual_seed(seed))


# --- architecture and protocol -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resolution", "num_ws", "groups"),
    [(4, 2, 1), (32, 8, 2), (256, 14, 4), (512, 16, 4), (1024, 18, 5)],
)
def test_num_ws_level_dims_and_groups(resolution, num_ws, groups):
    # Tiny channels: only the block structure matters here.
    g = StyleGAN2(
        z_dim=8, w_dim=6, img_resolution=resolution, synthesis_kwargs={"channel_base": 4096, "channel_max": 2}
    )
    assert g.num_ws == num_ws and g.level_dims == (6,) * num_ws and g.resolution == resolution
    assert list(g.groups) == [f"g{k + 1}" for k in range(groups)]
    assert [i for members in g.groups.values() for i in members] == list(range(num_ws))
    assert all(len(members) == 4 for members in list(g.groups.values())[:-1])
    z = StyleGAN2(z_dim=8, w_dim=6, img_resolution=resolution, space="z", synthesis_kwargs={"channel_max": 2})
    assert z.level_dims == (8,) * groups and z.level_names == tuple(g.groups)
    assert z.groups == {name: (k,) for k, name in enumerate(g.groups)}


def test_config_f_at_512_has_the_papers_16_ws_in_4_groups_of_4():
    assert ws_groups(16) == {"g1": (0, 1, 2, 3), "g2": (4, 5, 6, 7), "g3": (8, 9, 10, 11), "g4": (12, 13, 14, 15)}


def test_channels_follow_channel_base_and_max(g):
    # min(1024 // res, 64): 64 up to 16 px, 32 at 32 px
    assert g.synthesis.b4.const.shape == (64, 4, 4)
    assert g.synthesis.b16.conv1.weight.shape == (64, 64, 3, 3)
    assert g.synthesis.b32.conv0.weight.shape == (32, 64, 3, 3)
    assert g.synthesis.b32.torgb.weight.shape == (3, 32, 1, 1)


def test_state_dict_names_follow_stylegan2_ada_pytorch(g):
    names = set(g.state_dict())
    for name in (
        "mapping.fc0.weight", "mapping.fc7.bias", "mapping.w_avg", "synthesis.b4.const",
        "synthesis.b4.resample_filter", "synthesis.b4.conv1.affine.weight", "synthesis.b4.conv1.noise_const",
        "synthesis.b4.conv1.noise_strength", "synthesis.b4.conv1.resample_filter", "synthesis.b4.torgb.weight",
        "synthesis.b8.conv0.weight", "synthesis.b8.conv0.affine.bias", "synthesis.b32.torgb.affine.weight",
    ):  # fmt: skip
        assert name in names, name
    assert not any("b4.conv0" in name for name in names)
    # 8 mapping layers x 2 + w_avg; b4: 1 + resample + conv1 (7) + torgb (4); b8..b32: 1 + 2 x 7 + 4 each
    assert len(names) == 17 + 13 + 3 * 19


@pytest.mark.parametrize("space", ["w", "z"])
def test_conforms_to_the_protocol(space):
    g = seeded(space=space)
    report = check_mlvgm(g, n=4)
    assert report.zero_grad_levels == []
    assert len(report.grad_norms) == len(g.level_dims)


def test_conforms_with_truncation_and_resizing():
    check_mlvgm(seeded(space="z", truncation_psi=0.7, truncation_cutoff=3, output_resolution=24), n=2)


def test_anchor_levels_are_one_mapped_z_broadcast(g):
    ws = anchors(g, n=3)
    assert len(ws) == 8 and all(w.shape == (3, 32) and w.is_contiguous() for w in ws)
    assert all(torch.equal(w, ws[0]) for w in ws)
    z = truncated_normal((3, 32), generator=torch.Generator().manual_seed(0))  # the draw sample_latents makes
    with torch.no_grad():
        torch.testing.assert_close(ws[0], g.mapping.z_to_w(z), atol=0, rtol=0)


def test_anchor_truncation_bounds_z(g):
    z_space = seeded(space="z")
    z = anchors(z_space, n=64, truncation=0.5)
    assert all(level.abs().max() <= 0.5 for level in z)
    assert all(torch.equal(level, z[0]) for level in z)


# --- equivalence with stylegan2-ada-pytorch ------------------------------------------------------


def test_mapping_matches_the_reference(reference):
    g = seeded()
    z = reference_z()
    assert torch.equal(z, reference["z"])
    with torch.no_grad():
        torch.testing.assert_close(g.mapping(z), reference["ws"], atol=ATOL, rtol=0)
        torch.testing.assert_close(g.mapping(z, 0.7), reference["ws_psi"], atol=ATOL, rtol=0)
        torch.testing.assert_close(g.mapping(z, 0.7, 3), reference["ws_cutoff"], atol=ATOL, rtol=0)


def test_images_match_the_reference(reference):
    g = seeded()
    with torch.no_grad():
        raw = g.synthesis(g.mapping(reference["z"]), noise_mode="const")
        torch.testing.assert_close(raw, reference["img"], atol=ATOL, rtol=0)
        images = g(list(g.mapping(reference["z"]).unbind(1)))
    torch.testing.assert_close(images, ((reference["img"] + 1) / 2).clamp(0, 1), atol=ATOL, rtol=0)
    assert reference["img"].abs().max() > 1  # the [0, 1] clamp is exercised too


def test_conv_clamp_truncation_and_no_noise_match_the_reference(reference):
    g = seeded_from(config(conv_clamp=0.5), truncation_psi=0.7, noise_mode="none")
    with torch.no_grad():
        raw = g.synthesis(g.mapping(reference["z"], 0.7), noise_mode="none")
    torch.testing.assert_close(raw, reference["img_clamp"], atol=ATOL, rtol=0)


def test_z_space_anchor_renders_the_reference_image(reference):
    g = seeded(space="z")
    z = reference["z"]
    with torch.no_grad():
        images = g([z] * len(g.level_dims))
    torch.testing.assert_close(images, ((reference["img"] + 1) / 2).clamp(0, 1), atol=ATOL, rtol=0)


def test_upsample2d_is_upfirdn2d():
    """Against upfirdn2d written literally: insert zeros, pad (2, 1), convolve with 4 f."""
    x = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    f = setup_filter()
    stuffed = torch.zeros(2, 3, 10, 14)
    stuffed[:, :, ::2, ::2] = x
    padded = F.pad(stuffed, [2, 1, 2, 1])
    kernel = (4 * f).flip([0, 1]).expand(3, 1, 4, 4)  # conv2d correlates: flip to convolve
    expected = F.conv2d(padded, kernel, groups=3)
    torch.testing.assert_close(upsample2d(x, f), expected, atol=1e-6, rtol=0)
    assert torch.allclose(f, torch.tensor([1.0, 3, 3, 1]).outer(torch.tensor([1.0, 3, 3, 1])) / 64)


# --- levels, truncation, noise, resizing -----------------------------------------------------------


def test_truncation_pulls_ws_toward_w_avg():
    psi, cutoff = 0.7, 3
    plain, truncated = seeded(), seeded(truncation_psi=psi, truncation_cutoff=cutoff)
    ws = torch.stack(anchors(plain), dim=1)  # (2, 8, 32)
    ws_t = torch.stack(anchors(truncated), dim=1)
    w_avg = plain.mapping.w_avg
    expected = torch.cat([w_avg + psi * (ws[:, :cutoff] - w_avg), ws[:, cutoff:]], dim=1)
    torch.testing.assert_close(ws_t, expected, atol=1e-6, rtol=0)
    assert torch.equal(ws_t[:, cutoff:], ws[:, cutoff:])
    distance = (ws[:, :cutoff] - w_avg).norm(dim=-1)
    torch.testing.assert_close((ws_t[:, :cutoff] - w_avg).norm(dim=-1), psi * distance, atol=1e-5, rtol=1e-5)


def test_z_space_perturbs_only_its_groups_ws():
    g = seeded(space="z", truncation_psi=0.8)
    z = anchors(g, n=2)
    moved = [level.clone() for level in z]
    moved[1] = moved[1] + 0.5
    with torch.no_grad():
        ws, ws_moved = g.ws(z), g.ws(moved)
        expected = g.mapping(z[0], 0.8)
    torch.testing.assert_close(ws, expected, atol=1e-5, rtol=0)  # anchors: every group the same G(z)
    changed = (ws - ws_moved).abs().amax(dim=(0, 2)) > 0  # (8,) per w index
    assert changed.tolist() == [i in ws_groups(8)["g2"] for i in range(8)]  # level 2 is group g2: w's 4-7


def test_noise_modes():
    const, none, random = seeded(), seeded(noise_mode="none"), seeded(noise_mode="random")
    latents = anchors(const)
    with torch.no_grad():
        a, b = const(latents), const(latents)
        assert torch.equal(a, b)
        assert (none(latents) - a).abs().max() > 1e-3
        torch.manual_seed(0)
        r1, r2 = random(latents), random(latents)
    assert (r1 - r2).abs().max() > 1e-3
    assert r1.min() >= 0 and r1.max() <= 1


def test_output_resolution_resizes_on_the_device():
    g, small = seeded(), seeded(output_resolution=16)
    latents = anchors(g)
    with torch.no_grad():
        full, resized = g(latents), small(latents)
    assert small.resolution == 16 and resized.shape == (2, 3, 16, 16)
    expected = F.interpolate(full, size=(16, 16), mode="bilinear", antialias=True)  # resize the clamped picture
    torch.testing.assert_close(resized, expected, atol=1e-6, rtol=0)
    assert resized.min() >= 0 and resized.max() <= 1
    assert seeded(output_resolution=48)(latents).shape == (2, 3, 48, 48)


def test_wrong_number_of_levels_is_an_input_error(g):
    with pytest.raises(InputError, match="takes 8 levels, got 3"):
        g(anchors(g)[:3])


# --- construction and checkpoints ----------------------------------------------------------------


def state_with(g: StyleGAN2, **changes) -> dict[str, torch.Tensor]:
    state = seeded_state(g)
    for name, value in changes.items():
        name = name.replace("__", ".")
        if value is None:
            del state[name]
        else:
            state[name] = value
    return state


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"synthesis__b8__conv0__weight": None}, "lacks tensor 'synthesis.b8.conv0.weight'"),
        ({"synthesis__b8__skip__weight": torch.zeros(64, 64, 1, 1)}, "unexpected tensor 'synthesis.b8.skip.weight'"),
        (
            {"mapping__fc3__weight": torch.zeros(32, 31)},
            r"'mapping.fc3.weight' has shape \(32, 31\), expected \(32, 32\)",
        ),
        ({"mapping__w_avg": [0.0] * 32}, "'mapping.w_avg' is a list, not a tensor"),
    ],
)
def test_bad_state_is_a_one_line_input_error(g, change, message):
    with pytest.raises(InputError, match=message) as error:
        from_kwargs_and_state(REFERENCE_CONFIG, state_with(g, **change))
    assert "\n" not in str(error.value)


def test_many_missing_tensors_are_counted(g):
    state = {k: v for k, v in seeded_state(g).items() if not k.startswith("synthesis.b32")}
    with pytest.raises(InputError, match=r"lacks tensor 'synthesis.b32.conv0.affine.bias' \(and 18 more\)"):
        from_kwargs_and_state(REFERENCE_CONFIG, state)


@pytest.mark.parametrize(
    ("init_kwargs", "options", "message"),
    [
        ({**REFERENCE_CONFIG, "c_dim": 10}, {}, "conditional StyleGAN2 .c_dim=10. is not supported"),
        (config(architecture="resnet"), {}, "architecture 'resnet' is not supported"),
        (config(resample_filter=[1, 2, 1]), {}, r"resample_filter \[1, 2, 1\] is not supported"),
        (config(channels_last=True), {}, r"unknown synthesis_kwargs \['channels_last'\]"),
        ({**REFERENCE_CONFIG, "mapping_kwargs": {"layers": 2}}, {}, r"unknown mapping_kwargs \['layers'\]"),
        ({**REFERENCE_CONFIG, "channel_base": 1}, {}, r"unknown StyleGAN2 init_kwargs \['channel_base'\]"),
        ({k: v for k, v in REFERENCE_CONFIG.items() if k != "w_dim"}, {}, r"init_kwargs lack \['w_dim'\]"),
        ({**REFERENCE_CONFIG, "img_resolution": 48}, {}, "power of two"),
        ({**REFERENCE_CONFIG, "img_channels": 1}, {}, "img_channels=1 is not supported"),
        (REFERENCE_CONFIG, {"space": "x"}, "unknown StyleGAN2 space 'x'"),
        (REFERENCE_CONFIG, {"noise_mode": "fixed"}, "unknown noise_mode 'fixed'"),
        (REFERENCE_CONFIG, {"truncation_psi": "0.7"}, "truncation_psi must be a number, got '0.7'"),
        (REFERENCE_CONFIG, {"truncation_psi": float("nan")}, "truncation_psi must be a finite number"),
        (REFERENCE_CONFIG, {"psi": 0.5}, r"unknown StyleGAN2 options \['psi'\]"),
        (REFERENCE_CONFIG, {"output_resolution": 0}, "output_resolution must be a positive integer"),
    ],
)
def test_bad_kwargs_are_input_errors(g, init_kwargs, options, message):
    with pytest.raises(InputError, match=message):
        from_kwargs_and_state(init_kwargs, seeded_state(g), **options)


def test_ignored_fp16_settings_and_no_w_avg():
    init_kwargs = {
        **config(num_fp16_res=4, fp16_channels_last=True, use_noise=False),
        "mapping_kwargs": {"num_layers": 2, "w_avg_beta": None},
    }
    g = seeded_from(init_kwargs)
    assert g.synthesis.num_fp16_res == 4 and "mapping.w_avg" not in g.state_dict()
    assert not any("noise" in name for name in g.state_dict())
    check_mlvgm(g, n=2)
    with pytest.raises(InputError, match="truncation_psi != 1 needs w_avg"):
        seeded_from(init_kwargs, truncation_psi=0.5)


def test_loaded_generator_is_frozen_and_in_eval_mode(g):
    assert not g.training and not any(p.requires_grad for p in g.parameters())


# --- torch.compile -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("space", ["w", "z"])
def test_compiled_fullgraph_equals_eager(space):
    g = seeded(space=space, truncation_psi=0.7, output_resolution=24)
    latents = anchors(g, n=3)
    with torch.no_grad():
        eager = g(latents)
        compiled = torch.compile(g, fullgraph=True)(latents)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=0)
