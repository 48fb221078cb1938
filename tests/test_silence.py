"""The silence gate: the detector on real speech, the frame weights, and the lips it holds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import helpers_pipeline as hp
from helpers_video import espeak_wav
from joyvasa_core import pipeline
from joyvasa_core.audio import load_audio_file, prepare_waveform
from joyvasa_core.config import AUDIO_PAD_BEFORE, LIP_INDICES
from joyvasa_core.settings import MotionSettings
from joyvasa_core.silence import (BLOCK, NO_GATE, SilenceGate, VoiceActivity, frame_weights,
                                  gate_weights, hold_lips, speech_frames)

FPS = 25
SPF = 640                               # 16 kHz samples per frame
NOT_LIPS = [k for k in range(21) if k not in LIP_INDICES]


@pytest.fixture(scope="module")
def sentence(tmp_path_factory) -> np.ndarray:
    """One espeak-ng sentence at 16 kHz: [N] float32."""
    path = espeak_wav(tmp_path_factory.mktemp("speech") / "s.wav",
                      "Hello there, the listener keeps quiet while I speak.")
    wave, rate = load_audio_file(path)
    return prepare_waveform(wave, rate).numpy()


@pytest.fixture(scope="module")
def turns(sentence) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """1.2 s of silence, the sentence, 1.6 s of silence, the sentence, 1.0 s of silence:
    the track and its speech spans in 16 kHz samples."""
    parts, spans, at = [], [], 0
    for silence in (1.2, 1.6, 1.0):
        parts.append(np.zeros(int(silence * 16000), np.float32))
        at += parts[-1].size
        if len(spans) < 2:
            parts.append(sentence)
            spans.append((at, at + sentence.size))
            at += sentence.size
    return np.concatenate(parts), spans


def _frames_of(span: tuple[int, int]) -> range:
    """Motion frames whose samples lie inside ``span`` (speech samples)."""
    lo, hi = (s + AUDIO_PAD_BEFORE for s in span)
    return range(-(-lo // SPF), hi // SPF)


def test_the_detector_hears_speech_and_not_silence(turns):
    track, spans = turns
    p = VoiceActivity().feed(track, last=True)
    assert p.shape == (-(-track.size // BLOCK),)
    block = lambda s: s // BLOCK                                      # noqa: E731
    first, second = spans
    assert p[block(0):block(first[0]) - 2].max() < 0.2                # leading silence
    assert p[block(first[1]) + 4:block(second[0]) - 2].max() < 0.2    # the pause
    assert np.mean(p[block(first[0]):block(first[1])] > 0.5) > 0.6    # mostly speech


def test_streamed_probabilities_do_not_depend_on_chunking(turns):
    track = turns[0][:40000]
    whole = VoiceActivity().feed(track, last=True)
    detector, parts = VoiceActivity(), []
    for lo, hi in ((0, 333), (333, 5000), (5000, 5001), (5001, 40000)):
        parts.append(detector.feed(track[lo:hi], last=hi == 40000))
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_weights_are_one_in_speech_zero_in_silence_with_ramps_between():
    gate = SilenceGate(threshold=0.5, ramp=0.2, min_silence=0.0)      # 5 frames of ramp
    p = np.zeros(200, np.float32)
    p[60:90] = 0.9                                       # speech samples 30720..46080
    w = frame_weights(p, 120, FPS, gate)
    speech = np.zeros(120, bool)
    speech[(AUDIO_PAD_BEFORE + 60 * BLOCK) // SPF:-(-(AUDIO_PAD_BEFORE + 90 * BLOCK) // SPF)] = True
    first, last = np.flatnonzero(speech)[[0, -1]]
    assert (w[speech] == 1).all()
    np.testing.assert_allclose(w[first - 5:first], [1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6], rtol=1e-6)
    np.testing.assert_allclose(w[last + 1:last + 6], [5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6], rtol=1e-6)
    assert (w[:first - 5] == 0).all() and (w[last + 6:] == 0).all()
    assert (frame_weights(np.zeros(200), 120, FPS, gate) == 0).all()


def test_short_pauses_count_as_speech_unless_they_reach_unknown_frames():
    p = np.zeros(100, np.float32)
    p[10:20] = p[24:30] = 0.9                            # a pause of 4 blocks = 128 ms
    gate = SilenceGate(ramp=0.0, min_silence=0.3)
    assert (frame_weights(p, 60, FPS, gate)[10:26] == 1).all()
    assert not (frame_weights(p, 60, FPS, SilenceGate(ramp=0.0, min_silence=0.1)) == 1)[10:26].all()
    # a live stream that knows frames < 17 only: the pause may still be a silence
    speech = speech_frames(p, 60, FPS, gate.threshold)
    assert not (gate_weights(speech, FPS, gate, known_frames=19)[10:26] == 1).all()


def test_hold_lips_moves_only_the_lips_and_leaves_speaking_frames_exact():
    motion = hp.random_motion(12, seed=4)
    w = np.linspace(0, 1, 12).astype(np.float32)
    held = hold_lips(motion, w, motion[:1])
    assert torch.equal(held.exp[:, NOT_LIPS], motion.exp[:, NOT_LIPS])
    for name in ("scale", "t", "pitch", "yaw", "roll"):
        assert torch.equal(getattr(held, name), getattr(motion, name))
    assert torch.equal(held.exp[-1], motion.exp[-1])                           # w = 1: exact
    assert torch.equal(held.exp[0, LIP_INDICES], motion.exp[0, LIP_INDICES])   # w = 0: held
    expected = motion.exp[:1, LIP_INDICES] + torch.from_numpy(w)[:, None, None] * (
        motion.exp[:, LIP_INDICES] - motion.exp[:1, LIP_INDICES])
    torch.testing.assert_close(held.exp[:, LIP_INDICES], expected)


@pytest.mark.parametrize("bad", [dict(threshold=1.5), dict(threshold=float("nan")),
                                 dict(ramp=-0.1), dict(ramp=float("inf")), dict(min_silence=-1)])
def test_settings_out_of_range_name_the_setting(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        SilenceGate(**bad)


def test_the_gate_holds_a_silent_speakers_lips_and_lets_speech_move(turns):
    models = hp.fast_models()
    track, spans = turns
    settings = MotionSettings(sampler="ddim", steps=2, seed=5)
    free = pipeline.audio_to_motion(models, track, 16000, settings, silence=NO_GATE)
    gated = pipeline.audio_to_motion(models, track, 16000, settings)
    assert len(gated) == len(free)
    # the gate touches nothing but the lips
    assert torch.equal(gated.exp[:, NOT_LIPS], free.exp[:, NOT_LIPS])
    assert torch.equal(gated.pose(), free.pose())
    # silence (ramps left out): the lips hold at frame 0; as generated, they would move
    ramp = round(SilenceGate().ramp * FPS) + 1
    pause = range(_frames_of(spans[0]).stop + ramp + 8, _frames_of(spans[1]).start - ramp)
    lips = gated.exp[:, LIP_INDICES]
    assert torch.equal(lips[list(pause)], lips[:1].expand(len(pause), -1, -1))
    assert (free.exp[list(pause)][:, LIP_INDICES] - free.exp[:1, LIP_INDICES]).abs().max() > 1e-3
    # speech: as generated, bit for bit, at least in the middle of each sentence
    for span in spans:
        frames = _frames_of(span)
        middle = list(range(frames.start + 10, frames.stop - 10))
        assert torch.equal(lips[middle], free.exp[middle][:, LIP_INDICES])


def test_the_gate_off_is_the_motion_as_generated(turns):
    models = hp.fast_models()
    settings = MotionSettings(sampler="ddim", steps=2, seed=5)
    track = turns[0][:32000]
    stream = pipeline.audio_motion_stream(models, track, 16000, settings, silence=NO_GATE)
    from joyvasa_core.generate import iter_motion

    plain = iter_motion(models.motion_generator, models.template, track, 16000, settings)
    assert torch.equal(stream.collect().exp, plain.collect().exp)


@pytest.mark.parametrize("bad, flag", [(("--silence-threshold", "1.5"), "--silence-threshold"),
                                       (("--silence-ramp", "inf"), "--silence-ramp")])
def test_the_command_refuses_gate_settings_out_of_range(capsys, tmp_path, bad, flag):
    import helpers_cli as hc

    inputs = hc.write_photo_and_speech(tmp_path)
    assert flag in hc.fails_early(capsys, inputs, tmp_path, *bad)


def face_frame(x_d: torch.Tensor) -> torch.Tensor:
    """Keypoints ``[T, 21, 3]`` in the face's own frame: minus the centre of the keypoints
    the lips do not move, over their spread (the head's translation and zoom, which the
    gate leaves to the motion, taken out)."""
    rest = x_d[:, NOT_LIPS]
    centre = rest.mean(1, keepdim=True)
    return (x_d - centre) / (rest - centre).norm(dim=-1).mean(1)[:, None, None]


def test_the_command_holds_lip_keypoints_in_a_pause(capsys, tmp_path, turns, models_dir):
    """--save-keypoints with --animation-region lip: the lips' driving keypoints hold still in
    the face's frame in the pause (ramps left out) and move in speech; --silence-gate off lets
    them move. (Without stitching, whose correction follows the head's translation and zoom:
    the tiny networks' head moves far more than the official one.)"""
    import helpers_cli as hc
    from safetensors.torch import load_file

    inputs = hc.write_photo_and_speech(tmp_path)
    track, spans = turns
    speech = hc.write_wav(tmp_path / "turns.wav", track)
    lips = {}
    for gate in ("on", "off"):
        keypoints = tmp_path / f"kp_{gate}.safetensors"
        argv = ["--image", inputs["photo"], "--audio", speech, "--save-keypoints", keypoints,
                "--models-dir", models_dir, "--face-backend", "none", *hc.FAST,
                "--animation-region", "lip", "--no-stitching", "--silence-gate", gate]
        with hp.fast_liveportrait_build():
            code, _, err = hc.run(argv, capsys)
        assert code == 0, err
        lips[gate] = face_frame(load_file(str(keypoints))["x_d"])[:, LIP_INDICES]
    ramp = round(SilenceGate().ramp * FPS) + 1
    pause = slice(_frames_of(spans[0]).stop + ramp + 8, _frames_of(spans[1]).start - ramp)
    frames = _frames_of(spans[1])
    talk = slice(frames.start + 5, frames.stop - 5)

    def spread(x: torch.Tensor) -> float:      # how far the lips move over the frames
        return float((x - x.mean(0)).abs().max())
    assert spread(lips["on"][pause]) < 1e-3 * spread(lips["on"][talk])
    assert spread(lips["off"][pause]) > 0.1 * spread(lips["off"][talk])


def test_the_gate_read_chunk_by_chunk_equals_the_whole_clip_weights(turns):
    """The stream stage runs the detector only as far as each chunk needs, yet gives the
    weights of the whole clip: chunks of 7 frames against hold_lips with weights()."""
    from joyvasa_core.motion import MotionStream

    track = turns[0]
    n = int((track.shape[0] + 1920) / 640)
    motion = hp.random_motion(n, seed=9)
    gate = SilenceGate()
    stream = MotionStream([motion[i:i + 7] for i in range(0, n, 7)], fps=FPS, n_frames=n)
    chunked = gate.apply(stream, track).collect()
    whole = hold_lips(motion, gate.weights(track, n, FPS), motion[:1])
    assert torch.equal(chunked.exp, whole.exp)
    assert (gate.weights(track, n, FPS) < 1).any() and (gate.weights(track, n, FPS) == 1).any()
