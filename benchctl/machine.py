"""The machine a measurement ran on: CPU threads, affinity and load, and what says it was contended.

Latency is only comparable between runs on quiet machines: a 2-core machine running a training
job next to `benchctl eval` can make one episode 200x slower per step. Every results header records
this snapshot, every episode the load at its end, and the report flags what looks contended.
"""

from __future__ import annotations

import os

import numpy as np

from benchctl.errors import BenchctlError

# An episode whose median step latency exceeds its cell's median by this factor was slowed by
# something outside benchctl (episodes of one cell run the same computation).
SLOW_EPISODE_FACTOR = 2.0
# Latencies below this are dominated by timer and interpreter noise; their spread says nothing.
MIN_FLAGGED_MS = 1.0


def cpus() -> list[int]:
    """CPUs this process may run on (its affinity)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def load_average() -> float:
    """The 1-minute load average (runnable processes, all of the machine)."""
    return round(os.getloadavg()[0], 2)


def snapshot() -> dict:
    """What the results header records about the machine when a cell starts."""
    import torch

    allowed = cpus()
    return {
        "cpu_count": os.cpu_count(),
        "affinity": allowed,
        "torch_threads": torch.get_num_threads(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "contended_at_start": os.getloadavg()[0] > len(allowed),
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


def slow_episodes(p50_ms: np.ndarray) -> np.ndarray:
    """Boolean mask over one cell's episodes: median step latency > SLOW_EPISODE_FACTOR x the cell's.

    p50_ms: (episodes,) each episode's median planning latency in ms.
    """
    p50_ms = np.asarray(p50_ms, dtype=float)
    if len(p50_ms) < 2:
        return np.zeros(len(p50_ms), dtype=bool)
    typical = np.nanmedian(p50_ms)
    return (p50_ms > SLOW_EPISODE_FACTOR * typical) & (p50_ms > MIN_FLAGGED_MS)


def overloaded(load_avg: float | None, cpu_count: int) -> bool:
    """More runnable processes than CPUs: benchctl's threads had to wait for a core."""
    return load_avg is not None and load_avg > cpu_count
