"""Driving keypoints x_d for every frame of a motion sequence, batched over frames.

This is the keypoint half of JoyVASA's ``LivePortraitPipeline.execute``: the
source's :class:`~joyvasa_core.keypoints.KeypointInfo` and posed keypoints
x_s are combined with a generated motion sequence (exp, scale, t and head
angles per frame) into the keypoints handed to the warping network.

Per frame i (frame 0 is the reference of the relative motion):

* rotation ``R = R_d,i · R_d,0ᵀ · R_s`` (regions ``all``/``pose``, else ``R_s``);
* expression ``exp_s + (exp_d,i − exp_d,0)``, except that the lip keypoints
  ``LIP_INDICES`` take the driving exp **absolutely** (region ``all``/``exp``);
* ``scale = s_s · s_d,i / s_d,0`` and ``t = t_s + (t_d,i − t_d,0)`` (tz = 0), for
  every region (JoyVASA keeps them relative even for ``lip``/``exp``);
* edits (optional, :mod:`joyvasa_core.edits`): each frame's expression gets
  ``delta_exp`` and its driving pitch/yaw/roll get ``delta_rot`` (degrees;
  frame 0 stays the unedited reference, so a constant edit shows on every
  frame; with a region that keeps the source's rotation, the source's angles
  get it); eye contact (:mod:`joyvasa_core.edits.gaze`) turns the pupils
  against the turn added to the source's pose: the motion's angles relative
  to frame 0 (regions ``all``/``pose``) plus the edit's ``delta_rot``;
* ``x_d = scale · (kp_s @ R + exp) + t``;
* ``expression-friendly`` with relative motion: ``x_d = x_s + m·(x_d − x_d,0)``,
  m = :func:`~joyvasa_core.keypoints.expression_friendly_multiplier`;
* stitching (optional), lip normalisation (optional), then
  ``x_d = x_s + driving_multiplier · (x_d − x_s)``.

A **video** source (:func:`compose_video_keypoints`, dubbing) has its own keypoints for
every frame i, and the motion edits them the way LivePortrait's video editing
does: the frame keeps its own scale, translation and (except region ``all``)
rotation; the region's expression entries become
``exp_s,i + (exp_d,i − exp_d,0)`` (``lip``: ``LIP_INDICES``; ``exp``/``all``:
:data:`VIDEO_EXP_ENTRIES`), the rest stay the frame's own; ``all`` also turns
the head by ``R_d,i · R_d,0ᵀ``. No expression-friendly rescale (LivePortrait
skips it for source videos); stitching and the multiplier use the frame's own x_s.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Literal, get_args

import torch
from torch import nn

from . import keypoints as kpm
from .config import LIP_INDICES
from .edits.gaze import with_eye_contact
from .edits.sliders import KeypointEdit
from .motion import MotionSequence

DrivingOption = Literal["expression-friendly", "pose-friendly"]
AnimationRegion = Literal["all", "exp", "pose", "lip", "eyes"]

DRIVING_OPTIONS: tuple[str, ...] = get_args(DrivingOption)
REGIONS: tuple[str, ...] = get_args(AnimationRegion)

#: Eye keypoints of LivePortrait's ``animation_region='eyes'``.
EYE_INDICES = (11, 13, 15, 16, 18)
#: Expression entries (keypoint, axes) LivePortrait's video editing moves for regions
#: ``exp``/``all``: whole keypoints 1, 2, 6, 11-20 and some single axes (x, y, z = 0, 1, 2).
VIDEO_EXP_ENTRIES: tuple[tuple[int, tuple[int, ...]], ...] = (
    *((k, (0, 1, 2)) for k in (1, 2, 6, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)),
    (3, (1,)), (4, (1,)), (5, (2,)), (8, (2,)), (9, (1, 2)))


@dataclass(frozen=True)
class DrivingSettings:
    """How motion drives the source. Defaults are the official Gradio app's.

    driving_option: ``"expression-friendly"`` rescales the relative motion to
        the source's keypoint spread and anchors frame 0 at x_s (needs
        ``flag_relative_motion``); ``"pose-friendly"`` uses x_d as composed.
        (The app and the CLI default to expression-friendly; InferenceConfig's
        own default is pose-friendly.)
    animation_region: ``"all"``; ``"exp"`` (expression, no rotation);
        ``"pose"`` (rotation, source expression); ``"lip"`` (relative exp on
        ``LIP_INDICES`` only); ``"eyes"`` (relative exp on ``EYE_INDICES``
        only, as in LivePortrait — JoyVASA's own pipeline has no eyes branch
        and leaves the expression at the source's). Scale and translation
        follow the motion for every region, as in JoyVASA.
    flag_relative_motion: official default True (app); the CLI uses False.
    flag_stitching: apply S; app True, CLI False.
    flag_normalize_lip: close the source's mouth first (needs the source's
        lip-open ratio and the lip MLP; skipped when the ratio is not given,
        as the official code skips it without landmarks); app True, CLI False.
    lip_normalize_threshold: lip-open ratio below which the source counts as
        closed (official 0.03).
    driving_multiplier: final ``x_s + m·(x_d − x_s)``; app 1.0, CLI 1.10.

    Head-pose and expression strength are properties of the motion itself:
    see :meth:`joyvasa_core.motion.MotionSequence.rescaled`.
    """

    driving_option: DrivingOption = "expression-friendly"
    animation_region: AnimationRegion = "all"
    flag_relative_motion: bool = True
    flag_stitching: bool = True
    flag_normalize_lip: bool = True
    lip_normalize_threshold: float = 0.03
    driving_multiplier: float = 1.0

    def __post_init__(self) -> None:
        if self.driving_option not in DRIVING_OPTIONS:
            raise ValueError(f"driving_option must be one of {DRIVING_OPTIONS}, "
                             f"got {self.driving_option!r}")
        if self.animation_region not in REGIONS:
            raise ValueError(f"animation_region must be one of {REGIONS}, "
                             f"got {self.animation_region!r}")

    @classmethod
    def cli(cls, **overrides) -> "DrivingSettings":
        """The official ``inference.py`` defaults (its ArgumentConfig wins over InferenceConfig)."""
        base = dict(flag_relative_motion=False, flag_stitching=False, flag_normalize_lip=False,
                    driving_multiplier=1.10)
        return cls(**{**base, **overrides})

    @classmethod
    def from_mapping(cls, options: Mapping[str, object]) -> "DrivingSettings":
        """From a dict of the official option names (e.g. a fixture's combination)."""
        unknown = set(options) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown driving options {sorted(unknown)}; "
                             f"DrivingSettings knows {[f.name for f in fields(cls)]}")
        return cls(**options)


