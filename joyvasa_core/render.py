"""Batched rendering: warp the source feature volume to each driving keypoint set, decode with G.

Precision follows the modules: convert W and G with ``.to(dtype)`` (fp32, fp16
or bf16) and the feature volume is cast to W's dtype here. Keypoints stay
float32; W computes its sampling grids, heatmaps, ``grid_sample`` and softmax
in float32 internally, and G its instance norms. Frames come out in G's dtype.
Memory is bounded by ``batch_size`` frames in flight.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch

from .models.spade import SPADEDecoder
from .models.warping import WarpingNetwork


def _param_dtype(module: torch.nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


@torch.inference_mode()
def _render_chunk(warping: WarpingNetwork, spade: SPADEDecoder, feature_3d: torch.Tensor,
                  kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
    warped = warping(feature_3d, kp_driving=kp_driving, kp_source=kp_source)["out"]
    return spade(warped.to(_param_dtype(spade)))


def _rows(t: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Rows start:stop of a per-frame tensor; a batch-1 tensor is shared by every frame."""
    return t if t.shape[0] == 1 else t[start:stop]


def iter_render(warping: WarpingNetwork, spade: SPADEDecoder, feature_3d: torch.Tensor,
                kp_source: torch.Tensor, kp_driving: torch.Tensor,
                batch_size: int) -> Iterator[torch.Tensor]:
    """Render frames chunk by chunk.

    feature_3d: [1 or B, 32, 16, 64, 64] source appearance volume (F output);
    kp_source: [1 or B, 21, 3] source keypoints x_s; kp_driving: [B, 21, 3]
    driving keypoints x_d (normalised units). Yields images [b, 3, 512, 512]
    in (0, 1), b <= batch_size, in frame order, on the modules' device.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    frames = kp_driving.shape[0]
    for name, t in (("feature_3d", feature_3d), ("kp_source", kp_source)):
        if t.shape[0] not in (1, frames):
            raise ValueError(f"{name} batch {t.shape[0]} must be 1 or match kp_driving's {frames}")
    param = next(warping.parameters())
    feature_3d = feature_3d.to(param.device, param.dtype)
    kp_source = kp_source.to(param.device, torch.float32)
    kp_driving = kp_driving.to(param.device, torch.float32)
    for start in range(0, frames, batch_size):
        stop = min(start + batch_size, frames)
        yield _render_chunk(warping, spade, _rows(feature_3d, start, stop),
                            _rows(kp_source, start, stop), kp_driving[start:stop])


def render(warping: WarpingNetwork, spade: SPADEDecoder, feature_3d: torch.Tensor,
           kp_source: torch.Tensor, kp_driving: torch.Tensor, batch_size: int) -> torch.Tensor:
    """All frames at once: [B, 3, 512, 512] in (0, 1); see :func:`iter_render`."""
    return torch.cat(list(iter_render(warping, spade, feature_3d, kp_source, kp_driving,
                                      batch_size)), dim=0)
