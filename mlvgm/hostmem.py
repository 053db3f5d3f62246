"""Host memory: keep the memory of freed tensors in the process instead of handing it back to the OS.

glibc's malloc serves a request above its mmap threshold (adaptive, at most 32 MiB) with fresh pages from
mmap and unmaps them on free, and trims the top of its heap once more than the trim threshold is free. A
CPU training step allocates and frees tensors of tens of MiB every step (512 images of 64 px are 25 MiB;
the shapes world's compiled render holds larger buffers), so with the defaults every step faults its
memory in again, page by page, zero-filled by the kernel: on a CPU that cost nearly half of a
Continuous-Sampling batch (results/bench). FFCV keeps its own buffers between batches for the same reason.

`retain_freed_memory()` sets both thresholds so that freed blocks stay in the heap, for the rest of the
process (and the worker processes it forks). The cost: the process keeps its peak footprint. Training
(`mlvgm.train.train`, recorded as `host_memory_retained` in its provenance) and `python -m
mlvgm.quantify` call it on the CPU, as does the loader benchmark for every source alike; the rest of the
library never does on its own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the heap: every tensor a step allocates, short of an absurd one.
_KEEP_UP_TO = 2**31 - 1  # an int: mallopt's argument


@functools.cache
def retain_freed_memory() -> bool:
    """Keep freed memory in this process (glibc only). True if set, False where the C library is not glibc
    (musl, macOS, Windows: nothing to change there, or no such switch)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        # Only glibc has gnu_get_libc_version: other C libraries' mallopt take other parameters, or none.
        if not hasattr(libc, "gnu_get_libc_version"):
            return False
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Setting the mmap threshold fixes it (no more adapting), and the trim threshold keeps the heap's top.
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_UP_TO)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_UP_TO))
