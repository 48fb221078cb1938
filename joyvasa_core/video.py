"""Streaming MP4 writer: H.264 video plus the speech as AAC, chunk by chunk.

:class:`VideoWriter` takes frame batches as they are rendered and encodes each
batch at once, so memory stays flat however long the video is. The audio track
is encoded alongside, in step with the video (never more than one chunk
ahead), and at close it is cut or padded with silence to exactly the video's
duration.

Example::

    with VideoWriter("out.mp4", fps=25, audio=(waveform, 44100)) as writer:
        for frames in chunks:           # [b, H, W, 3] float 0..1 or uint8
            writer.write(frames)
"""
from __future__ import annotations

import errno
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np
import torch

from .errors import JoyVASAError
from .face.image_io import to_uint8

#: H.264 encoders tried in order; the first one PyAV's FFmpeg has wins.
H264_ENCODERS = ("libx264", "h264", "libopenh264", "h264_videotoolbox", "h264_nvenc")
#: Rate used when the speech's own rate is not one AAC supports (Hz).
AAC_FALLBACK_RATE = 48000
#: errno of a write that did not fit -> the cause as the error line says it.
DISK_FULL = {errno.ENOSPC: "no space left on the device",
             errno.EFBIG: "the file grew too large for the file system",
             **({errno.EDQUOT: "the disk quota is exhausted"} if hasattr(errno, "EDQUOT") else {})}


class VideoWriterError(JoyVASAError, RuntimeError):
    """The MP4 cannot be written (no encoder, bad frame shape, unwritable path)."""


def pick_h264_encoder() -> str:
    """Name of the first H.264 encoder available to PyAV (libx264 preferred)."""
    for name in H264_ENCODERS:
        try:
            av.codec.Codec(name, "w")
        except Exception:  # noqa: BLE001 - PyAV raises several kinds for "unknown codec"
            continue
        return name
    raise VideoWriterError(
        "PyAV has no H.264 encoder. Install a PyAV wheel built with libx264 "
        "(`pip install --force-reinstall av`)."
    )


def even_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) rounded down to even numbers, as yuv420p needs."""
    return height - height % 2, width - width % 2


def frames_to_uint8_tensor(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Frames [b, H, W, 3] (float 0..1 or uint8, any device) -> uint8 tensor, same device.

    Floats are clamped and rounded to the nearest level where they are, so only
    uint8 needs to cross to the host.
    """
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(frames)
    if frames.ndim == 3:
        frames = frames.unsqueeze(0)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise VideoWriterError(f"frames must be [b, H, W, 3]; got {tuple(frames.shape)}")
    return to_uint8(frames)


