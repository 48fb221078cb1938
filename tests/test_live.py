"""Live sessions on tiny real-architecture models: exact mode equals offline, low-latency cadence,
and an agent's avatar: replies, idle frames, interrupts, and the sound each batch carries."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import helpers_pipeline as hp
from joyvasa_core import pipeline
from joyvasa_core.audio import AudioError, plan_windows
from joyvasa_core.edits import build_edits
from joyvasa_core.live import LIVE_MOTION, LiveCancelled, LiveSession, LiveSettings
from joyvasa_core.motion import MotionSequence
from joyvasa_core.settings import MotionSettings
from joyvasa_core.silence import NO_GATE
from joyvasa_core.sources import PhotoSource
from joyvasa_core.video import frames_to_uint8_tensor

N_MOTIONS = hp.htm.TINY_GENERATOR_ARGS["n_motions"]   # 10 frames per window


@pytest.fixture(scope="module")
def models() -> pipeline.JoyVASAModels:
    return hp.fast_models()


@pytest.fixture(scope="module")
def face(models) -> PhotoSource:
    import skimage.data
    from skimage.transform import resize

    photo = resize(skimage.data.astronaut()[:400, 40:350], (63, 49), anti_aliasing=True)
    return pipeline.extract_face(models, (photo * 255).round().astype(np.uint8), face_backend="none")


def push_all(session: LiveSession, pcm: np.ndarray, rate: int, size: int) -> tuple[list, list[int]]:
    """Push ``pcm`` in chunks of ``size``; returns the frame batches and the frames out after each push."""
    batches, counts = [], []
    for start in range(0, len(pcm), size):
        batches += list(session.push(pcm[start:start + size], rate))
        counts.append(sum(len(b) for b in batches))
    batches += list(session.finish())
    return batches, counts


def test_exact_mode_equals_offline(models, face, monkeypatch):
    """Windows sampled once their audio is complete: the offline frames, and every window's frames
    out before finish() except the last window's. Bit for bit (16 kHz input) when offline encodes
    one window at a time, as live must; with offline's batches of 8 windows the audio encoder's
    float32 reordering (~1e-6 in the features) moves a few pixels by one level at most."""
    import joyvasa_core.generate as gen
    from joyvasa_core import render

    monkeypatch.setattr(render, "CPU_CHUNK_FRAMES", 64)   # chunks of batch_size, as on a GPU
    speech = hp.speech_like(0.9, seed=1)
    n_frames = plan_windows(len(speech), fps=25, n_motions=N_MOTIONS).n_frames    # 25
    motion = MotionSettings(sampler="ddim", steps=3, seed=7)
    settings = LiveSettings(motion=motion, mode="exact", batch_size=5, silence=NO_GATE)
    session = LiveSession(models, face, settings)
    batches, counts = push_all(session, speech, 16000, 1111)
    assert counts[-1] == 2 * N_MOTIONS and counts[0] == 0       # two full windows before the end
    assert [b.start for b in batches] == list(range(0, n_frames, 5))
    assert batches[1].times == [i / 25 for i in range(5, 10)]
    live = torch.cat([b.images for b in batches])

    def offline() -> torch.Tensor:
        whole = pipeline.audio_to_motion(models, speech, 16000, motion, silence=NO_GATE)
        return torch.cat([frames_to_uint8_tensor(f).cpu()
                          for f in pipeline.iter_frames(models, face, whole, batch_size=5)])

    batched = offline()
    assert live.shape == batched.shape == (n_frames, 64, 50, 3)
    diff = (live.int() - batched.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-2
    monkeypatch.setattr(gen, "ENCODE_BATCH", 1)
    assert torch.equal(live, offline())


def test_live_edits_render_as_offline(models, face):
    """Blinks, eye contact and slider edits apply to a live stream as to the same motion offline."""
    settings = LiveSettings(motion=MotionSettings(sampler="ddim", steps=2, seed=3), mode="exact",
                            batch_size=5, edits=build_edits("smile=0.8", "0.2s", seed=3,
                                                            eye_contact=1.0))
    motion = []
    session = LiveSession(models, face, settings, on_motion=motion.append)
    live = torch.cat([b.images for b in push_all(session, hp.speech_like(0.9, seed=2), 16000, 4000)[0]])
    whole = MotionSequence.cat(motion)
    offline = torch.cat([frames_to_uint8_tensor(f).cpu() for f in pipeline.iter_frames(
        models, face, whole, batch_size=5, edits=settings.edits)])
    plain = torch.cat([frames_to_uint8_tensor(f).cpu() for f in pipeline.iter_frames(
        models, face, whole, batch_size=5)])
    assert torch.equal(live, offline)
    assert ((live.int() - plain.int()).abs().amax(dim=(1, 2, 3)) > 0).all()   # every frame edited


def test_low_latency_commits_chunks_as_audio_arrives(models, face):
    """A step commits ``chunk`` frames once the audio reaches ``lookahead`` frames beyond them;
    the stream ends with the offline frame count, and the same speech gives the same frames
    however it is chunked."""
    speech = hp.speech_like(0.5, seed=2)
    n_frames = plan_windows(len(speech), fps=25, n_motions=N_MOTIONS).n_frames    # 15
    settings = LiveSettings(motion=replace(LIVE_MOTION, steps=2), chunk=4, lookahead=2)
    session = LiveSession(models, face, settings)
    batches, counts = push_all(session, speech, 16000, 640)    # one frame of audio per push
    # after k pushes, 1280 + 640 k padded samples are known: frames committed = 4 * floor((k + 2 - 2) / 4)
    assert counts == [4 * ((k + 2 - 2) // 4) for k in range(1, len(counts) + 1)]
    assert sum(len(b) for b in batches) == n_frames == session.rendered
    again, _ = push_all(LiveSession(models, face, settings), speech, 16000, 3000)
    assert torch.equal(torch.cat([b.images for b in again]), torch.cat([b.images for b in batches]))


def test_pushed_pcm_is_resampled_incrementally(models, face):
    """int16 PCM at 44.1 kHz in uneven chunks: the same frames as one soxr HQ resampling of the whole."""
    import soxr

    speech = hp.speech_like(0.4, rate=44100, seed=3)
    pcm = (speech * 32767).astype(np.int16)
    settings = LiveSettings(motion=replace(LIVE_MOTION, steps=2), chunk=5)
    pushed, _ = push_all(LiveSession(models, face, settings), pcm, 44100, 4567)
    whole = soxr.resample(pcm.astype(np.float32) / 32768, 44100, 16000, quality="HQ")
    reference, _ = push_all(LiveSession(models, face, settings), whole, 16000, len(whole))
    assert sum(map(len, pushed)) == plan_windows(len(whole), fps=25, n_motions=N_MOTIONS).n_frames
    assert torch.equal(torch.cat([b.images for b in pushed]), torch.cat([b.images for b in reference]))


def test_bad_input_and_cancel(models, face):
    two_steps = replace(LIVE_MOTION, steps=2)
    session = LiveSession(models, face, LiveSettings(motion=two_steps, chunk=2, lookahead=0))
    list(session.push(np.zeros(10, np.int16), 16000))
    with pytest.raises(AudioError, match="sample rate is 16000"):
        session.push(np.zeros(10, np.int16), 48000)
    with pytest.raises(AudioError, match="NaN"):
        session.push(np.array([0.0, np.nan], np.float32), 16000)
    frames = session.push(hp.speech_like(0.3), 16000)
    session.cancel()
    with pytest.raises(LiveCancelled):
        list(frames)
    assert list(LiveSession(models, face).finish()) == []        # no speech, no frames
    done = LiveSession(models, face)
    list(done.finish())
    with pytest.raises(ValueError, match="finished"):
        done.push(np.zeros(4, np.int16), 16000)
    for bad in (dict(mode="fast"), dict(chunk=0), dict(chunk=True), dict(lookahead=-1)):
        with pytest.raises(ValueError):
            LiveSettings(**bad)
    for bad in (dict(steps=0), dict(seed=1.5)):          # the motion settings check themselves
        with pytest.raises(ValueError):
            replace(LIVE_MOTION, **bad)
    for bad in (dict(expression="smiel=1"), dict(eye_contact=2.5)):   # and the edits theirs
        with pytest.raises(ValueError):
            build_edits(**bad)
    assert LiveSettings().motion == LIVE_MOTION == MotionSettings(sampler="ddim", steps=10)
    motion = []
    quiet = LiveSession(models, face, LiveSettings(motion=two_steps, chunk=4, lookahead=1),
                        on_motion=motion.append, render=False)
    assert list(quiet.push(hp.speech_like(0.2), 16000)) == [] and [len(m) for m in motion] == [4]
    with pytest.raises(ValueError, match="one window of 10 frames"):
        LiveSession(models, face, LiveSettings(chunk=9, lookahead=2))


FAST_LIVE = LiveSettings(motion=replace(LIVE_MOTION, steps=2), chunk=4, lookahead=2)
LIPS = [6, 12, 14, 17, 19, 20]


def frames_of(batches) -> list[int]:
    return [i for b in batches for i in b.indices]


def test_the_sound_carried_by_the_frames_is_the_speech_pushed(models, face):
    """Each batch carries the samples of its frames' span, at the rate pushed: joined, they are
    the padding zeros, the speech exactly as pushed, then zeros to the last frame's end."""
    for rate in (16000, 44100):
        speech = hp.speech_like(0.7, rate=rate, seed=5)
        session = LiveSession(models, face, FAST_LIVE)
        batches, _ = push_all(session, speech, rate, 3001)
        assert frames_of(batches) == list(range(session.rendered))
        assert all(b.sample_rate == rate for b in batches)
        for b in batches:      # each batch: exactly its frames' span on the clock
            assert len(b.audio) == round((b.start + len(b)) * rate / 25) - round(b.start * rate / 25)
        sound = torch.cat([b.audio for b in batches]).numpy()
        pad = round(2 * rate / 25)
        assert len(sound) == round(session.rendered * rate / 25) >= pad + len(speech)
        assert not sound[:pad].any() and not sound[pad + len(speech):].any()
        np.testing.assert_array_equal(sound[pad:pad + len(speech)], speech)


