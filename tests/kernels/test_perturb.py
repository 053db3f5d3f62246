"""Batch latent perturbation (kernels/perturb.py): every implementation against a literal float64
reference built from mlvgm.streams words and scipy, the compiled Philox and Giles erfinv on their own,
the sample statistics, the Draws bookkeeping, and bad input."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from scipy import special, stats

import mlvgm.kernels.perturb as perturb_mod
from mlvgm.errors import InputError
from mlvgm.kernels.perturb import LevelParams, perturb, perturb_reference
from mlvgm.streams import Draws, Stream, compiled_philox_blocks, philox4x32, philox_blocks, words_at

INF = float("inf")
M32 = 0xFFFFFFFF
P_MIN = 1e-3  # fixed seeds make the statistical tests deterministic; a correct sampler passes with a wide margin
# Interpreter tests run on CPU tensors here and on the GPU where there is one (tests/mlvgm/test_streams.py).
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
IMPLS = ["torch", "compiled", pytest.param("triton", marks=pytest.mark.interpret)]

# 6 levels x 20 (BigBiGAN): levels 2 and 5 untouched; t = inf and mu != 0 on level 1.
EQUAL = LevelParams(
    level_dims=(20,) * 6,
    mu=(0.0, 0.5, 0.0, 0.0, -0.25, 0.0),
    sigma=(1.0, 0.5, 0.0, 2.0, 0.3, 0.0),
    sigma_max=(1.0, 0.5, 0.0, 2.0, 0.3, 0.0),
    t=(2.0, INF, 1.0, 1.5, 0.5, INF),
    p=(1.0,) * 6,
)
EQUAL_MULTI = LevelParams(
    level_dims=(20,) * 6,
    mu=(0.0, 0.5, 0.0, 0.0, -0.25, 0.0),
    sigma=(1.0, 0.5, 0.0, 0.5, 0.3, 0.0),
    sigma_max=(1.0, 1.5, 0.0, 2.0, 0.3, 0.0),
    t=(2.0, INF, 1.0, 1.5, 0.5, INF),
    p=(1.0, 0.5, 1.0, 0.3, 0.75, 1.0),
)
UNEQUAL = LevelParams(
    level_dims=(3, 8, 5),
    mu=(0.25, 0.0, 0.0),
    sigma=(1.0, 0.0, 2.0),
    sigma_max=(1.0, 0.0, 2.0),
    t=(INF, 2.0, 1.5),
    p=(1.0, 1.0, 1.0),
)
UNEQUAL_MULTI = LevelParams(
    level_dims=(3, 8, 5),
    mu=(0.25, 0.0, 0.0),
    sigma=(0.5, 0.0, 1.0),
    sigma_max=(1.5, 0.0, 1.0),
    t=(INF, 2.0, 1.5),
    p=(0.5, 1.0, 0.3),
)
CASES = {"equal": EQUAL, "equal-multi": EQUAL_MULTI, "unequal": UNEQUAL, "unequal-multi": UNEQUAL_MULTI}
# A key with both 32-bit halves >= 2**31.
BIG_KEY = 0xF00DCAFE_80000003


@pytest.fixture(autouse=True, scope="module")
def _empty_compile_caches():
    """torch.compile keeps at most 8 graphs per function and fullgraph=True turns a 9th into an error;
    the compiled path's graphs here (a static one, then dynamic shapes) neither depend on other
    modules' nor count against theirs: the module starts and leaves with empty caches."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def device_of(impl: str) -> str:
    return TRITON_DEVICE if impl == "triton" else "cpu"


def anchors(b: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, d, generator=torch.Generator().manual_seed(seed))


def counters(draws: Draws) -> tuple[int, int, int, int, int]:
    """(k0, k1, c1, step, rank) of the Draws' next draw: read before the call under test."""
    return draws.k0, draws.k1, draws.index, draws.step, draws.rank


def run(z: torch.Tensor, params: LevelParams, draws: Draws, impl: str) -> tuple[torch.Tensor, torch.Tensor]:
    positives, norms = perturb(z.to(device_of(impl)), params, draws, impl=impl)
    return positives.cpu(), norms.cpu()


