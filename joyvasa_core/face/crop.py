"""Crop geometry of the official LivePortrait cropper, as pure functions.

The official crop is a similarity transform (scale, rotation, translation)
computed from two anchor points of the face: the centre of the eyes and the
centre of the lips. The face is rotated so that the eye-to-lip axis points
straight down, a square is fitted around all landmarks in that rotated frame,
enlarged by ``scale`` (2.3 in the app, 3.0 in the official CLI) and shifted
along the face's own up-down axis by ``vy_ratio * size`` (-0.125: towards the
forehead), then mapped onto a ``dsize`` x ``dsize`` image.

Conventions (all in pixels, x right, y down):

* landmarks ``pts``: ``[N, 2]`` float, (x, y) in the original image;
* ``M_o2c``: ``[3, 3]`` float64, homogeneous original -> crop;
  ``M_c2o`` its inverse;
* roll angle in radians, positive = clockwise in the image.

Differences from the official ``crop_image`` that are deliberate:

* the official function ignores ``vx_ratio`` (it is not forwarded); here it is
  honoured (default 0, so the default crop is identical);
* the geometry is computed in float64 by default; ``dtype=np.float32``
  follows the official float32 arithmetic exactly (the ``crop`` parity
  fixture checks it). The two differ by ~1e-6 relative, far below a pixel.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .. import config

#: Landmark layouts the crop understands: number of points -> (left eye points,
#: right eye points, lip points). The eye centre is the mean of its points,
#: the lip centre the mean of the lip points.
ANCHORS: dict[int, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {
    5: ((0,), (1,), (3, 4)),                          # eyes, nose, mouth corners
    9: ((0,), (1,), (3, 4)),                          # the 5 points + estimated outline
    68: ((36, 39), (42, 45), (48, 54)),               # iBUG 68 (0-based)
    101: ((39, 42, 45, 48), (51, 54, 57, 60), (75, 81)),
    106: ((33, 35, 40, 39), (87, 89, 94, 93), (52, 61)),   # insightface 2d106det
    203: ((0, 6, 12, 18), (24, 30, 36, 42), (48, 66)),     # LivePortrait landmark.onnx
}

#: 203-point indices of the LivePortrait eye / lip openness ratios:
#: (upper lid, lower lid, eye corner, eye corner) per eye; (upper lip, lower lip,
#: mouth corner, mouth corner) for the lips.
EYE_RATIO_POINTS = ((6, 18, 0, 12), (30, 42, 24, 36))
LIP_RATIO_POINTS = (90, 102, 48, 66)

MODEL_INPUT_SIZE = config.SOURCE_SIZE  # 256: what F and M see


#: Face outline relative to 5 points, for detectors that give no contour:
#: (brow top, chin) along the eye->mouth axis in units of the eye-centre to
#: mouth-centre distance m, measured from the eye line; (cheeks) across in units
#: of the eye distance e, from the eye midpoint. Calibrated by hand on
#: ``skimage.data.astronaut()`` (brow top 0.27 m above the eyes, chin 2.03 m
#: below, face 1.82 e wide at eye level) and rounded towards an average adult
#: face; the official crop's size comes from the extent of the 106-point
#: contour (eyebrows to chin, ear to ear), which these four points stand for.
OUTLINE_BROW, OUTLINE_CHIN, OUTLINE_CHEEK = -0.3, 2.0, 0.95

#: Where the 5 points sit in a face box (fractions of width, height), for a
#: user-given box without landmarks (measured from MTCNN on the same photo).
BOX_KPS5 = np.array([[0.28, 0.37], [0.72, 0.37], [0.50, 0.58], [0.30, 0.72], [0.70, 0.72]])


def outline_from_kps5(kps5: np.ndarray) -> np.ndarray:
    """[5, 2] points (eyes, nose, mouth corners) -> [9, 2]: the 5 points plus an
    estimated outline (brow top, chin, left cheek, right cheek), so that the
    official crop geometry sizes the crop as it would from a full contour."""
    kps5 = np.asarray(kps5, dtype=np.float64)
    eye, lip = anchor_points(kps5)
    down = lip - eye
    m = float(np.linalg.norm(down))
    down = down / m if m > 1e-3 else np.array([0.0, 1.0])
    right = np.array([down[1], -down[0]])
    e = float(np.linalg.norm(kps5[1] - kps5[0]))
    outline = np.stack([eye + down * OUTLINE_BROW * m, eye + down * OUTLINE_CHIN * m,
                        eye - right * OUTLINE_CHEEK * e, eye + right * OUTLINE_CHEEK * e])
    return np.concatenate([kps5, outline])


def kps5_from_box(box: np.ndarray) -> np.ndarray:
    """Face box [4] (x1, y1, x2, y2) -> estimated [5, 2] points (upright face)."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return np.array([x1, y1]) + BOX_KPS5 * np.array([x2 - x1, y2 - y1])


def anchor_points(pts: np.ndarray, dtype=np.float64) -> np.ndarray:
    """Eye centre and lip centre of a face.

    pts: [N, 2] landmarks with N in :data:`ANCHORS` -> [2, 2] in ``dtype``
    (row 0 = midpoint of the two eye centres, row 1 = lip centre).
    """
    pts = np.asarray(pts).astype(dtype, copy=False)
    layout = ANCHORS.get(pts.shape[0])
    if layout is None or pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"landmarks must be [N, 2] with N in {sorted(ANCHORS)}, "
                         f"got {list(pts.shape)}")
    left, right, lip = (pts[list(idx)].mean(axis=0) for idx in layout)
    return np.stack([(left + right) / 2, lip])


