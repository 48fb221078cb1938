"""DeferredMotion (nodes/deferred.py): a clip's motion sampled as it is read, then replayed.

Tiny real-architecture motion generator (10-frame windows) on real-looking speech; the
pack is imported as ComfyUI imports it (the ComfyUI-compatible runtime).
"""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

import helpers_comfy as hc
import helpers_pipeline as hp
from joyvasa_core import generate, pipeline
from joyvasa_core.audio import AudioError
from joyvasa_core.motion import MotionSequence, MotionStream
from joyvasa_core.settings import MotionSettings

SETTINGS = MotionSettings(sampler="ddim", steps=2, seed=5, pose_scale=0.6, expression_scale=1.4)


@pytest.fixture(scope="module")
def DeferredMotion():
    hc.load_pack()
    import importlib

    return importlib.import_module(f"{str(hc.PACK_DIR).replace('.', '_x_')}.nodes.deferred").DeferredMotion


@pytest.fixture(scope="module")
def models() -> pipeline.JoyVASAModels:
    return hp.fast_models()


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return hp.speech_like(1.3)     # 35 frames: 4 windows of the tiny generator


@pytest.fixture(scope="module")
def whole(models, speech) -> MotionSequence:
    return pipeline.audio_to_motion(models, speech, 16000, SETTINGS)


class Counting:
    """``open_stream`` for a DeferredMotion that counts streams opened and windows sampled."""

    def __init__(self, models, speech, monkeypatch):
        self.opened, self.windows = 0, 0
        self.models, self.speech = models, speech
        sample = generate.WindowSampler.__call__

        def counted(sampler, feat, keep):
            self.windows += 1
            return sample(sampler, feat, keep)
        monkeypatch.setattr(generate.WindowSampler, "__call__", counted)

    def __call__(self, progress):
        self.opened += 1
        return pipeline.audio_motion_stream(self.models, self.speech, 16000, SETTINGS,
                                            progress=progress)


def assert_same(a: MotionSequence, b: MotionSequence) -> None:
    assert a.fps == b.fps and len(a) == len(b)
    for name in MotionSequence._TENSORS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_chunks_join_to_audio_to_motion_and_replay_without_sampling(DeferredMotion, models, speech,
                                                                     whole, monkeypatch):
    counting = Counting(models, speech, monkeypatch)
    motion = DeferredMotion(counting)
    assert counting.opened == 1 and counting.windows == 0          # nothing sampled yet
    assert motion.pending and len(motion) == motion.n_frames == len(whole) == 35
    assert motion.fps == whole.fps and motion.duration == pytest.approx(whole.duration)

    steps = []
    first = motion.chunks(progress=lambda done, total: steps.append((done, total)))
    chunk = next(first)
    assert counting.windows == 1 and len(chunk) == 10 and motion.pending   # one window so far
    assert steps == [(1, 8), (2, 8)]            # the read's progress: 2 steps of 4 windows
    chunks = [chunk, *first]
    assert counting.windows == 4 and not motion.pending
    assert_same(MotionSequence.cat(chunks), whole)

    replayed = list(motion)                     # iteration = chunks(): a replay
    assert counting.opened == 1 and counting.windows == 4
    assert all(a is b for a, b in zip(replayed, chunks)) and len(replayed) == len(chunks)
    joined = motion.sequence()
    assert_same(joined, whole)
    assert motion.sequence() is joined and counting.windows == 4
    assert list(motion.stream())[0] is chunks[0]      # a Motion: its stream replays too


def test_an_abandoned_read_keeps_nothing_and_the_next_read_samples_afresh(DeferredMotion, models,
                                                                         speech, whole, monkeypatch):
    counting = Counting(models, speech, monkeypatch)
    motion = DeferredMotion(counting)
    for chunk in motion:
        break                                    # abandoned after the first window
    assert motion.pending and counting.windows == 1

    def cancel(done, total):
        if done == 3:
            raise KeyboardInterrupt("cancel")   # a cancel in window 1's sampling
    with pytest.raises(KeyboardInterrupt):
        list(motion.chunks(progress=cancel))
    assert motion.pending and counting.opened == 2 and counting.windows == 3

    assert_same(motion.sequence(), whole)       # a fresh stream, same seed: the same motion
    assert counting.opened == 3 and counting.windows == 7 and not motion.pending


def test_renders_as_a_stream_with_its_frame_count(DeferredMotion, models, speech, whole):
    face = pipeline.extract_face(models, np.full((96, 80, 3), 128, np.uint8), face_backend="none")
    motion = DeferredMotion(partial(pipeline.audio_motion_stream, models, speech, 16000, SETTINGS))
    totals = []
    frames = pipeline.iter_frames(models, face, motion, paste=False,
                                  progress=lambda done, total: totals.append(total))
    first = next(frames)
    assert motion.pending and first.shape[0] == 1     # the first frame before the last window
    assert set(totals) == {35}                          # the bar's total: the clip's frames
    frames.close()                                      # the render abandoned: nothing kept
    assert motion.pending
    expected = next(pipeline.iter_frames(models, face, whole[:1], paste=False))
    assert torch.equal(first, expected)


def test_bad_audio_raises_at_construction(DeferredMotion, models):
    with pytest.raises(AudioError, match="no samples"):
        DeferredMotion(partial(pipeline.audio_motion_stream, models, np.zeros(0, np.float32), 16000))
    with pytest.raises(AudioError):
        DeferredMotion(partial(pipeline.audio_motion_stream, models, np.zeros(8000, np.float32), 16000))


def test_a_stream_of_unknown_length_is_refused(DeferredMotion):
    with pytest.raises(ValueError, match="known length"):
        DeferredMotion(lambda progress: MotionStream(iter(()), fps=25.0, n_frames=None))
