"""Shared fixtures: the official reference checkpoints in ../shared/reference, and a CLI runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "disable")  # state-based tests need no OpenGL context

REPO = Path(__file__).resolve().parent.parent
REFERENCE = Path(os.environ.get("BENCHCTL_REFERENCE", REPO.parent / "shared" / "reference"))

TDMPC2_MS1 = "tdmpc2-ms1-cartpole-swingup"
TDMPC2_MS5 = "tdmpc2-ms5-reacher-easy"
BMPC_MS5 = "bmpc-ms5-cartpole-swingup"


@pytest.fixture(scope="session")
def reference() -> Path:
    if not (REFERENCE / f"{TDMPC2_MS1}.pt").exists():
        pytest.fail(f"reference checkpoints not found in {REFERENCE}; set BENCHCTL_REFERENCE")
    return REFERENCE


@pytest.fixture
def official_dir(tmp_path: Path, reference: Path) -> Path:
    """A folder in the official naming: cartpole-swingup-1.pt (TD-MPC2 ms1), reacher-easy-1.pt (ms5)."""
    folder = tmp_path / "ckpts"
    folder.mkdir()
    shutil.copy(reference / f"{TDMPC2_MS1}.pt", folder / "cartpole-swingup-1.pt")
    (folder / "dmcontrol").mkdir()
    shutil.copy(reference / f"{TDMPC2_MS5}.pt", folder / "dmcontrol" / "reacher-easy-1.pt")
    return folder


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m benchctl ARGS` as a user would; returns the finished process."""
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "benchctl", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env
    )
