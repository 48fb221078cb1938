"""Video dubbing: a source video plus new speech -> the video speaking the speech.

The stages, each in its own module:

1. :mod:`~joyvasa_core.video_source`: decode the video chunk by chunk (upright,
   with timestamps);
2. :mod:`~joyvasa_core.face_track`: one pass finds the face crop of every
   frame (tracked, smoothed; frames without a face pass through), and
   :func:`joyvasa_core.sources.open_video` makes it a
   :class:`~joyvasa_core.sources.VideoSource`;
3. the speech becomes a 25 fps motion stream
   (:func:`joyvasa_core.pipeline.audio_motion_stream`), resampled to the output
   frame times as it is read (:func:`motion_for_video`, :mod:`~joyvasa_core.retime`);
4. :func:`joyvasa_core.pipeline.iter_frames` renders each output frame from
   its own source frame (decoded again chunk by chunk, F and M batched), the
   motion driving one region as relative motion (LivePortrait's video editing,
   :func:`~joyvasa_core.driving.compose_video_keypoints`), pasted back into that frame.

The output runs at the source's average frame rate (a variable-rate source
is written at constant rate), for exactly the speech's length: the source
plays ping-pong (or loops) when the speech is longer, and is cut when it is
shorter. Host memory holds one chunk of frames plus ~100 bytes per source
frame, whatever the length.
"""
from __future__ import annotations

from pathlib import Path

from .driving import DrivingSettings
from .motion import Motion, MotionStream
from .retime import resample_stream
from .sources import VideoSource

#: Dubbing's default driving: only the mouth follows the speech (the eyes, brows
#: and head stay the video's own), stitched into each frame.
DUBBING_DRIVING = DrivingSettings(animation_region="lip")
#: Regions that make sense on a video (LivePortrait's video editing).
DUBBING_REGIONS = ("lip", "exp", "all")


def motion_for_video(motion: Motion, video: VideoSource) -> MotionStream:
    """The generated motion at the output frame times of ``video`` (interpolated as its
    stream is read: :func:`~joyvasa_core.retime.resample_stream`)."""
    return resample_stream(motion.stream(), len(video), video.fps)


def dub_to_file(models, video: VideoSource, motion: Motion, waveform, sample_rate: int,
                output_path: str | Path, driving: DrivingSettings = DUBBING_DRIVING,
                **render) -> Path:
    """Render the dubbed video to an MP4 (H.264 at the source's rate, the speech as AAC).

    motion: the generated 25 fps motion of the speech (a sequence or a stream;
    resampled here as it is read); render: the keyword options of
    :func:`joyvasa_core.pipeline.render_to_file` (``paste=False`` writes the 512
    face crops instead of the full frames; ``edits`` are evaluated at the output
    frames' times).
    """
    from .pipeline import render_to_file

    return render_to_file(models, video, motion_for_video(motion, video), waveform, sample_rate,
                          output_path, driving, **render)
