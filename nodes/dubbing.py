"""Video dubbing nodes: a video's frames (or file) plus new speech -> the dubbed video.

Adapters over :mod:`joyvasa_core.dubbing`. ``JoyVASADubVideo`` takes the frames
the way users load videos (core LoadVideo + GetVideoComponents: IMAGE, AUDIO,
fps; or VideoHelperSuite's Load Video: IMAGE and fps) and gives back IMAGE
frames, their fps and the speech cut to them. ``JoyVASADubVideoToFile`` streams
a VIDEO (core LoadVideo) to an MP4 chunk by chunk without holding its frames.
Node IDs and input names are part of saved workflows: never rename them.
"""
from __future__ import annotations

import os
import tempfile

from joyvasa_core.driving import DRIVING_OPTIONS
from joyvasa_core.dubbing import DUBBING_DRIVING, DUBBING_REGIONS, dub_to_file, motion_for_video
from joyvasa_core.face.backends import BACKENDS as FACE_BACKENDS
from joyvasa_core.pipeline import iter_frames
from joyvasa_core.retime import LOOP_MODES, output_frame_count
from joyvasa_core.sources import open_frames, open_video
from joyvasa_core.video_source import check_images

from . import convert, deferred
from .api import CATEGORY, Models, Motion, Paste, VideoFromFile, io
from .companions import output_file
from .portrait import check_output_batch
from .progress import progress_bar


def dubbing_inputs() -> list:
    """Inputs shared by both dubbing nodes (after the source and the speech)."""
    return [
        io.Combo.Input("region", options=list(DUBBING_REGIONS), default="lip",
                       tooltip="lip: only the mouth follows the speech; exp: the expression; "
                               "all: expression and head turns (on the video's own motion)"),
        io.Combo.Input("loop", options=list(LOOP_MODES), default="pingpong",
                       tooltip="speech longer than the video: play it back and forth, or restart"),
        io.Combo.Input("face_backend", options=[b for b in FACE_BACKENDS if b != "none"],
                       default="auto", tooltip="face detector used to track the face"),
        io.Int.Input("face_index", default=0, min=0, max=63, tooltip="which face, largest first"),
        io.Combo.Input("driving_option", options=list(DRIVING_OPTIONS),
                       default="expression-friendly"),
        io.Boolean.Input("stitching", default=True,
                         tooltip="stitching network: keeps the face joined to each frame"),
        io.Float.Input("driving_multiplier", default=1.0, min=0.0, max=3.0, step=0.05),
        io.Int.Input("batch_size", default=8, min=1, max=256,
                     tooltip="frames decoded and rendered at once (memory vs speed)"),
    ]


def _settings(region, driving_option, stitching, driving_multiplier):
    from dataclasses import replace

    return replace(DUBBING_DRIVING, animation_region=region, driving_option=driving_option,
                   flag_stitching=stitching, driving_multiplier=driving_multiplier)


class JoyVASADubVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JoyVASADubVideo",
            display_name="DubVideo",
            category=CATEGORY,
            description="Puts new speech on a video: every frame keeps its own face and pose, "
                        "and the motion drives the chosen region. Frames without a face pass "
                        "through. Output at the video's fps for the length of the speech, "
                        "and where the crops go back (for PasteBack, after a face restorer "
                        "or an upscaler). A dub too long for memory is refused before it "
                        "starts: DubVideoToFile streams it.",
            inputs=[
                Models.Input("models"),
                io.Image.Input("images", tooltip="the video's frames (LoadVideo + "
                                                 "GetVideoComponents, or VHS Load Video)"),
                io.Float.Input("fps", default=25.0, min=1.0, max=240.0, step=0.001,
                               tooltip="the video's frame rate", force_input=True),
                Motion.Input("motion", tooltip="AudioToMotion of the speech"),
                io.Audio.Input("audio", tooltip="the speech: sets the length, passed through"),
                *dubbing_inputs(),
                io.Boolean.Input("paste_back", default=True, optional=True,
                                 tooltip="on: the whole frames; off: each frame's 512x512 "
                                         "face crop (restore or upscale it, then PasteBack)"),
            ],
            outputs=[io.Image.Output(display_name="images"),
                     io.Float.Output(display_name="fps"),
                     io.Audio.Output(display_name="audio"),
                     Paste.Output(display_name="paste",
                                  tooltip="where each frame's crop goes back: connect to "
                                          "PasteBack")],
        )

    @classmethod
    def execute(cls, models, images, fps, motion, audio, region, loop, face_backend,
                face_index, driving_option, stitching, driving_multiplier,
                batch_size, paste_back=True) -> io.NodeOutput:
        core = deferred.ready_for(models, motion, "liveportrait")
        waveform, sample_rate = convert.audio_clip(audio)
        seconds = waveform.shape[-1] / sample_rate
        check_images(images)
        check_output_batch("DubVideo", output_frame_count(seconds, float(fps)),
                           images.shape[1:3] if paste_back else None, "DubVideoToFile")
        with open_frames(core.liveportrait, images, float(fps), seconds, loop=loop,
                                face_backend=face_backend, face_index=face_index,
                                models_dir=core.models_dir,
                                progress=progress_bar(images.shape[0])) as video:
            n = len(video)
            frames = convert.collect_frames(iter_frames(
                core, video, motion_for_video(motion, video),
                _settings(region, driving_option, stitching, driving_multiplier),
                batch_size=batch_size, paste=paste_back, progress=progress_bar(n)), n)
            placement = video.placement()
        fps = float(fps)
        return io.NodeOutput(frames, fps, convert.audio_for_frames(waveform, sample_rate, n, fps),
                             placement)


