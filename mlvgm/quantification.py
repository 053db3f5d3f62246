"""Quantification's implementation (torch): the walkers against their InfoNCE critics, the Monte Carlo of
mu and sigma, the verdicts and the outputs. `python -m mlvgm.quantify` and `mlvgm.quantify(g)` (mlvgm.quantify,
torch-free, with the config) describe the method and call it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from mlvgm.cli import resolve_device
from mlvgm.encoders import backbone, mlp
from mlvgm.errors import InputError
from mlvgm.generators import load_generator
from mlvgm.generators.base import device_of, sample_anchors
from mlvgm.hostmem import retain_freed_memory
from mlvgm.io import atomic_write_json, atomic_write_text
from mlvgm.losses import info_nce
from mlvgm.plots import walker_dynamics
from mlvgm.progress import Progress
from mlvgm.provenance import provenance, provenance_line
from mlvgm.quantify_config import QuantifyConfig
from mlvgm.streams import Stream
from mlvgm.testing import check_mlvgm
from mlvgm.verdicts import CRITIC_NEVER_LEARNT, ZERO_GRADIENT, advice, judge
from mlvgm.view_calibration import calibrate, kept_units
from mlvgm.walkers import LevelWalkers, monte_carlo

SUPCON_BASE_TEMPERATURE = 0.07  # the paper's code (SupCon) scales its logged loss by tau / 0.07


# --- the critic -------------------------------------------------------------------------------------


class Critic(nn.Module):
    """f = head(backbone(x)): the InfoNCE critic of one unit (SupCon-style ResNet, 512 -> 512 -> 128)."""

    def __init__(self, arch: str, proj_hidden: int, proj_dim: int) -> None:
        super().__init__()
        if arch == "tiny":  # four convolutions: for tests and quick looks, not for Table 1
            self.backbone = nn.Sequential(
                nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, stride=2, padding=1),
                nn.ReLU(), nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(64, 128, 3, padding=1),
                nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            )  # fmt: skip
            features = 128
        else:
            self.backbone, features = backbone(arch, small_stem=True)
        self.head = mlp([features, proj_hidden, proj_dim], bn=False)

    def forward(self, x: Tensor) -> Tensor:  # (B, 3, H, W) in [0, 1] -> (B, proj_dim)
        return self.head(self.backbone(2 * x - 1))


# --- training ---------------------------------------------------------------------------------------


@dataclass
class UnitState:
    """One unit's walker training: its optimisers, its smoothed InfoNCE and why it stopped."""

    k: int
    label: str
    critic: Critic
    opt_walk: torch.optim.Optimizer
    opt_critic: torch.optim.Optimizer
    samples: int = 0
    ema: float | None = None
    last: float = float("nan")
    stop: str = ""  # "", "gamma", "budget", "diverged: ..."
    armed: bool = False  # the critic has brought InfoNCE below gamma once: a rise back to gamma counts
    moved: bool = False  # the walker has had a non-zero gradient: the images depend on the unit at all


@dataclass
class QuantifyResult:
    table: object  # pandas.DataFrame, one row per unit
    dynamics: object  # pandas.DataFrame: unit, step, samples, infonce, infonce_ema, norm
    walkers: LevelWalkers
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # training, monte carlo


def _units(g, config: QuantifyConfig) -> list | None:
    if config.single or not config.levels:
        return None
    return [int(level) if level.isdigit() else level for level in config.levels]


