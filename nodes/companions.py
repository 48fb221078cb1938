"""Companion nodes: motion files, a motion plot, video-driven motion, streaming render."""
from __future__ import annotations

import os
from pathlib import Path

import folder_paths

from joyvasa_core import config, pipeline
from joyvasa_core.motion import MotionSequence
from joyvasa_core.sources import motion_from_video, open_frames
from . import convert, deferred
from .api import CATEGORY, Edit, Face, Models, Motion, VideoFromFile, io
from .plot import plot_motion
from .portrait import FACE_BACKENDS, clip_edits, driving_inputs, driving_settings
from .progress import progress_bar

MOTION_SUFFIX = ".safetensors"
_OUTPUT_TAG = " [output]"


def motion_files() -> list[str]:
    """Motion files in ComfyUI's input folder, then those saved in its output folder
    (annotated ``name [output]`` as ComfyUI's own loaders do)."""
    found = []
    for folder, tag in ((folder_paths.get_input_directory(), ""),
                        (folder_paths.get_output_directory(), _OUTPUT_TAG)):
        root = Path(folder)
        if root.is_dir():
            found += sorted(p.relative_to(root).as_posix() + tag
                            for p in root.rglob("*" + MOTION_SUFFIX) if p.is_file())
    return found


def output_file(filename_prefix: str, suffix: str) -> tuple[str, str, str]:
    """(full path, file name, subfolder) of the next numbered file in ComfyUI's output folder."""
    folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
        filename_prefix, folder_paths.get_output_directory())
    file = f"{name}_{counter:05}_{suffix}"
    return os.path.join(folder, file), file, subfolder


class JoyVASASaveMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JoyVASASaveMotion",
            display_name="SaveMotion",
            category=CATEGORY,
            description="Saves a motion sequence to the output folder (.safetensors); "
                        "LoadMotion reads it back.",
            inputs=[Motion.Input("motion"),
                    io.String.Input("filename_prefix", default="joyvasa/motion")],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, motion, filename_prefix) -> io.NodeOutput:
        path, file, subfolder = output_file(filename_prefix, MOTION_SUFFIX)
        deferred.whole_motion(motion).save(path)
        return io.NodeOutput(ui={"motion_files": [{"filename": file, "subfolder": subfolder,
                                                   "type": "output"}]})


class JoyVASALoadMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JoyVASALoadMotion",
            display_name="LoadMotion",
            category=CATEGORY,
            description="Loads a motion sequence saved by SaveMotion (from the input folder, or "
                        "the output folder: 'name [output]').",
            inputs=[io.Combo.Input("motion_file", options=motion_files())],
            outputs=[Motion.Output(display_name="motion")],
        )

    @classmethod
    def execute(cls, motion_file) -> io.NodeOutput:
        return io.NodeOutput(MotionSequence.load(folder_paths.get_annotated_filepath(motion_file)))

    @classmethod
    def validate_inputs(cls, motion_file) -> bool | str:
        if not folder_paths.exists_annotated_filepath(motion_file):
            return (f"motion file not found: {motion_file}; put a .safetensors written by "
                    "SaveMotion in ComfyUI's input folder")
        return True


class JoyVASAMotionPreview(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JoyVASAMotionPreview",
            display_name="MotionPreview",
            category=CATEGORY,
            description="Plots head pose (pitch, yaw, roll) and mouth opening over time.",
            inputs=[Motion.Input("motion"),
                    io.Int.Input("width", default=1024, min=256, max=4096, step=8),
                    io.Int.Input("height", default=512, min=256, max=4096, step=8)],
            outputs=[io.Image.Output(display_name="plot")],
        )

    @classmethod
    def execute(cls, motion, width, height) -> io.NodeOutput:
        return io.NodeOutput(plot_motion(deferred.whole_motion(motion), width, height))


class JoyVASAMotionFromVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JoyVASAMotionFromVideo",
            display_name="MotionFromVideo",
            category=CATEGORY,
            description="Reads the motion of a driving video (its frames as an IMAGE batch) "
                        "with LivePortrait's motion extractor along the tracked face (the "
                        "same tracker as dubbing): LivePortrait's video-driven mode.",
            inputs=[
                Models.Input("models"),
                io.Image.Input("images", tooltip="the driving video's frames"),
                io.Float.Input("fps", default=float(config.DEFAULT_FPS), min=1.0, max=120.0, step=0.01,
                               tooltip="frame rate of the driving video"),
                io.Combo.Input("face_backend", options=list(FACE_BACKENDS), default="auto"),
                io.Int.Input("face_index", default=0, min=0, max=63),
                io.Float.Input("crop_scale", default=config.CROP_SCALE, min=1.0, max=4.0, step=0.05),
            ],
            outputs=[Motion.Output(display_name="motion")],
        )

    @classmethod
    def execute(cls, models, images, fps, face_backend, face_index,
                crop_scale) -> io.NodeOutput:
        if images.ndim != 4 or images.shape[0] == 0:
            raise ValueError(f"images must be a non-empty IMAGE batch [B, H, W, C]; "
                             f"got {tuple(images.shape)}")
        core = models.ready("liveportrait")
        with open_frames(core.liveportrait, images[..., :3], float(fps), None,
                         face_backend=face_backend, face_index=face_index,
                         models_dir=core.models_dir, crop_scale=crop_scale,
                         progress=progress_bar(images.shape[0])) as video:
            motion = motion_from_video(video, progress=progress_bar(len(video)))
        return io.NodeOutput(motion)


class JoyVASARenderToFile(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JoyVASARenderToFile",
            display_name="RenderToFile",
            category=CATEGORY,
            description="Renders straight into an MP4 (H.264 + AAC) in the output folder, chunk "
                        "by chunk: memory stays flat however long the speech is.",
            inputs=[
                Models.Input("models"),
                Face.Input("face"),
                Motion.Input("motion"),
                io.Boolean.Input("paste_back", default=True),
                *driving_inputs(),
                io.String.Input("filename_prefix", default="joyvasa/JoyVASA"),
                io.Int.Input("crf", default=18, min=0, max=51,
                             tooltip="H.264 quality: lower is better and larger"),
                io.Audio.Input("audio", optional=True, tooltip="muxed as AAC"),
                Edit.Input("edit", optional=True,
                           tooltip="expression edits (ExpressionEdit, Blink, ExpressionFromImage)"),
            ],
            outputs=[io.Video.Output(display_name="video")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, models, face, motion, paste_back, animation_region, driving_option,
                relative_motion, stitching, driving_multiplier, batch_size, filename_prefix, crf,
                audio=None, edit=None) -> io.NodeOutput:
        core = deferred.ready_for(models, motion, "liveportrait")
        waveform, sample_rate = convert.audio_clip(audio) if audio is not None else (None, None)
        target, file, subfolder = output_file(filename_prefix, ".mp4")
        progress = progress_bar(len(motion))
        path = pipeline.render_to_file(
            core, face, motion, waveform, sample_rate, target,
            driving_settings(animation_region, driving_option, relative_motion, stitching,
                             driving_multiplier),
            batch_size=batch_size, paste=paste_back, crf=crf, progress=progress,
            on_frames=progress.preview, edits=clip_edits(edit, motion))
        preview = {"images": [{"filename": file, "subfolder": subfolder, "type": "output"}],
                   "animated": (True,)}  # what ui.PreviewVideo serialises to
        return io.NodeOutput(VideoFromFile(str(path)), ui=preview)


NODES = [JoyVASASaveMotion, JoyVASALoadMotion, JoyVASAMotionPreview, JoyVASAMotionFromVideo,
         JoyVASARenderToFile]
