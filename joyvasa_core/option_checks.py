"""Judging option values and output paths before any work starts (the edge's checks).

* :data:`NUMBER_RANGES`: the allowed range of every numeric option of the
  headless command, in one table; :func:`check_numbers` refuses a value outside
  it (``inf``, ``-inf`` and ``nan`` included: argparse's ``type=float`` takes
  them) with one line naming the flag and the range.
* :func:`check_steps`: ``--steps`` that the sampler and the motion generator cannot take.
* :func:`check_output_path`: an output that cannot be created as a file.
* :func:`check_outputs_apart`: an output that is one of the job's inputs (the
  same file through a symlink, a hard link or another spelling too) or another
  output of the same job, refused before anything is opened for writing.

Each raises :class:`~joyvasa_core.errors.UsageError` (cause, then fix). The
values come as ``(flag, value)`` pairs, so this module knows nothing of
argparse and can judge a jobs-file row or a node's widgets alike.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .edits.gaze import MAX_STRENGTH as EYE_CONTACT_MAX
from .errors import UsageError

#: The largest --seed (the blink and noise generators take any seed up to here).
MAX_SEED = 2**32 - 1


def _shown(value: float | int | None) -> str:
    """A float as ``%g`` (2.0 -> 2), a whole number in full (4294967295)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class NumberRange:
    """Allowed values of one numeric option: finite, ``low`` (excluded when ``low_open``)
    up to ``high``; None = unbounded on that side."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def describe(self) -> str:
        """``a finite number``, ``>= 1``, ``<= 2`` or ``in [0, 2]`` / ``in (0, 60]``."""
        low, high = _shown(self.low), _shown(self.high)
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{low}, {high}]"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {low}"
        if self.high is not None:
            return f"<= {high}"
        return "a finite number"

    def holds(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high


#: flag -> allowed range, for every numeric option of the headless command (a test keeps
#: this table and the parser's numeric options equal).
NUMBER_RANGES: Mapping[str, NumberRange] = {
    "--seed": NumberRange(0, MAX_SEED),
    "--face-index": NumberRange(0),
    "--cfg-scale": NumberRange(0),
    "--steps": NumberRange(1),
    "--pose-scale": NumberRange(),
    "--expression-scale": NumberRange(),
    "--smoothing": NumberRange(0),
    "--driving-multiplier": NumberRange(),
    "--blink-rate": NumberRange(0, 60, low_open=True),
    "--blink-strength": NumberRange(0, 2),
    "--eye-contact": NumberRange(0, EYE_CONTACT_MAX),
    "--expression-from-strength": NumberRange(),
    "--batch-size": NumberRange(1),
    "--silence-threshold": NumberRange(0, 1),
    "--silence-ramp": NumberRange(0, 10),
}


def check_numbers(values: Iterable[tuple[str, float | int | None]]) -> None:
    """Raise :class:`UsageError` for the first ``(flag, value)`` outside :data:`NUMBER_RANGES`
    (None = not given)."""
    for flag, value in values:
        if value is None:
            continue
        allowed = NUMBER_RANGES[flag]
        if isinstance(value, float) and not math.isfinite(value):
            bound = "" if allowed == NumberRange() else f" {allowed.describe()}"
            raise UsageError(f"{flag} must be a finite number{bound}, got {value}")
        if not allowed.holds(value):
            raise UsageError(f"{flag} must be {allowed.describe()}, got {_shown(value)}")


def check_steps(sampler: str, steps: int | None, num_steps: int) -> None:
    """Raise :class:`UsageError` when ``--steps`` does not fit ``--sampler`` and the motion
    generator's ``num_steps`` diffusion steps (T, from its file): ddpm runs all T, ddim at
    most T (None = the sampler's own default)."""
    if steps is None:
        return
    if sampler == "ddpm" and steps != num_steps:
        raise UsageError(f"--steps {steps} needs --sampler ddim: the official ddpm sampler runs "
                         f"all {num_steps} steps of the motion generator. Add --sampler ddim, "
                         "or leave out --steps")
    if steps > num_steps:
        raise UsageError(f"--steps must be in [1, {num_steps}] (the motion generator's diffusion "
                         f"steps), got {steps}")


def check_output_path(path: Path, option: str, example: str) -> None:
    """Raise :class:`UsageError` unless ``path`` can be created as a file.

    A folder, a parent that is a file, or a parent folder without write
    permission fail here, in a millisecond, instead of after the render.
    Missing parent folders are fine (the writers create them).
    """
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file name, e.g. {path / example}")
    parent = path.parent if str(path.parent) else Path(".")
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: {parent} is a file, not a folder. "
                         "Choose another output path.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: no permission to write in {parent}. "
                         "Choose a writable folder.")


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: the same inode when both exist (symlinks and hard
    links included), else the same resolved path."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_outputs_apart(outputs: Iterable[tuple[str, Path | None]],
                        inputs: Iterable[tuple[str, Path | None]]) -> None:
    """Raise :class:`UsageError` when an output is one of the inputs (writing it would destroy
    the input) or when two outputs are one file. Pairs are ``(flag, path or None)``."""
    inputs = [(flag, path) for flag, path in inputs if path is not None]
    seen: list[tuple[str, Path]] = []
    for flag, path in outputs:
        if path is None:
            continue
        for input_flag, source in inputs:
            if same_file(path, source):
                alias = "" if str(path) == str(source) else f" ({source})"
                raise UsageError(f"{flag} {path} is the {input_flag} input file{alias}; writing "
                                 "it would destroy the input. Choose another output path.")
        for other_flag, other in seen:
            if same_file(path, other):
                raise UsageError(f"{flag} {path} is also the {other_flag} file; give each "
                                 "output its own path.")
        seen.append((flag, path))
