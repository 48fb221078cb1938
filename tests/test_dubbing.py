"""Video dubbing end to end with tiny networks: a real clip (the astronaut drifting over a
canvas, one cutaway) and real espeak-ng speech longer than the clip."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import helpers_pipeline as hp
import helpers_video as hv
from joyvasa_core import pipeline, retime
from joyvasa_core import video_source as vs
from joyvasa_core.audio import load_audio_file
from joyvasa_core.dubbing import DUBBING_DRIVING, motion_for_video
from joyvasa_core.face import mtcnn
from joyvasa_core.face.image_io import to_uint8
from joyvasa_core.settings import MotionSettings
from joyvasa_core.sources import open_video

pytestmark = [
    pytest.mark.skipif(not mtcnn.available(), reason="no-download face detector missing"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed"),
]
SOURCE_FRAMES, CUTAWAY = 5, 3


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dub")
    frames = hv.drifting_astronaut(SOURCE_FRAMES, cutaways=(CUTAWAY,))
    video = hv.write_clip(folder / "astronaut.mp4", frames)
    speech = hv.espeak_wav(folder / "speech.wav", "Hi.")
    return video, speech


@pytest.fixture(scope="module")
def dubbed(clip):
    """(output frames uint8 [T, H, W, 3], decoded source frames, the VideoSource, seconds of speech)."""
    video_path, speech = clip
    models = hp.fast_models()
    wave, rate = load_audio_file(speech)
    seconds = wave.shape[-1] / rate
    motion = pipeline.audio_to_motion(models, wave, rate, MotionSettings(sampler="ddim", steps=2))
    source = np.concatenate([c.frames.numpy() for c in vs.iter_video(video_path)])
    with open_video(models.liveportrait, video_path, seconds, face_backend="mtcnn") as video:
        out = torch.cat([to_uint8(f) for f in pipeline.iter_frames(
            models, video, motion_for_video(motion, video), DUBBING_DRIVING, batch_size=4)])
    return out.numpy(), source, video, seconds


def test_length_and_pingpong_order_frame_by_frame(dubbed):
    out, source, video, seconds = dubbed
    assert len(out) == retime.output_frame_count(seconds, 25.0) > 2 * SOURCE_FRAMES
    expected = retime.playback_indices(len(out), SOURCE_FRAMES, "pingpong").tolist()
    assert expected[:11] == [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2]
    # the bottom rows (a bar as long as the frame number) are far from the face
    for k, i in enumerate(expected):
        assert np.array_equal(out[k, -8:], source[i, -8:]), k


def _crop_box(video, i: int, margin: int = 2) -> tuple[slice, slice]:
    """Pixel box around the crop square of source frame i (paste-back touches nothing else)."""
    corners = np.array([[0, 0, 1], [512, 0, 1], [0, 512, 1], [512, 512, 1]], float)
    pts = corners @ np.linalg.inv(video.track.M_o2c[i]).T
    (x0, y0), (x1, y1) = pts[:, :2].min(0) - margin, pts[:, :2].max(0) + margin
    return slice(max(0, int(y0)), int(np.ceil(y1))), slice(max(0, int(x0)), int(np.ceil(x1)))


def test_outside_the_face_identical_and_face_rerendered(dubbed):
    out, source, video, _ = dubbed
    order = retime.playback_indices(len(out), SOURCE_FRAMES, "pingpong").tolist()
    changed = 0
    for k, i in enumerate(order):
        frame, src = out[k, :200, :232].astype(int), source[i].astype(int)
        if i == CUTAWAY:                         # no face: passes through unchanged
            assert np.array_equal(frame, src), k
            continue
        ys, xs = _crop_box(video, i)
        outside = np.ones(src.shape[:2], bool)
        outside[ys, xs] = False
        assert np.array_equal(frame[outside], src[outside]), k
        changed += np.abs(frame[ys, xs] - src[ys, xs]).mean() > 2.0
    assert changed == sum(i != CUTAWAY for i in order)

