"""Audio input: PCM conversion, mixdown, resampling accuracy, file decoding, the window plan."""
from __future__ import annotations

import json
import math
import wave

import numpy as np
import pytest
import torch

from joyvasa_core.audio import (AudioError, load_audio_file, plan_windows, prepare_waveform,
                                resample, split_windows, to_float_tensor, window_batches)
from conftest import PARITY


def sine(freq: float, rate: int, seconds: float, amp: float = 1.0, phase: float = 0.0) -> torch.Tensor:
    t = torch.arange(round(rate * seconds), dtype=torch.float64) / rate
    return amp * torch.sin(2 * math.pi * freq * t + phase)


# ---------------------------------------------------------------- resampling

#: soxr's "HQ" quality (librosa's soxr_hq) is specified as 20-bit precision: pass-band
#: error and stop-band leakage stay under 2**-20 of full scale. One more bit covers the
#: float32 rounding of input and output (2**-24 each).
SOXR_HQ_ERROR = 2.0 ** -19


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000, 44101])
def test_resample_sine_in_sine_out(rate):
    x = sine(440.0, rate, 1.0).float()
    y = resample(x, rate, 16000)
    assert y.shape == (math.ceil(x.shape[0] * 16000 / rate),)    # librosa's length rule
    ref = sine(440.0, 16000, y.shape[0] / 16000)
    # away from the zero-padded ends the band-limited interpolation is exact to soxr's precision
    assert (y.double() - ref)[400:-400].abs().max() < SOXR_HQ_ERROR


@pytest.mark.parametrize("rate", [22050, 44100, 48000])
def test_resample_suppresses_aliases(rate):
    tone = 8000 + 0.6 * (rate / 2 - 8000)          # above the new Nyquist (8 kHz)
    y = resample(sine(tone, rate, 0.5).float(), rate, 16000)
    assert y[400:-400].abs().max() < SOXR_HQ_ERROR


def test_resample_keeps_leading_dims_device_and_dtype():
    x = torch.randn(2, 3, 4410, dtype=torch.float64)
    y = resample(x, 44100, 16000)
    assert y.shape == (2, 3, 1600) and y.dtype == torch.float64
    assert torch.equal(y[1, 2], resample(x[1, 2], 44100, 16000))   # channels are independent
    assert resample(x, 16000, 16000) is x


def test_resample_equals_librosa_on_the_reference_fixture():
    """The official front end (librosa.load = channel mean + soxr_hq), sample for sample."""
    from joyvasa_core.parity.fixture import Fixture

    fx = Fixture.open(PARITY, "audio_resample")
    cases = fx.meta["cases"]
    assert cases
    for case, info in cases.items():
        ours = prepare_waveform(fx.tensor(f"waveform.{case}"), info["sample_rate"])
        ref = fx.tensor(f"wave16k.{case}")
        assert ours.shape == ref.shape
        assert (ours - ref).abs().max() <= 1e-5     # the fixture's tolerance (README section 5)


# ---------------------------------------------------------------- conversion

def test_stereo_44k_int16_to_mono_16k():
    left, right = sine(440.0, 44100, 1.0, 0.5), sine(440.0, 44100, 1.0, 0.25)
    pcm = (torch.stack([left, right]) * 32767).round().to(torch.int16)          # [C, N]
    ref = sine(440.0, 16000, 1.0, 0.375 * 32767 / 32768)
    for layout in (pcm, pcm.T.contiguous(), pcm[None], pcm.numpy()):          # [C,N] [N,C] [1,C,N] ndarray
        mono = prepare_waveform(layout, 44100)
        assert mono.dtype == torch.float32 and mono.shape == (16000,)
        # int16 rounding (≤ half a step, 2**-16 of full scale, per sample; a few half steps at
        # most once low-pass filtered) plus soxr HQ's specified 20-bit precision (2**-20)
        assert (mono.double() - ref)[400:-400].abs().max() < 4 * 2**-16 + 2**-20


