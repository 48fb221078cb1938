"""Timing of a dubbed video: which source frame and which motion go with each output frame.

All pure functions of sizes and times (no decoding, no models):

* the output runs at a **constant** rate, the source's average rate ``fps``,
  for as long as the speech: :func:`output_frame_count` frames, frame k at
  ``k / fps`` seconds (a variable-rate source is written at its average rate);
* a variable-rate source is first put on that constant grid by its
  timestamps (:func:`constant_rate_indices`: each slot shows the frame that is
  on screen at that time, as a player would); a constant-rate source maps to
  itself;
* when the speech is longer than the source, the source plays back and forth
  (``pingpong``: 0 1 2 3 2 1 0 1 ...) or restarts (``loop``: 0 1 2 3 0 1 ...);
  when it is shorter the output simply ends with the speech
  (:func:`playback_indices`);
* the generated motion (25 fps) is resampled at the output frame times by
  linear interpolation between its two neighbouring frames, angles along the
  shorter arc (:func:`resample_motion`): never by dropping or repeating frames.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Literal, get_args

import torch

from .motion import MotionSequence, MotionStream

LoopMode = Literal["pingpong", "loop"]
LOOP_MODES: tuple[str, ...] = get_args(LoopMode)

#: Slack (in frame periods) when matching a slot time to a frame timestamp:
#: container time bases round timestamps (e.g. 1/90000 s or 1 ms).
_TIME_SLACK = 1e-3


def output_frame_count(speech_seconds: float, fps: float) -> int:
    """Frames of the dubbed video: ``int(speech_seconds * fps)``, at least 1."""
    if speech_seconds <= 0 or fps <= 0:
        raise ValueError(f"speech length and frame rate must be positive, got "
                         f"{speech_seconds} s at {fps} fps")
    return max(1, int(speech_seconds * fps + 1e-9))


def output_times(start: int, stop: int, fps: float) -> torch.Tensor:
    """Times ``[stop - start]`` float64 (seconds) of output frames start..stop-1 at ``fps``."""
    return torch.arange(start, stop, dtype=torch.float64) / fps


def constant_rate_indices(times: torch.Tensor, fps: float) -> torch.Tensor:
    """Source frame shown in each slot of a constant-rate grid: ``[M]`` int64.

    times: ``[N]`` presentation times of the source frames (seconds, increasing,
    ``times[0] == 0``). Slot j (time ``j / fps``) shows the last frame whose
    time is not after it; ``M = round(times[-1] * fps) + 1``. For a
    constant-rate source at ``fps`` this is ``0, 1, ..., N-1``.
    """
    if times.ndim != 1 or times.numel() == 0:
        raise ValueError(f"times must be a non-empty [N] tensor, got {list(times.shape)}")
    slots = int(round(float(times[-1]) * fps)) + 1
    grid = torch.arange(slots, dtype=torch.float64) / fps + _TIME_SLACK / fps
    index = torch.searchsorted(times.to(torch.float64).contiguous(), grid, right=True) - 1
    return index.clamp_(0, times.numel() - 1)


def loop_positions(positions: torch.Tensor, frames: int, mode: LoopMode = "pingpong") -> torch.Tensor:
    """Positions ``[N]`` int64 along an endless playback, folded into a source of ``frames``
    frames (0..frames-1): ``pingpong`` plays forward then backward without repeating the
    turning frames (period ``2 * (frames - 1)``); ``loop`` jumps back to 0 after the last."""
    if mode not in LOOP_MODES:
        raise ValueError(f"loop mode must be one of {LOOP_MODES}, got {mode!r}")
    if frames < 1:
        raise ValueError(f"the source needs at least one frame, got {frames}")
    if mode == "loop" or frames == 1:
        return positions % frames
    period = 2 * (frames - 1)
    phase = positions % period
    return torch.where(phase < frames, phase, period - phase)


def playback_indices(count: int, frames: int, mode: LoopMode = "pingpong",
                     start: int = 0) -> torch.Tensor:
    """Source positions of output frames ``start .. start+count-1``: ``[count]`` int64
    (:func:`loop_positions` of consecutive frames)."""
    return loop_positions(torch.arange(start, start + count, dtype=torch.int64), frames, mode)


def _shortest_arc(delta: torch.Tensor) -> torch.Tensor:
    """Angle differences (degrees) wrapped into [-180, 180)."""
    return torch.remainder(delta + 180.0, 360.0) - 180.0


def resample_motion(motion: MotionSequence, times: torch.Tensor, fps: float) -> MotionSequence:
    """Motion at ``times`` (``[T]`` seconds): ``T`` frames tagged ``fps``.

    Frame i of ``motion`` sits at ``i / motion.fps``; between two frames every
    channel is interpolated linearly, the angles (degrees) along the shorter
    arc. Times past the last frame hold the last frame (the motion is a few
    frames longer than the speech by the official frame-count rule).
    """
    if len(motion) == 0:
        raise ValueError("cannot resample an empty motion sequence")
    pos = (times.to(torch.float64) * motion.fps).clamp(0, len(motion) - 1)
    return _interpolated(motion, 0, pos, fps)


def _interpolated(rows: MotionSequence, first: int, pos: torch.Tensor, fps: float) -> MotionSequence:
    """Frames at stream positions ``pos`` ``[T]`` float64 (in frames of the stream), from
    ``rows`` holding stream frames ``first .. first + len(rows) - 1`` (every position needs
    its two neighbours there, or the last row of the stream)."""
    device = rows.exp.device
    i0 = pos.floor().to(torch.int64)
    i1 = (i0 + 1).clamp(max=first + len(rows) - 1)
    w = (pos - i0).to(device, rows.exp.dtype)
    i0, i1 = (i0 - first).to(device), (i1 - first).to(device)

    def lerp(x: torch.Tensor) -> torch.Tensor:
        weight = w.reshape(-1, *([1] * (x.ndim - 1)))
        return torch.lerp(x[i0], x[i1], weight)

    def slerp_angle(a: torch.Tensor) -> torch.Tensor:
        return a[i0] + _shortest_arc(a[i1] - a[i0]) * w

    return replace(rows, exp=lerp(rows.exp), scale=lerp(rows.scale), t=lerp(rows.t),
                   pitch=slerp_angle(rows.pitch), yaw=slerp_angle(rows.yaw),
                   roll=slerp_angle(rows.roll), fps=float(fps))


def resample_stream(stream: MotionStream, count: int, fps: float) -> MotionStream:
    """``stream`` at output frames ``0 .. count-1`` (frame k at ``k / fps`` s), resampled
    as it is read: each output frame is yielded as soon as its two neighbouring stream
    frames have arrived, so a dubbed video renders after the first motion window.
    Equals (bit for bit) :func:`resample_motion` of the collected stream at
    :func:`output_times` ``(0, count, fps)``; host memory holds a chunk or two.
    """
    times = output_times(0, count, fps)

    def chunks() -> Iterator[MotionSequence]:
        rows: MotionSequence | None = None   # stream frames first .. first + len(rows) - 1
        first = done = 0
        for chunk in stream:
            if len(chunk) == 0:
                continue
            rows = chunk if rows is None else MotionSequence.cat([rows, chunk])
            have = first + len(rows)
            pos = times[done:] * chunk.fps
            ready = int((pos.floor() <= have - 2).sum())   # both neighbours known
            if ready:
                yield _interpolated(rows, first, pos[:ready], fps)
                done += ready
            if done < count:
                keep = min(int(pos[ready].floor()) if ready < len(pos) else have - 1, have - 1)
                rows, first = rows[keep - first:], keep
        if rows is None:
            raise ValueError("cannot resample an empty motion stream")
        if done < count:   # past the stream's end: the last frame holds
            pos = (times[done:] * rows.fps).clamp(0, first + len(rows) - 1)
            yield _interpolated(rows, first, pos, fps)

    return MotionStream(chunks(), fps=float(fps), n_frames=count)


def source_frame_indices(count: int, source_times: torch.Tensor, fps: float,
                         mode: LoopMode = "pingpong", start: int = 0) -> torch.Tensor:
    """Decoded-frame index of output frames ``start .. start+count-1``: ``[count]`` int64.

    The composition of :func:`constant_rate_indices` (timestamps -> constant
    grid at ``fps``) and :func:`playback_indices` (ping-pong / loop / trim).
    """
    grid = constant_rate_indices(source_times, fps)
    return grid[playback_indices(count, grid.numel(), mode, start)]

