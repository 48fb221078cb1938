"""Batched paste-back of rendered 512x512 crops into the full-resolution source.

The official pipeline pastes each frame with ``cv2.warpAffine`` and a blend on
the CPU, one frame at a time. Here the work that depends only on the source
(the blending mask in original coordinates, the sampling grid, the background)
is done once by :class:`PasteBack`; each chunk of frames is then one
``grid_sample`` plus one blend on whatever device the frames live on.

Only the region where the mask is non-zero (the crop's footprint) is
resampled, so the cost scales with the face size, not with the photo size:
the rest of each output frame is a copy of the background at full resolution.

Output frames have even height and width (H.264 with yuv420p needs that): an
odd background is padded by repeating its last row / column, and the mask is 0
there.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .. import config
from .image_io import to_float01, to_uint8

FEATHER_PX = 32  # width of the soft border of the default mask, in crop pixels (of 512)


def feathered_mask(size: int = config.CROP_DSIZE, feather: int = FEATHER_PX) -> np.ndarray:
    """Default blending mask in crop space: [size, size] uint8.

    255 inside, falling smoothly (smoothstep) to 0 over ``feather`` pixels at
    each border, so a pasted face fades into the photo instead of showing the
    square edge of the crop. (The official ``mask_template.png`` is similar,
    with a 16-pixel linear ramp; pass it as ``mask`` to reproduce it.)
    """
    pos = np.arange(size, dtype=np.float64) + 0.5
    edge = np.minimum(pos, size - pos) / max(feather, 1)
    t = np.clip(edge, 0.0, 1.0)
    ramp = t * t * (3 - 2 * t)
    return np.rint(255 * np.outer(ramp, ramp)).astype(np.uint8)


def mask_to_original(mask_crop: np.ndarray, M_c2o: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Warp a crop-space mask into the original image.

    mask_crop: [S, S] or [S, S, C] uint8 (0..255); M_c2o: [3, 3] crop -> original;
    size: (width, height) of the original. Returns float32 in 0..1 with the
    mask's channels ([H, W] or [H, W, C]); bilinear, 0 outside the crop
    (identical to the official ``prepare_paste_back``).
    """
    M = np.asarray(M_c2o, dtype=np.float64)[:2]
    warped = cv2.warpAffine(np.ascontiguousarray(mask_crop), M, tuple(int(v) for v in size),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped.astype(np.float32) / 255.0


def _pad_even(image: torch.Tensor) -> torch.Tensor:
    """[..., H, W, C] -> [..., H', W', C] with H', W' even, repeating the last row / column."""
    if image.shape[-3] % 2:
        image = torch.cat([image, image[..., -1:, :, :]], dim=-3)
    if image.shape[-2] % 2:
        image = torch.cat([image, image[..., -1:, :]], dim=-2)
    return image.contiguous()


class PasteBack:
    """Paste chunks of rendered crops into their source images.

    Built once per source (the mask, grid and background are precomputed on
    ``device``), then called on every chunk of frames. A photo is one source
    for every frame; a video chunk gives each frame its own crop transform and
    background (batch B), and a frame can be left out (``active``).

    Args:
        M_c2o: [3, 3] or [B, 3, 3] crop -> original (pixels), e.g. ``FaceCrop.M_c2o``.
        background: [H, W, 3] or [B, H, W, 3] RGB, uint8 0..255 or float 0..1
            (array or tensor), at full resolution.
        mask: crop-space blending mask, [S, S] or [S, S, C] uint8 (0..255);
            None = :func:`feathered_mask`. Its size S is the crop size the
            frames must have.
        device, dtype: where and in what precision the blend runs.
        active: [B] bool, False for frames that keep their background
            untouched (no face there); None = all.
    """

    def __init__(self, M_c2o, background, mask: np.ndarray | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                 active: np.ndarray | None = None):
        bg = torch.as_tensor(background)
        device = torch.device(device) if device is not None else bg.device
        if bg.ndim == 3:
            bg = bg[None]
        if bg.ndim != 4 or bg.shape[3] != 3:
            raise ValueError(f"background must be [H, W, 3] or [B, H, W, 3], got {list(bg.shape)}")
        height, width = int(bg.shape[1]), int(bg.shape[2])
        mask = feathered_mask() if mask is None else np.asarray(mask)
        self.crop_size = int(mask.shape[0])
        M = np.asarray(M_c2o, dtype=np.float64)
        self.M_c2o = M
        M = M[None] if M.ndim == 2 else M
        if bg.shape[0] not in (1, M.shape[0]) and M.shape[0] != 1:
            raise ValueError(f"{M.shape[0]} crop transforms for {bg.shape[0]} backgrounds")
        active = np.ones(M.shape[0], bool) if active is None else np.asarray(active, bool)
        mask_ori = np.stack([mask_to_original(mask, m, (width, height)) * float(on)
                             for m, on in zip(M, active)])
        if mask_ori.ndim == 3:
            mask_ori = mask_ori[..., None]                                   # [n, H, W, C]
        self.background = _pad_even(to_float01(bg.to(device), dtype))
        self.background_u8 = to_uint8(self.background)
        self.height, self.width = int(self.background.shape[1]), int(self.background.shape[2])

        # Region of interest: the bounding box of the non-zero masks.
        ys, xs = np.nonzero(mask_ori.max(axis=(0, 3)) > 0)
        if ys.size == 0:  # the crops lie outside the image: frames leave it unchanged
            self.roi = (0, 0, 0, 0)
        else:
            self.roi = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
        y0, y1, x0, x1 = self.roi
        mask_t = torch.from_numpy(np.ascontiguousarray(mask_ori[:, y0:y1, x0:x1]))
        self.mask = mask_t.to(device=device, dtype=dtype).permute(0, 3, 1, 2).contiguous()  # [n, C, h, w]
        self.background_roi = self.background[:, y0:y1, x0:x1].permute(0, 3, 1, 2).contiguous()
        self.grid = torch.cat([self._grid(m, device, dtype) for m in M])        # [n, h, w, 2]

    def _grid(self, M_c2o: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Normalised crop coordinates of every ROI pixel (align_corners=False): [1, h, w, 2]."""
        y0, y1, x0, x1 = self.roi
        M = np.linalg.inv(M_c2o)                               # original -> crop
        ys = torch.arange(y0, y1, device=device, dtype=torch.float32)
        xs = torch.arange(x0, x1, device=device, dtype=torch.float32)
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        u = M[0, 0] * xx + M[0, 1] * yy + M[0, 2]
        v = M[1, 0] * xx + M[1, 1] * yy + M[1, 2]
        size = float(self.crop_size)
        grid = torch.stack([(2 * u + 1) / size - 1, (2 * v + 1) / size - 1], dim=-1)
        return grid[None].to(dtype)

    @property
    def device(self) -> torch.device:
        return self.background.device

    def __call__(self, frames: torch.Tensor, as_uint8: bool = False) -> torch.Tensor:
        """frames: [B, 3, S, S] float 0..1 -> [B, H, W, 3] (H, W even).

        Float 0..1 in the construction dtype by default; ``as_uint8=True``
        returns uint8 directly (only the face region is blended in float, the
        rest is a byte copy of the background: 4x less memory and traffic for
        video encoding). Frames are expected on the construction device; with
        per-frame transforms or backgrounds B must be their batch.
        """
        if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[2:] != (self.crop_size,) * 2:
            raise ValueError(f"frames must be [B, 3, {self.crop_size}, {self.crop_size}], "
                             f"got {list(frames.shape)}")
        base = self.background_u8 if as_uint8 else self.background
        out = base.expand(frames.shape[0], -1, -1, -1).clone()
        return self._blend(frames, out, self.background_roi, as_uint8)

    def onto(self, frames: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """frames: [B, 3, S, S] float 0..1 pasted into ``previous`` [B, H, W, 3] (float 0..1 in
        the construction dtype, even size: another face's paste of the same source) instead
        of the background -> [B, H, W, 3]. Pixels where this mask is 0 are ``previous``'s."""
        if previous.shape[1:] != self.background.shape[1:] or previous.shape[0] != frames.shape[0]:
            raise ValueError(f"previous frames must be [{frames.shape[0]}, "
                             f"{', '.join(map(str, self.background.shape[1:]))}], "
                             f"got {list(previous.shape)}")
        y0, y1, x0, x1 = self.roi
        roi = previous[:, y0:y1, x0:x1].permute(0, 3, 1, 2)
        return self._blend(frames, previous.clone(), roi, False)

    def _blend(self, frames: torch.Tensor, out: torch.Tensor, under: torch.Tensor,
               as_uint8: bool) -> torch.Tensor:
        """``frames`` warped into the ROI of ``out`` [B, H, W, 3] (in place) over ``under``
        ([1 or B, 3, h, w], the pixels beneath the ROI) through the mask."""
        batch = frames.shape[0]
        y0, y1, x0, x1 = self.roi
        if y1 > y0:
            grid = self.grid.expand(batch, -1, -1, -1)
            warped = F.grid_sample(frames.to(self.grid.dtype), grid, mode="bilinear",
                                   padding_mode="zeros", align_corners=False)       # [B, 3, h, w]
            blended = torch.lerp(under, warped, self.mask)
            if as_uint8:
                blended = blended.mul_(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
            out[:, y0:y1, x0:x1] = blended.permute(0, 2, 3, 1)
        return out

    @classmethod
    def for_render(cls, M_c2o, background, size: int, device: torch.device | str,
                   dtype: torch.dtype, active: np.ndarray | None = None) -> "PasteBack":
        """Paste-back of rendered ``size`` x ``size`` crops covering the official 512 crop.

        G renders 512 px with the official networks; a smaller configuration
        renders the same crop area at a lower resolution, mapped through the
        same M_c2o ([3, 3] or [B, 3, 3]) (pixel centres:
        ``x_512 = (x + 0.5) * k - 0.5``, k = 512 / size).
        """
        k = config.CROP_DSIZE / size
        to_512 = np.array([[k, 0.0, (k - 1) / 2], [0.0, k, (k - 1) / 2], [0.0, 0.0, 1.0]])
        mask = feathered_mask(size, max(1, round(FEATHER_PX / k)))
        return cls(np.asarray(M_c2o) @ to_512, background, mask=mask, device=device, dtype=dtype,
                   active=active)


def paste_back(frames: torch.Tensor, M_c2o, background, mask: np.ndarray | None = None) -> torch.Tensor:
    """One-shot :class:`PasteBack`: frames [B, 3, S, S] float 0..1 -> [B, H, W, 3] float 0..1.

    Runs on the frames' device in their dtype. For a video, build one
    :class:`PasteBack` and reuse it for every chunk.
    """
    return PasteBack(M_c2o, background, mask, device=frames.device, dtype=frames.dtype)(frames)
