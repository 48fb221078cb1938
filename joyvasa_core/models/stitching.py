"""LivePortrait stitching (S) and lip / eye retargeting (R) MLPs.

All three are the same MLP shape: ``Linear -> ReLU`` per hidden size, then a
final ``Linear``; keys ``mlp.{0,2,4,…}.weight/bias``. In the official file
``stitching_retargeting_module.pth`` they sit under ``retarget_shoulder``,
``retarget_mouth`` and ``retarget_eye`` with a ``module.`` prefix
(``config.STITCHING_FILE_PARTS`` maps those names to ours).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..config import STITCHING_RETARGETING


class StitchingRetargetingNetwork(nn.Module):
    """MLP ``[B, input_size]`` -> ``[B, output_size]`` with ReLU between layers."""

    def __init__(self, input_size: int, hidden_sizes: Sequence[int], output_size: int) -> None:
        super().__init__()
        widths = [input_size, *hidden_sizes]
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(w_in, w_out), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], output_size))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


def build_stitching_retargeting(
        config: Mapping[str, Mapping[str, Any]] = STITCHING_RETARGETING) -> nn.ModuleDict:
    """``ModuleDict`` with parts ``stitching`` (126 -> 65), ``lip`` (65 -> 63), ``eye`` (66 -> 63)."""
    return nn.ModuleDict({name: StitchingRetargetingNetwork(**cfg) for name, cfg in config.items()})
