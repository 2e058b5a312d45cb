"""Shared fixtures: the official reference checkpoints in ../shared/reference, and a CLI runner.

Files outside the repository (the reference checkpoints, Debian's chromium) are optional in a
user's clone: tests that need them skip, saying what is missing. CI sets
BENCHCTL_REQUIRE_EXTERNAL=1, which turns every such skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "disable")  # state-based tests need no OpenGL context
# One torch thread here and in every benchctl the tests start: the tests' models are small, and on a
# machine busy with other work (the training queue) a second intra-op thread spins instead of helping:
# a 1000-step training of a 32-unit agent took over 8 CPU-minutes with two threads, 25 s with one.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
REFERENCE = Path(os.environ.get("BENCHCTL_REFERENCE", REPO.parent / "shared" / "reference"))

TDMPC2_MS1 = "tdmpc2-ms1-cartpole-swingup"
TDMPC2_MS5 = "tdmpc2-ms5-reacher-easy"
BMPC_MS5 = "bmpc-ms5-cartpole-swingup"


REQUIRE_EXTERNAL = os.environ.get("BENCHCTL_REQUIRE_EXTERNAL", "") not in ("", "0")
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def need(present: bool, missing: str) -> None:
    """Skip (a user's clone) or fail (CI) when something outside the repository is missing."""
    if not present:
        (pytest.fail if REQUIRE_EXTERNAL else pytest.skip)(f"needs {missing}")


@pytest.fixture(scope="session")
def reference() -> Path:
    need(
        (REFERENCE / f"{TDMPC2_MS1}.pt").exists(),
        f"the official reference checkpoints in {REFERENCE} (../shared/reference; or set BENCHCTL_REFERENCE)",
    )
    return REFERENCE


@pytest.fixture(scope="session")
def chromium() -> tuple[Path, Path]:
    """(browser, driver) of Debian's chromium and chromium-driver, for rendering the HTML report."""
    need(
        CHROMIUM.exists() and CHROMEDRIVER.exists(),
        f"Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): apt-get install chromium chromium-driver",
    )
    return CHROMIUM, CHROMEDRIVER


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


@pytest.fixture(scope="session")
def twelve_cells(tmp_path_factory) -> Path:
    """The 12-cell evaluation (tests/twelve_cells.py) run once, uninterrupted, in one process with
    REFERENCE_EPISODES episodes per cell: the run that the engine, kill and lockstep tests compare
    theirs with (records are seeded per episode, so its first N episodes are any N-episode run's).
    Session fixtures run once per pytest-xdist worker: this one runs once per test run, in a folder
    all workers share."""
    from filelock import FileLock

    from tests.twelve_cells import REFERENCE_EPISODES, eval_args

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # under pytest-xdist: once for all workers of this run
        root = root.parent
    out, done = root / "twelve-cells", root / "twelve-cells.done"
    with FileLock(root / "twelve-cells.lock"):  # a second worker waits for the first's run
        if not done.exists():
            proc = run_cli(*eval_args(out, REFERENCE_EPISODES))
            assert proc.returncode == 0, proc.stderr
            done.touch()
    return out
