"""Convolutional building blocks of LivePortrait's F, W and G.

Attribute names (``conv``, ``norm``, ``weight_orig``, ``mlp_shared.0`` ...) are
the official checkpoint keys, and they are registered in the official order so
``state_dict()`` lists the keys exactly as the ``.pth`` files store them.
Every BatchNorm here is used in eval mode (running statistics).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..devices import at_least_float32


# --------------------------------------------------------------------------- 2-D blocks

class SameBlock2d(nn.Module):
    """conv k×k → BatchNorm2d → ReLU (or LeakyReLU(0.01)); keeps H, W.

    x: [B, in, H, W] -> [B, out, H, W].
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3,
                 padding: int = 1, lrelu: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features)
        self.lrelu = lrelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))
        return F.leaky_relu(x, 0.01) if self.lrelu else F.relu(x)


class DownBlock2d(nn.Module):
    """conv 3×3 → BatchNorm2d → ReLU → 2×2 average pool. x: [B, in, H, W] -> [B, out, H/2, W/2]."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, 3, padding=1)
        self.norm = nn.BatchNorm2d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), 2)


# --------------------------------------------------------------------------- 3-D blocks

class ResBlock3d(nn.Module):
    """Pre-activation residual block: x + conv2(relu(bn2(conv1(relu(bn1(x)))))).

    x: [B, C, D, H, W] -> same shape.
    """

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv3d(features, features, 3, padding=1)
        self.conv2 = nn.Conv3d(features, features, 3, padding=1)
        self.norm1 = nn.BatchNorm3d(features)
        self.norm2 = nn.BatchNorm3d(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(self.norm2(out))) + x


def avg_pool_hw(x: torch.Tensor) -> torch.Tensor:
    """2×2 average pooling of H, W only: [B, C, D, H, W] -> [B, C, D, H/2, W/2].

    Done as a 2-D pool over planes (same values as ``avg_pool3d`` with kernel
    (1, 2, 2); CPU avg_pool3d has no bfloat16 kernel). The planes are views in
    either memory layout: C·D planes of a contiguous volume, or B·D
    channels-last images of a ``channels_last_3d`` volume, which stays
    channels_last_3d.
    """
    b, c, d, h, w = x.shape
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d):
        planes = x.transpose(1, 2).reshape(b * d, c, h, w)            # channels_last view
        return F.avg_pool2d(planes, 2).view(b, d, c, h // 2, w // 2).transpose(1, 2)
    return F.avg_pool2d(x.reshape(b, c * d, h, w), 2).view(b, c, d, h // 2, w // 2)


class DownBlock3d(nn.Module):
    """conv 3³ → BatchNorm3d → ReLU → average pool over (1, 2, 2).

    x: [B, in, D, H, W] -> [B, out, D, H/2, W/2].
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.conv = nn.Conv3d(in_features, out_features, 3, padding=1)
        self.norm = nn.BatchNorm3d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return avg_pool_hw(F.relu(self.norm(self.conv(x))))


