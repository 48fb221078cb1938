"""The four JoyVASA nodes: load models, prepare the portrait, speech -> motion, render.

Each node only adapts ComfyUI values to :mod:`joyvasa_core.pipeline` calls.
Node IDs and input names are part of saved workflows: never rename or reorder
them; add new inputs at the end, as optional inputs.
"""
from __future__ import annotations

from joyvasa_core import config, model_files, pipeline
from joyvasa_core.devices import DEVICE_CHOICES, PRECISION_CHOICES
from joyvasa_core.dit.denoiser import PE_VARIANTS
from joyvasa_core.dit.samplers import SAMPLERS
from joyvasa_core.settings import MotionSettings
from joyvasa_core.silence import SilenceGate
from joyvasa_core.driving import DRIVING_OPTIONS, REGIONS, DrivingSettings
from joyvasa_core.face.backends import BACKENDS as FACE_BACKENDS
from joyvasa_core.host_memory import check_frame_batch, frame_batch_bytes, gigabytes
from joyvasa_core.video import even_size
from . import convert, deferred, models
from .api import CATEGORY, Edit, Face, Models, Motion, Paste, io
from .progress import progress_bar


class LoadJoyVASAModels(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LoadJoyVASAModels",
            display_name="LoadJoyVASAModels",
            category=CATEGORY,
            description="Loads LivePortrait (human or animal) and the JoyVASA motion generator "
                        "from ComfyUI/models/joyvasa (the official pretrained_weights tree; "
                        "Kijai's safetensors in models/liveportrait also work). Missing files are "
                        "downloaded when online.",
            inputs=[
                io.Combo.Input("renderer", options=["human", "animal"], default="human",
                               tooltip="LivePortrait weights: liveportrait/ (human) or "
                                       "liveportrait_animals/ (animal)"),
                io.Combo.Input("motion_generator", options=models.motion_generator_choices(),
                               tooltip="checkpoint in models/joyvasa/JoyVASA/motion_generator"),
                io.Combo.Input("audio_encoder", options=list(model_files.AUDIO_ENCODER_REPOS),
                               default="chinese-hubert-base",
                               tooltip="the released motion generator was trained with "
                                       "chinese-hubert-base"),
                io.Combo.Input("motion_template", options=models.motion_template_choices(),
                               tooltip="de-normalisation statistics in "
                                       "models/joyvasa/JoyVASA/motion_template"),
                io.Combo.Input("precision", options=list(PRECISION_CHOICES), default="auto",
                               tooltip="auto: fp16 on GPUs (as the official LivePortrait), "
                                       "fp32 on the CPU (the motion generator always "
                                       "runs in fp32)"),
                io.Combo.Input("device", options=list(DEVICE_CHOICES), default="auto",
                               tooltip="auto: ComfyUI's device (honours --cpu)"),
            ],
            outputs=[Models.Output(display_name="models")],
        )

    @classmethod
    def execute(cls, renderer, motion_generator, audio_encoder, motion_template, precision,
                device) -> io.NodeOutput:
        loaded = models.load(variant=renderer, motion_generator=motion_generator,
                             audio_encoder=audio_encoder, motion_template=motion_template,
                             precision=precision, device=device)
        return io.NodeOutput(loaded)


class JoyVASAExtractFaceRepresentation(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JoyVASAExtractFaceRepresentation",
            display_name="ExtractFaceRepresentation",
            category=CATEGORY,
            description="Finds the face in the portrait, crops it the official LivePortrait "
                        "way and encodes it (appearance volume and keypoints).",
            inputs=[
                Models.Input("models"),
                io.Image.Input("image", tooltip="the portrait (first image of the batch)"),
                io.Combo.Input("face_backend", options=list(FACE_BACKENDS), default="auto",
                               tooltip="auto: the best detector whose files are present; "
                                       "none: a centred square crop"),
                io.Int.Input("face_index", default=0, min=0, max=63,
                             tooltip="which face: 0 = the first in face_order"),
                io.Float.Input("crop_scale", default=config.CROP_SCALE, min=1.0, max=4.0, step=0.05,
                               tooltip=f"crop side / face size (official {config.CROP_SCALE})"),
                io.Float.Input("vx_ratio", default=config.CROP_VX_RATIO, min=-1.0, max=1.0, step=0.005,
                               tooltip="horizontal shift of the crop, in face sizes"),
                io.Float.Input("vy_ratio", default=config.CROP_VY_RATIO, min=-1.0, max=1.0, step=0.005,
                               tooltip="vertical shift of the crop, in face sizes "
                                       f"(official {config.CROP_VY_RATIO})"),
                io.Combo.Input("face_order", options=list(FACE_ORDERS), default="largest first",
                               optional=True,
                               tooltip="how face_index counts: largest first, or left to "
                                       "right (the numbers PreviewFaces draws)"),
            ],
            outputs=[Face.Output(display_name="face"),
                     io.Image.Output(display_name="crop")],
        )

    @classmethod
    def execute(cls, models, image, face_backend, face_index, crop_scale, vx_ratio,
                vy_ratio, face_order="largest first") -> io.NodeOutput:
        core = models.ready("liveportrait")
        face = pipeline.extract_face(core, convert.first_image(image, what="portrait"),
                                     face_backend=face_backend, face_index=face_index,
                                     crop_scale=crop_scale, vx_ratio=vx_ratio, vy_ratio=vy_ratio,
                                     order=FACE_ORDERS[face_order])
        return io.NodeOutput(face, convert.uint8_to_image(face.crop.crop_512))


class JoyVASAAudioToMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JoyVASAAudioToMotion",
            display_name="AudioToMotion",
            category=CATEGORY,
            description="Generates head and face motion from speech with JoyVASA's diffusion "
                        f"transformer ({config.DEFAULT_FPS} frames per second). The audio is "
                        "checked here; the windows are sampled as the next node reads the "
                        "motion, so RenderToFile and RenderPortrait start after the first "
                        "window.",
            inputs=[
                Models.Input("models"),
                io.Audio.Input("audio", tooltip="one speech clip; any sample rate"),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF,
                             control_after_generate=True),
                io.Float.Input("cfg_scale", default=config.DEFAULT_CFG_SCALE, min=0.0, max=10.0, step=0.05,
                               tooltip=f"audio guidance (official {config.DEFAULT_CFG_SCALE})"),
                io.Combo.Input("sampler", options=list(SAMPLERS), default="ddpm",
                               tooltip="ddpm: the official sampler, every step of the "
                                       "checkpoint's schedule; ddim: 'steps' steps"),
                io.Int.Input("steps", default=0, min=0, max=1000,
                             tooltip="ddim steps; 0 = the checkpoint's own number"),
                io.Float.Input("smoothing", default=1.0, min=0.0, max=2.0, step=0.05,
                               tooltip="head-pose smoothing: 1 = official EMA, 0 = none"),
                io.Float.Input("pose_scale", default=1.0, min=0.0, max=3.0, step=0.05,
                               tooltip="head movement amplitude (1 = as generated)"),
                io.Float.Input("expression_scale", default=1.0, min=0.0, max=3.0, step=0.05,
                               tooltip="expression amplitude (1 = as generated)"),
                io.Combo.Input("pe_variant", options=list(PE_VARIANTS), default="head",
                               optional=True,
                               tooltip="positional encoding: head = the official fix of "
                                       "2025-12-09; legacy = the code the released weights "
                                       "were trained with"),
                io.Boolean.Input("silence_gate", default=True, optional=True,
                                 tooltip="hold the lips still, closed as in the source, where "
                                         "the speech is silent (off: the mouth as generated)"),
                io.Float.Input("silence_threshold", default=SilenceGate.threshold, min=0.0,
                               max=1.0, step=0.05, optional=True,
                               tooltip="speech probability from which 32 ms count as speech"),
                io.Float.Input("silence_ramp", default=SilenceGate.ramp, min=0.0, max=2.0,
                               step=0.02, optional=True,
                               tooltip="seconds over which the lips fade in and out of the hold"),
            ],
            outputs=[Motion.Output(display_name="motion")],
        )

    @classmethod
    def execute(cls, models, audio, seed, cfg_scale, sampler, steps, smoothing, pose_scale,
                expression_scale, pe_variant="head", silence_gate=True,
                silence_threshold=SilenceGate.threshold,
                silence_ramp=SilenceGate.ramp) -> io.NodeOutput:
        waveform, sample_rate = convert.audio_clip(audio)
        settings = MotionSettings(seed=seed, cfg_scale=cfg_scale, sampler=sampler,
                                  steps=steps or None, smoothing=smoothing, pose_scale=pose_scale,
                                  expression_scale=expression_scale, pe_variant=pe_variant)
        silence = SilenceGate(enabled=silence_gate, threshold=silence_threshold,
                              ramp=silence_ramp)
        motion = deferred.generated_motion(models, waveform, sample_rate, settings, silence)
        return io.NodeOutput(motion)


#: ExtractFaceRepresentation's face orders -> :func:`joyvasa_core.face.backends.detect_and_crop`'s.
FACE_ORDERS = {"largest first": "large-small", "left to right": "left-right"}


