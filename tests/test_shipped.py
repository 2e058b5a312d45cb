"""The shipped agents in checkpoints/: manifest hashes match, every agent loads and fits its task."""

from __future__ import annotations

import hashlib
import tomllib

from benchctl.agents import describe_checkpoint
from benchctl.suites import load_suite, make_env
from tests.conftest import REPO

CHECKPOINTS = REPO / "checkpoints"


def test_manifest_matches_the_files_and_every_agent_fits_its_task():
    manifest = tomllib.loads((CHECKPOINTS / "manifest.toml").read_text())
    listed = {entry["path"] for entry in manifest["agent"]}
    on_disk = {str(p.relative_to(CHECKPOINTS)) for p in CHECKPOINTS.rglob("*.pt")}
    assert listed == on_disk and listed
    for entry in manifest["agent"]:
        path = CHECKPOINTS / entry["path"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], entry["path"]
        info = describe_checkpoint(path)
        assert info.family == entry["family"]
        env = make_env(load_suite(entry["suite"]).task(entry["task"]))
        assert (info.dims.obs_dim, info.dims.action_dim) == (env.obs_dim, env.action_dim)
        assert set(entry["returns"]) == {"policy", "mppi", "dream_mpc"}
