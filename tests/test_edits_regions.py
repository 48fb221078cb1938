"""Strength per region of the motion (joyvasa_core.edits.regions)."""
from __future__ import annotations

import pytest
import torch

from joyvasa_core.config import LIP_INDICES
from joyvasa_core.edits import REGION_NAMES as EDITS_REGION_NAMES
from joyvasa_core.edits.regions import apply_strengths, parse_strengths
from joyvasa_core.edits.timeline import EditSyntaxError
from joyvasa_core.motion import REGION_NAMES, MotionSequence


def make_motion(frames: int = 12, seed: int = 0) -> MotionSequence:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return MotionSequence(exp=0.05 * r(frames, 21, 3), scale=1.5 + 0.1 * r(frames, 1),
                          t=0.1 * r(frames, 3), pitch=10 * r(frames), yaw=10 * r(frames),
                          roll=5 * r(frames))


def strengths(**values: float) -> torch.Tensor:
    return torch.tensor([values.get(n, 1.0) for n in REGION_NAMES], dtype=torch.float64)


def test_generalises_pose_and_expression_scale():
    motion = make_motion()
    ours = motion.scaled_regions(strengths(lips=0.3, eyes=0.3, brows=0.3, expression=0.3,
                                            pitch=1.7, yaw=1.7, roll=1.7, translation=1.7))
    assert EDITS_REGION_NAMES is REGION_NAMES      # still re-exported by joyvasa_core.edits
    theirs = motion.rescaled(pose=1.7, expression=0.3)
    for name in ("exp", "scale", "t", "pitch", "yaw", "roll"):
        torch.testing.assert_close(getattr(ours, name), getattr(theirs, name), rtol=0, atol=1e-12)


def test_each_region_on_its_own():
    motion = make_motion()
    lips_frozen = motion.scaled_regions(strengths(lips=0))
    lips = list(LIP_INDICES)
    others = [i for i in range(21) if i not in LIP_INDICES]
    assert torch.equal(lips_frozen.exp[:, lips], motion.exp[:1, lips].expand(12, -1, -1))
    assert torch.equal(lips_frozen.exp[:, others], motion.exp[:, others])
    yaw_only = motion.scaled_regions(strengths(yaw=0))
    assert (yaw_only.yaw == motion.yaw[0]).all()
    assert torch.equal(yaw_only.pitch, motion.pitch) and torch.equal(yaw_only.roll, motion.roll)
    eyes = motion.scaled_regions(strengths(eyes=2))
    moved = (eyes.exp - motion.exp).abs().amax(dim=(0, 2)).nonzero().flatten().tolist()
    assert moved == [11, 13, 15, 16]
    still = motion.scaled_regions(strengths(translation=0))
    assert (still.t == motion.t[:1]).all()


def test_chunks_use_the_clip_reference_and_times():
    motion = make_motion(50)
    timeline = parse_strengths("lips=0.5; yaw: 0s=1, 1s=0 ease-in-out")
    whole = apply_strengths(motion, timeline)
    chunk = apply_strengths(motion[20:30], timeline, reference=motion[:1], first_frame=20)
    for name in ("exp", "t", "pitch", "yaw", "roll"):
        torch.testing.assert_close(getattr(chunk, name), getattr(whole, name)[20:30], rtol=0, atol=0)
    # yaw strength eases from 1 at 0 s to 0 at 1 s (frame 25 at 25 fps), then stays at 0
    assert torch.equal(whole.yaw[:1], motion.yaw[:1])
    assert (whole.yaw[25:] == motion.yaw[0]).all() and not (whole.yaw[1:25] == motion.yaw[0]).all()


def test_strength_text_errors():
    with pytest.raises(EditSyntaxError, match="unknown name 'lip'.*column 1"):
        parse_strengths("lip=0.5")
    with pytest.raises(EditSyntaxError, match="outside the range 0..3"):
        parse_strengths("yaw=5")
