"""Eye contact: the pupils turned against the head's turns, so the eyes stay on the camera.

The portrait's eyes look where they looked in the photo (usually at the
camera). When the generated motion or an edit turns the head, eyes fixed in
the head would turn with it and look past the camera. Eye contact moves the
pupils the other way, through the editor's ``pupil_x`` / ``pupil_y`` sliders:

* the **head turn** of a frame is the rotation the pipeline adds to the
  source's own pose: the motion's pitch and yaw relative to its first frame
  (regions ``all``/``pose``) plus the edits' rotation offsets, in degrees.
  A dubbed video's own head turns are not countered: its frames keep their
  own eyes, which already follow that person's gaze;
* ``pupil_x = k · strength · Δyaw`` and ``pupil_y = −k · strength · Δpitch``,
  with ``k =`` :data:`PUPIL_PER_DEGREE` slider units per degree, and the
  pupil sliders (with any pupil edits they add to) kept inside the editor's
  ±15 range. Roll turns the eyes about the line of sight, so it is left alone.

Signs follow the editor's conventions: a positive ``rotate_yaw`` slider gives a
negative yaw and a positive ``pupil_x`` moves the pupils to image-right
(``+x`` of the keypoints), so the two sliders agree in the image and a yaw of
``+θ`` turns the face towards image-left; the pupils then go right. A
positive pitch (``rotate_pitch``, not negated by the editor) lifts the face,
and a positive ``pupil_y`` (``−y``) lifts the pupils, so they go down.

The gain: the editor's ``pupil_x = 15`` is about the farthest sideways look
(some 35–40° of eye rotation), so a degree of eye rotation is about 0.4
slider units. The networks' pupil response could not be calibrated on real
frames here (no official weights offline): ``strength`` scales the gain
(0 = off, 1 = this estimate, up to 2).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .sliders import PITCH, SLIDER_NAMES, SLIDER_RANGES, YAW, KeypointEdit, slider_offsets

#: Pupil slider units per degree of head turn (editor's full sideways look ≈ 15 units ≈ 38°).
PUPIL_PER_DEGREE = 0.4
#: Largest eye-contact strength (1 = :data:`PUPIL_PER_DEGREE`).
MAX_STRENGTH = 2.0

_PUPIL_X, _PUPIL_Y = SLIDER_NAMES.index("pupil_x"), SLIDER_NAMES.index("pupil_y")


@dataclass(frozen=True)
class EyeContact:
    """An eye-contact track: ``eye_contact(times [T] s) -> [T]`` strengths (float64)."""

    strength: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= MAX_STRENGTH:
            raise ValueError(f"eye-contact strength must be 0 … {MAX_STRENGTH:g} "
                             f"(1 = eyes kept on the camera), got {self.strength:g}")

    def eye_contact(self, times: torch.Tensor) -> torch.Tensor:
        return torch.full((times.shape[0],), float(self.strength), dtype=torch.float64)


def gaze_sliders(head_turn: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Pupil slider values ``[T, 12]`` that counter ``head_turn [T, 3]`` (pitch, yaw, roll
    in degrees) at ``strength [T]``: only ``pupil_x`` and ``pupil_y`` are non-zero."""
    gain = PUPIL_PER_DEGREE * strength.to(head_turn.dtype)
    sliders = head_turn.new_zeros(head_turn.shape[0], len(SLIDER_NAMES))
    sliders[:, _PUPIL_X] = gain * head_turn[:, YAW]
    sliders[:, _PUPIL_Y] = -gain * head_turn[:, PITCH]
    return sliders


def with_eye_contact(edit: KeypointEdit, head_turn: torch.Tensor) -> KeypointEdit:
    """``edit`` with its eye-contact pupils resolved against ``head_turn [T, 3]`` (degrees).

    The gaze sliders are added to the edit's own slider sum (``edit.sliders``;
    the map is piecewise linear in the sum, as on the editor) and the pupil
    sliders clamped to ±15; the change in keypoint offsets is added to
    ``delta_exp``. Computed in ``delta_exp``'s dtype on its device. An edit
    without eye contact is returned as it is.
    """
    if edit.eye_contact is None:
        return edit
    dtype, device = edit.delta_exp.dtype, edit.delta_exp.device
    frames = edit.delta_exp.shape[0]
    base = (torch.zeros(frames, len(SLIDER_NAMES)) if edit.sliders is None else edit.sliders)
    base = base.to(device, dtype).expand(frames, -1)
    turn = head_turn.to(device, dtype).expand(frames, -1)
    gazed = base + gaze_sliders(turn, edit.eye_contact.to(device, dtype).expand(frames))
    for index in (_PUPIL_X, _PUPIL_Y):
        low, high = SLIDER_RANGES[SLIDER_NAMES[index]]
        gazed[:, index] = gazed[:, index].clamp(low, high)
    extra = slider_offsets(gazed).delta_exp - slider_offsets(base).delta_exp
    return replace(edit, delta_exp=edit.delta_exp + extra, sliders=gazed, eye_contact=None)
