"""Timing rules of dubbing, frame by frame: constant grid, ping-pong, loop, trim, motion resampling."""
from __future__ import annotations

import pytest
import torch

from joyvasa_core import retime
from joyvasa_core.config import NUM_KP
from joyvasa_core.motion import MotionSequence


def test_pingpong_order_frame_by_frame():
    got = retime.playback_indices(12, 4, "pingpong").tolist()
    assert got == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1]


def test_loop_order_frame_by_frame():
    assert retime.playback_indices(9, 4, "loop").tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0]


def test_chunks_continue_the_same_order():
    whole = retime.playback_indices(23, 5, "pingpong")
    parts = torch.cat([retime.playback_indices(min(4, 23 - s), 5, "pingpong", start=s)
                       for s in range(0, 23, 4)])
    assert torch.equal(whole, parts)


@pytest.mark.parametrize("mode", retime.LOOP_MODES)
def test_trim_when_speech_is_shorter(mode):
    """Speech of 3 frames over a 10-frame source: the first 3 frames, then the output ends."""
    assert retime.playback_indices(3, 10, mode).tolist() == [0, 1, 2]


def test_single_frame_source_repeats():
    assert retime.playback_indices(4, 1, "pingpong").tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="loop mode must be one of"):
        retime.playback_indices(4, 3, "bounce")


def test_output_frame_count_ends_with_the_speech():
    assert retime.output_frame_count(2.0, 30.0) == 60
    assert retime.output_frame_count(1.99, 29.97) == 59          # int(59.64)
    assert retime.output_frame_count(0.01, 25.0) == 1
    with pytest.raises(ValueError, match="positive"):
        retime.output_frame_count(0.0, 25.0)


def test_constant_rate_source_maps_to_itself():
    times = torch.arange(7, dtype=torch.float64) / 29.97
    assert retime.constant_rate_indices(times, 29.97).tolist() == list(range(7))


def test_variable_rate_uses_timestamps():
    """Frames at 0, .1, .15, .4 s on a 20 fps grid (slots every .05 s): each slot shows the
    frame on screen at its time; a 1 ms timestamp rounding does not shift a slot."""
    times = torch.tensor([0.0, 0.1, 0.149, 0.4], dtype=torch.float64)
    got = retime.constant_rate_indices(times, 20.0).tolist()
    assert got == [0, 0, 1, 2, 2, 2, 2, 2, 3]


def test_source_indices_compose_grid_and_pingpong():
    times = torch.tensor([0.0, 0.1, 0.15], dtype=torch.float64)    # grid at 20 fps: 0 0 1 2
    got = retime.source_frame_indices(8, times, 20.0, "pingpong").tolist()
    assert got == [0, 0, 1, 2, 1, 0, 0, 0]     # grid positions 0 1 2 3 2 1 0 1


def _motion(n: int, fps: float = 25.0) -> MotionSequence:
    i = torch.arange(n, dtype=torch.float32)
    return MotionSequence(exp=i[:, None, None].expand(n, NUM_KP, 3) * 0.01, scale=1 + 0.1 * i[:, None],
                          t=torch.stack([i, -i, 2 * i], 1), pitch=3 * i, yaw=-2 * i,
                          roll=torch.zeros(n), fps=fps)


def test_motion_resampled_by_interpolation():
    """25 fps motion at 30 fps frame times: every value is the linear blend of its two
    neighbours (no frame dropped or repeated); past the end the last frame holds."""
    motion = _motion(10)
    times = retime.output_times(0, 14, 30.0)
    out = retime.resample_motion(motion, times, 30.0)
    assert len(out) == 14 and out.fps == 30.0
    pos = (times * 25).clamp(max=9).float()       # frame positions of the output times
    torch.testing.assert_close(out.t[:, 0], pos, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.pitch, 3 * pos, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.exp[:, 4, 2], 0.01 * pos, atol=1e-6, rtol=0)
    inside = int((pos < 9).sum())                   # 11 output frames fall inside the motion
    assert inside == 11 and len(set(out.pitch[:inside].tolist())) == inside   # none repeated
    assert out.pitch[inside:].tolist() == [27.0] * 3


def test_angles_interpolate_along_the_short_arc():
    motion = _motion(2)
    motion = MotionSequence(exp=motion.exp, scale=motion.scale, t=motion.t,
                            pitch=torch.tensor([170.0, -170.0]), yaw=torch.tensor([10.0, 20.0]),
                            roll=torch.tensor([-175.0, 175.0]), fps=1.0)
    out = retime.resample_motion(motion, torch.tensor([0.5], dtype=torch.float64), 1.0)
    assert abs(abs(float(out.pitch)) - 180.0) < 1e-4      # through 180, not through 0
    assert float(out.yaw) == pytest.approx(15.0)
    assert abs(abs(float(out.roll)) - 180.0) < 1e-4
