"""Parity handlers: motion extractor M, stitching/retargeting S, driving keypoints.

Fixtures ``motion_extractor``, ``stitching_retargeting`` and ``pipeline_motion``
(see ``tests/data/REFERENCE.md`` section 4). Models are built from the
sidecar's config and filled with the jvfill rule; every input comes from the
fixture file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch

from .. import config
from .. import keypoints as kpm
from ..audio import plan_windows
from ..config import MOTION_EXTRACTOR, STITCHING_RETARGETING
from ..driving import DrivingSettings, compose_photo_keypoints
from ..fill import fill_module_
from ..models.appearance import AppearanceFeatureExtractor
from ..models.motion_extractor import MotionExtractor
from ..models.spade import SPADEDecoder
from ..models.stitching import build_stitching_retargeting
from ..models.warping import WarpingNetwork
from ..motion import MotionSequence, decode_motion, smooth_pose
from ..render import render
from .audio_motion import fixture_template
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


#: Combination flags of the official pipeline that need driving landmarks; JoyVASA's
#: generated motion has none, so the official code adds no eye/lip deltas when they are on.
_RETARGETING_FLAGS = ("flag_eye_retargeting", "flag_lip_retargeting")
#: Flags with no effect on a still source (no source-video eye deltas exist).
_NO_OP_FLAGS = ("flag_source_video_eye_retargeting",)


@dataclass(frozen=True)
class Combination:
    """One sidecar ``combinations`` entry: driving settings plus the official-only switches."""

    settings: DrivingSettings
    retargeting: bool = False      # flag_eye_retargeting or flag_lip_retargeting
    smooth: bool | None = None     # per-combination is_smooth_motion (None: the fixture's)

    @classmethod
    def from_sidecar(cls, combo: dict) -> "Combination":
        combo = dict(combo)
        retargeting = any([bool(combo.pop(k, False)) for k in _RETARGETING_FLAGS])
        for key in _NO_OP_FLAGS:
            combo.pop(key, None)
        smooth = combo.pop("is_smooth_motion", None)
        return cls(DrivingSettings.from_mapping(combo), retargeting, None if smooth is None else bool(smooth))


def combination_keypoints(combo: Combination, info: kpm.KeypointInfo, x_s: torch.Tensor,
                          driving: MotionSequence, parts: torch.nn.ModuleDict,
                          source_lip_ratio: torch.Tensor | None = None) -> torch.Tensor:
    """``x_d`` ``[T, 21, 3]`` of one combination, as the official ``execute`` passes it to warp_decode.

    With eye or lip retargeting on, the official loop takes its "retargeting" branch with
    no deltas (generated motion has no driving landmarks): ``x_s`` with relative motion,
    else the composed ``x_d``; then optional stitching and the driving multiplier (no lip
    normalisation). ``source_lip_ratio`` ``[1, 1]`` feeds ``flag_normalize_lip``.

    ``animation_region='eyes'``: JoyVASA's loop has no eyes branch, so it keeps the
    source's expression and rotation (only scale and translation follow the motion),
    unlike LivePortrait's eye-only animation that :mod:`joyvasa_core.driving` offers.
    That is the ``'lip'`` region driven by an expression frozen at frame 0.
    """
    cfg = combo.settings
    if cfg.animation_region == "eyes":
        cfg = replace(cfg, animation_region="lip")
        driving = replace(driving, exp=driving.exp[:1].expand_as(driving.exp))
    if not combo.retargeting:
        return compose_photo_keypoints(info, x_s, driving, cfg, parts, source_lip_ratio)
    if cfg.flag_relative_motion:
        x_d = x_s.expand(len(driving), -1, -1)
    else:
        plain = replace(cfg, flag_stitching=False, flag_normalize_lip=False, driving_multiplier=1.0)
        x_d = compose_photo_keypoints(info, x_s, driving, plain, parts)
    if cfg.flag_stitching:
        x_d = kpm.apply_stitching(parts["stitching"], x_s, x_d)
    return x_s + (x_d - x_s) * cfg.driving_multiplier


def motion_outputs(seq: MotionSequence, prefix: str) -> dict[str, torch.Tensor]:
    """A sequence as the official per-frame dicts stacked (angles ``[T, 1]``)."""
    out = {f"{prefix}{k}": getattr(seq, k) for k in ("exp", "scale", "t")}
    out.update({f"{prefix}{k}": getattr(seq, k)[:, None] for k in ("pitch", "yaw", "roll")})
    out[f"{prefix}R"] = seq.rotation()
    return out


def source_image(rgb: torch.Tensor, max_dim: int = 1280, division: int = 2) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` -> ``[1, 3, 256, 256]`` float in [0, 1], as the official no-crop path.

    ``resize_to_limit`` (longest side at most ``max_dim``, sides cut to multiples of
    ``division``), then ``cv2.resize`` (bilinear) to 256x256 unless already that size.
    """
    image = rgb.numpy()
    h, w = image.shape[:2]
    if max_dim > 0 and max(h, w) > max_dim:
        size = (max_dim, int(h * max_dim / w)) if w >= h else (int(w * max_dim / h), max_dim)
        image = cv2.resize(image, size)
    division = max(division, 1)
    h2, w2 = image.shape[0] - image.shape[0] % division, image.shape[1] - image.shape[1] % division
    if h2 and w2:
        image = image[:h2, :w2]
    if image.shape[:2] != (config.SOURCE_SIZE, config.SOURCE_SIZE):
        image = cv2.resize(image, (config.SOURCE_SIZE, config.SOURCE_SIZE))
    t = torch.from_numpy(np.ascontiguousarray(image))
    return (t.permute(2, 0, 1)[None].to(torch.float32) / 255.0).clamp(0.0, 1.0)


