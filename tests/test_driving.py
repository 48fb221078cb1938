"""Composition of driving keypoints (joyvasa_core.driving)."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from joyvasa_core import keypoints as kpm
from joyvasa_core.config import LIP_INDICES
from joyvasa_core.driving import (EYE_INDICES, DrivingSettings, compose_photo_keypoints,
                                  compose_video_keypoints, expression_multiplier)
from joyvasa_core.models.stitching import build_stitching_retargeting
from joyvasa_core.motion import MotionSequence as Motion

T, K = 6, 21
PLAIN = DrivingSettings(driving_option="pose-friendly", flag_stitching=False, flag_normalize_lip=False)


def make_source(seed: int = 0) -> kpm.KeypointInfo:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64) * 2 - 1  # noqa: E731
    return kpm.KeypointInfo(pitch=10 * r(1), yaw=20 * r(1), roll=5 * r(1), t=0.1 * r(1, 3),
                            exp=0.05 * r(1, K, 3), scale=1.5 + 0.1 * r(1, 1), kp=0.5 * r(1, K, 3))


def make_motion(seed: int = 1, frames: int = T) -> Motion:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64) * 2 - 1  # noqa: E731
    return Motion(exp=0.05 * r(frames, K, 3), scale=1.6 + 0.2 * r(frames, 1), t=0.1 * r(frames, 3),
                  pitch=15 * r(frames), yaw=25 * r(frames), roll=10 * r(frames))


def still_motion(source: kpm.KeypointInfo, frames: int = T) -> Motion:
    """Every frame equal: arbitrary pose/scale/t, but the source's own expression."""
    m = make_motion(frames=1)
    rep = lambda x: x.expand(frames, *x.shape[1:]).clone()  # noqa: E731
    return Motion(exp=rep(source.exp), scale=rep(m.scale), t=rep(m.t),
                  pitch=rep(m.pitch), yaw=rep(m.yaw), roll=rep(m.roll))


def compose(settings: DrivingSettings, source=None, motion=None, **kw) -> torch.Tensor:
    source = source or make_source()
    motion = motion or make_motion()
    return compose_photo_keypoints(source, source.transform(), motion, settings, **kw)


def per_frame_reference(source: kpm.KeypointInfo, motion: Motion) -> torch.Tensor:
    """Direct per-frame transcription of the official 'all'-region, pose-friendly maths."""
    x = []
    r_s = source.rotation()
    r_d = kpm.rotation_matrix(motion.pitch, motion.yaw, motion.roll)
    for i in range(motion.exp.shape[0]):
        rot = r_d[i:i + 1] @ r_d[:1].transpose(1, 2) @ r_s
        exp = source.exp + (motion.exp[i:i + 1] - motion.exp[:1])
        exp[:, list(LIP_INDICES)] = motion.exp[i:i + 1, list(LIP_INDICES)]
        scale = source.scale * motion.scale[i:i + 1] / motion.scale[:1]
        t = source.t + motion.t[i:i + 1] - motion.t[:1]
        t[..., 2] = 0
        x.append(scale * (source.kp @ rot + exp) + t)
    return torch.cat(x)


def test_batched_matches_per_frame_reference():
    source, motion = make_source(), make_motion()
    torch.testing.assert_close(compose(PLAIN, source, motion), per_frame_reference(source, motion))


@pytest.mark.parametrize("option", ["expression-friendly", "pose-friendly"])
def test_still_driving_with_source_expression_gives_x_s(option):
    source = make_source()
    x_d = compose(replace(PLAIN, driving_option=option), source, still_motion(source))
    torch.testing.assert_close(x_d, source.transform().expand(T, K, 3))


def test_expression_friendly_anchors_frame0_and_rescales_by_hull():
    source, motion = make_source(), make_motion()
    pose = compose(PLAIN, source, motion)
    expr = compose(replace(PLAIN, driving_option="expression-friendly"), source, motion)
    x_s = source.transform()
    torch.testing.assert_close(expr[0], x_s[0])
    m = kpm.expression_friendly_multiplier(x_s, pose[:1])
    torch.testing.assert_close(expr - x_s, m * (pose - pose[:1]))
    # Without relative motion the option does nothing.
    no_rel = replace(PLAIN, driving_option="expression-friendly", flag_relative_motion=False)
    torch.testing.assert_close(compose(no_rel, source, motion), pose)