class JoyVASADubVideoToFile(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JoyVASADubVideoToFile",
            display_name="DubVideoToFile",
            category=CATEGORY,
            description="Dubs a video file straight into an MP4 (H.264 + the speech as AAC) in "
                        "the output folder, decoding, rendering and encoding chunk by chunk: "
                        "memory stays flat however long the video is.",
            inputs=[
                Models.Input("models"),
                io.Video.Input("video", tooltip="core LoadVideo"),
                Motion.Input("motion", tooltip="AudioToMotion of the speech"),
                io.Audio.Input("audio", tooltip="the speech: sets the length, muxed as AAC"),
                *dubbing_inputs(),
                io.String.Input("filename_prefix", default="joyvasa/JoyVASA_dub"),
                io.Int.Input("crf", default=18, min=0, max=51,
                             tooltip="H.264 quality: lower is better and larger"),
            ],
            outputs=[io.Video.Output(display_name="video")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, models, video, motion, audio, region, loop, face_backend, face_index,
                driving_option, stitching, driving_multiplier, batch_size, filename_prefix,
                crf) -> io.NodeOutput:
        core = deferred.ready_for(models, motion, "liveportrait")
        waveform, sample_rate = convert.audio_clip(audio)
        seconds = waveform.shape[-1] / sample_rate
        target, file, subfolder = output_file(filename_prefix, ".mp4")
        with _video_path(video) as source:
            with open_video(core.liveportrait, source, seconds, loop=loop,
                            face_backend=face_backend, face_index=face_index,
                            models_dir=core.models_dir) as dub:
                path = dub_to_file(core, dub, motion, waveform, sample_rate, target,
                                   _settings(region, driving_option, stitching,
                                             driving_multiplier),
                                   batch_size=batch_size, crf=crf, progress=progress_bar(len(dub)))
        preview = {"images": [{"filename": file, "subfolder": subfolder, "type": "output"}],
                   "animated": (True,)}
        return io.NodeOutput(VideoFromFile(str(path)), ui=preview)


class _video_path:
    """The file behind a VIDEO input (a temporary copy when it lives in memory)."""

    def __init__(self, video):
        self.video, self.tmp = video, None

    def __enter__(self) -> str:
        if not hasattr(self.video, "get_stream_source"):
            raise ValueError(f"video must be a VIDEO (core LoadVideo), got "
                             f"{type(self.video).__name__}; connect a LoadVideo output")
        source = self.video.get_stream_source()
        if isinstance(source, (str, os.PathLike)):
            return str(source)
        fd, self.tmp = tempfile.mkstemp(suffix=".mp4")
        with os.fdopen(fd, "wb") as f:
            source.seek(0)
            f.write(source.read())
        return self.tmp

    def __exit__(self, *exc) -> None:
        if self.tmp is not None:
            os.unlink(self.tmp)


NODES = [JoyVASADubVideo, JoyVASADubVideoToFile]
