"""Quantify each latent's influence (paper section 3.1, eq. 5; Table 1).

For each unit k (a level, or a group of levels) a walker T_k(z_k) = z_k + p(z_k) is trained against
its own InfoNCE critic f_k: the critic minimises InfoNCE between g(z) and g(.., T_k(z_k), ..), the
walker maximises it (one backward pass; the walker's gradient is reversed). A unit stops when the
smoothed InfoNCE reaches gamma after `min_samples`; one that never does within `max_samples` is
flagged: a walker that pushes ever harder without moving InfoNCE has found a latent the generator
barely uses. Then Monte Carlo over fresh anchors gives mu_k and sigma_k of ||T_k(z_k) - z_k||.

All units train in one run (`joint=True`): every step draws the anchors and renders g(z) once and
shares them, where the paper's code ran one level at a time. A walker stays at T = identity until its
critic has brought InfoNCE below gamma (a fresh critic starts near log(2B - 1)): only then does a rise
back to gamma measure the walker's work. The verdicts (over-used, normal, under-used, or undetermined
with the reason and, where the budget ran out on the way, the budget that would get there) follow the
rule written down in mlvgm.verdicts.

    table = mlvgm.quantify(load_generator("shapes"), gamma=1.0)      # a pandas.DataFrame
    python -m mlvgm.quantify --generator shapes --out results/quantify/shapes

InfoNCE is reported raw and in the paper's convention (its code logs SupCon with base temperature
0.07: x tau / 0.07, 1.43 at tau = 0.1), so values compare with Table 1.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence

from mlvgm.cli import run as run_cli
from mlvgm.config import parse_config
from mlvgm.io import check_creatable
from mlvgm.lazy import lazy_exports
from mlvgm.options import generator_spec
from mlvgm.quantify_config import CRITICS, PRESETS, QuantifyConfig

# The implementation's names, served from mlvgm.quantification on first use (PEP 562): the command's arguments
# are checked before torch loads, and `from mlvgm.quantify import run` keeps working.
_IMPLEMENTATION = ("quantify", "run", "train_walkers", "write_outputs", "suggested_views", "table_markdown",
                   "quantify_command", "QuantifyResult", "SUPCON_BASE_TEMPERATURE")  # fmt: skip
__all__ = ["CRITICS", "PRESETS", "QuantifyConfig", "main", *_IMPLEMENTATION]


def main(argv: Sequence[str] | None = None) -> object:
    config, _, args = parse_config(
        QuantifyConfig, PRESETS, argv, prog="python -m mlvgm.quantify", default_preset="paper",
        description="Quantify each latent level's influence (the paper's Table 1): adversarial walkers "
        "against InfoNCE critics until InfoNCE reaches gamma, then Monte Carlo of the perturbation norms.",
    )  # fmt: skip
    if config.out:
        check_creatable(config.out)  # created when the results are written: bad input leaves no folder
    spec = generator_spec(config.generator, config.checkpoint)
    from mlvgm.quantification import quantify_command  # torch loads only now, once the arguments have passed

    return quantify_command(config, spec, preset=args.preset)


__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(_IMPLEMENTATION, "mlvgm.quantification"))


class _CallableModule(types.ModuleType):
    """`mlvgm.quantify(g, ...)` calls `quantify` whether the name resolves to this module or the function."""

    def __call__(self, *args, **kwargs):
        return self.quantify(*args, **kwargs)  # the implementation's, through __getattr__


sys.modules[__name__].__class__ = _CallableModule


if __name__ == "__main__":
    sys.exit(run_cli(main, "python -m mlvgm.quantify"))