def test_driving_multiplier_scales_offsets_from_x_s():
    source, motion = make_source(), make_motion()
    x_s = source.transform()
    base = compose(PLAIN, source, motion)
    torch.testing.assert_close(compose(replace(PLAIN, driving_multiplier=1.1), source, motion) - x_s,
                               1.1 * (base - x_s))


@pytest.mark.parametrize("region,indices", [("lip", LIP_INDICES), ("eyes", EYE_INDICES)])
def test_regions_limit_the_expression(region, indices):
    source, motion = make_source(), make_motion()
    x_d = compose(replace(PLAIN, animation_region=region), source, motion)
    scale = source.scale * motion.scale / motion.scale[:1]
    exp = source.exp.expand(T, K, 3).clone()
    exp[:, list(indices)] = (source.exp + motion.exp - motion.exp[:1])[:, list(indices)]
    expected = kpm.transform_keypoints(source.kp, source.rotation(), exp, scale,
                                       source.t + motion.t - motion.t[:1])
    torch.testing.assert_close(x_d, expected)


def test_pose_region_keeps_source_expression_and_exp_region_keeps_source_rotation():
    source, motion = make_source(), make_motion()
    all_ = compose(PLAIN, source, motion)
    pose = compose(replace(PLAIN, animation_region="pose"), source, motion)
    exp = compose(replace(PLAIN, animation_region="exp"), source, motion)
    # Driving exp equal to the source's in every frame: the source expression, lips included.
    source_exp = Motion(**{**motion.__dict__, "exp": source.exp.expand(T, K, 3)})
    no_expr = compose(PLAIN, source, source_exp)
    torch.testing.assert_close(pose, no_expr)
    assert not torch.allclose(exp, all_)
    still_pose = Motion(**{**motion.__dict__, "pitch": motion.pitch[:1].expand(T),
                           "yaw": motion.yaw[:1].expand(T), "roll": motion.roll[:1].expand(T)})
    torch.testing.assert_close(exp, compose(PLAIN, source, still_pose))


def test_stitching_and_lip_normalisation_use_the_mlps():
    parts = build_stitching_retargeting().double()
    for p in parts.parameters():
        torch.nn.init.zeros_(p)
    source, motion = make_source(), make_motion()
    base = compose(PLAIN, source, motion)
    stitched = replace(PLAIN, flag_stitching=True, flag_normalize_lip=True)
    # Zero MLPs change nothing, whatever the lip ratio.
    out = compose(stitched, source, motion, retargeting=parts,
                  source_lip_ratio=torch.tensor([[0.5]], dtype=torch.float64))
    torch.testing.assert_close(out, base)
    torch.nn.init.constant_(parts["stitching"].mlp[-1].bias, 0.01)
    torch.nn.init.constant_(parts["lip"].mlp[-1].bias, 0.1)
    out = compose(stitched, source, motion, retargeting=parts,
                  source_lip_ratio=torch.tensor([[0.5]], dtype=torch.float64))
    shift = torch.tensor([0.02, 0.02, 0.01], dtype=torch.float64) + 0.1
    torch.testing.assert_close(out, base + shift)
    closed = compose(stitched, source, motion, retargeting=parts,
                     source_lip_ratio=torch.tensor([[0.01]], dtype=torch.float64))
    torch.testing.assert_close(closed, base + shift - 0.1)


def test_missing_mlp_and_bad_settings_raise():
    with pytest.raises(ValueError, match="stitching"):
        compose(replace(PLAIN, flag_stitching=True))
    with pytest.raises(ValueError, match="animation_region"):
        DrivingSettings(animation_region="mouth")
    with pytest.raises(ValueError, match="unknown"):
        DrivingSettings.from_mapping({"flag_stitching": True, "flag_typo": 1})


def test_official_defaults():
    app, cli = DrivingSettings(), DrivingSettings.cli()
    assert (app.driving_option, app.flag_stitching, app.flag_relative_motion, app.driving_multiplier) == \
        ("expression-friendly", True, True, 1.0)
    assert (cli.driving_option, cli.flag_stitching, cli.flag_relative_motion, cli.driving_multiplier) == \
        ("expression-friendly", False, False, 1.10)


