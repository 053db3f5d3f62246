"""BigBiGAN's generator (Donahue & Simonyan 2019) as an MLVGM, loaded from the plain state dict
`BigBiGAN_x1.pth` that pytorch-pretrained-gans distributes.

The network is BigGAN's generator (Brock et al. 2019) with a hierarchical latent: z (120-d) is cut
into 6 chunks of 20, the paper's levels z_1..z_6 (global first, details last):

    z_1           -> SN-linear -> (B, 16 ch, 4, 4)
    z_2 .. z_6    -> one residual up-block each (4 -> 8 -> ... -> 128 px), whose two batch norms take
                     their per-channel gain and bias from [e, z_i]: e = the shared class embedding of
                     class 0 (BigBiGAN is unconditional: class 0 always), 128-d
    self-attention after the block that outputs 64 px
    BN -> ReLU -> SN-conv 3x3 -> tanh -> images in [-1, 1], returned as (x + 1) / 2 in [0, 1]

Each block: BN(z_i) -> ReLU -> upsample x2 (nearest) -> conv 3x3 -> BN(z_i) -> ReLU -> conv 3x3, plus
a 1x1-conv shortcut of the upsampled input.

What we do differently from the reference (and why the images do not change):
- Spectral norm. The reference divides every weight by sigma on every forward, sigma estimated by one
  power-iteration step from the stored vector u0 (in eval mode u0 is not updated, so sigma is the same
  number every time). We compute that number once at load (`spectral_sigma`, the same one-step
  estimate, not the exact top singular value) and keep W / sigma as a plain weight.
- Batch norm. In eval mode the reference normalises with the stored running statistics, so a
  conditional BN is an affine map per (image, channel) whose scale and shift are affine in z_i. We fold
  the statistics, the class embedding and the four gain/bias layers of a block into one linear layer
  z_i -> (scale_1, shift_1, scale_2, shift_2): each image depends only on its own latents.
- The 1x1 shortcut conv runs before the nearest upsampling (they commute exactly: 4x fewer MACs), the
  attention runs as one fused scaled-dot-product call, and its output gain gamma is folded into the
  output conv.

Reference: lukemelas/pytorch-pretrained-gans (BigBiGAN/model/BigGAN.py and layers.py, a copy of
ajbrock/BigGAN-PyTorch) with its BigBiGAN config: G_ch 96, dim_z 120, shared_dim 128, hier, G_attn '64',
BN_eps 1e-4, SN_eps 1e-4, one singular vector, n_classes 1000. The output BN keeps BigGAN's default
eps 1e-5. The state dict holds 166 tensors (70,497,632 numbers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlvgm.errors import InputError, check_positive_int
from mlvgm.generators.base import MLVGM
from mlvgm.generators.checks import check_finite, check_zip_records
from mlvgm.io import check_regular_file

# Channel width of the trunk per stage, in multiples of ch: stage 0 is the 4x4 input of the first
# block, stage i its output at 4 * 2^i px (BigGAN's G_arch: in_channels = [:-1], out_channels = [1:]).
CHANNEL_MULTIPLIERS = {
    32: (4, 4, 4, 4),
    64: (16, 16, 8, 4, 2),
    128: (16, 16, 8, 4, 2, 1),
    256: (16, 16, 8, 8, 4, 2, 1),
    512: (16, 16, 8, 8, 4, 2, 1, 1),
}
BOTTOM_WIDTH = 4  # the first linear layer's output is (16 ch, 4, 4)
BN_EPS = 1e-4  # the conditional BNs (BigBiGAN config BN_eps)
OUTPUT_BN_EPS = 1e-5  # the output BN is built without BN_eps: BigGAN's default
SN_EPS = 1e-4  # F.normalize's eps in the power iteration (BigBiGAN config SN_eps)
CLASS_INDEX = 0  # BigBiGAN is unconditional: every image uses the embedding of class 0


def spectral_sigma(weight: Tensor, u: Tensor, eps: float = SN_EPS) -> Tensor:
    """sigma(W) as BigGAN's spectral norm uses it in eval mode: one power-iteration step from u.

    weight: (out, ...) viewed as the (out, in) matrix W; u: (1, out), the stored left singular vector.
        v = normalize(u W),  u' = normalize(v W^T),  sigma = v W^T u'^T   (= |v W^T| unless it is < eps)
    This is a lower bound of the top singular value, equal to it only when u has converged: the real
    checkpoint's images depend on this estimate, not on torch.linalg.svdvals. Returns a 0-d tensor.
    """
    w = weight.reshape(weight.shape[0], -1)  # (out, in)
    v = F.normalize(u @ w, dim=1, eps=eps)  # (1, in)
    wv = v @ w.t()  # (1, out)
    u_next = F.normalize(wv, dim=1, eps=eps)  # (1, out)
    return (wv @ u_next.t()).squeeze()


class _SelfAttention(nn.Module):
    """SA-GAN's non-local block as BigGAN implements it: keys and values max-pooled 2x2.

    x + gamma * o(softmax(theta(x)^T phi(x)) g(x)), theta/phi: C -> C/8, g: C -> C/2, o: C/2 -> C (1x1 convs,
    no bias); gamma is folded into o's weight at load.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.key_dim, self.value_dim = channels // 8, channels // 2
        # theta, phi and g read the same input: one conv, split after
        self.qkv = nn.Conv2d(channels, 2 * self.key_dim + self.value_dim, 1, bias=False)
        self.out = nn.Conv2d(self.value_dim, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W); H and W even."""
        h, w = x.shape[2:]
        theta, keys_values = self.qkv(x).split([self.key_dim, self.key_dim + self.value_dim], dim=1)
        phi, g = F.max_pool2d(keys_values, 2).split([self.key_dim, self.value_dim], dim=1)
        q = theta.flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, HW, C/8): one head
        k = phi.flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, HW/4, C/8)
        v = g.flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, HW/4, C/2)
        # BigGAN does not scale the logits by 1/sqrt(C/8)
        o = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # (B, 1, HW, C/2)
        o = o.squeeze(1).transpose(1, 2).unflatten(2, (h, w))  # (B, C/2, H, W)
        return x + self.out(o)


class _GBlock(nn.Module):
    """BigGAN's up-block with both conditional BNs folded into `cond`: z_i -> (scale_1, shift_1, scale_2, shift_2).

    h -> conv2(relu(bn2(conv1(up(relu(bn1(h))))))) + up(shortcut(h)), then self-attention if it has one.
    """

    def __init__(self, in_channels: int, out_channels: int, chunk_dim: int, attention: bool) -> None:
        super().__init__()
        self.splits = [in_channels, in_channels, out_channels, out_channels]
        self.cond = nn.Linear(chunk_dim, sum(self.splits))
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)
        self.attention = _SelfAttention(out_channels) if attention else None

    def forward(self, h: Tensor, z: Tensor) -> Tensor:
        """h: (B, C_in, H, W), z: (B, chunk_dim) -> (B, C_out, 2H, 2W)."""
        scale1, shift1, scale2, shift2 = (p[:, :, None, None] for p in self.cond(z).split(self.splits, dim=1))
        x = F.relu(h * scale1 + shift1)
        x = self.conv1(F.interpolate(x, scale_factor=2, mode="nearest"))
        x = self.conv2(F.relu(x * scale2 + shift2))
        out = x + F.interpolate(self.shortcut(h), scale_factor=2, mode="nearest")
        if self.attention is not None:
            out = self.attention(out)
        return out


class BigBiGAN(MLVGM):
    """BigBiGAN's generator g(z_1, ..., z_6): 6 levels of 20 dims -> (B, 3, 128, 128) images in [0, 1].

    Build it from the checkpoint with `load_bigbigan(path)` or `BigBiGAN.from_state_dict(state)`; the
    constructor alone gives the architecture with untrained (torch default) weights. The options
    describe the checkpoint; their defaults are BigBiGAN_x1.pth's, smaller values give a narrow network
    of the same design for tests and benchmarks. z splits into n_chunks = (number of blocks + 1) levels:
    6 at 128 px, 5 at 64 px, 4 at 32 px.
    """

    def __init__(
        self,
        *,
        ch: int = 96,  # channel width multiplier (G_ch)
        resolution: int = 128,  # native output size: 32, 64, 128, 256 or 512
        attention: int | None = 64,  # resolution of the block followed by self-attention; None: none
        dim_z: int = 120,  # total latent size, split evenly into n_chunks levels
        shared_dim: int = 128,  # size of the shared class embedding (read from the checkpoint)
        n_classes: int = 1000,  # rows of the shared class embedding in the checkpoint (only class 0 is used)
        output_resolution: int | None = None,  # resize the images on the device (antialiased); None: native
    ) -> None:
        super().__init__()
        self.ch = check_positive_int("BigBiGAN ch", ch)
        if resolution not in CHANNEL_MULTIPLIERS or isinstance(resolution, bool):
            valid = ", ".join(map(str, CHANNEL_MULTIPLIERS))
            raise InputError(f"BigBiGAN resolution must be one of {valid}, got {resolution!r}")
        self.native_resolution = resolution
        multipliers = CHANNEL_MULTIPLIERS[resolution]
        self.channels = tuple(ch * m for m in multipliers)  # per stage, 4 px to native
        self.block_resolutions = tuple(BOTTOM_WIDTH * 2 ** (i + 1) for i in range(len(multipliers) - 1))
        if attention is not None and attention not in self.block_resolutions:
            valid = ", ".join(map(str, self.block_resolutions))
            raise InputError(f"BigBiGAN attention must be None or a block resolution ({valid}), got {attention!r}")
        self.attention = attention
        self.n_chunks = len(self.block_resolutions) + 1
        check_positive_int("BigBiGAN dim_z", dim_z)
        if dim_z % self.n_chunks:
            raise InputError(
                f"BigBiGAN dim_z={dim_z} must split evenly into {self.n_chunks} chunks at {resolution} px: "
                f"use a multiple of {self.n_chunks}"
            )
        self.chunk_dim = dim_z // self.n_chunks
        self.shared_dim = check_positive_int("BigBiGAN shared_dim", shared_dim)
        self.n_classes = check_positive_int("BigBiGAN n_classes", n_classes)
        if output_resolution is not None:
            check_positive_int("BigBiGAN output_resolution", output_resolution)
        self.output_resolution = output_resolution
        self.resolution = output_resolution or resolution
        self.level_dims = (self.chunk_dim,) * self.n_chunks

        c = self.channels
        self.linear = nn.Linear(self.chunk_dim, c[0] * BOTTOM_WIDTH**2)
        self.blocks = nn.ModuleList(
            _GBlock(c[i], c[i + 1], self.chunk_dim, attention == r) for i, r in enumerate(self.block_resolutions)
        )
        # The output BN with its statistics folded: relu(h * scale + shift)
        self.register_buffer("output_scale", torch.ones(c[-1]))
        self.register_buffer("output_shift", torch.zeros(c[-1]))
        self.output_conv = nn.Conv2d(c[-1], 3, 3, padding=1)

    # --- the generator --------------------------------------------------------------------------

    def forward(self, latents: Sequence[Tensor]) -> Tensor:
        """(B, 3, resolution, resolution) images in [0, 1] from n_chunks latents of shape (B, chunk_dim)."""
        if len(latents) != self.n_chunks:
            raise InputError(f"BigBiGAN takes {self.n_chunks} latent levels, got {len(latents)}")
        z1 = latents[0]
        h = self.linear(z1).view(z1.shape[0], -1, BOTTOM_WIDTH, BOTTOM_WIDTH)  # (B, 16 ch, 4, 4)
        for block, z in zip(self.blocks, latents[1:], strict=True):
            h = block(h, z)  # (B, C, 2H, 2W)
        h = F.relu(h * self.output_scale[:, None, None] + self.output_shift[:, None, None])
        x = torch.tanh(self.output_conv(h))  # (B, 3, R, R) in [-1, 1]
        images = (x + 1.0) * 0.5
        if self.output_resolution is not None and self.output_resolution != self.native_resolution:
            size = (self.output_resolution, self.output_resolution)
            # the antialiased filter is a convex combination; the clamp only removes rounding
            images = F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)
            images = images.clamp(0.0, 1.0)
        return images

    # --- loading --------------------------------------------------------------------------------

    def describe(self) -> str:
        """The options that decide the checkpoint's shapes, as a user would type them."""
        return (
            f"ch={self.ch}, resolution={self.native_resolution}, attention={self.attention}, "
            f"dim_z={self.chunk_dim * self.n_chunks}, shared_dim={self.shared_dim}, n_classes={self.n_classes}"
        )

    def reference_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every key of the reference generator's state dict (BigGAN-PyTorch's names) and its shape."""
        shapes: dict[str, tuple[int, ...]] = {"shared.weight": (self.n_classes, self.shared_dim)}

        def sn(prefix: str, weight: tuple[int, ...], bias: bool = True) -> None:
            shapes[f"{prefix}.weight"] = weight
            if bias:
                shapes[f"{prefix}.bias"] = (weight[0],)
            shapes[f"{prefix}.u0"] = (1, weight[0])
            shapes[f"{prefix}.sv0"] = (1,)

        c, cond_dim = self.channels, self.shared_dim + self.chunk_dim
        sn("linear", (c[0] * BOTTOM_WIDTH**2, self.chunk_dim))
        for i, r in enumerate(self.block_resolutions):
            p, cin, cout = f"blocks.{i}.0", c[i], c[i + 1]
            sn(f"{p}.conv1", (cout, cin, 3, 3))
            sn(f"{p}.conv2", (cout, cout, 3, 3))
            sn(f"{p}.conv_sc", (cout, cin, 1, 1))
            for bn, n in (("bn1", cin), ("bn2", cout)):
                shapes[f"{p}.{bn}.stored_mean"] = (n,)
                shapes[f"{p}.{bn}.stored_var"] = (n,)
                sn(f"{p}.{bn}.gain", (n, cond_dim), bias=False)
                sn(f"{p}.{bn}.bias", (n, cond_dim), bias=False)
            if r == self.attention:
                a = f"blocks.{i}.1"
                shapes[f"{a}.gamma"] = ()
                sn(f"{a}.theta", (cout // 8, cout, 1, 1), bias=False)
                sn(f"{a}.phi", (cout // 8, cout, 1, 1), bias=False)
                sn(f"{a}.g", (cout // 2, cout, 1, 1), bias=False)
                sn(f"{a}.o", (cout, cout // 2, 1, 1), bias=False)
        for name in ("gain", "bias", "stored_mean", "stored_var"):
            shapes[f"output_layer.0.{name}"] = (c[-1],)
        sn("output_layer.2", (3, c[-1], 3, 3))
        return shapes

    def check_state_dict(self, state: object, *, where: str = "BigBiGAN state dict") -> None:
        """Raise InputError (one line) unless `state` has exactly the reference keys with their shapes, each
        finite; `where` names the file in the NaN message."""
        if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
        ):
            raise InputError(
                f"a BigBiGAN checkpoint must be a plain state dict (str -> tensor), got {type(state).__name__}: "
                "pass the generator's state dict, e.g. BigBiGAN_x1.pth"
            )
        expected = self.reference_shapes()
        missing = [k for k in expected if k not in state]
        if missing:
            raise InputError(
                f"BigBiGAN state dict lacks {len(missing)} key(s), first {missing[0]!r}: is it a BigBiGAN "
                f"generator with {self.describe()}? pass the options it was built with"
            )
        extra = sorted((k for k in state if k not in expected), key=str)
        if extra:
            raise InputError(
                f"BigBiGAN state dict has {len(extra)} unexpected key(s), first {extra[0]!r}: is it a BigBiGAN "
                f"generator with {self.describe()}? pass the options it was built with"
            )
        wrong = [k for k, shape in expected.items() if tuple(state[k].shape) != shape]
        if wrong:
            k = wrong[0]
            raise InputError(
                f"BigBiGAN state dict has {len(wrong)} key(s) of the wrong shape, first {k!r}: "
                f"{tuple(state[k].shape)}, expected {expected[k]} for {self.describe()}; pass matching options"
            )
        if not all(v.is_floating_point() for v in state.values()):
            k = next(k for k, v in state.items() if not v.is_floating_point())
            raise InputError(f"BigBiGAN state dict key {k!r} holds {state[k].dtype}, expected floating point")
        check_finite(state.items(), where=where, fix="the checkpoint is damaged: re-download it")

    @torch.no_grad()
    def load_reference_state_dict(self, state: Mapping[str, Tensor], *, where: str = "BigBiGAN state dict") -> BigBiGAN:
        """Fill this module from a reference (BigGAN-PyTorch) state dict: spectral norms applied, batch
        norms and the class embedding folded (see the module docstring). Returns self."""
        self.check_state_dict(state, where=where)
        s = {k: v.detach().to("cpu", torch.float32) for k, v in state.items()}

        def sn(prefix: str) -> Tensor:  # W / sigma in float32, as the reference computes it
            return s[f"{prefix}.weight"] / spectral_sigma(s[f"{prefix}.weight"], s[f"{prefix}.u0"])

        filled: set[int] = set()

        def put(param: Tensor, value: Tensor) -> None:
            param.copy_(value.to(param.dtype))
            filled.add(id(param))

        e = s["shared.weight"][CLASS_INDEX].double()  # (shared_dim,)
        put(self.linear.weight, sn("linear"))
        put(self.linear.bias, s["linear.bias"])
        for i, block in enumerate(self.blocks):
            p = f"blocks.{i}.0"
            weights, biases = [], []
            for bn in ("bn1", "bn2"):
                # BN(x) * gain + bias with gain = 1 + G [e, z], bias = H [e, z] and stored mean m, var v:
                # x * scale + shift, scale = r (1 + G_e e + G_z z), shift = H_e e + H_z z - m scale, r = 1/sqrt(v + eps)
                gain, bias = sn(f"{p}.{bn}.gain").double(), sn(f"{p}.{bn}.bias").double()  # (C, shared_dim + chunk)
                r = torch.rsqrt(s[f"{p}.{bn}.stored_var"].double() + BN_EPS)  # (C,)
                m = s[f"{p}.{bn}.stored_mean"].double()  # (C,)
                g_e, g_z = gain.split([self.shared_dim, self.chunk_dim], dim=1)
                h_e, h_z = bias.split([self.shared_dim, self.chunk_dim], dim=1)
                scale_w, scale_b = r[:, None] * g_z, r * (1.0 + g_e @ e)
                weights += [scale_w, h_z - m[:, None] * scale_w]
                biases += [scale_b, h_e @ e - m * scale_b]
            put(block.cond.weight, torch.cat(weights))
            put(block.cond.bias, torch.cat(biases))
            for ours, theirs in ((block.conv1, "conv1"), (block.conv2, "conv2"), (block.shortcut, "conv_sc")):
                put(ours.weight, sn(f"{p}.{theirs}"))
                put(ours.bias, s[f"{p}.{theirs}.bias"])
            if block.attention is not None:
                a = f"blocks.{i}.1"
                put(block.attention.qkv.weight, torch.cat([sn(f"{a}.theta"), sn(f"{a}.phi"), sn(f"{a}.g")]))
                put(block.attention.out.weight, s[f"{a}.gamma"] * sn(f"{a}.o"))
        out = "output_layer.0"
        scale = s[f"{out}.gain"].double() * torch.rsqrt(s[f"{out}.stored_var"].double() + OUTPUT_BN_EPS)
        put(self.output_scale, scale)
        put(self.output_shift, s[f"{out}.bias"].double() - s[f"{out}.stored_mean"].double() * scale)
        put(self.output_conv.weight, sn("output_layer.2"))
        put(self.output_conv.bias, s["output_layer.2.bias"])
        # from_state_dict allocates without initialising: every tensor must have been written
        assert filled == {id(t) for t in (*self.parameters(), *self.buffers())}, "a tensor was left unfilled"
        # finite inputs can still fold to inf or NaN: a negative stored_var, a zero spectral norm
        fix = "a stored_var is negative or a weight is zero: the checkpoint is damaged, re-download it"
        check_finite(self.state_dict().items(), where=f"BigBiGAN weights folded from {where}", fix=fix)
        return self

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor], *, where: str = "BigBiGAN state dict", **options) -> BigBiGAN:
        """The generator from a reference state dict (BigBiGAN_x1.pth's keys), in eval mode.

        options: the constructor's (ch, resolution, attention, dim_z, shared_dim, n_classes,
        output_resolution); the defaults match BigBiGAN_x1.pth.
        """
        with torch.device("meta"):  # no time spent initialising weights that the state dict replaces
            g = cls(**options)
        g.check_state_dict(state, where=where)
        return g.to_empty(device="cpu").load_reference_state_dict(state, where=where).eval()


def load_bigbigan(
    path: str | Path,  # a plain state dict saved with torch.save, e.g. BigBiGAN_x1.pth
    **options,  # BigBiGAN's constructor options; the defaults match BigBiGAN_x1.pth
) -> BigBiGAN:
    """BigBiGAN read from `path` without executing code from the file (torch.load(weights_only=True)),
    in eval mode with its weights frozen, on the CPU."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(
            f"BigBiGAN checkpoint {str(path)!r} does not exist: download BigBiGAN_x1.pth "
            "(pytorch-pretrained-gans) and pass its path"
        )
    fix = "pass a state dict of tensors saved with torch.save, such as BigBiGAN_x1.pth"
    check_regular_file(path, what="BigBiGAN checkpoint", fix=fix)  # a FIFO would block torch.load
    check_zip_records(path, where=f"BigBiGAN checkpoint {path}", fix=fix)  # no record inflates past the file
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- a damaged file makes torch.load raise any of a dozen types
        raise InputError(
            f"{str(path)!r} is not a plain torch state dict ({_load_error(exc)}): pass a state dict of tensors "
            "saved with torch.save, such as BigBiGAN_x1.pth"
        ) from None
    g = BigBiGAN.from_state_dict(state, where=f"BigBiGAN checkpoint {path}", **options)
    g.requires_grad_(False)
    return g


def _load_error(exc: Exception) -> str:
    """torch.load's reason in a few words: its messages run over many lines."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:  # the weights_only refusal: keep which global it refused
        reason = text.split(marker, 1)[1].strip().splitlines()[0].split(". Please", 1)[0]
        return f"torch.load(weights_only=True) refused it: {reason[:160]}"
    lines = text.strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:160]}" if lines else type(exc).__name__


__all__ = ["CHANNEL_MULTIPLIERS", "BigBiGAN", "load_bigbigan", "spectral_sigma"]
