"""Positive views in latent space, T_z: the `none` and `random` strategies, and Figure-4 view grids.

    anchors z = (z_1, ..., z_n)  ->  positives z' = (z_1 + w_1, ..., z_n + w_n)

- `none`: z' = z. The two views of a pair differ only by what T_x does in pixel space (the paper's
  "synth" baseline).
- `random` (Jahanian et al. 2021, applied per level as in the paper's section 3.2): on each chosen
  level i, w_i ~ N^t(mu_i, sigma_i, t_i) per coordinate, truncated at t_i standard deviations; the
  other levels are left alone (w_i = 0). Optionally each level of a sample is perturbed with
  probability p and its sigma drawn from a range (the multi-level option); the batch runs through the
  fused kernel mlvgm.kernels.perturb.
- `learned` (Li et al. 2022): the walkers mlvgm.quantify trained, T_i(z_i) = z_i + p(z_i; phi_i).

Every strategy returns `Views(anchors, positives, norms)`, with norms[b, i] = ||z'_i - z_i||_2, the
per-level perturbation magnitude that the paper's Table 1 summarises. The strategies live in
mlvgm.view_strategies and the Figure-4 sweep in mlvgm.view_grids (drawn by `python -m mlvgm.grid`); their names
import from here too, loaded on first use.
"""

from __future__ import annotations

from mlvgm.lazy import lazy_exports

_EXPORTS = {
    "Views": "mlvgm.view_strategies",
    "LevelNoise": "mlvgm.view_strategies",
    "NoViews": "mlvgm.strategies.none",
    "RandomViews": "mlvgm.strategies.random",
    "LearnedViews": "mlvgm.strategies.learned",
    "LevelSelection": "mlvgm.view_strategies",
    "ViewGrid": "mlvgm.view_grids",
    "level_sweep": "mlvgm.view_grids",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
