"""The random-view perturbation of a whole batch in one pass: T_z(z)_i = z_i + w_i, and ||w_i|| per level.

For sample b and level i (dims d in the level's slice of the concatenated latent z, shape (B, D)):

    x_bd  ~ N^t(0, 1, t_i)                           truncated unit normal, by inversion of a Philox word
    g_bi  = [u_bi < p_i]                             the level is perturbed with probability p_i ...
    s_bi  = sigma_i + (sigma_max_i - sigma_i) u'_bi  ... with a standard deviation drawn from a range
    w_bd  = g_bi (mu_i + s_bi x_bd)
    positive_bd = z_bd + w_bd,   norm_bi = ||w_b,level i||_2

With p = 1 and sigma_max = sigma this is Jahanian et al.'s random view, N^t(mu, sigma, t), on each
chosen level (the paper's section 3.2); p < 1 and sigma ranges are the multi-level option. Levels not
perturbed have sigma = p = 0 and get w = 0 exactly.

Random numbers come from an `mlvgm.streams.Draws` (keyed by seed, rank, step, purpose), laid out so
every implementation reads the same bits: the unit normals use the Draws' next index c1 (element
b * D + d is word e % 4 of Philox block e // 4), the gate uniforms c1 + 1 and the sigma uniforms
c1 + 2 (element b * L + i), the latter two only when some level has p < 1 or a sigma range.

- "torch":    `perturb_reference`, mlvgm.latents ops (the same code that serves torch.Generator sources).
- "compiled": the same math with the key and counters as tensors, torch.compile'd into one loop nest.
- "triton":   one program per (sample, level): Philox, inversion (Giles' erfinv), gate, add, norm.
Values agree across implementations up to float32 rounding of the inverse error function; the uniform
words are bit-identical.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from mlvgm.errors import InputError
from mlvgm.kernels.dispatch import NO_TRITON, resolve_impl
from mlvgm.latents import RandomSource, truncated_normal, uniform
from mlvgm.streams import Draws, philox_words, words_at

try:  # a CPU-only torch may come without triton: then only "torch" and "compiled" exist
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover
    triton = None


@dataclass(frozen=True)
class LevelParams:
    """Per-level parameters of the perturbation, one entry per level of the generator."""

    level_dims: tuple[int, ...]  # d_i
    mu: tuple[float, ...]  # mean of w_i
    sigma: tuple[float, ...]  # std of w_i (lower end of its range)
    sigma_max: tuple[float, ...]  # upper end of the std's range (= sigma: fixed)
    t: tuple[float, ...]  # truncation in units of sigma; inf = untruncated
    p: tuple[float, ...]  # probability that a sample's level is perturbed
    _on: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        n = len(self.level_dims)
        for name in ("mu", "sigma", "sigma_max", "t", "p"):
            if len(getattr(self, name)) != n:
                raise InputError(f"{name} has {len(getattr(self, name))} entries for {n} levels: give one per level")
        if not n or any(not isinstance(d, int) or d <= 0 for d in self.level_dims):
            raise InputError(f"level_dims must be one or more positive ints, got {self.level_dims}")
        for i in range(n):
            if not (math.isfinite(self.mu[i]) and math.isfinite(self.sigma_max[i])):
                raise InputError(
                    f"level {i + 1}: mu and sigma_max must be finite, got {self.mu[i]}, {self.sigma_max[i]}"
                )
            if not 0 <= self.sigma[i] <= self.sigma_max[i]:
                raise InputError(f"level {i + 1}: need 0 <= sigma <= sigma_max, got {self.sigma[i]}, "
                                 f"{self.sigma_max[i]}")  # fmt: skip
            if not self.t[i] > 0:
                raise InputError(f"level {i + 1}: truncation t must be > 0, got {self.t[i]}")
            if not 0 <= self.p[i] <= 1:
                raise InputError(f"level {i + 1}: probability p must be in [0, 1], got {self.p[i]}")

    @property
    def multi(self) -> bool:
        """Whether gates or sigma ranges are drawn (two more draw indices per batch)."""
        return any(p < 1 for p in self.p) or any(hi != lo for lo, hi in zip(self.sigma, self.sigma_max, strict=True))

    @property
    def level_dim(self) -> int | None:
        """The common size of every level, or None when sizes differ."""
        return self.level_dims[0] if len(set(self.level_dims)) == 1 else None

    @property
    def draws_used(self) -> int:
        return 3 if self.multi else 1

    def on(self, device: torch.device) -> dict[str, Tensor]:
        """The parameters as device tensors, built once per device (a plain dict, which a compiled graph reads
        as inputs; build it before tracing, as RandomViews does)."""
        device = torch.device(device)
        if device not in self._on:
            self._on[device] = self._tensors(device)
        return self._on[device]

    def _tensors(self, device: torch.device) -> dict[str, Tensor]:
        f32 = dict(dtype=torch.float32, device=device)
        offsets = [0]
        for d in self.level_dims:
            offsets.append(offsets[-1] + d)
        level_of = torch.repeat_interleave(
            torch.arange(len(self.level_dims), device=device), torch.tensor(self.level_dims, device=device)
        )  # (D,) level of each coordinate
        t = torch.tensor(self.t, **f32)
        return {
            "mu": torch.tensor(self.mu, **f32),
            "sigma": torch.tensor(self.sigma, **f32),
            "span": torch.tensor([hi - lo for lo, hi in zip(self.sigma, self.sigma_max, strict=True)], **f32),
            "t": t,
            "t_per_dim": t[level_of].contiguous(),  # (D,)
            "erf_t_per_dim": torch.erf(t / math.sqrt(2.0))[level_of].contiguous(),  # (D,)
            "p": torch.tensor(self.p, **f32),
            "offsets": torch.tensor(offsets, dtype=torch.int32, device=device),
            "level_of": level_of,
        }


def _check(z: Tensor, params: LevelParams) -> None:
    if z.dim() != 2 or z.shape[1] != sum(params.level_dims):
        raise InputError(f"perturb needs the concatenated latents, (B, {sum(params.level_dims)}), got {tuple(z.shape)}")


def _combine(z: Tensor, x: Tensor, gate_u: Tensor | None, sigma_u: Tensor | None, q: dict[str, Tensor],
             multi: bool, level_dim: int | None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """w from unit truncated normals x (B, D) and per-(sample, level) uniforms (B, L): positives, norms.

    level_dim: the common size of every level, or None. Equal levels (BigBiGAN's 6 x 20, StyleGAN2's
    16 x 512) are handled as a (B, L, d) view, which vectorises; unequal ones gather per coordinate.
    """
    b, n_levels = z.shape[0], q["mu"].shape[0]
    if multi:
        gate = (gate_u < q["p"]).to(x.dtype)  # (B, L)
        mu = q["mu"] * gate  # (B, L)
        std = (q["sigma"] + q["span"] * sigma_u) * gate  # (B, L)
    else:
        mu, std = q["mu"].expand(b, n_levels), q["sigma"].expand(b, n_levels)
    if level_dim is not None:
        w = mu[:, :, None] + std[:, :, None] * x.view(b, n_levels, level_dim)  # (B, L, d)
        norms = (w * w).sum(dim=2).sqrt()
        w = w.reshape(b, -1)
    else:
        level_of = q["level_of"]
        w = mu[:, level_of] + std[:, level_of] * x  # (B, D)
        norms = torch.zeros(b, n_levels, dtype=w.dtype, device=w.device).index_add_(1, level_of, w * w).sqrt()
    return z + w.to(z.dtype), norms


def perturb_reference(
    z: Tensor,  # (B, D) anchors, levels concatenated
    params: LevelParams,
    source: RandomSource = None,  # Draws, torch.Generator or None (torch's global generator)
) -> tuple[Tensor, Tensor]:
    """(positives (B, D), norms (B, L)) with mlvgm.latents' samplers: the "torch" implementation."""
    _check(z, params)
    q = params.on(z.device)
    level_of = q["level_of"]
    x = truncated_normal(z.shape, t=q["t"][level_of], generator=source, device=z.device)  # (B, D)
    gate_u = sigma_u = None
    if params.multi:
        shape = (z.shape[0], len(params.level_dims))
        gate_u = uniform(shape, generator=source, device=z.device)
        sigma_u = uniform(shape, generator=source, device=z.device)
    return _combine(z, x, gate_u, sigma_u, q, params.multi, params.level_dim)


