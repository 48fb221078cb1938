"""Multi-window motion generation on a tiny generator, and end-to-end parity."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import transformers

import joyvasa_core.generate as gen
from conftest import PARITY
from helpers_precision import assert_float32_close, to_float64
from joyvasa_core.audio import AudioError, plan_windows, split_windows
from joyvasa_core.config import DEFAULT_CFG_SCALE
from joyvasa_core.dit.args import MotionGeneratorArgs
from joyvasa_core.dit.model import build_motion_generator
from joyvasa_core.fill import fill_module_
from joyvasa_core.motion import MotionSequence, MotionTemplate, decode_motion, smooth_pose
from joyvasa_core.parity.fixture import Fixture
from joyvasa_core.settings import MotionSettings

N_MOTIONS, N_PREV, STEPS = 8, 3, 3


@pytest.fixture(scope="module")
def tiny_model():
    config = transformers.HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=64, conv_dim=(16,) * 7,
                                       num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    args = MotionGeneratorArgs(n_motions=N_MOTIONS, n_prev_motions=N_PREV, feature_dim=32,
                               n_diff_steps=STEPS, n_heads=2, n_layers=1)
    model = build_motion_generator(args, transformers.HubertModel(config))
    return fill_module_(model).eval()


@pytest.fixture(scope="module")
def template():
    return MotionTemplate.from_dict({
        "mean_exp": np.zeros(63), "std_exp": np.full(63, 0.02), "min_scale": [1.3], "max_scale": [1.9],
        "min_t": [-0.1, -0.1, -0.05], "max_t": [0.1, 0.1, 0.05], "min_pitch": [-20], "max_pitch": [20],
        "min_yaw": [-30], "max_yaw": [30], "min_roll": [-15], "max_roll": [15]})


def speech(seconds: float, rate: int = 16000) -> torch.Tensor:
    t = torch.arange(round(seconds * rate)) / rate
    return (0.3 * torch.sin(2 * math.pi * 180 * t) * (1 + torch.sin(2 * math.pi * 3 * t))).float()


def test_multi_window_chaining(tiny_model, template, monkeypatch):
    """Windows chain like the official loop: shared x_T, previous motion/audio as context, trim once."""
    calls = []
    real = gen.sample_window

    def spy(model, audio_feat, prev_motion, prev_audio, x_T, **kw):
        motion = real(model, audio_feat, prev_motion, prev_audio, x_T, **kw)
        calls.append(dict(audio_feat=audio_feat, prev_motion=prev_motion, prev_audio=prev_audio,
                          x_T=x_T, motion=motion))
        return motion

    monkeypatch.setattr(gen, "sample_window", spy)
    audio = speech(1.3)
    seq = gen.generate_motion(tiny_model, template, audio, 16000,
                              MotionSettings(seed=3, smoothing=0.0))
    plan = plan_windows(audio.shape[0], fps=25, n_motions=N_MOTIONS)
    assert len(seq) == plan.n_frames == int((audio.shape[0] + 1920) / 16000 * 25)   # 35 frames
    assert len(calls) == plan.n_windows == 5 and plan.n_padding_frames > 0
    assert calls[0]["prev_motion"] is None and calls[0]["prev_audio"] is None
    for before, after in zip(calls, calls[1:]):
        assert torch.equal(after["x_T"], calls[0]["x_T"])
        assert torch.equal(after["prev_motion"], before["motion"][:, -N_PREV:])
        assert torch.equal(after["prev_audio"], before["audio_feat"][:, -N_PREV:])
    coef = torch.cat([c["motion"][0] for c in calls])[:plan.n_frames]
    expected = gen.decode_motion(coef, template)
    torch.testing.assert_close(seq.exp, expected.exp)
    torch.testing.assert_close(seq.yaw, expected.yaw)
    # each window's audio features are the encoder's output for that window alone
    windows = split_windows(gen.prepare_waveform(audio, 16000), plan, "zero")
    alone = gen.encode_audio(tiny_model, windows[-1:]).audio_feat
    alone64 = gen.encode_audio(to_float64(tiny_model), windows[-1:].double()).audio_feat
    assert_float32_close(calls[-1]["audio_feat"], alone, alone64)


def test_seed_noise_and_progress(tiny_model, template):
    audio = speech(0.7)
    a = gen.generate_motion(tiny_model, template, audio, 16000, MotionSettings(seed=1))
    b = gen.generate_motion(tiny_model, template, audio, 16000, MotionSettings(seed=1))
    c = gen.generate_motion(tiny_model, template, audio, 16000, MotionSettings(seed=2))
    assert torch.equal(a.exp, b.exp) and not torch.equal(a.exp, c.exp)

    n_windows = plan_windows(audio.shape[0], fps=25, n_motions=N_MOTIONS).n_windows
    noise = torch.randn(1 + n_windows * (STEPS - 1), 1, N_MOTIONS, 70)
    ticks = []
    d = gen.generate_motion(tiny_model, template, audio, 16000, noise=noise,
                            progress=lambda done, total: ticks.append((done, total)))
    e = gen.generate_motion(tiny_model, template, audio, 16000, noise=noise.clone())
    assert torch.equal(d.exp, e.exp) and not torch.equal(d.exp, a.exp)
    assert ticks == [(i + 1, n_windows * STEPS) for i in range(n_windows * STEPS)]
    with pytest.raises(ValueError, match="exhausted"):
        gen.generate_motion(tiny_model, template, audio, 16000, noise=noise[:-1])


def test_smoothing_and_resampled_stereo_input(tiny_model, template):
    audio = speech(0.9, rate=44100)
    stereo = (torch.stack([audio, 0.5 * audio]) * 32767).to(torch.int16)
    raw = gen.generate_motion(tiny_model, template, stereo, 44100, MotionSettings(smoothing=0.0))
    smooth = gen.generate_motion(tiny_model, template, stereo, 44100, MotionSettings(smoothing=1.0))
    assert len(raw) == int((round(0.9 * 16000) + 1920) / 16000 * 25)
    assert torch.equal(raw.exp, smooth.exp)
    assert smooth.yaw.std() < raw.yaw.std()


def test_pose_and_expression_scale_are_applied_by_the_sampler(tiny_model, template):
    """Every window is rescaled against frame 0 of the stream: the chunks joined equal the whole
    unscaled clip rescaled at once."""
    audio = speech(1.3)
    plain = gen.generate_motion(tiny_model, template, audio, 16000, MotionSettings(seed=2))
    scaled = gen.generate_motion(tiny_model, template, audio, 16000,
                                 MotionSettings(seed=2, pose_scale=0.3, expression_scale=1.7))
    expected = plain.rescaled(pose=0.3, expression=1.7)
    assert plan_windows(audio.shape[0], fps=25, n_motions=N_MOTIONS).n_windows > 1
    for name in ("exp", "scale", "t", "pitch", "yaw", "roll"):
        assert torch.equal(getattr(scaled, name), getattr(expected, name)), name
    assert not torch.equal(scaled.yaw, plain.yaw)


@pytest.mark.parametrize("audio,match", [(torch.zeros(0), "no samples"), (torch.zeros(16000), "silent"),
                                         (0.1 * torch.ones(300), "shorter than one video frame")])
def test_unusable_audio_raises(tiny_model, template, audio, match):
    with pytest.raises(AudioError, match=match):
        gen.generate_motion(tiny_model, template, audio, 16000)


@pytest.mark.slow
def test_parity_gen_motion_sequence_e2e():
    from joyvasa_core.parity.audio_motion import gen_motion_sequence_e2e

    fx = Fixture.open(PARITY, "gen_motion_sequence_e2e")
    out = gen_motion_sequence_e2e(fx, torch.device("cpu"))
    for name in fx.names("output"):
        torch.testing.assert_close(out[name], fx.tensor(name), atol=1e-3, rtol=1e-3)


def test_stream_yields_each_window_and_joins_to_the_whole_clip(tiny_model, template, monkeypatch):
    """iter_motion yields one chunk per window, as each is sampled, and the chunks equal the
    whole-clip computation (all windows sampled, decoded at once, smoothed at once) bit for bit."""
    audio = speech(2.1)
    plan = plan_windows(audio.shape[0], fps=tiny_model.args.fps, n_motions=N_MOTIONS)
    assert plan.n_windows >= 4
    sampled = []
    real = gen.sample_window
    monkeypatch.setattr(gen, "sample_window", lambda *a, **kw: sampled.append(1) or real(*a, **kw))
    settings = MotionSettings(seed=5, sampler="ddim", steps=2)
    stream = gen.iter_motion(tiny_model, template, audio, 16000, settings)
    assert not sampled and stream.n_frames == plan.n_frames and stream.fps == tiny_model.args.fps
    assert stream.windows == plan.n_windows
    chunks = iter(stream)
    first = next(chunks)
    assert len(sampled) == 1 and len(first) == N_MOTIONS      # out after one window's sampling
    chunks = [first, *chunks]
    assert [len(c) for c in chunks] == plan.frames_per_window
    monkeypatch.setattr(gen, "sample_window", real)

    # the whole-clip reference, written out: one decode and one EMA over all frames
    with torch.no_grad():        # as generation runs (the attention fast path)
        windows = split_windows(audio, plan, tiny_model.args.pad_mode)
        feats = gen.encode_audio(tiny_model, windows, frame_num=N_MOTIONS).audio_feat
        x_T = torch.randn((1, N_MOTIONS, tiny_model.motion_feat_dim),
                          generator=torch.Generator().manual_seed(5))
        coefs, prev_m, prev_a = [], None, None
        for w, keep in enumerate(plan.frames_per_window):
            m = real(tiny_model, feats[w:w + 1], prev_m, prev_a, x_T, cfg_scale=DEFAULT_CFG_SCALE,
                     sampler="ddim", steps=2)
            prev_m, prev_a = m[:, -N_PREV:], feats[w:w + 1, -N_PREV:]
            coefs.append(m[0, :keep])
        whole = smooth_pose(decode_motion(torch.cat(coefs), template, fps=tiny_model.args.fps))
    joined = MotionSequence.cat(chunks)
    for name in ("exp", "scale", "t", "pitch", "yaw", "roll"):
        assert torch.equal(getattr(joined, name), getattr(whole, name)), name
    collected = gen.generate_motion(tiny_model, template, audio, 16000, settings)
    for name in ("exp", "scale", "t", "pitch", "yaw", "roll"):
        assert torch.equal(getattr(collected, name), getattr(joined, name))


def test_window_sampler_commits_part_of_a_window(tiny_model, template):
    """Committing fewer frames than the context holds keeps a full-length context (start context
    first), so a chain of short commits runs; each commit returns exactly ``keep`` frames."""
    feat = gen.encode_audio(tiny_model, speech(N_MOTIONS / 25)[None, :N_MOTIONS * 640],
                            frame_num=N_MOTIONS).audio_feat
    sampler = gen.WindowSampler(tiny_model, template, MotionSettings(sampler="ddim", steps=2))
    assert len(sampler(feat, 2)) == 2
    start_motion, start_audio = tiny_model.start_context(1)
    assert sampler.prev_motion.shape[1] == N_PREV and sampler.prev_audio.shape[1] == N_PREV
    assert torch.equal(sampler.prev_motion[:, 0], start_motion[:, -1])
    assert torch.equal(sampler.prev_audio[:, 1:], feat[:, :2])
    first_context = sampler.prev_motion
    assert len(sampler(feat, 2)) == 2
    assert torch.equal(sampler.prev_motion[:, 0], first_context[:, -1])   # slid by two frames
