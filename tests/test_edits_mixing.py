"""Motion mixing and expression from a reference face (joyvasa_core.edits.mixing)."""
from __future__ import annotations

from dataclasses import replace

import torch

from joyvasa_core import keypoints as kpm
from joyvasa_core.config import LIP_INDICES
from joyvasa_core.driving import DrivingSettings, compose_photo_keypoints
from joyvasa_core.edits import Edits, ExpressionOffset, mix_motion
from joyvasa_core.edits.mixing import loop_indices
from joyvasa_core.edits.sliders import EYE_BROW_KEYPOINTS
from joyvasa_core.motion import MotionSequence

PLAIN = DrivingSettings(driving_option="pose-friendly", flag_stitching=False, flag_normalize_lip=False)


def make_motion(frames: int, seed: int, fps: float = 25) -> MotionSequence:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return MotionSequence(exp=0.05 * r(frames, 21, 3), scale=1.5 + 0.1 * r(frames, 1),
                          t=0.1 * r(frames, 3), pitch=10 * r(frames), yaw=10 * r(frames),
                          roll=5 * r(frames), fps=fps)


def test_loop_indices_ping_pong_trim_and_fps():
    assert loop_indices(10, 25, 4, 25).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert loop_indices(5, 25, 100, 25).tolist() == [0, 1, 2, 3, 4]
    assert loop_indices(4, 25, 100, 50).tolist() == [0, 2, 4, 6]
    assert loop_indices(3, 25, 1, 25).tolist() == [0, 0, 0]
    steps = loop_indices(500, 25, 37, 30).diff().abs()
    assert steps.max() <= 2          # never a jump back to the start
    # a later chunk of the stream (start = its first frame) continues the whole's indices
    whole = loop_indices(500, 25, 37, 30)
    assert torch.equal(loop_indices(40, 25, 37, 30, start=123), whole[123:163])


def test_mix_takes_pose_and_optionally_eyes():
    speech, video = make_motion(30, 0), make_motion(12, 1)
    mixed = mix_motion(speech, video)
    index = loop_indices(30, 25, 12, 25)
    for name in ("scale", "t", "pitch", "yaw", "roll"):
        assert torch.equal(getattr(mixed, name), getattr(video, name)[index])
    assert torch.equal(mixed.exp, speech.exp) and len(mixed) == 30
    with_eyes = mix_motion(speech, video, eyes=True)
    eyes = list(EYE_BROW_KEYPOINTS)
    rest = [i for i in range(21) if i not in EYE_BROW_KEYPOINTS]
    assert torch.equal(with_eyes.exp[:, eyes], video.exp[index][:, eyes])
    assert torch.equal(with_eyes.exp[:, rest], speech.exp[:, rest])
    # mixed chunk by chunk (each at its frame offset) = mixed whole
    chunks = [mix_motion(speech[a:b], video, eyes=True, first_frame=a)
              for a, b in ((0, 7), (7, 19), (19, 30))]
    joined = MotionSequence.cat(chunks)
    for name in ("exp", "scale", "t", "pitch", "yaw", "roll"):
        assert torch.equal(getattr(joined, name), getattr(with_eyes, name))


def _face(seed: int) -> kpm.KeypointInfo:
    m = make_motion(1, seed)
    g = torch.Generator().manual_seed(seed + 10)
    return kpm.KeypointInfo(pitch=m.pitch, yaw=m.yaw, roll=m.roll, t=m.t, exp=m.exp, scale=m.scale,
                            kp=0.5 * torch.randn(1, 21, 3, generator=g))


def test_expression_from_a_reference_face_outside_the_lips():
    source, reference = _face(0), _face(1)
    offset = ExpressionOffset.from_faces(reference, source, strength=1.0)
    lips = list(LIP_INDICES)
    assert (offset.delta_exp[lips] == 0).all()
    # A still motion carrying the source's own expression: the edited keypoints are the source
    # posed with the reference's expression everywhere but on the lips.
    frames = 5
    still = MotionSequence(exp=source.exp.expand(frames, -1, -1), scale=source.scale.expand(frames, -1),
                           t=source.t.expand(frames, -1), pitch=source.pitch.expand(frames),
                           yaw=source.yaw.expand(frames), roll=source.roll.expand(frames))
    edit = Edits(offset_tracks=(offset,)).at(torch.arange(frames) / 25.0)
    x_d = compose_photo_keypoints(source, source.transform(), still, PLAIN, edit=edit)
    target_exp = reference.exp.clone()
    target_exp[:, lips] = source.exp[:, lips]
    target = replace(source, exp=target_exp).transform()
    torch.testing.assert_close(x_d, target.expand(frames, -1, -1), rtol=0, atol=1e-5)
    half = ExpressionOffset.from_faces(reference, source, strength=0.5)
    torch.testing.assert_close(half.delta_exp, 0.5 * offset.delta_exp)
