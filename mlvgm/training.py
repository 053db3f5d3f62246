"""The training loop of `python -m mlvgm.train`: `train(config, run_dir)` builds the run's objects with
mlvgm.recipe, trains (data parallel under torchrun), checkpoints, evaluates with mlvgm.evaluation and writes
the run folder. The command's front (mlvgm.train) checks the arguments before this module loads torch.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from mlvgm import plugins
from mlvgm.checkpoint import load_checkpoint, save_checkpoint
from mlvgm.data.sources import ContinuousSampling
from mlvgm.distributed import agree_min, barrier, init_distributed
from mlvgm.errors import InputError
from mlvgm.evaluation import evaluate_run
from mlvgm.hostmem import retain_freed_memory
from mlvgm.io import atomic_write_json, atomic_write_text, make_output_dir
from mlvgm.metrics import MetricsLog
from mlvgm.plots import loss_curve
from mlvgm.progress import Progress, duration
from mlvgm.provenance import provenance, provenance_line
from mlvgm.recipe import (
    build_method,
    build_optimizer,
    build_source,
    kernels_used,
    learning_rate,
    metric_names,
    peak_lr,
    step_forward,
    use_amp,
)
from mlvgm.runs import has_checkpoint
from mlvgm.train_config import TrainConfig
from mlvgm.train_step import TrainStep, channels_last
from mlvgm.view_audit import audit_views, views_line

_log = logging.getLogger("mlvgm.train")  # the command's name: its lines are the command's, as before the move

# Steps timed after the first (which compiles) before the run's speed is known: the ETA line and the budget.
PROBE_STEPS = 5
# A run under a time budget checks it again every so many steps, at its mean pace since the probe began:
# a machine that slows down (another job starts) still ends in time.
BUDGET_CHECK_EVERY = 10
# Evaluation costs about this many training steps per 2 x batch images it embeds (a forward pass is about
# a third of a training step; the rest is rendering and the probes), twice that after bf16 steps: the
# probes embed in fp32.
EVAL_STEPS_PER_BATCH = 0.4


def steps_in_budget(*, budget_s: float, elapsed_s: float, step_s: float, done: int, planned: int,
                    eval_s: float) -> int:  # fmt: skip
    """The steps a run trains in all: `planned`, or fewer when the rest at `step_s` seconds a step, plus
    the evaluation, would not end within `budget_s` of its start (never fewer than `done`)."""
    left = budget_s - elapsed_s - eval_s
    return max(done, min(planned, done + math.floor(max(left, 0.0) / step_s)))


def estimated_eval_s(config: TrainConfig, step_s: float, *, amp: bool) -> float:
    """Seconds the end-of-run evaluation takes, from the measured step time (0 when it is off)."""
    if not config.evaluate:
        return 0.0
    images = 2 * (config.eval_train + config.eval_test)  # trained and random-init encoders
    return EVAL_STEPS_PER_BATCH * (2 if amp else 1) * images / (2 * config.batch_size) * step_s


def _cs_path(source) -> dict:
    """The Continuous-Sampling path this run takes and why, for its record (empty for an image folder)."""
    if not isinstance(source, ContinuousSampling):
        return {}
    path = source.path
    return {"mode": path.mode, "overlap": path.overlap, "why": path.why, "line": path.line()}


class TrainingDiverged(InputError):
    """The loss (or the weights) became NaN or infinite: one line naming the step, the last finite loss and
    what to try; the run folder keeps its last good checkpoint."""


class LossWatch:
    """The first step whose loss was not finite, and the last finite loss before it, kept on the device: the
    step never waits for the host, and `check` reads them (one sync) only where a decision needs it."""

    NEVER = 2**62  # what a rank that saw no bad step offers agree_min

    def __init__(self, device: torch.device) -> None:
        self.bad_step = torch.zeros((), dtype=torch.int64, device=device)  # 0: none yet (steps count from 1)
        self.bad_loss = torch.zeros((), device=device)
        self.last_loss = torch.full((), math.nan, device=device)
        self.last_step = torch.zeros((), dtype=torch.int64, device=device)

    def update(self, loss: torch.Tensor, step: int) -> None:
        """Record the loss of `step` (1-based, as in metrics.csv)."""
        value = loss.detach().float()
        finite, clean = torch.isfinite(value), self.bad_step == 0
        good, first_bad = finite & clean, ~finite & clean
        self.last_loss = torch.where(good, value, self.last_loss)
        self.last_step = torch.where(good, step, self.last_step)
        self.bad_loss = torch.where(first_bad, value, self.bad_loss)
        self.bad_step = torch.where(first_bad, step, self.bad_step)

    def check(self, model: nn.Module | None, *, step: int, world: int, lr: str, kept: int | None) -> None:
        """TrainingDiverged when any rank's loss was not finite by `step`, or (given `model`, before a checkpoint
        or the evaluation) its weights are not: every rank calls this at the same steps and all stop together."""
        bad = int(self.bad_step) or self.NEVER
        weights = model is not None and bad == self.NEVER and not _finite(model)
        if agree_min(step if weights else bad, world) == self.NEVER:
            return
        last = (f"the last finite loss was {float(self.last_loss):.6g} at step {int(self.last_step)}"
                if int(self.last_step) else "no step had a finite loss")  # fmt: skip
        what = (f"the weights became NaN or infinite by step {step} ({last})" if weights or bad == self.NEVER
                else f"the loss became {float(self.bad_loss)} at step {bad} ({last})")  # fmt: skip
        kept_line = f"the checkpoint of step {kept} is kept" if kept else "no checkpoint was written"
        raise TrainingDiverged(f"training diverged: {what}; stopped with nothing evaluated, {kept_line}: start a new "
                               f"run with a lower --base_lr (this run's is {lr}), e.g. 10x lower")  # fmt: skip


def _finite(model: nn.Module) -> bool:
    """Whether every floating-point parameter and buffer of `model` is finite (one host sync)."""
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()) if tensors else True


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    preset: str = "",
    stop_at: int | None = None,  # stop before this step, as if interrupted (tests, time limits)
    progress: bool | None = None,  # a bar (True), log lines (False); None: a bar on a terminal
    clock: Callable[[], float] = time.perf_counter,  # seconds: the time budget, ETA and speeds read it
) -> dict:
    """Train in run_dir (created once every input is checked, or resumed from its checkpoint); returns the
    run's summary."""
    started = clock()
    dist_info = init_distributed(config.device, config.batch_size)
    rank, world, device, lead = dist_info.rank, dist_info.world, dist_info.device, dist_info.lead
    run_dir = Path(run_dir)
    torch.manual_seed(config.seed)  # the initial weights
    method = channels_last(build_method(config).to(device), device)
    lr0 = peak_lr(config)
    optimizer = build_optimizer(config, method.param_groups(lr0))
    source = build_source(config, rank=rank, world=world, device=device)  # loads the generator, checks levels
    steps_per_epoch = source.steps_per_epoch
    total = planned = config.epochs * steps_per_epoch
    start_step, elapsed_before, kept = 0, 0.0, None
    if resume and has_checkpoint(run_dir):
        saved = load_checkpoint(run_dir, method, optimizer)
        start_step, elapsed_before = saved["step"], saved.get("elapsed_s") or 0.0
        total = saved.get("total_steps") or planned
        kept = start_step
    elif resume:
        _log.info(f"{run_dir} has no checkpoint yet: starting its run again from step 0")
    model: nn.Module = method
    if world > 1:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    amp = use_amp(config, device)
    trainer = CapturedStep(model, step_forward(model, config, device), optimizer, amp=amp)

    record = provenance(dataclasses.asdict(config))
    record.update(preset=preset, world_size=world, steps_per_epoch=steps_per_epoch, total_steps=planned, amp=amp,
                  kernels=kernels_used(config, device, cs_compiled=isinstance(source, ContinuousSampling)
                                       and source.path.compile),
                  cs_path=_cs_path(source),
                  host_memory_retained=device.type == "cpu" and retain_freed_memory())  # fmt: skip
    if lead:
        make_output_dir(run_dir)  # only now: every input has been checked, so bad input leaves no folder
        _log.info(provenance_line(record))
        if record["cs_path"]:
            _log.info(record["cs_path"]["line"])
        _log.info(
            f"run {run_dir}: {config.method} {config.arch} (width {config.width}), {total} steps of "
            f"{config.batch_size} ({steps_per_epoch} per epoch), "
            f"{f'resuming at step {start_step}' if start_step else 'from step 0'}, "
            f"bf16 {'on' if amp else 'off'}, {device}"
        )
        atomic_write_json(run_dir / ("config.json" if not resume else "resume.json"), record)
        if isinstance(source, ContinuousSampling) and config.views != "none":
            report_views(source, config, run_dir)
    fields = ["step", "epoch", "loss", "lr", "pairs_per_s", "elapsed_s", *metric_names(config)]
    log = MetricsLog(run_dir / "metrics.csv", fields, start_step=start_step, enabled=lead)

    batches = source.iterate(start_step)
    bar = Progress(total, desc="train", unit="step", initial=start_step, enabled=lead, terminal=progress)
    every = config.checkpoint_every or steps_per_epoch
    method.train()
    session = last_time = last_checkpoint = clock()
    probe_from = None  # (time, step) after the first step of this session, which compiles
    step, last_step, loss = start_step, start_step, None
    watch, lr_text = LossWatch(device), f"{config.base_lr:g}"
    try:  # a diverged run stops with its files closed, its last good checkpoint kept and nothing evaluated
        while step < total and (stop_at is None or step < stop_at):
            lr = learning_rate(config, step, steps_per_epoch, total)
            view_a, view_b = next(batches)
            loss, metrics = trainer(view_a, view_b, lr=lr)
            method.after_step(step, total)
            step += 1
            watch.update(loss, step)
            now = clock()
            if probe_from is None:
                probe_from = (now, step)
            elif (timed := step - probe_from[1]) == PROBE_STEPS or (
                config.budget_minutes and timed > PROBE_STEPS and timed % BUDGET_CHECK_EVERY == 0
            ):
                total = _plan(config, lead=lead, world=world, step=step, total=total, planned=planned,
                              step_s=(now - probe_from[0]) / timed, amp=amp, elapsed_s=elapsed_before + now - started,
                              first=timed == PROBE_STEPS)  # fmt: skip
                bar.set_total(total)
            if step % config.log_every == 0 or step == total:
                watch.check(None, step=step, world=world, lr=lr_text, kept=kept)  # the row's loss is read anyway
                speed = (step - last_step) * config.batch_size / (now - last_time)
                row = {"step": step, "epoch": round(step / steps_per_epoch, 4), "loss": float(loss.detach()), "lr": lr,
                       "pairs_per_s": round(speed, 2), "elapsed_s": round(elapsed_before + now - started, 3),
                       **{k: float(v) for k, v in metrics.items()}}  # fmt: skip
                log.write(row)
                bar.update(step - bar.done, loss=row["loss"], lr=lr, pairs_per_s=round(speed, 1))
                last_step, last_time = step, now
            due = step % every == 0 or step == total
            if config.checkpoint_minutes and now - last_checkpoint >= 60 * config.checkpoint_minutes:
                due = True
            if due:
                watch.check(method, step=step, world=world, lr=lr_text, kept=kept)  # never checkpoint a NaN
                if lead:
                    extra = {"epoch": step / steps_per_epoch, "elapsed_s": round(elapsed_before + now - started, 3),
                             "total_steps": total}  # fmt: skip
                    save_checkpoint(run_dir, method, optimizer, step=step, extra=extra)
                kept = step
                barrier(world)
                last_checkpoint = clock()
        watch.check(method, step=step, world=world, lr=lr_text, kept=kept)  # what stop_at or the end leaves
    except TrainingDiverged:
        bar.close()
        log.close()
        batches.close()
        raise
    bar.update(step - bar.done)
    bar.close()
    log.close()
    batches.close()  # stops DataLoader workers now rather than at garbage collection
    now = clock()
    trained = step - start_step
    summary = {
        "run": str(run_dir), "steps": step, "total_steps": total, "planned_steps": planned,
        "steps_this_session": trained, "wall_s": round(now - session, 2),
        "elapsed_s": round(elapsed_before + now - started, 2),
        "pairs_per_s": round(trained * config.batch_size / (now - session), 2) if trained else 0.0,
    }  # fmt: skip
    if isinstance(source, ContinuousSampling) and trained:  # what ran: a failed compile or capture falls back
        summary["cs_mode"] = source.mode
    if lead and step == total and config.evaluate:
        table = evaluate_run(config, method.backbone, device=device, progress=progress is not False)
        atomic_write_text(run_dir / "probes.csv", table.to_csv(index=False))
        summary["probes"] = table.to_dict(orient="records")
        summary["elapsed_s"] = round(elapsed_before + clock() - started, 2)
    if lead:
        atomic_write_json(run_dir / "summary.json", {**summary, "provenance": record})
        chance_loss = plugins.method(config.method).chance_loss
        chance = chance_loss(config.batch_size) if chance_loss else None
        title = f"{preset or 'run'}: {config.method}, batch {config.batch_size}"
        loss_curve(pd.read_csv(run_dir / "metrics.csv"), run_dir / "loss.png", title=title, chance=chance)
    return summary


