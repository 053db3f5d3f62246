"""Counter-based random streams keyed by (seed, rank, step, purpose).

Every random number mlvgm draws on a hot path comes from Philox4x32-10 (Salmon et al., "Parallel
random numbers: as easy as 1, 2, 3", SC 2011), evaluated with torch integer ops on the device that
will use the numbers. A counter-based generator has no state to carry: the numbers for a key are a
pure function of that key, so

- the batch at step s on rank r is the same on every rerun (same key, same numbers);
- a run resumed at step s draws exactly what the uninterrupted run drew at step s (no state to restore);
- ranks, steps and purposes never share numbers (they occupy different Philox counters or keys).

Layout of one draw, so that a Triton kernel can reproduce it with `tl.philox(key, c0, c1, c2, c3)`:

    key (64 bit) = blake2b(seed, purpose)          -> (k0, k1) = (low, high) 32-bit words
    c0           = block index within the draw      (each block yields 4 uint32 words)
    c1           = draw index within the step       (0 for the first tensor drawn at a step, 1 ...)
    c2           = step
    c3           = rank

The output words of block b are elements 4b .. 4b+3 of the draw, in order.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

import torch

from mlvgm.errors import InputError, check_nonnegative_int

_MASK32 = 0xFFFFFFFF
# Philox4x32 constants (Random123; identical in Triton's triton.language.random).
_ROUND_A = 0xD2511F53
_ROUND_B = 0xCD9E8D57
_KEY_A = 0x9E3779B9
_KEY_B = 0xBB67AE85
_ROUNDS = 10


def _mulhilo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) 32-bit words of the 64-bit product a * b, for a constant a < 2**32, b in int64 < 2**32.

    The product can pass 2**63; int64 multiplication wraps modulo 2**64, which keeps all 64 bits of it,
    and the masks read the two words back whatever the sign. Three ops per product, which inductor
    vectorises (tests check every word against Random123's answers and a Python-int Philox).
    """
    p = a * b
    return (p >> 32) & _MASK32, p & _MASK32