def crop_rect(pts: np.ndarray, scale: float = config.CROP_SCALE,
              vx_ratio: float = config.CROP_VX_RATIO, vy_ratio: float = config.CROP_VY_RATIO,
              dtype=np.float64) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre, side and roll of the official square crop.

    pts: [N, 2] landmarks. Returns (centre [2] pixels, side [2] pixels (both
    entries equal), roll in radians: the angle of the face's x axis, clockwise
    positive). The arithmetic runs in ``dtype``, in the official order of
    operations, so ``dtype=np.float32`` reproduces the official float32
    numbers bit for bit.
    """
    pts = np.asarray(pts).astype(dtype, copy=False)
    eye, lip = anchor_points(pts, dtype)
    down = lip - eye
    length = np.linalg.norm(down)
    down = down / length if length > 1e-3 else np.array([0, 1], dtype=dtype)
    right = np.array((down[1], -down[0]), dtype=dtype)
    roll = math.acos(float(right[0])) * (-1.0 if right[1] < 0 else 1.0)
    rot = np.array([right, down])                   # rows: face axes in image coords
    mean = np.mean(pts, axis=0)
    local = (pts - mean) @ rot.T                     # landmarks in the face frame
    lo, hi = np.min(local, axis=0), np.max(local, axis=0)
    mid = (lo + hi) / 2
    side = hi - lo
    side[:] = max(side[0], side[1])
    side *= scale
    centre = mean + right * mid[0] + down * mid[1]
    centre = centre + right * (vx_ratio * side) + down * (vy_ratio * side)
    return centre, side, roll


def similarity_o2c(centre: np.ndarray, side: np.ndarray, roll: float, dsize: int) -> np.ndarray:
    """[3, 3] original -> crop: the square (centre, side, roll) onto dsize x dsize.

    Computed in the dtype of ``centre`` / ``side``.
    """
    s = dsize / side[0]
    c, n = math.cos(roll), math.sin(roll)
    cx, cy = centre[0], centre[1]
    half = dsize / 2
    return np.array([[s * c, s * n, half - s * (c * cx + n * cy)],
                     [-s * n, s * c, half - s * (-n * cx + c * cy)],
                     [0, 0, 1]], dtype=centre.dtype)


def crop_transform(pts: np.ndarray, dsize: int = config.CROP_DSIZE,
                   scale: float = config.CROP_SCALE, vx_ratio: float = config.CROP_VX_RATIO,
                   vy_ratio: float = config.CROP_VY_RATIO, rotate: bool = True,
                   dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """The official crop transform from landmarks.

    pts: [N, 2] landmarks (original pixels). rotate=False keeps the image
    upright (official ``flag_do_rot=False``). Returns (M_o2c, M_c2o), each
    [3, 3] in ``dtype`` (float32 = the official matrices exactly).
    """
    centre, side, roll = crop_rect(pts, scale, vx_ratio, vy_ratio, dtype)
    m_o2c = similarity_o2c(centre, side, roll if rotate else 0.0, dsize)
    return m_o2c, np.linalg.inv(m_o2c)


def transform_points(pts: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Apply a [3, 3] (or [2, 3]) affine M to points [..., 2] -> [..., 2].

    Computed in the common dtype of ``pts`` and ``M``.
    """
    M = np.asarray(M)
    return np.asarray(pts) @ M[:2, :2].T + M[:2, 2]


def warp_crop(image: np.ndarray, M_o2c: np.ndarray, dsize: int = config.CROP_DSIZE) -> np.ndarray:
    """Cut the crop out of an image: [H, W, C] uint8 -> [dsize, dsize, C] uint8.

    Bilinear (cv2 INTER_LINEAR), black outside the image, as the official crop.
    """
    M = np.asarray(M_o2c, dtype=np.float64)[:2]
    return cv2.warpAffine(image, M, (dsize, dsize), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def resize_for_model(crop: np.ndarray, size: int = MODEL_INPUT_SIZE) -> np.ndarray:
    """[S, S, 3] uint8 crop -> [size, size, 3] uint8 with INTER_AREA (as the official Cropper)."""
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def _distance_ratio(pts: np.ndarray, a: int, b: int, c: int, d: int) -> float:
    return float(np.linalg.norm(pts[a] - pts[b]) / (np.linalg.norm(pts[c] - pts[d]) + 1e-6))


def eye_open_ratio(lmk203: np.ndarray) -> np.ndarray:
    """[2] float64: per eye, lid distance / eye width (203-point landmarks)."""
    pts = np.asarray(lmk203, dtype=np.float64)
    return np.array([_distance_ratio(pts, *idx) for idx in EYE_RATIO_POINTS])


def lip_open_ratio(lmk203: np.ndarray) -> float:
    """Inner-lip distance / mouth width (203-point landmarks)."""
    return _distance_ratio(np.asarray(lmk203, dtype=np.float64), *LIP_RATIO_POINTS)
