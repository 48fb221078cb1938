"""Face track: where the face is in every source frame, and the renderer's view of it.

A source video is a sequence of frames, each with its own face crop; a photo
is a track of one (:mod:`joyvasa_core.sources`).

Tracking a video (:func:`track_faces`, one streaming pass over the decoded
chunks; per frame it keeps only a few numbers, ~100 bytes):

* detect on the first frame (full frame, the ``face_index``-th face);
* then look for the face in a window around its last box (about 3x the box,
  cheaper than the whole frame); when it is not found there (lost) or the
  found box overlaps the last one by less than :data:`DRIFT_IOU` (drift), or
  every :data:`REDETECT_SECONDS`, detect on the whole frame again and keep the
  face that overlaps the last box most;
* frames where no face is found are marked and later pass through unchanged
  (a cutaway is not an error); a video with no face anywhere is
  :class:`NoFaceInVideoError`;
* the crop square (centre, side, roll of the official crop) is smoothed over
  time with a centred moving average of :data:`SMOOTH_SECONDS` inside each
  run of face frames, so the crop does not jitter.

The faces of a scene are tracked in the same one pass (:func:`track_scene`),
each from its box on the first frame; while one is away its track waits at
its last box and takes no other face.

:class:`joyvasa_core.sources.VideoSource` then serves the renderer: for output
frames start..stop it decodes their source frames
(:class:`~joyvasa_core.video_source.FrameReader`), cuts the crops
(:func:`crop_for_models`) and runs F and M on them as one batch.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import config
from .face import crop as geometry
from .face.backends import (MIN_FACE_PX, Face, FaceBackend, box_iou, get_backend,
                            letterbox_o2c, select_face)
from .face.errors import FaceError
from .face.image_io import detection_view, to_float01
from .video_source import VideoChunk

#: Smallest overlap (IoU) of consecutive face boxes that counts as the same track.
DRIFT_IOU = 0.3
#: Full-frame detection at least this often (seconds), to catch drift and new shots.
REDETECT_SECONDS = 2.0
#: Length of the centred moving average of the crop square (seconds).
SMOOTH_SECONDS = 0.2
#: The local search window extends the last box by this many box sizes on each side.
WINDOW_MARGIN = 1.0


class NoFaceInVideoError(FaceError):
    def __init__(self, name: str, frames: int, backend: str):
        super().__init__(
            f"no face found in any of the {frames} frames of {name} by the '{backend}' face "
            "backend. Use a video where a face is clearly visible, or another face backend.")


@dataclass
class FaceTrack:
    """Per source frame: the crop transform and whether a face is there.

    M_o2c: [N, 3, 3] float64 original -> 512 crop (frames without a face carry
    the nearest face frame's transform); has_face: [N] bool; times: [N] float64
    seconds; pts: [N] int64 stream timestamps; backend: the detector used.
    """

    M_o2c: np.ndarray
    has_face: np.ndarray
    times: torch.Tensor
    pts: torch.Tensor
    backend: str

    def __len__(self) -> int:
        return int(self.has_face.shape[0])


def _detect(detector: FaceBackend, image: np.ndarray, offset=(0, 0)) -> list[Face]:
    """Faces of ``image`` [H, W, 3] uint8 in full-image pixels (detection on a shrunk copy),
    shifted by ``offset`` (x, y); faces smaller than ``MIN_FACE_PX`` are dropped."""
    view, factor = detection_view(np.ascontiguousarray(image))
    shift = np.asarray(offset, dtype=np.float64)
    faces = []
    for face in detector.detect(view):
        face = face.scaled(factor)
        side = max(face.box[2] - face.box[0], face.box[3] - face.box[1])
        if side >= MIN_FACE_PX:
            faces.append(Face(face.box + np.tile(shift, 2), face.score, face.points + shift,
                              None if face.lmk203 is None else face.lmk203 + shift))
    return faces


class _Tracker:
    """Detect-then-track over frames, one call per frame: the Face or None."""

    def __init__(self, detector: FaceBackend, face_index: int, redetect_every: int, name: str,
                 start_box: np.ndarray | None = None):
        self.detector, self.face_index, self.name = detector, face_index, name
        self.redetect_every = max(1, redetect_every)
        # a tracker started from a box (one face of a scene) keeps the last box it saw as its
        # anchor while the face is away, and never takes another face in its place
        self.anchored = start_box is not None
        self.box: np.ndarray | None = None if start_box is None else np.asarray(start_box, float)
        self.since_full = 0 if start_box is None else redetect_every

    def __call__(self, image: np.ndarray) -> Face | None:
        face = None
        if self.box is not None and self.since_full < self.redetect_every:
            face = self._local(image)
            self.since_full += 1
        if face is None:
            face = self._full(image)
            self.since_full = 0
        if face is not None or not self.anchored:
            self.box = None if face is None else face.box
        return face

    def _local(self, image: np.ndarray) -> Face | None:
        height, width = image.shape[:2]
        x0, y0, x1, y1 = self.box
        m = WINDOW_MARGIN * max(x1 - x0, y1 - y0)
        left, top = int(max(0, x0 - m)), int(max(0, y0 - m))
        right, bottom = int(min(width, x1 + m)), int(min(height, y1 + m))
        faces = _detect(self.detector, image[top:bottom, left:right], (left, top))
        best = max(faces, key=lambda f: box_iou(f.box, self.box), default=None)
        return best if best is not None and box_iou(best.box, self.box) >= DRIFT_IOU else None

    def _full(self, image: np.ndarray) -> Face | None:
        faces = _detect(self.detector, image)
        if not faces:
            return None
        if self.box is not None:
            best = max(faces, key=lambda f: box_iou(f.box, self.box))
            if box_iou(best.box, self.box) >= DRIFT_IOU:
                return best
        if self.anchored:
            return None
        return select_face(faces, min(self.face_index, len(faces) - 1), "large-small", self.name)


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0 of [L, d]; near the ends the window shrinks
    symmetrically (so a steady drift stays exact: no lag at the start or end of a run)."""
    if window <= 1 or len(values) < 2:
        return values
    padded = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])
    idx = np.arange(len(values))
    half = np.minimum(window // 2, np.minimum(idx, len(values) - 1 - idx))
    lo, hi = idx - half, idx + half + 1
    return (padded[hi] - padded[lo]) / (hi - lo)[:, None]


def smooth_crops(squares: np.ndarray, has_face: np.ndarray, window: int) -> np.ndarray:
    """Smoothed crop squares [N, 4] = (cx, cy, side, roll radians) within runs of face frames.

    A run ends at a frame without a face or where the square jumps by more than
    half its side (a cut to another shot). Rolls are unwrapped before averaging.
    """
    out = squares.copy()
    n = len(squares)
    i = 0
    while i < n:
        if not has_face[i]:
            i += 1
            continue
        j = i + 1
        while j < n and has_face[j] and np.hypot(*(squares[j, :2] - squares[j - 1, :2])) \
                <= 0.5 * squares[j - 1, 2]:
            j += 1
        run = squares[i:j].copy()
        run[:, 3] = np.unwrap(run[:, 3])
        out[i:j] = _moving_average(run, window)
        i = j
    return out


def _square(face: Face, crop_scale: float, vx: float, vy: float) -> np.ndarray:
    centre, side, roll = geometry.crop_rect(face.points, crop_scale, vx, vy)
    return np.array([centre[0], centre[1], side[0], roll])


def track_faces(chunks: Iterable[VideoChunk], fps: float, *, face_backend: str = "auto",
                models_dir: str | Path | None = None, face_index: int = 0,
                crop_scale: float = config.CROP_SCALE, vx_ratio: float = config.CROP_VX_RATIO,
                vy_ratio: float = config.CROP_VY_RATIO, smooth_seconds: float = SMOOTH_SECONDS,
                redetect_seconds: float = REDETECT_SECONDS, name: str = "the source video",
                progress: Callable[[int, int], None] | None = None,
                expected_frames: int = 0, box=None, start_box=None) -> FaceTrack:
    """One pass over decoded chunks -> :class:`FaceTrack` (see the module docstring).

    box: (x1, y1, x2, y2) pixels of a face that stays there (a fixed camera and
    sitter): no detection, every frame uses it. face_backend ``"none"`` without
    a box takes every whole frame as the face, centred in the crop, as it does
    for a photo (:func:`~joyvasa_core.face.backends.letterbox_o2c`). start_box: (x1, y1,
    x2, y2) pixels of the face to follow from the first frame (one face of a scene, found
    there by :func:`joyvasa_core.scene.select_faces`) instead of the ``face_index``-th; while
    it is away the track keeps its last box and takes no other face (its frames pass through).
    """
    if face_backend == "none" and box is None:
        return _whole_frames(chunks, progress, expected_frames)
    detector = get_backend("none" if box is not None else face_backend, models_dir, box=box)
    tracker = _Tracker(detector, face_index, round(redetect_seconds * fps), name,
                       None if box is not None else start_box)
    return _follow(chunks, [tracker], fps, (crop_scale, vx_ratio, vy_ratio), smooth_seconds,
                   name, progress, expected_frames)[0]


def track_scene(chunks: Iterable[VideoChunk], fps: float, starts: Sequence[tuple[np.ndarray, bool]],
                *, face_backend: str = "auto", models_dir: str | Path | None = None,
                crop_scale: float = config.CROP_SCALE, vx_ratio: float = config.CROP_VX_RATIO,
                vy_ratio: float = config.CROP_VY_RATIO, smooth_seconds: float = SMOOTH_SECONDS,
                redetect_seconds: float = REDETECT_SECONDS, name: str = "the source video",
                progress: Callable[[int, int], None] | None = None,
                expected_frames: int = 0) -> list[FaceTrack]:
    """The faces of a scene tracked in one pass over decoded chunks: one :class:`FaceTrack`
    per ``(box, followed)`` of ``starts`` (x1, y1, x2, y2 pixels on the first frame), as
    :func:`track_faces` tracks it with ``start_box=box`` (followed) or ``box=box`` (a fixed
    box, no detection)."""
    redetect = round(redetect_seconds * fps)
    trackers = [_Tracker(get_backend(face_backend, models_dir), 0, redetect, name, box)
                if followed else _Tracker(get_backend("none", box=box), 0, redetect, name)
                for box, followed in starts]
    return _follow(chunks, trackers, fps, (crop_scale, vx_ratio, vy_ratio), smooth_seconds,
                   name, progress, expected_frames)


def _follow(chunks: Iterable[VideoChunk], trackers: Sequence[_Tracker], fps: float,
            crop: tuple[float, float, float], smooth_seconds: float, name: str,
            progress: Callable[[int, int], None] | None,
            expected_frames: int) -> list[FaceTrack]:
    """Every tracker over every frame of ``chunks`` (one pass) -> their tracks; crop: the
    official crop's (scale, vx, vy)."""
    squares = [[] for _ in trackers]
    found: list[list[bool]] = [[] for _ in trackers]
    times, pts = [], []
    for chunk in chunks:
        for image in chunk.frames.numpy():
            for tracker, square, seen in zip(trackers, squares, found):
                face = tracker(image)
                seen.append(face is not None)
                square.append(_square(face, *crop) if face is not None else np.full(4, np.nan))
        times.append(chunk.times)
        pts.append(chunk.pts)
        if progress is not None:
            progress(len(found[0]), max(expected_frames, len(found[0])))
    times, pts = torch.cat(times), torch.cat(pts)
    return [_track(np.stack(square), np.asarray(seen, bool), times, pts, fps, smooth_seconds,
                   name, tracker.detector.name)
            for tracker, square, seen in zip(trackers, squares, found)]


def _track(squares: np.ndarray, has_face: np.ndarray, times: torch.Tensor, pts: torch.Tensor,
           fps: float, smooth_seconds: float, name: str, backend: str) -> FaceTrack:
    """One face's crop squares [N, 4] (NaN where not found) -> its smoothed :class:`FaceTrack`."""
    if not has_face.any():
        raise NoFaceInVideoError(name, len(has_face), backend)
    square = smooth_crops(squares, has_face, max(1, round(smooth_seconds * fps)) | 1)
    idx = np.arange(len(has_face))
    faces = idx[has_face]
    nearest = faces[np.clip(np.searchsorted(faces, idx), 0, len(faces) - 1)]
    before = faces[np.clip(np.searchsorted(faces, idx) - 1, 0, len(faces) - 1)]
    nearest = np.where(np.abs(before - idx) < np.abs(nearest - idx), before, nearest)
    dsize = config.CROP_DSIZE
    m_o2c = np.stack([geometry.similarity_o2c(s[:2], s[2:3], float(s[3]), dsize)
                      for s in square[nearest]])
    return FaceTrack(m_o2c, has_face, times, pts, backend)


def _whole_frames(chunks: Iterable[VideoChunk], progress: Callable[[int, int], None] | None,
                  expected_frames: int) -> FaceTrack:
    """A track that takes every whole frame as the face (no detection)."""
    times, pts, size, count = [], [], None, 0
    for chunk in chunks:
        size = tuple(chunk.frames.shape[1:3])
        times.append(chunk.times)
        pts.append(chunk.pts)
        count += len(chunk.times)
        if progress is not None:
            progress(count, max(expected_frames, count))
    if size is None:
        raise FaceError("the video has no frames: use a video with at least one frame")
    m_o2c = letterbox_o2c(*size, config.CROP_DSIZE)
    return FaceTrack(np.repeat(m_o2c[None], count, axis=0), np.ones(count, bool),
                     torch.cat(times), torch.cat(pts), "none")


def crop_for_models(frames: torch.Tensor, M_o2c: np.ndarray) -> torch.Tensor:
    """Frames [b, H, W, 3] uint8 + [b, 3, 3] transforms -> [b, 3, 256, 256] float 0..1
    (the official 512 crop, then the model-size resize, as for a photo)."""
    crops = [geometry.resize_for_model(geometry.warp_crop(np.ascontiguousarray(f), m))
             for f, m in zip(frames.numpy(), M_o2c)]
    return to_float01(torch.from_numpy(np.stack(crops))).permute(0, 3, 1, 2)