# --- "compiled" ------------------------------------------------------------------------------------

_BITS = 24


def _unit_uniform(words: Tensor) -> Tensor:
    """Words -> v in (-1, 1), exactly as mlvgm.latents.symmetric_uniform."""
    k = words >> (32 - _BITS)
    return (2 * k + 1 - (1 << _BITS)).to(torch.float32) * (2.0**-_BITS)


def _words(counters: Tensor, draw: int, n: int, device) -> Tensor:
    """(n,) words of draw c1 + `draw`, from the compiled Philox (materialised: each block computed once)."""
    shifted = counters + torch.tensor([0, 0, draw, 0, 0], dtype=torch.int64, device=device)
    return philox_words(shifted, n)


# Giles (2010), "Approximating the erfinv function" (GPU Computing Gems), single precision: a polynomial
# in w = -log(1 - x^2), one for the centre (w < 5) and one for the tails. aten's erfinv is a scalar loop
# on CPU that inductor cannot vectorise; this is, and the Triton kernel evaluates the same polynomials.
_GILES_CENTRAL = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
                  -0.00125372503, -0.00417768164, 0.246640727, 1.50140941)  # fmt: skip
_GILES_TAIL = (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
               -0.0076224613, 0.00943887047, 1.00167406, 2.83297682)  # fmt: skip


