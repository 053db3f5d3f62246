"""Views from a quantification: phase one's kept levels (mlvgm.verdicts), phase two's audit (mlvgm.view_audit)
and rule (mlvgm.view_rule), and the views.json a training run reads. `python -m mlvgm.quantify` and
`python -m mlvgm.audit` write it through `calibrate`; `python -m mlvgm.experiments` reads its views through
`views_of`, so a views.json made by an earlier rule is never trained on.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mlvgm.cli import resolve_device
from mlvgm.errors import InputError
from mlvgm.generators import load_generator
from mlvgm.generators.base import device_of, level_label, resolve_levels
from mlvgm.io import atomic_write_json, atomic_write_text, make_output_dir, read_json
from mlvgm.options import AUDIT_SIGMAS, generator_spec
from mlvgm.plots import audit_curves, calibration_sheet
from mlvgm.progress import Progress
from mlvgm.provenance import provenance, provenance_line
from mlvgm.verdicts import judge
from mlvgm.view_audit import (
    Anchors,
    factors_of,
    feature_net,
    level_noise,
    make_anchors,
    measure,
    perturbed,
    sheet,
    sweep,
)
from mlvgm.view_rule import MEASURABLE, RULE, RULE_TEXT, SATURATION_MARGIN, choose


@dataclass
class Calibration:
    """The audit of some levels and the sigmas the rule chose."""

    sweep: pd.DataFrame  # one row per (level, sigma)
    chosen: pd.DataFrame  # one row per level: kept, sigma, reason, and the numbers measured at its sigma
    units: dict[str, tuple[int, ...]]  # label -> 0-based levels
    t: float

    def views(self) -> dict[str, object]:
        """A `python -m mlvgm.train --config` file: random views on the kept levels at their sigmas, and the
        audit under "_audit" (keys starting with _ are notes the config does not read). {} if none kept."""
        kept = self.chosen[self.chosen["kept"]]
        if kept.empty:
            return {}
        levels, sigmas = [], []
        for _, row in kept.iterrows():
            for i in self.units[row["level"]]:
                levels.append(str(i + 1))
                sigmas.append(round(float(row["sigma"]), 6))
        return {"views": "random", "view_levels": levels, "view_sigma": sigmas, "view_t": self.t,
                "_audit": {"rule": RULE, "text": RULE_TEXT, "chosen": records(self.chosen),
                           "sweep": records(self.sweep)}}  # fmt: skip


def records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records"))  # NaN -> null, numpy -> python


def kept_units(table: pd.DataFrame) -> dict[str, tuple[int, ...]]:
    """Phase one: the units a quantification table (with its keep column) lets the views perturb."""
    return {str(row["level"]): tuple(int(i) - 1 for i in str(row["levels"]).split(","))
            for _, row in table.iterrows() if bool(row["keep"])}  # fmt: skip


def rejudged(folder: str | Path) -> pd.DataFrame:
    """A quantification folder's table1.csv judged by the current rule (mlvgm.verdicts), from its dynamics and the
    gamma and batch size its quantify.json records; one InputError line for a folder that is not one."""
    folder = Path(folder)
    fix = "give the --out folder of a python -m mlvgm.quantify run"
    for name in ("table1.csv", "dynamics.csv", "quantify.json"):
        if not (folder / name).is_file():
            raise InputError(f"--quantify {folder}: no {name} there: {fix}")
    record = read_json(folder / "quantify.json", what="quantify.json", fix=fix)
    config = record.get("config") if isinstance(record, dict) else None
    if not isinstance(config, dict) or "gamma" not in config or "batch_size" not in config:
        raise InputError(f"--quantify {folder}: quantify.json has no config with gamma and batch_size: {fix}")
    try:
        table, dynamics = pd.read_csv(folder / "table1.csv"), pd.read_csv(folder / "dynamics.csv")
        judged = judge(table, dynamics, float(config["gamma"]), batch_size=int(config["batch_size"]))
    except (KeyError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"--quantify {folder}: its table1.csv or dynamics.csv cannot be read ({exc}): {fix}") from None
    for key in ("verdict", "reason", "mu_lower_bound", "keep"):
        table[key] = [getattr(v, key) for v in judged]
    return table


def calibrate(g, units: dict[str, Sequence[int]], *, sigmas: Sequence[float] = AUDIT_SIGMAS, t: float = 2.0,
              pairs: int = 2048, truncation: float = 2.0, seed: int = 0, features: bool = True,
              progress: Callable[[], None] = lambda: None) -> Calibration:  # fmt: skip
    """Audit `units` (label -> 0-based levels) of g over `sigmas`, choose a sigma per unit by the rule, and
    measure each kept unit at its chosen sigma."""
    net = feature_net(device_of(g)) if features else None
    anchors = make_anchors(g, pairs, truncation=truncation, seed=seed, net=net)
    table = sweep(g, anchors, units, sigmas, t=t, seed=seed, net=net, progress=progress)
    chosen = choose(table).set_index("level")
    for label, row in chosen.iterrows():
        if row["kept"]:
            at = measure_at(g, anchors, units[label], row["sigma"], t=t, seed=seed, net=net)
            for key, value in at.items():
                chosen.loc[label, key] = value
    return Calibration(table, chosen.reset_index(), {k: tuple(v) for k, v in units.items()}, t)


def measure_at(g, anchors: Anchors, levels: Sequence[int], sigma: float, *, t: float, seed: int, net) -> dict:
    noise = level_noise(g, anchors, levels, t=t, seed=seed)
    return measure(g, anchors, perturbed(anchors.latents, levels, noise, sigma), net)


def views_of(folder: str | Path, g, **options) -> dict[str, object]:
    """The views a quantification folder suggests by the current rule: its views.json when that was written by
    it, else computed now (re-judged, audited) and written back; {} (and no file) when no level is kept."""
    path = Path(folder) / "views.json"
    if path.exists():
        current = read_json(path, what="views.json", fix="delete it to have it made again")
        if isinstance(current, dict) and current.get("_audit", {}).get("rule") == RULE:
            return current
    units = kept_units(rejudged(folder))
    views = calibrate(g, units, **options).views() if units else {}
    if views:
        atomic_write_json(path, views)
    else:
        path.unlink(missing_ok=True)
    return views


# --- python -m mlvgm.audit ---------------------------------------------------------------------------


def audit_command(config) -> Calibration | None:
    """`python -m mlvgm.audit` once its arguments have passed (config: a mlvgm.audit.AuditConfig)."""
    device = resolve_device(config.device)
    table, spec = None, config.generator or "shapes:resolution=32"
    if config.quantify:
        table = rejudged(config.quantify)
        recorded = read_json(Path(config.quantify) / "quantify.json", what="quantify.json")["config"]
        if not config.generator and recorded.get("generator"):
            spec = generator_spec(recorded["generator"], recorded.get("checkpoint", ""))
    g = load_generator(spec, device=device)
    if table is not None:
        units = kept_units(table)
    else:
        units = {}
        for selection in config.levels:
            levels = resolve_levels(g, int(selection) if selection.isdigit() else selection)
            units[level_label(g, levels[0]) if len(levels) == 1 else selection] = levels
    record = provenance(dataclasses.asdict(config))
    record["generator_spec"] = spec
    print(provenance_line(record))
    out = make_output_dir(config.out)
    if table is not None:
        atomic_write_text(out / "verdicts.md", verdicts_markdown(table))
    if not units:
        (out / "views.json").unlink(missing_ok=True)
        atomic_write_json(out / "audit.json", {**record, "units": {}})
        print(f"{config.quantify}: no level is normal or still on its way above the over-used bar: nothing to audit "
              f"and no views.json (its verdicts: {out}/verdicts.md)")  # fmt: skip
        return None
    if factors_of(g) is None:
        print(f"note: {spec} declares no ground-truth factors, so the audit has no flip rates")
    bar = Progress(len(units) * len(config.sigmas), desc="audit", unit="sigma")
    calibration = calibrate(g, units, sigmas=config.sigmas, t=config.t, pairs=config.pairs,
                            truncation=config.truncation, seed=config.seed, features=config.features,
                            progress=lambda: bar.update(1))  # fmt: skip
    bar.close()
    write_audit(g, calibration, config, out, record, spec)
    return calibration


def write_audit(g, calibration: Calibration, config, out: Path, record: dict, spec: str) -> None:
    sweep, chosen = calibration.sweep, calibration.chosen
    atomic_write_text(out / "audit.csv", sweep.to_csv(index=False))
    atomic_write_text(out / "chosen.csv", chosen.to_csv(index=False))
    anchors = make_anchors(g, config.rows, truncation=config.truncation, seed=config.seed, net=None)
    for label, levels in calibration.units.items():
        images = sheet(g, anchors, levels, config.sigmas, t=config.t, seed=config.seed, rows=config.rows)
        title = f"{spec}: {label} moved by sigma x e, e ~ N^t(0, 1, {config.t:g})"
        calibration_sheet(images, config.sigmas, title, out / f"sheet-{sheet_name(label)}.png")
    audit_curves(sweep, chosen, out / "audit.png", title=f"{spec}: what perturbing each level does "
                 f"({config.pairs:,} pairs)", margin=SATURATION_MARGIN, measurable=MEASURABLE)  # fmt: skip
    views = calibration.views()
    if views:
        atomic_write_json(out / "views.json", views)
    else:
        (out / "views.json").unlink(missing_ok=True)
    atomic_write_text(out / "audit.md", audit_markdown(calibration, config.pairs))
    atomic_write_json(out / "audit.json", {**record, "rule": RULE, "chosen": records(chosen)})
    print(audit_markdown(calibration, config.pairs, sweep_table=False))
    made = f"views.json (python -m mlvgm.train --config {out}/views.json)" if views else "no views.json: no level kept"
    print(f"wrote {out}/: audit.csv, chosen.csv, audit.md, audit.png, sheet-*.png, audit.json, {made}")


def sheet_name(label: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in label.split(" ")[0])


def verdicts_markdown(table: pd.DataFrame) -> str:
    lines = ["| level | mu | reached gamma | verdict | kept for the audit | reason |", "|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        mu = f"{'>= ' if r['mu_lower_bound'] else ''}{r['mu']:.3g}"
        lines.append(f"| {r['level']} | {mu} | {'yes' if r['reached'] else 'no'} | {r['verdict']} | "
                     f"{'yes' if r['keep'] else 'no'} | {r['reason']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def audit_markdown(calibration: Calibration, pairs: int, *, sweep_table: bool = True) -> str:
    """The chosen sigmas with what they do, then (sweep_table) every (level, sigma) measured."""
    flips = [c for c in calibration.sweep.columns if c.startswith("flip_")]
    head = ["level", "sigma", "mean pixel change", "feature change", "saturated: anchors", "positives",
            *(f"{c[5:]} flips" for c in flips)]  # fmt: skip
    lines = [f"Rule {RULE_TEXT}", "", f"Chosen ({pairs:,} anchor/positive pairs each):", "",
             "| " + " | ".join([*head, "why"]) + " |", "|" + "---|" * (len(head) + 1)]  # fmt: skip
    for _, r in calibration.chosen.iterrows():
        if r["kept"]:
            cells = [r["level"], f"{r['sigma']:.3g}", f"{r['pixel_change']:.4f}", f"{r['feature_change']:.3f}",
                     f"{r['saturated_anchor']:.1%}", f"{r['saturated_positive']:.1%}",
                     *(f"{r[c]:.1%}" for c in flips)]  # fmt: skip
        else:
            cells = [r["level"], "dropped", *([""] * (len(head) - 2))]
        lines.append("| " + " | ".join([*cells, r["reason"]]) + " |")
    if sweep_table:
        lines += ["", "Every sigma of the grid:", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for _, r in calibration.sweep.iterrows():
            lines.append("| " + " | ".join([r["level"], f"{r['sigma']:g}", f"{r['pixel_change']:.4f}",
                                            f"{r['feature_change']:.3f}", f"{r['saturated_anchor']:.1%}",
                                            f"{r['saturated_positive']:.1%}", *(f"{r[c]:.1%}" for c in flips)])
                         + " |")  # fmt: skip
    return "\n".join(lines) + "\n"