@dataclass
class Expected:
    positives: np.ndarray  # (B, D)
    norms: np.ndarray  # (B, L)
    x: np.ndarray  # (B, D) unit truncated normals
    gate: np.ndarray  # (B, L) bool
    scale: np.ndarray  # (B, L) s_bi (before the gate)


def unit_uniform(words: torch.Tensor) -> np.ndarray:
    """v = (2k + 1 - 2**24) / 2**24 in (-1, 1), k the top 24 bits of each word (float64, exact)."""
    k = (words.numpy() >> 8).astype(np.float64)
    return (2 * k + 1 - 2**24) / 2**24


def expected(z: torch.Tensor, params: LevelParams, k0, k1, c1, step, rank) -> Expected:
    """The perturbation written out in float64 from the documented layout: normals from draw c1
    (element b * D + d), gate uniforms from c1 + 1 and sigma uniforms from c1 + 2 (element b * L + i)."""
    b, d = z.shape
    n_levels = len(params.level_dims)
    t = np.repeat(np.array(params.t), params.level_dims)  # (D,)
    v = unit_uniform(words_at(k0, k1, c1, step, rank, b * d)).reshape(b, d)
    x = np.clip(math.sqrt(2.0) * special.erfinv(v * special.erf(t / math.sqrt(2.0))), -t, t)
    if params.multi:
        u_gate = 0.5 * unit_uniform(words_at(k0, k1, c1 + 1, step, rank, b * n_levels)).reshape(b, n_levels) + 0.5
        u_sigma = 0.5 * unit_uniform(words_at(k0, k1, c1 + 2, step, rank, b * n_levels)).reshape(b, n_levels) + 0.5
        gate = u_gate < np.array(params.p)
        scale = np.array(params.sigma) + (np.array(params.sigma_max) - np.array(params.sigma)) * u_sigma
    else:
        gate = np.ones((b, n_levels), dtype=bool)
        scale = np.broadcast_to(np.array(params.sigma), (b, n_levels)).copy()
    w = np.zeros((b, d))
    norms = np.zeros((b, n_levels))
    for row in range(b):
        start = 0
        for i, dim in enumerate(params.level_dims):
            cols = slice(start, start + dim)
            if gate[row, i]:
                w[row, cols] = params.mu[i] + scale[row, i] * x[row, cols]
            norms[row, i] = math.sqrt(sum(float(e) ** 2 for e in w[row, cols]))
            start += dim
    return Expected(z.double().numpy() + w, norms, x, gate, scale)


def assert_matches(positives, norms, want: Expected, params: LevelParams) -> None:
    atol = 1e-5 * max(params.sigma_max)
    np.testing.assert_allclose(positives.double().numpy(), want.positives, rtol=1e-5, atol=atol)
    np.testing.assert_allclose(norms.double().numpy(), want.norms, rtol=1e-5, atol=atol)


def untouched_columns(params: LevelParams) -> tuple[list[int], list[int]]:
    """(levels, coordinates) of the levels with sigma = sigma_max = mu = 0."""
    levels = [i for i in range(len(params.level_dims)) if params.sigma_max[i] == 0 and params.mu[i] == 0]
    offsets = np.cumsum((0, *params.level_dims))
    return levels, [c for i in levels for c in range(offsets[i], offsets[i + 1])]


# --- 1. every implementation against the float64 reference ----------------------------------------

# Compiled shapes are few: the first word count is compiled static, the next ones dynamic (a second graph).
MATCH = (
    [(impl, case, b) for impl in ("torch",) for case in CASES for b in (1, 3, 33)]
    + [("compiled", case, b) for case in ("equal", "equal-multi") for b in (1, 33)]
    + [("compiled", case, 3) for case in ("unequal", "unequal-multi")]
    + [pytest.param("triton", case, b, marks=pytest.mark.interpret) for case in CASES for b in (1, 3)]
)


@pytest.mark.parametrize(("impl", "case", "b"), MATCH)
def test_matches_float64_reference(impl, case, b):
    """positives = z + w and the per-level norms match the literal reference (c1 = 2: two draws of the
    step were taken before), and untouched levels get w = 0 and norm = 0 exactly."""
    params = CASES[case]
    draws = Draws(BIG_KEY, step=2**31 - 1, rank=12345)
    draws.reserve(2)
    z = anchors(b, sum(params.level_dims), seed=b)
    want = expected(z, params, *counters(draws))
    positives, norms = run(z, params, draws, impl)
    assert positives.shape == z.shape and norms.shape == (b, len(params.level_dims))
    assert_matches(positives, norms, want, params)
    levels, columns = untouched_columns(params)
    assert torch.equal(positives[:, columns], z[:, columns])
    assert torch.equal(norms[:, levels], torch.zeros(b, len(levels)))


