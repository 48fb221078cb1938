"""Errors of the face stage; each message says what to do about it."""
from __future__ import annotations

from pathlib import Path

from ..errors import JoyVASAError


class FaceError(JoyVASAError, RuntimeError):
    """Base class of every face-stage error."""


class ImageLoadError(FaceError, ValueError):
    """The file is not an image this library can read."""


class NoFaceError(FaceError):
    def __init__(self, image_name: str, backend: str, threshold: float | None = None):
        hint = (f"lower the detection threshold (now {threshold:g}), " if threshold is not None else "")
        super().__init__(
            f"no face found in {image_name} by the '{backend}' face backend. Use a photo with a "
            f"clearly visible, roughly frontal face, {hint}or set face_backend='none' to use the "
            f"image as the face crop (or pass a face box).")


class FaceIndexError(FaceError, IndexError):
    def __init__(self, image_name: str, face_index: int, count: int):
        super().__init__(
            f"face_index={face_index} but {image_name} has {count} detected face(s); faces are "
            f"numbered from 0 (largest first, or left to right with order='left-right'). "
            f"Use a face_index below {count}.")


class FaceTooSmallError(FaceError):
    def __init__(self, image_name: str, size: float, minimum: float):
        super().__init__(
            f"the selected face in {image_name} is only {size:.0f} px across (minimum "
            f"{minimum:.0f} px); the animation would be blurry. Use a larger photo or a closer "
            f"crop of the face.")


class DetectorFileMissing(FaceError, FileNotFoundError):
    def __init__(self, path: Path, what: str, source: str):
        super().__init__(
            f"{what} not found at {path}. Download it from {source} into that folder, "
            f"or use face_backend='auto' (falls back to the no-download detector) or 'none'.")


class BackendUnavailable(FaceError, ImportError):
    def __init__(self, backend: str, install: str):
        super().__init__(f"the '{backend}' face backend needs an extra package: {install}")
