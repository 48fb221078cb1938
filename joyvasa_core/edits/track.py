"""The edits stage: slider tracks summed and turned into keypoint offsets per frame.

Anything with ``sliders(times [T] seconds) -> [T, 12]`` float64 (a
:class:`~.timeline.Timeline`, :class:`~.blink.Blinks`, ...) is a slider track.
:class:`Edits` adds its tracks' slider values (slider semantics are piecewise
linear in the *sum*, as on the editor), maps them through
:func:`~.sliders.slider_offsets`, and adds the offsets of its offset tracks
(``offsets(times) -> KeypointEdit``). Eye-contact tracks (``eye_contact(times) ->
[T]``, :class:`~.gaze.EyeContact`) depend on the head's turn, so their summed
strength rides along in the offsets and is resolved where the driving
keypoints are composed. It is evaluated per chunk of frames, so the same edits
serve a whole clip and a stream.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import torch

from .blink import DEFAULT_RATE, Blinks
from .gaze import EyeContact
from .sliders import SLIDER_NAMES, KeypointEdit, slider_offsets
from .timeline import parse_timeline, parse_times


class SliderTrack(Protocol):
    def sliders(self, times: torch.Tensor) -> torch.Tensor:
        """Slider values ``[T, 12]`` float64 at ``times [T]`` seconds."""
        ...


class OffsetTrack(Protocol):
    def offsets(self, times: torch.Tensor) -> KeypointEdit:
        """Keypoint offsets (float64, CPU) at ``times [T]`` seconds."""
        ...


class EyeContactTrack(Protocol):
    def eye_contact(self, times: torch.Tensor) -> torch.Tensor:
        """Eye-contact strength ``[T]`` float64 at ``times [T]`` seconds."""
        ...


@dataclass(frozen=True)
class Edits:
    """A sum of slider tracks, of offset tracks (offsets given directly, e.g.
    :class:`~.mixing.ExpressionOffset`) and of eye-contact tracks. ``edits + other``
    combines two."""

    tracks: tuple[SliderTrack, ...] = ()
    offset_tracks: tuple[OffsetTrack, ...] = ()
    eye_contact_tracks: tuple[EyeContactTrack, ...] = ()

    def __add__(self, other: "Edits") -> "Edits":
        return Edits(self.tracks + other.tracks, self.offset_tracks + other.offset_tracks,
                     self.eye_contact_tracks + other.eye_contact_tracks)

    def until(self, duration: float | None) -> "Edits":
        """The same edits for a clip of ``duration`` seconds: tracks that care about the
        clip's end (:class:`~.blink.Blinks`: none in its last half second) are told."""
        def bounded(track):
            return track.with_end(duration) if hasattr(track, "with_end") else track
        return replace(self, tracks=tuple(bounded(t) for t in self.tracks))

    def sliders(self, times: torch.Tensor) -> torch.Tensor:
        """Summed slider values ``[T, 12]`` float64 (CPU) at ``times [T]`` seconds."""
        total = torch.zeros(times.shape[0], len(SLIDER_NAMES), dtype=torch.float64)
        for track in self.tracks:
            total = total + track.sliders(times)
        return total

    def at(self, times: torch.Tensor) -> KeypointEdit:
        """Offsets at ``times [T]`` seconds: ``delta_exp [T, 21, 3]``, ``delta_rot [T, 3]`` (degrees),
        float64 on the CPU (the caller moves them to its device and dtype), with
        the slider sum and, when there are eye-contact tracks, their strength ``[T]``."""
        times = times.detach().to("cpu", torch.float64)
        edit = slider_offsets(self.sliders(times))
        for track in self.offset_tracks:
            edit = edit + track.offsets(times)
        if self.eye_contact_tracks:
            edit = replace(edit, eye_contact=sum(t.eye_contact(times) for t in self.eye_contact_tracks))
        return edit

    def at_frames(self, frames: torch.Tensor, fps: float) -> KeypointEdit:
        """Offsets for frame indices ``frames [T]`` of a sequence at ``fps`` (frame i at i / fps s)."""
        return self.at(frames.to(torch.float64) / fps)


def build_edits(expression: str | None = None, blink: str = "off", *,
                blink_rate: float = DEFAULT_RATE, blink_strength: float = 1.0, seed: int = 0,
                eye_contact: float = 0.0, duration: float | None = None) -> Edits | None:
    """Edits from the user-facing options (the command line's and the nodes').

    expression: edit text (:mod:`.timeline`); blink: ``"off"``, ``"auto"``
    (seeded natural blinks) or blink start times like ``"1.2, 3.5s"``;
    duration: the clip's length in seconds (no automatic blink in its last
    half second; None for an open-ended stream); eye_contact: strength of
    :class:`~.gaze.EyeContact` (0 = off). None when nothing is edited.
    Raises :class:`~.timeline.EditSyntaxError` / ValueError naming the mistake.
    """
    tracks: list[SliderTrack] = []
    if expression and expression.strip():
        timeline = parse_timeline(expression)
        if not timeline.is_empty:
            tracks.append(timeline)
    mode = blink.strip().lower()
    if mode == "auto":
        tracks.append(Blinks(rate=blink_rate, strength=blink_strength, seed=seed, end=duration))
    elif mode not in ("off", ""):
        tracks.append(Blinks(times=parse_times(blink), strength=blink_strength, end=duration))
    gaze = (EyeContact(eye_contact),) if eye_contact else ()
    return Edits(tuple(tracks), eye_contact_tracks=gaze) if tracks or gaze else None