def _step_unit(g, walkers: LevelWalkers, state: UnitState, anchors: list[Tensor], images: Tensor,
               config: QuantifyConfig) -> tuple[float, float, bool]:  # fmt: skip
    """One adversarial step of unit k: critic down InfoNCE, walker up it. Returns (InfoNCE, mean ||w||,
    whether the walker's gradient was non-zero)."""
    k = state.k
    positives = walkers.perturb(anchors, k)
    views = g(positives)  # (B, 3, H, W), differentiable w.r.t. the walker
    features = state.critic(torch.cat([images, views]))
    loss = info_nce(*features.chunk(2), config.temperature, impl=config.kernels)
    state.opt_walk.zero_grad(set_to_none=True)
    state.opt_critic.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad for p in walkers.walkers[k].parameters() if p.grad is not None]
    for grad in grads:  # the walker ascends the critic's loss
        grad.neg_()
    has_grad = state.moved or any(bool(grad.any()) for grad in grads)  # checked until it first holds
    state.opt_critic.step()
    if state.armed:  # the walker waits at T = identity until the critic has learnt the task (InfoNCE < gamma)
        state.opt_walk.step()
    with torch.no_grad():  # ||T_k(z_k) - z_k|| from the positives already made, not a second walker pass
        moved = walkers.unit_latent(positives, k) - walkers.unit_latent(anchors, k)
        norm = moved.norm(dim=1).mean()
    return float(loss.detach()), float(norm), has_grad


