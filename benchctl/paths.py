"""Output paths the user names: checked before any work starts, so a bad one costs nothing."""

from __future__ import annotations

import os
import re
from pathlib import Path

from benchctl.errors import BenchctlError

# One folder name: letters, digits, '.', '_', '-'; never '.' or '..' (the run must stay inside --out).
_FOLDER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")


def folder_name(flag: str, name: str) -> str:
    """`name` if it is one safe folder name, else a BenchctlError naming `flag`."""
    if not _FOLDER_NAME.fullmatch(name) or set(name) == {"."}:
        raise BenchctlError(
            f"{flag} {name!r}: give one folder name of letters, digits, '.', '_' and '-' "
            "(it is created inside --out), e.g. --run tdmpc2-h5"
        )
    return name


def writable_dir(flag: str, path: Path) -> Path:
    """Create `path` (and its parents) and check a file can be written in it."""
    if path.exists() and not path.is_dir():
        raise BenchctlError(f"{flag} {path}: that is a file, not a folder; pass a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".benchctl-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BenchctlError(
            f"{flag} {path}: cannot write there ({exc.strerror or exc}); pass a folder you can write to"
        ) from None
    return path


def writable_file(flag: str, path: Path) -> Path:
    """A file path whose folder can be written (created if needed), and which is not a folder itself."""
    if path.is_dir():
        raise BenchctlError(f"{flag} {path}: that is a folder; pass a file path, e.g. {path / 'agent.pt'}")
    writable_dir(flag, path.parent)
    return path
