"""The twelve expression sliders of AdvancedLivePortrait's ExpressionEditor, as tensors.

A slider value moves a few implicit keypoints of the expression deformation
``exp [21, 3]`` and/or offsets the head angles (degrees). Each slider is a row
of a table of ``(keypoint, axis, coefficient)`` entries; two sliders
(``pupil_x``, ``eyebrow``) have separate tables for positive and negative
values, and ``pupil_y`` also acts through ``blink`` (half of its value lowers
the lids). The map is piecewise linear, so a batch of slider settings
``[T, 12]`` becomes offsets with two ``einsum`` calls.

Sign conventions (the editor's): a positive ``rotate_yaw`` gives a *negative*
yaw offset; ``aaa`` also tilts the pitch (−0.05° per unit); ``wink`` also
turns roll and yaw (−0.1° per unit); negative ``blink`` closes the eyes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import NUM_KP

SLIDER_NAMES: tuple[str, ...] = ("rotate_pitch", "rotate_yaw", "rotate_roll", "blink", "eyebrow",
                                 "wink", "pupil_x", "pupil_y", "aaa", "eee", "woo", "smile")

#: The editor's slider ranges (its widgets' min, max).
SLIDER_RANGES: dict[str, tuple[float, float]] = {
    "rotate_pitch": (-20, 20), "rotate_yaw": (-20, 20), "rotate_roll": (-20, 20),
    "blink": (-20, 5), "eyebrow": (-10, 15), "wink": (0, 25), "pupil_x": (-15, 15),
    "pupil_y": (-15, 15), "aaa": (-30, 120), "eee": (-20, 15), "woo": (-20, 15),
    "smile": (-0.3, 1.3),
}

X, Y, Z = 0, 1, 2
PITCH, YAW, ROLL = 0, 1, 2

# (keypoint, axis, coefficient) per unit of slider value; "+"/"-" tables apply to the
# positive / negative part of a slider whose response differs by sign.
_EXPRESSION: dict[str, tuple[tuple[int, int, float], ...]] = {
    "smile": ((20, Y, -0.01), (14, Y, -0.02), (17, Y, 0.0065), (17, Z, 0.003),
              (13, Y, -0.00275), (16, Y, -0.00275), (3, Y, -0.0035), (7, Y, -0.0035)),
    "aaa": ((19, Y, 0.001), (19, Z, 0.0001), (17, Y, -0.0001)),
    "eee": ((20, Z, -0.001), (20, Y, -0.001), (14, Y, -0.001)),
    "woo": ((14, Y, 0.001), (3, Y, -0.0005), (7, Y, -0.0005), (17, Z, -0.0005)),
    "wink": ((11, Y, 0.001), (13, Y, -0.0003), (17, X, 0.0003), (17, Y, 0.0003), (3, Y, -0.0003)),
    "pupil_x+": ((11, X, 0.0007), (15, X, 0.001)),
    "pupil_x-": ((11, X, 0.001), (15, X, 0.0007)),
    "pupil_y": ((11, Y, -0.001), (15, Y, -0.001)),
    "blink": ((11, Y, -0.001), (13, Y, 0.0003), (15, Y, -0.001), (16, Y, 0.0003),
              (1, Y, -0.00025), (2, Y, 0.00025)),
    "eyebrow+": ((1, Y, 0.001), (2, Y, -0.001)),
    "eyebrow-": ((1, X, -0.001), (2, X, 0.001), (1, Y, 0.0003), (2, Y, -0.0003)),
}
#: pupil_y lowers the lids by half its value through the blink table.
_PUPIL_Y_BLINK = -0.5

# (angle, coefficient) per unit of slider value, in degrees.
_ROTATION: dict[str, tuple[tuple[int, float], ...]] = {
    "rotate_pitch": ((PITCH, 1.0),),
    "rotate_yaw": ((YAW, -1.0),),
    "rotate_roll": ((ROLL, 1.0),),
    "aaa": ((PITCH, -0.05),),
    "wink": ((ROLL, -0.1), (YAW, -0.1)),
}

#: The eye and brow keypoints: the ones the blink slider moves.
EYE_BROW_KEYPOINTS: tuple[int, ...] = tuple(sorted({kp for kp, _, _ in _EXPRESSION["blink"]}))


@dataclass(frozen=True)
class KeypointEdit:
    """Per-frame offsets for T frames: ``delta_exp [T, 21, 3]`` (added to each frame's
    expression) and ``delta_rot [T, 3]`` (pitch, yaw, roll in degrees, added to its pose).

    Two optional fields let a pose-dependent edit be resolved once the head's
    turn is known (:func:`~joyvasa_core.edits.gaze.with_eye_contact`, called
    where the driving keypoints are composed): ``sliders [T, 12]``, the slider
    values the offsets came from, and ``eye_contact [T]``, the eye-contact
    strength still to apply (None: none).
    """

    delta_exp: torch.Tensor
    delta_rot: torch.Tensor
    sliders: torch.Tensor | None = None
    eye_contact: torch.Tensor | None = None

    def __add__(self, other: "KeypointEdit") -> "KeypointEdit":
        def plus(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
            return b if a is None else a if b is None else a + b
        return KeypointEdit(self.delta_exp + other.delta_exp, self.delta_rot + other.delta_rot,
                            plus(self.sliders, other.sliders),
                            plus(self.eye_contact, other.eye_contact))


def _tables(sign: str) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 ``[12, 21, 3]`` expression and ``[12, 3]`` rotation coefficients for one sign."""
    exp = torch.zeros(len(SLIDER_NAMES), NUM_KP, 3, dtype=torch.float64)
    rot = torch.zeros(len(SLIDER_NAMES), 3, dtype=torch.float64)
    for i, name in enumerate(SLIDER_NAMES):
        for kp, axis, coef in _EXPRESSION.get(name + sign, _EXPRESSION.get(name, ())):
            exp[i, kp, axis] += coef
        for angle, coef in _ROTATION.get(name, ()):
            rot[i, angle] += coef
    pupil_y, blink = SLIDER_NAMES.index("pupil_y"), SLIDER_NAMES.index("blink")
    exp[pupil_y] += _PUPIL_Y_BLINK * exp[blink]
    return exp, rot


