"""Where rendered face crops go back: a :class:`Placement`, and pasting crops of any size.

A render can stop at the face crop (``paste=False``) so that other tools (a
face restorer, an upscaler) work on it; :func:`paste_crops` then pastes the
crops back. The :class:`Placement` says, for every output frame, which source
pixels it is pasted into and through which crop -> source transform. Sources
give theirs (:meth:`joyvasa_core.sources.PhotoSource.placement`,
:meth:`joyvasa_core.sources.VideoSource.placement`).

Crops may be any square size: an upscaled 1024 or 2048 crop is pasted through
the transform scaled to its size (:meth:`joyvasa_core.face.paste.PasteBack.for_render`),
never shrunk to 512 first. Several faces of one source are pasted one after
the other, each placement into the previous result (``background``).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .errors import UsageError
from .face.paste import PasteBack


class PlacementError(UsageError):
    """Crops that do not fit their placement (count, shape, background size)."""


@dataclass(frozen=True)
class Placement:
    """The source side of a paste-back, one entry per output frame.

    pixels: [F, H, W, 3] the source frames, float 0..1 or uint8, on the CPU (a
        photo: F = 1; a video: its frames, shared with the caller, never copied);
    frame: [n] int64, the source frame of each output frame; None: frame 0 for
        any number of output frames (a photo);
    M_c2o: [3, 3] (every frame) or [n, 3, 3] float64, official 512 crop pixels
        -> source pixels;
    has_face: [n] bool, False where the frame keeps its source pixels; None = all.
    """

    pixels: torch.Tensor
    frame: np.ndarray | None
    M_c2o: np.ndarray
    has_face: np.ndarray | None = None

    @property
    def count(self) -> int | None:
        """Output frames it places (None: any number, a photo)."""
        return None if self.frame is None else len(self.frame)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the source, in pixels."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[2])

    def describe(self) -> str:
        height, width = self.size
        kind = "a photo" if self.frame is None else f"{self.count} video frames"
        return f"{kind} of {width}x{height}"


def check_crops(placement: Placement, crops: torch.Tensor,
                background: torch.Tensor | None = None) -> None:
    """Raise :class:`PlacementError` (one line: the cause and the fix) unless ``crops``
    ``[N, S, S, C]`` (C >= 3) fit ``placement``, and ``background`` ``[1 or N, H', W', C]``
    (if given) is the source's size (give or take the row or column that output
    frames lose to even sizes)."""
    if not isinstance(crops, torch.Tensor) or crops.ndim != 4 or crops.shape[-1] < 3:
        shape = list(crops.shape) if isinstance(crops, torch.Tensor) else type(crops).__name__
        raise PlacementError(f"the crops must be an IMAGE batch [N, S, S, 3]; got {shape}")
    n, height, width = (int(v) for v in crops.shape[:3])
    if n == 0:
        raise PlacementError("there are no crops to paste (an empty IMAGE batch)")
    if height != width:
        raise PlacementError(
            f"the crops are {width}x{height}, not square: paste-back needs the square face "
            "crop scaled by the same factor in both directions (upscale it, do not crop it)")
    if placement.count is not None and n != placement.count:
        raise PlacementError(
            f"{n} crops for a paste of {placement.count} frames: connect every crop of the "
            "same render (paste_back off), in order, without dropping or adding frames")
    if background is None:
        return
    if not isinstance(background, torch.Tensor) or background.ndim != 4 or background.shape[-1] < 3:
        shape = list(background.shape) if isinstance(background, torch.Tensor) else \
            type(background).__name__
        raise PlacementError(f"the background must be an IMAGE batch [B, H, W, 3]; got {shape}")
    if background.shape[0] not in (1, n):
        raise PlacementError(
            f"{background.shape[0]} background frames for {n} crops: give one background "
            "image, or one per crop")
    src_h, src_w = placement.size
    bg_h, bg_w = int(background.shape[1]), int(background.shape[2])
    if abs(bg_h - src_h) > 1 or abs(bg_w - src_w) > 1:
        raise PlacementError(
            f"the background is {bg_w}x{bg_h} but the face was found in {placement.describe()}: "
            "paste into frames of the source's size (for several faces: the previous "
            "paste's output)")


def paste_crops(placement: Placement, crops: torch.Tensor, *, batch_size: int = 16,
                device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                background: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """Paste ``crops`` back, ``batch_size`` frames at a time.

    crops: IMAGE layout [N, S, S, C] float 0..1 (any square size S, on any
    device), checked by :func:`check_crops`; background: [1 or N, H, W, C]
    float 0..1 to paste into instead of the placement's source pixels (another
    face's paste, a retouched photo). Yields [b, H', W', 3] float 0..1 in
    ``dtype`` on ``device`` (H', W' = the background's size rounded up to even).
    """
    check_crops(placement, crops, background)
    n, size = int(crops.shape[0]), int(crops.shape[1])
    batch_size = max(1, int(batch_size))
    shared = None          # a photo into one background: one mask and grid for every chunk
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        pixels, one_image = _backgrounds(placement, background, start, stop)
        M_c2o = placement.M_c2o if placement.M_c2o.ndim == 2 else placement.M_c2o[start:stop]
        active = None if placement.has_face is None else placement.has_face[start:stop]
        if one_image and M_c2o.ndim == 2 and active is None:
            if shared is None:
                shared = PasteBack.for_render(M_c2o, pixels, size, device, dtype)
            paster = shared
        else:
            paster = PasteBack.for_render(M_c2o, pixels, size, device, dtype, active)
        batch = crops[start:stop, ..., :3].permute(0, 3, 1, 2).to(device=device, dtype=dtype)
        yield paster(batch)


def _backgrounds(placement: Placement, background: torch.Tensor | None, start: int,
                 stop: int) -> tuple[torch.Tensor, bool]:
    """The pixels output frames start..stop-1 are pasted into ([H, W, 3] or [b, H, W, 3]),
    and whether that is one image for all of them."""
    if background is not None:
        if background.shape[0] == 1:
            return background[0, ..., :3], True
        return background[start:stop, ..., :3], False
    if placement.frame is None:
        return placement.pixels[0], True
    index = torch.as_tensor(placement.frame[start:stop], dtype=torch.long)
    return placement.pixels[index], False