def test_pcm_scaling():
    assert to_float_tensor(np.array([-32768, 0, 16384], np.int16)).tolist() == [-1.0, 0.0, 0.5]
    assert to_float_tensor(np.array([0, 128, 192], np.uint8)).tolist() == [-1.0, 0.0, 0.5]
    assert to_float_tensor(torch.tensor([-2 ** 31, 2 ** 30], dtype=torch.int32)).tolist() == [-1.0, 0.5]
    assert to_float_tensor(np.array([0.25], np.float64)).dtype == torch.float32


@pytest.mark.parametrize("bad,match", [
    (np.zeros(0, np.float32), "no samples"),
    (np.zeros(16000, np.float32), "silent"),
    (np.full(16000, np.nan, np.float32), "NaN"),
    (np.zeros((2, 2, 1000), np.float32), "batch"),
    (np.zeros(16000, np.int64), "int64"),
])
def test_prepare_waveform_errors(bad, match):
    with pytest.raises(AudioError, match=match):
        prepare_waveform(bad, 16000)


def test_silence_allowed_on_request():
    assert prepare_waveform(np.zeros(32000, np.int16), 32000, allow_silence=True).abs().max() == 0


# ---------------------------------------------------------------- files

def test_load_wav_and_flac(tmp_path):
    rate = 22050
    pcm = (torch.stack([sine(300, rate, 0.5, 0.5), sine(500, rate, 0.5, 0.3)]) * 32767).round().short()
    wav_path = tmp_path / "speech.wav"
    with wave.open(str(wav_path), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.T.contiguous().numpy().tobytes())
    data, sr = load_audio_file(wav_path)
    assert sr == rate and data.shape == pcm.shape and data.dtype == torch.float32
    assert torch.equal(data, pcm.float() / 32768)

    flac_path = tmp_path / "speech.flac"
    encode_file(flac_path, "flac", rate, pcm)
    data, sr = load_audio_file(flac_path)
    assert sr == rate and torch.equal(data, pcm.float() / 32768)   # lossless


