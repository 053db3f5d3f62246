"""What the commands' options choose from, and the checks they need, without torch.

A command parses and checks its arguments with these before it imports the model stack, so a mistyped
option costs a fraction of a second, not the five seconds torch takes to load. The modules that implement
each choice (mlvgm.augment, the kernels' dispatch, mlvgm.probes, mlvgm.generators) take
their names from here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from mlvgm.errors import InputError
from mlvgm.io import check_regular_file

ARCHS = ("resnet18", "resnet50")
AUGMENTS = ("simclr", "no_color", "no_crop", "none")  # the T_x presets of mlvgm.augment
KERNEL_IMPLS = ("auto", "torch", "compiled", "triton")  # InfoNCE and perturbation kernels (mlvgm.kernels)

CHECKPOINT_GENERATORS = ("stylegan2", "bigbigan")  # built-in generators whose spec argument is a path
BUILT_IN_WORLDS = ("shapes", "embedded")  # built-in generators that need no checkpoint: their argument is options
HVAE_LIKELIHOODS = ("gaussian", "logistic_mixture")  # the embedded VAE's (mlvgm.generators.likelihoods)
HVAE_LEVELS = 5  # latent levels of the embedded VAE that python -m mlvgm.zoo.train builds

# Weight decays the linear probe chooses from (decades: the optimum of a convex problem moves smoothly), and
# the share of the train features held out to choose it. In scikit-learn's terms C = 1 / (wd x n_train):
# 1e-5..1e-1 spans C from about 25 to 0.0025 at 4,000 images, around the values a 20% split picks there.
PROBE_WEIGHT_DECAYS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
PROBE_VAL_SHARE = 0.2


def check_probe_options(weight_decays: Sequence[float], val_share: float) -> None:
    """InputError unless the grid is one or more finite values >= 0 and the validation share is in (0, 1)."""
    if not weight_decays or any(not (math.isfinite(w) and w >= 0) for w in weight_decays):
        raise InputError(f"probe_weight_decays must be one or more finite values >= 0, got {tuple(weight_decays)}")
    if not (math.isfinite(val_share) and 0 < val_share < 1):
        raise InputError(f"probe_val_share must be between 0 and 1 (exclusive), got {val_share}")


def generator_spec(name: str, checkpoint: str = "") -> str:
    """The spec of a config's `generator` and `checkpoint` keys: NAME, or NAME:PATH when a checkpoint is
    given (it must exist); the checkpoint generators refuse to run without one."""
    if not checkpoint:
        if name in CHECKPOINT_GENERATORS:
            raise InputError(
                f"the {name} generator needs its weights: pass --checkpoint PATH "
                "(BigBiGAN_x1.pth or an NVIDIA StyleGAN2 .pkl)"
            )
        return name
    if name in BUILT_IN_WORLDS:
        raise InputError(
            f"the {name} generator takes no checkpoint: drop --checkpoint (only "
            f"{' and '.join(CHECKPOINT_GENERATORS)} load weights)"
        )
    if Path(checkpoint).is_dir():
        raise InputError(f"checkpoint {checkpoint} is a folder: give the weights file inside it")
    if not Path(checkpoint).exists():
        raise InputError(f"checkpoint {checkpoint} does not exist: give the path of the generator's weights")
    check_regular_file(checkpoint, what="checkpoint", fix="give the path of the generator's weights file")
    return f"{name}:{checkpoint}"


# The sigmas `python -m mlvgm.audit` sweeps by default: 1/16 to 64, doubling, so that each level of the shapes world
# runs from a change under 1/255 to positives mostly saturated (results/quantify/shapes/audit).
AUDIT_SIGMAS = tuple(2.0**k for k in range(-4, 7))