def report_views(source: ContinuousSampling, config: TrainConfig, run_dir: Path) -> dict:
    """What the run's T_z does to its images (mlvgm.view_audit, on pairs of their own stream): one log line,
    views_audit.json in the run folder, and a warning when most of the positives are destroyed."""
    row = audit_views(source.generator, source.views, truncation=config.truncation, seed=config.seed)
    atomic_write_json(run_dir / "views_audit.json", row)
    _log.info(views_line(row))
    if row["destroyed"]:
        _log.warning(f"the views destroy the positives: {row['saturated_excess']:.0%} of their pixels are "
                     "saturated beyond the anchors'; lower --view_sigma (python -m mlvgm.audit picks sigmas that "
                     "keep the image)")  # fmt: skip
    return row


class CapturedStep(TrainStep):
    """The run's TrainStep with `--cuda_graphs on`: the forward compiled with CUDA graphs, and where that fails on
    the run's first step, one log line, BatchNorm's statistics as they were, and the eager model from then on."""

    def __init__(self, model: nn.Module, forward, optimizer: torch.optim.Optimizer, *, amp: bool) -> None:
        super().__init__(forward, optimizer, amp=amp, graphed=forward is not model)
        self.model, self.first = model, True

    def forward_backward(self, *inputs, lr: float | None = None):
        first, self.first = self.first, False
        if not (first and self.graphed):
            return super().forward_backward(*inputs, lr=lr)
        buffers = [b.detach().clone() for b in self.model.buffers()]
        try:
            return super().forward_backward(*inputs, lr=lr)
        except Exception as exc:  # noqa: BLE001 -- a failed compile or capture: the eager step is the same model
            with torch.no_grad():  # as before the failed attempt
                for buffer, saved in zip(self.model.buffers(), buffers, strict=True):
                    buffer.copy_(saved)
            text = str(exc).strip()
            _log.warning(f"--cuda_graphs: the training step runs without CUDA graphs ({type(exc).__name__}: "
                         f"{text.splitlines()[0] if text else ''})")  # fmt: skip
            self.forward, self.graphed = self.model, False
            return super().forward_backward(*inputs, lr=lr)


