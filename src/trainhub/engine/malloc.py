"""Keep the memory of freed tensors in the process from one training step to the next (glibc).

PyTorch allocates CPU tensors with the C library's ``malloc``, and a training step frees and
allocates the same large temporaries (activations, gradients, score matrices) every time. glibc
hands blocks above its ``mmap`` threshold back to the kernel when they are freed, and trims the
top of its heap, so the next step's tensors land on fresh pages: each first write to a 4 KiB page
is a page fault that zeroes it. On the benchmark cases that is 1,000-3,000 faults per step, and
the median step of a two-tower model grows by about a sixth.

:func:`retain_freed_memory` raises both thresholds (blocks up to 64 MiB are kept for reuse, the
heap is trimmed once 256 MiB lie free at its top), as ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` would at start-up; PyTorch's CPU tuning guide suggests jemalloc or
tcmalloc for the same reason. The training loop calls it on the CPU. Freed memory below 64 MiB
then stays with the process for reuse instead of going back to the system; the peak is that of
the largest step either way.

Nothing is changed when ``TRAINHUB_MALLOC_TUNING=0``, when the process was started with its own
glibc malloc settings (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``
or ``GLIBC_TUNABLES``) or another allocator preloaded (``LD_PRELOAD``), or off glibc.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

__all__ = ["retain_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

MMAP_THRESHOLD = 64 << 20  # bytes: larger blocks are mapped on their own and unmapped when freed
TRIM_THRESHOLD = 256 << 20  # bytes of free heap top kept before it is given back

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt() parameters, <malloc.h>
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES",
                  "LD_PRELOAD")
_applied: bool | None = None
applied_mmap_threshold: int | None = None  # what glibc accepted, once applied


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True when they are in effect."""
    global _applied, applied_mmap_threshold
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("TRAINHUB_MALLOC_TUNING", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux") or any(os.environ.get(k) for k in _USER_SETTINGS):
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Older glibc caps the mmap threshold at 32 MiB (HEAP_MAX_SIZE / 2) and refuses more.
    for threshold in (MMAP_THRESHOLD, 32 << 20):
        if mallopt(_M_MMAP_THRESHOLD, threshold) == 1:
            applied_mmap_threshold = threshold
            break
    trimmed = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    _applied = applied_mmap_threshold is not None and trimmed
    return _applied
