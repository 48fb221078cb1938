"""joyvasa_core/job.py: the Job value and the motion stages that run window by window."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from joyvasa_core.edits import apply_strengths, mix_motion, parse_strengths
from helpers_pipeline import random_motion
from joyvasa_core.job import JobEdits, Outputs, SourceSpec, motion_stages
from joyvasa_core.motion import MotionSequence, MotionStream


def chunked(motion: MotionSequence, size: int) -> MotionStream:
    return MotionStream([motion[i:i + size] for i in range(0, len(motion), size)],
                        fps=motion.fps, n_frames=len(motion))


@pytest.mark.parametrize("size", [1, 7, 100])
def test_motion_stages_window_by_window_equal_the_whole_clip(tmp_path: Path, size: int):
    motion, pose = random_motion(83, 0), random_motion(31, 1, fps=30.0)
    pose.save(tmp_path / "pose.safetensors")
    strengths = parse_strengths("yaw=0.5, roll=0; lips: 0s=1, 2s=2.5 ease-in")
    edits = JobEdits(strength=strengths, pose_from=tmp_path / "pose.safetensors", pose_eyes=True)
    staged = motion_stages(chunked(motion, size), edits, None, SourceSpec(image=Path("x.png")))
    got = staged.collect()
    expected = apply_strengths(mix_motion(motion, pose, eyes=True), strengths)
    for name in MotionSequence._TENSORS:
        assert torch.equal(getattr(got, name), getattr(expected, name)), name
    assert not torch.equal(got.yaw, motion.yaw)           # the stages did something


def test_a_stage_that_changes_a_chunk_length_is_refused():
    stream = chunked(random_motion(10, 0), 4).map(lambda chunk, start: chunk[:1])
    with pytest.raises(ValueError, match="changed a chunk of 4 frames into 1"):
        stream.collect()


def test_stages_know_their_frame_offset():
    starts = []
    chunked(random_motion(10, 0), 4).map(lambda chunk, start: starts.append(start) or chunk).collect()
    assert starts == [0, 4, 8]


def test_job_values_refuse_what_cannot_run():
    with pytest.raises(ValueError, match="exactly one source"):
        SourceSpec()
    with pytest.raises(ValueError, match="exactly one source"):
        SourceSpec(image=Path("a.png"), video=Path("b.mp4"))
    with pytest.raises(ValueError, match="a video or keypoints"):
        Outputs()