_POSITIVE = _tables("+")
_NEGATIVE = _tables("-")


def slider_offsets(values: torch.Tensor) -> KeypointEdit:
    """Slider values ``[..., 12]`` (order :data:`SLIDER_NAMES`) -> offsets ``[..., 21, 3]``, ``[..., 3]``.

    Computed in the values' dtype on their device.
    """
    if values.shape[-1] != len(SLIDER_NAMES):
        raise ValueError(f"slider values must end in {len(SLIDER_NAMES)} entries "
                         f"({', '.join(SLIDER_NAMES)}), got shape {tuple(values.shape)}")
    pos, neg = values.clamp(min=0), values.clamp(max=0)
    (exp_p, rot_p), (exp_n, rot_n) = ((t.to(values.device, values.dtype) for t in table)
                                      for table in (_POSITIVE, _NEGATIVE))
    delta_exp = torch.einsum("...s,skc->...kc", pos, exp_p) + \
        torch.einsum("...s,skc->...kc", neg, exp_n)
    delta_rot = pos @ rot_p + neg @ rot_n
    return KeypointEdit(delta_exp, delta_rot, sliders=values)


def sliders_from_mapping(values: dict[str, float], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``{"smile": 0.8, ...}`` -> ``[12]`` in :data:`SLIDER_NAMES` order (missing = 0)."""
    unknown = sorted(set(values) - set(SLIDER_NAMES))
    if unknown:
        raise ValueError(f"unknown sliders {unknown}; the sliders are {', '.join(SLIDER_NAMES)}")
    return torch.tensor([float(values.get(n, 0.0)) for n in SLIDER_NAMES], dtype=dtype)
