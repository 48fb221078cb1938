"""Video dubbing: a source video plus new speech -> the video speaking the speech.

The stages, each in its own module:

1. :mod:`~joyvasa_core.video_source`: decode the video chunk by chunk (upright,
   with timestamps);
2. :mod:`~joyvasa_core.face_track`: one pass finds the face crop of every
   frame (tracked, smoothed; frames without a face pass through);
3. the speech becomes 25 fps motion (:func:`joyvasa_core.pipeline.audio_to_motion`),
   resampled to the output frame times (:mod:`~joyvasa_core.retime`);
4. :func:`joyvasa_core.pipeline.iter_frames` renders each output frame from
   its own source frame (decoded again chunk by chunk, F and M batched), the
   motion driving one region as relative motion (LivePortrait's video editing,
   :mod:`~joyvasa_core.driving`), pasted back into that frame.

The output runs at the source's average frame rate (a variable-rate source
is written at constant rate), for exactly the speech's length: the source
plays ping-pong (or loops) when the speech is longer, and is cut when it is
shorter. Host memory holds one chunk of frames plus ~100 bytes per source
frame, whatever the length.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import config
from .driving import DrivingSettings
from .face_track import VideoFaces, track_faces
from .motion import MotionSequence
from .retime import LoopMode, output_frame_count, output_times, resample_motion
from .video_source import (DEFAULT_CHUNK, FrameReader, ImageFrames, VideoInfo, iter_images,
                           iter_video, probe_video)

Progress = Callable[[int, int], None]

#: Dubbing's default driving: only the mouth follows the speech (the eyes, brows
#: and head stay the video's own), stitched into each frame.
DUBBING_DRIVING = DrivingSettings(animation_region="lip")
#: Regions that make sense on a video (LivePortrait's video editing).
DUBBING_REGIONS = ("lip", "exp", "all")


def open_source_video(path: str | Path, speech_seconds: float, *, loop: LoopMode = "pingpong",
                      face_backend: str = "auto", face_index: int = 0,
                      models_dir: str | Path | None = None,
                      crop_scale: float = config.CROP_SCALE, box=None,
                      progress: Progress | None = None) -> VideoFaces:
    """Probe and track ``path``; the result renders ``speech_seconds`` of output frames.

    Use the returned :class:`VideoFaces` as a context manager (it keeps the file
    open for seeking). box: a fixed face box instead of tracking
    (:func:`~joyvasa_core.face_track.track_faces`). Raises the named errors of :mod:`joyvasa_core.video_source`
    and :class:`~joyvasa_core.face_track.NoFaceInVideoError`.
    """
    info: VideoInfo = probe_video(path)
    track = track_faces(iter_video(path, DEFAULT_CHUNK, info), info.fps,
                        face_backend=face_backend, models_dir=models_dir, face_index=face_index,
                        crop_scale=crop_scale, name=str(path), progress=progress,
                        expected_frames=info.frame_count, box=box)
    return VideoFaces(FrameReader(info.path, info, track.pts), info.fps, track,
                      output_frame_count(speech_seconds, info.fps), loop)


def open_source_frames(images, fps: float, speech_seconds: float, *,
                       loop: LoopMode = "pingpong", face_backend: str = "auto",
                       face_index: int = 0, models_dir: str | Path | None = None,
                       crop_scale: float = config.CROP_SCALE, box=None,
                       progress: Progress | None = None) -> VideoFaces:
    """:func:`open_source_video` for frames already in memory: IMAGE [N, H, W, 3] at ``fps``."""
    track = track_faces(iter_images(images, fps), fps, face_backend=face_backend,
                        models_dir=models_dir, face_index=face_index, crop_scale=crop_scale,
                        name="the video frames", progress=progress,
                        expected_frames=int(images.shape[0]), box=box)
    return VideoFaces(ImageFrames(images), fps, track, output_frame_count(speech_seconds, fps), loop)


def motion_for_video(motion: MotionSequence, video: VideoFaces) -> MotionSequence:
    """The generated motion at the output frame times of ``video`` (interpolated)."""
    fps = video.fps
    return resample_motion(motion, output_times(0, len(video), fps), fps)


def dub_to_file(models, video: VideoFaces, motion: MotionSequence, waveform, sample_rate: int,
                output_path: str | Path, driving: DrivingSettings = DUBBING_DRIVING, *,
                batch_size: int | None = None, paste: bool = True, crf: int = 18,
                render_options=None, progress: Progress | None = None, edits=None) -> Path:
    """Render the dubbed video to an MP4 (H.264 at the source's rate, the speech as AAC).

    motion: the generated 25 fps motion of the speech (resampled here); paste=False
    writes the 512 face crops instead of the full frames; edits: expression edits
    (:class:`joyvasa_core.edits.Edits`), evaluated at the output frames' times.
    """
    from .pipeline import render_to_file

    return render_to_file(models, video, motion_for_video(motion, video), waveform, sample_rate,
                          output_path, driving, batch_size=batch_size, paste=paste, crf=crf,
                          render_options=render_options, progress=progress, edits=edits)
