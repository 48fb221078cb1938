"""Source videos, decoded chunk by chunk with PyAV: upright frames plus their timestamps.

* :func:`probe_video` reads the stream header: upright size, rotation, average
  frame rate, whether there is audio. Every bad file becomes a named
  :class:`VideoSourceError` (no video stream, corrupt, truncated, zero frames).
* :func:`iter_video` decodes the whole video in presentation order and yields
  :class:`VideoChunk` s of at most ``chunk_size`` frames: ``[b, H, W, 3]``
  uint8 RGB frames (ComfyUI IMAGE layout, bytes rather than floats so a 4K
  chunk costs 25 MB per frame, not 100) and each frame's time in seconds.
  Only one chunk exists at a time, whatever the length or resolution.
* :class:`FrameReader` reads given frame indices again (seeking to the
  keyframe before them when they lie behind the decoder), which is how a
  video is played backwards for ping-pong without holding it in memory.
* :func:`iter_images` / :class:`ImageFrames`: the same for frames already in
  memory (a ComfyUI IMAGE batch at a given frame rate).

Variable frame rate: every frame keeps its own presentation timestamp
(``VideoChunk.times``); nothing assumes a constant rate. Rotation: phone
videos store landscape pixels plus a display matrix (or the older ``rotate``
tag); frames are rotated here so that everything downstream sees them upright,
as a player shows them.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch

from .errors import JoyVASAError

#: Frames per decoded chunk by default (4K: ~25 MB each as uint8).
DEFAULT_CHUNK = 8


class VideoSourceError(JoyVASAError, ValueError):
    """A source video that cannot be used; the message names the file and the fix."""


class NoVideoStreamError(VideoSourceError):
    def __init__(self, path: Path):
        super().__init__(f"{path} has no video stream (is it an audio file?). "
                         "Pass a video file (mp4, mov, mkv, webm, ...) as the source video.")


class CorruptVideoError(VideoSourceError):
    def __init__(self, path: Path, detail: str):
        super().__init__(f"{path} cannot be decoded as a video ({detail}). "
                         "Re-export or re-download it, or convert it with "
                         "`ffmpeg -i IN -c:v libx264 OUT.mp4`.")


class TruncatedVideoError(VideoSourceError):
    def __init__(self, path: Path, seconds: float, promised: float):
        super().__init__(f"{path} is truncated: its frames end after {seconds:.2f} s of the "
                         f"{promised:.2f} s its header promises (an interrupted copy or "
                         "download?). Copy or download it again.")


class EmptyVideoError(VideoSourceError):
    def __init__(self, path: Path):
        super().__init__(f"{path} has a video stream with zero frames. "
                         "Use a video that has at least one frame.")


@dataclass(frozen=True)
class VideoInfo:
    """What the header says. width/height are upright (after ``rotation``).

    rotation: degrees counter-clockwise the decoded pixels are turned to be
    upright (0, 90, 180 or -90); fps: the stream's average frame rate (frames
    per second; for a variable-rate video, frames / duration); frame_count:
    the container's count, 0 when it does not say; duration: seconds, 0 when
    unknown.
    """

    path: Path
    width: int
    height: int
    rotation: int
    fps: float
    frame_count: int
    duration: float
    has_audio: bool


@dataclass
class VideoChunk:
    """Consecutive decoded frames.

    frames: [b, H, W, 3] uint8 RGB, upright; times: [b] float64 seconds since
    the first frame (presentation timestamps); pts: [b] int64 stream
    timestamps (what :class:`FrameReader` seeks by); start: index of
    ``frames[0]`` in presentation order.
    """

    frames: torch.Tensor
    times: torch.Tensor
    pts: torch.Tensor
    start: int


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise FileNotFoundError(f"source video {path} not found; check the path")
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise CorruptVideoError(path, f"{type(exc).__name__}: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise NoVideoStreamError(path)
    container.streams.video[0].thread_type = "AUTO"
    return container


def _stream_rotation(stream) -> int:
    """Counter-clockwise degrees from the older ``rotate`` tag (clockwise there), or 0."""
    tag = (stream.metadata or {}).get("rotate")
    try:
        return _quarter(-float(tag)) if tag is not None else 0
    except ValueError:
        return 0


def _quarter(degrees: float) -> int:
    """Nearest multiple of 90 in (-180, 180]."""
    q = int(round(degrees / 90.0)) % 4
    return (0, 90, 180, -90)[q]


def probe_video(path: str | Path) -> VideoInfo:
    """Header facts of ``path`` (decodes at most one frame, for its display matrix)."""
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        rotation = _stream_rotation(stream)
        first = next(_decode(container, path), None)
        if first is None:
            raise EmptyVideoError(path)
        if first.rotation:
            rotation = _quarter(first.rotation)
        width, height = first.width, first.height
        if rotation in (90, -90):
            width, height = height, width
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        duration = float(stream.duration * stream.time_base) if stream.duration else \
            (container.duration / av.time_base if container.duration else 0.0)
        frames = int(stream.frames or 0)
        if not rate and frames and duration:
            rate = frames / duration
        if not rate:
            raise CorruptVideoError(path, "the stream has no frame rate")
        _check_complete(container, stream, path, float(rate))
        return VideoInfo(path, width, height, rotation, float(rate), frames, duration,
                         bool(container.streams.audio))
    finally:
        container.close()


def _check_complete(container, stream, path: Path, fps: float) -> None:
    """Raise :class:`TruncatedVideoError` when the packets stop short of the duration the
    header states (a cut-off file whose index survived: MP4 with the index first). Reads
    the packets from the last keyframe on, without decoding them."""
    if not stream.duration or stream.time_base is None:
        return
    start = stream.start_time or 0
    end = start + stream.duration
    try:
        container.seek(end, stream=stream, backward=True)
        last = None
        for packet in container.demux(stream):
            if packet.pts is not None and packet.size:
                stop = packet.pts + (packet.duration or 0)
                last = stop if last is None else max(last, stop)
    except av.FFmpegError as exc:
        raise CorruptVideoError(path, f"{type(exc).__name__}: {exc}") from exc
    reached = float(((last if last is not None else start) - start) * stream.time_base)
    promised = float(stream.duration * stream.time_base)
    if reached < promised - 2.0 / fps:
        raise TruncatedVideoError(path, reached, promised)


def _decode(container, path: Path) -> Iterator[av.VideoFrame]:
    try:
        yield from container.decode(container.streams.video[0])
    except av.FFmpegError as exc:
        raise CorruptVideoError(path, f"{type(exc).__name__}: {exc}") from exc


def _upright(frame: av.VideoFrame, rotation: int) -> np.ndarray:
    """[H, W, 3] uint8 RGB of ``frame`` turned ``rotation`` degrees counter-clockwise."""
    rgb = frame.to_ndarray(format="rgb24")
    return np.rot90(rgb, k=rotation // 90) if rotation else rgb


def _frame_time(frame: av.VideoFrame, previous: float | None, fps: float) -> float:
    if frame.pts is not None and frame.time_base is not None:
        return float(frame.pts * frame.time_base)
    return 0.0 if previous is None else previous + 1.0 / fps


def iter_video(path: str | Path, chunk_size: int = DEFAULT_CHUNK,
               info: VideoInfo | None = None) -> Iterator[VideoChunk]:
    """Decode ``path`` front to back in chunks of at most ``chunk_size`` frames.

    Times start at 0 for the first frame. Raises :class:`EmptyVideoError` when
    the stream yields no frame and :class:`CorruptVideoError` when decoding fails.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    path = Path(path)
    info = info or probe_video(path)
    container = _open(path)
    try:
        frames: list[np.ndarray] = []
        times: list[float] = []
        pts: list[int] = []
        start, origin, last = 0, None, None
        for frame in _decode(container, path):
            t = _frame_time(frame, last, info.fps)
            origin = t if origin is None else origin
            last = t
            frames.append(_upright(frame, info.rotation))
            times.append(t - origin)
            pts.append(-1 if frame.pts is None else int(frame.pts))
            if len(frames) == chunk_size:
                yield _chunk(frames, times, pts, start)
                start += len(frames)
                frames, times, pts = [], [], []
        if frames:
            yield _chunk(frames, times, pts, start)
            start += len(frames)
        if start == 0:
            raise EmptyVideoError(path)
    finally:
        container.close()