def test_pipeline_motion_parity():
    from conftest import PARITY
    from joyvasa_core.parity.fixture import Fixture
    from joyvasa_core.parity.runner import run_fixture

    results = run_fixture(Fixture.open(PARITY, "pipeline_motion"), torch.device("cpu"))
    failed = [(r.output, r.max_abs_err, r.note) for r in results if not r.ok]
    assert results and not failed, failed


def test_precomputed_multiplier_lets_chunks_match_the_whole_sequence():
    source, motion = make_source(), make_motion()
    x_s = source.transform()
    cfg = replace(PLAIN, driving_option="expression-friendly")
    whole = compose_photo_keypoints(source, x_s, motion, cfg)
    m = expression_multiplier(source, x_s, motion, cfg)
    assert m is not None and m != pytest.approx(1.0)
    # A chunk led by frame 0 (the reference) and given the sequence's multiplier.
    rows = torch.tensor([0, 3, 4, 5])
    chunk = compose_photo_keypoints(source, x_s, motion[rows], cfg, multiplier=m)[1:]
    torch.testing.assert_close(chunk, whole[3:])
    assert expression_multiplier(source, x_s, motion, PLAIN) is None


# ------------------------------------------------------------------------- edits

def _edit(frames: int = T, dtype=torch.float64, **sliders: float):
    from joyvasa_core.edits.sliders import slider_offsets, sliders_from_mapping

    values = sliders_from_mapping(sliders, dtype).expand(frames, -1)
    return slider_offsets(values)


def test_expression_edit_adds_scaled_offset_on_every_frame_including_frame_0():
    source, motion = make_source(), make_motion()
    edit = _edit(smile=0.8)
    plain = compose(PLAIN, source, motion)
    edited = compose(PLAIN, source, motion, edit=edit)
    scale = source.scale * motion.scale / motion.scale[:1]               # [T, 1]
    torch.testing.assert_close(edited - plain, scale[..., None] * edit.delta_exp, rtol=0, atol=1e-12)
    moved = (edited - plain).abs().amax(dim=(0, 2)).nonzero().flatten().tolist()
    assert moved == [3, 7, 13, 14, 16, 17, 20]


def test_expression_friendly_keeps_the_unedited_reference():
    """A constant edit must not cancel against frame 0: x_d,0 = x_s + m·scale·delta."""
    source = make_source()
    motion, x_s = still_motion(source), source.transform()
    cfg = replace(PLAIN, driving_option="expression-friendly")
    m = expression_multiplier(source, x_s, motion, cfg)
    edit = _edit(eyebrow=8)
    edited = compose(cfg, source, motion, edit=edit)
    # the still motion is posed somewhere else than the source: only the offset's size survives
    scale = source.scale * motion.scale / motion.scale[:1]
    torch.testing.assert_close(edited, x_s + m * scale[..., None] * edit.delta_exp, rtol=0, atol=1e-12)


def test_rotation_edit_turns_each_frame_and_shows_on_frame_0():
    source = make_source()
    motion = still_motion(source)
    edit = _edit(rotate_yaw=6, rotate_pitch=-4)
    edited = compose(PLAIN, source, motion, edit=edit)
    # Still motion: every frame is the source turned by the offsets on top of the source's pose
    # (the driving frame's angles get them, frame 0 of the motion stays the reference).
    r_d = kpm.rotation_matrix(motion.pitch, motion.yaw, motion.roll)
    r_e = kpm.rotation_matrix(motion.pitch - 4, motion.yaw - 6, motion.roll)
    rotation = r_e @ r_d.transpose(1, 2) @ source.rotation()
    scale = source.scale * motion.scale / motion.scale[:1]
    expected = kpm.transform_keypoints(source.kp, rotation, source.exp.expand(T, -1, -1), scale,
                                       source.t.expand(T, -1))
    torch.testing.assert_close(edited, expected, rtol=0, atol=1e-12)
    assert not torch.allclose(edited[0], source.transform()[0])


