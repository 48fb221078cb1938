"""joyvasa_core/retime.py streamed: resample_stream equals resample_motion of the whole clip
bit for bit, whatever the chunking and the output rate; loop_positions is the one fold."""
from __future__ import annotations

import pytest
import torch

from joyvasa_core.edits.mixing import loop_indices
from joyvasa_core.motion import MotionSequence, MotionStream
from joyvasa_core.retime import (loop_positions, output_times, playback_indices, resample_motion,
                                 resample_stream)


def random_motion(frames: int) -> MotionSequence:
    g = torch.Generator().manual_seed(frames)
    return MotionSequence(exp=torch.randn(frames, 21, 3, generator=g),
                          scale=torch.rand(frames, 1, generator=g), t=torch.randn(frames, 3, generator=g),
                          pitch=100 * torch.randn(frames, generator=g),
                          yaw=170 * torch.randn(frames, generator=g),
                          roll=10 * torch.randn(frames, generator=g), fps=25.0)


@pytest.mark.parametrize("fps, count, chunk", [(30.0, 280, 100), (23.976, 220, 100),
                                               (12.0, 110, 37), (60.0, 560, 1),
                                               (29.97, 284, 100), (25.0, 236, 100)])
def test_resample_stream_equals_resampling_the_whole_clip(fps, count, chunk):
    motion = random_motion(237)
    chunks = [motion[i:i + chunk] for i in range(0, len(motion), chunk)]
    read = []

    def source():
        for c in chunks:
            read.append(len(c))
            yield c
    stream = resample_stream(MotionStream(source(), fps=25.0, n_frames=len(motion)), count, fps)
    assert stream.n_frames == count and stream.fps == fps
    parts = iter(stream)
    first = next(parts)
    assert len(read) <= 2 and len(first) > 0         # output starts after the first chunk or two
    got = MotionSequence.cat([first, *parts])
    expected = resample_motion(motion, output_times(0, count, fps), fps)
    for name in MotionSequence._TENSORS:
        assert torch.equal(getattr(got, name), getattr(expected, name)), name


def test_loop_positions_is_the_one_fold():
    assert loop_positions(torch.arange(10), 4).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert loop_positions(torch.arange(6), 4, "loop").tolist() == [0, 1, 2, 3, 0, 1]
    assert playback_indices(5, 4, "pingpong", start=5).tolist() == [1, 0, 1, 2, 3]
    assert loop_indices(5, 25.0, 4, 25.0, start=5).tolist() == [1, 0, 1, 2, 3]
    assert loop_indices(3, 25.0, 1, 10.0).tolist() == [0, 0, 0]
