"""Face track: where the face is in every source frame, and the renderer's view of it.

A source is a sequence of frames, each with its own face crop, F feature
volume and M keypoints; a photo is a track of one (the same
:class:`SourceChunk` for every output frame).

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

:class:`VideoFaces` then serves the renderer: for output frames start..stop it
decodes their source frames (:class:`~joyvasa_core.video_source.FrameReader`),
cuts the crops and runs F and M on them as one batch.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import config
from .face import crop as geometry
from .face.backends import MIN_FACE_PX, Face, FaceBackend, get_backend, select_face
from .face.errors import FaceError
from .face.image_io import detection_view, to_float01
from .keypoints import KeypointInfo
from .retime import LoopMode, source_frame_indices
from .video_source import FrameReader, ImageFrames, VideoChunk

if TYPE_CHECKING:
    from .pipeline import JoyVASAModels

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
class SourceChunk:
    """The source side of b output frames, as the render loop needs it.

    feature_3d: [1 or b, 32, 16, 64, 64] F's volume (models' dtype and device);
    info: M's keypoint info, batch 1 or b (float32); x_s: [1 or b, 21, 3];
    lip_ratio: [1 or b, 1] source lip-open ratio, or None; M_c2o: [3, 3] or
    [b, 3, 3] crop -> original pixels; background: [H, W, 3] or [b, H, W, 3]
    the source pixels to paste into; active: [b] bool (False: no face, the
    frame passes through) or None; per_frame: True when rows are per frame
    (a video), False for one source shared by every frame (a photo).
    """

    feature_3d: torch.Tensor
    info: KeypointInfo
    x_s: torch.Tensor
    lip_ratio: torch.Tensor | None
    M_c2o: np.ndarray
    background: torch.Tensor
    active: np.ndarray | None = None
    per_frame: bool = False

    def with_reference_row(self) -> tuple[KeypointInfo, torch.Tensor, torch.Tensor | None]:
        """(info, x_s, lip_ratio) for motion rows [reference, frames...]: per-frame rows get
        a copy of the first row in front (the reference row's source is never rendered)."""
        if not self.per_frame:
            return self.info, self.x_s, self.lip_ratio

        def ext(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else torch.cat([t[:1], t])
        info = KeypointInfo(*(ext(getattr(self.info, f)) for f in
                              ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")))
        return info, ext(self.x_s), ext(self.lip_ratio)


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


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / area) if area > 0 else 0.0


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

    def __init__(self, detector: FaceBackend, face_index: int, redetect_every: int, name: str):
        self.detector, self.face_index, self.name = detector, face_index, name
        self.redetect_every = max(1, redetect_every)
        self.box: np.ndarray | None = None
        self.since_full = 0

    def __call__(self, image: np.ndarray) -> Face | None:
        face = None
        if self.box is not None and self.since_full < self.redetect_every:
            face = self._local(image)
            self.since_full += 1
        if face is None:
            face = self._full(image)
            self.since_full = 0
        self.box = None if face is None else face.box
        return face

    def _local(self, image: np.ndarray) -> Face | None:
        height, width = image.shape[:2]
        x0, y0, x1, y1 = self.box
        m = WINDOW_MARGIN * max(x1 - x0, y1 - y0)
        left, top = int(max(0, x0 - m)), int(max(0, y0 - m))
        right, bottom = int(min(width, x1 + m)), int(min(height, y1 + m))
        faces = _detect(self.detector, image[top:bottom, left:right], (left, top))
        best = max(faces, key=lambda f: _iou(f.box, self.box), default=None)
        return best if best is not None and _iou(best.box, self.box) >= DRIFT_IOU else None

    def _full(self, image: np.ndarray) -> Face | None:
        faces = _detect(self.detector, image)
        if not faces:
            return None
        if self.box is not None:
            best = max(faces, key=lambda f: _iou(f.box, self.box))
            if _iou(best.box, self.box) >= DRIFT_IOU:
                return best
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
                expected_frames: int = 0, box=None) -> FaceTrack:
    """One pass over decoded chunks -> :class:`FaceTrack` (see the module docstring).

    box: (x1, y1, x2, y2) pixels of a face that stays there (a fixed camera and
    sitter): no detection, every frame uses it (face_backend ``"none"`` needs it).
    """
    if face_backend == "none" and box is None:
        raise ValueError("face_backend 'none' cannot track a face through a video; "
                         "use 'auto', 'onnx' or 'mtcnn', or give the face box")
    detector = get_backend("none" if box is not None else face_backend, models_dir, box=box)
    tracker = _Tracker(detector, face_index, round(redetect_seconds * fps), name)
    squares, found, times, pts = [], [], [], []
    for chunk in chunks:
        for image in chunk.frames.numpy():
            face = tracker(image)
            found.append(face is not None)
            squares.append(_square(face, crop_scale, vx_ratio, vy_ratio) if face is not None
                           else np.full(4, np.nan))
        times.append(chunk.times)
        pts.append(chunk.pts)
        if progress is not None:
            progress(len(found), max(expected_frames, len(found)))
    has_face = np.asarray(found, bool)
    if not has_face.any():
        raise NoFaceInVideoError(name, len(found), detector.name)
    square = smooth_crops(np.stack(squares), has_face, max(1, round(smooth_seconds * fps)) | 1)
    idx = np.arange(len(has_face))
    faces = idx[has_face]
    nearest = faces[np.clip(np.searchsorted(faces, idx), 0, len(faces) - 1)]
    before = faces[np.clip(np.searchsorted(faces, idx) - 1, 0, len(faces) - 1)]
    nearest = np.where(np.abs(before - idx) < np.abs(nearest - idx), before, nearest)
    dsize = config.CROP_DSIZE
    m_o2c = np.stack([geometry.similarity_o2c(s[:2], s[2:3], float(s[3]), dsize)
                      for s in square[nearest]])
    return FaceTrack(m_o2c, has_face, torch.cat(times), torch.cat(pts), detector.name)


def crop_for_models(frames: torch.Tensor, M_o2c: np.ndarray) -> torch.Tensor:
    """Frames [b, H, W, 3] uint8 + [b, 3, 3] transforms -> [b, 3, 256, 256] float 0..1
    (the official 512 crop, then the model-size resize, as for a photo)."""
    crops = [geometry.resize_for_model(geometry.warp_crop(np.ascontiguousarray(f), m))
             for f, m in zip(frames.numpy(), M_o2c)]
    return to_float01(torch.from_numpy(np.stack(crops))).permute(0, 3, 1, 2)


def encode_crops(models: "JoyVASAModels", crops_256: torch.Tensor) -> tuple[torch.Tensor, KeypointInfo]:
    """F and M on crops [b, 3, 256, 256] (0..1): (feature_3d in the models' dtype, float32 info)."""
    lp = models.liveportrait
    crops = crops_256.to(models.device, models.dtype)
    with torch.inference_mode():
        feature_3d = lp.appearance_feature_extractor(crops)
        raw = lp.motion_extractor(crops)
    return feature_3d, KeypointInfo.from_raw({k: v.float() for k, v in raw.items()})


class VideoFaces:
    """A tracked source video as the render loop reads it, ``count`` output frames long.

    reader: where frames come from by index (:class:`~joyvasa_core.video_source.FrameReader`
    for a file, :class:`~joyvasa_core.video_source.ImageFrames` for frames in memory);
    fps: the output rate (the source's average rate). Output frame k shows decoded
    frame :func:`~joyvasa_core.retime.source_frame_indices` ``[k]`` (the constant
    grid at ``fps``, then ping-pong / loop / trim). Use as a context manager:
    a file stays open for seeking.
    """

    def __init__(self, reader: FrameReader | ImageFrames, fps: float, track: FaceTrack,
                 count: int, loop: LoopMode = "pingpong"):
        self.reader, self.fps, self.track, self.count, self.loop = reader, fps, track, count, loop

    def __enter__(self) -> "VideoFaces":
        return self

    def __exit__(self, *exc) -> None:
        self.reader.close()

    def __len__(self) -> int:
        return self.count

    def source_indices(self, start: int, stop: int) -> torch.Tensor:
        """Decoded-frame index of output frames start..stop-1: [stop - start] int64."""
        return source_frame_indices(stop - start, self.track.times, self.fps, self.loop, start)

    def source_chunk(self, models: "JoyVASAModels", start: int, stop: int) -> SourceChunk:
        """Decode, crop and encode (F, M batched) the source frames of output frames start..stop-1."""
        index = self.source_indices(start, stop).numpy()
        frames = self.reader.read(index)
        m_o2c = self.track.M_o2c[index]
        feature_3d, info = encode_crops(models, crop_for_models(frames, m_o2c))
        return SourceChunk(feature_3d, info, info.transform(), None, np.linalg.inv(m_o2c),
                           frames, self.track.has_face[index], per_frame=True)