def _plan(config: TrainConfig, *, lead: bool, world: int, step: int, total: int, planned: int, step_s: float,
          amp: bool, elapsed_s: float, first: bool) -> int:  # fmt: skip
    """The steps the run trains in all under its time budget (the same on every rank; a later check only
    ever shortens the run), with the ETA line the first time and a line whenever a later check cuts it."""
    eval_s = estimated_eval_s(config, step_s, amp=amp)
    before = total
    if config.budget_minutes:
        fitted = steps_in_budget(budget_s=60 * config.budget_minutes, elapsed_s=elapsed_s, step_s=step_s, done=step,
                                 planned=total, eval_s=eval_s)  # fmt: skip
        total = agree_min(fitted, world)
    if not lead or (not first and before - total < max(2, before // 20)):  # small later cuts pass quietly
        return total
    pace = f"{step_s:.2f} s a step ({config.batch_size / step_s:.0f} pairs/s)"
    end = duration(elapsed_s + (total - step) * step_s + eval_s)
    if not first:
        _log.info(f"at {pace} since the start, the {config.budget_minutes:g}-minute budget now holds {total} steps "
                  f"(was {before}); done in about {end}")  # fmt: skip
    elif total < planned:
        _log.info(
            f"at {pace}, {planned} steps and the evaluation would not end within the {config.budget_minutes:g}-minute "
            f"budget: training {total} steps instead (the schedule ends there; --budget_minutes 0 trains all "
            f"{planned}); done in about {end}"
        )
    else:
        _log.info(
            f"at {pace}: training ends in about {duration((total - step) * step_s)}"
            + (f", then evaluation takes about {duration(eval_s)}" if eval_s else "")
        )
    return total
