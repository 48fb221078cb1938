"""Sources: the face being animated, as the render loop reads it (a photo, a tracked video).

A :class:`Source` is opened once per motion stream (:meth:`Source.open_stream`,
given the stream's reference frame, the driving settings and the retargeting
MLPs); the :class:`SourceStream` it returns then serves output frames chunk
by chunk:

* :meth:`SourceStream.drive` gives the source side of output frames
  ``start..stop`` (:class:`SourceChunk`: F's volume, x_s, the background...)
  and their driving keypoints, composed from motion rows the way this kind of
  source composes them (:func:`~joyvasa_core.driving.compose_photo_keypoints`
  or :func:`~joyvasa_core.driving.compose_video_keypoints`);
* :meth:`SourceStream.paste` puts the rendered crops back into the source's pixels.

The render loop (:func:`joyvasa_core.pipeline.iter_frames`) never asks which
kind it has. Two kinds live here:

* :class:`PhotoSource`: one photo, the same source for every output frame (a
  track of one); :meth:`PhotoSource.detect` finds, crops and encodes its face;
* :class:`VideoSource`: a tracked source video (:mod:`joyvasa_core.face_track`),
  each output frame its own source frame, decoded again chunk by chunk and
  encoded with F and M in one batch; :func:`open_video` / :func:`open_frames`
  track a file or frames in memory, and :func:`motion_from_video` reads the
  track's frames through M (a driving video's motion).

A third kind, a scene of several faces each driven by its own speaker's
motion, is :class:`joyvasa_core.scene_source.SceneSource`: S of these sources
behind the same protocol.

F and M come from the LivePortrait models (:class:`~joyvasa_core.loaders.LivePortraitModels`),
which sit below this module.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from . import config
from .driving import (DrivingSettings, compose_photo_keypoints, compose_video_keypoints,
                      expression_multiplier)
from .edits.sliders import KeypointEdit
from .face.backends import FaceCrop, detect_and_crop
from .face.image_io import check_photo_size, load_image, to_float01
from .face.paste import PasteBack
from .face_track import FaceTrack, crop_for_models, track_faces, track_scene
from .keypoints import KeypointInfo
from .loaders import LivePortraitModels
from .motion import MotionSequence
from .placement import Placement
from .retime import LoopMode, constant_rate_indices, output_frame_count, source_frame_indices
from .video_source import (DEFAULT_CHUNK, FrameReader, ImageFrames, SharedReader, iter_images,
                           iter_video, probe_video)

Progress = Callable[[int, int], None]


@dataclass
class SourceChunk:
    """The source side of b output frames, as the render loop needs it.

    feature_3d: [1 or b, 32, 16, 64, 64] F's volume (models' dtype and device);
    info: M's keypoint info, batch 1 or b (float32); x_s: [1 or b, 21, 3];
    lip_ratio: [1 or b, 1] source lip-open ratio, or None; M_c2o: [3, 3] or
    [b, 3, 3] crop -> original pixels; background: [H, W, 3] or [b, H, W, 3]
    the source pixels to paste into; active: [b] bool (False: no face, the
    frame passes through) or None.
    """

    feature_3d: torch.Tensor
    info: KeypointInfo
    x_s: torch.Tensor
    lip_ratio: torch.Tensor | None
    M_c2o: np.ndarray
    background: torch.Tensor
    active: np.ndarray | None = None


class SourceStream(Protocol):
    """A source opened for one motion stream."""

    def drive(self, start: int, stop: int, rows: MotionSequence,
              edit: KeypointEdit | None) -> tuple[SourceChunk, torch.Tensor]:
        """The source of output frames ``start..stop-1`` and their driving keypoints
        ``[stop - start, 21, 3]`` float32. rows: the stream's reference frame, then the
        motion of those frames (float32, on the models' device); edit: offsets for
        those ``stop - start + 1`` rows, or None."""
        ...

    def paste(self, chunk: SourceChunk, crops: torch.Tensor) -> torch.Tensor:
        """Rendered crops ``[b, 3, S, S]`` (the paste dtype and device) pasted back into
        ``chunk``'s pixels: ``[b, H, W, 3]`` (H, W rounded up to even)."""
        ...


class Source(Protocol):
    """A face to animate: what the render loop reads (see the module docstring)."""

    def open_stream(self, reference: MotionSequence, driving: DrivingSettings,
                    retargeting: Mapping[str, nn.Module]) -> SourceStream:
        """Open for a motion stream whose frame 0 is ``reference`` (one row, float32, on
        the models' device); retargeting: the float32 stitching/lip MLPs by name."""
        ...


# ------------------------------------------------------------------------------- photo

@dataclass
class PhotoSource:
    """One photo as the source of every output frame.

    feature_3d: [1, 32, 16, 64, 64] F's appearance volume (models' dtype, device);
    source: M's keypoint info of the crop (angles in degrees, float32);
    x_s: [1, 21, 3] posed source keypoints (float32);
    crop: the face crop (``M_c2o`` crop -> original pixels, landmarks, ...);
    image: [H, W, 3] float 0..1 on the CPU, the original photo for paste-back.
    """

    feature_3d: torch.Tensor
    source: KeypointInfo
    x_s: torch.Tensor
    crop: FaceCrop
    image: torch.Tensor

    @classmethod
    def detect(cls, liveportrait: LivePortraitModels, image, *, face_backend: str = "auto",
               face_index: int = 0, models_dir: str | Path | None = None,
               crop_scale: float = config.CROP_SCALE, vx_ratio: float = config.CROP_VX_RATIO,
               vy_ratio: float = config.CROP_VY_RATIO, box=None,
               order: str = "large-small") -> "PhotoSource":
        """Detect and crop the face of ``image`` and encode it with F and M.

        image: anything :func:`joyvasa_core.face.image_io.load_image` reads ([H, W, 3]
        uint8 or float 0..1 array/tensor, a Pillow image, a path).
        face_backend: see :func:`joyvasa_core.face.backends.detect_and_crop` (``"none"``
        takes the whole image as the crop; ``box`` an explicit (x0, y0, x1, y1) pixel box);
        order: how ``face_index`` counts the faces: ``"large-small"`` (largest first) or
        ``"left-right"``; models_dir: where the detector's files are. Raises
        :class:`joyvasa_core.face.errors.NoFaceError` when no face is found.
        """
        rgb = check_photo_size(load_image(image))
        crop = detect_and_crop(rgb, backend=face_backend, models_dir=models_dir,
                               face_index=face_index, crop_scale=crop_scale, vx=vx_ratio,
                               vy=vy_ratio, box=box, order=order)
        return cls.from_crop(liveportrait, rgb, crop)

    @classmethod
    def from_crop(cls, liveportrait: LivePortraitModels, rgb: np.ndarray,
                  crop: FaceCrop) -> "PhotoSource":
        """The face of ``crop`` (cut from ``rgb`` [H, W, 3] uint8) encoded with F and M."""
        feature_3d, source = liveportrait.encode(crop.crop_256)
        return cls(feature_3d=feature_3d, source=source, x_s=source.transform(), crop=crop,
                   image=to_float01(torch.from_numpy(rgb)))

    def chunk(self) -> SourceChunk:
        """The photo as the source of any output frames."""
        lip_ratio = None if self.crop.lip_open is None else \
            torch.tensor([[self.crop.lip_open]], dtype=torch.float32, device=self.x_s.device)
        return SourceChunk(self.feature_3d, self.source, self.x_s, lip_ratio, self.crop.M_c2o,
                           self.image)

    def open_stream(self, reference: MotionSequence, driving: DrivingSettings,
                    retargeting: Mapping[str, nn.Module]) -> "_PhotoStream":
        return _PhotoStream(self.chunk(), reference, driving, retargeting)

    def placement(self) -> Placement:
        """Where crops of this face go back: the photo, for any number of frames."""
        return Placement(self.image[None], None, np.asarray(self.crop.M_c2o, np.float64))


class _PhotoStream:
    """A photo driven by one stream: the expression-friendly rescale (it depends on the
    stream's frame 0 only: one host sync per stream) and the paste-back are made once."""

    def __init__(self, chunk: SourceChunk, reference: MotionSequence, driving: DrivingSettings,
                 retargeting: Mapping[str, nn.Module]) -> None:
        self.source, self.driving, self.retargeting = chunk, driving, retargeting
        with torch.inference_mode():
            self.multiplier = expression_multiplier(chunk.info, chunk.x_s, reference, driving)
        self._paster: PasteBack | None = None

    def drive(self, start: int, stop: int, rows: MotionSequence,
              edit: KeypointEdit | None) -> tuple[SourceChunk, torch.Tensor]:
        src = self.source
        x_d = compose_photo_keypoints(src.info, src.x_s, rows, self.driving, self.retargeting,
                                      src.lip_ratio, self.multiplier, edit)
        return src, x_d[1:]

    def paste(self, chunk: SourceChunk, crops: torch.Tensor) -> torch.Tensor:
        if self._paster is None:   # a photo's mask and grid: computed once
            self._paster = PasteBack.for_render(chunk.M_c2o, chunk.background, crops.shape[-1],
                                                crops.device, crops.dtype, chunk.active)
        return self._paster(crops)


# ------------------------------------------------------------------------------- video

class VideoSource:
    """A tracked source video as the render loop reads it, ``count`` output frames long.

    liveportrait: F and M for the frames' crops; reader: where frames come from
    by index (:class:`~joyvasa_core.video_source.FrameReader` for a file,
    :class:`~joyvasa_core.video_source.ImageFrames` for frames in memory);
    fps: the output rate (the source's average rate). Output frame k shows
    decoded frame :func:`~joyvasa_core.retime.source_frame_indices` ``[k]``
    (the constant grid at ``fps``, then ping-pong / loop / trim). Use as a
    context manager: a file stays open for seeking.
    """

    def __init__(self, liveportrait: LivePortraitModels,
                 reader: FrameReader | ImageFrames | SharedReader,
                 fps: float, track: FaceTrack, count: int, loop: LoopMode = "pingpong"):
        self.liveportrait, self.reader, self.fps, self.track = liveportrait, reader, fps, track
        self.count, self.loop = count, loop

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.reader.close()

    def __len__(self) -> int:
        return self.count

    def source_indices(self, start: int, stop: int) -> torch.Tensor:
        """Decoded-frame index of output frames start..stop-1: [stop - start] int64."""
        return source_frame_indices(stop - start, self.track.times, self.fps, self.loop, start)

    def chunk(self, start: int, stop: int) -> SourceChunk:
        """Decode, crop and encode (F, M batched) the source frames of output frames start..stop-1."""
        index = self.source_indices(start, stop).numpy()
        frames = self.reader.read(index)
        m_o2c = self.track.M_o2c[index]
        feature_3d, info = self.liveportrait.encode(crop_for_models(frames, m_o2c))
        return SourceChunk(feature_3d, info, info.transform(), None, np.linalg.inv(m_o2c),
                           frames, self.track.has_face[index])

    def open_stream(self, reference: MotionSequence, driving: DrivingSettings,
                    retargeting: Mapping[str, nn.Module]) -> "_VideoStream":
        return _VideoStream(self, driving, retargeting)

    def placement(self) -> Placement:
        """Where the crops of the ``count`` output frames go back: each into its own
        source frame. Only for frames in memory (:func:`open_frames`); the
        placement shares them."""
        images = getattr(self.reader, "images", None)
        if images is None:
            raise TypeError("a video read from a file has no frames in memory to paste into; "
                            "open it with open_frames")
        index = self.source_indices(0, self.count).numpy()
        return Placement(images, index, np.linalg.inv(self.track.M_o2c[index]),
                         np.asarray(self.track.has_face[index], bool))


class _VideoStream:
    """A video driven by one stream: every chunk is its frames' own source."""

    def __init__(self, video: VideoSource, driving: DrivingSettings,
                 retargeting: Mapping[str, nn.Module]) -> None:
        self.video, self.driving, self.retargeting = video, driving, retargeting

    def drive(self, start: int, stop: int, rows: MotionSequence,
              edit: KeypointEdit | None) -> tuple[SourceChunk, torch.Tensor]:
        src = self.video.chunk(start, stop)
        # rows are [reference, frames...]: the reference row's source is never rendered,
        # so it gets a copy of the first frame's
        info = KeypointInfo(*(_first_repeated(getattr(src.info, f)) for f in
                              ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")))
        x_d = compose_video_keypoints(info, _first_repeated(src.x_s), rows, self.driving,
                                      self.retargeting, _first_repeated(src.lip_ratio), edit)
        return src, x_d[1:]

    def paste(self, chunk: SourceChunk, crops: torch.Tensor) -> torch.Tensor:
        paster = PasteBack.for_render(chunk.M_c2o, chunk.background, crops.shape[-1],
                                      crops.device, crops.dtype, chunk.active)
        return paster(crops)


def _first_repeated(t: torch.Tensor | None) -> torch.Tensor | None:
    """``t`` ``[b, ...]`` with a copy of its first row in front: ``[b + 1, ...]``."""
    return None if t is None else torch.cat([t[:1], t])


def open_video(liveportrait: LivePortraitModels, path: str | Path,
               speech_seconds: float | None, *, loop: LoopMode = "pingpong",
               face_backend: str = "auto", face_index: int = 0,
               models_dir: str | Path | None = None, crop_scale: float = config.CROP_SCALE,
               box=None, until: float | None = None, start_box=None,
               progress: Progress | None = None) -> VideoSource:
    """Probe and track ``path``; the result renders ``speech_seconds`` of output frames
    (None: the source's own length on its constant-rate grid).

    Use the returned :class:`VideoSource` as a context manager (it keeps the
    file open for seeking). box: a fixed face box instead of tracking
    (:func:`~joyvasa_core.face_track.track_faces`); start_box: the box of the face to
    follow from the first frame (one face of a scene); until: track (and use) only
    the frames of the first ``until`` seconds. Raises the named errors of
    :mod:`joyvasa_core.video_source` and :class:`~joyvasa_core.face_track.NoFaceInVideoError`.
    """
    info = probe_video(path)
    chunks = iter_video(path, DEFAULT_CHUNK, info)
    if until is not None:
        chunks = itertools.takewhile(lambda chunk: float(chunk.times[0]) <= until, chunks)
    track = track_faces(chunks, info.fps, face_backend=face_backend, models_dir=models_dir,
                        face_index=face_index, crop_scale=crop_scale, name=str(path),
                        progress=progress, expected_frames=info.frame_count, box=box,
                        start_box=start_box)
    return VideoSource(liveportrait, FrameReader(info.path, info, track.pts), info.fps, track,
                       _count(speech_seconds, track, info.fps), loop)


def open_frames(liveportrait: LivePortraitModels, images: torch.Tensor, fps: float,
                speech_seconds: float | None, *, loop: LoopMode = "pingpong",
                face_backend: str = "auto", face_index: int = 0,
                models_dir: str | Path | None = None, crop_scale: float = config.CROP_SCALE,
                box=None, start_box=None, progress: Progress | None = None) -> VideoSource:
    """:func:`open_video` for frames already in memory: IMAGE [N, H, W, 3] at ``fps``."""
    track = track_faces(iter_images(images, fps), fps, face_backend=face_backend,
                        models_dir=models_dir, face_index=face_index, crop_scale=crop_scale,
                        name="the video frames", progress=progress,
                        expected_frames=int(images.shape[0]), box=box, start_box=start_box)
    return VideoSource(liveportrait, ImageFrames(images), fps, track,
                       _count(speech_seconds, track, fps), loop)


def open_video_faces(liveportrait: LivePortraitModels, path: str | Path,
                     speech_seconds: float | None, starts: Sequence[tuple[np.ndarray, bool]], *,
                     loop: LoopMode = "pingpong", face_backend: str = "auto",
                     models_dir: str | Path | None = None, crop_scale: float = config.CROP_SCALE,
                     progress: Progress | None = None) -> list[VideoSource]:
    """:func:`open_video` for several faces of one video (a scene), tracked in one pass
    (:func:`~joyvasa_core.face_track.track_scene`; starts: each face's ``(box, followed)``
    on the first frame). The sources share one reader, so the faces of a chunk decode its
    frames once; use each as a context manager (or close them all)."""
    info = probe_video(path)
    tracks = track_scene(iter_video(path, DEFAULT_CHUNK, info), info.fps, starts,
                         face_backend=face_backend, models_dir=models_dir,
                         crop_scale=crop_scale, name=str(path), progress=progress,
                         expected_frames=info.frame_count)
    reader = SharedReader(FrameReader(info.path, info, tracks[0].pts))
    return [VideoSource(liveportrait, reader, info.fps, track,
                        _count(speech_seconds, track, info.fps), loop) for track in tracks]


def open_frames_faces(liveportrait: LivePortraitModels, images: torch.Tensor, fps: float,
                      speech_seconds: float | None, starts: Sequence[tuple[np.ndarray, bool]],
                      *, loop: LoopMode = "pingpong", face_backend: str = "auto",
                      models_dir: str | Path | None = None,
                      crop_scale: float = config.CROP_SCALE,
                      progress: Progress | None = None) -> list[VideoSource]:
    """:func:`open_video_faces` for frames already in memory: IMAGE [N, H, W, 3] at ``fps``."""
    tracks = track_scene(iter_images(images, fps), fps, starts, face_backend=face_backend,
                         models_dir=models_dir, crop_scale=crop_scale, name="the video frames",
                         progress=progress, expected_frames=int(images.shape[0]))
    reader = SharedReader(ImageFrames(images))
    return [VideoSource(liveportrait, reader, fps, track, _count(speech_seconds, track, fps),
                        loop) for track in tracks]


def _count(speech_seconds: float | None, track: FaceTrack, fps: float) -> int:
    if speech_seconds is None:
        return int(constant_rate_indices(track.times, fps).numel())
    return output_frame_count(speech_seconds, fps)


def motion_from_video(video: VideoSource, *, batch_size: int = 16,
                      progress: Progress | None = None) -> MotionSequence:
    """The motion of a tracked video (LivePortrait's video-driven mode): M's pose,
    translation, scale and expression of each frame of its constant-rate grid at
    ``video.fps``, one row per frame, usable wherever generated motion is (float32, CPU).

    Each frame is cut at its tracked crop (smoothed; a frame without a face
    takes the nearest face frame's crop).
    """
    grid = constant_rate_indices(video.track.times, video.fps)
    total = int(grid.numel())
    parts: list[KeypointInfo] = []
    for start in range(0, total, batch_size):
        index = grid[start:start + batch_size].numpy()
        frames = video.reader.read(index)
        parts.append(video.liveportrait.keypoints(crop_for_models(frames, video.track.M_o2c[index])))
        if progress is not None:
            progress(min(start + batch_size, total), total)
    cat = {name: torch.cat([getattr(p, name) for p in parts]).cpu() for name in
           ("exp", "scale", "t", "pitch", "yaw", "roll")}
    return MotionSequence(fps=video.fps, **cat)
