"""Strength per region of the generated motion, over time (the math: :meth:`MotionSequence.scaled_regions`).

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

import torch

from ..motion import REGION_NAMES, MotionSequence
from .timeline import Timeline, parse_timeline

REGION_RANGES = {name: (0.0, 3.0) for name in REGION_NAMES}


def parse_strengths(text: str) -> Timeline:
    """Region strength text (edit syntax over :data:`REGION_NAMES`, each 0..3, default 1)."""
    return parse_timeline(text, REGION_NAMES, REGION_RANGES, default=1.0)


def apply_strengths(motion: MotionSequence, strengths: Timeline,
                    reference: MotionSequence | None = None, first_frame: int = 0) -> MotionSequence:
    """:meth:`MotionSequence.scaled_regions` with strengths evaluated at the frames' times
    (frame ``first_frame + i`` at ``(first_frame + i) / motion.fps`` seconds)."""
    times = (first_frame + torch.arange(len(motion), dtype=torch.float64)) / motion.fps
    return motion.scaled_regions(strengths.values(times), reference)
