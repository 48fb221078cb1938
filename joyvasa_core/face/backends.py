"""Face backends and the public entry point :func:`detect_and_crop`.

Backends (``backend=`` argument):

* ``"onnx"``: the official models: SCRFD ``det_10g.onnx`` + ``2d106det.onnx``
  (insightface buffalo_l) and, when present, LivePortrait's 203-point
  ``landmark.onnx`` (for the eye / lip openness ratios). Expected under
  ``models_dir``: ``insightface/models/buffalo_l/{det_10g,2d106det}.onnx`` and
  ``liveportrait/landmark.onnx`` (or ``landmark.onnx`` at the top).
* ``"mtcnn"``: the no-download detector (see :mod:`.mtcnn` for why): box plus
  5 points, turned into the official crop through an estimated outline.
* ``"none"``: no detection. Without ``box`` the image is taken as the face
  crop already (letterboxed to a square); with ``box`` (x1, y1, x2, y2) the
  crop is placed as for a detected face in that box. Also the mode for
  animals.
* ``"auto"``: ``"onnx"`` when ``det_10g.onnx`` exists under ``models_dir``,
  else ``"mtcnn"``.

Faces are numbered largest first (``order="large-small"``, the official
default) or left to right (``order="left-right"``); ``face_index`` picks one.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .. import config
from . import crop as geometry
from .errors import DetectorFileMissing, FaceIndexError, FaceTooSmallError, NoFaceError
from .image_io import detection_view, to_float01

BUFFALO = Path("insightface") / "models" / "buffalo_l"
LANDMARK203 = (Path("liveportrait") / "landmark.onnx", Path("landmark.onnx"))
ORDERS = ("large-small", "left-right")
MIN_FACE_PX = 32        # smallest face box side (full-resolution pixels) we animate
BACKENDS = ("auto", "onnx", "mtcnn", "none")


@dataclass
class Face:
    """A detected face: box [4] (x1, y1, x2, y2), score, crop landmarks [N, 2]
    (any layout of :data:`crop.ANCHORS`), optional 203 points; pixels of the
    image given to ``detect``."""

    box: np.ndarray
    score: float
    points: np.ndarray
    lmk203: np.ndarray | None = None

    def scaled(self, factor: float) -> "Face":
        """Coordinates divided by ``factor`` (detection view -> full image)."""
        return Face(self.box / factor, self.score, self.points / factor,
                    None if self.lmk203 is None else self.lmk203 / factor)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Overlap (intersection over union) of two boxes (x1, y1, x2, y2); 0 for empty boxes."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / area) if area > 0 else 0.0


class FaceBackend(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Face]:
        """image: [H, W, 3] uint8 RGB -> faces (any order)."""


class OnnxBackend:
    """The official detector and landmarks (onnxruntime)."""

    name = "onnx"

    def __init__(self, models_dir: str | Path, threshold: float = 0.5,
                 providers: list[str] | None = None):
        from .landmarks import Landmark106, Landmark203
        from .scrfd import SCRFD

        root = Path(models_dir)
        det, lmk = root / BUFFALO / "det_10g.onnx", root / BUFFALO / "2d106det.onnx"
        source = "the insightface buffalo_l pack (det_10g.onnx, 2d106det.onnx)"
        for path, what in ((det, "SCRFD face detector det_10g.onnx"),
                           (lmk, "106-point landmark model 2d106det.onnx")):
            if not path.is_file():
                raise DetectorFileMissing(path, what, source)
        self.threshold = threshold
        self.detector = SCRFD(det, threshold=threshold, providers=providers)
        self.lmk106 = Landmark106(lmk, providers)
        lmk203 = next((root / p for p in LANDMARK203 if (root / p).is_file()), None)
        self.lmk203 = Landmark203(lmk203, providers) if lmk203 else None

    def detect(self, image: np.ndarray) -> list[Face]:
        faces = []
        for det in self.detector.detect(image):
            pts = self.lmk106(image, det.box)
            dense = self.lmk203(image, pts) if self.lmk203 else None
            faces.append(Face(det.box, det.score, pts, dense))
        return faces


class MtcnnBackend:
    """The no-download detector: MTCNN box + 5 points, outline estimated."""

    name = "mtcnn"

    def __init__(self, threshold: float = 0.8):
        from .mtcnn import MTCNN

        self.threshold = threshold
        self.detector = MTCNN(thresholds=(0.6, 0.7, threshold))

    def detect(self, image: np.ndarray) -> list[Face]:
        return [Face(d.box, d.score, geometry.outline_from_kps5(d.kps))
                for d in self.detector.detect(image)]


class NoneBackend:
    """No detection: a user box (estimated landmarks), or nothing (whole image)."""

    name = "none"

    def __init__(self, box=None):
        self.box = None if box is None else np.asarray(box, dtype=np.float64)

    def detect(self, image: np.ndarray) -> list[Face]:
        if self.box is None:
            return []
        pts = geometry.outline_from_kps5(geometry.kps5_from_box(self.box))
        return [Face(self.box, 1.0, pts)]


def has_official_models(models_dir: str | Path | None) -> bool:
    return models_dir is not None and (Path(models_dir) / BUFFALO / "det_10g.onnx").is_file()


@lru_cache(maxsize=4)
def _cached_backend(name: str, models_dir: str | None, threshold: float | None) -> FaceBackend:
    if name == "onnx":
        if models_dir is None:
            raise DetectorFileMissing(Path("<models_dir>") / BUFFALO / "det_10g.onnx",
                                      "SCRFD face detector det_10g.onnx",
                                      "the insightface buffalo_l pack")
        return OnnxBackend(models_dir, **({} if threshold is None else {"threshold": threshold}))
    return MtcnnBackend(**({} if threshold is None else {"threshold": threshold}))


def get_backend(name: str = "auto", models_dir: str | Path | None = None,
                threshold: float | None = None, box=None) -> FaceBackend:
    """Resolve a backend name (see the module docstring); detectors are cached."""
    if name not in BACKENDS:
        raise ValueError(f"face backend must be one of {BACKENDS}, got {name!r}")
    if name == "none":
        return NoneBackend(box)
    if name == "auto":
        name = "onnx" if has_official_models(models_dir) else "mtcnn"
    return _cached_backend(name, None if models_dir is None else str(models_dir), threshold)


def ordered(faces: list[Face], order: str) -> list[Face]:
    """``faces`` numbered as ``order`` says: ``"large-small"`` (largest box first, the official
    default) or ``"left-right"`` (by the box's left edge)."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if order == "left-right":
        return sorted(faces, key=lambda f: float(f.box[0]))
    return sorted(faces, key=lambda f: -float((f.box[2] - f.box[0]) * (f.box[3] - f.box[1])))


def select_face(faces: list[Face], face_index: int, order: str, image_name: str) -> Face:
    faces = ordered(faces, order)
    if not 0 <= face_index < len(faces):
        raise FaceIndexError(image_name, face_index, len(faces))
    return faces[face_index]


@dataclass
class FaceCrop:
    """The source face, ready for the renderer.

    crop_512: [512, 512, 3] uint8 RGB; crop_256: [1, 3, 256, 256] float32 0..1
    (what F and M take); M_o2c / M_c2o: [3, 3] float64 original <-> 512-crop
    pixels; landmarks: [N, 2] original pixels (the points the crop was placed
    from; None in 'none' mode without box); lmk203: [203, 2] original pixels or
    None; eye_open: [2] (left, right) and lip_open ratios from the 203 points,
    else None; box: [4] or None; backend: the backend that ran.
    """

    crop_512: np.ndarray
    crop_256: torch.Tensor
    M_o2c: np.ndarray
    M_c2o: np.ndarray
    landmarks: np.ndarray | None
    lmk203: np.ndarray | None
    eye_open: np.ndarray | None
    lip_open: float | None
    box: np.ndarray | None
    backend: str


def letterbox_o2c(height: int, width: int, dsize: int) -> np.ndarray:
    """[3, 3] original -> crop mapping the whole image, centred, into dsize x dsize."""
    s = dsize / max(height, width)
    return np.array([[s, 0.0, (dsize - s * width) / 2 - 0.5 + s / 2],
                     [0.0, s, (dsize - s * height) / 2 - 0.5 + s / 2],
                     [0.0, 0.0, 1.0]])


def detect_and_crop(image: np.ndarray, backend: str = "auto", models_dir: str | Path | None = None,
                    face_index: int = 0, crop_scale: float = config.CROP_SCALE,
                    vx: float = config.CROP_VX_RATIO, vy: float = config.CROP_VY_RATIO,
                    box=None, order: str = "large-small", threshold: float | None = None,
                    image_name: str = "the source image") -> FaceCrop:
    """Find a face and cut the official 512x512 crop.

    image: [H, W, 3] uint8 RGB at full resolution (see :func:`image_io.load_image`);
    detection runs on a copy no larger than ``image_io.MAX_DETECT_SIDE``.
    box: (x1, y1, x2, y2) face box in image pixels; it implies no detection.
    crop_scale / vx / vy: the official crop parameters (2.3, 0, -0.125).
    threshold: the detector's score threshold (None = the backend's default).
    """
    _check_rgb(image)
    chosen = get_backend("none" if box is not None else backend, models_dir, threshold, box)
    if isinstance(chosen, NoneBackend):
        faces = chosen.detect(image)
        face = faces[0] if faces else None
    else:
        face = select_face(_detect_all(chosen, image, image_name), face_index, order, image_name)
    return crop_face(image, face, chosen.name, crop_scale=crop_scale, vx=vx, vy=vy,
                     image_name=image_name)


def _check_rgb(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be [H, W, 3] uint8 RGB, got {image.dtype} "
                         f"{list(image.shape)}; load it with joyvasa_core.face.image_io.load_image")


def _detect_all(chosen: FaceBackend, image: np.ndarray, image_name: str) -> list[Face]:
    view, factor = detection_view(image)
    faces = [f.scaled(factor) for f in chosen.detect(view)]
    if not faces:
        raise NoFaceError(image_name, chosen.name, getattr(chosen, "threshold", None))
    return faces


def detect_faces(image: np.ndarray, backend: str = "auto", models_dir: str | Path | None = None,
                 threshold: float | None = None, order: str = "left-right",
                 image_name: str = "the source image") -> tuple[list[Face], str]:
    """Every face the detector finds in ``image`` ([H, W, 3] uint8 RGB, full resolution; detection
    runs on a copy no larger than ``image_io.MAX_DETECT_SIDE``), in full-image pixels, numbered
    as ``order`` says, and the name of the backend that ran. Raises NoFaceError when there is
    none; ``backend="none"`` detects nothing (an empty list)."""
    _check_rgb(image)
    chosen = get_backend(backend, models_dir, threshold)
    if isinstance(chosen, NoneBackend):
        return [], chosen.name
    return ordered(_detect_all(chosen, image, image_name), order), chosen.name


def box_face(box) -> Face:
    """A face given as a pixel box (x1, y1, x2, y2): its landmarks estimated from the box,
    as ``backend="none"`` places a crop."""
    return NoneBackend(box).detect(np.zeros((1, 1, 3), np.uint8))[0]


def crop_face(image: np.ndarray, face: Face | None, backend: str = "none", *,
              crop_scale: float = config.CROP_SCALE, vx: float = config.CROP_VX_RATIO,
              vy: float = config.CROP_VY_RATIO, image_name: str = "the source image") -> FaceCrop:
    """The official 512x512 crop of ``face`` in ``image`` ([H, W, 3] uint8 RGB); None: the whole
    image letterboxed. backend: the name recorded in the crop. Raises FaceTooSmallError."""
    height, width = image.shape[:2]
    dsize = config.CROP_DSIZE
    if face is None:
        m_o2c = letterbox_o2c(height, width, dsize)
    else:
        side = float(max(face.box[2] - face.box[0], face.box[3] - face.box[1]))
        if side < MIN_FACE_PX:
            raise FaceTooSmallError(image_name, side, MIN_FACE_PX)
        m_o2c, _ = geometry.crop_transform(face.points, dsize, crop_scale, vx, vy)
    m_c2o = np.linalg.inv(m_o2c)
    crop = geometry.warp_crop(image, m_o2c, dsize)
    small = geometry.resize_for_model(crop)
    lmk203 = None if face is None else face.lmk203
    return FaceCrop(
        crop_512=crop,
        crop_256=to_float01(torch.from_numpy(small)).permute(2, 0, 1)[None],
        M_o2c=m_o2c, M_c2o=m_c2o,
        landmarks=None if face is None else face.points,
        lmk203=lmk203,
        eye_open=None if lmk203 is None else geometry.eye_open_ratio(lmk203),
        lip_open=None if lmk203 is None else geometry.lip_open_ratio(lmk203),
        box=None if face is None else face.box,
        backend=backend,
    )
