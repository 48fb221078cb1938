"""Slider values over time: one text syntax for constants and eased keyframes.

Grammar (statements are separated by ``;`` or new lines; spaces are free)::

    smile=0.8, rotate_yaw=5                      constants, comma-separated
    smile: 0s=0, 2s=0.8 ease-in-out, 4s=0.8, 4.5s=0 hold
                                                 keyframes of one slider: TIME=VALUE [EASING]

* TIME is seconds (``2``, ``2s``, ``2.5s``) or milliseconds (``250ms``); keys
  must be in increasing time order.
* EASING belongs to the segment that *arrives* at its key from the previous
  one: ``linear`` (default), ``ease-in``, ``ease-out``, ``ease-in-out``, or
  ``hold`` (keep the previous value, jump at the key).
* Before the first key the first value holds, after the last key the last.
* Each slider appears at most once; a slider not named stays at 0.

Names and value ranges are the editor's sliders (:mod:`.sliders`). A mistake
raises :class:`EditSyntaxError`, whose message shows the text with a caret
under the faulty spot.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from .sliders import SLIDER_NAMES, SLIDER_RANGES

EASINGS: tuple[str, ...] = ("linear", "ease-in", "ease-out", "ease-in-out", "hold")


def ease(u: torch.Tensor, easing: torch.Tensor) -> torch.Tensor:
    """Eased progress for u in [0, 1] (any shape); ``easing`` indexes :data:`EASINGS` (same shape).

    linear ``u``; ease-in ``u²``; ease-out ``1 − (1 − u)²``; ease-in-out
    ``3u² − 2u³``; hold ``0`` until ``u = 1``.
    """
    curves = torch.stack([u, u * u, 1 - (1 - u) ** 2, u * u * (3 - 2 * u), (u >= 1).to(u.dtype)])
    return curves.gather(0, easing[None]).squeeze(0)


class EditSyntaxError(ValueError):
    """A mistake in edit text; ``str()`` shows the line and a caret under the spot."""

    def __init__(self, text: str, position: int, message: str) -> None:
        line_start = text.rfind("\n", 0, position) + 1
        line_end = text.find("\n", position)
        line = text[line_start:line_end if line_end >= 0 else len(text)]
        line_no = text.count("\n", 0, position) + 1
        column = position - line_start + 1
        where = f"line {line_no}, column {column}" if "\n" in text else f"column {column}"
        super().__init__(f"{message} (at {where})\n  {line}\n  {' ' * (column - 1)}^")
        self.position = position
        self.column = column


@dataclass(frozen=True)
class Curve:
    """One slider's keyframes: times ``[n]`` seconds (increasing), values ``[n]``,
    easing ``[n]`` indices into :data:`EASINGS` (entry i eases the segment ending at key i)."""

    times: torch.Tensor
    values: torch.Tensor
    easing: torch.Tensor

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        """Values at times ``t [T]`` seconds -> ``[T]`` (float64)."""
        t = t.to(torch.float64)
        if len(self.times) == 1:
            return self.values[0].expand_as(t).clone()
        hi = torch.searchsorted(self.times, t, right=True).clamp(1, len(self.times) - 1)
        lo = hi - 1
        span = self.times[hi] - self.times[lo]
        u = ((t - self.times[lo]) / span).clamp(0, 1)
        v0, v1 = self.values[lo], self.values[hi]
        return v0 + (v1 - v0) * ease(u, self.easing[hi])


@dataclass(frozen=True)
class Timeline:
    """Curves by name over the controls ``names`` (default: the sliders); a control
    that has no curve takes ``default``. Evaluate with :meth:`values` / :meth:`sliders`."""

    curves: dict[str, Curve]
    names: tuple[str, ...] = SLIDER_NAMES
    default: float = 0.0

    def values(self, times: torch.Tensor) -> torch.Tensor:
        """Values ``[T, len(names)]`` float64 at ``times [T]`` seconds."""
        out = torch.full((times.shape[0], len(self.names)), self.default, dtype=torch.float64)
        for name, curve in self.curves.items():
            out[:, self.names.index(name)] = curve(times)
        return out

    def sliders(self, times: torch.Tensor) -> torch.Tensor:
        """Slider values ``[T, 12]`` float64 (order :data:`SLIDER_NAMES`) at ``times [T]`` seconds."""
        if self.names != SLIDER_NAMES:
            raise ValueError(f"this timeline controls {self.names}, not the expression sliders")
        return self.values(times)

    @property
    def is_empty(self) -> bool:
        return not self.curves


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_UNIT = re.compile(r"ms|s")


class _Parser:
    def __init__(self, text: str, names: Sequence[str],
                 ranges: Mapping[str, tuple[float, float]] | None = None) -> None:
        self.text = text
        self.names = tuple(names)
        self.ranges = SLIDER_RANGES if ranges is None else ranges
        self.pos = 0

    def error(self, message: str, position: int | None = None) -> EditSyntaxError:
        return EditSyntaxError(self.text, self.pos if position is None else position, message)

    def skip_blanks(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r":
            self.pos += 1

    def at(self, chars: str) -> bool:
        self.skip_blanks()
        return self.pos < len(self.text) and self.text[self.pos] in chars

    def expect(self, char: str, what: str) -> None:
        if not self.at(char):
            raise self.error(f"expected {what}")
        self.pos += 1

    def word(self, what: str) -> tuple[str, int]:
        self.skip_blanks()
        m = _WORD.match(self.text, self.pos)
        if m is None:
            raise self.error(f"expected {what}")
        self.pos = m.end()
        return m.group(), m.start()

    def number(self, what: str, units: bool = False) -> tuple[float, int]:
        self.skip_blanks()
        m = _NUMBER.match(self.text, self.pos)
        if m is None:
            raise self.error(f"expected {what}")
        value, start = float(m.group()), m.start()
        self.pos = m.end()
        if units:
            unit = _UNIT.match(self.text, self.pos)
            if unit is not None:
                self.pos = unit.end()
                value = value / 1000 if unit.group() == "ms" else value
        if self.pos < len(self.text) and (self.text[self.pos].isalnum() or self.text[self.pos] in "._"):
            raise self.error(f"{what} must be a plain number" + (" with s or ms" if units else ""),
                             start)
        return value, start

    def comma(self) -> bool:
        """Consume a ',' (and line breaks after it: a list may go on on the next line)."""
        if not self.at(","):
            return False
        self.pos += 1
        while self.at("\n"):
            self.pos += 1
        return True

    def end_of_statement(self) -> bool:
        self.skip_blanks()
        return self.pos >= len(self.text) or self.text[self.pos] in ";\n"

    def parse(self) -> dict[str, Curve]:
        curves: dict[str, Curve] = {}
        while True:
            while self.at(";\n"):
                self.pos += 1
            if self.end_of_statement():
                return curves
            name, start = self.slider_name()
            if name in curves:
                raise self.error(f"{name!r} is given twice; give each slider once "
                                 "(keyframes for changes over time)", start)
            if self.at(":"):
                self.pos += 1
                curves[name] = self.keyframes(name)
            else:
                self.expect("=", f"'=' or ':' after {name!r}")
                value, at = self.number(f"a value for {name!r}")
                curves[name] = self.constant(name, value, at)
                while self.comma():
                    name, start = self.slider_name()
                    if name in curves:
                        raise self.error(f"{name!r} is given twice; give each slider once", start)
                    self.expect("=", f"'=' after {name!r} (keyframes go in their own "
                                     "statement after ';')")
                    value, at = self.number(f"a value for {name!r}")
                    curves[name] = self.constant(name, value, at)
            if not self.end_of_statement():
                raise self.error("expected ',' ';' or the end of the text")

    def slider_name(self) -> tuple[str, int]:
        name, start = self.word("a slider name")
        if name not in self.names:
            kind = "slider" if self.names == SLIDER_NAMES else "name"
            raise self.error(f"unknown {kind} {name!r}; the {kind}s are {', '.join(self.names)}",
                             start)
        return name, start

    def checked(self, name: str, value: float, at: int) -> float:
        low, high = self.ranges.get(name, (-float("inf"), float("inf")))
        if not low <= value <= high:
            raise self.error(f"{name}={value:g} is outside the range {low:g}..{high:g}", at)
        return value

    def constant(self, name: str, value: float, at: int) -> Curve:
        return _curve([0.0], [self.checked(name, value, at)], [0])

    def keyframes(self, name: str) -> Curve:
        times: list[float] = []
        values: list[float] = []
        easings: list[int] = []
        while True:
            time, at = self.number("a key time like 1.5s", units=True)
            if times and time <= times[-1]:
                raise self.error(f"key times must increase: {time:g}s comes after {times[-1]:g}s", at)
            if time < 0:
                raise self.error("key times must be >= 0", at)
            self.expect("=", "'=' after the key time")
            value, value_at = self.number(f"a value for {name!r}")
            easing = 0
            if not self.at(",;\n") and not self.end_of_statement():
                word, at = self.word(f"an easing ({', '.join(EASINGS)})")
                if word not in EASINGS:
                    raise self.error(f"unknown easing {word!r}; use one of {', '.join(EASINGS)}", at)
                easing = EASINGS.index(word)
            times.append(time)
            values.append(self.checked(name, value, value_at))
            easings.append(easing)
            if not self.comma():
                return _curve(times, values, easings)


def _curve(times: list[float], values: list[float], easings: list[int]) -> Curve:
    return Curve(torch.tensor(times, dtype=torch.float64), torch.tensor(values, dtype=torch.float64),
                 torch.tensor(easings, dtype=torch.long))


def constant_timeline(values: Mapping[str, float]) -> Timeline:
    """Sliders held at ``values`` (by name) on every frame; zeros are left out."""
    unknown = sorted(set(values) - set(SLIDER_NAMES))
    if unknown:
        raise ValueError(f"unknown sliders {unknown}; the sliders are {', '.join(SLIDER_NAMES)}")
    return Timeline({name: _curve([0.0], [float(v)], [0]) for name, v in values.items() if v != 0})


def parse_times(text: str) -> list[float]:
    """``"1.2, 3.5s, 4000ms"`` -> times in seconds, in the order given.

    Raises :class:`EditSyntaxError` pointing at the first mistake.
    """
    parser = _Parser(text, ())

    def time() -> float:
        value, start = parser.number("a time like 1.5s", units=True)
        if value < 0:
            raise parser.error(f"a time must be >= 0 seconds, got {value:g}", start)
        return value
    times = [time()]
    while parser.comma():
        times.append(time())
    if parser.pos < len(text.rstrip()):
        raise parser.error("expected ',' or the end of the times")
    return times


def parse_timeline(text: str, names: Sequence[str] = SLIDER_NAMES,
                   ranges: Mapping[str, tuple[float, float]] | None = None,
                   default: float = 0.0) -> Timeline:
    """Parse edit text (see the module docstring) into a :class:`Timeline`.

    names / ranges / default: the controls the text may name, their allowed
    values and the value of one not named (default: the expression sliders,
    their ranges, 0). Raises :class:`EditSyntaxError` pointing at the first mistake.
    """
    names = tuple(names)
    return Timeline(_Parser(text, names, ranges).parse(), names, default)
