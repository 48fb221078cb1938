"""joyvasa_core/sources.py: photo and video sources behind one protocol, read by the pipeline
without asking which kind it has; a driving video's motion read through M along its track."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import helpers_pipeline as hp
import helpers_video as hv
from joyvasa_core import pipeline
from joyvasa_core.face.backends import letterbox_o2c
from joyvasa_core.face_track import crop_for_models
from joyvasa_core.motion import MotionSequence, MotionStream
from joyvasa_core.sources import PhotoSource, VideoSource, motion_from_video, open_frames
from joyvasa_core.settings import MotionSettings


@pytest.fixture(scope="module")
def models() -> pipeline.JoyVASAModels:
    return hp.fast_models()


@pytest.fixture(scope="module")
def motion(models) -> MotionSequence:
    return pipeline.audio_to_motion(models, hp.speech_like(0.5), 16000,
                                    MotionSettings(sampler="ddim", steps=2, seed=2))


class Counting:
    """A third kind of source: any object with ``open_stream`` (here wrapping a photo)."""

    def __init__(self, inner):
        self.inner, self.opened, self.driven = inner, 0, []

    def open_stream(self, reference, driving, retargeting):
        self.opened += 1
        stream = self.inner.open_stream(reference, driving, retargeting)
        outer = self

        class Stream:
            def drive(self, start, stop, rows, edit):
                outer.driven.append((start, stop, len(rows)))
                return stream.drive(start, stop, rows, edit)

            def paste(self, chunk, crops):
                return stream.paste(chunk, crops)
        return Stream()


def test_the_pipeline_reads_any_source_through_the_protocol(models, motion):
    face = pipeline.extract_face(models, np.full((72, 64, 3), 120, np.uint8), face_backend="none")
    assert isinstance(face, PhotoSource)
    counting = Counting(face)
    chunks = [motion[i:i + 4] for i in range(0, len(motion), 4)]
    stream = MotionStream(chunks, fps=motion.fps, n_frames=len(motion))
    got = pipeline.driving_keypoints(models, counting, stream, batch_size=3)
    expected = pipeline.driving_keypoints(models, face, motion, batch_size=256)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert counting.opened == 1                                      # once per motion stream
    assert [d[:2] for d in counting.driven][:3] == [(0, 3), (3, 4), (4, 7)]   # chunk by chunk
    assert all(n == stop - start + 1 for start, stop, n in counting.driven)  # + the reference row


def test_a_video_source_encodes_each_output_frame_its_own_source(models):
    frames = torch.from_numpy(hv.drifting_astronaut(6, cutaways=(2,)))
    with open_frames(models.liveportrait, frames, 25.0, 0.4, face_backend="none") as video:
        assert isinstance(video, VideoSource) and len(video) == 10    # 0.4 s at 25 fps
        assert video.source_indices(0, 10).tolist() == [0, 1, 2, 3, 4, 5, 4, 3, 2, 1]
        chunk = video.chunk(4, 8)                                     # frames 4 5 4 3
        assert chunk.feature_3d.shape[0] == chunk.x_s.shape[0] == 4
        assert torch.equal(chunk.background[0], chunk.background[2])  # the same decoded frame
        assert chunk.active.tolist() == [True] * 4                    # 'none': whole frames
        feature, info = models.liveportrait.encode(crop_for_models(frames[[4, 5, 4, 3]],
                                                                   video.track.M_o2c[[4, 5, 4, 3]]))
        torch.testing.assert_close(chunk.feature_3d, feature)
        torch.testing.assert_close(chunk.info.exp, info.exp)


def test_motion_from_a_tracked_video_is_m_along_the_track(models):
    frames = torch.from_numpy(hv.drifting_astronaut(7))
    with open_frames(models.liveportrait, frames, 30.0, None, face_backend="none") as video:
        assert len(video) == 7                                        # its own length
        steps = []
        motion = motion_from_video(video, batch_size=3,
                                   progress=lambda d, t: steps.append((d, t)))
    assert len(motion) == 7 and motion.fps == 30.0 and steps == [(3, 7), (6, 7), (7, 7)]
    m = np.repeat(letterbox_o2c(200, 232, 512)[None], 7, axis=0)
    info = models.liveportrait.keypoints(crop_for_models(frames, m))
    for name in ("exp", "scale", "t", "pitch", "yaw", "roll"):   # batches of 3 vs 7: float32 rounding
        torch.testing.assert_close(getattr(motion, name), getattr(info, name).cpu(),
                                   rtol=1e-5, atol=1e-4)
