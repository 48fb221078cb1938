"""Strength per region of the generated motion (generalises pose_scale / expression_scale).

Each region's change from the reference frame (frame 0 of the clip) is
scaled: ``x_ref + k · (x − x_ref)``. Regions of the expression ``exp [T, 21, 3]``
are keypoint groups (``lips`` = the lip keypoints, ``eyes``, ``brows``, and
``expression`` for the other keypoints); the head has ``pitch``, ``yaw``,
``roll`` (each axis on its own) and ``translation`` (t). 1 leaves a region as
generated, 0 freezes it at the reference, above 1 exaggerates. Strengths may
change over time: they are a :class:`~.timeline.Timeline` over
:data:`REGION_NAMES` (``lips=0.5; yaw: 0s=1, 3s=0 ease-out``).
"""
from __future__ import annotations

from dataclasses import replace

import torch

from ..config import LIP_INDICES, NUM_KP
from ..motion import MotionSequence
from .timeline import Timeline, parse_timeline

REGION_NAMES: tuple[str, ...] = ("lips", "eyes", "brows", "expression", "pitch", "yaw", "roll",
                                 "translation")
REGION_RANGES = {name: (0.0, 3.0) for name in REGION_NAMES}
EYE_KEYPOINTS = (11, 13, 15, 16)
BROW_KEYPOINTS = (1, 2)


def _keypoint_region() -> torch.Tensor:
    """``[21]`` index into REGION_NAMES of each keypoint's expression region."""
    region = torch.full((NUM_KP,), REGION_NAMES.index("expression"), dtype=torch.long)
    for name, indices in (("lips", LIP_INDICES), ("eyes", EYE_KEYPOINTS), ("brows", BROW_KEYPOINTS)):
        region[list(indices)] = REGION_NAMES.index(name)
    return region


_KEYPOINT_REGION = _keypoint_region()


def parse_strengths(text: str) -> Timeline:
    """Region strength text (edit syntax over :data:`REGION_NAMES`, each 0..3, default 1)."""
    return parse_timeline(text, REGION_NAMES, REGION_RANGES, default=1.0)


def scale_regions(motion: MotionSequence, strengths: torch.Tensor,
                  reference: MotionSequence | None = None) -> MotionSequence:
    """Scale each region's change from ``reference`` (default: ``motion``'s frame 0).

    strengths: ``[T, 8]`` or ``[8]`` in :data:`REGION_NAMES` order. The
    reference is one frame; pass the clip's frame 0 when ``motion`` is a later
    chunk. Scale (zoom) is left alone. Computed in the motion's dtype and device.
    """
    ref = motion[:1] if reference is None else reference
    k = strengths.to(motion.exp.device, motion.exp.dtype).expand(len(motion), len(REGION_NAMES))

    def scaled(x: torch.Tensor, x0: torch.Tensor, kx: torch.Tensor) -> torch.Tensor:
        return torch.where(kx == 1, x, x0 + kx * (x - x0))   # strength 1: exactly as generated

    k_exp = k[:, _KEYPOINT_REGION.to(k.device)][..., None]            # [T, 21, 1]
    column = {name: k[:, i] for i, name in enumerate(REGION_NAMES)}
    return replace(motion, exp=scaled(motion.exp, ref.exp, k_exp),
                   t=scaled(motion.t, ref.t, column["translation"][:, None]),
                   pitch=scaled(motion.pitch, ref.pitch, column["pitch"]),
                   yaw=scaled(motion.yaw, ref.yaw, column["yaw"]),
                   roll=scaled(motion.roll, ref.roll, column["roll"]))


def apply_strengths(motion: MotionSequence, strengths: Timeline,
                    reference: MotionSequence | None = None, first_frame: int = 0) -> MotionSequence:
    """:func:`scale_regions` with strengths evaluated at the frames' times
    (frame ``first_frame + i`` at ``(first_frame + i) / motion.fps`` seconds)."""
    times = (first_frame + torch.arange(len(motion), dtype=torch.float64)) / motion.fps
    return scale_regions(motion, strengths.values(times), reference)