def _index_mask(indices: tuple[int, ...], num_kp: int, device: torch.device) -> torch.Tensor:
    mask = torch.zeros(num_kp, dtype=torch.bool, device=device)
    mask[list(indices)] = True
    return mask[:, None]  # [K, 1], broadcasts over xyz


def driving_expression(source_exp: torch.Tensor, driving_exp: torch.Tensor,
                       region: AnimationRegion) -> torch.Tensor:
    """Per-frame expression deformation ``[T, K, 3]``.

    source_exp ``[1, K, 3]``, driving_exp ``[T, K, 3]``; relative to frame 0.
    """
    num_kp, device = driving_exp.shape[1], driving_exp.device
    relative = source_exp + (driving_exp - driving_exp[:1])
    source = source_exp.expand_as(driving_exp)
    if region in ("all", "exp"):
        return torch.where(_index_mask(LIP_INDICES, num_kp, device), driving_exp, relative)
    if region == "lip":
        return torch.where(_index_mask(LIP_INDICES, num_kp, device), relative, source)
    if region == "eyes":
        return torch.where(_index_mask(EYE_INDICES, num_kp, device), relative, source)
    return source


def compose_photo_keypoints(
    source: kpm.KeypointInfo,
    x_s: torch.Tensor,
    motion: MotionSequence,
    settings: DrivingSettings = DrivingSettings(),
    retargeting: Mapping[str, nn.Module] | None = None,
    source_lip_ratio: torch.Tensor | None = None,
    multiplier: float | None = None,
    edit: KeypointEdit | None = None,
) -> torch.Tensor:
    """Driving keypoints ``[T, K, 3]`` of a photo (one source for every frame), all T at once.

    source: the photo's KeypointInfo (batch 1); x_s ``[1, K, 3]`` its posed
    keypoints (``source.transform()``); motion: T frames (see
    :class:`~joyvasa_core.motion.MotionSequence`), row 0 the reference of the
    relative motion; retargeting: the S/R parts by name (``stitching``,
    ``lip``), needed when stitching or lip normalisation is on;
    source_lip_ratio ``[1, 1]``: :func:`~joyvasa_core.keypoints.lip_open_ratio`
    of the source's 203-point landmarks (for ``flag_normalize_lip``);
    multiplier: :func:`expression_multiplier` of the whole sequence, when it is
    composed chunk by chunk (None: computed from ``motion``'s frame 0, one host sync);
    edit: per-frame offsets for the T frames (``delta_exp [T, K, 3]``, ``delta_rot
    [T, 3]`` degrees, any device/dtype), applied before stitching.
    """
    x_d = _posed_driving(source, motion, settings.animation_region, edit)
    if _uses_multiplier(settings):
        reference = x_d[:1] if edit is None else \
            _posed_driving(source, motion[:1], settings.animation_region)
        if multiplier is None:
            multiplier = kpm.expression_friendly_multiplier(x_s, reference)
        x_d = x_s + (x_d - reference) * multiplier
    return _retargeted(x_s, x_d, settings, retargeting, source_lip_ratio)