def frames_to_uint8(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    """Frames [b, H, W, 3] (float 0..1 or uint8, any device) -> uint8 ndarray on the host."""
    return frames_to_uint8_tensor(frames).cpu().numpy()


def _audio_layout(channels: int) -> str:
    return "mono" if channels == 1 else "stereo"


def _as_channels_first(waveform: torch.Tensor | np.ndarray) -> np.ndarray:
    """Waveform [N] or [C, N] -> float32 [C', N] with C' in {1, 2}.

    More than two channels are averaged to mono. The array is a view where
    possible; nothing here copies the whole recording twice.
    """
    if isinstance(waveform, torch.Tensor):
        waveform = waveform.detach().cpu().numpy()
    wave = np.asarray(waveform)
    if wave.ndim == 1:
        wave = wave[None]
    if wave.ndim != 2:
        raise VideoWriterError(f"audio waveform must be [N] or [C, N]; got shape {wave.shape}")
    if wave.shape[0] > 2:
        wave = wave.mean(axis=0, keepdims=True)
    return wave


class VideoWriter:
    """Context manager that encodes frame batches to H.264/yuv420p MP4 with AAC speech.

    Args:
        path: output file (``.mp4``); parent folders are created.
        fps: frames per second of the motion (e.g. 25).
        audio: optional ``(waveform [N] or [C, N] float, sample_rate Hz)``; its
            track is cut or padded with silence to the video's duration.
        crf: x264 constant rate factor (0 = lossless .. 51; 18 ~ visually lossless).
        preset: x264 preset.
        audio_bitrate: AAC bit rate in bit/s.

    The frame size is taken from the first batch and rounded down to even
    numbers (the last row/column of an odd-sized frame is dropped).
    """

    def __init__(self, path: str | Path, fps: float, audio: tuple | None = None, *,
                 crf: int = 18, preset: str = "medium", audio_bitrate: int = 160_000) -> None:
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.crf = crf
        self.preset = preset
        self.audio_bitrate = audio_bitrate
        self.frames_written = 0
        self.size: tuple[int, int] | None = None  # (height, width) after rounding to even
        self._audio = None if audio is None else _as_channels_first(audio[0])
        self._audio_rate = None if audio is None else int(audio[1])
        self._audio_done = 0     # samples of the source waveform already encoded
        self._container = None
        self._vstream = None
        self._astream = None

    # -- context manager -------------------------------------------------------------
    def __enter__(self) -> VideoWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._container = av.open(str(self.path), mode="w", format="mp4")
        except (OSError, av.FFmpegError) as exc:
            raise VideoWriterError(f"cannot write {self.path}: {exc}. "
                                   "Choose a writable output path.") from exc
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            try:
                self.close()
            except OSError as error:    # the trailer did not fit on the disk
                self._abort()
                raise self._disk_error(error) or error
            return
        self._abort()   # leave no half-written file behind; keep the original error
        if isinstance(exc, OSError):
            translated = self._disk_error(exc)
            if translated is not None:
                raise translated from exc

    # -- writing -----------------------------------------------------------------------
    def write(self, frames: torch.Tensor | np.ndarray) -> None:
        """Encode a batch of frames [b, H, W, 3] (float 0..1 or uint8, any device)."""
        if self._container is None:
            raise VideoWriterError("VideoWriter.write() called outside its `with` block")
        batch = frames_to_uint8(frames)
        if self._vstream is None:
            self._open_streams(batch.shape[1], batch.shape[2])
        height, width = self.size
        if batch.shape[1] < height or batch.shape[2] < width:
            raise VideoWriterError(f"frame size changed from {self.size} to {batch.shape[1:3]}")
        batch = batch[:, :height, :width]
        for image in batch:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = self.frames_written
            self._container.mux(self._vstream.encode(frame))
            self.frames_written += 1
        self._write_audio_until(self.frames_written)

    def close(self) -> None:
        """Flush the encoders, finish the audio at the video's length, close the file."""
        if self._container is None:
            return
        if self._vstream is None:
            self._abort()
            raise VideoWriterError("no frames were written; the video would be empty")
        self._write_audio_until(self.frames_written)
        self._container.mux(self._vstream.encode(None))
        if self._astream is not None:
            self._container.mux(self._astream.encode(None))
        self._container.close()
        self._container = None

    @property
    def duration(self) -> float:
        """Seconds of video written so far."""
        return float(self.frames_written / self.fps)

    # -- internals ---------------------------------------------------------------------
    def _open_streams(self, height: int, width: int) -> None:
        height, width = even_size(height, width)
        if height < 2 or width < 2:
            raise VideoWriterError(f"frames of {height}x{width} pixels are too small to encode")
        self.size = (height, width)
        encoder = pick_h264_encoder()
        options = {"crf": str(self.crf), "preset": self.preset} if encoder == "libx264" else {}
        stream = self._container.add_stream(encoder, rate=self.fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = 1 / self.fps
        if encoder != "libx264":
            stream.bit_rate = 8_000_000
        self._vstream = stream
        if self._audio is not None:
            supported = av.codec.Codec("aac", "w").audio_rates or ()
            rate = self._audio_rate if self._audio_rate in supported else AAC_FALLBACK_RATE
            astream = self._container.add_stream("aac", rate=rate)
            astream.layout = _audio_layout(self._audio.shape[0])
            astream.bit_rate = self.audio_bitrate
            self._astream = astream

    def _write_audio_until(self, n_frames: int) -> None:
        """Encode the source audio up to the time of video frame ``n_frames``.

        Past the end of the speech, silence is encoded; nothing beyond the
        video's time is ever encoded, so the track ends with the video.
        """
        if self._astream is None:
            return
        end = int(round(n_frames / self.fps * self._audio_rate))
        channels, available = self._audio.shape
        start = self._audio_done
        if end <= start:
            return
        chunk = np.zeros((channels, end - start), dtype=np.float32)
        take = max(0, min(end, available) - start)
        chunk[:, :take] = self._audio[:, start:start + take]
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp",
                                           layout=_audio_layout(channels))
        frame.sample_rate = self._audio_rate
        frame.pts = start
        frame.time_base = Fraction(1, self._audio_rate)
        self._container.mux(self._astream.encode(frame))
        self._audio_done = end

    def _disk_error(self, exc: OSError) -> VideoWriterError | None:
        """The user's line for a full disk, a full quota or a file too large for the file
        system (None for any other error)."""
        if exc.errno not in DISK_FULL:
            return None
        return VideoWriterError(
            f"{DISK_FULL[exc.errno]} while writing {self.path} (after {self.frames_written} "
            "frames); the partial file was removed. Free some space or choose an output "
            "folder on another disk.")

    def _abort(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - already failing; the file is removed below
                pass
            self._container = None
        self.path.unlink(missing_ok=True)


def read_video_frames(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decode a video file into ``[N, H, W, 3]`` uint8 RGB frames and its frame rate.

    The whole clip (or its first ``max_frames`` frames) is held in memory:
    meant for short driving clips. Raises ValueError naming the file when it
    cannot be read or holds no video.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path} holds no video stream; give a video file "
                                 "(mp4, mov, webm, ...) or a motion .safetensors")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 25)
            frames = []
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except av.error.FFmpegError as exc:
        raise ValueError(f"cannot read the video {path}: {exc}; give a video FFmpeg decodes") from None
    if not frames:
        raise ValueError(f"{path} has no video frames")
    return np.stack(frames), fps
