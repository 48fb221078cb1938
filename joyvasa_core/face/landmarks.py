"""Dense landmarks used by the official cropper, run with onnxruntime.

* ``2d106det.onnx`` (insightface buffalo_l): 106 points from a detected box.
  The face is cut out as a 192x192 square centred on the box, side 1.5x the
  box's longer side, upright; the network takes raw RGB 0..255 (it normalises
  internally) and returns [1, 212] = 106 (x, y) in -1..1 of that square.
* ``landmark.onnx`` (LivePortrait): 203 points from a first set of landmarks.
  The face is cut out with the official crop geometry (224x224, scale 1.5,
  vy -0.1, rotated upright); the input is RGB / 255; output 2 ([1, 406]) holds
  the points in 0..1 of the crop.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import crop as geometry

LMK106_SIZE = 192
LMK203_SIZE = 224


def _session(path: str | Path, providers: list[str] | None):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])


def box_square_o2c(box: np.ndarray, size: int, enlarge: float = 1.5) -> np.ndarray:
    """[3, 3] original -> crop for an upright square around box [4] (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    s = size / (max(x2 - x1, y2 - y1) * enlarge)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return np.array([[s, 0.0, size / 2 - s * cx], [0.0, s, size / 2 - s * cy], [0.0, 0.0, 1.0]])


class Landmark106:
    """insightface ``2d106det.onnx``: box -> [106, 2] points (original pixels)."""

    def __init__(self, path: str | Path, providers: list[str] | None = None):
        self.session = _session(path, providers)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        m_o2c = box_square_o2c(box, LMK106_SIZE)
        patch = geometry.warp_crop(image, m_o2c, LMK106_SIZE)
        blob = patch.astype(np.float32).transpose(2, 0, 1)[None]
        out = self.session.run(None, {self.input_name: blob})[0].reshape(-1, 2)[-106:]
        pts = (out + 1.0) * (LMK106_SIZE // 2)
        return geometry.transform_points(pts.astype(np.float64), np.linalg.inv(m_o2c))


class Landmark203:
    """LivePortrait ``landmark.onnx``: coarse landmarks -> [203, 2] points (original pixels)."""

    def __init__(self, path: str | Path, providers: list[str] | None = None):
        self.session = _session(path, providers)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, image: np.ndarray, pts: np.ndarray) -> np.ndarray:
        m_o2c, m_c2o = geometry.crop_transform(pts, dsize=LMK203_SIZE, scale=1.5, vy_ratio=-0.1)
        patch = geometry.warp_crop(image, m_o2c, LMK203_SIZE)
        blob = (patch.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        out = self.session.run(None, {self.input_name: blob})[2].reshape(-1, 2) * LMK203_SIZE
        return geometry.transform_points(out.astype(np.float64), m_c2o)
