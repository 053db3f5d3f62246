"""`python -m mlvgm.zoo.control`: the positive control for quantification's under-used verdict (docs/embedded.md).

    python -m mlvgm.zoo.control --out results/embedded/control --runs runs/zoo/control

trains `--seeds` variants of the embedded VAE whose level `--level` has its KL weighed `--weight` times in the
loss, so that the VAE leaves it (nearly) unused; quantifies each with its own seed and Table 1's settings on the
embedded VAE; and sets quantification's verdicts against the VAE's per-level KL by the rules fixed before the
runs: the level is collapsed by KL (under 1 nat per image, every other level over), and quantification calls
it, and only it, under-used. The ordering test (mu per coordinate against each level's RMS gain) is reported
beside it. A variant already trained, or quantified, is reused, and an interrupted training resumes.

OUT gets README.md (the command, hardware, commit and every number), control.json, control.csv (one row per
variant and level) and control.png. The arguments are checked before torch loads; the work is
mlvgm.zoo.control_runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from mlvgm.cli import run
from mlvgm.config import parse_config
from mlvgm.io import check_creatable
from mlvgm.zoo.configs import ControlConfig

__all__ = ["ControlConfig", "main"]


def main(argv: Sequence[str] | None = None) -> dict:
    config, _, _ = parse_config(
        ControlConfig, None, argv, prog="python -m mlvgm.zoo.control",
        description="The positive control for under-used: VAEs with one level collapsed by design, quantified.",
    )  # fmt: skip
    check_creatable(config.out)
    check_creatable(config.runs, flag="--runs")
    from mlvgm.zoo.control_runs import control  # loads torch: only once the arguments have passed

    return control(config)


if __name__ == "__main__":
    raise SystemExit(run(main, "mlvgm.zoo.control"))
