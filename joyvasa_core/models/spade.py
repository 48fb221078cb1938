"""LivePortrait SPADE generator G: warped feature -> RGB image."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import SPADEResnetBlock, SpectralNormConv2d

NUM_MIDDLE_BLOCKS = 6


class SPADEDecoder(nn.Module):
    """G. Build with ``SPADEDecoder(**config.SPADE_GENERATOR)``.

    ``fc`` (3×3 conv, C -> 2C), six SPADE resblocks at 2C, then two ×2
    nearest upsamplings each followed by a SPADE resblock (2C -> C ->
    ``out_channels``), LeakyReLU(0.2), a 3×3 conv to RGB (to 12 channels +
    PixelShuffle(2) when ``upscale > 1``) and a sigmoid. C =
    ``min(max_features, block_expansion · 2**num_down_blocks)`` (256 official);
    every SPADE is conditioned on the input feature itself. ``spade_hidden``
    is the SPADE MLP width (128 in every official checkpoint; smaller only
    for tests).

    Spectral-norm convs use the stored u, v (torch eval semantics); call
    :meth:`fold_spectral_norm_` after loading weights to precompute them.
    """

    def __init__(self, upscale: int = 1, max_features: int = 256, block_expansion: int = 64,
                 out_channels: int = 64, num_down_blocks: int = 2, spade_hidden: int = 128):
        super().__init__()
        c = min(max_features, block_expansion * 2 ** num_down_blocks)
        self.fc = nn.Conv2d(c, 2 * c, 3, padding=1)
        for i in range(NUM_MIDDLE_BLOCKS):
            setattr(self, f"G_middle_{i}", SPADEResnetBlock(2 * c, 2 * c, c, spade_hidden))
        self.up_0 = SPADEResnetBlock(2 * c, c, c, spade_hidden)
        self.up_1 = SPADEResnetBlock(c, out_channels, c, spade_hidden)
        if upscale is None or upscale <= 1:
            self.conv_img = nn.Conv2d(out_channels, 3, 3, padding=1)
        else:
            self.conv_img = nn.Sequential(nn.Conv2d(out_channels, 3 * 4, 3, padding=1),
                                          nn.PixelShuffle(2))

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        """feature: [B, 256, 64, 64] (warping ``out``, module dtype)
        -> image [B, 3, 512, 512] in (0, 1) (8× the input size with upscale 2, else 4×)."""
        x = self.fc(feature)
        for i in range(NUM_MIDDLE_BLOCKS):
            x = getattr(self, f"G_middle_{i}")(x, feature)
        for block in (self.up_0, self.up_1):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            # resized once here and shared by the block's two or three SPADEs
            x = block(x, F.interpolate(feature, size=x.shape[-2:], mode="nearest"))
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 0.2)))

    @torch.no_grad()
    def fold_spectral_norm_(self) -> "SPADEDecoder":
        """Precompute every spectral-norm weight (call after loading; loading again undoes it)."""
        for module in self.modules():
            if isinstance(module, SpectralNormConv2d):
                module.fold_()
        return self
