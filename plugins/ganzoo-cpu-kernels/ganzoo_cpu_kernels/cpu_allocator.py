"""Freed memory kept in the process for the next step's tensors (``cpu_kernels(reuse_freed_memory=True)``).

PyTorch's CPU tensors come from the C library's ``malloc``. glibc hands blocks above a threshold
(adaptive, at most 32 MiB) straight back to the operating system when they are freed, and trims
the heap's free top; the next step's tensors of the same sizes are then mapped afresh, and each page
is faulted in and zeroed by the kernel on first touch, tens of thousands of times a step for
CycleGAN at 128 px. With a 256 MiB threshold and a 1 GiB trim threshold freed blocks stay in the
heap and are reused: no page faults after the first steps, a faster step with PyTorch's own kernels
too, and about the same peak RSS (README.md). The setting is the process's: it applies to every
later allocation, here and in forked DataLoader workers, and stays for the rest of the process.
"""
from __future__ import annotations

import ctypes
import platform
import sys

#: glibc's ``mallopt`` parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024


def reuse_freed_memory() -> bool:
    """Have glibc's ``malloc`` keep freed blocks for reuse; returns whether it could (Linux with
    glibc only; elsewhere the allocator stays as it is)."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                                 TRIM_THRESHOLD_BYTES))
