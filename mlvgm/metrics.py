"""A training run's metrics: metrics.csv, one row per log step, and TensorBoard scalars beside it when the
tensorboard package is installed (RUN/tensorboard). On resume the rows after the checkpoint are dropped
first, so the file always describes the weights the run holds.

metrics.csv lives in a run folder someone may have sent: a metrics.csv (or tensorboard/) that is a link out of
the folder is refused with one line rather than read or written through, the kept rows must parse (an
integer step, numbers), and the file is rewritten by replacing it (mlvgm.io.atomic_write_text), then
appended to without following links."""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path

from mlvgm.errors import InputError
from mlvgm.io import atomic_write_text, inside, read_bytes_capped

_log = logging.getLogger(__name__)

MAX_BYTES = 256 * 2**20  # a 100-epoch ImageNet-size run logs about 1 MB
DAMAGED = "repair or delete it (resuming without it starts its rows again)"


class MetricsLog:
    """path: RUN/metrics.csv; fields: its columns (step first); start_step: the step a run resumes at;
    enabled: False on ranks other than 0 (nothing is written)."""

    def __init__(self, path: Path, fields: list[str], *, start_step: int, enabled: bool) -> None:
        self.path, self.fields, self.enabled = Path(path), fields, enabled
        self.board = None
        if not enabled:
            return
        folder = self.path.parent
        inside(folder, self.path.name, what="metrics file", fix="remove the link from the run folder")
        if (folder / "tensorboard").is_symlink():
            inside(folder, "tensorboard", what="tensorboard folder", fix="remove the link from the run folder")
        rows = read_rows(self.path, start_step) if start_step > 0 and self.path.exists() else []
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path, text.getvalue())  # replaces the file (or a link inside the folder)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            _log.info("tensorboard is not installed: metrics go to metrics.csv only (pip install tensorboard)")
        else:
            self.board = SummaryWriter(str(folder / "tensorboard"), purge_step=start_step + 1)

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        text = io.StringIO(newline="")
        csv.DictWriter(text, fieldnames=self.fields, extrasaction="ignore").writerow(row)
        # O_NOFOLLOW: should a link replace the file mid-run, appending fails rather than writing through it
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
        with open(fd, "a", newline="") as f:
            f.write(text.getvalue())
        if self.board is not None:
            for key in self.fields[2:]:
                if key in row:
                    self.board.add_scalar(key, row[key], global_step=row["step"])
            self.board.flush()

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def read_rows(path: Path, until: int) -> list[dict[str, str]]:
    """The rows of metrics.csv up to step `until`, each checked to parse (an integer step, numbers in the
    other columns), or InputError naming the row and the fix."""
    data = read_bytes_capped(path, MAX_BYTES, what="metrics file", fix=DAMAGED)
    try:
        reader = csv.DictReader(io.StringIO(data.decode(), newline=""))
        rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path} is not a CSV file ({exc}): {DAMAGED}") from None
    if rows and "step" not in (reader.fieldnames or []):
        raise InputError(f"{path} has no step column: {DAMAGED}")
    kept = []
    for line, row in enumerate(rows, start=2):
        if None in row or any(value is None for value in row.values()):
            raise InputError(f"{path} line {line} does not have one value per column: {DAMAGED}")
        step = row["step"].strip()
        if not step.isdigit() or len(step) > 12:
            raise InputError(f"{path} line {line}: step must be an integer, got {step[:40]!r}: {DAMAGED}")
        for key, value in row.items():
            if key != "step" and value.strip() and not _number(value):
                raise InputError(f"{path} line {line}: {key} must be a number, got {value[:40]!r}: {DAMAGED}")
        if int(step) <= until:
            kept.append(row)
    return kept


def _number(text: str) -> bool:
    try:
        float(text)  # nan and inf included: an older run may have logged a diverging loss
    except ValueError:
        return False
    return True