def rendered_combination(fx: Fixture, output: str, combinations: list[str]) -> str:
    """Which combination ``render.frame<i>`` renders: the one its doc names as ``x_d.<name>``,
    else the only combination the sidecar notes name."""
    doc = fx.specs[output].get("doc", "")
    named = [c for c in combinations if re.search(rf"x_d\.{re.escape(c)}\b", doc)]
    if not named:
        notes = " ".join(str(n) for n in fx.meta.get("notes", []))
        named = [c for c in combinations if re.search(rf"\b{re.escape(c)}\b", notes)]
    if len(named) != 1:
        raise ValueError(f"{fx.name}: cannot tell which combination {output} renders (its doc must "
                         f"name x_d.<combination>[i], or the notes exactly one of {combinations})")
    return named[0]


def _render_frames(fx: Fixture, image: torch.Tensor, x_s: torch.Tensor,
                   x_d: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """``render.frame<i>`` outputs: F/W/G on the source, keypoints of the combination rendered."""
    wanted = {}
    for name in fx.names("output"):
        frame = re.fullmatch(r"render\.frame(\d+)", name)
        if frame:
            wanted[name] = x_d[rendered_combination(fx, name, list(x_d))][int(frame.group(1))]
    if not wanted:
        return {}
    appearance = fill_module_(AppearanceFeatureExtractor(**config.APPEARANCE_FEATURE_EXTRACTOR))
    warping = fill_module_(WarpingNetwork(**config.WARPING_MODULE))
    spade = fill_module_(SPADEDecoder(**config.SPADE_GENERATOR))
    appearance, warping, spade = (m.eval().to(device) for m in (appearance, warping, spade))
    feature_3d = appearance(image)
    frames = render(warping, spade, feature_3d, x_s, torch.stack(list(wanted.values())), batch_size=1)
    return {name: frames[i:i + 1] for i, name in enumerate(wanted)}


#: Input names accepted for the source's 203-point landmarks (``source_lmk`` in the official loop).
SOURCE_LANDMARK_INPUTS = ("source_lmk", "lmk_crop", "source_lmk203")


def source_lip_ratio(fx: Fixture, combinations: dict[str, Combination],
                     device: torch.device) -> torch.Tensor | None:
    """Lip-open ratio ``[1, 1]`` of the fixture's source landmarks, when a combination
    normalises the lips (``flag_normalize_lip`` with relative motion); else None.

    The official no-crop path takes them from its landmark model, which has no
    checkpoint here, so the fixture must store them (``[203, 2]`` or ``[1, 203, 2]``).
    """
    if not any(c.settings.flag_normalize_lip and c.settings.flag_relative_motion
               for c in combinations.values()):
        return None
    name = next((n for n in SOURCE_LANDMARK_INPUTS if n in fx.specs), None)
    if name is None:
        raise KeyError(f"fixture {fx.name}: flag_normalize_lip needs the source's 203-point landmarks "
                       f"as an input named one of {SOURCE_LANDMARK_INPUTS}")
    lmk = fx.tensor(name).to(device=device, dtype=torch.float32)
    return kpm.lip_open_ratio(lmk.reshape(1, -1, 2))


def audio_length(fx: Fixture) -> int:
    """Samples of the (16 kHz) audio the stubbed pipeline windowed."""
    if "audio_len_samples" in fx.meta:
        return int(fx.meta["audio_len_samples"])
    if "audio" in fx.specs:
        return int(fx.specs["audio"]["shape"][-1])
    raise KeyError(f"fixture {fx.name}: the sidecar needs 'audio_len_samples' (or an 'audio' input)")


@handler("pipeline_motion")
def run_pipeline_motion(fx: Fixture, device: torch.device) -> dict[str, torch.Tensor]:
    cfg = fx.config
    fps = float(cfg.get("fps", config.DEFAULT_FPS))
    plan = plan_windows(audio_length(fx), fps=fps, n_motions=int(cfg["n_motions"]))
    # The stubbed sampler returns motion_coef ([1, n_motions, 70]) for every window, or one
    # slice of it per window if it holds them all; the last loses its padded frames.
    coef = fx.tensor("motion_coef").to(device)
    windows = coef.split(plan.n_motions, dim=1) if coef.shape[1] == plan.n_motions * plan.n_windows \
        else [coef] * plan.n_windows
    coef = torch.cat([w[:, :kept] for w, kept in zip(windows, plan.frames_per_window)], dim=1)
    decoded = decode_motion(coef, fixture_template(fx), fps=fps)
    smoothed = smooth_pose(decoded)
    out = {**motion_outputs(decoded, "decoded."), **motion_outputs(smoothed, "smoothed.")}

    image = source_image(fx.tensor("source_rgb"), int(fx.meta.get("source_max_dim", 1280)),
                         int(fx.meta.get("source_division", 2))).to(device)
    info = kpm.KeypointInfo.from_raw(filled_motion_extractor(MOTION_EXTRACTOR, device)(image))
    x_s = info.transform()
    out["x_s"] = x_s
    parts = filled_stitching(STITCHING_RETARGETING, device)
    # The official CLI default is_smooth_motion=True drives with the smoothed sequence.
    smooth_default = bool(fx.meta.get("is_smooth_motion", True))
    combos = {name: Combination.from_sidecar(entry) for name, entry in fx.meta["combinations"].items()}
    lip_ratio = source_lip_ratio(fx, combos, device)
    x_d = {}
    for name, combo in combos.items():
        smooth = smooth_default if combo.smooth is None else combo.smooth
        x_d[name] = combination_keypoints(combo, info, x_s, smoothed if smooth else decoded, parts, lip_ratio)
    out.update({f"x_d.{name}": v for name, v in x_d.items()})
    out.update(_render_frames(fx, image, x_s, x_d, device))
    return out
