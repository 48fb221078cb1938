"""Parity handlers: motion extractor M, stitching/retargeting S, driving keypoints.

Fixtures ``motion_extractor``, ``stitching_retargeting`` and ``pipeline_motion``
(see ``tests/data/REFERENCE.md`` section 4). Models are built from the
sidecar's config and filled with the jvfill rule; every input comes from the
fixture file.
"""
from __future__ import annotations

import torch

from .. import keypoints as kpm
from ..config import MOTION_EXTRACTOR, STITCHING_RETARGETING
from ..fill import fill_module_
from ..models.motion_extractor import MotionExtractor
from ..models.stitching import build_stitching_retargeting
from .fixture import Fixture
from .registry import handler


def stored_stitching_key(key: str) -> str:
    """Module key of a stitching part (``mlp.0.weight``) -> key as stored in the file."""
    return "module." + key


def filled_motion_extractor(config: dict, device: torch.device) -> MotionExtractor:
    return fill_module_(MotionExtractor(**config)).eval().to(device)


def filled_stitching(config: dict, device: torch.device) -> torch.nn.ModuleDict:
    parts = build_stitching_retargeting(config)
    for part in parts.values():
        fill_module_(part, stored_key=stored_stitching_key)
    return parts.eval().to(device)


def info_outputs(info: kpm.KeypointInfo, prefix: str = "info.") -> dict[str, torch.Tensor]:
    """KeypointInfo as the official dict (angles ``[B, 1]``)."""
    out = {f"{prefix}{k}": getattr(info, k)[:, None] for k in ("pitch", "yaw", "roll")}
    out.update({f"{prefix}{k}": getattr(info, k) for k in ("t", "exp", "scale", "kp")})
    return out


@handler("motion_extractor")
def run_motion_extractor(fx: Fixture, device: torch.device) -> dict[str, torch.Tensor]:
    model = filled_motion_extractor(fx.config or MOTION_EXTRACTOR, device)
    raw = model(fx.tensor("image").to(device))
    info = kpm.KeypointInfo.from_raw(raw)
    out = {f"raw.{k}": v for k, v in raw.items()}
    out.update(info_outputs(info))
    out["R"] = info.rotation()
    out["x_s"] = info.transform()
    angles = fx.tensor("angles_deg").to(device)
    out["R_angles"] = kpm.rotation_matrix(*angles.unbind(-1))
    out["headpose_degrees"] = kpm.headpose_logits_to_degrees(fx.tensor("headpose_logits").to(device))
    return out


@handler("stitching_retargeting")
def run_stitching_retargeting(fx: Fixture, device: torch.device) -> dict[str, torch.Tensor]:
    parts = filled_stitching(fx.config or STITCHING_RETARGETING, device)
    x_s = fx.tensor("kp_source").to(device)
    x_d = fx.tensor("kp_driving").to(device)
    out = {
        "stitch_delta": kpm.stitching_delta(parts["stitching"], x_s, x_d),
        "stitching": kpm.apply_stitching(parts["stitching"], x_s, x_d),
        "retarget_lip": kpm.lip_retarget_delta(parts["lip"], x_s, fx.tensor("lip_ratio").to(device)),
        "retarget_eye": kpm.eye_retarget_delta(parts["eye"], x_s, fx.tensor("eye_ratio").to(device)),
    }
    for name, part in parts.items():
        out[f"mlp_{name}.out"] = part(fx.tensor(f"mlp_{name}.in").to(device))
    return out
