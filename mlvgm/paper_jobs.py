"""The jobs of `python -m mlvgm.experiments` (the paper's Tables 1-3 in miniature): the plan derived from an
ExperimentsConfig, running each job not yet done (export, quantify, train and probe), and the aggregation of what
is done into tables, plots and README.md. mlvgm.experiments checks the arguments and calls run_experiments.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from mlvgm import training
from mlvgm.checkpoint import load_checkpoint
from mlvgm.cli import resolve_device
from mlvgm.data.export import export_dataset
from mlvgm.errors import InputError
from mlvgm.evaluation import evaluate_run
from mlvgm.experiments_config import EMBEDDED_ROWS, GENERATORS, WORLD, ExperimentsConfig, resolved
from mlvgm.generators import load_generator
from mlvgm.generators.embedded import read_meta
from mlvgm.io import atomic_write_json, atomic_write_text, make_output_dir
from mlvgm.paper_tables import (
    kl_agreement,
    kl_markdown,
    paired_differences,
    plot_table1,
    plot_table2,
    summarise_table2,
    table1_markdown,
    table2_markdown,
)
from mlvgm.progress import duration
from mlvgm.provenance import provenance, provenance_line
from mlvgm.quantification import run as quantify_run
from mlvgm.quantification import write_outputs
from mlvgm.quantify_config import QuantifyConfig, table1_fields
from mlvgm.recipe import build_method, build_views, spec
from mlvgm.train_config import PRESETS as TRAIN_PRESETS
from mlvgm.train_config import TABLE2_ROWS, TrainConfig
from mlvgm.view_audit import audit_views
from mlvgm.view_calibration import views_of
from mlvgm.view_rule import DESTROYED, RULE
from mlvgm.zoo.gain import level_influence

SINGLE_ROWS = ("synth", "random", "ml-random")  # the rows SimSiam and BYOL train (the minimum)

# Every Table 2 run: the quickstart's encoder and optimiser at 32 px, trained for --budget steps of 64 pairs.
_TRAIN_BASE = {key: TRAIN_PRESETS["quickstart"][key] for key in ("generator", "batch_size", "optimizer", "base_lr",
                                                                  "temperature", "width")}  # fmt: skip
# Each Table-2 row's T_z and T_x, with its levels: random and learned on every level (sigma 0.2 for random); ml-random
# and ml-learned take theirs from quantification.
_ROW_LEVELS = {"random": {"view_levels": "all", "view_sigma": (0.2,)}, "learned": {"view_levels": "all"}}
_ROW_VIEWS = {row: {**fields, **_ROW_LEVELS.get(row, {})} for row, fields in TABLE2_ROWS.items()}


class MissingInput(InputError):
    """A job that cannot run as planned, skipped with the reason: an input an earlier job did not make
    (quantification kept no level), or views that destroy the positive (mlvgm.view_audit)."""


@dataclass
class Job:
    """One unit of work: `kind` export | quantify | train, its config fields, and the jobs whose outputs it reads."""

    kind: str
    name: str  # what it is, e.g. "table2/simclr/ml-random/s0"
    config: dict[str, object]
    needs: dict[str, Job] = field(default_factory=dict)  # role ("data", "walkers", "views") -> job

    @property
    def key(self) -> str:
        """A hash of the config and of everything it reads: the same job in any experiment has the same key."""
        text = json.dumps([self.kind, self.config, {role: job.key for role, job in sorted(self.needs.items())}],
                          sort_keys=True, default=str)  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def folder(self, runs: Path) -> Path:
        return runs / f"{self.name.replace('/', '-')}-{self.key}"


def prefix(generator: str) -> str:
    """What a generator's job names start with: nothing for the shapes world (its runs predate the others)."""
    return "" if generator == "shapes" else f"{generator}/"


def level_count(generator: str) -> int:
    return len(load_generator(GENERATORS[generator]).level_dims)


def quantify_job(config: ExperimentsConfig, seed: int, *, single: bool = False, generator: str = "shapes") -> Job:
    fields = table1_fields(config.quantify_samples, seed, single=single)
    if generator != "shapes":
        fields["generator"] = GENERATORS[generator]
    return Job("quantify", f"{prefix(generator)}{'single' if single else 'table1'}/quantify/s{seed}", fields)


