"""Load any still image as RGB uint8, shrink huge ones for detection only, and convert
pixel levels between uint8 (0..255) and float (0..1) tensors.

What comes in, and what it becomes ([H, W, 3] uint8 RGB, always):

* paths (any format Pillow reads: PNG, JPEG, WebP, TIFF, BMP, ...), Pillow
  images, numpy arrays, torch tensors ([H, W, C] or ComfyUI-style [1, H, W, C]);
* EXIF orientation is applied (phone photos come out upright);
* CMYK (JPEG) -> RGB by Pillow's conversion; paletted -> its colours; animated
  GIF/WebP -> the first frame;
* grayscale (L, 1, I, I;16, F) -> the gray value on all three channels;
* 16-bit (uint16 arrays, I;16 images) -> 8 bit by value / 257, rounded;
  float arrays/tensors are taken as 0..1 and clipped;
* alpha (RGBA, LA, PA, RGBA arrays): ``alpha="composite"`` (default) blends the
  picture over a white background, which is what a viewer shows for a cut-out
  portrait and keeps transparent pixels from turning into garbage colours;
  ``alpha="drop"`` just discards the alpha channel; the node pack composites an
  IMAGE's alpha the same way (:func:`composite`);
* anything that is not an image -> :class:`ImageLoadError` naming the file.

Huge images (8K and up) are kept at full resolution: the crop and the
paste-back use every pixel. Only detection works on a copy shrunk so that its
longer side is at most :data:`MAX_DETECT_SIDE` (:func:`detection_view`);
landmarks are scaled back to the full image. Pillow's own decompression-bomb
guard (about 178 megapixels) still applies and is reported as an
:class:`ImageLoadError`.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from .errors import ImageLoadError

MAX_DETECT_SIDE = 1280   # pixels: longer side of the image the detectors see
MIN_PHOTO_SIDE = 32      # pixels: a smaller photo cannot hold a face worth animating
ALPHA_MODES = ("composite", "drop")
#: Level (0..1, all three channels) that transparent pixels are composited over: white.
ALPHA_BACKGROUND = 1.0


def composite(color, alpha):
    """``color`` [..., 3] and ``alpha`` [..., 1], both float 0..1 (numpy or torch) -> the
    colour over :data:`ALPHA_BACKGROUND` (white): ``color * alpha + white * (1 - alpha)``."""
    return color * alpha + ALPHA_BACKGROUND * (1.0 - alpha)


def _from_array(arr: np.ndarray, alpha: str, name: str) -> np.ndarray:
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ImageLoadError(f"{name}: expected an image array [H, W] or [H, W, 1|2|3|4], "
                             f"got shape {list(arr.shape)}")
    if arr.dtype == np.uint8:
        img = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        img = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        img = np.clip(np.nan_to_num(arr.astype(np.float32)), 0.0, 1.0)
    elif arr.dtype == np.bool_:
        img = arr.astype(np.float32)
    else:
        raise ImageLoadError(f"{name}: unsupported pixel type {arr.dtype}; use uint8, uint16 or "
                             f"float in 0..1")
    channels = img.shape[2]
    has_alpha = channels in (2, 4)
    color = img[..., :channels - 1] if has_alpha else img
    if color.shape[2] == 1:
        color = np.repeat(color, 3, axis=2)
    if has_alpha and alpha == "composite":
        color = composite(color, img[..., -1:])
    return np.rint(color * 255.0).astype(np.uint8)


def _from_pil(im, alpha: str, name: str) -> np.ndarray:
    from PIL import ImageOps

    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return _from_array(np.asarray(im, dtype=np.uint16), alpha, name)
    if im.mode == "I":
        arr = np.asarray(im, dtype=np.int64)
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return _from_array(np.clip(arr / peak, 0, 1).astype(np.float32), alpha, name)
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        peak = 255.0 if arr.max(initial=0) > 1.0 else 1.0
        return _from_array(arr / peak, alpha, name)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or \
        (im.mode == "P" and "transparency" in im.info)
    im = im.convert("RGBA" if has_alpha else "RGB")
    return _from_array(np.asarray(im), alpha, name)


def load_image(source, alpha: str = "composite") -> np.ndarray:
    """Any image (path, Pillow image, array, tensor) -> [H, W, 3] uint8 RGB.

    See the module docstring for how alpha, grayscale and 16-bit input are
    treated. Raises :class:`ImageLoadError` with the file name when the input
    is not a readable image.
    """
    if alpha not in ALPHA_MODES:
        raise ValueError(f"alpha must be one of {ALPHA_MODES}, got {alpha!r}")
    if isinstance(source, (str, Path)):
        from PIL import Image, UnidentifiedImageError

        path = Path(source)
        if path.is_dir():
            raise ImageLoadError(f"{path} is a folder, not an image file. Pass the path of one "
                                 "photo (PNG, JPEG, WebP, ...).")
        if not path.is_file():
            raise ImageLoadError(f"image file not found: {path}. Check the path.")
        try:
            with Image.open(path) as im:
                im.load()
                return _from_pil(im, alpha, str(path))
        except UnidentifiedImageError:
            raise ImageLoadError(f"{path} is not an image Pillow can read (PNG, JPEG, WebP, "
                                 f"TIFF, BMP, ...). Choose an image file.") from None
        except Image.DecompressionBombError as exc:
            raise ImageLoadError(f"{path} is too large to decode safely ({exc}). Downscale it "
                                 f"below ~170 megapixels first.") from None
        except OSError as exc:
            raise ImageLoadError(f"{path} could not be decoded ({exc}); the file may be "
                                 f"truncated or corrupt.") from None
    if hasattr(source, "convert") and hasattr(source, "mode"):   # a Pillow image
        return _from_pil(source, alpha, "image")
    if hasattr(source, "detach"):                                # a torch tensor
        source = source.detach().cpu().numpy()
    return _from_array(np.asarray(source), alpha, "image")


def check_photo_size(image: np.ndarray, name: str = "the image",
                     minimum: int = MIN_PHOTO_SIDE) -> np.ndarray:
    """Raise :class:`ImageLoadError` unless ``image`` [H, W, ...] is at least ``minimum`` px
    on both sides; returns the image."""
    height, width = image.shape[:2]
    if min(height, width) < minimum:
        raise ImageLoadError(f"{name} is only {width}x{height} pixels; a portrait needs at least "
                             f"{minimum}x{minimum}. Use a larger photo of the face.")
    return image


def to_float01(image: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Pixels of any shape: uint8 (0..255) -> ``dtype`` in 0..1 (divided in ``dtype``);
    float (taken as 0..1 already) -> ``dtype``. Same shape and device."""
    if image.dtype == torch.uint8:
        return image.to(dtype) / 255.0
    return image.to(dtype)


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """Pixels of any shape: float 0..1 -> uint8 (clipped, rounded to the nearest level in
    float32); uint8 is returned as is. Same shape and device."""
    if image.dtype == torch.uint8:
        return image
    return (image.float().clamp(0.0, 1.0) * 255.0).round_().to(torch.uint8)


def detection_view(image: np.ndarray, max_side: int = MAX_DETECT_SIDE) -> tuple[np.ndarray, float]:
    """A copy for detection: (image shrunk to longer side <= max_side, factor <= 1).

    Coordinates found on the copy map back to the full image by dividing by
    the factor. Small images are returned as they are (factor 1).
    """
    height, width = image.shape[:2]
    factor = min(1.0, max_side / max(height, width))
    if factor >= 1.0:
        return image, 1.0
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), factor