def compose_video_keypoints(
    source: kpm.KeypointInfo,
    x_s: torch.Tensor,
    motion: MotionSequence,
    settings: DrivingSettings = DrivingSettings(),
    retargeting: Mapping[str, nn.Module] | None = None,
    source_lip_ratio: torch.Tensor | None = None,
    edit: KeypointEdit | None = None,
) -> torch.Tensor:
    """Driving keypoints ``[T, K, 3]`` of a video's frames, each its own source (dubbing).

    source, x_s ``[T, K, 3]`` (and source_lip_ratio ``[T, 1]``) hold one row
    per motion row, from the frames of the source video (LivePortrait's video
    editing, see the module docstring). Row 0 of ``motion`` is the reference of
    the relative motion; give it any source row (e.g. a copy of row 1). Other
    arguments as :func:`compose_photo_keypoints`; there is no expression-friendly
    rescale (LivePortrait skips it for source videos).
    """
    x_d = _edited_video_keypoints(source, motion, settings.animation_region, edit)
    return _retargeted(x_s, x_d, settings, retargeting, source_lip_ratio)


def _retargeted(x_s: torch.Tensor, x_d: torch.Tensor, settings: DrivingSettings,
                retargeting: Mapping[str, nn.Module] | None,
                source_lip_ratio: torch.Tensor | None) -> torch.Tensor:
    """The shared tail of both compositions: stitching (optional), lip normalisation
    (optional), then ``x_s + driving_multiplier · (x_d − x_s)``. x_s ``[1 or T, K, 3]``."""
    if settings.flag_stitching:
        x_d = kpm.apply_stitching(_part(retargeting, "stitching"), x_s, x_d)
    if settings.flag_normalize_lip and settings.flag_relative_motion \
            and source_lip_ratio is not None:
        x_d = x_d + kpm.normalize_lip_delta(_part(retargeting, "lip"), x_s, source_lip_ratio,
                                            settings.lip_normalize_threshold)
    return x_s + (x_d - x_s) * settings.driving_multiplier


def expression_multiplier(source: kpm.KeypointInfo, x_s: torch.Tensor, motion: MotionSequence,
                          settings: DrivingSettings) -> float | None:
    """The expression-friendly rescale of a whole sequence (it depends on frame 0 only).

    None when ``settings`` do not use it. Compute it once and pass it to
    :func:`compose_photo_keypoints` for every chunk of a long sequence.
    """
    if not _uses_multiplier(settings):
        return None
    x_d0 = _posed_driving(source, motion[:1], settings.animation_region)
    return kpm.expression_friendly_multiplier(x_s, x_d0)


def _uses_multiplier(settings: DrivingSettings) -> bool:
    return settings.flag_relative_motion and settings.driving_option == "expression-friendly"


