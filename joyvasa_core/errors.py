"""Errors written for the user, the one line that reports any failure, and the exit codes.

Every entry point (the headless command, the batch command, the live server,
the ComfyUI nodes) reports a failure as one line that names the cause and
the fix: :func:`one_line`; a command's stderr gets :func:`report`, which keeps
the lines of an error that lists several causes (``JoyVASAError.listed``).
Errors raised with such a message derive from :class:`JoyVASAError`;
``ValueError`` and ``FileNotFoundError`` also carry a message meant for the
user. Anything else is "unexpected" and the line says how to get the traceback.

This module imports nothing from the package, so every stage can raise its
errors from here without an import circle.
"""
from __future__ import annotations

#: Exit status of a command that failed (one ``error:`` line on stderr).
EXIT_ERROR = 1
#: Exit status after Ctrl-C.
EXIT_INTERRUPTED = 130


class JoyVASAError(Exception):
    """Base of the errors whose message is written for the user (cause, then fix).

    ``listed``: the message is a list of several causes, one per line, then the fixes
    (e.g. every missing model file and its download command): the commands print its
    lines as they are (:func:`report`) instead of collapsing them.
    """

    listed: bool = False


class UsageError(JoyVASAError, ValueError):
    """An option value or output path that cannot work, found before any work starts."""


class CheckpointError(JoyVASAError):
    """A model file is missing, unreadable, unsafe or does not fit its slot."""


#: Exceptions whose message is written for the user: no traceback needed.
KNOWN_ERRORS: tuple[type[BaseException], ...] = (JoyVASAError, FileNotFoundError, ValueError)


def one_line(exc: BaseException, debug_hint: str = "rerun with --debug for the traceback") -> str:
    """``exc`` as one line: its message for a known error, else ``unexpected Type: message
    (debug_hint)``. Whitespace (new lines of a multi-line message) collapses to single spaces."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, KNOWN_ERRORS):
        return text
    return f"unexpected {type(exc).__name__}: {text} ({debug_hint})"


def report(exc: BaseException, debug_hint: str = "rerun with --debug for the traceback") -> str:
    """What a command prints after ``error:``: :func:`one_line`, except for a listed error
    (``JoyVASAError.listed``), whose lines are kept (blank lines and trailing spaces dropped)."""
    if isinstance(exc, JoyVASAError) and exc.listed:
        return "\n".join(line.rstrip() for line in str(exc).splitlines() if line.strip())
    return one_line(exc, debug_hint)