def _chunk(frames: list[np.ndarray], times: list[float], pts: list[int], start: int) -> VideoChunk:
    return VideoChunk(torch.from_numpy(np.stack(frames)),
                      torch.tensor(times, dtype=torch.float64),
                      torch.tensor(pts, dtype=torch.int64), start)


class FrameReader:
    """Frames of one video by index, decoding forward and seeking back when needed.

    pts: [N] int64 presentation timestamps of every frame in order (the
    ``VideoChunk.pts`` of a full :func:`iter_video` pass). Requests that move
    forward continue the open decoder; a request behind it seeks to the
    keyframe before its first frame. Holds at most the frames of one request.
    Use as a context manager (or call :meth:`close`).
    """

    #: A forward gap (frames) beyond which seeking beats decoding through.
    SEEK_AHEAD = 64

    def __init__(self, path: str | Path, info: VideoInfo, pts: torch.Tensor):
        self.path = Path(path)
        self.info = info
        self.pts = pts.numpy() if isinstance(pts, torch.Tensor) else np.asarray(pts, np.int64)
        if (self.pts < 0).any():
            raise CorruptVideoError(self.path, "frames without timestamps cannot be revisited")
        self._container = _open(self.path)
        self._frames: Iterator[av.VideoFrame] | None = None
        self._next = 0          # index of the frame the open decoder yields next

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def read(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Frames ``[len(indices), H, W, 3]`` uint8 in the order asked (repeats allowed)."""
        wanted = sorted({int(i) for i in indices})
        if not wanted:
            raise ValueError("read() needs at least one frame index")
        if wanted[0] < 0 or wanted[-1] >= len(self.pts):
            raise IndexError(f"frame indices {wanted[0]}..{wanted[-1]} outside 0..{len(self.pts) - 1}")
        if self._frames is None or not self._next <= wanted[0] <= self._next + self.SEEK_AHEAD:
            self._seek(wanted[0])
        got: dict[int, np.ndarray] = {}
        need = set(wanted)
        while need:
            frame = next(self._frames, None)
            if frame is None:
                raise CorruptVideoError(self.path, f"frames {sorted(need)[:3]}... could not be "
                                        "decoded again")
            index = self._index_of(frame)
            if index is None:
                continue
            self._next = index + 1
            if index in need:
                got[index] = _upright(frame, self.info.rotation)
                need.discard(index)
        return torch.from_numpy(np.stack([got[int(i)] for i in indices]))

    def _seek(self, index: int) -> None:
        stream = self._container.streams.video[0]
        self._container.seek(int(self.pts[index]), stream=stream, backward=True, any_frame=False)
        self._frames = _decode(self._container, self.path)
        self._next = 0

    def _index_of(self, frame: av.VideoFrame) -> int | None:
        if frame.pts is None:
            return None
        i = int(np.searchsorted(self.pts, frame.pts))
        return i if i < len(self.pts) and self.pts[i] == frame.pts else None


def _as_uint8(images: torch.Tensor) -> torch.Tensor:
    """IMAGE [b, H, W, C] float 0..1 (or uint8) -> [b, H, W, 3] uint8 on the CPU."""
    images = images[..., :3].detach().cpu()
    if images.dtype == torch.uint8:
        return images
    return (images.float().clamp(0, 1) * 255).round_().to(torch.uint8)


def check_images(images: torch.Tensor) -> None:
    """Raise :class:`VideoSourceError` (one line, with the fix) unless ``images`` is a
    non-empty IMAGE batch [N, H, W, 3 or 4]."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] not in (3, 4):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise VideoSourceError(f"video frames must be an IMAGE batch [B, H, W, 3]; got {shape}. "
                               "Connect the images of a video loader.")
    if images.shape[0] == 0:
        raise VideoSourceError("the video frames are empty (0 images); load a video with frames")


