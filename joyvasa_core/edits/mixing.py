"""Motion mixing and expression from a reference face.

* :func:`mix_motion`: the head pose (and optionally the eyes) of another
  motion sequence -- a driving video's (``MotionFromVideo``) or another
  seed's -- with the lips and expression of the speech's motion. The other
  sequence is matched by time (any fps) and, when shorter, played forwards
  and backwards (a ping-pong loop, so the pose never jumps); longer ones are trimmed.
* :class:`ExpressionOffset`: the reference face's expression minus the
  source's, added to every frame outside the lips at a strength: a neutral
  portrait speaks with the reference's smile.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..config import LIP_INDICES, NUM_KP
from ..keypoints import KeypointInfo
from ..motion import MotionSequence
from ..retime import loop_positions
from .sliders import EYE_BROW_KEYPOINTS, KeypointEdit


def loop_indices(frames: int, fps: float, other_frames: int, other_fps: float,
                 start: int = 0) -> torch.Tensor:
    """Frame of the other sequence ``[frames]`` (long) shown at frames ``start .. start+frames-1``
    (frame i at ``i / fps`` s): nearest in time, ping-pong looped when the other sequence is
    shorter (:func:`~joyvasa_core.retime.loop_positions`)."""
    if other_frames < 1:
        raise ValueError("the motion to mix in has no frames")
    times = torch.arange(start, start + frames, dtype=torch.float64) / fps
    return loop_positions(torch.round(times * other_fps).long(), other_frames, "pingpong")


def mix_motion(motion: MotionSequence, pose_from: MotionSequence, *, eyes: bool = False,
               first_frame: int = 0) -> MotionSequence:
    """``motion`` with the head pose (scale, t, pitch, yaw, roll) of ``pose_from`` and,
    with ``eyes``, its eye and brow expression; lips and the rest stay ``motion``'s.
    ``first_frame``: where ``motion`` starts in its stream (a later chunk of it)."""
    index = loop_indices(len(motion), motion.fps, len(pose_from), pose_from.fps, first_frame)
    other = pose_from[index].to(motion.exp.device, motion.exp.dtype)
    exp = motion.exp
    if eyes:
        mask = torch.zeros(NUM_KP, 1, dtype=torch.bool, device=exp.device)
        mask[list(EYE_BROW_KEYPOINTS)] = True
        exp = torch.where(mask, other.exp, exp)
    return replace(motion, exp=exp, scale=other.scale, t=other.t, pitch=other.pitch,
                   yaw=other.yaw, roll=other.roll)


@dataclass(frozen=True)
class ExpressionOffset:
    """A constant expression offset ``delta_exp [21, 3]`` (an offset track of :class:`~.track.Edits`)."""

    delta_exp: torch.Tensor

    @classmethod
    def from_faces(cls, reference: KeypointInfo, source: KeypointInfo,
                   strength: float = 1.0) -> "ExpressionOffset":
        """``strength · (exp_reference − exp_source)`` outside the lips (M's keypoint info, batch 1)."""
        delta = (reference.exp[0] - source.exp[0]).detach().to("cpu", torch.float64) * strength
        delta[list(LIP_INDICES)] = 0
        return cls(delta)

    def offsets(self, times: torch.Tensor) -> KeypointEdit:
        frames = times.shape[0]
        return KeypointEdit(self.delta_exp.expand(frames, -1, -1).clone(),
                            torch.zeros(frames, 3, dtype=torch.float64))
