"""Checks the weights loaders share: a file's memory is bounded by its size, and its tensors are finite.

- `check_zip_records`: torch.save's zip format stores every record as is (torch's writer never compresses),
  and torch's reader inflates a compressed one in full; a 4 MB file of deflated zeros would become
  gigabytes before anything checks it. So every record must be stored, its size no larger than the file.
- `check_finite`: a NaN or inf weight renders NaN images silently, far from the file that caused it.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterable

import torch
from torch import Tensor

from mlvgm.errors import InputError

ZIP_MAGIC = b"PK\x03\x04"
_CHUNK = 1 << 24  # elements checked at a time: the isfinite mask costs 16 MB, not a copy of the tensor


def check_zip_records(source: str | os.PathLike | bytes, *, where: str, fix: str) -> None:
    """InputError unless every record of the zip `source` (a path, or the bytes of one) is stored
    uncompressed and no larger than the whole file. A source that is not a zip passes (torch.load reads
    its legacy format, or refuses it, itself)."""
    if isinstance(source, bytes | bytearray):
        head, size, opened = bytes(source[:4]), len(source), io.BytesIO(source)
    else:
        with open(source, "rb") as f:
            head = f.read(4)
        size, opened = os.path.getsize(source), source
    if head != ZIP_MAGIC:
        return
    try:
        with zipfile.ZipFile(opened) as z:
            records = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InputError(f"{where} is not a readable zip ({exc}): {fix}") from None
    for record in records:
        if record.compress_type != zipfile.ZIP_STORED:
            raise InputError(
                f"{where}: zip record {record.filename!r} is compressed (torch.save stores records uncompressed, "
                f"and inflating it could take far more memory than the file's {size:,} bytes): {fix}"
            )
        if record.file_size != record.compress_size or record.file_size > size:
            raise InputError(
                f"{where}: zip record {record.filename!r} claims {record.file_size:,} bytes, more than it holds: {fix}"
            )


def check_finite(tensors: Iterable[tuple[str, Tensor]], *, where: str, fix: str) -> None:
    """InputError naming the first floating-point tensor that holds a NaN or an infinity."""
    for name, tensor in tensors:
        if not tensor.is_floating_point():
            continue
        flat = tensor.detach().reshape(-1)
        for start in range(0, flat.numel(), _CHUNK):
            if not bool(torch.isfinite(flat[start : start + _CHUNK]).all()):
                raise InputError(f"{where}: tensor {name!r} holds NaN or infinite values: {fix}")


__all__ = ["check_finite", "check_zip_records"]
