"""The work behind `python -m mlvgm.zoo.control` (the command checks the arguments before this module loads torch):
per seed, train the variant (or resume it), quantify it (or reuse its quantification), measure each level's
gain, and judge quantification against the VAE's KL by docs/embedded.md's rules; then write OUT.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd
import torch

from mlvgm.cli import resolve_device
from mlvgm.generators import load_generator
from mlvgm.generators.base import level_label
from mlvgm.generators.embedded import read_meta
from mlvgm.io import atomic_write_json, atomic_write_text, make_output_dir
from mlvgm.paper_tables import kl_agreement, kl_markdown
from mlvgm.plots import save_png
from mlvgm.provenance import provenance, provenance_line
from mlvgm.quantification import run as quantify_run
from mlvgm.quantification import write_outputs
from mlvgm.quantify_config import QuantifyConfig, table1_fields
from mlvgm.zoo.configs import ControlConfig, training_command
from mlvgm.zoo.gain import level_influence
from mlvgm.zoo.training import train


def variant(config: ControlConfig, seed: int, device: torch.device) -> dict[str, object]:
    """Seed `seed`'s variant trained, quantified and judged: its per-level table and the rules' outcome."""
    trainer = config.train_config(seed)
    weights = Path(trainer.out) / "embedded.safetensors"
    if not weights.exists():
        print(f"seed {seed}: training the variant ({trainer.steps:,} steps) in {trainer.out}")
        train(trainer)
    spec = f"embedded:weights={weights}"
    folder = Path(trainer.out) / "quantify"
    if not (folder / "quantify.json").exists():
        print(f"seed {seed}: quantifying {spec} into {folder}")
        quantify = QuantifyConfig(**{**table1_fields(config.quantify_samples, seed), "generator": spec,
                                     "device": config.device, "out": str(folder)})  # fmt: skip
        result = quantify_run(load_generator(spec, device=device), quantify, progress=False)
        write_outputs(load_generator(spec, device=device), result, quantify, folder,
                      provenance(dataclasses.asdict(quantify)))  # fmt: skip
    g = load_generator(spec, device=device)
    table = pd.read_csv(folder / "table1.csv")
    single = pd.DataFrame({"level": table["level"], "mu_mean": table["mu"], "mu_std": math.nan,
                           "verdict": table["verdict"], "verdicts": table["verdict"]})  # fmt: skip
    gains = [row["rms_gain"] for row in level_influence(g, seed=seed)]
    rows, summary = kl_agreement(single, read_meta(weights)["kl_nats"], gains=gains, dims=list(g.level_dims))
    target = level_label(g, config.level - 1)
    summary |= {
        "seed": seed,
        "target": target,
        "precondition": summary["collapsed_by_kl"] == [target],
        "agreement": summary["under_used_by_quantification"] == [target],
        **stands_out(rows, target),
        "markdown": kl_markdown(rows, summary),
    }
    return {"rows": rows.assign(seed=seed, mu_lower_bound=table["mu_lower_bound"]), "summary": summary,
            "quantification": (folder / "table1.md").read_text()}  # fmt: skip


def stands_out(rows: pd.DataFrame, target: str) -> dict[str, object]:
    """The secondary prediction docs/embedded.md fixed after seed 0: the level with the largest mu per coordinate,
    and the target's mu per coordinate over the largest of the other levels' (above 1: the target stands out)."""
    per = dict(zip(rows["level"].astype(str), rows["mu_per_coordinate"].astype(float), strict=True))
    others = [v for level, v in per.items() if level != target]
    return {"largest_mu_per_coordinate": max(per, key=per.__getitem__),
            "target_over_next_mu_per_coordinate": per[target] / max(others)}  # fmt: skip


def plot_control(rows: pd.DataFrame, target: str, path: Path) -> None:
    """Per level: KL per image (left) and mu (right) of every variant, log scale; under-used verdicts ringed."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6))
    left, right = fig.subplots(1, 2)
    levels = list(dict.fromkeys(rows["level"]))
    for seed, group in rows.groupby("seed"):
        x = [levels.index(v) for v in group["level"]]
        left.plot(x, group["kl_nats"].clip(lower=1e-3), "o-", label=f"seed {seed}")
        right.plot(x, group["mu_mean"], "o-", label=f"seed {seed}")
        under = group["verdict"] == "under-used"
        right.scatter([i for i, u in zip(x, under, strict=True) if u], group.loc[under, "mu_mean"], s=160,
                      facecolors="none", edgecolors="black")  # fmt: skip
    left.axhline(1.0, color="black", linestyle=":", linewidth=1, label="1 nat: collapsed below")
    for ax, label in ((left, "KL per image (nats)"), (right, "mu (ringed: under-used)")):
        ax.set_yscale("log")
        ax.set_xticks(range(len(levels)), levels, fontsize=8)
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle(f"positive control: {target}'s KL weighed heavily in training", fontsize=10)
    fig.tight_layout()
    save_png(fig, path)