@pytest.mark.parametrize(
    "impl",
    [
        "torch",
        "compiled",
        pytest.param("triton", marks=pytest.mark.interpret),
    ],
)
def test_largest_step_and_rank(impl):
    """Counters at the top of their range (step = rank = 2**32 - 1) still follow the reference layout."""
    params = EQUAL_MULTI
    draws = Stream(3, rank=M32).at(M32)
    z = anchors(1, 120)
    want = expected(z, params, *counters(draws))
    assert_matches(*run(z, params, draws, impl), want, params)


def test_compiled_truncation_holds_at_the_extreme_words():
    """At v = +-(1 - 2**-24), the ends of the 24-bit grid, Giles' float32 erfinv overshoots t = 1.5 by an
    ulp: the clamp keeps |w - mu| <= t sigma exactly there, and untruncated levels stay finite."""
    words = torch.tensor([M32, 0] * 60, dtype=torch.int64)  # v = +(1 - 2**-24), -(1 - 2**-24), ...
    q = EQUAL.on(torch.device("cpu"))
    # (1, 120) non-multi is the shape of test_matches_float64_reference[compiled-equal-1]: no new graph
    w, norms = perturb_mod._compiled(perturb_mod._finish)(torch.zeros(1, 120), words, None, None, q, False, 20)
    for i in range(6):
        level = w[0, 20 * i : 20 * (i + 1)]
        mu, sigma, t = EQUAL.mu[i], EQUAL.sigma[i], EQUAL.t[i]
        assert torch.isfinite(level).all()
        if mu == 0 and math.isfinite(t):
            assert float(level.abs().max()) <= t * sigma
    assert float(w[0, 60:80].abs().max()) == 3.0  # level 3: t sigma = 1.5 * 2 reached, not passed
    torch.testing.assert_close(norms[0], w[0].view(6, 20).norm(dim=1))


# --- 2. the compiled Philox ------------------------------------------------------------------------


def philox_cases(n: int = 12):
    """(k0, k1, c1, step, rank) tuples: random 32-bit values and the edges 0, 2**31, 2**32 - 1."""
    rng = random.Random(7)
    edges = [(0, 0, 0, 0, 0), (M32, M32, M32, M32, M32), (2**31, 2**31, 2**31 - 1, 2**31, 2**31 + 1)]
    return edges + [tuple(rng.getrandbits(32) for _ in range(5)) for _ in range(n)]


def reference_blocks(c0: torch.Tensor, k0, k1, c1, step, rank) -> torch.Tensor:
    return torch.stack(philox4x32(c0, c1, step, rank, k0, k1), dim=1)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_philox_words_are_bit_identical(compiled):
    """philox_blocks (int64 products wrapping mod 2**64) gives every word of mlvgm.streams.philox4x32,
    also for keys, counters and block indices >= 2**31, and _words the words_at layout of draw c1 + k."""
    fn = compiled_philox_blocks() if compiled else philox_blocks
    rng = random.Random(1)
    c0 = torch.tensor([0, 1, 2**31 - 1, 2**31, M32] + [rng.getrandbits(32) for _ in range(45)])  # 50 blocks
    for k0, k1, c1, step, rank in philox_cases():
        ctr = torch.tensor([k0, k1, c1, step, rank], dtype=torch.int64)
        got = fn(c0, ctr)
        assert got.dtype == torch.int64
        assert torch.equal(got, reference_blocks(c0, k0, k1, c1, step, rank))
    if compiled:  # _words is always compiled: 198 words = 50 blocks, a shape compiled above
        k0, k1, c1, step, rank = 2**32 - 5, 2**31 + 9, 4, M32, 2**31
        ctr = torch.tensor([k0, k1, c1, step, rank], dtype=torch.int64)
        for draw in (0, 1, 2):
            want = words_at(k0, k1, c1 + draw, step, rank, 198, compiled=False)
            assert torch.equal(perturb_mod._words(ctr, draw, 198, "cpu"), want)