def test_idle_between_replies_keeps_moving_with_the_lips_held(models, face):
    """Reply, idle, reply: the frames count on; idle frames carry silence, their head keeps its
    generated motion and their lips hold (past the ramp); the second reply starts from the idle
    motion with no bigger step than the motion makes anyway."""
    motion = []
    session = LiveSession(models, face, FAST_LIVE, on_motion=motion.append)
    first = list(session.push(hp.speech_like(0.6, seed=1), 16000))
    assert session.pending
    first += list(session.end_reply())
    assert not session.pending
    reply = session.rendered
    assert reply == plan_windows(len(hp.speech_like(0.6, seed=1)), fps=25, n_motions=1).n_frames
    idle = list(session.idle(30))
    assert frames_of(idle) == list(range(reply, reply + 30)) and session.rendered == reply + 30
    assert not torch.cat([b.audio for b in idle]).any()
    assert sum(len(b.audio) for b in idle) == 30 * 640
    second = list(session.push(hp.speech_like(0.6, seed=2), 16000)) + list(session.end_reply())
    assert frames_of(first + idle + second) == list(range(session.rendered))
    whole = MotionSequence.cat(motion)
    held = range(reply + 8, reply + 30)                  # the ramp (5 frames) and a margin out
    lips = whole.exp[:, LIPS]
    assert torch.equal(lips[list(held)], whole.exp[:1, LIPS].expand(len(held), -1, -1))
    assert whole.pitch[list(held)].std() > 0 or whole.t[list(held)].std() > 0   # still alive
    steps = (whole.pose()[1:] - whole.pose()[:-1]).abs().amax(1)
    boundary = reply + 30 - 1                            # last idle frame -> first speech frame
    assert steps[boundary] <= 3 * steps.median() + 1e-6


