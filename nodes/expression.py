"""Expression control nodes: sliders and keyframes, blinks, eye contact, motion mixing,
expression from a photo.

ExpressionEdit, Blink, EyeContact and ExpressionFromImage build a JOYVASA_EDIT
(:class:`joyvasa_core.edits.Edits`), each adding to an optional incoming
edit; RenderPortrait and RenderToFile take it as their last, optional input.
MotionMix works on the motion itself. Node IDs and input names are part of
saved workflows: never rename or reorder them.
"""
from __future__ import annotations

from joyvasa_core import pipeline
from joyvasa_core.edits import (SLIDER_NAMES, SLIDER_RANGES, Edits, ExpressionOffset,
                                EyeContact, apply_strengths, build_edits, mix_motion, parse_strengths,
                                parse_timeline, parse_times)
from joyvasa_core.edits.blink import DEFAULT_RATE
from joyvasa_core.edits.gaze import MAX_STRENGTH as EYE_CONTACT_MAX
from joyvasa_core.edits.timeline import constant_timeline
from . import convert, deferred
from .api import CATEGORY, Edit, Face, Models, Motion, io
from .portrait import FACE_BACKENDS

#: Slider widget steps (the editor's).
_STEPS = {"smile": 0.01, "eee": 0.2, "woo": 0.2, "aaa": 1.0}
_KEYFRAME_HELP = ("one slider per statement, e.g. 'smile: 0s=0, 2s=0.8 ease-in-out; "
                  "blink: 1s=0, 1.1s=-12, 1.4s=0' (easings: linear, ease-in, ease-out, "
                  "ease-in-out, hold); added to the sliders above")


def _chained(edit: Edits | None, added: Edits) -> Edits:
    return added if edit is None else edit + added


def _text_error(parse, text: str) -> bool | str:
    """validate_inputs helper: True, or the parse error (with its caret) as the message."""
    try:
        parse(text)
    except ValueError as exc:
        return str(exc)
    return True


class JoyVASAExpressionEdit(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        sliders = [io.Float.Input(name, default=0.0, min=float(low), max=float(high),
                                  step=_STEPS.get(name, 0.5), display_mode=io.NumberDisplay.slider)
                   for name, (low, high) in SLIDER_RANGES.items()]
        return io.Schema(
            node_id="JoyVASAExpressionEdit",
            display_name="ExpressionEdit",
            category=CATEGORY,
            description="AdvancedLivePortrait's expression sliders (same numbers), held on every "
                        "frame, plus keyframes over time. Applied to the driving keypoints "
                        "before stitching; connect to RenderPortrait's 'edit'.",
            inputs=[*sliders,
                    io.String.Input("keyframes", default="", multiline=True, tooltip=_KEYFRAME_HELP),
                    Edit.Input("edit", optional=True, tooltip="an edit to add this one to")],
            outputs=[Edit.Output(display_name="edit")],
        )

    @classmethod
    def validate_inputs(cls, keyframes: str = "") -> bool | str:
        return _text_error(parse_timeline, keyframes)

    @classmethod
    def execute(cls, keyframes="", edit=None, **sliders) -> io.NodeOutput:
        constants = constant_timeline({name: float(sliders.get(name, 0.0)) for name in SLIDER_NAMES})
        tracks = tuple(t for t in (constants, parse_timeline(keyframes)) if t.curves)
        return io.NodeOutput(_chained(edit, Edits(tracks)))


class JoyVASABlink(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JoyVASABlink",
            display_name="Blink",
            category=CATEGORY,
            description="Natural blinks: at seeded random intervals (auto) or at given times. "
                        "They move only the eye and brow keypoints; none in the last half second.",
            inputs=[
                io.Combo.Input("mode", options=["auto", "times"], default="auto"),
                io.Float.Input("rate", default=DEFAULT_RATE, min=1.0, max=60.0, step=0.5,
                               tooltip="blinks per minute (auto)"),
                io.Float.Input("strength", default=1.0, min=0.0, max=2.0, step=0.05,
                               tooltip="1 = the lids close"),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFF, control_after_generate=True,
                             tooltip="seed of the blink schedule (auto)"),
                io.String.Input("times", default="", tooltip="mode 'times': blink start times, "
                                                             "e.g. '1.2, 3.5s, 4000ms'"),
                Edit.Input("edit", optional=True, tooltip="an edit to add this one to"),
            ],
            outputs=[Edit.Output(display_name="edit")],
        )

    @classmethod
    def validate_inputs(cls, mode: str = "auto", times: str = "") -> bool | str:
        if mode != "times":
            return True
        if not times.strip():
            return "mode 'times' needs blink start times, e.g. '1.2, 3.5s'"
        return _text_error(parse_times, times)

    @classmethod
    def execute(cls, mode, rate, strength, seed, times, edit=None) -> io.NodeOutput:
        blinks = build_edits(None, "auto" if mode == "auto" else times, blink_rate=rate,
                             blink_strength=strength, seed=seed)
        return io.NodeOutput(_chained(edit, blinks or Edits()))