def test_rotation_edit_with_a_region_that_keeps_the_source_rotation():
    source = make_source()
    edit = _edit(rotate_roll=7)
    edited = compose(replace(PLAIN, animation_region="exp"), source, edit=edit)
    plain = compose(replace(PLAIN, animation_region="exp"), source)
    motion = make_motion()
    scale = source.scale * motion.scale / motion.scale[:1]
    turned = kpm.rotation_matrix(source.pitch, source.yaw, source.roll + 7)
    torch.testing.assert_close(edited - plain, scale[..., None] * (source.kp @ turned - source.kp
                                                                   @ source.rotation()),
                               rtol=0, atol=1e-12)


# ------------------------------------------------------------- video sources (dubbing)

def video_source(frames: int = T) -> kpm.KeypointInfo:
    """One KeypointInfo row per frame of a source video (each frame its own pose/expression)."""
    rows = [make_source(seed) for seed in range(10, 10 + frames)]
    return kpm.KeypointInfo(*(torch.cat([getattr(r, f) for r in rows]) for f in
                              ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")))


def video_reference(source: kpm.KeypointInfo, motion: Motion, region: str) -> torch.Tensor:
    """Per-frame transcription of LivePortrait's video editing with relative motion."""
    from joyvasa_core.driving import VIDEO_EXP_ENTRIES
    x = []
    r_d = kpm.rotation_matrix(motion.pitch, motion.yaw, motion.roll)
    for i in range(motion.exp.shape[0]):
        own = kpm.KeypointInfo(*(getattr(source, f)[i:i + 1] for f in
                                 ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")))
        rel = own.exp + (motion.exp[i:i + 1] - motion.exp[:1])
        exp = own.exp.clone()
        rot = own.rotation()
        if region == "lip":
            exp[:, list(LIP_INDICES)] = rel[:, list(LIP_INDICES)]
        else:
            for kp, axes in VIDEO_EXP_ENTRIES:
                exp[:, kp, list(axes)] = rel[:, kp, list(axes)]
        if region == "all":
            rot = r_d[i:i + 1] @ r_d[:1].transpose(1, 2) @ rot
        t = own.t.clone()
        t[..., 2] = 0
        x.append(own.scale * (own.kp @ rot + exp) + t)
    return torch.cat(x)


@pytest.mark.parametrize("region", ["lip", "exp", "all"])
def test_video_frames_keep_their_own_motion_outside_the_region(region):
    source, motion = video_source(), make_motion()
    settings = replace(PLAIN, animation_region=region)    # expression-friendly: ignored for video
    for option in ("pose-friendly", "expression-friendly"):
        got = compose_video_keypoints(source, source.transform(), motion,
                                      replace(settings, driving_option=option))
        torch.testing.assert_close(got, video_reference(source, motion, region))


def test_video_lip_region_moves_only_the_lips_and_reference_frame_is_the_video():
    source, motion = video_source(), make_motion()
    x_s = source.transform()
    got = compose_video_keypoints(source, x_s, motion, replace(PLAIN, animation_region="lip"))
    others = [k for k in range(K) if k not in LIP_INDICES]
    own = x_s[:, others]
    # scale, rotation and translation are the frame's own: non-lip keypoints are x_s exactly
    torch.testing.assert_close(got[:, others], own)
    assert (got[1:, list(LIP_INDICES)] - x_s[1:, list(LIP_INDICES)]).abs().max() > 1e-3
    torch.testing.assert_close(got[0], x_s[0])          # row 0: zero relative motion


def test_video_stitching_uses_each_frames_own_source():
    torch.manual_seed(0)
    parts = build_stitching_retargeting()
    source, motion = video_source(), make_motion()
    x_s = source.transform()
    mlps = {"stitching": parts["stitching"].double()}
    settings = replace(PLAIN, animation_region="lip", flag_stitching=True)
    got = compose_video_keypoints(source, x_s, motion, settings, mlps)
    for i in (1, 4):
        one = compose_video_keypoints(
            kpm.KeypointInfo(*(getattr(source, f)[[0, i]] for f in
                               ("pitch", "yaw", "roll", "t", "exp", "scale", "kp"))),
            x_s[[0, i]], motion[torch.tensor([0, i])], settings, mlps)
        torch.testing.assert_close(got[i], one[1])
