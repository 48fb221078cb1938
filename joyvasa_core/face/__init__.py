"""Face stage: load the photo, find the face, cut the official crop, paste frames back.

Public API (stable for the pipeline):

* :func:`load_image` (``image_io``): any image -> [H, W, 3] uint8 RGB.
* :func:`detect_and_crop` (``backends``): -> :class:`FaceCrop` (512 crop,
  [1, 3, 256, 256] model input, M_o2c / M_c2o, landmarks, eye / lip ratios).
* :class:`PasteBack` / :func:`paste_back` (``paste``): rendered
  [B, 3, 512, 512] frames -> [B, H, W, 3] full-resolution frames, batched on
  any device.

Backends: ``"onnx"`` (official insightface SCRFD + 106 points, optional
LivePortrait 203 points), ``"mtcnn"`` (no download: weights ship in the
``mtcnn`` PyPI wheel; why this one is explained in :mod:`.mtcnn`), ``"none"``
(the image is already a face crop, or a user box; animals), ``"auto"``
(official files if present, else MTCNN). Crop geometry: :mod:`.crop`.
"""
from .backends import FaceCrop, detect_and_crop, get_backend
from .image_io import load_image
from .paste import PasteBack, paste_back

__all__ = ["FaceCrop", "PasteBack", "detect_and_crop", "get_backend", "load_image", "paste_back"]
