"""The jobs of `python -m mlvgm.experiments pilot | miniature` (the pre-registered design of
mlvgm.miniature_design): the plan, running each job not yet done, publishing each finished job's small outputs
where they are committed, and the analysis into tables, a figure and README.md (mlvgm.miniature_report).

A job is done when its outputs are published in OUT/jobs/<job>-<key>/ (job.json, probes.csv and, for a training,
config.json, metrics.csv, summary.json, views_audit.json); the run folders in RUNS hold the checkpoints and are
not committed. So a sweep moved to another machine part-way resumes from a clone: the committed jobs are done.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd

from mlvgm import miniature_design as design
from mlvgm.cli import resolve_device
from mlvgm.errors import InputError
from mlvgm.evaluation import evaluate_run
from mlvgm.experiments_config import ExperimentsConfig
from mlvgm.io import atomic_write_json, atomic_write_text, make_output_dir
from mlvgm.miniature_report import write_report
from mlvgm.paper_jobs import Job, MissingInput, trained_backbone
from mlvgm.progress import duration
from mlvgm.provenance import provenance
from mlvgm.train_config import TrainConfig

PUBLISHED = ("config.json", "metrics.csv", "summary.json", "views_audit.json", "probes.csv")


def chosen_augment(config: ExperimentsConfig) -> str:
    """The sweep's T_x: --augment, else what the committed pilot decided (and only if it said go)."""
    if config.augment:
        return config.augment
    decision = design.pilot_decision()
    if decision is None:
        raise InputError(f"{design.PILOT_DECISION} is missing: run python -m mlvgm.experiments pilot first (it "
                         "chooses the T_x), or give --augment")  # fmt: skip
    if not decision["go"]:
        raise InputError(f"the pilot said no-go ({decision['why']}): the sweep does not run; see "
                         "results/paper/pilot/README.md")  # fmt: skip
    return str(decision["augment"])


def base_fields(config: ExperimentsConfig, seed: int) -> dict[str, object]:
    """What every job of a seed shares: the encoder, optimiser, steps, probe sets (TrainConfig fields)."""
    batch = config.batch
    return {**design.BASE, "method": config.method, "width": config.width, "batch_size": batch, "seed": seed,
            "epochs": 1, "epoch_images": config.budget * batch, "evaluate": False, "budget_minutes": 0.0,
            "checkpoint_minutes": 5.0, "checkpoint_every": max(1, config.budget // 5),
            "eval_train": config.eval_train, "eval_test": config.eval_test}  # fmt: skip


def arm_fields(arm: str) -> dict[str, object]:
    return design.m_views() if arm == "M" else dict(design.ARMS[arm])


def plan_miniature(config: ExperimentsConfig) -> list[Job]:
    """The pilot: {S, M} x PILOT_TX at PILOT_SEED; the miniature: every arm at seeds 0..N-1 with the chosen T_x.
    Each seed's untrained network is probed once (job init/sS), not beside every run."""
    pilot = config.name == "pilot"
    seeds = (design.PILOT_SEED,) if pilot else tuple(range(config.seeds))
    cells = [(arm, tx) for arm in design.PILOT_ARMS for tx in design.PILOT_TX] if pilot else \
        [(arm, chosen_augment(config)) for arm in config.arms]  # fmt: skip
    prefix = config.name if config.method == "simclr" else f"{config.name}/{config.method}"
    jobs = []
    for seed in seeds:  # seed by seed, so a sweep cut short still holds whole pairs
        base = base_fields(config, seed)
        jobs.append(Job("init", f"{prefix}/init/s{seed}", {**base, "views": "none", "augment": "none"}))
        for arm, tx in cells:
            name = f"{prefix}/{arm}-{tx}/s{seed}" if pilot else f"{prefix}/{arm}/s{seed}"
            jobs.append(Job("train", name, {**base, **arm_fields(arm), "augment": tx}))
    return jobs


def published(job: Job, out: Path) -> Path:
    return out / "jobs" / job.folder(Path(".")).name


def done(job: Job, out: Path) -> bool:
    return (published(job, out) / "job.json").is_file()


def run_job(job: Job, runs: Path, config: ExperimentsConfig) -> pd.DataFrame:
    """Train (or resume) and probe a training job, or probe a seed's untrained network; the probe table."""
    folder = job.folder(runs)
    device = resolve_device(config.device)
    trained = TrainConfig(**{**job.config, "device": config.device})
    if job.kind == "init":
        folder.mkdir(parents=True, exist_ok=True)
        return evaluate_run(trained, None, device=device, progress=False, encoders=("random init",))
    backbone = trained_backbone(job, trained, folder, device)
    return evaluate_run(trained, backbone, device=device, progress=False, encoders=("trained",))


def publish(job: Job, runs: Path, out: Path, table: pd.DataFrame, seconds: float) -> None:
    """Copy the job's small outputs to OUT/jobs/<job>-<key>/ (job.json last: it marks the job done), and append
    one row to OUT/runs.csv (so a sweep cut short by a time limit still returns every finished run)."""
    target = published(job, out)
    target.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target / "probes.csv", table.to_csv(index=False))
    for name in PUBLISHED[:-1]:
        if (job.folder(runs) / name).is_file():
            shutil.copyfile(job.folder(runs) / name, target / name)
    record = provenance({"job": job.name})
    atomic_write_json(target / "job.json", {"name": job.name, "key": job.key, "kind": job.kind,
                                            "config": job.config, "seconds": round(seconds, 1),
                                            "git": record["git"], "hardware": record["hardware"],
                                            "torch": record["software"]["torch"], "time": record["time"],
                                            "command": record["command"]})  # fmt: skip
    row = {"job": job.name, "key": job.key, "seconds": round(seconds, 1)}
    for _, r in table.iterrows():
        row[f"{r['factor']}_linear"] = r["linear_top1"]
        row[f"{r['factor']}_knn"] = r["knn_top1"]
    line = pd.DataFrame([row])
    path = out / "runs.csv"
    line.to_csv(path, mode="a", header=not path.exists(), index=False)