def driving_inputs() -> list:
    """Inputs shared by the renderers (names = :class:`DrivingSettings` options)."""
    return [
        io.Combo.Input("animation_region", options=list(REGIONS), default="all",
                       tooltip="which part of the face follows the motion"),
        io.Combo.Input("driving_option", options=list(DRIVING_OPTIONS),
                       default="expression-friendly"),
        io.Boolean.Input("relative_motion", default=True,
                         tooltip="motion relative to the first frame"),
        io.Boolean.Input("stitching", default=True,
                         tooltip="stitching network: keeps the shoulders still"),
        io.Float.Input("driving_multiplier", default=1.0, min=0.0, max=3.0, step=0.05),
        io.Int.Input("batch_size", default=8, min=1, max=256,
                     tooltip="frames rendered at once (memory vs speed)"),
    ]


def clip_edits(edit, motion):
    """An EDIT input made for the clip's length (None when not connected)."""
    return None if edit is None else edit.until(motion.duration)


def driving_settings(animation_region, driving_option, relative_motion, stitching,
                     driving_multiplier) -> DrivingSettings:
    return DrivingSettings(driving_option=driving_option, animation_region=animation_region,
                           flag_relative_motion=relative_motion, flag_stitching=stitching,
                           driving_multiplier=driving_multiplier)


class JoyVASARenderPortrait(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JoyVASARenderPortrait",
            display_name="RenderPortrait",
            category=CATEGORY,
            description="Animates the portrait with the motion: frames (pasted back into the "
                        "photo, or the 512x512 crop), their fps, the audio cut to the frames, "
                        "and where the crops go back (for PasteBack, after a face restorer or "
                        "an upscaler). A clip too long for memory is refused before it "
                        "renders: RenderToFile streams it.",
            inputs=[
                Models.Input("models"),
                Face.Input("face"),
                Motion.Input("motion"),
                io.Boolean.Input("paste_back", default=True,
                                 tooltip="on: the whole photo; off: the 512x512 face crop "
                                         "(restore or upscale it, then PasteBack)"),
                *driving_inputs(),
                io.Audio.Input("audio", optional=True,
                               tooltip="passed through, cut to the length of the frames"),
                Edit.Input("edit", optional=True,
                           tooltip="expression edits (ExpressionEdit, Blink, ExpressionFromImage)"),
            ],
            outputs=[io.Image.Output(display_name="images"),
                     io.Float.Output(display_name="fps"),
                     io.Audio.Output(display_name="audio"),
                     Paste.Output(display_name="paste",
                                  tooltip="where the crops go back: connect to PasteBack")],
        )

    @classmethod
    def execute(cls, models, face, motion, paste_back, animation_region, driving_option,
                relative_motion, stitching, driving_multiplier, batch_size,
                audio=None, edit=None) -> io.NodeOutput:
        core = deferred.ready_for(models, motion, "liveportrait")
        settings = driving_settings(animation_region, driving_option, relative_motion,
                                    stitching, driving_multiplier)
        n = len(motion)
        check_output_batch("RenderPortrait", n, face.image.shape[:2] if paste_back else None,
                           "RenderToFile")
        progress = progress_bar(n)
        frames = convert.collect_frames(progress.previewing(
            pipeline.iter_frames(core, face, motion, settings,
                                 batch_size=batch_size,
                                 paste=paste_back, progress=progress,
                                 edits=clip_edits(edit, motion))), n)
        fps = float(motion.fps)
        if audio is None:  # silence of the same length keeps the AUDIO socket valid
            waveform, sample_rate = frames.new_zeros((1, 0)), config.AUDIO_SAMPLE_RATE
        else:
            waveform, sample_rate = convert.audio_clip(audio)
        return io.NodeOutput(frames, fps, convert.audio_for_frames(waveform, sample_rate, n, fps),
                             face.placement())


def check_output_batch(node: str, count: int, size: tuple[int, int] | None,
                       streaming_node: str) -> None:
    """Refuse, before rendering, ``count`` output frames of ``size`` (height, width of
    the source; None: the 512x512 crops) that would not fit in host memory."""
    crop = config.CROP_DSIZE
    stream = f"use {streaming_node} (it streams to an MP4)"
    if size is None:
        check_frame_batch(count, crop, crop, what=f"{node}'s {crop}x{crop} crops",
                          fix=f"{stream}, or a shorter clip")
        return
    height, width = even_size(*size)
    crops = gigabytes(frame_batch_bytes(count, crop, crop))
    check_frame_batch(count, height, width, what=f"{node}'s images",
                      fix=f"{stream}, paste_back off for the {crop}x{crop} crops only "
                          f"({crops}), or a shorter clip")


NODES = [LoadJoyVASAModels, JoyVASAExtractFaceRepresentation, JoyVASAAudioToMotion,
         JoyVASARenderPortrait]