def test_interrupt_drops_the_reply_and_goes_idle(models, face):
    """interrupt() mid-reply: the frames of the chunk in flight (``chunk`` frames; one render
    chunk on a GPU, one frame per batch on the CPU) come out, the rest of the speech is
    dropped (its frames and its sound); idle frames then continue the count."""
    session = LiveSession(models, face, FAST_LIVE)
    speech = hp.speech_like(2.0, seed=3)
    frames = session.push(speech, 16000)
    got = [next(frames)]
    session.interrupt()
    got += list(frames)
    assert sum(map(len, got)) <= FAST_LIVE.chunk          # the chunk in flight at most
    assert not session.pending
    stopped = session.rendered
    full = plan_windows(len(speech), fps=25, n_motions=1).n_frames
    assert stopped < full
    idle = list(session.idle(12))
    assert frames_of(got + idle) == list(range(stopped + 12))
    assert not torch.cat([b.audio for b in idle]).any()
    assert list(session.end_reply()) == []                # nothing of the reply left
    again = list(session.push(hp.speech_like(0.4, seed=4), 16000)) + list(session.finish())
    assert frames_of(got + idle + again) == list(range(session.rendered))
    sound = torch.cat([b.audio for b in got + idle + again])
    assert len(sound) == session.rendered * 640


def test_interrupt_from_another_thread_stops_at_a_chunk(models, face):
    import threading

    session = LiveSession(models, face, FAST_LIVE)
    frames = session.push(hp.speech_like(3.0, seed=6), 16000)
    seen = []
    for batch in frames:
        seen.append(batch)
        if len(seen) == 2:
            threading.Thread(target=session.interrupt).start()
            threading.Event().wait(0.2)
    assert sum(map(len, seen)) <= FAST_LIVE.chunk and not session.pending


def test_idle_before_any_speech_and_the_rate_announced(models, face):
    session = LiveSession(models, face, FAST_LIVE, sample_rate=48000)
    idle = list(session.idle(10))
    assert frames_of(idle) == list(range(10))
    assert [b.sample_rate for b in idle] == [48000] * len(idle)
    assert sum(len(b.audio) for b in idle) == 10 * 1920
    with pytest.raises(ValueError, match="whole number"):
        session.idle(-1)
