"""The hierarchical VAE (mlvgm.generators.hvae) and the embedded generator it ships as: the KL and likelihood
against literal references, the reparameterisation and temperature, the protocol, and the weights' loading."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlvgm.errors import InputError
from mlvgm.generators import load_generator
from mlvgm.generators.embedded import SHIPPED, load_embedded, read_meta, save_weights
from mlvgm.generators.hvae import Decoder, HierarchicalVAE, HVAEConfig, gaussian_kl
from mlvgm.testing import check_mlvgm

SMALL = HVAEConfig(resolution=32, widths=((32, 8), (16, 8), (8, 8), (4, 8), (2, 8), (1, 8)),
                   levels=((1, 4), (4, 2), (16, 1)), level_names=("a", "b", "c"))  # fmt: skip


def numeric_kl(mu_q: float, s_q: float, mu_p: float, s_p: float) -> float:
    """KL by integrating q(x) log(q(x) / p(x)) on a fine grid (numpy): no closed form involved."""
    x = np.linspace(mu_q - 12 * s_q, mu_q + 12 * s_q, 400_001)
    log_q = -0.5 * ((x - mu_q) / s_q) ** 2 - np.log(s_q * math.sqrt(2 * math.pi))
    log_p = -0.5 * ((x - mu_p) / s_p) ** 2 - np.log(s_p * math.sqrt(2 * math.pi))
    return float(np.trapezoid(np.exp(log_q) * (log_q - log_p), x))


@pytest.mark.parametrize(("mu_q", "s_q", "mu_p", "s_p"), [(0, 1, 0, 1), (0.3, 0.5, -1.0, 2.0), (2.0, 0.05, 0.0, 1.0),
                                                          (-0.7, 1.7, 0.2, 0.3)])  # fmt: skip
def test_gaussian_kl_matches_numerical_integration(mu_q, s_q, mu_p, s_p):
    got = gaussian_kl(*(torch.tensor([v], dtype=torch.float64) for v in (mu_q, s_q, mu_p, s_p)))
    assert float(got) == pytest.approx(numeric_kl(mu_q, s_q, mu_p, s_p), rel=1e-5, abs=1e-7)


def test_level_dims_are_each_levels_channels_times_its_area():
    d = Decoder(SMALL)
    assert d.level_dims == (4 * 1 * 1, 2 * 4 * 4, 1 * 16 * 16)
    assert d.num_levels == 3 and d.level_names == ("a", "b", "c") and d.resolution == 32


def test_temperature_scales_the_prior_noise_and_nothing_else():
    torch.manual_seed(0)
    d = Decoder(SMALL)
    with torch.no_grad():  # a prior that is not N(0, 1), so that the mean and the spread both matter
        for conv in d.prior:
            conv.weight.normal_(0, 0.1)
            conv.bias.normal_(0, 0.3)
    eps = d.sample_latents(3, generator=torch.Generator().manual_seed(1))
    cold = Decoder(SMALL, temperature=0.5)
    cold.load_state_dict(d.state_dict())
    assert torch.allclose(cold(eps), d([0.5 * e for e in eps]), atol=1e-6)
    assert not torch.allclose(cold(eps), d(eps), atol=1e-3)


def test_likelihood_is_the_gaussian_log_density_of_the_pixels():
    torch.manual_seed(0)
    vae = HierarchicalVAE(SMALL)
    x = torch.rand(2, 3, 32, 32)
    torch.manual_seed(1)  # the posterior's samples: the same in both passes below
    nll, kl, mean = vae.decoder.elbo_terms(x, vae.encoder(x))
    sigma = vae.decoder.log_sigma_x.exp().detach().numpy()[None, :, None, None]
    xs, ms = x.numpy().astype(np.float64), mean.detach().numpy().astype(np.float64)
    literal = -(-0.5 * ((xs - ms) / sigma) ** 2 - np.log(sigma * np.sqrt(2 * np.pi))).reshape(2, -1).sum(1)
    assert np.allclose(nll.detach().numpy(), literal, rtol=1e-5)
    assert kl.shape == (2, 3) and bool((kl >= -1e-4).all())
    torch.manual_seed(1)
    out = {k: v.detach() for k, v in vae(x, kl_weight=0.5).items()}
    dims = 3 * 32 * 32
    assert float(out["elbo"]) == pytest.approx(float((nll + kl.sum(1)).mean()) / dims, rel=1e-5)
    assert float(out["loss"]) == pytest.approx(float((nll + 0.5 * kl.sum(1)).mean()) / dims, rel=1e-5)


def test_level_weights_and_free_nats_shape_the_loss_but_not_the_elbo():
    torch.manual_seed(0)
    vae = HierarchicalVAE(SMALL)
    x = torch.rand(4, 3, 32, 32)
    torch.manual_seed(1)
    nll, kl, _ = (t.detach() for t in vae.decoder.elbo_terms(x, vae.encoder(x)))
    means = [float(kl[:, i].mean()) for i in range(3)]
    free, weights = [means[0] + 5.0, 0.0, means[2] / 2], [1.0, 3.0, 2.0]
    # literal: level i pays w_i * max(its batch-mean KL, its free nats); the first pays its free nats, no more
    paid = sum(w * max(m, f) for w, m, f in zip(weights, means, free, strict=True))
    literal = (float(nll.mean()) + 0.5 * paid) / (3 * 32 * 32)
    torch.manual_seed(1)
    out = vae(x, kl_weight=0.5, level_weights=weights, free_nats=free)
    assert float(out["loss"]) == pytest.approx(literal, rel=1e-5)
    assert float(out["elbo"]) == pytest.approx(float((nll + kl.sum(1)).mean()) / (3 * 32 * 32), rel=1e-5)
    out["loss"].backward()  # a level under its free nats gets no gradient from its KL
    torch.manual_seed(1)
    vae.zero_grad()
    below = vae(x, free_nats=[1e3, 1e3, 1e3])
    below["loss"].backward()
    torch.manual_seed(1)
    nll_only = vae.decoder.elbo_terms(x, vae.encoder(x))[0].mean() / (3 * 32 * 32)
    grads = [p.grad.clone() for p in vae.parameters() if p.grad is not None]
    vae.zero_grad()
    nll_only.backward()
    assert all(
        torch.allclose(a, p.grad, atol=1e-7)
        for a, p in zip(grads, [q for q in vae.parameters() if q.grad is not None], strict=True)
    )


def test_a_progressive_trainings_unentered_levels_are_their_prior_mean_and_pay_no_kl():
    torch.manual_seed(0)
    vae = HierarchicalVAE(SMALL).eval()
    with torch.no_grad():  # a non-zero prior, so that its mean is not the zero a bug could also give
        for conv in vae.decoder.prior:
            conv.weight.normal_(0, 0.05)
            conv.bias.normal_(0, 0.1)
    x = torch.rand(3, 3, 32, 32)
    enc = vae.encoder(x)
    d = vae.decoder
    # literal: z1 is the posterior mean, z2 and z3 their prior means, which eps = 0 gives through the sampler
    h0 = d.h0.expand(3, -1, -1, -1)
    mu_p, raw_p, _ = torch.split(d.prior[0](h0), [4, 4, h0.shape[1]], dim=1)
    mu_q = d.posterior[0](torch.cat([h0, enc[1]], dim=1)).chunk(2, dim=1)[0]
    e1 = ((mu_q - mu_p) / (F.softplus(raw_p) + 1e-3)).flatten(1)
    literal = d([e1, torch.zeros(3, d.level_dims[1]), torch.zeros(3, d.level_dims[2])])
    with torch.no_grad():
        params, kls = d._run(3, None, enc, sample=False, active=1)
        assert torch.allclose(d.image(params), literal, atol=1e-5)
        assert float(kls[1].abs().max()) == 0 and float(kls[2].abs().max()) == 0 and float(kls[0].min()) > 0
        # the depth diagnostic: z1 from the posterior, eps's prior draws below; k = 0 a sample, k = 3 the recon
        eps = d.sample_latents(3, generator=torch.Generator().manual_seed(2))
        assert torch.allclose(vae.partial(x, 1, eps), d([e1, eps[1], eps[2]]), atol=1e-5)
        assert torch.allclose(vae.partial(x, 0, eps), d(eps), atol=1e-6)
        assert torch.allclose(vae.partial(x, 3, eps), vae.reconstruct(x), atol=1e-6)
    torch.manual_seed(1)
    nll, kl, _ = (t.detach() for t in d.elbo_terms(x, enc, active=2))
    torch.manual_seed(1)
    out = vae(x, level_weights=[2.0, 3.0, 5.0], free_nats=[0.0, 0.0, 1e3], active=2)
    dims = 3 * 32 * 32
    assert float(out["loss"]) == pytest.approx(float(nll.mean() + 2 * kl[:, 0].mean() + 3 * kl[:, 1].mean()) / dims,
                                               rel=1e-5)  # fmt: skip
    out["loss"].backward()  # the level not entered: its posterior learns nothing yet
    assert d.posterior[2].weight.grad is None and d.posterior[1].weight.grad is not None


def test_a_position_bias_is_a_learned_map_added_after_each_upsampling(tmp_path):
    config = HVAEConfig(**{**SMALL.to_dict(), "position_bias": True})
    torch.manual_seed(0)
    plain = Decoder(SMALL).eval()
    d = Decoder(config).eval()
    assert {k: tuple(v.shape) for k, v in d.position.items()} == {str(r): (1, 8, r, r) for r in (2, 4, 8, 16, 32)}
    missing = d.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == sorted(f"position.{r}" for r in (2, 4, 8, 16, 32))
    eps = d.sample_latents(2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(d(eps), plain(eps))  # zero maps: the plain decoder
        d.position["32"][0, :, 5, 7] = 1.0  # literal: the map enters the feature at 32 px, where it is set
        seen = []
        hook = d.cells["32"].register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
        d(eps)
        plain.cells["32"].register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
        plain(eps)
        hook.remove()
    delta = seen[0] - seen[1]
    assert torch.allclose(delta[:, :, 5, 7], torch.ones(2, 8)) and float(delta.abs().sum()) == pytest.approx(16)
    _, path = pair(tmp_path, config)
    g = load_generator(f"embedded:weights={path}")
    assert g.config.position_bias and "position.16" in g.state_dict()


def test_strided_resampling_gives_each_pixel_of_a_block_its_own_linear_map(tmp_path):
    config = HVAEConfig(**{**SMALL.to_dict(), "strided": True})
    torch.manual_seed(0)
    vae = HierarchicalVAE(config).eval()
    up, down = vae.decoder.up["16"], vae.encoder.down["16"]
    h = torch.randn(2, 8, 8, 8)
    x = torch.randn(2, 8, 32, 32)
    w_up, w_down = up.weight.detach(), down.weight.detach()  # (in, out, 2, 2) and (out, in, 2, 2)
    expected_up, expected_down = torch.empty(2, 8, 16, 16), torch.empty(2, 8, 16, 16)
    for i in range(8):  # literal: child (2i + a, 2j + b) of pixel (i, j) is W[:, :, a, b]^T h[i, j] + bias
        for j in range(8):
            for a in range(2):
                for b in range(2):
                    expected_up[:, :, 2 * i + a, 2 * j + b] = h[:, :, i, j] @ w_up[:, :, a, b] + up.bias.detach()
    for i in range(16):  # and pixel (i, j) of the coarse map is the sum over its block, each child by its own W
        for j in range(16):
            block = x[:, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]  # (B, in, 2, 2)
            expected_down[:, :, i, j] = torch.einsum("nikl,oikl->no", block, w_down) + down.bias.detach()
    with torch.no_grad():
        assert torch.allclose(up(h), expected_up, atol=1e-5)
        assert torch.allclose(down(x), expected_down, atol=1e-5)
        assert not torch.allclose(up(h)[:, :, 0::2, 0::2], up(h)[:, :, 1::2, 1::2])  # not nearest upsampling
        enc = vae.encoder(torch.rand(2, 3, 32, 32))
        assert [tuple(enc[r].shape[-2:]) for r in (32, 16, 1)] == [(32, 32), (16, 16), (1, 1)]
    check_mlvgm(vae.decoder, n=2)
    _, path = pair(tmp_path, config)
    g = load_generator(f"embedded:weights={path}")
    assert g.config.strided and tuple(g.up["16"].weight.shape) == (8, 8, 2, 2)
    with pytest.raises(InputError, match="strided resampling needs every resolution half"):
        HVAEConfig(resolution=32, widths=((32, 8), (8, 8), (1, 8)), levels=((1, 4),), level_names=("a",), strided=True)


def test_latent_groups_split_a_level_and_each_groups_prior_sees_the_groups_before(tmp_path):
    config = HVAEConfig(**{**SMALL.to_dict(), "levels": ((1, 4), (4, 2), (16, 2)), "groups": 2})
    torch.manual_seed(0)
    d = Decoder(config).eval()
    assert d.level_dims == (4, 32, 512) and len(d.prior) == 6 and len(d.group_cells) == 3
    with torch.no_grad():  # a non-zero start, so that a group's prior can depend on anything
        for conv in d.prior:
            conv.weight.normal_(0, 0.1)
    seen = []
    d.prior[3].register_forward_hook(lambda module, args, out: seen.append(args[0].clone()))  # z2's second group
    eps = d.sample_latents(2, generator=torch.Generator().manual_seed(1))

    def moved(level, channels):  # eps with one level's channels (of its (C, r, r) view) shifted
        out = [e.clone() for e in eps]
        r = config.levels[level][0]
        out[level].view(2, -1, r, r)[:, channels] += 1.0
        return out

    with torch.no_grad():
        for z in (eps, moved(1, slice(0, 1)), moved(1, slice(1, 2)), moved(0, slice(0, 4))):
            d(z)
    base, first_group, own_group, above = seen
    assert not torch.allclose(first_group, base)  # the group before changes what the prior reads
    assert torch.equal(own_group, base)  # its own noise does not
    assert not torch.allclose(above, base)
    report = check_mlvgm(d, n=3)
    assert not report.unconnected_levels
    _, path = pair(tmp_path, config)
    assert load_generator(f"embedded:weights={path}").config == config
    with pytest.raises(InputError, match=r"groups must be in .1, 16. and divide every level"):
        HVAEConfig(**{**SMALL.to_dict(), "groups": 3})


def test_the_decoder_follows_the_protocol():
    torch.manual_seed(0)
    report = check_mlvgm(Decoder(SMALL).eval(), n=3)
    assert report.level_dims == (4, 32, 256)
    assert not report.unconnected_levels


def test_bad_latents_and_configs_are_one_line_errors():
    d = Decoder(SMALL)
    with pytest.raises(InputError, match="takes 3 latent levels"):
        d([torch.zeros(1, 4)])
    with pytest.raises(InputError, match=r"z2 must have shape \(1, 32\)"):
        d([torch.zeros(1, 4), torch.zeros(1, 31), torch.zeros(1, 256)])
    with pytest.raises(InputError, match="has no width"):
        HVAEConfig(levels=((3, 4),), level_names=("a",))
    with pytest.raises(InputError, match="coarse to fine"):
        HVAEConfig(levels=((4, 4), (1, 4)), level_names=("a", "b"))
    with pytest.raises(InputError, match="temperature must be > 0"):
        Decoder(SMALL, temperature=0)


# --- the weights' files --------------------------------------------------------------------------------


def pair(tmp_path, config=SMALL) -> tuple:
    torch.manual_seed(0)
    d = Decoder(config)
    path = tmp_path / "w.safetensors"
    save_weights(d, {"hvae": config.to_dict(), "kl_nats": [1.0] * len(config.levels), "temperature": 0.8}, path)
    return d, path


def test_weights_round_trip_through_load_generator(tmp_path):
    d, path = pair(tmp_path)
    g = load_generator(f"embedded:weights={path}")
    assert g.temperature == 0.8 and not g.training and not any(p.requires_grad for p in g.parameters())
    eps = d.sample_latents(2, generator=torch.Generator().manual_seed(3))
    d.temperature = 0.8
    assert torch.equal(g(eps), d(eps))
    assert load_generator(f"embedded:temperature=0.5,weights={path}").temperature == 0.5


def test_deeper_mixture_weights_round_trip_and_the_shipped_json_still_reads(tmp_path):
    config = HVAEConfig(**{**SMALL.to_dict(), "cells": 2, "likelihood": "logistic_mixture", "mixtures": 2})
    d, path = pair(tmp_path, config)
    assert len(d.cells["8"]) == 2 and "cells.8.1.a.weight" in d.state_dict()
    g = load_generator(f"embedded:weights={path}")
    assert g.config == config
    eps = d.sample_latents(2, generator=torch.Generator().manual_seed(3))
    d.temperature = 0.8
    assert torch.equal(g(eps), d(eps))
    # the first weights' JSON (committed in results/embedded) predates every option: it reads as the defaults
    first = Path(__file__).resolve().parents[3] / "results" / "embedded" / "first-weights" / "embedded.json"
    assert HVAEConfig.from_dict(read_meta(first.with_suffix(".safetensors"))["hvae"]) == HVAEConfig()
    shipped = HVAEConfig.from_dict(read_meta()["hvae"])
    assert shipped == HVAEConfig(sigma_x=0.1, position_bias=True)  # today's: a fixed pixel scale, position maps
    with pytest.raises(InputError, match="cells must be in"):
        HVAEConfig(cells=0)


def test_a_fixed_pixel_scale_is_stored_not_trained_and_round_trips(tmp_path):
    config = HVAEConfig(**{**SMALL.to_dict(), "sigma_x": 0.05})
    vae = HierarchicalVAE(config)
    assert "log_sigma_x" not in dict(vae.named_parameters()) and "decoder.log_sigma_x" in vae.state_dict()
    x = torch.rand(2, 3, 32, 32)
    torch.manual_seed(1)
    nll, _, mean = vae.decoder.elbo_terms(x, vae.encoder(x))
    xs, ms = x.numpy().astype(np.float64), mean.detach().numpy().astype(np.float64)
    literal = -(-0.5 * ((xs - ms) / 0.05) ** 2 - np.log(0.05 * np.sqrt(2 * np.pi))).reshape(2, -1).sum(1)
    assert np.allclose(nll.detach().numpy(), literal, rtol=1e-5)
    _, path = pair(tmp_path, config)
    g = load_generator(f"embedded:weights={path}")
    assert g.config == config and float(g.log_sigma_x.exp()[0]) == pytest.approx(0.05)
    for bad in (-0.1, 0.0005, 2.0):
        with pytest.raises(InputError, match=r"sigma_x must be 0 .learned. or in"):
            HVAEConfig(sigma_x=bad)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        ("missing", "do not exist"),
        ("no_json", "JSON config beside them"),
        ("bad_json", "embedded-generator config .* is not valid JSON"),
        ("garbage", "not a readable safetensors file"),
        ("mismatch", "does not fit the architecture"),
        ("position_bias", "does not fit the architecture"),  # the JSON claims maps the file does not hold
        ("position_bias_type", "position_bias must be"),
        ("strided", "does not fit the architecture"),  # pooling's 1x1 convs are not 2x2 strided ones
    ],
)
def test_damaged_weights_are_one_line_errors(tmp_path, damage, match):
    _, path = pair(tmp_path)
    if damage == "missing":
        path = tmp_path / "nope.safetensors"
    elif damage == "no_json":
        path.with_suffix(".json").unlink()
    elif damage == "bad_json":
        path.with_suffix(".json").write_text("{not json")
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 64)
    elif damage.startswith("position_bias") or damage == "strided":
        meta = json.loads(path.with_suffix(".json").read_text())
        meta["hvae"][damage.removesuffix("_type")] = True if damage != "position_bias_type" else "yes"
        path.with_suffix(".json").write_text(json.dumps(meta))
    else:
        other = HVAEConfig(resolution=32, widths=SMALL.widths, levels=((1, 4), (4, 3), (16, 1)),
                           level_names=("a", "b", "c"))  # fmt: skip
        meta = json.loads(path.with_suffix(".json").read_text()) | {"hvae": other.to_dict()}
        path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=match):
        load_embedded(path)


@pytest.mark.parametrize(("spec", "match"), [("embedded:temperature=3", r"in \(0, 2\]"),
                                             ("embedded:size=2", "valid options are temperature")])  # fmt: skip
def test_bad_embedded_specs(spec, match):
    with pytest.raises(InputError, match=match):
        load_generator(spec)


# --- the weights that ship -------------------------------------------------------------------------------


def test_the_shipped_weights_load_offline_and_follow_the_protocol():
    assert SHIPPED.is_file() and SHIPPED.stat().st_size <= 10 * 2**20, "the package ships at most 10 MB of weights"
    g = load_generator("embedded")
    meta = read_meta()
    assert g.resolution == 32 and len(g.level_dims) >= 4 and g.temperature == meta.get("temperature", 1.0)
    assert len(meta["kl_nats"]) == len(g.level_dims) and meta["steps"] > 0 and meta["train_seconds"] > 0
    check_mlvgm(g, n=3)
    x = g(g.sample_latents(16, truncation=2.0, generator=torch.Generator().manual_seed(0)))
    assert x.shape == (16, 3, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert float(x.std(dim=0).mean()) > 0.02  # samples differ from one another: not a collapsed generator
