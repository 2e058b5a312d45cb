"""The console every command writes to, the typer app they register on, and small parsing helpers."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn, Protocol

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from benchctl.errors import BenchctlError

app = typer.Typer(
    name="benchctl",
    help="Benchmark test-time planners on learned world models.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)
out = Console()
if not out.is_terminal:  # piped or logged: don't squeeze tables into 80 columns
    out = Console(width=160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


MAX_EPISODES = 100_000  # per cell; a larger number is a typo, not a benchmark

INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


class Interruptible(Protocol):
    interrupted: bool  # a live view sets it by Ctrl-C and raises KeyboardInterrupt at its next episode


@contextmanager
def ctrl_c_remembered(view: Interruptible) -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt as usual and also sets `view.interrupted`, which the live view
    raises again after the episode under way: a KeyboardInterrupt raised while C code (torch, numpy)
    calls back into Python can be cleared there (lost in 2 of 210 interrupted evaluations here). Left
    alone where Ctrl-C is ignored (a shell's background job) or handled by someone else."""
    on_main = threading.current_thread() is threading.main_thread()
    if not on_main or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def pressed(signum, frame):
        view.interrupted = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, pressed)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def split_csv(text: str | None) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def parse_seeds(text: str | None) -> list[int]:
    try:
        seeds = [int(s) for s in split_csv(text)]
        if any(not 0 <= s < 2**32 for s in seeds):
            raise ValueError
        return seeds
    except ValueError:
        raise BenchctlError(
            f"--seeds {text}: give integers from 0 to 2^32 - 1 separated by commas, e.g. --seeds 1,2,3"
        ) from None


def progress_bar(unit: str, eta_field: bool = False) -> Progress:
    """A progress bar on stderr: description, bar, done/total `unit`, elapsed and remaining time.

    With `eta_field` the remaining time is the task's `eta` field, set by the caller (rich's own
    estimate assumes every unit costs the same).
    """
    remaining = TextColumn("{task.fields[eta]}") if eta_field else TimeRemainingColumn()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        remaining,
        console=err,
    )


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"benchctl: error: {' '.join(message.split())}", markup=False)
    sys.exit(code)


def os_message(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}; choose a writable folder (e.g. --out results) or fix its permissions"
