"""Process-wide settings that make CPU training and planning faster; called once by the CLI and the
benchmark scripts, never on import."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 << 20  # glibc's largest accepted value on 64-bit
TRIM_THRESHOLD = 256 << 20


def keep_freed_memory() -> bool:
    """Let glibc reuse freed tensor memory instead of returning it to the kernel.

    By default glibc serves allocations above ~128 KiB-32 MiB with fresh mmap pages and trims the heap
    on free, so every activation of a training update (0.1-2 MB each) is page-faulted in anew:
    ~1,000 minor faults per 128/128/64 TD-MPC2 update, ~30 with these settings (~5% more updates/s on
    2 cores). Memory above 32 MiB (replay buffers) still comes from mmap and goes back on free.
    Returns whether the settings took effect (False off glibc, e.g. on macOS)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    path = ctypes.util.find_library("c")
    if path is None:
        return False
    libc = ctypes.CDLL(path)
    # mallopt returns 1 on success; fixing the mmap threshold also stops glibc's dynamic adjustment
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
