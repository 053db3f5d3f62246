"""StyleGAN2 (Karras et al. 2020, "config-f") as an MLVGM: the stylegan2-ada-pytorch generator, our own code.

The network is the published architecture, written from the paper and from the architecture of
stylegan2-ada-pytorch's `training/networks.py` (Karras & Hellsten 2021); no code is copied from it:

    z (B, z_dim) -> normalize_2nd_moment -> 8 x FC (lr multiplier 0.01, lrelu) -> w (B, w_dim)
    w -> broadcast to num_ws -> truncation psi around w_avg -> ws (B, num_ws, w_dim)
    ws -> synthesis: a learned 4x4 const, then one block per resolution 4, 8, ..., img_resolution:
          conv0 (3x3 modulated transposed conv, stride 2, then the [1,3,3,1] FIR filter; not at 4x4)
          conv1 (3x3 modulated conv), each followed by per-pixel noise, bias, lrelu x sqrt(2), clamp
          torgb (1x1 modulated conv, no demodulation), added to the FIR-upsampled image ('skip')

Channels per resolution are min(channel_base // res, channel_max). The parameter and buffer names
are those of stylegan2-ada-pytorch's module tree (`mapping.fc0.weight`, `mapping.w_avg`,
`synthesis.b4.const`, `synthesis.b8.conv0.affine.weight`, `synthesis.b8.resample_filter`, ...), so
the state dict of an NVIDIA pickle's G_ema loads with `load_state_dict(strict=True)`; the pickle's
`init_kwargs` (z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs, synthesis_kwargs)
are this class's constructor arguments. `from_kwargs_and_state` builds a generator from the two.

Equivalence: with identical weights and noise_mode='const', ws match stylegan2-ada-pytorch (commit
d72cc7d, fp32, CPU reference ops) exactly and images to about 1e-6 (max abs difference 1.4e-6 for
config-f channels at 256 px, images spanning +-7); tests/mlvgm/generators/test_stylegan2.py checks
recorded reference outputs at atol 1e-4. forward compiles with torch.compile(fullgraph=True): every
branch is on configuration, none on data.

Levels (the MLVGM protocol), in one of two spaces:

- space="w" (default): the levels are the num_ws w vectors (16 at 512 px), each (w_dim,). Anchors
  draw z ~ N^t(0, I, t) (t = `truncation`, per coordinate), map it once through the mapping network
  (with truncation psi around w_avg) and return its num_ws broadcast copies; forward stacks the
  levels and synthesises. Views perturb the w's directly (a group is 4 levels).
- space="z" (the paper's quantification, Table 1): one level per group, each a z (z_dim,). forward
  maps every level's z through the mapping network (psi included) and gives its w to every w of
  that group. Anchors hand the same z to every level, so an anchor renders exactly G(z); perturbing
  level k then changes only group k's w's, which is the paper's "perturb z, map, replace only the
  chosen group's w's".

Groups: consecutive w's in groups of 4, named g1, g2, ... (16 w's -> g1..g4 as in the paper; 8 w's
at 32 px -> g1, g2; 14 at 256 px -> g1..g4 with 2 in g4; 18 at 1024 px -> g1..g5). In space "w" a
group is 4 levels; in space "z" it is one level, which is also named after it.

Supported: unconditional generators (c_dim=0), architecture 'skip' (every released StyleGAN2 G),
resample filter [1,3,3,1], 3x3 convolutions, use_noise on or off, activations linear/relu/lrelu,
conv_clamp, any power-of-two resolution >= 4. Not supported (InputError): conditional models,
'orig'/'resnet' generators, other filters, img_channels != 3. fp16 layers are not built:
num_fp16_res and fp16_channels_last are accepted and ignored (everything runs in fp32; bf16 via
autocast is the caller's choice). The module never updates w_avg (inference only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlvgm.errors import InputError, check_positive_int
from mlvgm.generators.base import MLVGM, accepts_draws
from mlvgm.generators.checks import check_finite
from mlvgm.latents import RandomSource, truncated_normal

GROUP_SIZE = 4  # w's per group: the paper's 16 w's in 4 groups of 4
RESAMPLE_FILTER = (1, 3, 3, 1)  # the binomial FIR filter of StyleGAN2's up- and downsampling
LRELU_SLOPE = 0.2
ACTIVATION_GAINS = {"linear": 1.0, "relu": math.sqrt(2), "lrelu": math.sqrt(2)}  # He gains: unit variance out
NOISE_MODES = ("const", "random", "none")
SPACES = ("w", "z")
DEMODULATION_EPS = 1e-8

GENERATOR_KWARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")
MAPPING_KWARGS = ("num_layers", "embed_features", "layer_features", "activation", "lr_multiplier", "w_avg_beta")
SYNTHESIS_KWARGS = (
    "channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture",
    "resample_filter", "use_noise", "activation", "fp16_channels_last",
)  # fmt: skip
MAX_MAPPING_LAYERS = 64  # StyleGAN2 has 8; bounds the layers a checkpoint's kwargs can ask for
MAX_RESOLUTION = 2**16  # beyond any released model; bounds the blocks a checkpoint's kwargs can ask for
OPTIONS = ("space", "truncation_psi", "truncation_cutoff", "noise_mode", "output_resolution")


# --- ops ----------------------------------------------------------------------------------------


def normalize_2nd_moment(x: Tensor, eps: float = 1e-8) -> Tensor:
    """x / sqrt(mean(x^2) + eps) per row, (B, D) -> (B, D): the mapping network puts z on the sphere."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def bias_act(
    x: Tensor,  # (B, C) or (B, C, H, W)
    b: Tensor,  # (C,)
    *,
    activation: str = "linear",  # linear | relu | lrelu
    gain: float = 1.0,  # multiplies the activation's output
    clamp: float | None = None,  # clamp to [-clamp, clamp] after the gain; None = no clamp
) -> Tensor:
    """act(x + b) * gain, clamped: stylegan2-ada's bias_act, in its reference order."""
    x = x + b.reshape(1, -1, *([1] * (x.ndim - 2)))
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    elif activation == "relu":
        x = F.relu(x)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def setup_filter(taps: Sequence[float] = RESAMPLE_FILTER) -> Tensor:
    """The 2-D FIR filter outer(taps, taps), normalised to sum 1 (unit gain at DC): (4, 4) float32."""
    t = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(t, t)
    return f / f.sum()


