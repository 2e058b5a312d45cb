"""The one error type users see: a single actionable line, printed by the CLI with exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchctlError(Exception):
    """Bad input or an unusable file. The message is one line: what is wrong and how to fix it.

    `notes`: lines the CLI prints before it (what was looked for, commands that would help).
    """

    def __init__(self, message: str, notes: list[str] | None = None):
        super().__init__(message)
        self.notes = notes or []


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown(kind: str, word: str, choices: Iterable[str]) -> BenchctlError:
    """Error for a name that is not among `choices`, listing them and suggesting the closest."""
    choices = sorted(choices)
    return BenchctlError(f"unknown {kind} {word!r}{did_you_mean(word, choices)}; choose from: {', '.join(choices)}")