def encode_file(path, codec: str, rate: int, pcm: torch.Tensor) -> None:
    """Write int16 ``pcm`` [2, N] with PyAV's encoder ``codec`` (frames of the codec's size)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        size = stream.codec_context.frame_size or 1024
        interleaved = pcm.T.contiguous().numpy()
        for start in range(0, interleaved.shape[0], size):
            frame = av.AudioFrame.from_ndarray(interleaved[start:start + size].reshape(1, -1),
                                               format="s16", layout="stereo")
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.mark.parametrize("suffix,codec,rate", [(".mp3", "libmp3lame", 44100), (".m4a", "aac", 44100),
                                               (".ogg", "libopus", 48000)])
def test_load_lossy_formats(tmp_path, suffix, codec, rate):
    import av

    try:
        av.codec.Codec(codec, "w")
    except av.codec.codec.UnknownCodecError:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    pcm = (torch.stack([sine(300, rate, 1.0, 0.5), sine(500, rate, 1.0, 0.3)]) * 32767).round().short()
    path = tmp_path / f"speech{suffix}"
    encode_file(path, codec, rate, pcm)
    data, sr = load_audio_file(path)
    assert sr == rate and data.shape[0] == 2 and data.dtype == torch.float32
    assert abs(data.shape[1] - rate) < 0.1 * rate                       # codec delay / padding only
    ref_rms = (pcm.float() / 32768).pow(2).mean(dim=1).sqrt()
    assert torch.allclose(data.pow(2).mean(dim=1).sqrt(), ref_rms, rtol=0.15)


def test_load_audio_file_errors(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        load_audio_file(tmp_path / "missing.wav")
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"not audio at all" * 10)
    with pytest.raises(AudioError):
        load_audio_file(junk)


# ---------------------------------------------------------------- window plan

@pytest.mark.parametrize("seconds", [0.1, 0.5, 1.0, 3.9, 4.0, 4.08, 6.25, 7.9, 60.0, 600.0])
@pytest.mark.parametrize("fps,n_motions", [(25, 100), (25, 37), (30, 100)])
def test_window_plan_frame_count(seconds, fps, n_motions):
    n = round(seconds * 16000)
    plan = plan_windows(n, fps=fps, n_motions=n_motions)
    padded = n + 1280 + 640
    # official: clip_len = int(len(padded) / 16000 * fps), and exactly that many frames survive
    assert plan.clip_len == int(padded / 16000 * fps)
    assert plan.n_frames == plan.clip_len
    assert plan.n_windows == max(1, math.ceil(plan.clip_len / n_motions))
    assert sum(plan.frames_per_window) == plan.n_frames
    assert all(k == n_motions for k in plan.frames_per_window[:-1]) and plan.frames_per_window[-1] > 0
    assert plan.samples_per_window == round(16000 / fps * n_motions)


def test_window_plan_matches_fixture_sidecars():
    e2e = json.loads((PARITY / "gen_motion_sequence_e2e.json").read_text())
    plan = plan_windows(e2e["tensors"]["audio"]["shape"][0], fps=e2e["config"]["fps"],
                        n_motions=e2e["config"]["n_motions"])
    assert plan.n_frames == e2e["n_frames"] == e2e["tensors"]["motion.exp"]["shape"][0]
    assert plan.n_windows == len(e2e["windows"])
    assert plan.n_padding_frames == e2e["windows"][-1]["indicator_zeros"]
    assert all(w["audio_in_len"] == plan.samples_per_window for w in e2e["windows"])
    pipe = json.loads((PARITY / "pipeline_motion.json").read_text())
    plan = plan_windows(pipe["audio_len_samples"], fps=pipe["config"]["fps"],
                        n_motions=pipe["config"]["n_motions"])
    assert plan.n_frames == pipe["tensors"]["decoded.exp"]["shape"][0]
    assert plan.n_padding_frames == pipe["sample_calls"][0]["indicator_zeros"]


@pytest.mark.parametrize("n", [0, 1, 639])
def test_window_plan_rejects_empty_and_sub_frame(n):
    with pytest.raises(AudioError):
        plan_windows(n, fps=25, n_motions=100)


def test_split_windows_layout():
    audio = torch.arange(1, 9001, dtype=torch.float32)
    plan = plan_windows(audio.shape[0], fps=25, n_motions=5)            # 3200-sample windows
    windows = split_windows(audio, plan, "zero")
    assert windows.shape == (plan.n_windows, 3200)
    flat = windows.reshape(-1)
    assert torch.equal(flat[:1280], torch.zeros(1280))
    assert torch.equal(flat[1280:1280 + 9000], audio)
    assert torch.equal(flat[1280 + 9000:], torch.zeros(flat.shape[0] - 10280))
    # 'replicate' repeats the last sample of the padded clip (a zero unless pad_after is 0)
    assert torch.equal(split_windows(audio, plan, "replicate"), windows)
    tight = plan_windows(audio.shape[0], fps=25, n_motions=5, pad_after=0)
    tail = split_windows(audio, tight, "replicate").reshape(-1)[1280 + 9000:]
    assert tail.numel() > 0 and torch.equal(tail, torch.full_like(tail, 9000.0))
    with pytest.raises(ValueError, match="pad_mode"):
        split_windows(audio, plan, "mirror")


@pytest.mark.parametrize("mode,pad_after", [("zero", 640), ("replicate", 640), ("replicate", 0)])
@pytest.mark.parametrize("batch", [1, 2, 3, 8])
def test_window_batches_cut_the_same_windows_batch_by_batch(mode, pad_after, batch):
    audio = torch.arange(1, 20001, dtype=torch.float32)
    plan = plan_windows(audio.shape[0], fps=25, n_motions=5, pad_after=pad_after)   # 7 windows
    batches = list(window_batches(audio, plan, mode, batch=batch))
    assert [b.shape[0] for b in batches] == [min(batch, plan.n_windows - i)
                                              for i in range(0, plan.n_windows, batch)]
    # the same samples as slicing the whole padded clip, written out here
    padded = torch.cat([torch.zeros(plan.pad_before), audio, torch.zeros(pad_after)])
    need = plan.n_windows * plan.samples_per_window - padded.shape[0]
    fill = float(padded[-1]) if mode == "replicate" else 0.0
    padded = torch.cat([padded, torch.full((need,), fill)])
    expected = torch.stack([padded[s:s + plan.samples_per_window] for s in plan.starts])
    assert torch.equal(torch.cat(batches), expected)