def _posed_driving(source: kpm.KeypointInfo, motion: MotionSequence, region: AnimationRegion,
                   edit: KeypointEdit | None = None) -> torch.Tensor:
    """Source keypoints moved by the motion relative to its frame 0, then edited: ``[T, K, 3]``."""
    angles = _angles(motion)
    edit = _resolved(edit, angles, region)
    delta_rot = None if edit is None else edit.delta_rot.to(angles.device, angles.dtype)
    if region in ("all", "pose"):
        edited = angles if delta_rot is None else angles + delta_rot
        rot_d = kpm.rotation_matrix(*edited.unbind(-1))
        rot_0 = rot_d[:1] if delta_rot is None else kpm.rotation_matrix(*angles[:1].unbind(-1))
        rotation = rot_d @ rot_0.transpose(-1, -2) @ source.rotation()
    elif delta_rot is None:
        rotation = source.rotation()
    else:
        source_angles = torch.stack([source.pitch, source.yaw, source.roll], -1).reshape(1, 3)
        rotation = kpm.rotation_matrix(*(source_angles + delta_rot).unbind(-1))
    exp = driving_expression(source.exp, motion.exp, region)
    if edit is not None:
        exp = exp + edit.delta_exp.to(exp.device, exp.dtype)
    scale = source.scale * (motion.scale / motion.scale[:1])
    t = source.t + (motion.t - motion.t[:1])
    return kpm.transform_keypoints(source.kp, rotation, exp, scale, t)


def _angles(motion: MotionSequence) -> torch.Tensor:
    """The motion's pitch, yaw and roll ``[T, 3]`` (degrees)."""
    frames = motion.exp.shape[0]
    return torch.stack([a.reshape(frames) for a in (motion.pitch, motion.yaw, motion.roll)], -1)


def _resolved(edit: KeypointEdit | None, angles: torch.Tensor,
              region: AnimationRegion) -> KeypointEdit | None:
    """The edit with its eye contact resolved against the turn the pipeline adds to the
    source's own pose (degrees ``[T, 3]``): the motion's ``angles [T, 3]`` relative to
    row 0 (regions ``all``/``pose``) plus the edit's rotation offsets."""
    if edit is None or edit.eye_contact is None:
        return edit
    turn = edit.delta_rot.to(angles.device, angles.dtype)
    if region in ("all", "pose"):
        turn = turn + (angles - angles[:1])
    return with_eye_contact(edit, turn)


def _video_exp_mask(num_kp: int, region: AnimationRegion, device: torch.device) -> torch.Tensor:
    """``[K, 3]`` bool: the expression entries the motion drives on a video source."""
    mask = torch.zeros(num_kp, 3, dtype=torch.bool, device=device)
    if region in ("all", "exp"):
        for kp, axes in VIDEO_EXP_ENTRIES:
            mask[kp, list(axes)] = True
    elif region in ("lip", "eyes"):
        mask[list(LIP_INDICES if region == "lip" else EYE_INDICES)] = True
    return mask


def _edited_video_keypoints(source: kpm.KeypointInfo, motion: MotionSequence,
                            region: AnimationRegion, edit: KeypointEdit | None = None
                            ) -> torch.Tensor:
    """Video frames' own keypoints with the region moved by the motion, then edited: ``[T, K, 3]``.

    source: T rows (one per source frame; row 0 is the reference frame's);
    motion: T rows, row 0 the reference of the relative motion. An edit adds
    its expression offsets and turns each frame's own pose by its angles.
    """
    angles = _angles(motion)
    edit = _resolved(edit, angles, region)
    own_exp = source.exp
    relative = own_exp + (motion.exp - motion.exp[:1])
    exp = torch.where(_video_exp_mask(own_exp.shape[1], region, own_exp.device), relative, own_exp)
    if edit is None:
        rotation = source.rotation()
    else:
        exp = exp + edit.delta_exp.to(exp.device, exp.dtype)
        own = torch.stack([a.reshape(-1) for a in (source.pitch, source.yaw, source.roll)], -1)
        rotation = kpm.rotation_matrix(*(own + edit.delta_rot.to(own.device, own.dtype)).unbind(-1))
    if region in ("all", "pose"):
        rot_d = kpm.rotation_matrix(*angles.unbind(-1))
        rotation = rot_d @ rot_d[:1].transpose(-1, -2) @ rotation
    return kpm.transform_keypoints(source.kp, rotation, exp, source.scale, source.t)


def _part(retargeting: Mapping[str, nn.Module] | None, name: str) -> nn.Module:
    if retargeting is None or name not in retargeting:
        raise ValueError(
            f"DrivingSettings need the {name!r} retargeting MLP: pass retargeting="
            "joyvasa_core.models.stitching.build_stitching_retargeting() loaded from "
            "stitching_retargeting_module.pth, or turn the option off")
    return retargeting[name]
