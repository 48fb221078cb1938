"""LivePortrait implicit-keypoint math: head pose, transforms, stitching and retargeting.

Conventions (as in LivePortrait): keypoints are **row vectors** ``[B, K, 3]``
(K = 21), angles are in **degrees**, and :func:`rotation_matrix` returns
``(Rz(roll) Ry(yaw) Rx(pitch))ᵀ`` so that a posed keypoint is ``kp @ R``.
The translation's z component is always dropped (only tx, ty move keypoints).

Every function here is batched, differentiable where the maths is, and keeps
the caller's device and dtype. The one exception is
:func:`expression_friendly_multiplier`, which needs a 3-D convex hull (scipy)
and returns a Python float; it runs once per sequence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

#: Head-pose bins of M: bin i covers ``3*i - 97.5`` degrees (66 bins, -97.5 .. 97.5).
POSE_BIN_DEGREES = 3.0
POSE_BIN_OFFSET = 97.5
RATIO_EPS = 1e-6

# 203-point landmark indices used by the official open-ratio features.
_LEFT_EYE = (6, 18, 0, 12)      # (top, bottom, left corner, right corner)
_RIGHT_EYE = (30, 42, 24, 36)
_LIP = (90, 102, 48, 66)        # (upper inner, lower inner, left corner, right corner)


def headpose_logits_to_degrees(logits: torch.Tensor) -> torch.Tensor:
    """Expected angle of 66-bin logits ``[..., 66]`` -> degrees ``[...]``.

    ``softmax(logits) · [0, 1, …, 65] * 3 - 97.5``.
    """
    bins = torch.arange(logits.shape[-1], device=logits.device, dtype=logits.dtype)
    expected_bin = (torch.softmax(logits, dim=-1) * bins).sum(dim=-1)
    return expected_bin * POSE_BIN_DEGREES - POSE_BIN_OFFSET


def rotation_matrix(pitch: torch.Tensor, yaw: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """Angles in degrees, each ``[...]`` (same shape) -> ``[..., 3, 3]``.

    Returns ``(Rz(roll) @ Ry(yaw) @ Rx(pitch))ᵀ``, the matrix LivePortrait
    right-multiplies row-vector keypoints with.
    """
    x, y, z = (torch.deg2rad(a) for a in (pitch, yaw, roll))
    one, zero = torch.ones_like(x), torch.zeros_like(x)

    def mat(*rows: torch.Tensor) -> torch.Tensor:
        return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))

    rot_x = mat(one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos())
    rot_y = mat(y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos())
    rot_z = mat(z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one)
    return (rot_z @ rot_y @ rot_x).transpose(-1, -2)


def drop_tz(t: torch.Tensor) -> torch.Tensor:
    """``[..., 3]`` translation with its z component set to 0 (a new tensor)."""
    return torch.cat([t[..., :2], torch.zeros_like(t[..., 2:])], dim=-1)


def transform_keypoints(kp: torch.Tensor, rotation: torch.Tensor, exp: torch.Tensor,
                        scale: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Posed keypoints ``x = scale * (kp @ R + exp) + (tx, ty, 0)``.

    kp ``[B, K, 3]``, rotation ``[B, 3, 3]``, exp ``[B, K, 3]``, scale ``[B, 1]``,
    t ``[B, 3]`` (tz ignored); batch dimensions broadcast. Returns ``[B, K, 3]``.
    """
    return scale[..., None] * (kp @ rotation + exp) + drop_tz(t)[..., None, :]


@dataclass
class KeypointInfo:
    """Motion-extractor output in units, for a batch of B images.

    pitch, yaw, roll ``[B]`` degrees; t ``[B, 3]``; exp ``[B, K, 3]``;
    scale ``[B, 1]``; kp ``[B, K, 3]`` canonical keypoints.
    """

    pitch: torch.Tensor
    yaw: torch.Tensor
    roll: torch.Tensor
    t: torch.Tensor
    exp: torch.Tensor
    scale: torch.Tensor
    kp: torch.Tensor

    @classmethod
    def from_raw(cls, raw: dict[str, torch.Tensor]) -> "KeypointInfo":
        """From :class:`~joyvasa_core.models.motion_extractor.MotionExtractor` output
        (pose logits ``[B, 66]``, kp/exp ``[B, 3K]``)."""
        batch = raw["kp"].shape[0]
        return cls(
            pitch=headpose_logits_to_degrees(raw["pitch"]),
            yaw=headpose_logits_to_degrees(raw["yaw"]),
            roll=headpose_logits_to_degrees(raw["roll"]),
            t=raw["t"], exp=raw["exp"].reshape(batch, -1, 3), scale=raw["scale"],
            kp=raw["kp"].reshape(batch, -1, 3),
        )

    def rotation(self) -> torch.Tensor:
        """Head rotation ``[B, 3, 3]`` (row-vector convention)."""
        return rotation_matrix(self.pitch, self.yaw, self.roll)

    def transform(self) -> torch.Tensor:
        """Posed keypoints x ``[B, K, 3]`` (LivePortrait's ``transform_keypoint``)."""
        return transform_keypoints(self.kp, self.rotation(), self.exp, self.scale, self.t)