class UpBlock3d(nn.Module):
    """Nearest ×2 upsampling of H, W → conv 3³ → BatchNorm3d → ReLU.

    x: [B, in, D, H, W] -> [B, out, D, 2H, 2W].
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.conv = nn.Conv3d(in_features, out_features, 3, padding=1)
        self.norm = nn.BatchNorm3d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        return F.relu(self.norm(self.conv(x)))


def _hourglass_width(block_expansion: int, max_features: int, level: int) -> int:
    """Channels of the hourglass at depth ``level`` (0 = full resolution)."""
    return min(max_features, block_expansion * 2 ** level)


class HourglassEncoder(nn.Module):
    """``num_blocks`` DownBlock3d; returns the input and every block's output (skips)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock3d(in_features if i == 0 else _hourglass_width(block_expansion, max_features, i),
                        _hourglass_width(block_expansion, max_features, i + 1))
            for i in range(num_blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class HourglassDecoder(nn.Module):
    """UpBlock3d per level, each concatenated with its skip, then conv 3³ → BN → ReLU.

    Output channels ``out_filters = block_expansion + in_features``.
    """

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            width = _hourglass_width(block_expansion, max_features, i + 1)
            blocks.append(UpBlock3d(width if i == num_blocks - 1 else 2 * width,
                                    _hourglass_width(block_expansion, max_features, i)))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features
        self.conv = nn.Conv3d(self.out_filters, self.out_filters, 3, padding=1)
        self.norm = nn.BatchNorm3d(self.out_filters)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        out = skips[-1]
        for block, skip in zip(self.up_blocks, reversed(skips[:-1])):
            out = torch.cat([block(out), skip], dim=1)
        return F.relu(self.norm(self.conv(out)))


class Hourglass(nn.Module):
    """3-D U-Net. x: [B, in_features, D, H, W] (H, W divisible by 2**num_blocks)
    -> [B, block_expansion + in_features, D, H, W]."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        self.encoder = HourglassEncoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = HourglassDecoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


# --------------------------------------------------------------------------- SPADE

class SpectralNormConv2d(nn.Module):
    """Conv2d with torch's eval-mode spectral normalisation, from the stored vectors.

    The weight is ``weight_orig / sigma`` with ``sigma = u · (W_mat v)``, ``W_mat =
    weight_orig`` reshaped to [out, in·kh·kw], ``u = weight_u`` [out], ``v =
    weight_v`` [in·kh·kw] exactly as loaded (no power iteration, as
    ``torch.nn.utils.spectral_norm`` does in eval mode). Training is not supported.

    :meth:`fold_` precomputes that weight once (after loading) so the forward
    pass is a plain convolution; loading a state dict drops the folded copy.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 padding: int = 0, bias: bool = True):
        super().__init__()
        self.padding = padding
        # Registration order = official key order: bias, weight_orig, weight_u, weight_v.
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_channels))
        else:
            self.register_parameter("bias", None)
        weight = torch.empty(out_channels, in_channels, kernel_size, kernel_size)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        self.weight_orig = nn.Parameter(weight)
        self.register_buffer("weight_u", F.normalize(torch.randn(out_channels), dim=0))
        self.register_buffer("weight_v", F.normalize(torch.randn(weight[0].numel()), dim=0))
        self.register_buffer("weight_folded", None, persistent=False)
        self._register_load_state_dict_pre_hook(self._drop_folded)

    def _drop_folded(self, *args: Any, **kwargs: Any) -> None:
        self.weight_folded = None

    def spectral_weight(self) -> torch.Tensor:
        """``weight_orig / (u · W_mat v)``: [out, in, k, k] in the parameter dtype.

        sigma is computed in float32 at least (a half-precision dot product over
        4608 terms would lose digits).
        """
        work = torch.promote_types(self.weight_orig.dtype, torch.float32)
        w = self.weight_orig.to(work)
        sigma = torch.dot(self.weight_u.to(work), torch.mv(w.flatten(1), self.weight_v.to(work)))
        return (w / sigma).to(self.weight_orig.dtype)

    @torch.no_grad()
    def fold_(self) -> "SpectralNormConv2d":
        """Cache :meth:`spectral_weight` so forward skips recomputing it; returns self."""
        self.weight_folded = self.spectral_weight().detach()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_folded if self.weight_folded is not None else self.spectral_weight()
        return F.conv2d(x, weight, self.bias, padding=self.padding)


class SPADE(nn.Module):
    """Spatially-adaptive norm: instance_norm(x)·(1 + gamma(seg)) + beta(seg).

    x: [B, norm_nc, H, W]; seg: [B or 1, label_nc, h, w], resized to (H, W) with
    nearest interpolation when it differs. The parameter-free instance norm
    (eps 1e-5) is computed in float32 (at least) for half-precision inputs.
    """

    def __init__(self, norm_nc: int, label_nc: int, hidden: int = 128):
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, norm_nc, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, norm_nc, 3, padding=1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        normalized = F.instance_norm(at_least_float32(x), eps=1e-5).to(x.dtype)
        if seg.shape[-2:] != x.shape[-2:]:
            seg = F.interpolate(seg, size=x.shape[-2:], mode="nearest")
        actv = self.mlp_shared(seg)
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """SPADE residual block with spectral-norm convs (official ``spadespectralinstance``).

    x: [B, fin, H, W], seg: [B, label_nc, h, w] -> [B, fout, H, W]. A learned
    1×1 shortcut (``conv_s``, no bias, with ``norm_s``) exists when fin != fout.
    """

    def __init__(self, fin: int, fout: int, label_nc: int, hidden: int = 128):
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        self.conv_0 = SpectralNormConv2d(fin, fmiddle, 3, padding=1)
        self.conv_1 = SpectralNormConv2d(fmiddle, fout, 3, padding=1)
        if self.learned_shortcut:
            self.conv_s = SpectralNormConv2d(fin, fout, 1, bias=False)
        self.norm_0 = SPADE(fin, label_nc, hidden)
        self.norm_1 = SPADE(fmiddle, label_nc, hidden)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, label_nc, hidden)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return shortcut + dx