def _finite(module: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def train_walkers(
    g, config: QuantifyConfig, *, progress: bool = True
) -> tuple[LevelWalkers, list[UnitState], list[dict]]:
    """Adversarial training of every unit's walker (joint or one after another); the dynamics as rows."""
    device = device_of(g)
    g.eval().requires_grad_(False)
    torch.manual_seed(config.seed)
    walkers = LevelWalkers(g, _units(g, config), single=config.single, hidden=config.hidden or None,
                           seed=config.seed).to(device)  # fmt: skip
    states = []
    for k, label in enumerate(walkers.labels):
        critic = Critic(config.critic, config.proj_hidden, config.proj_dim).to(device)
        betas = (config.beta1, 0.999)
        states.append(UnitState(
            k, label, critic, torch.optim.Adam(walkers.walkers[k].parameters(), lr=config.lr_walk, betas=betas),
            torch.optim.Adam(critic.parameters(), lr=config.lr_critic, betas=betas),
        ))  # fmt: skip
    anchors_stream = Stream(config.seed, purpose="quantify-anchors")
    rows: list[dict] = []
    steps_per_unit = math.ceil(config.max_samples / config.batch_size)
    schedule = [states] if config.joint else [[s] for s in states]
    total = steps_per_unit * len(states)
    bar = Progress(total, desc="walkers", unit="step", enabled=progress)
    step = 0
    for group in schedule:
        unit_step = 0
        while any(not s.stop for s in group):
            anchors = sample_anchors(g, config.batch_size, truncation=config.truncation,
                                     generator=anchors_stream.at(step))  # fmt: skip
            with torch.no_grad():
                images = g(anchors)  # rendered once, shared by every unit of the group
            active = [state for state in group if not state.stop]
            for state in active:
                value, norm, state.moved = _step_unit(g, walkers, state, anchors, images, config)
                state.samples += config.batch_size
                state.last = value
                if not (math.isfinite(value) and math.isfinite(norm)) or not _finite(walkers.walkers[state.k]):
                    state.stop = "diverged: non-finite InfoNCE or walker weights"
                    continue
                state.ema = (
                    value if state.ema is None else config.smoothing * state.ema + (1 - config.smoothing) * value
                )
                if unit_step % config.log_every == 0:
                    rows.append({"unit": state.label, "step": unit_step, "samples": state.samples, "infonce": value,
                                 "infonce_ema": state.ema, "norm": norm})  # fmt: skip
                # A fresh critic starts near log(2B - 1), above gamma: only a rise back to gamma after
                # the critic has got below it means the walker has done its work.
                state.armed = state.armed or state.ema < config.gamma
                if state.armed and state.samples >= config.min_samples and state.ema >= config.gamma:
                    state.stop = "gamma"
                elif not state.moved and state.samples >= config.min_samples:  # it never will move: stop now
                    state.stop = ZERO_GRADIENT
                elif state.samples >= config.max_samples:
                    state.stop = "budget" if state.armed else CRITIC_NEVER_LEARNT
            step += 1
            unit_step += 1
            stopped_early = sum(1 for s in active if s.stop) * (steps_per_unit - unit_step)
            if stopped_early:  # their unused budget leaves the total, so the time left stays honest
                bar.set_total(bar.total - stopped_early)
            bar.update(len(active), **{s.label: round(s.ema, 2) if s.ema is not None else "-" for s in group})
    bar.close()
    return walkers, states, rows


def run(g, config: QuantifyConfig, *, progress: bool = True) -> QuantifyResult:
    """Train the walkers, estimate mu and sigma by Monte Carlo, and give the verdicts (Table 1)."""
    check_mlvgm(g, n=2)  # a generator that breaks the protocol fails here, with the reason
    start = time.perf_counter()
    walkers, states, rows = train_walkers(g, config, progress=progress)
    trained = time.perf_counter() - start
    diverged = [s for s in states if s.stop.startswith("diverged")]
    if diverged:
        raise InputError(
            f"unit {diverged[0].label} {diverged[0].stop} after {diverged[0].samples} samples: lower lr_walk/lr_critic"
        )
    start = time.perf_counter()
    mc = monte_carlo(g, walkers, samples=config.mc_samples, batch_size=config.mc_batch,
                     truncation=config.truncation, seed=config.seed, progress=progress)  # fmt: skip
    table = pd.DataFrame({
        "level": [s.label for s in states],
        "levels": mc["levels"],
        "infonce": [s.ema for s in states],
        "loss_paper": [s.ema * config.temperature / SUPCON_BASE_TEMPERATURE for s in states],
        "mu": mc["mu"],
        "sigma": mc["sigma"],
        "ci95": mc["ci95"],
        "samples": [s.samples for s in states],
        "reached": [s.stop == "gamma" for s in states],
        "stop": [s.stop for s in states],
        "z_norm": mc["z_norm"],
    })  # fmt: skip
    dynamics = pd.DataFrame(rows, columns=["unit", "step", "samples", "infonce", "infonce_ema", "norm"])
    judged = judge(table, dynamics, config.gamma, batch_size=config.batch_size)
    table["verdict"] = [v.verdict for v in judged]
    table["reason"] = [v.reason for v in judged]
    table["mu_lower_bound"] = [v.mu_lower_bound for v in judged]
    table["suggested_samples"] = [v.suggested_samples or 0 for v in judged]
    table["suggestion_timed"] = [v.timed for v in judged]
    table["keep"] = [v.keep for v in judged]
    return QuantifyResult(table, dynamics, walkers,
                          {"training": trained, "monte_carlo": time.perf_counter() - start})  # fmt: skip


def quantify(
    generator,  # an MLVGM (mlvgm.generators.load_generator(spec), or your own)
    *,
    gamma: float = 1.0,
    max_samples: int = 200_000,
    batch_size: int = 64,
    mc_samples: int = 100_000,
    seed: int = 0,
    levels: Sequence[int | str] | None = None,
    progress: bool = True,
    **options,  # any other QuantifyConfig field (critic, lr_walk, min_samples, joint, ...)
):
    """Table 1 for `generator`: a pandas.DataFrame, one row per level (or group), with columns level,
    levels, infonce, loss_paper, mu, sigma, ci95, samples, reached, stop, z_norm (the unit's typical
    latent norm), verdict, reason, mu_lower_bound, suggested_samples (0: none) and keep (a candidate level
    for positive views; mlvgm.verdicts). The
    dynamics (InfoNCE and mean perturbation norm against samples) are in `table.attrs["dynamics"]`."""
    names = {f.name for f in dataclasses.fields(QuantifyConfig)}
    bad = sorted(set(options) - names)
    if bad:
        raise InputError(f"unknown quantify option {bad[0]!r}: see mlvgm.quantify.QuantifyConfig")
    config = QuantifyConfig(
        gamma=gamma, max_samples=max_samples, batch_size=batch_size, mc_samples=mc_samples, seed=seed,
        levels=tuple(str(level) for level in (levels or ())), min_samples=min(options.pop("min_samples", 20_000),
                                                                               max_samples), **options,
    )  # fmt: skip
    result = run(generator, config, progress=progress)
    result.table.attrs["dynamics"] = result.dynamics.to_dict("list")
    return result.table


# --- outputs -----------------------------------------------------------------------------------------


def suggested_views(g, result: QuantifyResult, config: QuantifyConfig) -> dict[str, object]:
    """A `python -m mlvgm.train --config` file: random views on the units phase one keeps (the `keep` column),
    each at the sigma the audit's rule picks (mlvgm.view_calibration), t = the anchors' truncation; {} when
    none is kept or none changes the image measurably."""
    units = kept_units(result.table)
    if not units:
        return {}
    calibration = calibrate(g, units, t=config.truncation, truncation=config.truncation, seed=config.seed,
                            pairs=config.audit_pairs)  # fmt: skip
    return calibration.views()


def table_markdown(table, config: QuantifyConfig) -> str:
    """Table 1 as markdown (mu written >= X where it is a lower bound), then each verdict's reason."""
    lines = [
        f"| level | InfoNCE | paper's loss (x {config.temperature / SUPCON_BASE_TEMPERATURE:.2f}) | mu | sigma | "
        "95% CI of mu | samples | stop | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        mu = f"{'>= ' if r['mu_lower_bound'] else ''}{r['mu']:.3g}"
        lines.append(
            f"| {r['level']} | {r['infonce']:.2f} | {r['loss_paper']:.2f} | {mu} | {r['sigma']:.3g} | "
            f"+-{r['ci95']:.2g} | {r['samples']:,} | {r['stop']} | {r['verdict']} |"
        )
    lines.append("")
    lines += [f"- {r['level']}: {r['verdict']}: {r['reason']}" for _, r in table.iterrows()]
    return "\n".join(lines) + "\n"


def write_outputs(g, result: QuantifyResult, config: QuantifyConfig, out, record: dict) -> None:
    """table1.csv/.md, dynamics.csv/.png, walkers.safetensors/.json, views.json (audited on g), quantify.json in
    `out` (created if missing)."""
    out = Path(out)
    atomic_write_text(out / "table1.csv", result.table.to_csv(index=False))
    atomic_write_text(out / "table1.md", table_markdown(result.table, config))
    atomic_write_text(out / "dynamics.csv", result.dynamics.to_csv(index=False))
    walker_dynamics(result.dynamics, config.gamma, f"{config.generator}: walkers against their critics",
                    out / "dynamics.png")  # fmt: skip
    result.walkers.save(out / "walkers", generator=config.generator, gamma=config.gamma)
    views = suggested_views(g, result, config)
    if views:
        atomic_write_json(out / "views.json", views)
    else:  # a views.json of an earlier run in this folder would no longer describe these results
        (out / "views.json").unlink(missing_ok=True)
    atomic_write_json(out / "quantify.json", {**record, "seconds": result.seconds,
                                              "table": result.table.to_dict("records")})  # fmt: skip


def quantify_command(config: QuantifyConfig, spec: str, *, preset: str) -> QuantifyResult:
    """`python -m mlvgm.quantify` once its arguments have passed: load the generator `spec`, quantify, print
    Table 1 and the advice, and write the outputs to config.out when set."""
    device = resolve_device(config.device)
    if device.type == "cpu":
        retain_freed_memory()  # mlvgm.hostmem, as training does on the CPU
    g = load_generator(spec, device=device)
    record = provenance(dataclasses.asdict(config))
    record["preset"] = preset
    print(provenance_line(record))
    result = run(g, config)
    print(table_markdown(result.table, config))
    print(f"trained in {result.seconds['training']:.0f} s, Monte Carlo {result.seconds['monte_carlo']:.0f} s")
    if config.out:
        write_outputs(g, result, config, config.out, record)
        views = (f"views.json (python -m mlvgm.train --config {config.out}/views.json; python -m mlvgm.audit "
                 f"--quantify {config.out} --out DIR draws its calibration sheets)"
                 if (Path(config.out) / "views.json").exists()
                 else "no views.json: no unit is kept for views (none normal, none on its way above the over-used "
                 "bar)" if not result.table["keep"].any()
                 else "no views.json: no kept unit changes the image measurably")  # fmt: skip
        print(f"wrote {config.out}/: table1.csv, table1.md, dynamics.csv, dynamics.png, walkers, {views}")
    print(advice(result.table, max_samples=config.max_samples))
    return result
