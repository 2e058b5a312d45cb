"""The `benchctl` command: parse options, call the library, render with rich. The only package that prints:
one module per group of commands, each registering its commands on the shared typer app."""

from __future__ import annotations

import sys

import typer

from benchctl.cli.console import INTERRUPTED, app, err, fail, os_message
from benchctl.errors import BenchctlError
from benchctl.runtime import keep_freed_memory

# isort: off
# imported for their commands, in the order `benchctl --help` lists them
from benchctl.cli import evaluation, report, training, analysis, inspection  # noqa: F401

# isort: on


def main() -> None:
    """Console entry point: bad input is one line on stderr and exit code 2, never a traceback.

    Only typer's public names are caught: typer >= 0.29 carries its own click, so `click` is not
    importable on a fresh install.
    """
    keep_freed_memory()
    try:
        code = app(standalone_mode=False)  # outside standalone mode, typer returns typer.Exit's code
        if isinstance(code, int) and code:
            sys.exit(code)
    except BenchctlError as exc:
        for note in exc.notes:
            err.print(note, markup=False, highlight=False)
        fail(str(exc))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        err.print("interrupted: finished work is saved; rerun the same command to resume", markup=False)
        sys.exit(INTERRUPTED)
    except typer.TyperException as exc:  # usage errors: unknown option, bad or missing value
        message = exc.format_message()
        if not message:  # no arguments: the help was printed
            sys.exit(exc.exit_code)
        fail(f"{message} (see --help)")
    except OSError as exc:  # a path the user gave: read-only, a file where a folder belongs, ...
        fail(os_message(exc))


if __name__ == "__main__":
    main()