def plan(config: ExperimentsConfig) -> list[Job]:
    """Every job of the experiment, each after the jobs it reads."""
    config = resolved(config)
    jobs: list[Job] = []
    for generator in config.generators:
        jobs += plan_generator(config, generator)
    return jobs


def plan_generator(config: ExperimentsConfig, generator: str) -> list[Job]:
    """The jobs of one generator: its Table 1 quantifications, then its Table 2 runs."""
    names = ("table1", "table2", "figure5") if config.name == "all" else (config.name,)
    rows = [r for r in config.rows if generator == "shapes" or r in EMBEDDED_ROWS]
    methods = [m for m in config.methods if generator == "shapes" or m == "simclr"]
    jobs: list[Job] = []
    quantified = {s: quantify_job(config, s, generator=generator) for s in range(config.seeds)}
    if "table1" in names or ("table2" in names and {"ml-random", "ml-learned"} & set(rows) and methods):
        jobs += quantified.values()
    if "table2" in names:
        data = Job("export", "table2/real-data", {"n": config.real_images, "val_fraction": 0.0, "seed": 10_000})
        single = {s: quantify_job(config, s, single=True, generator=generator) for s in range(config.seeds)}
        if "real" in rows:
            jobs.append(data)
        if "learned" in rows:
            jobs += single.values()
        levels = tuple(str(i + 1) for i in range(level_count(generator))) if {"random", "learned"} & set(rows) else ()
        for method in methods:
            batch = int(_TRAIN_BASE["batch_size"])
            for row in [r for r in rows if method == "simclr" or r in SINGLE_ROWS]:
                for seed in range(config.seeds):
                    fields = {**_TRAIN_BASE, **_ROW_VIEWS[row], "method": method, "seed": seed, "epochs": 1,
                              "epoch_images": config.budget * batch, "evaluate": False,
                              "budget_minutes": 0.0, "checkpoint_minutes": 5.0,
                              "checkpoint_every": max(1, config.budget // 5)}  # fmt: skip
                    if fields.get("view_levels") == "all":
                        fields["view_levels"] = levels
                    if generator != "shapes":
                        fields["generator"] = GENERATORS[generator]
                    needs = {"data": data} if row == "real" else {}
                    if row == "real":  # a finite dataset: whole epochs of it, as near the budget as they come
                        fields["epochs"] = max(1, round(config.budget / (config.real_images // batch)))
                    if row in ("ml-random", "ml-learned"):
                        fields["views_rule"] = RULE  # its levels (and sigmas) are the rule's
                        needs = {"views": quantified[seed]} | ({"walkers": quantified[seed]} if row == "ml-learned"
                                                               else {})  # fmt: skip
                    if row == "learned":
                        needs = {"walkers": single[seed]}
                    jobs.append(Job("train", f"{prefix(generator)}table2/{method}/{row}/s{seed}", fields, needs))
    return jobs


# --- running one job ---------------------------------------------------------------------------------


def done(job: Job, runs: Path) -> bool:
    """Whether the job's outputs exist; a training probed by the probe before it chose its weight decay (no
    linear_weight_decay column) is not: running it again keeps the training and only probes it anew."""
    folder = job.folder(runs)
    marker = {"export": "manifest.json", "quantify": "quantify.json", "train": "probes.csv"}[job.kind]
    if job.kind == "train" and (folder / marker).exists():
        with open(folder / marker) as f:
            return "linear_weight_decay" in f.readline().strip().split(",")
    return (folder / marker).exists()


def train_config(job: Job, runs: Path, config: ExperimentsConfig) -> TrainConfig:
    """The job's TrainConfig, with what it reads from other jobs filled in."""
    fields = dict(job.config)
    if "data" in job.needs:
        fields["data"] = str(job.needs["data"].folder(runs) / "train")
    if "walkers" in job.needs:
        fields["walkers"] = str(job.needs["walkers"].folder(runs) / "walkers.safetensors")
    fields.pop("views_rule", None)  # in the job's key only: views made by another rule are another job
    if "views" in job.needs:
        quantified = job.needs["views"]
        g = load_generator(quantified.config.get("generator", WORLD), device=resolve_device(config.device))
        suggested = views_of(quantified.folder(runs), g)
        if not suggested:
            raise MissingInput(f"{quantified.folder(runs)}: no level is kept and changes the image measurably, so "
                               "there are no views to train on")  # fmt: skip
        fields["view_levels"] = tuple(suggested["view_levels"])
        if job.config["views"] == "random":
            fields["view_sigma"] = tuple(suggested["view_sigma"])
            fields["view_t"] = suggested["view_t"]
    fields.update(device=config.device, eval_train=config.eval_train, eval_test=config.eval_test)
    return TrainConfig(**fields)


def refuse_destroyed_views(job: Job, trained: TrainConfig, device) -> None:
    """MissingInput (the row is skipped, with why) when the row's T_z destroys its positives (mlvgm.view_audit)."""
    if trained.views == "none" or trained.source != "cs":
        return
    g = load_generator(spec(trained), device=device)
    row = audit_views(g, build_views(trained, g), truncation=trained.truncation, seed=trained.seed)
    if row["destroyed"]:
        raise MissingInput(f"{job.name}: its views destroy the positive ({row['saturated_excess']:.0%} of the pixels "
                           f"saturated beyond the anchors', over {DESTROYED:.0%}): not trained")  # fmt: skip


def probe_config(trained: TrainConfig) -> TrainConfig:
    """Every row is probed alike: the shapes world's held-out ground truth, whatever the row trained on."""
    return dataclasses.replace(trained, source="cs", data="", generator=WORLD, views="none", walkers="")


def trained_backbone(job: Job, trained: TrainConfig, folder: Path, device) -> torch.nn.Module:
    """The job's trained backbone: its views checked, its training run (or resumed) unless finished, its last
    checkpoint loaded."""
    refuse_destroyed_views(job, trained, device)
    summary = folder / "summary.json"
    steps = trained.epochs * (trained.epoch_images // trained.batch_size)
    if not (summary.exists() and json.loads(summary.read_text())["steps"] == steps):
        training.train(trained, folder, resume=folder.exists(), preset=job.name, progress=False)
    torch.manual_seed(trained.seed)
    method = build_method(trained).to(device)
    load_checkpoint(folder, method)
    return method.backbone


def run_job(job: Job, runs: Path, config: ExperimentsConfig) -> None:
    folder = job.folder(runs)
    device = resolve_device(config.device)
    if job.kind == "export":
        export_dataset(load_generator(WORLD), folder, overwrite=True, spec=WORLD, progress=False, **job.config)
    elif job.kind == "quantify":
        quantify = QuantifyConfig(**{**job.config, "device": config.device, "out": str(folder)})
        result = quantify_run(load_generator(quantify.generator, device=device), quantify, progress=False)
        g = load_generator(quantify.generator, device=device)
        write_outputs(g, result, quantify, folder, provenance(dataclasses.asdict(quantify)))
    else:
        trained = train_config(job, runs, config)
        backbone = trained_backbone(job, trained, folder, device)
        table = evaluate_run(probe_config(trained), backbone, device=device, progress=False)
        atomic_write_text(folder / "probes.csv", table.to_csv(index=False))


# --- aggregation -------------------------------------------------------------------------------------


def table1(jobs: list[Job], runs: Path, generator: str = "shapes") -> pd.DataFrame:
    """mu and sigma per level: mean +- std over seeds, and the share of seeds giving the modal verdict."""
    frames = []
    for job in jobs:
        if job.kind == "quantify" and job.name.startswith(f"{prefix(generator)}table1/") and done(job, runs):
            frame = pd.read_csv(job.folder(runs) / "table1.csv")
            frames.append(frame.assign(seed=job.config["seed"]))
    if not frames:
        return pd.DataFrame()
    runs_ = pd.concat(frames)
    rows = []
    for level, group in runs_.groupby("level", sort=False):
        verdicts = group["verdict"].value_counts()
        lower = int(group["mu_lower_bound"].astype(bool).sum()) if "mu_lower_bound" in group else 0
        rows.append({"level": level, "seeds": len(group), "mu_mean": group["mu"].mean(), "mu_std": group["mu"].std(),
                     "mu_lower_bounds": lower,
                     "sigma_mean": group["sigma"].mean(), "verdict": verdicts.index[0],
                     "agreement": verdicts.iloc[0] / len(group),
                     "verdicts": ", ".join(f"{v} x{n}" for v, n in verdicts.items())})  # fmt: skip
    return pd.DataFrame(rows)


def table2(jobs: list[Job], runs: Path, generator: str = "shapes") -> pd.DataFrame:
    """One row per (method, row, seed, factor, encoder): linear and kNN top-1 of that run's probes."""
    frames = []
    for job in jobs:
        if job.kind == "train" and job.name.startswith(f"{prefix(generator)}table2/") and done(job, runs):
            _, method, row, seed = job.name.removeprefix(prefix(generator)).split("/")
            probes = pd.read_csv(job.folder(runs) / "probes.csv")
            steps = json.loads((job.folder(runs) / "summary.json").read_text())["steps"]
            frames.append(probes.assign(method=method, row=row, seed=int(seed[1:]), steps=steps,
                                        minutes=job_seconds(job, runs) / 60))  # fmt: skip
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def job_seconds(job: Job, runs: Path) -> float:
    """How long a finished job took: its job.json, else what its own outputs record (0 for an export)."""
    folder = job.folder(runs)
    if (folder / "job.json").exists():
        return float(json.loads((folder / "job.json").read_text())["seconds"])
    if job.kind == "quantify":
        return float(sum(json.loads((folder / "quantify.json").read_text()).get("seconds", {}).values()))
    if job.kind == "train" and (folder / "summary.json").exists():
        return float(json.loads((folder / "summary.json").read_text()).get("elapsed_s", 0.0))
    return 0.0


def estimate(todo: list[Job], timed: dict[str, tuple[str, float]]) -> float:
    """Seconds the jobs in `todo` should take, from `timed` (finished job name -> (kind, seconds)): each job is
    priced as the mean of its siblings (its name but the seed, e.g. table2/simclr/real/*), else of its kind; a job
    of a kind that nothing timed yet counts 0."""

    def family(name: str) -> str:
        return name.rsplit("/", 1)[0]

    total = 0.0
    for job in todo:
        alike = [s for n, (_, s) in timed.items() if family(n) == family(job.name) and s > 0]
        alike = alike or [s for kind, s in timed.values() if kind == job.kind and s > 0]
        total += sum(alike) / len(alike) if alike else 0.0
    return total


def aggregate(jobs: list[Job], config: ExperimentsConfig, runs: Path, out: Path, wall_s: float,
              skipped: dict[str, str]) -> list[str]:  # fmt: skip
    """Write the tables, plots and README.md of what is done; returns the files written."""
    written = []
    for generator in config.generators:
        written += aggregate_generator(jobs, generator, runs, out)
    record = provenance(dataclasses.asdict(config))
    finished = [j for j in jobs if done(j, runs)]
    compute = sum(job_seconds(j, runs) for j in finished)
    readme = [
        "# The paper in miniature (shapes world and the embedded VAE)", "",
        f"- command of the last invocation: `{record['command']}` (seeds {config.seeds}, budget {config.budget} "
        f"steps, rows {','.join(config.rows)}, methods {','.join(config.methods)})",
        f"- machine and commit: {provenance_line(record)}",
        f"- time: {duration(compute)} for the {len(finished)} jobs of this experiment run so far; the last "
        f"invocation took {duration(wall_s)} (runs in `{runs}`)", "",
    ]  # fmt: skip
    for generator in config.generators:
        suffix, world = ("", "shapes world") if generator == "shapes" else (f"-{generator}", WORLDS[generator])
        if (out / f"table1{suffix}.md").exists():
            readme += [f"## Table 1, {world}", "", (out / f"table1{suffix}.md").read_text(), ""]
            if (out / f"table1{suffix}-kl.md").exists():
                readme += ["Against the VAE's own per-level KL (held-out images, from the weights' JSON):", "",
                           (out / f"table1{suffix}-kl.md").read_text(),
                           "How strongly each level moves the image (its Jacobian's top singular value), which mu "
                           "follows, is in [results/embedded](../embedded/README.md) (`python -m mlvgm.zoo.evidence`).",
                           ""]  # fmt: skip
            pngs = [f"table1{suffix}.png", f"table1{suffix}-dynamics-s0.png"]
            readme += [f"![{png[:-4]}]({png})" for png in pngs if (out / png).exists()] + [""]
        if (out / f"table2{suffix}.md").exists():
            readme += [f"## Table 2, {world}", ""]
            if generator != "shapes":
                readme += [f"Trained on Continuous Sampling from the {world}; probed, like every row, on the shapes "
                           "world's held-out factors.", ""]  # fmt: skip
            readme += [(out / f"table2{suffix}.md").read_text(), ""]
            readme += [f"![table2{suffix}](table2{suffix}.png)", ""] if (out / f"table2{suffix}.png").exists() else []
    if (out / "figure5" / "source.json").exists():
        source = json.loads((out / "figure5" / "source.json").read_text())
        made = f"commit {str(source['commit'])[:10]}{' (dirty)' if source['dirty'] else ''}, {source['datetime']}"
        links = "[figure5/sources.md](figure5/sources.md), [figure5/figure5.png](figure5/figure5.png)"
        readme += ["## Figure 5", "", f"The data-loader benchmark: {source['json']}, {made}, {source['cpu']}: {links}.",
                   ""]  # fmt: skip
    if skipped:
        readme += ["## Skipped", "", *(f"- {name}: {why}" for name, why in skipped.items()), ""]
    atomic_write_text(out / "README.md", "\n".join(readme))
    return [*written, "README.md"]


WORLDS = {"embedded": "embedded hierarchical VAE"}


def aggregate_generator(jobs: list[Job], generator: str, runs: Path, out: Path) -> list[str]:
    """One generator's Table 1 (and, for the embedded VAE, its agreement with the per-level KL) and Table 2."""
    suffix, world = ("", "shapes world") if generator == "shapes" else (f"-{generator}", generator)
    written = []
    t1 = table1(jobs, runs, generator)
    if not t1.empty:
        atomic_write_text(out / f"table1{suffix}.csv", t1.to_csv(index=False))
        atomic_write_text(out / f"table1{suffix}.md", table1_markdown(t1))
        plot_table1(t1, out / f"table1{suffix}.png", world)
        first = next(j for j in jobs if j.name == f"{prefix(generator)}table1/quantify/s0")
        if (first.folder(runs) / "dynamics.png").exists():
            shutil.copyfile(first.folder(runs) / "dynamics.png", out / f"table1{suffix}-dynamics-s0.png")
        written += [f"table1{suffix}.csv", f"table1{suffix}.md", f"table1{suffix}.png"]
        if generator == "embedded":
            g = load_generator(GENERATORS[generator])
            gains = [level["rms_gain"] for level in level_influence(g)]  # the ordering test of docs/embedded.md
            rows, summary = kl_agreement(t1, read_meta()["kl_nats"], gains=gains, dims=list(g.level_dims))
            atomic_write_text(out / f"table1{suffix}-kl.csv", rows.to_csv(index=False))
            atomic_write_text(out / f"table1{suffix}-kl.md", kl_markdown(rows, summary))
            atomic_write_json(out / f"table1{suffix}-kl.json", summary)
            written += [f"table1{suffix}-kl.csv", f"table1{suffix}-kl.md"]
    per_run = table2(jobs, runs, generator)
    if not per_run.empty:
        summary, paired = summarise_table2(per_run), paired_differences(per_run)
        atomic_write_text(out / f"table2{suffix}-runs.csv", per_run.to_csv(index=False))
        atomic_write_text(out / f"table2{suffix}.csv", summary.to_csv(index=False))
        atomic_write_text(out / f"table2{suffix}.md", table2_markdown(summary, paired))
        classes = per_run.groupby("factor")["classes"].first() if "classes" in per_run else {}
        plot_table2(summary, out / f"table2{suffix}.png", per_run,
                    {str(f): 1 / int(n) for f, n in dict(classes).items()}, world)  # fmt: skip
        written += [f"table2{suffix}.csv", f"table2{suffix}-runs.csv", f"table2{suffix}.md", f"table2{suffix}.png"]
    return written


# --- the command -------------------------------------------------------------------------------------


def run_experiments(config: ExperimentsConfig) -> dict:
    """Run every job not yet done (in plan order), then aggregate; returns counts and the wall time. (main has
    checked that the folders can be made.)"""
    config = resolved(config)
    started = time.perf_counter()
    runs, out = Path(config.runs), Path(config.out)
    jobs = plan(config)
    todo = [job for job in jobs if not done(job, runs)]
    print(f"{config.name}: {len(jobs)} jobs, {len(jobs) - len(todo)} done, {len(todo)} to run (runs in {runs})")
    make_output_dir(runs, flag="--runs")
    skipped: dict[str, str] = {}
    timed = {job.name: (job.kind, job_seconds(job, runs)) for job in jobs if done(job, runs)}
    for i, job in enumerate(todo, 1):
        left = estimate(todo[i - 1 :], timed)
        eta = f", about {duration(left)} left" if left else ""
        print(f"[{i}/{len(todo)}] {job.kind} {job.name} -> {job.folder(runs)}{eta}", flush=True)
        start = time.perf_counter()
        try:
            run_job(job, runs, config)
            seconds = round(time.perf_counter() - start, 1)
            timed[job.name] = (job.kind, seconds)
            atomic_write_json(job.folder(runs) / "job.json",
                              {"name": job.name, "key": job.key, "kind": job.kind, "seconds": seconds})  # fmt: skip
        except MissingInput as exc:
            skipped[job.name] = str(exc)
            print(f"skipped {job.name}: {exc}")
    if config.name in ("figure5", "all"):
        figure5(runs, out, Path(config.figure5_json) if config.figure5_json else None)
    make_output_dir(out, flag="--out")
    written = aggregate(jobs, config, runs, out, time.perf_counter() - started, skipped)
    print(f"wrote {out}/: {', '.join(written)}")
    return {"jobs": len(jobs), "ran": len(todo) - len(skipped), "skipped": skipped,
            "wall_s": time.perf_counter() - started}  # fmt: skip


def figure5(runs: Path, out: Path, given: Path | None = None) -> None:
    """The data-loader benchmark (bench/bench_sources.py, once: its JSON is kept in RUNS; or the `given` JSON of an
    earlier run of it), then bench/figure5.py's tables and figure into OUT/figure5, and OUT/figure5/source.json
    naming the measurement. Both live in a source checkout: bench/ is not installed."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "bench" / "figure5.py").exists():
        raise InputError("figure5 runs bench/figure5.py, which only a source checkout has: run from a clone")
    measured = given or runs / "figure5" / "bench_sources.json"
    if not measured.exists():
        print(f"figure5: benchmarking the data sources (pytest bench/bench_sources.py) -> {measured}", flush=True)
        partial = measured.with_suffix(".partial.json")
        partial.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pytest", "bench/bench_sources.py", "-q", "-p", "no:cacheprovider",
                        f"--benchmark-json={partial.resolve()}"], cwd=root, check=True)  # fmt: skip
        partial.rename(measured)
    subprocess.run([sys.executable, "-m", "bench.figure5", str(measured.resolve()), "--out", str((out / "figure5")
                    .resolve())], cwd=root, check=True)  # fmt: skip
    run_info = json.loads(measured.read_text())
    atomic_write_json(out / "figure5" / "source.json", {
        "json": str(given) if given else "measured by this runner (pytest bench/bench_sources.py)",
        "commit": run_info.get("commit_info", {}).get("id"), "dirty": run_info.get("commit_info", {}).get("dirty"),
        "datetime": run_info.get("datetime"), "cpu": run_info.get("machine_info", {}).get("cpu", {}).get("brand_raw"),
    })  # fmt: skip
