"""Source video decoding: chunks, timestamps (constant and variable rate), rotation, bad files."""
from __future__ import annotations

import numpy as np
import pytest

import helpers_video as hv
from joyvasa_core import video_source as vs

#: H.264 crf 0 stores yuv444p exactly, but rgb24 <-> yuv444p (8-bit) rounds by up to 2 levels.
YUV_LEVELS = 2


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return hv.drifting_astronaut(11)


def _all(path, chunk=4):
    chunks = list(vs.iter_video(path, chunk))
    return chunks, np.concatenate([c.frames.numpy() for c in chunks]), \
        np.concatenate([c.times.numpy() for c in chunks])


def test_constant_rate_chunks_frames_and_times(tmp_path, frames):
    path = hv.write_clip(tmp_path / "cfr.mp4", frames, fps=30)
    info = vs.probe_video(path)
    assert (info.width, info.height, info.rotation, info.fps) == (232, 200, 0, 30.0)
    chunks, decoded, times = _all(path)
    assert [c.frames.shape[0] for c in chunks] == [4, 4, 3]
    assert [c.start for c in chunks] == [0, 4, 8]
    assert decoded.dtype == np.uint8 and decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).max() <= YUV_LEVELS
    np.testing.assert_allclose(times, np.arange(11) / 30, atol=1e-6)


def test_variable_rate_keeps_each_timestamp(tmp_path, frames):
    times = np.array([0, .04, .1, .13, .3, .31, .5, .52, .6, .7, .74])
    path = hv.write_clip(tmp_path / "vfr.mp4", frames, times=times)
    info = vs.probe_video(path)
    _, decoded, got = _all(path, chunk=3)
    np.testing.assert_allclose(got, times, atol=1e-3)        # millisecond time base
    assert np.abs(decoded.astype(int) - frames).max() <= YUV_LEVELS
    assert info.fps == pytest.approx(11 / info.duration, rel=0.02)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_gives_upright_frames(tmp_path, frames, rotation):
    stored = np.ascontiguousarray(np.rot90(frames, k=-rotation // 90, axes=(1, 2)))
    path = hv.write_clip(tmp_path / "phone.mp4", stored, rotation=rotation)
    info = vs.probe_video(path)
    assert info.rotation == rotation and (info.height, info.width) == frames.shape[1:3]
    _, decoded, _ = _all(path)
    assert np.abs(decoded.astype(int) - frames).max() <= YUV_LEVELS


def test_frame_reader_goes_back_and_forth(tmp_path, frames):
    path = hv.write_clip(tmp_path / "seek.mp4", frames)
    info = vs.probe_video(path)
    pts = np.concatenate([c.pts.numpy() for c in vs.iter_video(path, 5)])
    with vs.FrameReader(path, info, pts) as reader:
        for order in ([10, 9, 8], [0, 1, 1, 2], [7], [3, 2]):
            got = reader.read(order).numpy().astype(int)
            assert np.abs(got - frames[order]).max() <= YUV_LEVELS, order


def test_no_video_stream(tmp_path):
    path = hv.espeak_wav(tmp_path / "speech.wav", "no pictures here")
    with pytest.raises(vs.NoVideoStreamError, match="speech.wav has no video stream"):
        vs.probe_video(path)


def test_corrupt_file(tmp_path, frames):
    good = hv.write_clip(tmp_path / "good.mp4", frames).read_bytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 64 + good[len(good) // 2:])
    with pytest.raises(vs.CorruptVideoError, match="bad.mp4 cannot be decoded"):
        vs.probe_video(bad)


@pytest.mark.parametrize("faststart", [False, True])
def test_truncated_file(tmp_path, faststart):
    """Cut in half: with the index at the end the index is lost (cannot be decoded); with the
    index first the header still promises every frame, and the missing ones are noticed."""
    frames = hv.drifting_astronaut(40, step=1)[:, ::4, ::4].copy()   # 50 x 58, small and fast
    whole = hv.write_clip(tmp_path / "whole.mp4", frames, faststart=faststart)
    assert vs.probe_video(whole).frame_count == len(frames)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    error = vs.TruncatedVideoError if faststart else vs.CorruptVideoError
    with pytest.raises(error, match="cut.mp4 (is truncated|cannot be decoded)") as info:
        vs.probe_video(cut)
    if faststart:
        assert "of the 1.60 s its header promises" in str(info.value)


def test_zero_frames(tmp_path):
    """Matroska keeps a video track that never got a frame (MP4 would drop the track)."""
    path = hv.write_zero_frame_video(tmp_path / "empty.mkv")
    with pytest.raises(vs.EmptyVideoError, match="empty.mkv has a video stream with zero frames"):
        vs.probe_video(path)

