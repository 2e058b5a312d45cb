"""Headless OpenGL for pixel observations: MuJoCo renders offscreen through EGL or OSMesa.

MuJoCo reads MUJOCO_GL once, when dm_control's renderer is first imported, so the backend is
chosen before that: the user's MUJOCO_GL when it names one (egl, osmesa, glfw), else the first of
EGL and OSMesa that renders a frame in a short child process. The choice is kept in the
environment, so processes this one starts do not probe again.
"""

from __future__ import annotations

import os
import subprocess
import sys

from benchctl.errors import BenchctlError

BACKENDS = ("egl", "osmesa")
DEBIAN = "libegl1 libegl-mesa0 libgl1-mesa-dri (EGL) or libosmesa6 (OSMesa)"
_PROBE = (
    "from dm_control import suite; env = suite.load('cartpole', 'swingup'); "
    "assert env.physics.render(8, 8, camera_id=0).shape == (8, 8, 3)"
)


def _renders(backend: str) -> bool:
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


def choose_gl() -> str:
    """The OpenGL backend pixel suites render with; sets MUJOCO_GL. One-line error when none works."""
    chosen = os.environ.get("MUJOCO_GL", "")
    if chosen in (*BACKENDS, "glfw"):
        return chosen
    if "dm_control._render" in sys.modules or "dm_control.suite" in sys.modules:
        raise BenchctlError(
            f"MUJOCO_GL={chosen or '(unset)'} was fixed when dm_control was imported in this process; "
            "set MUJOCO_GL=egl (or osmesa) before running a pixel suite"
        )
    for backend in BACKENDS:
        if _renders(backend):
            os.environ["MUJOCO_GL"] = os.environ["PYOPENGL_PLATFORM"] = backend
            return backend
    raise BenchctlError(
        f"pixel observations need offscreen OpenGL and neither EGL nor OSMesa works: apt-get install {DEBIAN}"
    )
