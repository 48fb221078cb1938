"""LivePortrait warping module W: warps F's feature volume from source to driving keypoints.

Coordinates are normalised to [-1, 1] in (x, y, z) order (x right, y down, z
inward), the convention of ``grid_sample(align_corners=False)``. Keypoints are
[B, num_kp, 3] in the same units.

Precision: coordinate grids, Gaussian heatmaps, every ``grid_sample``, the
mask softmax and the deformation field are computed in float32 whatever the
module dtype (float64 in a float64 module, the tests' reference); convolutions
run in the module dtype (fp32/fp16/bf16).

Batching: a feature volume with batch 1 is shared by a batch of B keypoint
sets without being copied B times (the B·K sampling grids are stacked along
the output depth of one ``grid_sample`` call).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..devices import at_least_float32
from .blocks import Hourglass, SameBlock2d

#: Variance of the keypoint Gaussians in normalised units (official value).
KP_VARIANCE = 0.01


def coordinate_grid(depth: int, height: int, width: int, device: torch.device | str,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Voxel-corner grid in [-1, 1]: [D, H, W, 3] with (x, y, z) in the last axis."""
    axes = [2 * (torch.arange(n, dtype=dtype, device=device) / (n - 1)) - 1
            for n in (depth, height, width)]
    z, y, x = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([x, y, z], dim=-1)


