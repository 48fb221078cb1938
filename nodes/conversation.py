"""Conversation nodes: several faces of one photo, each driven by its own speech.

Adapters over :mod:`joyvasa_core.scene_source`. ``JoyVASAPreviewFaces`` draws
the detected faces with their left-to-right indices (what the headless
command's ``--speaker FACE=...`` and ExtractFaceRepresentation's ``face_order``
``left to right`` count). ``JoyVASAConversation`` joins up to four faces
(ExtractFaceRepresentation) with their motions (AudioToMotion) into a
``JOYVASA_SCENE``; ``JoyVASARenderConversation`` renders it to IMAGE frames and
``JoyVASARenderConversationToFile`` streams it to an MP4, the speakers' speech
mixed into one track. Node IDs and input names are part of saved workflows:
never rename them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from joyvasa_core import config, pipeline
from joyvasa_core.face.backends import BACKENDS as FACE_BACKENDS
from joyvasa_core.face.backends import detect_faces
from joyvasa_core.motion import Motion as CoreMotion
from joyvasa_core.scene import SceneError, box_text, mix_speech
from joyvasa_core.scene_source import SceneMotion, SceneSource, photos_scene
from joyvasa_core.sources import PhotoSource

from . import convert, deferred
from .api import CATEGORY, Face, Models, Motion, Scene, VideoFromFile, io
from .companions import output_file
from .portrait import check_output_batch, driving_inputs, driving_settings
from .progress import progress_bar

#: Speakers a Conversation node joins.
MAX_SPEAKERS = 4


@dataclass(frozen=True)
class ConversationScene:
    """The value of a ``JOYVASA_SCENE`` socket: the faces as one source, their motions as
    one (equal lengths), and the speech to mix (``(waveform [C, T], rate)`` per speaker
    whose motion was generated from speech)."""

    source: SceneSource
    motion: SceneMotion
    speech: tuple[tuple[torch.Tensor, int], ...]

    @property
    def n_frames(self) -> int:
        return len(self.motion.motions[0])

    @property
    def fps(self) -> float:
        return float(self.motion.motions[0].fps)

    @property
    def photo(self) -> PhotoSource:
        return self.source.faces[0]

    def mixed_speech(self) -> tuple[torch.Tensor, int]:
        """([1, N] float32, rate): every speaker's speech in one track (silence if none)."""
        if not self.speech:
            return torch.zeros(1, 0), config.AUDIO_SAMPLE_RATE
        return mix_speech(self.speech)


def equal_lengths(motions: list[CoreMotion]) -> list[CoreMotion]:
    """The motions made as long as the longest: a shorter AudioToMotion output is sampled
    again from its speech followed by silence (the listener stays on screen, quiet); any
    other shorter motion is refused with the fix."""
    longest = max(len(m) for m in motions)
    out = []
    for k, motion in enumerate(motions, start=1):
        if len(motion) < longest:
            if not isinstance(motion, deferred.GeneratedMotion):
                raise SceneError(f"motion_{k} has {len(motion)} frames, the longest {longest}: "
                                 "give every speaker an AudioToMotion output (shorter speech "
                                 "is then padded with silence), or motions of equal length")
            motion = motion.lengthened(longest)
        out.append(motion)
    return out


class JoyVASAPreviewFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JoyVASAPreviewFaces",
            display_name="PreviewFaces",
            category=CATEGORY,
            description="Finds every face in the image and draws its box and index, left to "
                        "right: the numbers ExtractFaceRepresentation takes with face_order "
                        "'left to right' (and the headless command's --speaker). Also lists "
                        "each face's box and score as text.",
            inputs=[
                io.Image.Input("image", tooltip="the photo (first image of the batch)"),
                io.Combo.Input("face_backend", options=[b for b in FACE_BACKENDS if b != "none"],
                               default="auto", tooltip="face detector"),
                Models.Input("models", optional=True,
                             tooltip="where the detector's files are (the models folder); "
                                     "without it, the default folder"),
            ],
            outputs=[io.Image.Output(display_name="image"),
                     io.String.Output(display_name="faces")],
        )

    @classmethod
    def execute(cls, image, face_backend, models=None) -> io.NodeOutput:
        picture = convert.first_image(image, what="photo")
        rgb = (picture.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        folder = None if models is None else models.models.models_dir
        faces, backend = detect_faces(rgb, face_backend, folder, image_name="the photo")
        lines = [f"{k}: box {box_text(f.box)}, score {f.score:.2f}" for k, f in enumerate(faces)]
        text = f"{len(faces)} face(s) found by {backend}, left to right:\n" + "\n".join(lines)
        drawn = draw_faces(rgb, [f.box for f in faces])
        return io.NodeOutput(convert.uint8_to_image(drawn), text)


def draw_faces(rgb: np.ndarray, boxes: list) -> np.ndarray:
    """``rgb`` [H, W, 3] uint8 with each box (x0, y0, x1, y1, pixels) outlined and numbered
    in order; a copy."""
    from PIL import Image, ImageDraw, ImageFont

    picture = Image.fromarray(rgb)
    draw = ImageDraw.Draw(picture)
    height, width = rgb.shape[:2]
    line = max(2, round(min(height, width) / 200))
    size = max(12, round(min(height, width) / 20))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:      # Pillow < 10.1: a fixed-size bitmap font
        font = ImageFont.load_default()
    for k, box in enumerate(boxes):
        x0, y0, x1, y1 = (float(v) for v in box[:4])
        draw.rectangle((x0, y0, x1, y1), outline=(255, 48, 48), width=line)
        label = str(k)
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        tx, ty = x0, max(0.0, y0 - (bottom - top) - 2 * line)
        draw.rectangle((tx, ty, tx + right - left + 2 * line, ty + bottom - top + 2 * line),
                       fill=(255, 48, 48))
        draw.text((tx + line - left, ty + line - top), label, fill=(255, 255, 255), font=font)
    return np.array(picture)


class JoyVASAConversation(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        speakers = []
        for k in range(1, MAX_SPEAKERS + 1):
            optional = k > 1
            speakers += [
                Face.Input(f"face_{k}", optional=optional,
                           tooltip=f"speaker {k}'s face (ExtractFaceRepresentation of the photo)"),
                Motion.Input(f"motion_{k}", optional=optional,
                             tooltip=f"speaker {k}'s motion (AudioToMotion of their own speech: "
                                     "silent where they do not speak)"),
            ]
        return io.Schema(
            node_id="JoyVASAConversation",
            display_name="Conversation",
            category=CATEGORY,
            description="Joins up to four faces of one photo, each with the motion of its own "
                        "speech, into a scene that RenderConversation or "
                        "RenderConversationToFile animates in one pass. Shorter speech is "
                        "padded with silence: the clip lasts as long as the longest. Give "
                        "each AudioToMotion its own seed, so that speakers do not move alike.",
            inputs=speakers,
            outputs=[Scene.Output(display_name="scene")],
        )

    @classmethod
    def execute(cls, **inputs) -> io.NodeOutput:
        faces, motions = [], []
        for k in range(1, MAX_SPEAKERS + 1):
            face, motion = inputs.get(f"face_{k}"), inputs.get(f"motion_{k}")
            if (face is None) != (motion is None):
                have, lack = ("face", "motion") if motion is None else ("motion", "face")
                raise SceneError(f"speaker {k} has a {have} but no {lack}: connect "
                                 f"{lack}_{k} too, or disconnect {have}_{k}")
            if face is not None:
                faces.append(face)
                motions.append(motion)
        motions = equal_lengths(motions)
        speech = tuple((m.waveform, m.sample_rate) for m in motions
                       if isinstance(m, deferred.GeneratedMotion))
        return io.NodeOutput(ConversationScene(photos_scene(faces), SceneMotion(motions), speech))


def _ready(models, scene: ConversationScene) -> pipeline.JoyVASAModels:
    core = None
    for motion in scene.motion.motions:
        core = deferred.ready_for(models, motion, "liveportrait")
    return core


class JoyVASARenderConversation(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JoyVASARenderConversation",
            display_name="RenderConversation",
            category=CATEGORY,
            description="Animates every face of a Conversation with its own motion, all in one "
                        "batch per chunk, each pasted back into the photo through its own "
                        "feathered mask (later speakers over earlier ones where masks "
                        "overlap; pixels outside every face are the photo's). Outputs the "
                        "frames, their fps and the speakers' speech mixed into one track.",
            inputs=[Models.Input("models"), Scene.Input("scene"), *driving_inputs()],
            outputs=[io.Image.Output(display_name="images"),
                     io.Float.Output(display_name="fps"),
                     io.Audio.Output(display_name="audio")],
        )

    @classmethod
    def execute(cls, models, scene, animation_region, driving_option, relative_motion,
                stitching, driving_multiplier, batch_size) -> io.NodeOutput:
        n = scene.n_frames
        check_output_batch("RenderConversation", n, scene.photo.image.shape[:2],
                           "RenderConversationToFile")
        core = _ready(models, scene)
        progress = progress_bar(n)
        frames = convert.collect_frames(progress.previewing(pipeline.iter_frames(
            core, scene.source, scene.motion,
            driving_settings(animation_region, driving_option, relative_motion, stitching,
                             driving_multiplier),
            batch_size=batch_size, progress=progress)), n)
        waveform, rate = scene.mixed_speech()
        return io.NodeOutput(frames, scene.fps,
                             convert.audio_for_frames(waveform, rate, n, scene.fps))


class JoyVASARenderConversationToFile(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JoyVASARenderConversationToFile",
            display_name="RenderConversationToFile",
            category=CATEGORY,
            description="Renders a Conversation straight into an MP4 (H.264, and the "
                        "speakers' speech mixed into one AAC track) in the output folder, "
                        "chunk by chunk: memory stays flat however long the speech is.",
            inputs=[Models.Input("models"), Scene.Input("scene"), *driving_inputs(),
                    io.String.Input("filename_prefix", default="joyvasa/JoyVASA_conversation"),
                    io.Int.Input("crf", default=18, min=0, max=51,
                                 tooltip="H.264 quality: lower is better and larger")],
            outputs=[io.Video.Output(display_name="video")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, models, scene, animation_region, driving_option, relative_motion,
                stitching, driving_multiplier, batch_size, filename_prefix,
                crf) -> io.NodeOutput:
        core = _ready(models, scene)
        waveform, rate = scene.mixed_speech() if scene.speech else (None, None)
        target, file, subfolder = output_file(filename_prefix, ".mp4")
        progress = progress_bar(scene.n_frames)
        path = pipeline.render_to_file(
            core, scene.source, scene.motion, waveform, rate, target,
            driving_settings(animation_region, driving_option, relative_motion, stitching,
                             driving_multiplier),
            batch_size=batch_size, crf=crf, progress=progress, on_frames=progress.preview)
        preview = {"images": [{"filename": file, "subfolder": subfolder, "type": "output"}],
                   "animated": (True,)}
        return io.NodeOutput(VideoFromFile(str(path)), ui=preview)


NODES = [JoyVASAPreviewFaces, JoyVASAConversation, JoyVASARenderConversation,
         JoyVASARenderConversationToFile]