def _depthwise(f: Tensor, channels: int, dtype: torch.dtype) -> Tensor:
    """f (kh, kw) as a grouped-conv weight applying it to each of `channels`: (channels, 1, kh, kw)."""
    return f.to(dtype).expand(channels, 1, *f.shape)


def upsample2d(x: Tensor, f: Tensor) -> Tensor:
    """upfirdn2d(x, f, up=2, pad=(2, 1), gain=4): (B, C, H, W) -> (B, C, 2H, 2W).

    upfirdn2d inserts a zero after every pixel (2H), pads 2 before and 1 after, and convolves with
    4 f (gain 4 = up^2 keeps the mean: 3 of 4 samples are zeros). A stride-2 transposed convolution
    with 4 f computes the same sums without multiplying the zeros: its full output (2H + 2) is the
    zero-stuffed image padded 3 on each side and convolved with f; padding=1 trims it to the 2H
    samples of the (2, 1) padding.
    """
    return F.conv_transpose2d(x, _depthwise(f * 4, x.shape[1], x.dtype), stride=2, padding=1, groups=x.shape[1])


def fir_filter(x: Tensor, f: Tensor, *, pad: int, gain: float = 1.0) -> Tensor:
    """upfirdn2d(x, f, pad=(pad, pad), gain): convolve every channel with gain * f, (B, C, H, W) ->
    (B, C, H + 2 pad - kh + 1, W + 2 pad - kw + 1). conv2d correlates, so the filter is flipped."""
    kernel = _depthwise((f * gain).flip([0, 1]), x.shape[1], x.dtype)
    return F.conv2d(x, kernel, padding=pad, groups=x.shape[1])


