"""The procedural shapes world: an MLVGM whose levels have a known influence, for testing everything else.

Six latent levels of 8 dimensions each, every one consumed at its own stage of a batched soft
rasteriser (paper Definition 1: global first, details last):

    z1 identity    which of 12 shape classes (blended softly, near-discrete) and its proportions
    z2 geometry    position, scale, rotation, stretch, shear, bend
    z3 color       object hue, saturation, value and a shading ramp across the object
    z4 background  background colour and a gradient across the frame
    z5 texture     a fine grating pattern of small amplitude over the whole image
    z6 unused      consumed by the last stage with gain exactly 0: its gradient is exactly zero

Global to local in pixels too: besides its factor, each of z1..z5 adds a luminance pattern over the
whole frame (the pattern pyramid): gratings one octave finer per level, from half a cycle per image
for z1 to z5's texture, the amplitude falling by PATTERN_RATIO per level, as image energy falls with
spatial frequency. The patterns are linear in z: small for typical latents, but a large enough perturbation of
any used level drowns the image, and the larger, the later the level. That is what the paper's
quantification measures (Table 1: mu grows with the level); without the pyramid (`pyramid=False`)
each level only moves its bounded factor, and a critic can always recognise an image by the others.

Each level's 8 coordinates are first mixed by a fixed orthogonal matrix (so no coordinate is
privileged and, for z ~ N(0, I), the mixed coordinates u are again iid N(0, 1)), then mapped to the
stage's parameters. Every one of the 8 directions of z1..z5 changes the image.

Shapes are drawn from their polar outline r(theta), stored as a truncated Fourier series: blending
classes blends their outlines, and one pass over the pixels costs the same for any number of classes.
The whole forward is elementwise over (B, pixels) plus one small matmul, which torch.compile fuses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.special import ndtr

from mlvgm.errors import InputError
from mlvgm.generators.base import MLVGM
from mlvgm.latents import normal, uniform
from mlvgm.streams import Stream

SHAPE_CLASSES = (
    "circle", "ellipse", "triangle", "square", "pentagon", "hexagon",
    "star", "cross", "ring", "flower", "diamond", "half-disc",
)  # fmt: skip
LEVEL_NAMES = ("identity", "geometry", "color", "background", "texture", "unused")
LEVEL_DIM = 8
POSITION_BINS = 3  # per axis: factors["position"] is one of 3 x 3 = 9 cells, row-major
POSITION_RANGE = 0.7  # object centres lie in [-0.35, 0.35] (the image spans [-1, 1])
COLOR_BINS = 8  # object hue bins
BACKGROUND_BINS = 6  # background hue bins
FACTOR_CLASSES = {
    "shape": len(SHAPE_CLASSES),
    "position": POSITION_BINS**2,
    "color": COLOR_BINS,
    "background": BACKGROUND_BINS,
}

HARMONICS = 20  # K: outline r(theta) = a_0 + sum_{k<=K} a_k cos(k theta) + b_k sin(k theta)
CLASS_SHARPNESS = 10.0  # softmax(sharpness * logits): near-discrete classes, still differentiable
RING_HOLE = 0.55  # hole radius of "ring", relative to its outer radius
EDGE_SOFTNESS_PX = 0.5  # sigmoid width of the rasterised edge, in pixels
TEXTURE_AMPLITUDE = 0.0125  # per-pixel texture std = amplitude * sqrt(4 gratings) = 0.025
TEXTURE_CYCLES = (6.0, 7.0, 8.5, 10.0)  # grating frequencies, cycles per image width
PATTERN_RATIO = 1.5  # level i's pattern: amplitude TEXTURE_AMPLITUDE * 1.5^(5-i), cycles TEXTURE_CYCLES / 2^(5-i)
MIN_RESOLUTION, MAX_RESOLUTION = 32, 128


# --- reference outlines ------------------------------------------------------------------------


def _regular_polygon(n: int, radius: float = 1.0, phase: float = math.pi / 2) -> list[tuple[float, float]]:
    return [
        (radius * math.cos(phase + 2 * math.pi * i / n), radius * math.sin(phase + 2 * math.pi * i / n))
        for i in range(n)
    ]


def _star(points: int = 5, inner: float = 0.5) -> list[tuple[float, float]]:
    verts = []
    for i in range(2 * points):
        r = 1.0 if i % 2 == 0 else inner
        a = math.pi / 2 + math.pi * i / points
        verts.append((r * math.cos(a), r * math.sin(a)))
    return verts


def _cross(arm: float = 1.0, half_width: float = 0.34) -> list[tuple[float, float]]:
    a, w = arm, half_width
    return [(w, w), (w, a), (-w, a), (-w, w), (-a, w), (-a, -w), (-w, -w), (-w, -a), (w, -a), (w, -w), (a, -w), (a, w)]


def _half_disc(segments: int = 96) -> list[tuple[float, float]]:
    # Centred on its centroid (4 / (3 pi) above the flat edge) so that it is star-shaped around 0.
    y0 = 4.0 / (3.0 * math.pi)
    arc = [(math.cos(math.pi * i / segments), math.sin(math.pi * i / segments) - y0) for i in range(segments + 1)]
    return arc


REFERENCE_POLYGONS: dict[str, list[tuple[float, float]]] = {
    "triangle": _regular_polygon(3),
    "square": _regular_polygon(4, phase=math.pi / 4),
    "pentagon": _regular_polygon(5),
    "hexagon": _regular_polygon(6),
    "star": _star(),
    "cross": _cross(),
    "diamond": [(1.35, 0.0), (0.0, 0.75), (-1.35, 0.0), (0.0, -0.75)],
    "half-disc": _half_disc(),
}
"""Vertices (counter-clockwise, before area normalisation) of the classes that are polygons."""


def polygon_radius(vertices: Sequence[tuple[float, float]], theta: Tensor) -> Tensor:
    """Polar outline r(theta) of a polygon that is star-shaped around the origin (float64)."""
    v = torch.tensor(vertices, dtype=torch.float64)  # (V, 2)
    p, e = v, torch.roll(v, -1, dims=0) - v  # edge i runs from p_i along e_i
    d = torch.stack([torch.cos(theta), torch.sin(theta)], dim=-1)  # (T, 2)

    def cross(a: Tensor, b: Tensor) -> Tensor:
        return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]

    denom = cross(d[:, None, :], e[None, :, :])  # (T, V)
    t = cross(p[None, :, :], e[None, :, :]) / denom  # distance along the ray
    s = cross(p[None, :, :], d[:, None, :]) / denom  # position along the edge
    hit = (denom.abs() > 1e-12) & (t > 0) & (s >= -1e-9) & (s <= 1 + 1e-9)
    return torch.where(hit, t, torch.full_like(t, math.inf)).min(dim=1).values


def outline(name: str, theta: Tensor) -> Tensor:
    """Polar outline of a shape class at angles `theta` (float64), normalised to the unit disc's area
    (ring: outer radius 1, its hole is drawn separately)."""
    if name in ("circle", "ring"):
        return torch.ones_like(theta)
    if name == "ellipse":
        a, b = 1.3, 0.75
        r = 1.0 / torch.sqrt((torch.cos(theta) / a) ** 2 + (torch.sin(theta) / b) ** 2)
    elif name == "flower":
        r = 1.0 + 0.28 * torch.cos(6 * theta)
    elif name in REFERENCE_POLYGONS:
        r = polygon_radius(REFERENCE_POLYGONS[name], theta)
    else:
        raise InputError(f"unknown shape class {name!r}: choose one of {', '.join(SHAPE_CLASSES)}")
    # area = 1/2 * integral r^2 dtheta, on the uniform grid `theta` spans
    area = 0.5 * (r**2).mean() * 2 * math.pi
    return r * math.sqrt(math.pi / area)


def outline_coefficients(samples: int = 2048) -> Tensor:
    """(12, 2K+1) Fourier coefficients [a_0, a_1..a_K, b_1..b_K] of every class outline, float64."""
    theta = torch.arange(samples, dtype=torch.float64) * (2 * math.pi / samples)
    rows = []
    for name in SHAPE_CLASSES:
        spec = torch.fft.rfft(outline(name, theta)) / samples
        a = 2 * spec.real[1 : HARMONICS + 1]
        b = -2 * spec.imag[1 : HARMONICS + 1]
        rows.append(torch.cat([spec.real[:1], a, b]))
    return torch.stack(rows)


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """(B,) hue in turns, saturation, value -> (B, 3) RGB; piecewise linear in h, so differentiable a.e."""
    n = torch.tensor([5.0, 3.0, 1.0], device=h.device)  # (3,)
    k = torch.remainder(n + 6.0 * h[:, None], 6.0)  # (B, 3)
    ramp = torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)
    return v[:, None] * (1.0 - s[:, None] * ramp)


def _rgb(prefix: str, rgb: Tensor) -> dict[str, Tensor]:
    """(B, 3) -> {prefix_r, prefix_g, prefix_b}: (B,) columns of the per-image table."""
    return {f"{prefix}_{c}": rgb[:, i] for i, c in enumerate("rgb")}


def _hue(u_cos: Tensor, u_sin: Tensor) -> Tensor:
    """Hue in turns [0, 1) from two iid N(0, 1) coordinates: uniform by rotational symmetry."""
    return torch.remainder(torch.atan2(u_sin, u_cos) / (2 * math.pi), 1.0)


def _gratings(jitter: Tensor, cycles: Sequence[float], px: Tensor, py: Tensor) -> Tensor:
    """(8, P) unit-amplitude cos and sin gratings, one pair per frequency (cycles per image width), at
    orientations spread over the circle and jittered by `jitter` (4,) in [0, 1)."""
    angles = 2 * math.pi * (torch.arange(4, dtype=torch.float64) + 0.5 * jitter) / 4
    freq = torch.tensor(cycles, dtype=torch.float64) * math.pi  # radians per unit of p
    fx, fy = freq * torch.cos(angles), freq * torch.sin(angles)
    phase = fx[:, None] * px.reshape(1, -1).double() + fy[:, None] * py.reshape(1, -1).double()  # (4, P)
    return torch.stack([torch.cos(phase), torch.sin(phase)], dim=1).reshape(8, -1)


def _orthogonal(source, n: int) -> Tensor:
    q, r = torch.linalg.qr(normal((n, n), generator=source, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))[None, :]  # the unique Q with positive diag(R)


# --- the generator -------------------------------------------------------------------------------


class ShapesWorld(MLVGM):
    """Procedural MLVGM: 6 levels x 8 dims; see the module docstring for what each level controls.

    resolution: output size in pixels (32 to 128)
    world_seed: seed of the fixed mixing matrices and texture gratings ("the weights")
    pyramid: z1..z4 add their coarse patterns (the default; see the module docstring); False leaves
        each level's effect confined to its factor (z5 keeps its texture)
    """

    level_names = LEVEL_NAMES
    factor_classes = FACTOR_CLASSES
    shape_classes = SHAPE_CLASSES

    def __init__(self, resolution: int = 64, world_seed: int = 0, pyramid: bool = True) -> None:
        super().__init__()
        if (
            isinstance(resolution, bool)
            or not isinstance(resolution, int)
            or not (MIN_RESOLUTION <= resolution <= MAX_RESOLUTION)
        ):
            raise InputError(
                f"shapes resolution must be an integer from {MIN_RESOLUTION} to {MAX_RESOLUTION}, got {resolution!r}"
            )
        self.resolution = resolution
        self.level_dims = (LEVEL_DIM,) * len(LEVEL_NAMES)
        draws = Stream(world_seed, purpose="shapes-world").at(0)

        # Fixed "weights": a mixing matrix per used level, the class outlines, texture gratings.
        mix = torch.stack([_orthogonal(draws, LEVEL_DIM) for _ in range(5)])  # (5, 8, 8)
        self.register_buffer("mix", mix.float())
        self.register_buffer("outlines", outline_coefficients().float())  # (12, 2K+1)
        hole = torch.tensor([1.0 if name == "ring" else 0.0 for name in SHAPE_CLASSES])
        self.register_buffer("hole", hole)  # (12,)
        k = torch.arange(1, HARMONICS + 1, dtype=torch.float32)
        self.register_buffer("harmonic", k)  # (K,)
        # Lanczos sigma factors damp the ringing of the truncated series.
        self.register_buffer("lanczos", torch.special.sinc(k / (HARMONICS + 1)))  # (K,)

        # Pixel centres in [-1, 1]; x to the right, y downwards (image rows).
        c = (torch.arange(resolution, dtype=torch.float32) + 0.5) * (2.0 / resolution) - 1.0
        py, px = torch.meshgrid(c, c, indexing="ij")
        self.register_buffer("px", px.reshape(1, -1))  # (1, P)
        self.register_buffer("py", py.reshape(1, -1))  # (1, P)

        # The pattern pyramid: per level, 4 gratings (cos and sin) at jittered orientations. z5's
        # jitter is drawn first, as when z5 alone had a pattern, so the texture is unchanged.
        jitter5 = uniform(4, generator=draws, dtype=torch.float64)
        # z6 reaches the image only through this gain, which is exactly 0: an unused latent.
        self.register_buffer("unused_gain", torch.zeros(()))
        self.register_buffer("unused_color", normal((LEVEL_DIM, 3), generator=draws))  # (8, 3)
        jitters = [uniform(4, generator=draws, dtype=torch.float64) for _ in range(4)] + [jitter5]
        self.pyramid = bool(pyramid)
        bases = []
        for level, jitter in enumerate(jitters):  # 0..4
            octaves = 4 - level  # z5: 0, z1: 4 octaves below the texture
            gain = TEXTURE_AMPLITUDE * PATTERN_RATIO**octaves if (self.pyramid or level == 4) else 0.0
            bases.append(gain * _gratings(jitter, [c / 2**octaves for c in TEXTURE_CYCLES], px, py))
        self.register_buffer("pattern_basis", torch.cat(bases).float())  # (40, P): rows of z1..z5

    # Each stage consumes one level. u = mixed coordinates, iid N(0, 1) for z ~ N(0, I); every
    # parameter comes from one formula below, used by the renderer and by scene()/factors() alike.
    def _mixed(self, level: int, z: Tensor) -> Tensor:
        return z @ self.mix[level].T  # (B, 8)

    def identity_params(self, z1: Tensor) -> dict[str, Tensor]:
        """Level 1: class logits (B, 12) (class k<6 is +u_k, k>=6 is -u_{k-6}), roundness, aspect (B,)."""
        u = self._mixed(0, z1)
        return {
            "logits": torch.cat([u[:, :6], -u[:, :6]], dim=1),
            "aspect": torch.exp(0.15 * torch.tanh(0.5 * u[:, 6])),  # in [0.86, 1.16]
            "roundness": 0.8 * ndtr(u[:, 7]),  # in [0, 0.8]: low-passes the outline
        }

    def geometry_params(self, z2: Tensor) -> dict[str, Tensor]:
        """Level 2: centre (x, y) in [-0.35, 0.35], radius scale, angle, stretch, shear, bends (B,)."""
        u = self._mixed(1, z2)
        return {
            "x": POSITION_RANGE * (ndtr(u[:, 0]) - 0.5),
            "y": POSITION_RANGE * (ndtr(u[:, 1]) - 0.5),
            "scale": 0.42 + 0.24 * ndtr(u[:, 2]),  # outline radius in half-image units
            "angle": 2 * math.pi * ndtr(u[:, 3]),
            "stretch": torch.exp(0.15 * torch.tanh(0.5 * u[:, 4])),
            "shear": 0.2 * torch.tanh(0.5 * u[:, 5]),
            "bend_x": 0.15 * torch.tanh(0.5 * u[:, 6]),
            "bend_y": 0.15 * torch.tanh(0.5 * u[:, 7]),
        }

    def color_params(self, z3: Tensor) -> dict[str, Tensor]:
        """Level 3: object hue (turns), saturation, value, shade hue shift, ramp direction and strength (B,)."""
        u = self._mixed(2, z3)
        return {
            "hue": _hue(u[:, 0], u[:, 1]),
            "saturation": 0.55 + 0.35 * ndtr(u[:, 2]),
            "value": 0.7 + 0.25 * ndtr(u[:, 3]),
            "shade_shift": 0.08 * torch.tanh(0.5 * u[:, 4]),
            "ramp_angle": torch.atan2(u[:, 6], u[:, 5]),
            "ramp_strength": ndtr(u[:, 7]),
        }

    def background_params(self, z4: Tensor) -> dict[str, Tensor]:
        """Level 4: background hue, saturation, value, gradient direction and strength, second hue shift (B,)."""
        u = self._mixed(3, z4)
        return {
            "hue": _hue(u[:, 0], u[:, 1]),
            "saturation": 0.3 + 0.4 * ndtr(u[:, 2]),
            "value": 0.12 + 0.33 * ndtr(u[:, 3]),
            "ramp_angle": torch.atan2(u[:, 5], u[:, 4]),
            "ramp_strength": ndtr(u[:, 6]),
            "second_shift": 0.2 * torch.tanh(0.5 * u[:, 7]),
        }

    # Stages 1-4 and 6 reduce each level to a few numbers per image; the pixel pass uses them.
    # Two choices keep the compiled forward to one vectorised pass over the pixels (measured at
    # 64 px, batch 256, 2 CPU cores, torch 2.14: 12k -> 18k -> 55k images/s):
    # - every per-image number goes into one (B, T) table first. Otherwise inductor inlines the small
    #   per-image expressions into the per-pixel loop and evaluates erf/cos/tanh once per pixel
    #   vector; a cat of more than 8 tensors is always materialised (max_pointwise_cat_inputs);
    # - each channel is finished (texture, unused offset, clamp) before the channels are stacked, so
    #   the stack writes the final image instead of an intermediate that a second pass re-reads.

    def _identity(self, z1: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Stage 1: blended outline coefficients (B, 2K+1); hole weight and aspect (B,)."""
        p = self.identity_params(z1)
        weights = torch.softmax(CLASS_SHARPNESS * p["logits"], dim=1)  # (B, 12)
        coef = weights @ self.outlines  # (B, 2K+1)
        damp = self.lanczos * torch.exp(-p["roundness"][:, None] * (self.harmonic / HARMONICS) ** 2)  # (B, K)
        coef = torch.cat([coef[:, :1], coef[:, 1 : HARMONICS + 1] * damp, coef[:, HARMONICS + 1 :] * damp], 1)
        return coef, {"hole": weights @ self.hole, "aspect": p["aspect"]}

    def _geometry(self, z2: Tensor, aspect: Tensor) -> dict[str, Tensor]:
        """Stage 2: the inverse map pixel -> shape space (undo translation, rotation, scale, stretch,
        shear, then bend) and the edge sharpness, as per-image values (B,)."""
        p = self.geometry_params(z2)
        scale, stretch, shear = p["scale"], aspect * p["stretch"], p["shear"]
        cos, sin = torch.cos(p["angle"]), torch.sin(p["angle"])
        m10, m11 = -sin * stretch / scale, cos * stretch / scale
        m00, m01 = cos / (scale * stretch) - shear * m10, sin / (scale * stretch) - shear * m11
        edge_gain = (0.5 * self.resolution / EDGE_SOFTNESS_PX) * scale  # shape units -> edge widths
        return {"m00": m00, "m01": m01, "m10": m10, "m11": m11, "x": p["x"], "y": p["y"],
                "bend_x": p["bend_x"], "bend_y": p["bend_y"], "edge_gain": edge_gain}  # fmt: skip

    def _color(self, z3: Tensor) -> dict[str, Tensor]:
        """Stage 3: object colour = base + delta * ramp, the ramp running along a direction (B,)."""
        p = self.color_params(z3)
        base = _hsv_to_rgb(p["hue"], p["saturation"], p["value"])  # (B, 3)
        shade = _hsv_to_rgb(p["hue"] + p["shade_shift"], p["saturation"], 0.75 * p["value"])
        delta = p["ramp_strength"][:, None] * (shade - base)  # (B, 3)
        return {**_rgb("obj", base), **_rgb("obj_delta", delta),
                "obj_cos": 0.4 * torch.cos(p["ramp_angle"]), "obj_sin": 0.4 * torch.sin(p["ramp_angle"])}  # fmt: skip

    def _background(self, z4: Tensor) -> dict[str, Tensor]:
        """Stage 4: background = first colour + delta * ramp across the frame (B,)."""
        p = self.background_params(z4)
        first = _hsv_to_rgb(p["hue"], p["saturation"], p["value"])  # (B, 3)
        second = _hsv_to_rgb(p["hue"] + p["second_shift"], p["saturation"], 0.55 * p["value"])
        k = (0.5 / math.sqrt(2.0)) * p["ramp_strength"]
        return {**_rgb("bg", first), **_rgb("bg_delta", second - first),
                "bg_cos": k * torch.cos(p["ramp_angle"]), "bg_sin": k * torch.sin(p["ramp_angle"])}  # fmt: skip

    def _patterns(self, z: Sequence[Tensor]) -> Tensor:
        """The pattern pyramid (B, P): z5's texture plus z1..z4's coarser patterns, linear in z."""
        u = torch.einsum("lbi,lji->blj", torch.stack(list(z[:5])), self.mix)  # (B, 5, 8): each level mixed
        return u.reshape(u.shape[0], -1) @ self.pattern_basis

    def _paint(self, coef: Tensor, table: Tensor, names: list[str], texture: Tensor) -> tuple[Tensor, Tensor]:
        """The pixel pass: coverage of the outline, object over background, texture, the unused level's
        (zero) offset, clamped to [0, 1]; returns (B, 3, P) images and (B, P) coverage."""
        t = {name: table[:, i : i + 1] for i, name in enumerate(names)}  # each (B, 1)
        dx, dy = self.px - t["x"], self.py - t["y"]  # (B, P)
        qx = t["m00"] * dx + t["m01"] * dy  # shape-space coordinates of every pixel
        qy = t["m10"] * dx + t["m11"] * dy
        qx, qy = qx + t["bend_x"] * (qy * qy - 0.3), qy + t["bend_y"] * (qx * qx - 0.3)

        # Coverage: sigmoid of the radial signed distance to the outline r(theta).
        rho = torch.sqrt(qx * qx + qy * qy + 1e-12)
        c1, s1 = qx / rho, qy / rho  # cos(theta), sin(theta)
        r = coef[:, :1].expand_as(rho)
        ck, sk = c1, s1
        for k in range(HARMONICS):  # cos(k theta), sin(k theta) by rotation: no trig per pixel
            r = r + coef[:, 1 + k, None] * ck + coef[:, 1 + HARMONICS + k, None] * sk
            ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
        outside = torch.sigmoid((rho - r) * t["edge_gain"])  # 1 - coverage of the outline
        in_hole = torch.sigmoid((RING_HOLE - rho) * t["edge_gain"])
        mask = (1.0 - outside) * (1.0 - t["hole"] * in_hole)  # (B, P)

        obj_ramp = 0.5 + qx * t["obj_cos"] + qy * t["obj_sin"]
        bg_ramp = 0.5 + self.px * t["bg_cos"] + self.py * t["bg_sin"]
        channels = []
        for c in "rgb":
            obj = t[f"obj_{c}"] + t[f"obj_delta_{c}"] * obj_ramp
            bg = t[f"bg_{c}"] + t[f"bg_delta_{c}"] * bg_ramp
            channels.append((bg + mask * (obj - bg) + texture + t[f"unused_{c}"]).clamp(0.0, 1.0))
        return torch.stack(channels, dim=1), mask

    def render(self, latents: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """(images (B, 3, H, W) in [0, 1], object coverage (B, H, W) in [0, 1])."""
        z1, z2, z3, z4, z5, z6 = self._check(latents)
        coef, identity = self._identity(z1)  # l_1(z_1): what the object is
        frame = self._geometry(z2, identity["aspect"])  # l_2(z_2, .): where it is
        color = self._color(z3)  # l_3(z_3, .): its colour
        background = self._background(z4)  # l_4(z_4, .): what is behind it
        unused = _rgb("unused", self.unused_gain * (z6 @ self.unused_color))  # l_6(z_6, .): gain exactly 0
        columns = {"hole": identity["hole"], **frame, **color, **background, **unused}
        table = torch.stack(list(columns.values()), dim=1)  # (B, T), T > 8: materialised once per image
        texture = self._patterns((z1, z2, z3, z4, z5))  # l_5(z_5, .): fine detail, and z1..z4's coarse patterns
        img, mask = self._paint(coef, table, list(columns), texture)
        size = (img.shape[0], 3, self.resolution, self.resolution)
        return img.reshape(size), mask.reshape(size[0], *size[2:])

    def forward(self, latents: Sequence[Tensor]) -> Tensor:
        """(B, 3, H, W) images in [0, 1] from 6 latents of shape (B, 8)."""
        return self.render(latents)[0]

    def _check(self, latents: Sequence[Tensor]) -> Sequence[Tensor]:
        if len(latents) != len(self.level_dims):
            raise InputError(f"shapes takes {len(self.level_dims)} latent levels, got {len(latents)}")
        return latents

    # --- ground truth ---------------------------------------------------------------------------

    @torch.no_grad()
    def scene(self, latents: Sequence[Tensor]) -> dict[str, Tensor]:
        """Every scene parameter per image, each (B,): what the levels decided, in the renderer's units."""
        z1, z2, z3, z4, z5, _ = self._check(latents)
        identity = self.identity_params(z1)
        logits = identity.pop("logits")
        scene = {
            "shape": logits.argmax(dim=1),
            "shape_confidence": torch.softmax(CLASS_SHARPNESS * logits, dim=1).amax(dim=1),
            **identity,
            **self.geometry_params(z2),
            **self.color_params(z3),
            **{f"background_{k}": v for k, v in self.background_params(z4).items()},
            "texture_energy": self._mixed(4, z5).norm(dim=1),
        }
        return scene

    @torch.no_grad()
    def factors(self, latents: Sequence[Tensor]) -> dict[str, Tensor]:
        """Discrete ground-truth factors per image, each (B,) int64, with `factor_classes` classes:
        shape (class index into SHAPE_CLASSES), position (3x3 cell of the centre, row-major),
        color (object hue bin), background (background hue bin)."""
        s = self.scene(latents)

        def cell(v: Tensor) -> Tensor:  # centre coordinate in [-0.35, 0.35] -> bin 0..2
            return torch.clamp(((v / POSITION_RANGE + 0.5) * POSITION_BINS).long(), 0, POSITION_BINS - 1)

        return {
            "shape": s["shape"],
            "position": cell(s["y"]) * POSITION_BINS + cell(s["x"]),
            "color": torch.clamp((s["hue"] * COLOR_BINS).long(), 0, COLOR_BINS - 1),
            "background": torch.clamp((s["background_hue"] * BACKGROUND_BINS).long(), 0, BACKGROUND_BINS - 1),
        }