# --- 3. Giles' erfinv --------------------------------------------------------------------------------


def erfinv_grid() -> np.ndarray:
    """Every 97th point of the 24-bit grid v = (2k + 1 - 2**24) / 2**24, its 4096 outermost points
    (down to +-(1 - 2**-24)), and random points of (-1, 1)."""
    k = np.concatenate([np.arange(0, 2**24, 97), np.arange(2048), np.arange(2**24 - 2048, 2**24)])
    grid = (2 * k.astype(np.float64) + 1 - 2**24) / 2**24
    return np.concatenate([grid, np.random.default_rng(0).uniform(-1, 1, 100_000)])


@pytest.mark.parametrize(("dtype", "bound"), [(torch.float64, 5e-7), (torch.float32, 1.5e-6)])
def test_giles_erfinv_relative_error(dtype, bound):
    """Giles' single-precision polynomials against scipy's erfinv of the same (rounded) input.
    Measured on the whole 24-bit grid: 1.25e-7 evaluated in float64 (the approximation itself),
    3.0e-7 in float32 (as the kernels run it); the bounds leave a factor of 4-5."""
    x = torch.tensor(erfinv_grid(), dtype=dtype)
    assert float(x.abs().max()) == 1 - 2**-24
    got = perturb_mod._erfinv(x).double().numpy()
    want = special.erfinv(x.double().numpy())
    rel = np.abs(got - want) / np.abs(want)
    assert np.isfinite(got).all()
    assert rel.max() < bound, f"max relative error {rel.max():.3g} at x = {x[int(rel.argmax())]:.9g}"
    assert torch.equal(perturb_mod._erfinv(-x), -perturb_mod._erfinv(x))  # odd exactly


# --- 4. statistics of the compiled path ------------------------------------------------------------

# Level 0: N^t(0.5, 2, 1.5) on 64 dims; levels 1-2: gated, with sigma ranges (mu = 0 so w / x = s).
STATS = LevelParams(
    level_dims=(64, 4, 4),
    mu=(0.5, 0.0, 0.0),
    sigma=(2.0, 0.5, 1.0),
    sigma_max=(2.0, 1.5, 1.0),
    t=(1.5, 2.0, INF),
    p=(1.0, 0.3, 0.7),
)
STATS_B = 2048


@pytest.fixture(scope="module")
def compiled_stats():
    draws = Stream(21, rank=1, purpose="views").at(5)
    ctr = counters(draws)
    positives, norms = perturb(torch.zeros(STATS_B, sum(STATS.level_dims)), STATS, draws, impl="compiled")
    return positives.double(), norms.double(), ctr  # z = 0: positives are w


def test_compiled_is_the_truncated_normal(compiled_stats):
    """Level 0's 131072 values are scipy.stats.truncnorm(a=-t, b=t, loc=mu, scale=sigma) (KS test),
    and never leave [mu - t sigma, mu + t sigma]."""
    w, _, _ = compiled_stats
    x = w[:, :64].reshape(-1).numpy()
    mu, sigma, t = 0.5, 2.0, 1.5
    assert stats.kstest(x, stats.truncnorm(a=-t, b=t, loc=mu, scale=sigma).cdf).pvalue > P_MIN
    assert np.abs(x - mu).max() <= t * sigma * (1 + 1e-6)


def test_compiled_gates_and_sigma_ranges(compiled_stats):
    """Gated levels are perturbed in a fraction p of the samples (binomial, 5 standard deviations),
    and the scale w / x recovered with the reference normals lies in [sigma, sigma_max] and is uniform there."""
    w, norms, ctr = compiled_stats
    x = torch.from_numpy(expected(torch.zeros(STATS_B, 72), STATS, *ctr).x)
    for i, start in ((1, 64), (2, 68)):
        p, lo, hi = STATS.p[i], STATS.sigma[i], STATS.sigma_max[i]
        on = (w[:, start : start + 4] != 0).any(dim=1)
        assert torch.equal(on, norms[:, i] > 0)
        assert abs(float(on.double().mean()) - p) < 5 * math.sqrt(p * (1 - p) / STATS_B)
        scale = (w[on, start : start + 4] * x[on, start : start + 4]).sum(1) / (x[on, start : start + 4] ** 2).sum(1)
        assert float(scale.min()) >= lo * (1 - 1e-5) and float(scale.max()) <= hi * (1 + 1e-5)
        if hi > lo:
            assert stats.kstest(scale.numpy(), stats.uniform(loc=lo, scale=hi - lo).cdf).pvalue > P_MIN
        else:
            np.testing.assert_allclose(scale.numpy(), lo, rtol=1e-5)