def iter_images(images: torch.Tensor, fps: float,
                chunk_size: int = DEFAULT_CHUNK) -> Iterator[VideoChunk]:
    """Frames in memory (IMAGE [N, H, W, 3], float 0..1 or uint8) as :class:`VideoChunk` s:
    frame i at ``i / fps`` seconds, pts = i."""
    check_images(images)
    if fps <= 0:
        raise VideoSourceError(f"the frame rate must be positive, got {fps}")
    for start in range(0, images.shape[0], chunk_size):
        stop = min(start + chunk_size, images.shape[0])
        index = torch.arange(start, stop)
        yield VideoChunk(_as_uint8(images[start:stop]), index.to(torch.float64) / fps, index, start)


class SharedReader:
    """A frame reader (:class:`FrameReader` or :class:`ImageFrames`) read by several faces of
    one video: a request for the frames of the last request (the next face of the same
    chunk) is served from them, without decoding again. Closing it more than once closes
    the reader once."""

    def __init__(self, reader: "FrameReader | ImageFrames") -> None:
        self.reader, self.last, self.closed = reader, None, False

    def read(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Frames ``[len(indices), H, W, 3]`` uint8 in the order asked."""
        key = tuple(int(i) for i in indices)
        if self.last is None or self.last[0] != key:
            self.last = (key, self.reader.read(indices))
        return self.last[1]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.reader.close()


class ImageFrames:
    """:class:`FrameReader` for frames already in memory (IMAGE [N, H, W, 3])."""

    def __init__(self, images: torch.Tensor):
        check_images(images)
        self.images = images

    def read(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Frames ``[len(indices), H, W, 3]`` uint8 in the order asked."""
        return _as_uint8(self.images[torch.as_tensor(indices, dtype=torch.long)])

    def close(self) -> None:
        """Nothing to release (the frames belong to the caller)."""