# --------------------------------------------------------------------- stitching


def _pair_features(x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
    """``[B|1, K, 3]`` and ``[B, K, 3]`` -> ``[B, 6K]`` (source first, broadcast over B)."""
    x_s = x_s.expand_as(x_d)
    return torch.cat([x_s.flatten(1), x_d.flatten(1)], dim=1)


def stitching_delta(stitching: nn.Module, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
    """S(x_s, x_d): ``[B, 3K + 2]`` = per-keypoint offsets then (tx, ty).

    x_s ``[B or 1, K, 3]``, x_d ``[B, K, 3]``.
    """
    return stitching(_pair_features(x_s, x_d))


def apply_stitching(stitching: nn.Module, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
    """Stitched driving keypoints ``[B, K, 3]``: x_d + offsets, then x, y += (tx, ty)."""
    delta = stitching_delta(stitching, x_s, x_d)
    num = x_d.shape[1] * 3
    shift = torch.cat([delta[:, num:num + 2], torch.zeros_like(delta[:, :1])], dim=1)
    return x_d + delta[:, :num].reshape(x_d.shape) + shift[:, None, :]


def _retarget(net: nn.Module, x_s: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    feat = torch.cat([x_s.flatten(1), ratio], dim=1)
    return net(feat).reshape(x_s.shape[0], -1, 3)


def lip_retarget_delta(lip: nn.Module, x_s: torch.Tensor, lip_ratio: torch.Tensor) -> torch.Tensor:
    """Lip retargeting offsets ``[B, K, 3]``.

    x_s ``[B, K, 3]``; lip_ratio ``[B, 2]`` = (source lip-open ratio, target ratio).
    """
    return _retarget(lip, x_s, lip_ratio)


def eye_retarget_delta(eye: nn.Module, x_s: torch.Tensor, eye_ratio: torch.Tensor) -> torch.Tensor:
    """Eye retargeting offsets ``[B, K, 3]``.

    x_s ``[B, K, 3]``; eye_ratio ``[B, 3]`` = (source left, source right, target ratio).
    """
    return _retarget(eye, x_s, eye_ratio)


# ------------------------------------------------------------ open-ratio inputs


def _distance_ratio(lmk: torch.Tensor, idx: tuple[int, int, int, int]) -> torch.Tensor:
    a, b, c, d = idx
    num = torch.linalg.vector_norm(lmk[:, a] - lmk[:, b], dim=-1, keepdim=True)
    den = torch.linalg.vector_norm(lmk[:, c] - lmk[:, d], dim=-1, keepdim=True)
    return num / (den + RATIO_EPS)


def eye_open_ratio(lmk203: torch.Tensor) -> torch.Tensor:
    """Left/right eye opening (lid distance / eye width) from 203-point landmarks
    ``[B, 203, 2]`` (pixels) -> ``[B, 2]``."""
    return torch.cat([_distance_ratio(lmk203, _LEFT_EYE), _distance_ratio(lmk203, _RIGHT_EYE)], dim=1)


def lip_open_ratio(lmk203: torch.Tensor) -> torch.Tensor:
    """Lip opening (inner-lip distance / mouth width), ``[B, 203, 2]`` -> ``[B, 1]``."""
    return _distance_ratio(lmk203, _LIP)


def normalize_lip_delta(lip: nn.Module, x_s: torch.Tensor, source_lip_ratio: torch.Tensor,
                        threshold: float) -> torch.Tensor:
    """Offsets ``[B, K, 3]`` that close the source's lips (official ``flag_normalize_lip``).

    Retargets from ``source_lip_ratio`` ``[B, 1]`` to a closed mouth (ratio 0);
    zero for sources whose ratio is below ``threshold`` (already closed).
    """
    ratio = torch.cat([source_lip_ratio, torch.zeros_like(source_lip_ratio)], dim=1)
    delta = lip_retarget_delta(lip, x_s, ratio)
    return delta * (source_lip_ratio >= threshold).to(delta.dtype)[:, :, None]


# ----------------------------------------------------------- motion multiplier


def convex_hull_volume(points: torch.Tensor) -> float:
    """Volume of the 3-D convex hull of ``[N, 3]`` points (float64, via scipy/qhull)."""
    from scipy.spatial import ConvexHull

    return float(ConvexHull(points.detach().to("cpu", torch.float64).numpy()).volume)


def expression_friendly_multiplier(x_s: torch.Tensor, x_d0: torch.Tensor) -> float:
    """``sqrt(V(x_s)) / sqrt(V(x_d0))`` with V the convex-hull volume; both ``[1, K, 3]``.

    Rescales relative driving motion to the source's keypoint spread (the
    official ``calc_motion_multiplier``: a square root of a *volume*).
    """
    return math.sqrt(convex_hull_volume(x_s.reshape(-1, 3))) / \
        math.sqrt(convex_hull_volume(x_d0.reshape(-1, 3)))