def sample_volume(volume: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Trilinear sampling of ``volume`` at ``grid`` (zeros outside, align_corners=False).

    volume: [Bv, C, D, H, W] with Bv == 1 (shared) or Bv == B.
    grid:   [B, N, Do, Ho, Wo, 3] normalised (x, y, z).
    returns [B, N, C, Do, Ho, Wo] in the volume's dtype (sampled in float32).
    """
    b, n, do, ho, wo, _ = grid.shape
    c = volume.shape[1]
    vol32, grid32 = at_least_float32(volume), at_least_float32(grid)
    if volume.shape[0] == 1:
        out = F.grid_sample(vol32, grid32.reshape(1, b * n * do, ho, wo, 3),
                            mode="bilinear", padding_mode="zeros", align_corners=False)
        out = out.reshape(c, b, n, do, ho, wo).permute(1, 2, 0, 3, 4, 5)
    elif volume.shape[0] == b:
        out = F.grid_sample(vol32, grid32.reshape(b, n * do, ho, wo, 3),
                            mode="bilinear", padding_mode="zeros", align_corners=False)
        out = out.reshape(b, c, n, do, ho, wo).transpose(1, 2)
    else:
        raise ValueError(f"volume batch {volume.shape[0]} must be 1 or the keypoint batch {b}")
    return out.to(volume.dtype)


def keypoint_gaussians(kp: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """exp(-|grid - kp|² / (2·KP_VARIANCE)): kp [B, K, 3], grid [D, H, W, 3] -> [B, K, D, H, W] float32."""
    diff = grid - at_least_float32(kp)[:, :, None, None, None, :]
    return torch.exp(-0.5 * diff.pow(2).sum(-1) / KP_VARIANCE)


class DenseMotionNetwork(nn.Module):
    """Predicts the dense deformation and occlusion from keypoints (zeroth-order motion).

    Per keypoint k the sparse motion is ``grid − kp_d[k] + kp_s[k]``, plus the
    identity as background (index 0). The compressed feature (conv 1×1 →
    BatchNorm3d → ReLU) is sampled along each of the K+1 motions and stacked
    with the heatmaps gauss(kp_d) − gauss(kp_s) (zeros for the background);
    an hourglass predicts softmax weights over the K+1 motions, and, from its
    output reshaped to [B, C·D, H, W], the occlusion map.
    """

    def __init__(self, block_expansion: int, num_blocks: int, max_features: int, num_kp: int,
                 feature_channel: int, reshape_depth: int, compress: int,
                 estimate_occlusion_map: bool = True):
        super().__init__()
        self.num_kp = num_kp
        self.hourglass = Hourglass(block_expansion, (num_kp + 1) * (compress + 1),
                                   num_blocks, max_features)
        self.mask = nn.Conv3d(self.hourglass.out_filters, num_kp + 1, kernel_size=7, padding=3)
        self.compress = nn.Conv3d(feature_channel, compress, kernel_size=1)
        self.norm = nn.BatchNorm3d(compress)
        self.occlusion = (nn.Conv2d(self.hourglass.out_filters * reshape_depth, 1, 7, padding=3)
                          if estimate_occlusion_map else None)

    def sparse_motions(self, grid: torch.Tensor, kp_driving: torch.Tensor,
                       kp_source: torch.Tensor) -> torch.Tensor:
        """grid [D,H,W,3]; kp_driving [B,K,3]; kp_source [B or 1,K,3] -> [B, K+1, D, H, W, 3] float32."""
        b = kp_driving.shape[0]
        ident = grid[None, None]
        per_kp = (ident - at_least_float32(kp_driving)[:, :, None, None, None, :]) \
            + at_least_float32(kp_source)[:, :, None, None, None, :]
        return torch.cat([ident.expand(b, 1, *grid.shape), per_kp], dim=1)

    def forward(self, feature: torch.Tensor, kp_driving: torch.Tensor,
                kp_source: torch.Tensor) -> dict[str, torch.Tensor]:
        """feature [1 or B, C, D, H, W]; kp_driving [B, K, 3]; kp_source [1 or B, K, 3] ->
        ``deformation`` [B, D, H, W, 3] float32, ``mask`` [B, K+1, D, H, W] float32,
        ``occlusion_map`` [B, 1, H, W] (module dtype, if estimated)."""
        compressed = F.relu(self.norm(self.compress(feature)))
        _, _, d, h, w = compressed.shape
        b = kp_driving.shape[0]
        grid = coordinate_grid(d, h, w, feature.device, at_least_float32(compressed).dtype)

        motions = self.sparse_motions(grid, kp_driving, kp_source)
        deformed = sample_volume(compressed, motions)                      # [B, K+1, c, D, H, W]
        heat = keypoint_gaussians(kp_driving, grid) - keypoint_gaussians(kp_source, grid)
        heat = F.pad(heat, (0, 0, 0, 0, 0, 0, 1, 0)).to(deformed.dtype)  # background: zeros
        hourglass_in = torch.cat([heat.unsqueeze(2), deformed], dim=2).reshape(b, -1, d, h, w)
        prediction = self.hourglass(hourglass_in)

        mask = F.softmax(at_least_float32(self.mask(prediction)), dim=1)            # [B, K+1, D, H, W]
        out = {"mask": mask, "deformation": (motions * mask.unsqueeze(-1)).sum(dim=1)}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction.reshape(b, -1, h, w)))
        return out


class WarpingNetwork(nn.Module):
    """W. Build with ``WarpingNetwork(**config.WARPING_MODULE)``.

    Warps the feature volume with the dense motion, flattens depth into
    channels ([B, C·D, H, W], C·D must equal ``max_features``), SameBlock2d
    (LeakyReLU) → 1×1 conv, and multiplies by the occlusion map.
    """

    def __init__(self, num_kp: int, block_expansion: int, max_features: int, num_down_blocks: int,
                 reshape_channel: int, dense_motion_params: dict[str, Any],
                 estimate_occlusion_map: bool = False, flag_use_occlusion_map: bool = True):
        super().__init__()
        self.dense_motion_network = DenseMotionNetwork(
            num_kp=num_kp, feature_channel=reshape_channel,
            estimate_occlusion_map=estimate_occlusion_map, **dense_motion_params)
        width = block_expansion * 2 ** num_down_blocks
        self.third = SameBlock2d(max_features, width, lrelu=True)
        self.fourth = nn.Conv2d(width, width, kernel_size=1)
        self.use_occlusion = estimate_occlusion_map and flag_use_occlusion_map

    def forward(self, feature_3d: torch.Tensor, kp_driving: torch.Tensor,
                kp_source: torch.Tensor) -> dict[str, torch.Tensor]:
        """Official argument order: driving keypoints before source keypoints.

        feature_3d: [1 or B, 32, 16, 64, 64] (module dtype); kp_driving: [B, 21, 3];
        kp_source: [1 or B, 21, 3] ->
        ``out`` [B, 256, 64, 64] (module dtype, occlusion applied),
        ``occlusion_map`` [B, 1, 64, 64] (module dtype; absent without occlusion estimation),
        ``deformation`` [B, 16, 64, 64, 3] float32.
        """
        dense = self.dense_motion_network(feature_3d, kp_driving, kp_source)
        deformation = dense["deformation"]
        warped = sample_volume(feature_3d, deformation.unsqueeze(1)).squeeze(1)  # [B, C, D, H, W]
        b, c, d, h, w = warped.shape
        out = self.fourth(self.third(warped.reshape(b, c * d, h, w)))
        result = {"deformation": deformation}
        if "occlusion_map" in dense:
            result["occlusion_map"] = dense["occlusion_map"]
            if self.use_occlusion:
                out = out * dense["occlusion_map"]
        result["out"] = out
        return result
