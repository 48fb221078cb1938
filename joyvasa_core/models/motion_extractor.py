"""LivePortrait motion extractor M: image -> canonical keypoints, head pose, expression."""
from __future__ import annotations

import torch
from torch import nn

from .convnextv2 import build_convnextv2


class MotionExtractor(nn.Module):
    """M. State-dict keys are ``detector.…`` exactly as in ``motion_extractor.pth``.

    forward(image ``[B, 3, 256, 256]`` float in [0, 1]) -> raw head outputs:
    ``pitch``/``yaw``/``roll`` ``[B, 66]`` bin logits (see
    :func:`joyvasa_core.keypoints.headpose_logits_to_degrees`), ``t`` ``[B, 3]``,
    ``exp`` ``[B, 3*num_kp]``, ``scale`` ``[B, 1]``, ``kp`` ``[B, 3*num_kp]``.
    :meth:`joyvasa_core.keypoints.KeypointInfo.from_raw` turns them into units.
    """

    def __init__(self, num_kp: int = 21, backbone: str = "convnextv2_tiny") -> None:
        super().__init__()
        self.num_kp = num_kp
        self.detector = build_convnextv2(backbone, num_kp=num_kp)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.detector(image)