def variant_command(config: ControlConfig) -> str:
    """The training command of the variants, seed shown as S (what differs from the shipped defaults)."""
    training = dataclasses.asdict(dataclasses.replace(config.train_config(0), seed=1))
    return training_command(training).replace("--seed 1", "--seed S")


def readme(config: ControlConfig, results: list[dict], overall: dict, record: dict) -> str:
    git = record["git"]
    ratios = ", ".join(f"{r['summary']['target_over_next_mu_per_coordinate']:.2g}" for r in results)
    lines = [
        "# The positive control for under-used (docs/embedded.md)",
        "",
        f"Command: `{record['command']}` (git {str(git['sha'])[:10]}{' dirty' if git['dirty'] else ''}, "
        f"{record['hardware']['cpu']} x{record['hardware']['cpu_cores']}, {record['time']}).",
        "",
        f"{config.seeds} variants of the embedded VAE (`{variant_command(config)}` for S in 0..{config.seeds - 1}), "
        f"each quantified once with its own seed and Table 1's settings ({config.quantify_samples:,} samples per "
        "level). The rules were fixed before the runs.",
        "",
        f"- Precondition (the target collapsed by KL, under 1 nat per image, and no other level): "
        f"{overall['precondition']} of {config.seeds} variants.",
        f"- Agreement (quantification calls the target, and only it, under-used): {overall['agreement']} of "
        f"{config.seeds}.",
        f"- Verdict: {'the control passes' if overall['passes'] else 'the control does not pass'} "
        f"({config.seeds} of {config.seeds} needed).",
        f"- Secondary prediction (fixed after seed 0, before seeds 1 and 2; seed 0 does not count): the target has "
        f"the largest mu per coordinate in {overall['stands_out']} of {config.seeds - 1} later seeds. Per seed from "
        f"0, the target's mu per coordinate over the next largest level's: {ratios}.",
        "",
        "![control](control.png)",
        "",
    ]
    for r in results:
        s = r["summary"]
        per = ", ".join(
            f"{level} {v:.3g}" for level, v in zip(r["rows"]["level"], r["rows"]["mu_per_coordinate"], strict=True)
        )
        lines += [f"## Seed {s['seed']}", "", s["markdown"], f"mu per coordinate (mu / sqrt(d)): {per}.", "",
                  "Quantification (its table1.md):", "", r["quantification"]]  # fmt: skip
    return "\n".join(lines)


def control(config: ControlConfig) -> dict:
    device = resolve_device(config.device)
    record = provenance(dataclasses.asdict(config))
    print(provenance_line(record))
    results = [variant(config, seed, device) for seed in range(config.seeds)]
    out = make_output_dir(config.out)
    rows = pd.concat([r["rows"] for r in results], ignore_index=True)
    summaries = [{k: v for k, v in r["summary"].items() if k != "markdown"} for r in results]
    overall = {
        "precondition": sum(s["precondition"] for s in summaries),
        "agreement": sum(s["agreement"] for s in summaries),
        "stands_out": sum(s["largest_mu_per_coordinate"] == s["target"] for s in summaries if s["seed"] > 0),
    }
    overall["passes"] = overall["precondition"] == overall["agreement"] == config.seeds
    atomic_write_text(out / "control.csv", rows.to_csv(index=False))
    plot_control(rows, summaries[0]["target"], out / "control.png")
    atomic_write_json(out / "control.json", {"overall": overall, "seeds": summaries, "provenance": record})
    atomic_write_text(out / "README.md", readme(config, results, overall, record))
    for s in summaries:
        print(f"seed {s['seed']}: collapsed by KL {s['collapsed_by_kl'] or 'none'}; under-used by quantification "
              f"{s['under_used_by_quantification'] or 'none'}")  # fmt: skip
    print(f"precondition {overall['precondition']}/{config.seeds}, agreement {overall['agreement']}/{config.seeds}: "
          f"{'passes' if overall['passes'] else 'does not pass'}; wrote {out}/")  # fmt: skip
    return {"overall": overall, "seeds": summaries}