def _erfinv(x: Tensor) -> Tensor:
    w = -torch.log((1.0 - x) * (1.0 + x))
    wc, wt = w - 2.5, torch.sqrt(w) - 3.0
    pc, pt = torch.full_like(x, _GILES_CENTRAL[0]), torch.full_like(x, _GILES_TAIL[0])
    for a, b in zip(_GILES_CENTRAL[1:], _GILES_TAIL[1:], strict=True):
        pc, pt = a + pc * wc, b + pt * wt
    return torch.where(w < 5.0, pc, pt) * x


def _finish(z: Tensor, words: Tensor, gate_words: Tensor | None, sigma_words: Tensor | None,
            q: dict[str, Tensor], multi: bool, level_dim: int | None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Inversion, gate, add and norms in one compiled pass over the words."""
    b, d = z.shape
    t = q["t_per_dim"]  # (D,)
    v = _unit_uniform(words).reshape(b, d)
    x = math.sqrt(2.0) * _erfinv(v * q["erf_t_per_dim"])
    x = torch.minimum(torch.maximum(x, -t), t)
    gate_u = sigma_u = None
    if multi:
        gate_u = (0.5 * _unit_uniform(gate_words) + 0.5).reshape(b, -1)
        sigma_u = (0.5 * _unit_uniform(sigma_words) + 0.5).reshape(b, -1)
    return _combine(z, x, gate_u, sigma_u, q, multi, level_dim)


def _compiled_perturb(z: Tensor, params: LevelParams, draws: Draws, c1: int) -> tuple[Tensor, Tensor]:
    counters = torch.tensor([draws.k0, draws.k1, c1, draws.step, draws.rank], dtype=torch.int64, device=z.device)
    b, d = z.shape
    words = _words(counters, 0, b * d, z.device)
    gate_words = sigma_words = None
    if params.multi:
        n_levels = len(params.level_dims)
        gate_words = _words(counters, 1, b * n_levels, z.device)
        sigma_words = _words(counters, 2, b * n_levels, z.device)
    q = params.on(z.device)
    return _compiled(_finish)(z, words, gate_words, sigma_words, q, params.multi, params.level_dim)


def _traced_perturb(z: Tensor, params: LevelParams, draws: Draws, c1: int) -> tuple[Tensor, Tensor]:
    """The "compiled" math as plain ops, for draws whose step is a tensor (a caller's own compiled graph, such
    as the Continuous-Sampling step, traces them into itself: inductor's loop on a CPU, its Triton on CUDA)."""
    b, d = z.shape
    args = (draws.k0, draws.k1)
    words = words_at(*args, c1, draws.step, draws.rank, b * d, z.device, compiled=False)
    gate_words = sigma_words = None
    if params.multi:
        n = b * len(params.level_dims)
        gate_words = words_at(*args, c1 + 1, draws.step, draws.rank, n, z.device, compiled=False)
        sigma_words = words_at(*args, c1 + 2, draws.step, draws.rank, n, z.device, compiled=False)
    return _finish(z, words, gate_words, sigma_words, params.on(z.device), params.multi, params.level_dim)


@functools.cache
def _compiled(fn):
    # A run has one batch size, compiled once for it; the key, step and rank are tensors, so new steps
    # reuse the code. A second batch size turns on dynamic shapes (torch's default) instead of piling up
    # specialisations against dynamo's recompile limit.
    return torch.compile(fn, fullgraph=True)


# --- "triton" --------------------------------------------------------------------------------------

if triton is not None:

    @triton.jit
    def _erfinv_tl(x):
        """Giles (2010), "Approximating the erfinv function", single precision; |rel. error| < 4e-7 here."""
        w = -tl.log((1.0 - x) * (1.0 + x))
        central = w < 5.0
        wc = w - 2.5
        pc = 2.81022636e-08
        pc = 3.43273939e-07 + pc * wc
        pc = -3.5233877e-06 + pc * wc
        pc = -4.39150654e-06 + pc * wc
        pc = 0.00021858087 + pc * wc
        pc = -0.00125372503 + pc * wc
        pc = -0.00417768164 + pc * wc
        pc = 0.246640727 + pc * wc
        pc = 1.50140941 + pc * wc
        wt = tl.sqrt(w) - 3.0
        pt = -0.000200214257
        pt = 0.000100950558 + pt * wt
        pt = 0.00134934322 + pt * wt
        pt = -0.00367342844 + pt * wt
        pt = 0.00573950773 + pt * wt
        pt = -0.0076224613 + pt * wt
        pt = 0.00943887047 + pt * wt
        pt = 1.00167406 + pt * wt
        pt = 2.83297682 + pt * wt
        return tl.where(central, pc, pt) * x

    @triton.jit
    def _uniform_at(key, e, c1, step, rank):
        """v in (-1, 1) from word e of draw c1: word e % 4 of Philox block e // 4 (mlvgm.streams layout)."""
        # Counters arrive as int32, or int64 from 2**31 on: take their low 32 bits (what Philox uses). They are
        # never constexpr (the kernel's do_not_specialize): tl.to_tensor, which would lift one, is Triton >= 3.7.
        c1, step, rank = c1.to(tl.uint32), step.to(tl.uint32), rank.to(tl.uint32)
        w0, w1, w2, w3 = tl.philox(key, (e // 4).to(tl.uint32), c1, step, rank)
        j = e % 4
        word = tl.where(j == 0, w0, tl.where(j == 1, w1, tl.where(j == 2, w2, w3)))
        k = (word >> 8).to(tl.int32)  # 24 bits
        return (2 * k + 1 - 16777216).to(tl.float32) * 5.9604644775390625e-08  # * 2**-24

    # Not specialised on the counters: Triton turns an integer argument equal to 1 into a constexpr, which has
    # no .to(); and a step or rank of 1 would compile a kernel of its own.
    @triton.jit(do_not_specialize=["c1", "step", "rank"])
    def _perturb_kernel(Z, OUT, NORMS, OFFSETS, MU, SIGMA, SPAN, T, P, key, c1, step, rank, dim, n_levels,
                        MULTI: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
        b = tl.program_id(0)
        level = tl.program_id(1)
        start = tl.load(OFFSETS + level)
        stop = tl.load(OFFSETS + level + 1)
        mu = tl.load(MU + level)
        sigma = tl.load(SIGMA + level)
        t = tl.load(T + level)
        bound = tl.math.erf(t * 0.7071067811865476)
        if MULTI:
            e = b * n_levels + level
            gate_u = 0.5 * _uniform_at(key, e, c1 + 1, step, rank) + 0.5
            sigma_u = 0.5 * _uniform_at(key, e, c1 + 2, step, rank) + 0.5
            on = gate_u < tl.load(P + level)
            sigma = tl.where(on, sigma + tl.load(SPAN + level) * sigma_u, 0.0)
            mu = tl.where(on, mu, 0.0)
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for d0 in range(start, stop, BLOCK):
            d = d0 + tl.arange(0, BLOCK)
            ok = d < stop
            e = b * dim + d
            v = _uniform_at(key, e, c1, step, rank)
            x = 1.4142135623730951 * _erfinv_tl(v * bound)
            x = tl.minimum(tl.maximum(x, -t), t)
            w = tl.where(ok, mu + sigma * x, 0.0)
            anchor = tl.load(Z + b * dim + d, mask=ok, other=0.0)
            tl.store(OUT + b * dim + d, (anchor.to(tl.float32) + w).to(OUT.dtype.element_ty), mask=ok)
            acc += w * w
        tl.store(NORMS + b * n_levels + level, tl.sqrt(tl.sum(acc, axis=0)))


def _triton_perturb(z: Tensor, params: LevelParams, draws: Draws, c1: int) -> tuple[Tensor, Tensor]:
    if triton is None:
        raise InputError(NO_TRITON)
    q = params.on(z.device)
    z = z.contiguous()
    out = torch.empty_like(z)
    n_levels = len(params.level_dims)
    norms = torch.empty(z.shape[0], n_levels, dtype=torch.float32, device=z.device)
    block = min(1024, triton.next_power_of_2(max(params.level_dims)))
    key = draws.k0 | (draws.k1 << 32)
    _perturb_kernel[(z.shape[0], n_levels)](
        z, out, norms, q["offsets"], q["mu"], q["sigma"], q["span"], q["t"], q["p"], key, c1, draws.step,
        draws.rank, z.shape[1], n_levels, MULTI=params.multi, BLOCK=block,
    )  # fmt: skip
    return out, norms


# --- public ---------------------------------------------------------------------------------------


def perturb(
    z: Tensor,  # (B, D) anchors, all levels concatenated
    params: LevelParams,  # per-level mu, sigma range, t, p
    draws: Draws,  # the step's random draws; this call claims params.draws_used indices of it
    *,
    impl: str = "auto",  # "auto" | "torch" | "compiled" | "triton"
) -> tuple[Tensor, Tensor]:
    """(positives (B, D), norms (B, L)): the batch's random views and their per-level ||w_i||_2."""
    if not isinstance(draws, Draws):
        raise InputError(
            f"perturb draws from an mlvgm.streams.Draws, got {type(draws).__name__}: the kernels reproduce "
            "counter-based streams only; use perturb_reference for a torch.Generator"
        )
    _check(z, params)
    impl = resolve_impl("perturb", impl, z.device)
    if impl == "torch":
        return perturb_reference(z, params, draws)
    c1 = draws.reserve(params.draws_used)
    if isinstance(draws.step, Tensor):  # inside a caller's graph (mlvgm.data.sources' compiled step)
        return _traced_perturb(z, params, draws, c1)
    if impl == "compiled":
        return _compiled_perturb(z, params, draws, c1)
    return _triton_perturb(z, params, draws, c1)