# --- 5. Draws bookkeeping ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["equal", "equal-multi"])
@pytest.mark.parametrize("impl", IMPLS)
def test_each_call_claims_its_draws(impl, case):
    """A call claims params.draws_used indices (3 with gates or sigma ranges), so the next call draws
    new numbers from c1 = draws_used; a fresh Draws of the same (seed, rank, step) repeats the first
    call exactly, and the torch path gates the same (sample, level) pairs from it."""
    params = CASES[case]
    z = anchors(1, 120, seed=5)
    draws = Stream(8, rank=2).at(4)
    first = run(z, params, draws, impl)
    assert draws.index == params.draws_used
    second = run(z, params, draws, impl)
    assert draws.index == 2 * params.draws_used
    assert not torch.allclose(first[0], second[0])
    assert_matches(*second, expected(z, params, draws.k0, draws.k1, params.draws_used, 4, 2), params)
    again = run(z, params, Stream(8, rank=2).at(4), impl)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    reference = run(z, params, Stream(8, rank=2).at(4), "torch")
    assert torch.equal(first[1] == 0, reference[1] == 0)
    torch.testing.assert_close(first[0], reference[0], rtol=1e-5, atol=1e-5 * max(params.sigma_max))


@pytest.mark.parametrize("impl", IMPLS)
def test_rank_step_seed_and_purpose_give_other_views(impl):
    """Changing any part of the key or counters (rank, step, seed, purpose) changes w."""
    z = anchors(1, 120)
    base = run(z, EQUAL, Stream(8, rank=0).at(4), impl)[0]
    for other in (Stream(8, rank=1).at(4), Stream(8, rank=0).at(5), Stream(9).at(4), Stream(8, purpose="x").at(4)):
        assert not torch.allclose(run(z, EQUAL, other, impl)[0], base)


def test_auto_on_cpu_runs_compiled():
    """impl="auto" on CPU tensors is the compiled path, bit for bit (the torch path's erfinv differs)."""
    z = anchors(1, 120)
    auto = perturb(z, EQUAL_MULTI, Stream(8).at(4), impl="auto")
    compiled = perturb(z, EQUAL_MULTI, Stream(8).at(4), impl="compiled")
    torch_path = perturb(z, EQUAL_MULTI, Stream(8).at(4), impl="torch")
    assert torch.equal(auto[0], compiled[0]) and torch.equal(auto[1], compiled[1])
    assert not torch.equal(auto[0], torch_path[0])


# --- 6. bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 119), (2, 121), (120,), (2, 1, 120)])
@pytest.mark.parametrize("impl", ["auto", "torch", "compiled", "triton"])
def test_latents_of_the_wrong_shape(impl, shape):
    """z must be (B, sum(level_dims)); the error comes before any draw is claimed."""
    draws = Stream(0).at(0)
    with pytest.raises(InputError, match=r"\(B, 120\)"):
        perturb(torch.zeros(shape), EQUAL, draws, impl=impl)
    assert draws.index == 0
    with pytest.raises(InputError, match=r"\(B, 120\)"):
        perturb_reference(torch.zeros(shape), EQUAL, torch.Generator())


