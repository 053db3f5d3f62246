"""What every view strategy T_z shares: `Views(anchors, positives, norms)`, the batch a strategy returns, and
`LevelNoise`, one level's random perturbation. The strategies are plug-ins, one file each in mlvgm/strategies/:

- `none` (NoViews): z' = z; the two views of a pair differ only by T_x in pixel space.
- `random` (RandomViews, Jahanian et al. 2021, per level as in the paper's section 3.2): w_i ~ N^t(mu_i,
  sigma_i, t_i) on the chosen levels, through the fused kernel mlvgm.kernels.perturb.
- `learned` (LearnedViews, Li et al. 2022): the walkers mlvgm.quantify trained.

mlvgm.views documents them and re-exports them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch import Tensor

from mlvgm.errors import InputError

LevelSelection = int | str | Iterable[int | str] | None


@dataclass
class Views:
    """A batch of anchor/positive latent pairs."""

    anchors: list[Tensor]  # per level (B, d_i)
    positives: list[Tensor]  # per level (B, d_i)
    norms: Tensor  # (B, n_levels): ||positive_i - anchor_i||_2, 0 on untouched levels


@dataclass(frozen=True)
class LevelNoise:
    """Per-coordinate perturbation w ~ N^t(mu, sigma, t) of one level, optionally applied with
    probability p per sample and with sigma drawn per sample from U(sigma, sigma_max) (multi-level option)."""

    sigma: float  # standard deviation (>= 0); the lower end of the range when sigma_max is set
    mu: float = 0.0  # mean
    t: float | None = 2.0  # truncation in units of sigma (> 0), None = untruncated
    sigma_max: float | None = None  # upper end of a per-sample sigma range; None = fixed sigma
    p: float = 1.0  # probability that a sample's level is perturbed at all

    def __post_init__(self) -> None:
        if not self.sigma >= 0:
            raise InputError(f"sigma must be >= 0, got {self.sigma}: use a non-negative standard deviation")
        if self.t is not None and not self.t > 0:
            raise InputError(f"truncation t must be > 0 (in units of sigma), got {self.t}: use None for no truncation")
        if self.sigma_max is not None and not self.sigma_max >= self.sigma:
            raise InputError(f"sigma_max must be >= sigma ({self.sigma}), got {self.sigma_max}")
        if not 0 <= self.p <= 1:
            raise InputError(f"probability p must be in [0, 1], got {self.p}")
