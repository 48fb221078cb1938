"""Eye contact (joyvasa_core.edits.gaze): pupils turned against the head's turns."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from joyvasa_core.driving import compose_photo_keypoints, compose_video_keypoints
from joyvasa_core.edits import EyeContact, build_edits, with_eye_contact
from joyvasa_core.edits.gaze import PUPIL_PER_DEGREE, gaze_sliders
from joyvasa_core.edits.sliders import (EYE_BROW_KEYPOINTS, SLIDER_NAMES, slider_offsets,
                                        sliders_from_mapping)
from test_driving import PLAIN, make_motion, make_source, video_source

PUPIL_X, PUPIL_Y = SLIDER_NAMES.index("pupil_x"), SLIDER_NAMES.index("pupil_y")


def sliders(**values: float) -> torch.Tensor:
    return sliders_from_mapping(values, torch.float64)


def eye_contact_edit(frames: int, strength: float = 1.0, **values: float):
    """Slider edit of ``values`` on every frame, with eye contact at ``strength``."""
    edit = slider_offsets(sliders(**values).expand(frames, -1))
    return replace(edit, eye_contact=torch.full((frames,), strength, dtype=torch.float64))


def test_gaze_sliders_counter_yaw_and_pitch_not_roll():
    turn = torch.tensor([[0.0, 10.0, 0.0], [-5.0, 0.0, 0.0], [0.0, 0.0, 30.0]], dtype=torch.float64)
    got = gaze_sliders(turn, torch.tensor([1.0, 0.5, 1.0], dtype=torch.float64))
    expected = torch.zeros(3, len(SLIDER_NAMES), dtype=torch.float64)
    expected[0, PUPIL_X] = 10 * PUPIL_PER_DEGREE           # the head turns one way, pupils the other
    expected[1, PUPIL_Y] = 0.5 * 5 * PUPIL_PER_DEGREE      # head down (negative pitch): pupils up
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_eye_contact_adds_to_the_slider_sum_and_moves_only_eye_keypoints():
    frames = 4
    turn = torch.zeros(frames, 3, dtype=torch.float64)
    turn[:, 1] = torch.tensor([0.0, 10.0, -10.0, 60.0])    # degrees of yaw; 60 saturates
    turn[:, 0] = torch.tensor([0.0, 0.0, 4.0, 0.0])
    edit = eye_contact_edit(frames, pupil_x=-5.0, smile=0.5)
    got = with_eye_contact(edit, turn)
    assert got.eye_contact is None and torch.equal(got.delta_rot, edit.delta_rot)
    # the pupil sliders are summed with the user's (piecewise-linear map of the sum), clamped to ±15
    expected_x = torch.tensor([-5.0, -5.0 + 4.0, -5.0 - 4.0, 15.0], dtype=torch.float64)
    expected_y = torch.tensor([0.0, 0.0, -1.6, 0.0], dtype=torch.float64)
    torch.testing.assert_close(got.sliders[:, PUPIL_X], expected_x)
    torch.testing.assert_close(got.sliders[:, PUPIL_Y], expected_y)
    for i in range(frames):
        want = slider_offsets(sliders(pupil_x=float(expected_x[i]), pupil_y=float(expected_y[i]),
                                      smile=0.5)).delta_exp
        torch.testing.assert_close(got.delta_exp[i], want, rtol=0, atol=1e-15)
    change = (got.delta_exp - edit.delta_exp).abs().sum((0, 2))
    assert set(change.nonzero().flatten().tolist()) <= set(EYE_BROW_KEYPOINTS)
    assert change[11] > 0 and change[15] > 0


def test_no_eye_contact_or_no_turn_changes_nothing():
    edit = slider_offsets(sliders(smile=0.3).expand(3, -1))
    assert with_eye_contact(edit, torch.ones(3, 3, dtype=torch.float64)) is edit
    still = with_eye_contact(eye_contact_edit(3, smile=0.3), torch.zeros(3, 3, dtype=torch.float64))
    torch.testing.assert_close(still.delta_exp, edit.delta_exp, rtol=0, atol=0)


def test_driving_counters_the_motions_turn_relative_to_frame_0():
    source, motion = make_source(), make_motion()
    frames = motion.exp.shape[0]
    plain = compose_photo_keypoints(source, source.transform(), motion, PLAIN)
    looked = compose_photo_keypoints(source, source.transform(), motion, PLAIN,
                                     edit=eye_contact_edit(frames))
    turn = torch.stack([motion.pitch - motion.pitch[0], motion.yaw - motion.yaw[0],
                        torch.zeros(frames, dtype=torch.float64)], -1)
    extra = with_eye_contact(eye_contact_edit(frames), turn).delta_exp
    # x_d = scale·(kp·R + exp) + t, so the pupil offsets show scaled by the frame's scale
    scale = (source.scale * motion.scale / motion.scale[:1]).reshape(frames, 1, 1)
    torch.testing.assert_close(looked - plain, scale * extra)
    assert torch.equal(looked[0], plain[0])                 # frame 0: no turn yet
    assert (looked - plain)[1:, 11].abs().sum() > 0


def test_regions_that_keep_the_pose_counter_only_the_edits_rotation():
    source, motion = make_source(), make_motion()
    frames = motion.exp.shape[0]
    lips = replace(PLAIN, animation_region="lip")
    plain = compose_photo_keypoints(source, source.transform(), motion, lips)
    looked = compose_photo_keypoints(source, source.transform(), motion, lips,
                                     edit=eye_contact_edit(frames))
    torch.testing.assert_close(looked, plain, rtol=0, atol=0)   # the head does not turn
    turned = compose_photo_keypoints(source, source.transform(), motion, lips,
                                     edit=slider_offsets(sliders(rotate_yaw=10).expand(frames, -1)))
    both = compose_photo_keypoints(source, source.transform(), motion, lips,
                                   edit=eye_contact_edit(frames, rotate_yaw=10))
    eyes = (both - turned).abs().sum((0, 2))
    assert set(eyes.nonzero().flatten().tolist()) <= set(EYE_BROW_KEYPOINTS) and eyes[11] > 0


def test_a_dubbed_videos_own_turns_are_not_countered():
    source, motion = video_source(), make_motion()
    frames = motion.exp.shape[0]
    lips = replace(PLAIN, animation_region="lip")
    plain = compose_video_keypoints(source, source.transform(), motion, lips)
    looked = compose_video_keypoints(source, source.transform(), motion, lips,
                                     edit=eye_contact_edit(frames))
    torch.testing.assert_close(looked, plain, rtol=0, atol=0)
    moving = replace(PLAIN, animation_region="all")
    plain = compose_video_keypoints(source, source.transform(), motion, moving)
    looked = compose_video_keypoints(source, source.transform(), motion, moving,
                                     edit=eye_contact_edit(frames))
    assert (looked - plain)[1:].abs().sum() > 0              # the turns the motion adds are


def test_edits_carry_eye_contact_through_sums_and_clip_ends():
    assert build_edits(eye_contact=0.0) is None
    edits = build_edits("smile=0.2", blink="auto", eye_contact=0.5)
    both = (edits + build_edits(eye_contact=1.0)).until(3.0)
    times = torch.tensor([0.0, 1.0])
    at = both.at(times)
    torch.testing.assert_close(at.eye_contact, torch.full((2,), 1.5, dtype=torch.float64))
    torch.testing.assert_close(at.sliders, both.sliders(times))
    assert build_edits("smile=0.2").at(times).eye_contact is None
    with pytest.raises(ValueError, match="eye-contact strength"):
        EyeContact(2.5)
