"""Natural blinks: a seeded schedule of short lid closures on the editor's blink slider.

A blink is the ``blink`` slider going from 0 down to ``-BLINK_CLOSED_SLIDER ×
strength`` and back: it moves only the eye and brow keypoints
(:data:`~joyvasa_core.edits.sliders.EYE_BROW_KEYPOINTS`). Each blink lasts
``BLINK_DURATION`` seconds (drawn per blink), closes in the first
``CLOSING_SHARE`` of it and opens, more slowly, in the rest. Automatic blinks
come at gamma-distributed intervals (shape ``INTERVAL_SHAPE``, mean ``60 /
rate`` seconds, so ``rate`` per minute on average), seeded, and none falls in
the last ``END_MARGIN`` seconds of the clip.

The schedule is drawn blink by blink from its own generator, so any prefix is
the same however far it has been drawn: chunks of a stream see the same
blinks as the whole clip.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .sliders import SLIDER_NAMES

DEFAULT_RATE = 17.0            # blinks per minute (people: about 15-20 while speaking)
BLINK_CLOSED_SLIDER = 12.0     # blink slider units that close open eyes (the editor's "closed" case)
BLINK_DURATION = (0.15, 0.35)  # seconds, uniform per automatic blink
EXPLICIT_DURATION = 0.25       # seconds, for blinks at given times
CLOSING_SHARE = 0.35           # fraction of a blink spent closing
INTERVAL_SHAPE = 4.0           # gamma shape of the intervals (coefficient of variation 0.5)
MIN_INTERVAL = 0.5             # seconds between the starts of two blinks, at least
END_MARGIN = 0.5               # seconds at the end of the clip with no blink


class Blinks:
    """Blink slider values over time.

    rate: blinks per minute (automatic); strength: 1 = closed eyes, 0.5 = half
    closed; seed: the schedule's seed; times: explicit blink start times in
    seconds instead of the automatic schedule; end: the clip's length in
    seconds (None for an open-ended stream: then no end margin is kept).
    """

    def __init__(self, *, rate: float = DEFAULT_RATE, strength: float = 1.0, seed: int = 0,
                 times: Sequence[float] | None = None, end: float | None = None) -> None:
        if not 0 < rate <= 60:
            raise ValueError(f"blink rate must be in (0, 60] blinks per minute, got {rate:g}")
        if not 0 <= strength <= 2:
            raise ValueError(f"blink strength must be in [0, 2] (1 = closed eyes), got {strength:g}")
        if times is not None and any(t < 0 for t in times):
            raise ValueError(f"blink times must be >= 0 seconds, got {list(times)}")
        self.rate, self.strength, self.seed, self.end = rate, strength, seed, end
        self._times = None if times is None else tuple(times)
        self._rng = np.random.default_rng(seed)
        self._explicit = times is not None
        starts = sorted(float(t) for t in times) if times is not None else []
        self._starts: list[float] = starts
        self._durations: list[float] = [EXPLICIT_DURATION] * len(starts)
        self._drawn_until = float("inf") if self._explicit else 0.0

    def with_end(self, end: float | None) -> "Blinks":
        """The same blinks for a clip of ``end`` seconds (None: open-ended)."""
        return Blinks(rate=self.rate, strength=self.strength, seed=self.seed, times=self._times,
                      end=end)

    def schedule(self, until: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Blink start times and durations ``[n]`` (seconds, float64) of blinks starting before ``until``."""
        self._draw(until)
        starts = torch.tensor(self._starts, dtype=torch.float64)
        durations = torch.tensor(self._durations, dtype=torch.float64)
        keep = starts < until
        if self.end is not None:
            keep &= starts + durations <= self.end - END_MARGIN
        return starts[keep], durations[keep]

    def _draw(self, until: float) -> None:
        mean = 60.0 / self.rate
        while self._drawn_until < until:
            interval = max(MIN_INTERVAL, self._rng.gamma(INTERVAL_SHAPE, mean / INTERVAL_SHAPE))
            duration = self._rng.uniform(*BLINK_DURATION)
            previous = self._starts[-1] if self._starts else -interval / 2  # first one: half an interval in
            self._starts.append(previous + interval)
            self._durations.append(duration)
            self._drawn_until = self._starts[-1]

    def closure(self, times: torch.Tensor) -> torch.Tensor:
        """Lid closure in [0, 1] at ``times [T]`` seconds -> ``[T]`` float64."""
        t = times.to(torch.float64)
        if t.numel() == 0:
            return t.clone()
        starts, durations = self.schedule(float(t.max()) + 1e-9)
        near = (starts <= t.max()) & (starts + durations >= t.min())
        starts, durations = starts[near], durations[near]
        closing = durations * CLOSING_SHARE
        opening = durations - closing
        if starts.numel() == 0:
            return torch.zeros_like(t)
        since = t[:, None] - starts[None, :]                                  # [T, n]
        shape = torch.where(since < closing, _smoothstep(since / closing),
                            1 - _smoothstep((since - closing) / opening))
        inside = (since >= 0) & (since <= durations)
        return torch.where(inside, shape, torch.zeros_like(shape)).amax(-1)

    def sliders(self, times: torch.Tensor) -> torch.Tensor:
        """Slider values ``[T, 12]`` float64: only ``blink`` is non-zero."""
        out = torch.zeros(times.shape[0], len(SLIDER_NAMES), dtype=torch.float64)
        out[:, SLIDER_NAMES.index("blink")] = -BLINK_CLOSED_SLIDER * self.strength * \
            self.closure(times)
        return out


def _smoothstep(u: torch.Tensor) -> torch.Tensor:
    u = u.clamp(0, 1)
    return u * u * (3 - 2 * u)