def test_perturb_needs_draws_and_the_reference_takes_a_generator():
    """perturb reproduces counter-based streams only; perturb_reference draws from a torch.Generator
    (or torch's global one) with the same shapes, the same zero levels and consistent norms."""
    z = anchors(64, 16)
    for source in (torch.Generator().manual_seed(0), None, 7):
        with pytest.raises(InputError, match="Draws"):
            perturb(z, UNEQUAL_MULTI, source)
    a = perturb_reference(z, UNEQUAL_MULTI, torch.Generator().manual_seed(0))
    b = perturb_reference(z, UNEQUAL_MULTI, torch.Generator().manual_seed(0))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    positives, norms = a
    assert positives.shape == (64, 16) and norms.shape == (64, 3)
    w = positives - z
    assert torch.equal(w[:, 3:11], torch.zeros(64, 8)) and torch.equal(norms[:, 1], torch.zeros(64))
    for i, cols in ((0, slice(0, 3)), (2, slice(11, 16))):
        torch.testing.assert_close(norms[:, i], w[:, cols].norm(dim=1), rtol=1e-5, atol=1e-5)
    on = norms[:, 2] > 0
    assert 0 < int(on.sum()) < 64  # p = 0.3
    assert float((w[on, 11:16]).abs().max()) <= 1.5 * 1.0 + 1e-5  # |w| <= t sigma on the gated level
    assert perturb_reference(z, UNEQUAL_MULTI)[0].shape == (64, 16)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"mu": (0.0, 0.0)}, "mu has 2 entries for 3 levels"),
        ({"p": (1.0,) * 4}, "p has 4 entries for 3 levels"),
        ({"t": ()}, "t has 0 entries"),
        ({"sigma": (1.0, 0.0, 2.5)}, "level 3: need 0 <= sigma <= sigma_max"),
        ({"sigma": (-0.5, 0.0, 2.0), "sigma_max": (0.5, 0.0, 2.0)}, "level 1: need 0 <= sigma"),
        ({"t": (INF, 0.0, 1.5)}, "level 2: truncation t must be > 0"),
        ({"t": (INF, -1.0, 1.5)}, "truncation t must be > 0"),
        ({"t": (INF, float("nan"), 1.5)}, "truncation t must be > 0"),
        ({"p": (1.0, 1.0, -0.1)}, "level 3: probability p must be in"),
        ({"p": (1.5, 1.0, 1.0)}, "level 1: probability p must be in"),
        ({"p": (float("nan"), 1.0, 1.0)}, "probability p must be in"),
        ({"mu": (float("nan"), 0.0, 0.0)}, "level 1: mu and sigma_max must be finite"),
        ({"sigma_max": (INF, 0.0, 2.0)}, "mu and sigma_max must be finite"),
        ({"level_dims": (3, 0, 5)}, "level_dims must be one or more positive ints"),
    ],
)
def test_bad_level_params(change, match):
    fields = {name: getattr(UNEQUAL, name) for name in ("level_dims", "mu", "sigma", "sigma_max", "t", "p")}
    with pytest.raises(InputError, match=match):
        LevelParams(**{**fields, **change})


def test_triton_on_cpu_without_the_interpreter_raises(monkeypatch):
    """Without TRITON_INTERPRET=1 the kernel cannot take CPU tensors: an InputError, no draw claimed."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    draws = Stream(0).at(0)
    with pytest.raises(InputError, match="needs CUDA tensors"):
        perturb(anchors(1, 16), UNEQUAL, draws, impl="triton")
    with pytest.raises(InputError, match="unknown impl"):
        perturb(anchors(1, 16), UNEQUAL, draws, impl="cuda")
    assert draws.index == 0


# --- 7. GPU --------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_compile_caches():
    """The compiled CPU path at B = 1024 from empty caches, as in a fresh training process."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.gpu
def test_triton_on_gpu_matches_compiled_on_cpu(fresh_compile_caches):
    """On CUDA the Triton kernel (also what impl="auto" runs there) gives the compiled CPU path's views
    of the same (seed, rank, step): the same gates, values within float32 rounding."""
    params = EQUAL_MULTI
    z = anchors(1024, 120, seed=3)
    stream = Stream(17, rank=3, purpose="views")
    gpu = [t.cpu() for t in perturb(z.cuda(), params, stream.at(9), impl="triton")]
    auto = [t.cpu() for t in perturb(z.cuda(), params, stream.at(9), impl="auto")]
    cpu = perturb(z, params, stream.at(9), impl="compiled")
    assert torch.equal(gpu[0], auto[0]) and torch.equal(gpu[1], auto[1])
    assert torch.equal(gpu[1] == 0, cpu[1] == 0)
    atol = 1e-5 * max(params.sigma_max)
    torch.testing.assert_close(gpu[0], cpu[0], rtol=1e-5, atol=atol)
    torch.testing.assert_close(gpu[1], cpu[1], rtol=1e-5, atol=atol)
