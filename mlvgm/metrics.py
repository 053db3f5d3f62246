"""A training run's metrics: metrics.csv, one row per log step, and TensorBoard scalars beside it when the
tensorboard package is installed (RUN/tensorboard). On resume the rows after the checkpoint are dropped
first, so the file always describes the weights the run holds."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

_log = logging.getLogger(__name__)


class MetricsLog:
    """path: RUN/metrics.csv; fields: its columns (step first); start_step: the step a run resumes at;
    enabled: False on ranks other than 0 (nothing is written)."""

    def __init__(self, path: Path, fields: list[str], *, start_step: int, enabled: bool) -> None:
        self.path, self.fields, self.enabled = path, fields, enabled
        self.board = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            _log.info("tensorboard is not installed: metrics go to metrics.csv only (pip install tensorboard)")
        else:
            self.board = SummaryWriter(str(path.parent / "tensorboard"), purge_step=start_step + 1)
        rows = []
        if start_step > 0 and path.exists():
            with open(path, newline="") as f:
                rows = [row for row in csv.DictReader(f) if int(row["step"]) <= start_step]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore").writerow(row)
        if self.board is not None:
            for key in self.fields[2:]:
                if key in row:
                    self.board.add_scalar(key, row[key], global_step=row["step"])
            self.board.flush()

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
