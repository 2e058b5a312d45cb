"""The machine a measurement ran on: CPU threads, affinity and load, and what says it was contended.

Latency is only comparable between runs on quiet machines: a 2-core machine running a training
job next to `benchctl eval` can make one episode 200x slower per step. Every results header records
this snapshot, every episode the load at its end, and the report flags cells whose latency spread
says the machine was busy. The load average itself is only recorded: it trails by a minute (a pip
install just before an eval still shows), so it does not decide a flag.
"""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

import numpy as np

from benchctl.errors import BenchctlError

# Latency says a machine was busy when it spreads more than one computation can explain: an
# episode's p95 step latency over WITHIN_EPISODE_FACTOR x its median (every step plans the same
# way), an episode's median over ACROSS_EPISODES_FACTOR x its cell's, or a cell's median over
# ACROSS_CELLS_FACTOR x the median of the same method's cells on other tasks (same agent size).
WITHIN_EPISODE_FACTOR = 3.0
ACROSS_EPISODES_FACTOR = 2.0
ACROSS_CELLS_FACTOR = 3.0
# Latencies below this are dominated by timer and interpreter noise; their spread says nothing.
MIN_FLAGGED_MS = 1.0


def cpus() -> list[int]:
    """CPUs this process may run on (its affinity)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def load_average() -> float:
    """The 1-minute load average (runnable processes, all of the machine)."""
    return round(os.getloadavg()[0], 2)


# CPU flags that mean bfloat16 matrix products run in hardware: x86 AVX512-BF16 or AMX-BF16, Arm's
# BF16 extension. Without them torch's CPU kernels emulate bfloat16 products (about 25x slower than
# float32 on an AVX2-only AMD EPYC), so `--dtype bfloat16` measures the emulation.
BFLOAT16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


@cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's entries of /proc/cpuinfo ({} where there is none: macOS, Windows)."""
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return {}
    entries: dict[str, str] = {}
    for line in path.read_text().split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        entries[key.strip()] = value.strip()
    return entries


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags (x86 "flags", Arm "Features"), or None where the OS does not list them."""
    info = _cpuinfo()
    listed = info.get("flags", info.get("Features"))
    return set(listed.split()) if listed is not None else None


def bfloat16_units() -> bool | None:
    """Whether this CPU multiplies bfloat16 matrices in hardware; None where that cannot be told."""
    flags = cpu_flags()
    return None if flags is None else bool(flags & BFLOAT16_FLAGS)


def cpu_name() -> str:
    """The CPU model and the vector instructions torch's kernels use on it, e.g. "AMD EPYC (AVX2)".

    Latency on the same model name differs with them (a VM may hide the model behind "AMD EPYC"
    on AVX2 and AVX512 hosts alike, ~3x apart in matrix products), so both name the machine."""
    import torch

    model = _cpuinfo().get("model name") or platform.processor() or platform.machine()
    isa = torch.backends.cpu.get_cpu_capability()
    return f"{model} ({isa}{', bfloat16' if bfloat16_units() else ''})"


def bfloat16_warning(dtype: str, device: str) -> str | None:
    """The line a user planning in bfloat16 on a CPU without bfloat16 units should read, else None."""
    if dtype != "bfloat16" or not device.startswith("cpu") or bfloat16_units() is not False:
        return None
    return (
        f"--dtype bfloat16: this CPU ({cpu_name()}) has no bfloat16 matrix instructions (AVX512-BF16, AMX or "
        "Arm BF16); torch emulates them, many times slower than float32: latency measured so says nothing "
        "about bfloat16 hardware (returns are still bfloat16's)"
    )


def snapshot() -> dict:
    """What the results header records about the machine when a cell starts."""
    import torch

    allowed, load = cpus(), os.getloadavg()
    return {
        "cpu": cpu_name(),
        "bfloat16_units": bfloat16_units(),
        "cpu_count": os.cpu_count(),
        "affinity": allowed,
        "torch_threads": torch.get_num_threads(),
        "load_avg": [round(x, 2) for x in load],
        "contended_at_start": load[0] > len(allowed),  # recorded for the reader; it trails, so it flags nothing
    }


def set_threads(threads: int | None) -> None:
    """`--threads N`: torch's intra-op threads, at most the CPUs this process may use."""
    if threads is None:
        return
    import torch

    allowed = len(cpus())
    if not 1 <= threads <= allowed:
        raise BenchctlError(f"--threads {threads}: give 1 to {allowed} (the CPUs this process may run on)")
    torch.set_num_threads(threads)


def slow_episodes(p50_ms: np.ndarray, p95_ms: np.ndarray) -> np.ndarray:
    """Boolean mask over one cell's episodes whose latency spread says the machine was busy.

    p50_ms, p95_ms: (episodes,) each episode's median and 95th-percentile planning latency in ms.
    """
    p50_ms, p95_ms = np.asarray(p50_ms, dtype=float), np.asarray(p95_ms, dtype=float)
    within = (p95_ms > WITHIN_EPISODE_FACTOR * p50_ms) & (p95_ms > MIN_FLAGGED_MS)
    if len(p50_ms) < 2:
        return within
    across = (p50_ms > ACROSS_EPISODES_FACTOR * np.nanmedian(p50_ms)) & (p50_ms > MIN_FLAGGED_MS)
    return within | across


def slow_cells(cell_p50_ms: np.ndarray) -> np.ndarray:
    """Boolean mask over one method's cells (3 or more): median latency far above the method's."""
    cell_p50_ms = np.asarray(cell_p50_ms, dtype=float)
    if len(cell_p50_ms) < 3:
        return np.zeros(len(cell_p50_ms), dtype=bool)
    return (cell_p50_ms > ACROSS_CELLS_FACTOR * np.nanmedian(cell_p50_ms)) & (cell_p50_ms > MIN_FLAGGED_MS)
