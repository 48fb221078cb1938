"""Parity handlers: motion extractor M, stitching/retargeting S, driving keypoints.

Fixtures ``motion_extractor``, ``stitching_retargeting`` and ``pipeline_motion``
(see ``tests/data/REFERENCE.md`` section 4). Models are built from the
sidecar's config and filled with the jvfill rule; every input comes from the
fixture file.
"""
from __future__ import annotations

import re

import torch

from .. import config
from .. import keypoints as kpm
from ..audio import plan_windows
from ..config import MOTION_EXTRACTOR, STITCHING_RETARGETING
from ..driving import DrivingSettings, compose_driving_keypoints
from ..fill import fill_module_
from ..models.appearance import AppearanceFeatureExtractor
from ..models.motion_extractor import MotionExtractor
from ..models.spade import SPADEDecoder
from ..models.stitching import build_stitching_retargeting
from ..models.warping import WarpingNetwork
from ..motion import MotionSequence, MotionTemplate, decode_motion, smooth_pose
from ..render import render
from .fixture import Fixture
from .registry import handler


def stored_stitching_key(key: str) -> str:
    """Module key of a stitching part (``mlp.0.weight``) -> key as stored in the file."""
    return "module." + key


def filled_motion_extractor(sizes: dict, device: torch.device) -> MotionExtractor:
    """M built from ``sizes`` (models.yaml params), jvfill weights, eval mode."""
    return fill_module_(MotionExtractor(**sizes)).eval().to(device)


def filled_stitching(sizes: dict, device: torch.device) -> torch.nn.ModuleDict:
    """The three S/R parts, each filled with its ``module.``-prefixed stored keys."""
    parts = build_stitching_retargeting(sizes)
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


#: Combination keys of the official pipeline that JoyVASA cannot use (its
#: generated motion has no driving landmarks); they must be off.
_UNSUPPORTED_OFF = ("flag_eye_retargeting", "flag_lip_retargeting")


def combination_settings(name: str, combo: dict) -> DrivingSettings:
    """A sidecar ``combinations`` entry -> :class:`DrivingSettings`."""
    combo = dict(combo)
    for key in _UNSUPPORTED_OFF:
        if combo.pop(key, False):
            raise NotImplementedError(f"combination {name!r} sets {key}: eye/lip retargeting needs "
                                      "driving landmarks, which generated motion does not have")
    return DrivingSettings.from_mapping(combo)


def motion_outputs(seq: MotionSequence, prefix: str) -> dict[str, torch.Tensor]:
    """A sequence as the official per-frame dicts stacked (angles ``[T, 1]``)."""
    out = {f"{prefix}{k}": getattr(seq, k) for k in ("exp", "scale", "t")}
    out.update({f"{prefix}{k}": getattr(seq, k)[:, None] for k in ("pitch", "yaw", "roll")})
    out[f"{prefix}R"] = seq.rotation()
    return out


def source_image(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` (already 256x256) -> ``[1, 3, H, W]`` float in [0, 1] (official prepare_source)."""
    return (rgb.permute(2, 0, 1)[None].to(torch.float32) / 255.0).clamp(0.0, 1.0)


def _render_frames(fx: Fixture, image: torch.Tensor, x_s: torch.Tensor,
                   x_d: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """``render.frame<i>`` outputs: F/W/G on the source, keypoints of the combination the doc names."""
    wanted = {}
    for name in fx.names("output"):
        frame = re.fullmatch(r"render\.frame(\d+)", name)
        if frame:
            combo = re.search(r"x_d\.(\w+)\[i\]", fx.specs[name].get("doc", ""))
            if combo is None or combo.group(1) not in x_d:
                raise ValueError(f"pipeline_motion: cannot tell which combination {name} renders "
                                 "(its doc must name x_d.<combination>[i])")
            wanted[name] = x_d[combo.group(1)][int(frame.group(1))]
    if not wanted:
        return {}
    appearance = fill_module_(AppearanceFeatureExtractor(**config.APPEARANCE_FEATURE_EXTRACTOR))
    warping = fill_module_(WarpingNetwork(**config.WARPING_MODULE))
    spade = fill_module_(SPADEDecoder(**config.SPADE_GENERATOR))
    appearance, warping, spade = (m.eval().to(device) for m in (appearance, warping, spade))
    feature_3d = appearance(image)
    frames = render(warping, spade, feature_3d, x_s, torch.stack(list(wanted.values())), batch_size=1)
    return {name: frames[i:i + 1] for i, name in enumerate(wanted)}


@handler("pipeline_motion")
def run_pipeline_motion(fx: Fixture, device: torch.device) -> dict[str, torch.Tensor]:
    cfg = fx.config
    fps = float(cfg.get("fps", config.DEFAULT_FPS))
    plan = plan_windows(int(fx.meta["audio_len_samples"]), fps=fps, n_motions=int(cfg["n_motions"]))
    # The stubbed sampler returns motion_coef ([1, n_motions, 70]) for every window, or one
    # slice of it per window if it holds them all; the last loses its padded frames.
    coef = fx.tensor("motion_coef").to(device)
    windows = coef.split(plan.n_motions, dim=1) if coef.shape[1] == plan.n_motions * plan.n_windows \
        else [coef] * plan.n_windows
    coef = torch.cat([w[:, :kept] for w, kept in zip(windows, plan.frames_per_window)], dim=1)
    template = MotionTemplate.from_dict({name.removeprefix("template."): fx.tensor(name)
                                         for name in fx.names("input") if name.startswith("template.")})
    decoded = decode_motion(coef, template, fps=fps)
    smoothed = smooth_pose(decoded)
    out = {**motion_outputs(decoded, "decoded."), **motion_outputs(smoothed, "smoothed.")}

    image = source_image(fx.tensor("source_rgb")).to(device)
    info = kpm.KeypointInfo.from_raw(filled_motion_extractor(MOTION_EXTRACTOR, device)(image))
    x_s = info.transform()
    out["x_s"] = x_s
    parts = filled_stitching(STITCHING_RETARGETING, device)
    # The official CLI default is_smooth_motion=True drives with the smoothed sequence.
    driving = smoothed if fx.meta.get("is_smooth_motion", True) else decoded
    x_d = {name: compose_driving_keypoints(info, x_s, driving, combination_settings(name, combo), parts)
           for name, combo in fx.meta["combinations"].items()}
    out.update({f"x_d.{name}": v for name, v in x_d.items()})
    out.update(_render_frames(fx, image, x_s, x_d, device))
    return out
