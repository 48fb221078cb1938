"""VideoWriter: H.264 + AAC MP4 written chunk by chunk; round trip through PyAV."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from joyvasa_core.video import VideoWriter, VideoWriterError, even_size, frames_to_uint8


def _probe(path):
    """(video codec, audio codec, (H, W), decoded frame count, decoded audio seconds, first frame)."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        vcodec, size = video.codec_context.name, (video.height, video.width)
        acodec = audio.codec_context.name if audio is not None else None
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    seconds = 0.0
    if acodec is not None:
        with av.open(str(path)) as container:
            rate = container.streams.audio[0].rate
            seconds = sum(f.samples for f in container.decode(audio=0)) / rate
    return vcodec, acodec, size, len(frames), seconds, frames[0]


def _speech(seconds, rate, channels):
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t).astype(np.float32)
    return np.stack([tone] * channels)


@pytest.mark.parametrize("audio_seconds", [1.3, 4.0])   # shorter (padded) and longer (cut)
def test_round_trip_frames_size_and_audio_length(tmp_path, audio_seconds):
    out = tmp_path / "clip.mp4"
    fps, batches, batch = 25, 6, 7            # 42 frames = 1.68 s, odd batch size
    wave = torch.from_numpy(_speech(audio_seconds, 44100, 2))
    with VideoWriter(out, fps, audio=(wave, 44100), crf=0) as writer:
        for i in range(batches):
            writer.write(torch.full((batch, 101, 67, 3), i / batches))   # odd H and W
    vcodec, acodec, size, n_frames, seconds, _ = _probe(out)
    assert vcodec == "h264" and acodec == "aac"
    assert size == (100, 66)
    assert n_frames == batches * batch
    # AAC works in 1024-sample frames (+ encoder priming): allow 2 frames of slack.
    assert abs(seconds - n_frames / fps) <= 2 * 1024 / 44100


def test_uint8_frames_are_kept_and_rate_fallback(tmp_path):
    out = tmp_path / "u8.mp4"
    image = np.zeros((1, 64, 64, 3), np.uint8)
    image[:, :, 32:] = 200
    wave = _speech(0.5, 22_222, 1)   # not an AAC rate: resampled to 48 kHz
    with VideoWriter(out, 30, audio=(wave, 22_222), crf=0) as writer:
        writer.write(np.repeat(image, 5, axis=0))
    _, acodec, size, n_frames, seconds, first = _probe(out)
    assert acodec == "aac" and size == (64, 64) and n_frames == 5
    assert abs(first[:, :28].astype(int).mean() - 0) < 3
    assert abs(first[:, 36:].astype(int).mean() - 200) < 3
    assert abs(seconds - 5 / 30) <= 2 * 1024 / 48000


def test_no_audio_and_empty_video(tmp_path):
    out = tmp_path / "silent.mp4"
    with VideoWriter(out, 25) as writer:
        writer.write(torch.rand(3, 32, 32, 3))
    assert _probe(out)[1] is None
    empty = tmp_path / "empty.mp4"
    with pytest.raises(VideoWriterError, match="no frames"):
        with VideoWriter(empty, 25):
            pass
    assert not empty.exists()


def test_failure_inside_block_removes_partial_file(tmp_path):
    out = tmp_path / "partial.mp4"
    with pytest.raises(ValueError):
        with VideoWriter(out, 25) as writer:
            writer.write(torch.rand(2, 32, 32, 3))
            raise ValueError("cancelled")
    assert not out.exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_full_disk_mid_write_is_named_and_the_partial_file_removed(tmp_path):
    """A real ENOSPC from the kernel: the output is a link to /dev/full, where every write
    fails with 'No space left on device' once PyAV flushes its buffer (mid-write)."""
    out = tmp_path / "full.mp4"
    out.symlink_to("/dev/full")
    rng = np.random.default_rng(0)
    with pytest.raises(VideoWriterError) as info:
        with VideoWriter(out, 25) as writer:
            for _ in range(20):     # noise: x264 cannot compress it below PyAV's buffer
                writer.write(rng.integers(0, 256, (4, 128, 128, 3), dtype=np.uint8))
    message = str(info.value)
    assert message.startswith(f"no space left on the device while writing {out} (after ")
    assert "the partial file was removed" in message and "another disk" in message
    assert 0 < writer.frames_written < 80                   # it failed part way
    assert not out.is_symlink() and Path("/dev/full").exists()


def test_helpers():
    assert even_size(513, 301) == (512, 300)
    floats = torch.tensor([[[[0.0, 0.5, 1.2]]]])
    assert frames_to_uint8(floats).tolist() == [[[[0, 128, 255]]]]
    # exact round trip of a uint8 image converted to float
    levels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, -1, 1).expand(1, 1, 256, 3)
    assert np.array_equal(frames_to_uint8(levels.float() / 255), levels.numpy())
    with pytest.raises(VideoWriterError):
        frames_to_uint8(torch.zeros(2, 8, 8, 4))


def test_read_video_frames(tmp_path):
    from joyvasa_core.video import read_video_frames

    path = tmp_path / "clip.mp4"
    levels = np.linspace(30, 220, 12).astype(np.uint8)
    frames = np.broadcast_to(levels[:, None, None, None], (12, 32, 48, 3)).copy()
    with VideoWriter(path, fps=12) as writer:
        writer.write(frames)
    decoded, fps = read_video_frames(path)
    assert decoded.shape == (12, 32, 48, 3) and decoded.dtype == np.uint8 and fps == 12
    assert np.abs(decoded.astype(int).mean(axis=(1, 2, 3)) - levels).max() < 3   # H.264 rounding
    assert read_video_frames(path, max_frames=5)[0].shape[0] == 5
    not_video = tmp_path / "notes.txt"
    not_video.write_text("hello")
    with pytest.raises(ValueError, match="notes.txt"):
        read_video_frames(not_video)
