"""SCRFD face detector (insightface ``det_10g.onnx``) run with onnxruntime.

The network sees a ``size`` x ``size`` RGB image ((x - 127.5) / 128), the photo
resized to fit with its aspect kept and pasted at the top-left corner. For
each stride s in (8, 16, 32) it returns, per anchor (2 anchors per cell of the
(size/s) x (size/s) grid, cells in row-major order): a face score, 4 distances
(left, top, right, bottom) from the cell centre to the box edges, and 10 offsets
(x, y of 5 keypoints: eyes, nose, mouth corners) from the cell centre; the
distances are in units of the stride. Output order: the 3 score maps, the 3 box
maps, the 3 keypoint maps (strides ascending), each [A, k] or [1, A, k].

No ``insightface`` import: decoding and NMS are implemented here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

STRIDES = (8, 16, 32)
NUM_ANCHORS = 2
INPUT_MEAN, INPUT_STD = 127.5, 128.0


@dataclass
class Detection:
    """One face: box [4] (x1, y1, x2, y2) pixels, score, kps [5, 2] pixels (or None)."""

    box: np.ndarray
    score: float
    kps: np.ndarray | None


def anchor_centres(size: int, stride: int, num_anchors: int = NUM_ANCHORS) -> np.ndarray:
    """[(size//stride)**2 * num_anchors, 2] (x, y) pixel centres, row-major, anchors adjacent."""
    n = size // stride
    ys, xs = np.mgrid[:n, :n]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, num_anchors, axis=0)


def distance2bbox(centres: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """centres [A, 2], dist [A, 4] (l, t, r, b) pixels -> boxes [A, 4] (x1, y1, x2, y2)."""
    return np.concatenate([centres - dist[:, :2], centres + dist[:, 2:4]], axis=1)


def distance2kps(centres: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """centres [A, 2], dist [A, 2K] (dx, dy per point) pixels -> points [A, K, 2]."""
    return centres[:, None, :] + dist.reshape(dist.shape[0], dist.shape[1] // 2, 2)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, best score first.

    boxes [N, 4] (x1, y1, x2, y2), scores [N]. Areas use the +1 pixel
    convention of insightface's SCRFD.
    """
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """[H, W, 3] -> ([size, size, 3] image at the top-left, zeros elsewhere; scale)."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, int(width * scale)), max(1, int(height * scale))
    canvas = np.zeros((size, size, 3), dtype=image.dtype)
    canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h))
    return canvas, new_h / height


def decode(outputs: list[np.ndarray], size: int, threshold: float,
           strides=STRIDES) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Raw network outputs -> (boxes [N, 4], scores [N], kps [N, 5, 2] or None), input pixels."""
    n = len(strides)
    squeeze = [o[0] if o.ndim == 3 else o for o in outputs]
    boxes, scores, kpss = [], [], []
    has_kps = len(squeeze) >= 3 * n
    for i, stride in enumerate(strides):
        score = squeeze[i].reshape(-1)
        centres = anchor_centres(size, stride, score.shape[0] // (size // stride) ** 2)
        pos = np.nonzero(score >= threshold)[0]
        boxes.append(distance2bbox(centres[pos], squeeze[i + n][pos] * stride))
        scores.append(score[pos])
        if has_kps:
            kpss.append(distance2kps(centres[pos], squeeze[i + 2 * n][pos] * stride))
    return (np.concatenate(boxes), np.concatenate(scores),
            np.concatenate(kpss) if has_kps else None)


class SCRFD:
    """``det_10g.onnx`` (or any SCRFD export with the same 9-output layout)."""

    def __init__(self, path: str | Path, size: int = 512, threshold: float = 0.5,
                 nms_threshold: float = 0.4, providers: list[str] | None = None):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=providers or
                                            ["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        fixed = [d for d in inp.shape[2:] if isinstance(d, int)]
        self.size = fixed[0] if fixed else size      # a fixed-size export wins
        self.threshold, self.nms_threshold = threshold, nms_threshold

    def detect(self, image: np.ndarray) -> list[Detection]:
        """image: [H, W, 3] uint8 RGB -> faces, best score first (coordinates in the image)."""
        canvas, scale = letterbox(image, self.size)
        blob = ((canvas.astype(np.float32) - INPUT_MEAN) / INPUT_STD).transpose(2, 0, 1)[None]
        outputs = self.session.run(None, {self.input_name: np.ascontiguousarray(blob)})
        boxes, scores, kps = decode(outputs, self.size, self.threshold)
        keep = nms(boxes, scores, self.nms_threshold)
        return [Detection(boxes[i] / scale, float(scores[i]),
                          None if kps is None else kps[i] / scale) for i in keep]