def modulated_conv2d(
    x: Tensor,  # (B, I, H, W) activations
    weight: Tensor,  # (O, I, k, k) convolution weight, k odd
    styles: Tensor,  # (B, I) per-sample scales of the input channels: s in the paper's eq. 1
    *,
    demodulate: bool = True,  # divide each output channel by its weight norm (eq. 3)
    up: int = 1,  # 1, or 2: transposed conv with stride 2, then the FIR filter
    resample_filter: Tensor | None = None,  # (4, 4) FIR filter, needed when up=2
) -> Tensor:
    """StyleGAN2's weight modulation and demodulation (Karras et al. 2020, eqs. 1-3): (B, O, up H, up W).

    w'_ijk = s_i w_ijk, w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + eps). Each sample gets its own weight,
    so the batch runs as one grouped convolution with B groups (the reference's fused_modconv path).
    """
    batch, in_channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    w = weight.unsqueeze(0) * styles.reshape(batch, 1, in_channels, 1, 1)  # (B, O, I, k, k)
    if demodulate:
        w = w * (w.square().sum(dim=(2, 3, 4), keepdim=True) + DEMODULATION_EPS).rsqrt()
    x = x.reshape(1, batch * in_channels, height, width)  # (1, B I, H, W)
    if up == 1:
        x = F.conv2d(x, w.reshape(batch * out_channels, in_channels, kh, kw), padding=kh // 2, groups=batch)
    else:
        # conv_transpose2d wants (in, out / groups, k, k) per group. Its full output (2H + k - 2 for
        # k=3: 2H + 1) is "the upsampled image with padding k//2"; the FIR filter pads by 1 and
        # brings it to 2H, the padding upfirdn2d derives for a 3x3 kernel and a 4-tap filter.
        w = w.transpose(1, 2).reshape(batch * in_channels, out_channels, kh, kw)
        x = F.conv_transpose2d(x, w, stride=2, groups=batch)  # (1, B O, 2H + 1, 2W + 1)
        x = fir_filter(x, resample_filter, pad=(kh - 1) // 2, gain=4)  # (1, B O, 2H, 2W)
    return x.reshape(batch, out_channels, x.shape[2], x.shape[3])


# --- layers -------------------------------------------------------------------------------------


class FullyConnectedLayer(nn.Module):
    """y = act(x W^T g_w + b g_b), with the equalized learning rate of StyleGAN: the stored weight is
    N(0, 1) / lr_multiplier and the runtime gain g_w = lr_multiplier / sqrt(in_features)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        activation: str = "linear",  # linear | relu | lrelu
        lr_multiplier: float = 1.0,  # 0.01 in the mapping network
        bias_init: float = 0.0,  # 1 for the style affines: styles start at 1
    ) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_features) -> (B, out_features)."""
        w = self.weight * self.weight_gain
        b = self.bias * self.bias_gain if self.bias_gain != 1 else self.bias
        if self.activation == "linear":
            return F.linear(x, w, b)
        return bias_act(F.linear(x, w), b, activation=self.activation, gain=ACTIVATION_GAINS[self.activation])


class MappingNetwork(nn.Module):
    """z -> w: normalize_2nd_moment, then `num_layers` FC layers (paper section 2 of StyleGAN)."""

    def __init__(
        self,
        z_dim: int,  # input latent (Z) dimensionality
        c_dim: int,  # conditioning label dimensionality: must be 0
        w_dim: int,  # intermediate latent (W) dimensionality
        num_ws: int,  # number of w's the synthesis network takes
        num_layers: int = 8,  # mapping layers
        embed_features: int | None = None,  # label embedding size (conditional models only: unused)
        layer_features: int | None = None,  # hidden features, None = w_dim
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,  # learning-rate multiplier of the mapping layers
        w_avg_beta: float | None = 0.995,  # training-time decay of w_avg; None = no w_avg (no truncation)
    ) -> None:
        super().__init__()
        if c_dim != 0:
            raise InputError(f"conditional StyleGAN2 (c_dim={c_dim}) is not supported: use an unconditional model")
        check_positive_int("z_dim", z_dim)
        check_positive_int("mapping num_layers", num_layers)
        if num_layers > MAX_MAPPING_LAYERS:
            raise InputError(
                f"mapping num_layers must be at most {MAX_MAPPING_LAYERS} (StyleGAN2's is 8), got {num_layers}"
            )
        if layer_features is not None:
            check_positive_int("mapping layer_features", layer_features)
        _check_activation("mapping activation", activation)
        del embed_features  # sizes only the label embedding, which an unconditional model lacks
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, c_dim, w_dim, num_ws, num_layers
        hidden = w_dim if layer_features is None else layer_features
        features = [z_dim] + [hidden] * (num_layers - 1) + [w_dim]
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros(w_dim) if w_avg_beta is not None else None)

    def z_to_w(self, z: Tensor) -> Tensor:
        """(B, z_dim) -> (B, w_dim): one w per z, before broadcasting and truncation."""
        x = normalize_2nd_moment(z.to(torch.float32))
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        return x

    def truncate(self, ws: Tensor, psi: float = 1.0, cutoff: int | None = None) -> Tensor:
        """The truncation trick: w' = w_avg + psi (w - w_avg) for the first `cutoff` w's (all if None).

        ws: (B, num_ws, w_dim) -> (B, num_ws, w_dim); psi = 1 returns ws unchanged.
        """
        if psi == 1:
            return ws
        if self.w_avg is None:
            raise InputError("truncation psi != 1 needs w_avg, which this mapping network lacks: use psi=1")
        if cutoff is None:
            return self.w_avg.lerp(ws, psi)
        return torch.cat([self.w_avg.lerp(ws[:, :cutoff], psi), ws[:, cutoff:]], dim=1)

    def forward(self, z: Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None) -> Tensor:
        """(B, z_dim) -> ws (B, num_ws, w_dim): the same w broadcast to every synthesis input, truncated."""
        w = self.z_to_w(z)
        ws = w.unsqueeze(1).expand(-1, self.num_ws, -1)
        return self.truncate(ws, truncation_psi, truncation_cutoff)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally upsampling by 2), per-pixel noise, bias, activation, clamp."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,  # output resolution of this layer
        *,
        up: int = 1,  # 2 for the first layer of a block
        use_noise: bool = True,  # add noise_strength * noise after the convolution
        activation: str = "lrelu",
        conv_clamp: float | None = None,  # clamp the output to +-conv_clamp (after the gain)
    ) -> None:
        super().__init__()
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.act_gain = ACTIVATION_GAINS[activation]
        self.register_buffer("resample_filter", setup_filter())
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "const") -> Tensor:
        """x (B, I, R / up, R / up), w (B, w_dim) -> (B, O, R, R)."""
        styles = self.affine(w)  # (B, I)
        x = modulated_conv2d(x, self.weight, styles, up=self.up, resample_filter=self.resample_filter)
        if self.use_noise and noise_mode == "const":
            x = x + self.noise_const * self.noise_strength  # (R, R): the same noise image for every sample
        elif self.use_noise and noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength
        return bias_act(x, self.bias, activation=self.activation, gain=self.act_gain, clamp=self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to img_channels, without demodulation (colours keep the style's scale)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, *, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        """x (B, I, R, R), w (B, w_dim) -> (B, img_channels, R, R)."""
        styles = self.affine(w) * self.weight_gain  # (B, I): the equalized-lr gain, folded into the styles
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the 'skip' generator: [conv0 (up 2)], conv1, torgb added to the upsampled image."""

    def __init__(
        self,
        in_channels: int,  # 0 for the first (4x4) block, which starts from the learned const
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        *,
        use_noise: bool = True,
        activation: str = "lrelu",
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        layer = {"w_dim": w_dim, "resolution": resolution, "use_noise": use_noise, "activation": activation}
        self.register_buffer("resample_filter", setup_filter())
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, conv_clamp=conv_clamp, **layer)
        self.conv1 = SynthesisLayer(out_channels, out_channels, conv_clamp=conv_clamp, **layer)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1

    def forward(self, x: Tensor | None, img: Tensor | None, ws: Tensor, noise_mode: str) -> tuple[Tensor, Tensor]:
        """x (B, I, R/2, R/2) or None, img (B, C, R/2, R/2) or None, ws (B, num_conv + 1, w_dim)
        -> x (B, O, R, R), img (B, C, R, R)."""
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, ws[:, 0], noise_mode)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)
            x = self.conv1(x, ws[:, 1], noise_mode)
        y = self.torgb(x, ws[:, self.num_conv])
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws (B, num_ws, w_dim) -> images (B, img_channels, R, R), roughly in [-1, 1]."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,  # a power of two >= 4
        img_channels: int,
        channel_base: int = 32768,  # channels at resolution r: min(channel_base // r, channel_max)
        channel_max: int = 512,
        num_fp16_res: int = 0,  # fp16 in the highest resolutions in the reference: ignored, we run fp32
        conv_clamp: float | None = None,  # clamp every conv output to +-conv_clamp
        architecture: str = "skip",  # only 'skip' (every released StyleGAN2 generator)
        resample_filter: Sequence[float] = RESAMPLE_FILTER,  # only [1, 3, 3, 1]
        use_noise: bool = True,
        activation: str = "lrelu",
        fp16_channels_last: bool = False,  # reference memory-format switch: ignored
    ) -> None:
        super().__init__()
        if architecture != "skip":
            raise InputError(
                f"StyleGAN2 generator architecture {architecture!r} is not supported: only 'skip' (config-f) is"
            )
        if [float(t) for t in resample_filter] != [float(t) for t in RESAMPLE_FILTER]:
            raise InputError(f"resample_filter {list(resample_filter)} is not supported: only [1, 3, 3, 1] is")
        _check_activation("synthesis activation", activation)
        if conv_clamp is not None and not conv_clamp >= 0:
            raise InputError(f"conv_clamp must be >= 0 or None, got {conv_clamp!r}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_fp16_res, self.fp16_channels_last = num_fp16_res, fp16_channels_last  # recorded, not used
        check_positive_int("synthesis channel_base", channel_base)
        check_positive_int("synthesis channel_max", channel_max)
        self.block_resolutions = [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        if channels[img_resolution] < 1:
            raise InputError(
                f"channel_base {channel_base} gives 0 channels at {img_resolution} px (channel_base // resolution): "
                f"channel_base must be at least img_resolution ({img_resolution})"
            )
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0,
                channels[res],
                w_dim,
                res,
                img_channels,
                use_noise=use_noise,
                activation=activation,
                conv_clamp=conv_clamp,
            )
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1  # the last block's torgb; every other torgb shares the next block's first w

    def forward(self, ws: Tensor, noise_mode: str = "const") -> Tensor:
        """(B, num_ws, w_dim) -> (B, img_channels, img_resolution, img_resolution)."""
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + block.num_torgb), noise_mode)
            w_idx += block.num_conv
        return img


# --- the MLVGM ----------------------------------------------------------------------------------


def ws_groups(num_ws: int) -> dict[str, tuple[int, ...]]:
    """Consecutive w indices in groups of GROUP_SIZE, named g1, g2, ...; the last may be shorter."""
    return {
        f"g{k + 1}": tuple(range(start, min(start + GROUP_SIZE, num_ws)))
        for k, start in enumerate(range(0, num_ws, GROUP_SIZE))
    }


class StyleGAN2(MLVGM):
    """StyleGAN2 generator as an MLVGM; see the module docstring for the levels of each space.

    The first seven arguments are stylegan2-ada-pytorch's Generator init_kwargs; the keyword-only ones
    choose how the generator is used. Weights start random (N(0, 1), as the reference initialises
    them); load a checkpoint with `from_kwargs_and_state`.
    """

    def __init__(
        self,
        z_dim: int = 512,  # input latent (Z) dimensionality
        c_dim: int = 0,  # conditioning label dimensionality: must be 0 (unconditional)
        w_dim: int = 512,  # intermediate latent (W) dimensionality
        img_resolution: int = 512,  # synthesised resolution, a power of two
        img_channels: int = 3,  # must be 3 (RGB)
        mapping_kwargs: Mapping[str, object] | None = None,  # MappingNetwork arguments (num_layers, ...)
        synthesis_kwargs: Mapping[str, object] | None = None,  # SynthesisNetwork arguments (channel_base, ...)
        *,
        space: str = "w",  # "w": the num_ws w's are the levels; "z": one z per group
        truncation_psi: float = 1.0,  # psi: w' = w_avg + psi (w - w_avg); 1 = no truncation
        truncation_cutoff: int | None = None,  # apply psi to the first `cutoff` w's only; None = all
        noise_mode: str = "const",  # const (deterministic, the paper's) | random | none
        output_resolution: int | None = None,  # resize images to this on the device; None = img_resolution
    ) -> None:
        super().__init__()
        for name, value in (("z_dim", z_dim), ("w_dim", w_dim), ("img_resolution", img_resolution)):
            check_positive_int(name, value)
        if img_resolution < 4 or img_resolution & (img_resolution - 1) or img_resolution > MAX_RESOLUTION:
            raise InputError(f"img_resolution must be a power of two from 4 to {MAX_RESOLUTION}, got {img_resolution}")
        if img_channels != 3:
            raise InputError(f"img_channels={img_channels} is not supported: an MLVGM renders RGB (img_channels=3)")
        mapping_kwargs = _checked_kwargs("mapping_kwargs", mapping_kwargs, MAPPING_KWARGS)
        synthesis_kwargs = _checked_kwargs("synthesis_kwargs", synthesis_kwargs, SYNTHESIS_KWARGS)
        if space not in SPACES:
            raise InputError(f"unknown StyleGAN2 space {space!r}: choose 'w' (a level per w) or 'z' (a z per group)")
        if noise_mode not in NOISE_MODES:
            raise InputError(f"unknown noise_mode {noise_mode!r}: choose one of {', '.join(NOISE_MODES)}")
        if output_resolution is not None:
            check_positive_int("output_resolution", output_resolution)

        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **mapping_kwargs)

        if isinstance(truncation_psi, bool) or not isinstance(truncation_psi, int | float):
            raise InputError(f"truncation_psi must be a number, got {truncation_psi!r}")
        psi = float(truncation_psi)
        if not math.isfinite(psi):
            raise InputError(f"truncation_psi must be a finite number, got {truncation_psi!r}")
        if psi != 1 and self.mapping.w_avg is None:
            raise InputError("truncation_psi != 1 needs w_avg, which this model lacks (w_avg_beta=None): use 1.0")
        if truncation_cutoff is not None:
            check_positive_int("truncation_cutoff", truncation_cutoff)
        self.truncation_psi, self.truncation_cutoff = psi, truncation_cutoff
        self.space, self.noise_mode = space, noise_mode
        self.output_resolution = output_resolution
        self.resolution = output_resolution or img_resolution

        w_groups = ws_groups(self.num_ws)
        if space == "w":
            self.level_dims = (w_dim,) * self.num_ws
            self.groups = w_groups
            self.level_names = ()
        else:
            self.level_dims = (z_dim,) * len(w_groups)
            self.groups = {name: (k,) for k, name in enumerate(w_groups)}
            self.level_names = tuple(w_groups)
        self._group_sizes = tuple(len(members) for members in w_groups.values())  # w's per z level

    def extra_repr(self) -> str:
        return (
            f"space={self.space!r}, levels={len(self.level_dims)}, resolution={self.resolution}, "
            f"truncation_psi={self.truncation_psi}, noise_mode={self.noise_mode!r}"
        )

    # --- protocol

    @accepts_draws
    @torch.no_grad()
    def sample_latents(
        self,
        n: int,  # number of anchors
        *,
        truncation: float | None = None,  # t: |z| <= t per coordinate of z; None = untruncated
        generator: RandomSource = None,  # Draws, torch.Generator or None
    ) -> list[Tensor]:
        """n anchors: one (n, level_dims[i]) float32 tensor per level, on self.device.

        One z ~ N^t(0, I, t) per anchor. Space "w": its ws = mapping(z) (psi applied), one level per w.
        Space "z": the same z for every group, so the anchor renders G(z).
        """
        check_positive_int("n", n)
        z = truncated_normal((n, self.z_dim), t=truncation, generator=generator, device=self.device)  # (n, z_dim)
        if self.space == "z":
            return [z.clone() for _ in self.level_dims]
        ws = self.mapping(z, self.truncation_psi, self.truncation_cutoff)  # (n, num_ws, w_dim)
        return [w.clone(memory_format=torch.contiguous_format) for w in ws.unbind(dim=1)]

    def ws(self, latents: Sequence[Tensor]) -> Tensor:
        """The synthesis network's input for these levels: (B, num_ws, w_dim)."""
        if len(latents) != len(self.level_dims):
            raise InputError(
                f"StyleGAN2 (space {self.space!r}) takes {len(self.level_dims)} levels, got {len(latents)}"
            )
        if self.space == "w":
            return torch.stack(list(latents), dim=1)
        batch = latents[0].shape[0]
        w = self.mapping.z_to_w(torch.cat(list(latents), dim=0))  # (G B, w_dim): one mapping pass for all groups
        per_group = w.reshape(len(latents), batch, self.w_dim)  # (G, B, w_dim)
        ws = torch.cat(
            [per_group[k].unsqueeze(1).expand(-1, size, -1) for k, size in enumerate(self._group_sizes)], dim=1
        )  # (B, num_ws, w_dim)
        return self.mapping.truncate(ws, self.truncation_psi, self.truncation_cutoff)

    def forward(self, latents: Sequence[Tensor]) -> Tensor:
        """(B, 3, resolution, resolution) images in [0, 1] from the levels (see the module docstring)."""
        img = self.synthesis(self.ws(latents), noise_mode=self.noise_mode)  # (B, 3, R, R), about [-1, 1]
        img = ((img + 1) / 2).clamp(0, 1)  # the picture the reference saves (as uint8), before any resizing
        if self.resolution != self.img_resolution:
            # Antialiased bilinear weights are >= 0 and sum to 1: the result stays in [0, 1].
            img = F.interpolate(img, size=(self.resolution, self.resolution), mode="bilinear", antialias=True)
        return img


# --- checkpoints --------------------------------------------------------------------------------


def from_kwargs_and_state(
    init_kwargs: Mapping[str, object],  # the pickle's G_ema init_kwargs (z_dim, ..., synthesis_kwargs)
    state: Mapping[str, Tensor],  # G_ema's parameters and buffers by name
    *,
    where: str = "StyleGAN2 state",  # the file the state came from, named in the NaN message
    **options: object,  # StyleGAN2's keyword-only options: space, truncation_psi, noise_mode, ...
) -> StyleGAN2:
    """A StyleGAN2 with the checkpoint's architecture and weights, in eval mode with frozen weights.

    Every mismatch between `state` and the architecture `init_kwargs` describes is one InputError line:
    a missing tensor, an unexpected tensor, a wrong shape (each naming the first offending key). The
    architecture is built on the meta device and checked against `state` first, so kwargs that ask for a
    network larger than the checkpoint's tensors are refused before anything is allocated.
    """
    if not isinstance(init_kwargs, Mapping):
        raise InputError(f"StyleGAN2 init_kwargs must be a dict, got {type(init_kwargs).__name__}")
    unknown = sorted(set(init_kwargs) - set(GENERATOR_KWARGS), key=str)
    if unknown:
        raise InputError(
            f"unknown StyleGAN2 init_kwargs {unknown}: expected stylegan2-ada-pytorch Generator arguments "
            f"({', '.join(GENERATOR_KWARGS)}); a StyleGAN3 or conditional pickle is not supported"
        )
    missing = [key for key in GENERATOR_KWARGS[:5] if key not in init_kwargs]
    if missing:
        raise InputError(f"StyleGAN2 init_kwargs lack {missing}: the pickle's G_ema init_kwargs name all of them")
    bad = sorted(set(options) - set(OPTIONS), key=str)
    if bad:
        raise InputError(f"unknown StyleGAN2 options {bad}: valid options are {', '.join(OPTIONS)}")
    with torch.device("meta"):
        shapes = _build(init_kwargs, options)
    check_state(shapes, state)
    check_finite(((k, state[k]) for k in sorted(state)), where=where, fix="the checkpoint is damaged: re-download it")
    g = _build(init_kwargs, options)
    g.load_state_dict(dict(state), strict=True)
    return g.eval().requires_grad_(False)


def _build(init_kwargs: Mapping[str, object], options: Mapping[str, object]) -> StyleGAN2:
    """StyleGAN2(**init_kwargs, **options); kwargs of the wrong type (a checkpoint's, so anything) are one line."""
    try:
        return StyleGAN2(**dict(init_kwargs), **options)
    except InputError:
        raise
    except (TypeError, ValueError, ArithmeticError, RuntimeError, KeyError, IndexError, AttributeError) as exc:
        detail = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else "no detail"
        raise InputError(
            f"StyleGAN2 init_kwargs do not describe a network ({type(exc).__name__}: {detail}): the checkpoint is "
            "corrupt or not a stylegan2-ada-pytorch Generator"
        ) from None


def check_state(g: nn.Module, state: Mapping[str, Tensor]) -> None:
    """InputError (one line) unless `state` has exactly g's tensor names, each a tensor of g's shape."""
    if not isinstance(state, Mapping):
        raise InputError(f"a StyleGAN2 state must be a dict of tensors, got {type(state).__name__}")
    expected = {name: tuple(t.shape) for name, t in g.state_dict().items()}
    hint = "the checkpoint does not match its init_kwargs (or is not a stylegan2-ada-pytorch G_ema)"

    def first(keys: list[str]) -> str:
        more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
        return f"{keys[0]!r}{more}"

    missing = sorted(set(expected) - set(state))
    if missing:
        raise InputError(f"StyleGAN2 state lacks tensor {first(missing)}: {hint}")
    extra = sorted(set(state) - set(expected), key=str)
    if extra:
        raise InputError(f"StyleGAN2 state has unexpected tensor {first(extra)}: {hint}")
    for name in sorted(expected):
        value = state[name]
        if not isinstance(value, Tensor):
            raise InputError(f"StyleGAN2 state entry {name!r} is a {type(value).__name__}, not a tensor: {hint}")
        if tuple(value.shape) != expected[name]:
            raise InputError(
                f"StyleGAN2 tensor {name!r} has shape {tuple(value.shape)}, expected {expected[name]}: {hint}"
            )
        if not value.is_floating_point():
            raise InputError(f"StyleGAN2 tensor {name!r} is {value.dtype}, not floating point: {hint}")
        if value.device.type != "meta" and value.numel() * value.element_size() > value.untyped_storage().nbytes():
            raise InputError(  # an expanded or overlapping view: loading it would allocate what the file lacks
                f"StyleGAN2 tensor {name!r} of shape {tuple(value.shape)} reuses the bytes of a smaller storage: "
                "the checkpoint is corrupt"
            )


def _checked_kwargs(name: str, kwargs: Mapping[str, object] | None, allowed: tuple[str, ...]) -> dict[str, object]:
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping):
        raise InputError(f"{name} must be a dict, got {type(kwargs).__name__}")
    unknown = sorted(set(kwargs) - set(allowed), key=str)
    if unknown:
        raise InputError(f"unknown {name} {unknown}: supported keys are {', '.join(allowed)}")
    return dict(kwargs)


def _check_activation(name: str, activation: str) -> None:
    if activation not in ACTIVATION_GAINS:
        raise InputError(f"{name} {activation!r} is not supported: choose one of {', '.join(ACTIVATION_GAINS)}")
