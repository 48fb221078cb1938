"""A motion preview drawn with numpy and OpenCV (no plotting library).

Two panels over time (seconds): head pose (pitch, yaw, roll in degrees) and
mouth opening, measured as the vertical spread of the expression offsets of
LivePortrait's lip keypoints (``joyvasa_core.config.LIP_INDICES``).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from joyvasa_core.config import LIP_INDICES

from .convert import uint8_to_image

_BG = (255, 255, 255)
_AXIS = (90, 90, 90)
_GRID = (225, 225, 225)
_POSE_COLOURS = {"pitch": (214, 39, 40), "yaw": (31, 119, 180), "roll": (44, 160, 44)}  # RGB
_MOUTH_COLOUR = (148, 103, 189)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def mouth_open(exp: torch.Tensor) -> np.ndarray:
    """exp ``[T, 21, 3]`` -> ``[T]`` vertical spread (max - min of y) over the lip keypoints."""
    lips = exp[:, list(LIP_INDICES), 1].detach().to("cpu", torch.float64)
    return (lips.max(dim=1).values - lips.min(dim=1).values).numpy()


def _panel(canvas: np.ndarray, top: int, height: int, left: int, width: int,
           curves: dict[str, tuple[np.ndarray, tuple[int, int, int]]], duration: float,
           title: str) -> None:
    values = np.concatenate([c for c, _ in curves.values()])
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 1.0, hi + 1.0
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    bottom = top + height

    def y_of(v: np.ndarray) -> np.ndarray:
        return bottom - (v - lo) / (hi - lo) * height

    for k in range(5):  # horizontal grid with value labels
        v = lo + (hi - lo) * k / 4
        y = int(round(y_of(np.array(v))))
        cv2.line(canvas, (left, y), (left + width, y), _GRID, 1)
        cv2.putText(canvas, f"{v:.3g}", (4, y + 4), _FONT, 0.38, _AXIS, 1, cv2.LINE_AA)
    cv2.rectangle(canvas, (left, top), (left + width, bottom), _AXIS, 1)
    cv2.putText(canvas, title, (left + 4, top - 6), _FONT, 0.5, _AXIS, 1, cv2.LINE_AA)

    legend_x = left + width - 90 * len(curves)
    for i, (name, (curve, colour)) in enumerate(curves.items()):
        n = curve.shape[0]
        xs = left + (np.arange(n) / max(n - 1, 1)) * width
        pts = np.stack([xs, y_of(curve)], axis=1).round().astype(np.int32)
        cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], False, colour, 2, cv2.LINE_AA)
        lx = legend_x + 90 * i
        cv2.line(canvas, (lx, top - 10), (lx + 20, top - 10), colour, 2)
        cv2.putText(canvas, name, (lx + 24, top - 6), _FONT, 0.45, colour, 1, cv2.LINE_AA)

    for k in range(6):  # time ticks
        x = int(round(left + width * k / 5))
        cv2.line(canvas, (x, bottom), (x, bottom + 4), _AXIS, 1)
        cv2.putText(canvas, f"{duration * k / 5:.2f}s", (x - 14, bottom + 16), _FONT, 0.38,
                    _AXIS, 1, cv2.LINE_AA)


def plot_motion(motion, width: int = 1024, height: int = 512) -> torch.Tensor:
    """A motion sequence -> IMAGE ``[1, height, width, 3]`` float32 0..1 with its curves."""
    n = int(motion.exp.shape[0])
    if n == 0:
        raise ValueError("the motion sequence has no frames")
    canvas = np.full((height, width, 3), _BG, dtype=np.uint8)
    left, right, gap = 56, 16, 48
    panel_h = (height - 3 * gap) // 2
    duration = n / float(motion.fps)

    def curve(t: torch.Tensor) -> np.ndarray:
        return t.detach().reshape(n).to("cpu", torch.float64).numpy()

    pose = {name: (curve(getattr(motion, name)), colour) for name, colour in _POSE_COLOURS.items()}
    _panel(canvas, gap, panel_h, left, width - left - right, pose, duration, "head pose (degrees)")
    _panel(canvas, 2 * gap + panel_h, panel_h, left, width - left - right,
           {"mouth": (mouth_open(motion.exp), _MOUTH_COLOUR)}, duration,
           "mouth opening (lip exp spread)")
    return uint8_to_image(canvas)