def outputs_only(git: dict, out: Path) -> bool:
    """Whether a job's checkout was dirty only with this experiment's own published outputs (files under `out`,
    which the sweep writes into its clone): known from the changed paths its record lists (mlvgm.provenance)."""
    changed = git.get("changed")
    if not git.get("dirty") or changed is None or git.get("changed_count", len(changed)) > len(changed):
        return False
    prefix = Path(out).as_posix().rstrip("/") + "/"
    return all(path.startswith(prefix) for path in changed)


def results(jobs: list[Job], out: Path) -> pd.DataFrame:
    """Every published job's probes, one row per (job, factor): arm, T_x, seed, linear and kNN top-1."""
    frames = []
    for job in jobs:
        if done(job, out):
            probes = pd.read_csv(published(job, out) / "probes.csv")
            record = json.loads((published(job, out) / "job.json").read_text())
            arm = job.name.split("/")[-2].split("-")[0]
            augment = job.config["augment"] if arm != "init" else ""
            metrics = published(job, out) / "metrics.csv"
            last = pd.read_csv(metrics).iloc[-1] if metrics.is_file() else {}
            frames.append(probes.assign(job=job.name, arm=arm, augment=augment, seed=int(job.config["seed"]),
                                        final_loss=last.get("loss", float("nan")),
                                        z_std=last.get("z_std", float("nan")),
                                        seconds=record["seconds"], commit=str(record["git"]["sha"])[:10],
                                        dirty=bool(record["git"]["dirty"]) and not outputs_only(record["git"], out),
                                        own_outputs=outputs_only(record["git"], out),
                                        cpu=str(record.get("hardware", {}).get("cpu", "?"))))  # fmt: skip
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def run_miniature(config: ExperimentsConfig) -> dict:
    """Run every job not yet published (seed by seed), then analyse what is published (mlvgm.miniature_report)."""
    started = time.perf_counter()
    runs, out = Path(config.runs), Path(config.out)
    jobs = plan_miniature(config)
    todo = [] if config.analyse_only else [job for job in jobs if not done(job, out)]
    finished = sum(done(job, out) for job in jobs)
    print(f"{config.name}: {len(jobs)} jobs, {finished} published in {out}/jobs, {len(todo)} to run "
          f"(checkpoints in {runs})")  # fmt: skip
    make_output_dir(runs, flag="--runs")
    make_output_dir(out, flag="--out")
    timed = [json.loads((published(j, out) / "job.json").read_text())["seconds"] for j in jobs
             if done(j, out) and j.kind == "train"]  # fmt: skip
    skipped: dict[str, str] = {}
    for i, job in enumerate(todo, 1):
        left = sum(timed) / len(timed) * sum(j.kind == "train" for j in todo[i - 1 :]) if timed else 0
        eta = f", about {duration(left)} left" if left else ""
        print(f"[{i}/{len(todo)}] {job.kind} {job.name} -> {job.folder(runs)}{eta}", flush=True)
        start = time.perf_counter()
        try:
            table = run_job(job, runs, config)
        except MissingInput as exc:
            skipped[job.name] = str(exc)
            print(f"skipped {job.name}: {exc}")
            continue
        seconds = time.perf_counter() - start
        publish(job, runs, out, table, seconds)
        if job.kind == "train":
            timed.append(seconds)
    written = write_report(config, jobs, results(jobs, out), out, skipped)
    print(f"wrote {out}/: {', '.join(written)}")
    return {"jobs": len(jobs), "ran": len(todo) - len(skipped), "skipped": skipped,
            "wall_s": time.perf_counter() - started}  # fmt: skip
