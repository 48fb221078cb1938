"""A scene of S faces as one source of the render loop, and its S motions as one motion.

The render loop (:func:`joyvasa_core.pipeline.iter_frames`) reads one source and
one motion. A scene is both, so the loop stays the one loop:

* :class:`SceneMotion` zips S motions (one per speaker, any chunking, equal
  length) into a :class:`~joyvasa_core.motion.MotionStream` whose chunks are
  :class:`StackedMotion`: the same frames of every speaker;
* :class:`SceneSource` holds S face sources (each a
  :class:`~joyvasa_core.sources.PhotoSource`, or a tracked
  :class:`~joyvasa_core.sources.VideoSource` of the same video), in speaker
  order. Its stream (:class:`SceneStream`) drives each face with its own
  speaker's rows and hands the loop the S faces' volumes and keypoints joined
  along the batch, speaker-major (``[S * b, ...]``), so one chunk's faces go
  through W and G in one batch; its paste puts the S faces back in speaker
  order, each through its own feathered mask into the previous one's result
  (later speakers over earlier ones where masks overlap). A pixel outside
  every mask stays the source's, bit for bit.

Build one with :func:`photo_scene` (faces found by
:func:`joyvasa_core.scene.select_faces`), :func:`open_video_scene` (a video
file) or :func:`frames_scene` (video frames in memory).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import config
from .driving import DrivingSettings
from .edits import Edits
from .edits.sliders import KeypointEdit
from .face.backends import crop_face
from .face.paste import PasteBack
from .loaders import LivePortraitModels
from .motion import Motion, MotionSequence, MotionStream
from .retime import LoopMode
from .scene import SelectedFace
from .sources import (PhotoSource, Progress, Source, SourceChunk, SourceStream,
                      open_frames_faces, open_video_faces)

# ------------------------------------------------------------------------------- motion


@dataclass(frozen=True)
class StackedMotion:
    """The same T frames of S speakers' motion (one :class:`MotionSequence` each, equal
    lengths, one fps): a chunk of a :class:`SceneMotion`'s stream. Slices, ``to`` and
    :meth:`cat` act on every speaker alike."""

    speakers: tuple[MotionSequence, ...]

    def __post_init__(self) -> None:
        if len({len(m) for m in self.speakers}) > 1:
            raise ValueError("speakers' chunks of unequal lengths "
                             f"{[len(m) for m in self.speakers]}")

    def __len__(self) -> int:
        return len(self.speakers[0])

    def __getitem__(self, index) -> "StackedMotion":
        return StackedMotion(tuple(m[index] for m in self.speakers))

    @property
    def fps(self) -> float:
        return self.speakers[0].fps

    def to(self, device=None, dtype=None) -> "StackedMotion":
        return StackedMotion(tuple(m.to(device, dtype) for m in self.speakers))

    @classmethod
    def cat(cls, chunks: Sequence["StackedMotion"]) -> "StackedMotion":
        return cls(tuple(MotionSequence.cat([c.speakers[k] for c in chunks])
                         for k in range(len(chunks[0].speakers))))


class SceneMotion:
    """S motions (anything with ``stream()``, one per speaker, in speaker order) read as one
    :class:`~joyvasa_core.motion.Motion` whose chunks are :class:`StackedMotion`.

    The speakers' streams are read in step; their chunks may be cut differently
    (each output chunk is the frames all of them have). Streams of unequal
    length are an error: pad the speech to the longest first
    (:func:`joyvasa_core.scene.pad_tracks`).
    """

    def __init__(self, motions: Sequence[Motion]) -> None:
        if not motions:
            raise ValueError("a scene needs at least one motion")
        self.motions = tuple(motions)

    def __len__(self) -> int:
        return len(self.motions)

    def stream(self) -> MotionStream:
        streams = [m.stream() for m in self.motions]
        counts = {s.n_frames for s in streams}
        if len(counts) > 1:
            raise ValueError(f"the speakers' motions have {sorted(counts, key=str)} frames; "
                             "pad every speaker's speech to the longest")
        return MotionStream(_zipped(streams), fps=streams[0].fps, n_frames=streams[0].n_frames,
                            windows=streams[0].windows)


def _zipped(streams: Sequence[MotionStream]) -> Iterator[StackedMotion]:
    iters = [iter(s) for s in streams]
    pending: list[MotionSequence | None] = [None] * len(iters)
    while True:
        for k, it in enumerate(iters):
            while pending[k] is None or len(pending[k]) == 0:
                nxt = next(it, None)
                if nxt is None:
                    if any(p is not None and len(p) for p in pending):
                        raise ValueError("the speakers' motion streams end at different frames")
                    return
                pending[k] = nxt
        n = min(len(p) for p in pending)
        yield StackedMotion(tuple(p[:n] for p in pending))
        pending = [p[n:] for p in pending]


# ------------------------------------------------------------------------------- source

@dataclass
class SceneChunk:
    """The source side of b output frames of a scene.

    feature_3d: [S * b, 32, 16, 64, 64] and x_s: [S * b, 21, 3], the faces' volumes and
    keypoints joined speaker-major (what W and G read); faces: each face's own
    :class:`~joyvasa_core.sources.SourceChunk`, in speaker order (what the paste reads).
    """

    feature_3d: torch.Tensor
    x_s: torch.Tensor
    faces: tuple[SourceChunk, ...]


class SceneSource:
    """S faces of one photo or one video, in speaker order: a
    :class:`~joyvasa_core.sources.Source` driven by a :class:`SceneMotion` (see the module
    docstring). edits: each face's own keypoint edits (:class:`~joyvasa_core.edits.Edits`
    or None), added to the render loop's shared ones. Use as a context manager when the
    faces are video sources."""

    def __init__(self, faces: Sequence[Source],
                 edits: Sequence[Edits | None] | None = None) -> None:
        if not faces:
            raise ValueError("a scene needs at least one face")
        self.faces = tuple(faces)
        self.edits = tuple(edits) if edits is not None else (None,) * len(self.faces)
        if len(self.edits) != len(self.faces):
            raise ValueError(f"{len(self.edits)} edits for {len(self.faces)} faces")

    def __len__(self) -> int:
        """Output frames of a video scene (its faces' count)."""
        return len(self.faces[0])

    @property
    def fps(self) -> float:
        """Output rate of a video scene."""
        return self.faces[0].fps

    @property
    def x_s(self) -> torch.Tensor:
        """[S, 21, 3] the photo faces' source keypoints (float32)."""
        return torch.cat([f.x_s.reshape(-1, 21, 3)[:1] for f in self.faces])

    def open_stream(self, reference: StackedMotion, driving: DrivingSettings,
                    retargeting: Mapping[str, nn.Module]) -> "SceneStream":
        return SceneStream([face.open_stream(ref, driving, retargeting)
                            for face, ref in zip(self.faces, reference.speakers)], self.edits)

    def __enter__(self) -> "SceneSource":
        return self

    def __exit__(self, *exc) -> None:
        for face in self.faces:
            if hasattr(face, "__exit__"):
                face.__exit__(*exc)


class SceneStream:
    """A scene opened for one :class:`SceneMotion` stream: each face's own stream, driven by
    its own speaker's rows, with the loop's keypoint ``edit`` plus the face's own edits."""

    def __init__(self, streams: Sequence[SourceStream],
                 edits: Sequence[Edits | None] | None = None) -> None:
        self.streams = tuple(streams)
        self.edits = tuple(edits) if edits is not None else (None,) * len(self.streams)
        self._pasters: list[tuple[SourceChunk, PasteBack] | None] = [None] * len(streams)

    def drive(self, start: int, stop: int, rows: StackedMotion,
              edit: KeypointEdit | None) -> tuple[SceneChunk, torch.Tensor]:
        """The faces of output frames ``start..stop-1`` and their driving keypoints
        ``[S * (stop - start), 21, 3]``, speaker-major."""
        b = stop - start
        frames = torch.cat([torch.zeros(1, dtype=torch.long), torch.arange(start, stop)])
        driven = [s.drive(start, stop, r, _plus(edit, own, frames, rows.fps))
                  for s, r, own in zip(self.streams, rows.speakers, self.edits)]
        faces = tuple(chunk for chunk, _ in driven)
        feature = torch.cat([_rows(c.feature_3d, b) for c in faces])
        x_s = torch.cat([_rows(c.x_s, b) for c in faces])
        return SceneChunk(feature, x_s, faces), torch.cat([x_d for _, x_d in driven])

    def paste(self, chunk: SceneChunk, crops: torch.Tensor) -> torch.Tensor:
        """Crops ``[S * b, 3, R, R]`` pasted back in speaker order, each face into the previous
        face's result -> ``[b, H, W, 3]``."""
        b = crops.shape[0] // len(self.streams)
        out = None
        for k, face in enumerate(chunk.faces):
            paster = self._paster(k, face, crops)
            part = crops[k * b:(k + 1) * b]
            out = paster(part) if out is None else paster.onto(part, out)
        return out

    def _paster(self, k: int, face: SourceChunk, crops: torch.Tensor) -> PasteBack:
        """Face k's paste-back: made once while its chunk is the same object (a photo),
        else for each chunk (a video's frames)."""
        kept = self._pasters[k]
        if kept is not None and kept[0] is face:
            return kept[1]
        paster = PasteBack.for_render(face.M_c2o, face.background, crops.shape[-1], crops.device,
                                      crops.dtype, face.active)
        self._pasters[k] = (face, paster)
        return paster


def _plus(edit: KeypointEdit | None, own: Edits | None, frames: torch.Tensor,
          fps: float) -> KeypointEdit | None:
    """The loop's ``edit`` plus a face's ``own`` edits at ``frames`` (the reference row, then
    the chunk's frames, as the loop evaluates its own)."""
    if own is None:
        return edit
    mine = own.at_frames(frames, fps)
    return mine if edit is None else edit + mine


def _rows(t: torch.Tensor, b: int) -> torch.Tensor:
    """``t`` [1 or b, ...] as b rows (a photo's one row repeated)."""
    return t.expand(b, *t.shape[1:]) if t.shape[0] == 1 else t


# ------------------------------------------------------------------------------ opening

def photo_scene(liveportrait: LivePortraitModels, image: np.ndarray,
                faces: Sequence[SelectedFace], *, backend: str = "auto",
                edits: Sequence[Edits | None] | None = None,
                crop_scale: float = config.CROP_SCALE, vx_ratio: float = config.CROP_VX_RATIO,
                vy_ratio: float = config.CROP_VY_RATIO) -> SceneSource:
    """The selected ``faces`` of a photo (``image`` [H, W, 3] uint8 RGB) cropped and encoded
    with F and M, in speaker order. backend: the detector that found them (recorded in
    each crop; a box that matched no detection is recorded as ``none``); edits: each
    face's own keypoint edits (see :class:`SceneSource`)."""
    sources = []
    for selected in faces:
        crop = crop_face(image, selected.face, backend if selected.detected else "none",
                         crop_scale=crop_scale, vx=vx_ratio, vy=vy_ratio)
        sources.append(PhotoSource.from_crop(liveportrait, image, crop))
    return SceneSource(sources, edits)


def open_video_scene(liveportrait: LivePortraitModels, path: str | Path,
                     speech_seconds: float | None, faces: Sequence[SelectedFace], *,
                     loop: LoopMode = "pingpong", face_backend: str = "auto",
                     models_dir: str | Path | None = None,
                     edits: Sequence[Edits | None] | None = None,
                     progress: Progress | None = None) -> SceneSource:
    """Track the selected faces of the video ``path`` (as found on its first frame) in one
    pass (:func:`~joyvasa_core.sources.open_video_faces`): a detected face is followed from
    its first-frame box, and passes through unchanged while it is away; a box that
    matched no detection stays where it is. The faces of a chunk decode its frames once.
    Use the result as a context manager."""
    return SceneSource(open_video_faces(liveportrait, path, speech_seconds, _starts(faces),
                                        loop=loop, face_backend=face_backend,
                                        models_dir=models_dir, progress=progress), edits)


def frames_scene(liveportrait: LivePortraitModels, images: torch.Tensor, fps: float,
                 speech_seconds: float | None, faces: Sequence[SelectedFace], *,
                 loop: LoopMode = "pingpong", face_backend: str = "auto",
                 models_dir: str | Path | None = None,
                 edits: Sequence[Edits | None] | None = None,
                 progress: Progress | None = None) -> SceneSource:
    """:func:`open_video_scene` for frames already in memory (IMAGE [N, H, W, 3] at ``fps``,
    e.g. a node's video frames; :func:`~joyvasa_core.sources.open_frames_faces`)."""
    return SceneSource(open_frames_faces(liveportrait, images, fps, speech_seconds,
                                         _starts(faces), loop=loop, face_backend=face_backend,
                                         models_dir=models_dir, progress=progress), edits)


def _starts(faces: Sequence[SelectedFace]) -> list[tuple[np.ndarray, bool]]:
    """Each face's first-frame box and whether it is followed (a detected face) or fixed."""
    return [(selected.face.box, selected.detected) for selected in faces]


def photos_scene(faces: Sequence[PhotoSource],
                 edits: Sequence[Edits | None] | None = None) -> SceneSource:
    """A scene of faces each already found and encoded in the same photo (for example
    by several ExtractFaceRepresentation nodes), in speaker order. Raises
    :class:`~joyvasa_core.scene.SceneError` when they come from different photos or
    two of them are one face (their crops overlap by :data:`~joyvasa_core.scene.SAME_FACE_IOU`)."""
    from .face.backends import box_iou
    from .scene import SAME_FACE_IOU, SceneError

    first = faces[0].image
    for k, face in enumerate(faces[1:], start=2):
        if face.image.shape != first.shape or not torch.equal(face.image, first):
            raise SceneError(f"face {k} comes from another picture than face 1: a conversation "
                             "animates several faces of one photo; extract every face from the "
                             "same image")
    squares = [_crop_square(face.crop.M_c2o) for face in faces]
    for a in range(len(faces)):
        for b in range(a + 1, len(faces)):
            if box_iou(squares[a], squares[b]) >= SAME_FACE_IOU:
                raise SceneError(f"faces {a + 1} and {b + 1} are the same face (their crops "
                                 "overlap): give each speaker its own face (another face_index)")
    return SceneSource(faces, edits)


def _crop_square(m_c2o: np.ndarray) -> np.ndarray:
    """[4] x0, y0, x1, y1: the bounding box, in the photo's pixels, of a 512 crop placed by
    ``m_c2o`` [3, 3] (crop -> original pixels)."""
    side = config.CROP_DSIZE
    corners = np.array([[0, 0, 1], [side, 0, 1], [0, side, 1], [side, side, 1]], np.float64)
    points = corners @ np.asarray(m_c2o, np.float64).T
    return np.concatenate([points[:, :2].min(0), points[:, :2].max(0)])
