"""The results store: one append-only JSON-lines file per cell, crash-safe and resumable.

A cell is (run, suite, task, planner+config, seed); its file lives at
`<out>/<run>/<suite>/<task>/<planner>@<config-hash>/seed-<seed>.jsonl`. Line 1 is the header
(provenance); every further line is one finished episode, flushed and fsynced before the next
episode starts. A torn last line (a crash mid-write) is dropped and reported, never misread.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchctl.errors import BenchctlError

# Header fields that must agree for a resumed cell to continue the same experiment.
IDENTITY = ("suite", "task", "planner", "planner_config", "checkpoint_sha256", "device", "augment", "dtype")
DEFAULTS = {"dtype": "float32"}  # what a header written before a field existed meant by its absence


def config_hash(planner: str, config: dict[str, Any]) -> str:
    """8 hex digits identifying a planner and its resolved config."""
    text = json.dumps({"planner": planner, "config": config}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def point_label(planner: str, point: dict[str, Any]) -> str:
    """A sweep point's method name, `dream_mpc[horizon=3,iterations=2]`; the planner's name alone for {}."""
    if not point:
        return planner
    return f"{planner}[{','.join(f'{k}={v}' for k, v in point.items())}]"


def cell_path(out: Path, run: str, suite: str, task: str, planner: str, config: dict[str, Any], seed: int) -> Path:
    return Path(out) / run / suite / task / f"{planner}@{config_hash(planner, config)}" / f"seed-{seed}.jsonl"


@dataclass
class CellFile:
    """An opened cell: its header, the episodes already on disk, and what was repaired on open."""

    path: Path
    header: dict[str, Any]
    episodes: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def done(self) -> set[int]:
        return {int(e["episode"]) for e in self.episodes}

    def append(self, record: dict[str, Any]) -> None:
        """Write one episode line and make it durable before returning."""
        line = json.dumps(record, separators=(",", ":"), allow_nan=False)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.episodes.append(record)


def read_cell(path: Path, strict: bool = True) -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[str], int]:
    """(header, episodes, warnings, bytes of intact content) of a cell file, without changing it.

    A torn last line (no newline, or not JSON) is dropped with a warning. A damaged line before it
    is an error when `strict` (resuming must not build on it), else skipped with a warning.
    """
    data = path.read_bytes()
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # tail: bytes after the last newline ("" if none)
    header: dict | None = None
    episodes: list[dict] = []
    warnings: list[str] = []
    good = 0
    for number, raw in enumerate(complete, start=1):
        try:
            obj = json.loads(raw)
            if not isinstance(obj, dict) or (number > 1 and not isinstance(obj.get("episode"), int)):
                raise ValueError
        except ValueError:
            if number == len(complete) and not tail:
                warnings.append(f"{path}: dropped a torn last line (line {number})")
                return header, episodes, warnings, good
            if strict:
                raise BenchctlError(
                    f"{path} line {number} is not an episode record; move the file away to rerun that cell"
                ) from None
            warnings.append(f"{path}: skipped malformed line {number}")
            continue
        if number == 1:
            if obj.get("type") != "header":
                if strict:
                    raise BenchctlError(
                        f"{path} does not start with a benchctl header; move the file away to rerun that cell"
                    )
                warnings.append(f"{path}: no benchctl header; file skipped")
                return None, [], warnings, 0
            header = obj
        else:
            episodes.append(obj)
        good += len(raw) + 1
    if tail:
        warnings.append(f"{path}: dropped a torn last line (line {len(complete) + 1})")
    return header, episodes, warnings, good


def open_cell(path: Path, header: dict[str, Any]) -> CellFile:
    """Open (or create) a cell for appending, checking that an existing file is the same experiment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size > 0:
        old, episodes, warnings, good = read_cell(path)
        if old is not None:
            warnings = [f"{w}; that episode will be rerun" if "torn" in w else w for w in warnings]
            for key in IDENTITY:
                if old.get(key, DEFAULTS.get(key)) != header.get(key, DEFAULTS.get(key)):
                    raise BenchctlError(
                        f"{path} holds results with a different {key} ({old.get(key)!r} vs {header.get(key)!r}); "
                        "pass --run NAME or --out DIR to keep the two apart"
                    )
            if good < path.stat().st_size:
                with open(path, "r+b") as f:  # cut the torn line so appends start on a clean line
                    f.truncate(good)
                    f.flush()
                    os.fsync(f.fileno())
            unique: dict[int, dict] = {}
            for e in episodes:
                unique.setdefault(int(e["episode"]), e)
            return CellFile(path, old, list(unique.values()), warnings)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(header, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(path.parent)
    return CellFile(path, header)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
