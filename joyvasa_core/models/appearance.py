"""LivePortrait appearance feature extractor F: source image -> 3-D feature volume."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import DownBlock2d, ResBlock3d, SameBlock2d


class AppearanceFeatureExtractor(nn.Module):
    """F. Build with ``AppearanceFeatureExtractor(**config.APPEARANCE_FEATURE_EXTRACTOR)``.

    2-D encoder (SameBlock2d, ``num_down_blocks`` DownBlock2d, 1×1 conv to
    ``max_features``), reshaped to a volume of ``reshape_channel`` channels ×
    ``reshape_depth`` slices (``max_features == reshape_channel * reshape_depth``),
    refined by ``num_resblocks`` ResBlock3d.
    """

    def __init__(self, image_channel: int, block_expansion: int, num_down_blocks: int,
                 max_features: int, reshape_channel: int, reshape_depth: int, num_resblocks: int):
        super().__init__()
        if reshape_channel * reshape_depth != max_features:
            raise ValueError(f"reshape_channel*reshape_depth ({reshape_channel}*{reshape_depth}) "
                             f"must equal max_features ({max_features})")
        self.reshape_channel = reshape_channel
        self.reshape_depth = reshape_depth
        self.first = SameBlock2d(image_channel, block_expansion)
        widths = [min(max_features, block_expansion * 2 ** i) for i in range(num_down_blocks + 1)]
        self.down_blocks = nn.ModuleList(DownBlock2d(a, b) for a, b in zip(widths, widths[1:]))
        self.second = nn.Conv2d(widths[-1], max_features, kernel_size=1)
        self.resblocks_3d = nn.Sequential()
        for i in range(num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(reshape_channel))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image: [B, 3, 256, 256] RGB in 0..1 (module dtype)
        -> feature_3d: [B, reshape_channel=32, reshape_depth=16, 64, 64]."""
        out = self.first(image)
        for block in self.down_blocks:
            out = block(out)
        out = self.second(out)
        b, _, h, w = out.shape
        return self.resblocks_3d(out.view(b, self.reshape_channel, self.reshape_depth, h, w))
