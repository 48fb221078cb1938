"""ConvNeXt-V2 backbone with LivePortrait's keypoint / pose / expression heads.

This is the ``detector`` inside LivePortrait's motion extractor M. Reads top to
bottom: channels-first LayerNorm, GRN, block, then the network. Attribute names
reproduce the official checkpoint keys (``downsample_layers.i.j``,
``stages.i.j.{dwconv,norm,pwconv1,grn,pwconv2}``, ``norm``, ``fc_*``).
Stochastic depth is a training-only identity and is omitted.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6
NUM_POSE_BINS = 66


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of ``[B, C, H, W]`` (biased variance, eps 1e-6)."""

    def __init__(self, channels: int, eps: float = LN_EPS) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class GRN(nn.Module):
    """Global Response Normalization on channels-last ``[B, H, W, C]``.

    ``x + beta + gamma * x * N(x)``, ``N = ||x||_HW / (mean_C ||x||_HW + 1e-6)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, channels))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, ord=2, dim=(1, 2), keepdim=True)
        response = norm / (norm.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * response) + self.beta + x


class Block(nn.Module):
    """Residual block: depthwise 7x7 -> LN -> 4x MLP with GELU and GRN. ``[B, C, H, W]`` in and out."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.grn(F.gelu(self.pwconv1(self.norm(y)))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtV2(nn.Module):
    """ConvNeXt-V2 trunk plus LivePortrait heads.

    forward(x ``[B, in_chans, H, W]``) -> dict of head outputs, each ``[B, n]``:
    ``pitch``/``yaw``/``roll`` (``num_bins`` logits), ``t`` (3), ``exp`` (3*num_kp),
    ``scale`` (1), ``kp`` (3*num_kp, canonical keypoints).
    """

    def __init__(self, depths: Sequence[int], dims: Sequence[int], num_kp: int,
                 in_chans: int = 3, num_bins: int = NUM_POSE_BINS) -> None:
        super().__init__()
        stem = nn.Sequential(nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4),
                             LayerNorm2d(dims[0]))
        downsamples = [nn.Sequential(LayerNorm2d(dims[i]),
                                     nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2))
                       for i in range(len(dims) - 1)]
        self.downsample_layers = nn.ModuleList([stem, *downsamples])
        self.stages = nn.ModuleList(nn.Sequential(*[Block(dim) for _ in range(depth)])
                                    for depth, dim in zip(depths, dims))
        self.norm = nn.LayerNorm(dims[-1], eps=LN_EPS)
        width = dims[-1]
        # Creation order fixes the state-dict order of the official checkpoint.
        self.fc_kp = nn.Linear(width, 3 * num_kp)
        self.fc_scale = nn.Linear(width, 1)
        self.fc_pitch = nn.Linear(width, num_bins)
        self.fc_yaw = nn.Linear(width, num_bins)
        self.fc_roll = nn.Linear(width, num_bins)
        self.fc_t = nn.Linear(width, 3)
        self.fc_exp = nn.Linear(width, 3 * num_kp)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_chans, H, W]`` -> pooled, normalised features ``[B, dims[-1]]``."""
        for downsample, stage in zip(self.downsample_layers, self.stages):
            x = stage(downsample(x))
        return self.norm(x.mean(dim=(-2, -1)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feat = self.forward_features(x)
        return {
            "pitch": self.fc_pitch(feat), "yaw": self.fc_yaw(feat), "roll": self.fc_roll(feat),
            "t": self.fc_t(feat), "exp": self.fc_exp(feat), "scale": self.fc_scale(feat),
            "kp": self.fc_kp(feat),
        }


#: Backbone sizes by name (``models.yaml`` ``backbone``).
BACKBONES: dict[str, dict[str, tuple[int, ...]]] = {
    "convnextv2_tiny": dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)),
}


def build_convnextv2(name: str, num_kp: int, **kwargs) -> ConvNeXtV2:
    """A named ConvNeXt-V2 (see :data:`BACKBONES`) with ``num_kp`` keypoint heads."""
    if name not in BACKBONES:
        raise ValueError(f"unknown motion-extractor backbone {name!r}; "
                         f"known: {sorted(BACKBONES)} (joyvasa_core/models/convnextv2.py)")
    return ConvNeXtV2(num_kp=num_kp, **BACKBONES[name], **kwargs)
