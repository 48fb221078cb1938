"""Real test clips: skimage's astronaut drifting over a canvas, written with PyAV.

:func:`drifting_astronaut` makes the frames (a moving face, optionally with
face-free cutaway frames); :func:`write_clip` encodes them near-losslessly as
H.264 in MP4 at a constant rate, at given timestamps (variable frame rate) or
with a display-matrix rotation (a phone video); :func:`espeak_wav` speaks real
audio.
"""
from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def drifting_astronaut(n: int, height: int = 200, width: int = 232, step: int = 3,
                       cutaways: tuple[int, ...] = ()) -> np.ndarray:
    """[n, height, width, 3] uint8: the astronaut's head (160 px) sliding right by ``step``
    px per frame on a grey canvas; frames in ``cutaways`` are plain canvas (no face).
    The bottom 8 rows hold a white bar 6 * (i + 1) px long: frame i is recognisable
    far from the face."""
    import cv2
    import skimage.data

    head = cv2.resize(skimage.data.astronaut()[:300, 80:380], (160, 160),
                      interpolation=cv2.INTER_AREA)
    frames = np.full((n, height, width, 3), 90, np.uint8)
    for i in range(n):
        if i in cutaways:
            frames[i, :, :, 1] = 140          # a different shot: green-grey, no face
            continue
        x, y = 10 + step * i, 20
        frames[i, y:y + 160, x:x + 160] = head
    for i in range(n):
        frames[i, -8:, :6 * (i + 1)] = 255
    return frames


def write_clip(path: Path, frames: np.ndarray, fps: float = 25.0,
               times: np.ndarray | None = None, rotation: int = 0,
               audio: tuple[np.ndarray, int] | None = None, faststart: bool = False) -> Path:
    """Encode ``frames`` [n, H, W, 3] uint8 as H.264 (crf 0) MP4.

    times: seconds of each frame (variable frame rate, millisecond time base),
    else a constant ``fps``. rotation: display matrix, degrees counter-clockwise
    (what players turn the stored pixels by). audio: ([N] float, rate) as AAC.
    faststart: the index (moov) before the frames, as web videos have it.
    """
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as out:
        rate = Fraction(fps).limit_denominator(1001) if times is None else Fraction(1000)
        stream = out.add_stream("libx264", rate=rate, options={"crf": "0", "preset": "ultrafast"})
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv444p"
        stream.time_base = 1 / rate
        if rotation:
            stream.set_display_rotation(rotation)
        astream = None
        if audio is not None:
            astream = out.add_stream("aac", rate=audio[1])
            astream.layout = "mono"
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = i if times is None else int(round(times[i] * 1000))
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if astream is not None:
            wave = np.asarray(audio[0], np.float32)[None]
            frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
            frame.sample_rate = audio[1]
            out.mux(astream.encode(frame))
            out.mux(astream.encode(None))
    return path


def write_zero_frame_video(path: Path) -> Path:
    """A Matroska file whose H.264 video track never got a frame, beside 1 s of silent AAC
    (Matroska keeps such a track; MP4 would drop it)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        audio = out.add_stream("aac", rate=16000)
        audio.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate = 16000
        out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
        out.mux(stream.encode(None))
    return path


def espeak_wav(path: Path, text: str) -> Path:
    """``text`` spoken by espeak-ng into a WAV file (22.05 kHz mono)."""
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    return path