class JoyVASAEyeContact(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JoyVASAEyeContact",
            display_name="EyeContact",
            category=CATEGORY,
            description="Keeps the eyes on the camera: the pupils turn against the head's turns "
                        "(the motion's yaw and pitch, and any rotate_* edits), through the "
                        "pupil_x / pupil_y sliders.",
            inputs=[
                io.Float.Input("strength", default=1.0, min=0.0, max=EYE_CONTACT_MAX, step=0.05,
                               tooltip="1 = the pupils counter the head's turn (about 0.4 "
                                       "pupil slider units per degree); 0 = off"),
                Edit.Input("edit", optional=True, tooltip="an edit to add this one to"),
            ],
            outputs=[Edit.Output(display_name="edit")],
        )

    @classmethod
    def execute(cls, strength, edit=None) -> io.NodeOutput:
        added = Edits(eye_contact_tracks=(EyeContact(strength),)) if strength else Edits()
        return io.NodeOutput(_chained(edit, added))


class JoyVASAMotionMix(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JoyVASAMotionMix",
            display_name="MotionMix",
            category=CATEGORY,
            description="Head pose (and optionally the eyes) from another motion -- "
                        "MotionFromVideo of a clip, or another seed -- looped forwards and "
                        "backwards or trimmed to the speech; then a strength per region.",
            inputs=[
                Motion.Input("motion", tooltip="the speech's motion: lips and expression"),
                io.Boolean.Input("eyes_from_pose_motion", default=False),
                io.String.Input("strength", default="", multiline=True,
                                tooltip="strength per region (1 = as generated, 0 = still): "
                                        "lips, eyes, brows, expression, pitch, yaw, roll, "
                                        "translation, e.g. 'yaw=0.5, roll=0; "
                                        "lips: 0s=1, 3s=1.5'"),
                Motion.Input("pose_motion", optional=True,
                             tooltip="where the head pose comes from"),
            ],
            outputs=[Motion.Output(display_name="motion")],
        )

    @classmethod
    def validate_inputs(cls, strength: str = "") -> bool | str:
        return _text_error(parse_strengths, strength)

    @classmethod
    def execute(cls, motion, eyes_from_pose_motion, strength, pose_motion=None) -> io.NodeOutput:
        motion, pose_motion = deferred.whole_motion(motion), deferred.whole_motion(pose_motion)
        if pose_motion is not None:
            motion = mix_motion(motion, pose_motion, eyes=eyes_from_pose_motion)
        timeline = parse_strengths(strength)
        if timeline.curves:
            motion = apply_strengths(motion, timeline)
        return io.NodeOutput(motion)


class JoyVASAExpressionFromImage(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JoyVASAExpressionFromImage",
            display_name="ExpressionFromImage",
            category=CATEGORY,
            description="The expression of a reference face minus the portrait's, added outside "
                        "the lips on every frame: a neutral portrait speaks with the reference's "
                        "smile.",
            inputs=[
                Models.Input("models"),
                Face.Input("face", tooltip="the portrait being animated"),
                io.Image.Input("image", tooltip="the reference face (first image of the batch)"),
                io.Float.Input("strength", default=1.0, min=0.0, max=2.0, step=0.05),
                io.Combo.Input("face_backend", options=list(FACE_BACKENDS), default="auto"),
                Edit.Input("edit", optional=True, tooltip="an edit to add this one to"),
            ],
            outputs=[Edit.Output(display_name="edit")],
        )

    @classmethod
    def execute(cls, models, face, image, strength, face_backend, edit=None) -> io.NodeOutput:
        core = models.ready("liveportrait")
        reference = pipeline.extract_face(core, convert.first_image(image, what="reference face"),
                                          face_backend=face_backend)
        offset = ExpressionOffset.from_faces(reference.source, face.source, strength)
        return io.NodeOutput(_chained(edit, Edits(offset_tracks=(offset,))))


NODES = [JoyVASAExpressionEdit, JoyVASABlink, JoyVASAEyeContact, JoyVASAMotionMix,
         JoyVASAExpressionFromImage]