def philox4x32(
    c0: torch.Tensor,  # (...) int64 holding uint32 counter words; the other counters broadcast
    c1: torch.Tensor | int,
    c2: torch.Tensor | int,
    c3: torch.Tensor | int,
    k0: int | torch.Tensor,  # low 32 bits of the key (a 0-d int64 tensor keeps torch.compile general)
    k1: int | torch.Tensor,  # high 32 bits of the key
    rounds: int = _ROUNDS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Philox4x32-`rounds` on int64 tensors holding uint32 values; returns the four output words."""
    c0 = c0 & _MASK32
    c1 = (torch.as_tensor(c1, dtype=torch.int64, device=c0.device) & _MASK32).expand_as(c0)
    c2 = (torch.as_tensor(c2, dtype=torch.int64, device=c0.device) & _MASK32).expand_as(c0)
    c3 = (torch.as_tensor(c3, dtype=torch.int64, device=c0.device) & _MASK32).expand_as(c0)
    for _ in range(rounds):
        hi0, lo0 = _mulhilo(_ROUND_A, c0)
        hi2, lo2 = _mulhilo(_ROUND_B, c2)
        c0, c1, c2, c3 = hi2 ^ c1 ^ k0, lo2, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + _KEY_A) & _MASK32
        k1 = (k1 + _KEY_B) & _MASK32
    return c0, c1, c2, c3


def key_for(seed: int, purpose: str) -> int:
    """The 64-bit Philox key of (seed, purpose): stable across Python versions and machines."""
    digest = hashlib.blake2b(f"mlvgm:{seed}:{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@dataclass(frozen=True)
class Stream:
    """A family of independent random draws, one per step: `stream.at(step)`.

    seed:    the run's seed (any integer >= 0)
    rank:    the distributed rank (each rank gets its own numbers)
    purpose: what the numbers are for ("latents", "views", "augment", ...); different purposes
             are independent even with the same seed, rank and step
    """

    seed: int
    rank: int = 0
    purpose: str = "latents"
    key: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_nonnegative_int("seed", self.seed)
        check_nonnegative_int("rank", self.rank)
        if self.rank > _MASK32:
            raise InputError(f"rank must be < 2**32, got {self.rank}")
        if not isinstance(self.purpose, str) or not self.purpose:
            raise InputError(f"purpose must be a non-empty string, got {self.purpose!r}")
        object.__setattr__(self, "key", key_for(self.seed, self.purpose))

    def at(self, step: int) -> Draws:
        """The draws of one step. Calling it twice with the same step gives the same numbers."""
        check_nonnegative_int("step", step)
        if step > _MASK32:
            raise InputError(f"step must be < 2**32, got {step}")
        return Draws(self.key, step=step, rank=self.rank)


# Draws of at least this many words run the compiled Philox: one vectorised loop (one kernel on CUDA) for
# the 10 rounds' ~140 small integer ops, about 4x faster than eager at a few hundred words and more above;
# below, compiling buys little and would compile for every small shape in tests.
COMPILE_MIN_WORDS = 512


def philox_blocks(blocks: torch.Tensor, counters: torch.Tensor) -> torch.Tensor:
    """(n_blocks, 4) int64 words of the blocks `blocks` under counters = (k0, k1, c1, c2, c3), a (5,) int64
    tensor: the key and counters as tensors, so that one compiled loop serves every step and rank."""
    k0, k1, c1, c2, c3 = counters.unbind()
    return torch.stack(philox4x32(blocks, c1, c2, c3, k0, k1), dim=1)


@functools.cache
def compiled_philox_blocks():
    """philox_blocks under torch.compile. A second shape turns on dynamic shapes (torch's default), so a run
    compiles it about twice per device whatever its batch sizes."""
    return torch.compile(philox_blocks, fullgraph=True)


def philox_words(counters: torch.Tensor, n: int) -> torch.Tensor:
    """(n,) words of the draw keyed by counters = (k0, k1, c1, c2, c3) on their device, by the compiled loop."""
    blocks = torch.arange((n + 3) // 4, dtype=torch.int64, device=counters.device)
    return compiled_philox_blocks()(blocks, counters).reshape(-1)[:n]


def words_at(k0, k1, c1, c2, c3, n: int, device=None, *, compiled: bool | None = None) -> torch.Tensor:
    """(n,) int64 words of the draw with counters (c1, c2, c3) under key (k0, k1): block b gives words 4b..4b+3.

    The key and counters may be ints or 0-d int64 tensors (tensors keep torch.compile from specialising
    on the step). compiled: run the compiled Philox (bit-identical); None = for ints and n >=
    COMPILE_MIN_WORDS, unless this call is itself being traced by torch.compile (then the ops join that graph).
    """
    if compiled is None:
        plain = all(isinstance(x, int) for x in (k0, k1, c1, c2, c3))
        compiled = plain and n >= COMPILE_MIN_WORDS and not torch.compiler.is_compiling()
    if compiled:
        counters = torch.tensor([k0, k1, c1, c2, c3], dtype=torch.int64, device=device)
        return philox_words(counters, n)
    blocks = (n + 3) // 4
    c0 = torch.arange(blocks, dtype=torch.int64, device=device)
    words = philox4x32(c0, c1, c2, c3, k0, k1)
    return torch.stack(words, dim=1).reshape(-1)[:n]  # (4 * blocks,) -> (n,)


class Draws:
    """Random tensors for one (key, step, rank): the k-th tensor drawn uses Philox counter c1 = k.

    Draw tensors in a fixed order (the same code path draws the same sequence), and the numbers
    are reproducible; a fresh `stream.at(step)` starts again from the first tensor.
    """

    def __init__(self, key: int, *, step: int, rank: int) -> None:
        self.k0 = key & _MASK32
        self.k1 = (key >> 32) & _MASK32
        self.step = step
        self.rank = rank
        self.index = 0  # c1 of the next draw

    def uint32(self, n: int, device: torch.device | str | None = None) -> torch.Tensor:
        """(n,) int64 tensor of uniform 32-bit words on `device`."""
        return words_at(self.k0, self.k1, self.reserve(), self.step, self.rank, n, device)

    def reserve(self, count: int = 1) -> int:
        """Claim the next `count` draw indices for a kernel that draws itself; returns the first (its c1)."""
        first = self.index
        self.index += count
        return first

    def __repr__(self) -> str:
        return f"Draws(step={self.step}, rank={self.rank}, next_index={self.index})"
